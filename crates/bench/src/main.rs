//! `pushbench`: parse flags, run the benchmark, map the outcome to an exit code.
//!
//! Exit codes: 0 every delivery accepted (`api`: every check held); 1 incomplete (timeout,
//! failure, Ctrl-C) or an error during the run; 2 bad flags or configuration.

use std::process::ExitCode;

use clap::Parser as _;
use pushservice_bench::{BenchArgs, Mode, run};

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(message) = pushservice_config::load_dotenv() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let args = BenchArgs::parse();
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf));
    let outcome = match &args.mode {
        Some(Mode::Api(api)) => match api.settings(exe_dir) {
            Ok(config) => pushservice_bench::api::run(config).await,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        },
        None => match args.settings(exe_dir) {
            Ok(config) => run(config).await,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        },
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: the run did not complete; see the result for how far it got");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
