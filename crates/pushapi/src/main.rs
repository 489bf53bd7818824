//! `pushapi`: the HTTP API daemon. See `pushapi --help`.

use std::process::ExitCode;

use pushservice_daemon::{daemon_main, shutdown_signal};
use pushservice_pushapi::ApiArgs;

#[tokio::main]
async fn main() -> ExitCode {
    daemon_main(
        "pushapi",
        |args: &ApiArgs| &args.log,
        ApiArgs::settings,
        |config| pushservice_pushapi::run(config, shutdown_signal()),
    )
    .await
}
