//! `sender`: the delivery daemon. See `sender --help`.

use std::process::ExitCode;

use clap::Parser as _;
use pushservice_sender::SenderArgs;

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(message) = pushservice_config::load_dotenv() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let args = SenderArgs::parse();
    if let Err(e) = pushservice_config::init_logging(&args.log, "info,librdkafka=warn") {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let config = match args.settings() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match pushservice_sender::run(config, pushservice_daemon::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "sender stopped");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
