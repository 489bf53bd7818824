//! `rtbench`: parse flags, run the load test, print the results, map the outcome to an exit
//! code.
//!
//! Exit codes: 0 every connection subscribed and every message arrived once; 1 something was
//! missing or failed (the table says what); 2 bad flags or configuration.

use std::process::ExitCode;

use clap::Parser as _;
use pushservice_rtbench::{RtbenchArgs, run};

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(message) = pushservice_config::load_dotenv() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let args = RtbenchArgs::parse();
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let json = settings.json.clone();
    let report = match run(settings).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    println!("rtbench {}:\n{}", report.run_id, report.table());
    if let Some(path) = json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(anyhow::Error::from)
            .and_then(|text| std::fs::write(&path, text).map_err(anyhow::Error::from));
        if let Err(e) = written {
            eprintln!("error: writing {}: {e:#}", path.display());
            return ExitCode::from(1);
        }
    }
    if report.complete() {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the run did not complete; see the table for what is missing");
        ExitCode::from(1)
    }
}
