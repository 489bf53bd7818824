//! The shared `main` of the daemons: `.env`, flags, logging, validated settings, run, exit
//! code. Each daemon's `main.rs` is one call to [`daemon_main`].

use std::future::Future;
use std::process::ExitCode;

use pushservice_config::{ConfigError, LogArgs};

/// Loads `.env`, parses the flags `A`, sets up logging, validates the settings and runs the
/// daemon. Exit code 2 for a configuration problem, 1 when the daemon fails, 0 after a clean
/// shutdown.
pub async fn daemon_main<A, C, Fut>(
    name: &str,
    log: impl FnOnce(&A) -> &LogArgs,
    settings: impl FnOnce(&A) -> Result<C, ConfigError>,
    run: impl FnOnce(C) -> Fut,
) -> ExitCode
where
    A: clap::Parser,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if let Err(message) = pushservice_config::load_dotenv() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let args = A::parse();
    if let Err(e) = pushservice_config::init_logging(log(&args), "info,librdkafka=warn") {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let config = match settings(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{name} stopped");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
