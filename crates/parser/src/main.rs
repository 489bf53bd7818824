//! `parser`: the fan-out daemon. See `parser --help`.

use std::process::ExitCode;

use pushservice_daemon::{daemon_main, shutdown_signal};
use pushservice_parser::ParserArgs;

#[tokio::main]
async fn main() -> ExitCode {
    daemon_main(
        "parser",
        |args: &ParserArgs| &args.log,
        ParserArgs::settings,
        |config| pushservice_parser::run(config, shutdown_signal()),
    )
    .await
}
