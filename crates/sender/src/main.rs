//! `sender`: the delivery daemon. See `sender --help`.

use std::process::ExitCode;

use pushservice_daemon::{daemon_main, shutdown_signal};
use pushservice_sender::SenderArgs;

#[tokio::main]
async fn main() -> ExitCode {
    daemon_main(
        "sender",
        |args: &SenderArgs| &args.log,
        SenderArgs::settings,
        |config| pushservice_sender::run(config, shutdown_signal()),
    )
    .await
}
