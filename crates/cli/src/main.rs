//! `pushctl`: trigger pushes and administer pushservice. See `pushctl --help`.

use std::process::ExitCode;

use clap::Parser;
use pushservice_cli::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(message) = pushservice_config::load_dotenv() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    if let Err(e) = pushservice_config::init_logging(&cli.log, "warn,librdkafka=error") {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
