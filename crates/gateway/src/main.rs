//! `gateway`: the realtime daemon. See `gateway --help` and `docs/realtime.md`.

use std::process::ExitCode;

use pushservice_daemon::{daemon_main, shutdown_signal};
use pushservice_gateway::GatewayArgs;

#[tokio::main]
async fn main() -> ExitCode {
    daemon_main(
        "gateway",
        |args: &GatewayArgs| &args.log,
        GatewayArgs::settings,
        |config| pushservice_gateway::run(config, shutdown_signal()),
    )
    .await
}
