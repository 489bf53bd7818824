//! The `pushapi` process of a run: its environment, start, readiness and stop.
//!
//! It gets the run's environment from the [`Launcher`] (database, Kafka, topics, log level),
//! a free port on 127.0.0.1, a fresh admin token, and the public routes' rate limit of the
//! flags (all requests come from one address). `SENDER_ALLOW_PRIVATE_ENDPOINTS` and
//! `METRICS_ADDR` are never passed on: the endpoint policy is production's, and `/metrics`
//! is read on the API's own address. Other `API_*` settings in the environment (flush
//! interval, queue, site cache ...) pass through and are recorded in the result.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pushservice_model::ObjectId;

use crate::api::client;
use crate::api::config::ApiBenchConfig;
use crate::fleet::free_port;
use crate::launch::{Launcher, log_tail};
use crate::procs::Proc;

/// Name of the process in reports and logs.
pub const PUSHAPI: &str = "pushapi";

/// How long pushapi may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long pushapi may take to stop (it drains its event queue first).
pub const STOP_GRACE: Duration = Duration::from_secs(60);

/// A running pushapi.
#[derive(Debug)]
pub struct Pushapi {
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// Its `API_ADMIN_TOKEN`.
    pub admin_token: String,
    /// The `API_*` settings it was given or inherited (the admin token left out).
    pub settings: BTreeMap<String, String>,
}

/// Starts pushapi and waits until `/readyz` answers 200.
pub async fn start(
    config: &ApiBenchConfig,
    launcher: &Launcher,
    http: &reqwest::Client,
) -> anyhow::Result<Pushapi> {
    let port = match config.api_port {
        0 => free_port()?,
        port => port,
    };
    let listen = format!("127.0.0.1:{port}");
    // Local and short-lived; 58 characters (pushapi wants at least 24).
    let admin_token = format!(
        "pushbench-{}{}",
        ObjectId::new().to_hex(),
        ObjectId::new().to_hex()
    );
    let mut settings: BTreeMap<String, String> = std::env::vars()
        .filter(|(key, _)| key.starts_with("API_") && key != "API_ADMIN_TOKEN")
        .collect();
    settings.insert("API_LISTEN".to_owned(), listen.clone());
    settings.insert(
        "API_PUBLIC_RATE_PER_SEC".to_owned(),
        config.public_rate_per_sec.to_string(),
    );
    settings.insert(
        "API_PUBLIC_BURST".to_owned(),
        config.public_burst.to_string(),
    );
    let mut command = launcher.command(PUSHAPI);
    command
        .env_remove("METRICS_ADDR")
        .env_remove("SENDER_ALLOW_PRIVATE_ENDPOINTS")
        .env("API_ADMIN_TOKEN", &admin_token)
        .envs(&settings);
    let proc = Proc::spawn(PUSHAPI, command, &launcher.log(PUSHAPI))?;
    let base_url = format!("http://{listen}");
    let ready = format!("{base_url}/readyz");
    let started = Instant::now();
    loop {
        if proc.has_ended() {
            anyhow::bail!(
                "pushapi exited at start: {}",
                log_tail(&launcher.log(PUSHAPI), 10)
            );
        }
        if matches!(client::get(http, &ready, None).await, Ok(r) if r.status == 200) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < READY_TIMEOUT,
            "pushapi did not answer {ready} in {READY_TIMEOUT:?}: {}",
            log_tail(&launcher.log(PUSHAPI), 10)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "pushapi ready on {listen} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Pushapi {
        proc,
        base_url,
        admin_token,
        settings,
    })
}

/// Resets the kernel's peak-RSS mark (`VmHWM`) of `pid` (`echo 5 > /proc/<pid>/clear_refs`),
/// so that the next reading is the peak of what follows; false when the kernel refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .context("clear_refs")
        .is_ok()
}
