//! `parser`: the fan-out daemon. See `parser --help`.

use std::process::ExitCode;

use clap::Parser as _;
use pushservice_parser::ParserArgs;

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(message) = pushservice_config::load_dotenv() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let args = ParserArgs::parse();
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
    match pushservice_parser::run(config, pushservice_daemon::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "parser stopped");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
