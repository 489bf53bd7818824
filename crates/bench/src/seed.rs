//! The benchmark's audience: reuse it when it fits, otherwise seed it afresh with `seed`.
//!
//! Seeding a million subscribers with real keys takes a while, so a run leaves a marker
//! document (collection `pushbench_meta`, `_id: "audience"`) naming the site, the count, the
//! platform, the endpoint base and the key seed, written only after seeding succeeded. The next run reuses
//! the audience when the marker matches and the site exists. Nothing is counted: on FerretDB's
//! SQLite backend even a bare `count` scans the collection (20 s for a million). Instead, a run
//! whose simulator answers 404/410 to some subscribers (so that senders unsubscribe them)
//! deletes the marker before it starts ([`invalidate`]) and the next run reseeds. A database
//! changed by anything else needs `--reuse false`.
//! Anything else drops the database and seeds: the `seed` binary does the work, measured
//! like every other process.
//! A new push is created on every run.
//!
//! The site always gets APNs and FCM test credentials (`seed credentials`) besides its VAPID
//! keys, so one site serves every `--platform`; a verifying simulator is given the keys the
//! site stores ([`mobile_keys`]).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bson::{Document, doc};
use pushservice_model::parse_object_id;
use pushservice_store::Store;

use crate::config::{BenchConfig, platform_name};
use crate::launch::Launcher;
use crate::procs::Proc;

/// Collection of the marker document.
const META: &str = "pushbench_meta";

/// How the audience came to be, for the results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Seeding {
    /// The existing audience was used.
    pub reused: bool,
    /// Why it was (not) reused.
    pub reason: String,
    /// Time spent deciding (marker lookup and counting), seconds.
    pub check_s: f64,
    /// `seed subscribers` wall time, seconds (when seeded).
    pub wall_s: Option<f64>,
    /// Subscribers inserted per second.
    pub rate_per_s: Option<f64>,
    /// Peak RSS of `seed subscribers`, KiB.
    pub peak_rss_kb: Option<u64>,
    /// CPU time of `seed subscribers`, seconds.
    pub cpu_s: Option<f64>,
    /// CPU time of the MongoDB server while seeding, seconds.
    pub mongo_server_cpu_s: Option<f64>,
}

/// A ready audience.
#[derive(Debug, Clone)]
pub struct Audience {
    /// The site, hex.
    pub site_id: String,
    /// How it came to be.
    pub seeding: Seeding,
}

/// Reuses or seeds the audience of `config`. `mongo_server` is the MongoDB server's process,
/// when known, for its CPU time; `ticks` converts clock ticks to seconds.
pub async fn prepare(
    config: &BenchConfig,
    store: &Store,
    launcher: &Launcher,
    mongo_server: Option<u32>,
    ticks: f64,
) -> anyhow::Result<Audience> {
    let started = Instant::now();
    let reusable = if config.reuse {
        reusable_site(config, store).await?
    } else {
        Err("--reuse false".to_owned())
    };
    let check_s = started.elapsed().as_secs_f64();
    let reason = match reusable {
        Ok(site_id) => {
            return Ok(Audience {
                site_id,
                seeding: Seeding {
                    reused: true,
                    reason: "the pushbench_meta marker matches".to_owned(),
                    check_s,
                    wall_s: None,
                    rate_per_s: None,
                    peak_rss_kb: None,
                    cpu_s: None,
                    mongo_server_cpu_s: None,
                },
            });
        }
        Err(reason) => reason,
    };
    eprintln!(
        "seeding {} subscribers into {} ({reason})",
        config.subscribers, config.database
    );
    store
        .database()
        .drop()
        .await
        .with_context(|| format!("dropping database {}", config.database))?;
    let site_id = new_site(config, launcher).await?;

    let mongo_before = mongo_server.and_then(crate::procstat::read_stat);
    let mut command = launcher.command("seed");
    let count = config.subscribers.to_string();
    let endpoint_base = config.endpoint_base();
    command
        .args(["subscribers", "--site", &site_id, "--count", &count])
        .args(["--platform", platform_name(config.platform)])
        .args(["--endpoint-base", &endpoint_base])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Its own progress bar goes to our terminal.
        .stderr(Stdio::inherit());
    let seeding_started = Instant::now();
    let mut seeder = Proc::spawn_configured("seed", command)?;
    while !seeder.has_ended() {
        seeder.sample();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let exit = seeder.wait(Duration::from_secs(5)).await?;
    let wall_s = seeding_started.elapsed().as_secs_f64();
    anyhow::ensure!(exit.success(), "`seed subscribers` failed ({exit})");
    let mongo_after = mongo_server.and_then(crate::procstat::read_stat);

    store
        .database()
        .collection::<Document>(META)
        .insert_one(doc! {
            "_id": "audience",
            "siteId": &site_id,
            "count": i64::try_from(config.subscribers).unwrap_or(i64::MAX),
            "platform": platform_name(config.platform),
            "endpointBase": &endpoint_base,
            "keySeed": &config.key_seed,
            "seededAt": bson::DateTime::now(),
            "seedWallS": wall_s,
        })
        .await
        .context("writing the pushbench_meta marker")?;
    Ok(Audience {
        site_id,
        seeding: Seeding {
            reused: false,
            reason,
            check_s,
            wall_s: Some(wall_s),
            rate_per_s: Some(config.subscribers as f64 / wall_s.max(1e-9)),
            peak_rss_kb: Some(seeder.peak_rss_kb()),
            cpu_s: Some(seeder.sample() as f64 / ticks),
            mongo_server_cpu_s: mongo_before
                .zip(mongo_after)
                .map(|(a, b)| b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / ticks),
        },
    })
}

/// The site id of a reusable audience, or why there is none.
async fn reusable_site(
    config: &BenchConfig,
    store: &Store,
) -> anyhow::Result<Result<String, String>> {
    let marker = store
        .database()
        .collection::<Document>(META)
        .find_one(doc! { "_id": "audience" })
        .await
        .context("reading the pushbench_meta marker")?;
    let Some(marker) = marker else {
        return Ok(Err("no marker of an earlier seeding".to_owned()));
    };
    let wanted = i64::try_from(config.subscribers).unwrap_or(i64::MAX);
    let endpoint_base = config.endpoint_base();
    if marker.get_i64("count").ok() != Some(wanted) {
        return Ok(Err("marker counts a different audience size".to_owned()));
    }
    let platform = platform_name(config.platform);
    // Markers written before platforms existed describe Web Push audiences.
    if marker.get_str("platform").unwrap_or("web") != platform {
        return Ok(Err(format!("the audience is not on platform {platform}")));
    }
    if marker.get_str("endpointBase").ok() != Some(endpoint_base.as_str()) {
        return Ok(Err(format!("endpoints are not at {endpoint_base}")));
    }
    if marker.get_str("keySeed").ok() != Some(config.key_seed.as_str()) {
        return Ok(Err("seeded with another SEED_KEY_SEED".to_owned()));
    }
    let Ok(site_hex) = marker.get_str("siteId") else {
        return Ok(Err("marker without a site".to_owned()));
    };
    let site_id = parse_object_id("site", site_hex)?;
    if store.site(site_id).await?.is_none() {
        return Ok(Err(format!("site {site_id} is gone")));
    }
    Ok(Ok(site_hex.to_owned()))
}

/// Team id and bundle id of the benchmark's APNs test credentials.
pub const APNS_TEAM: &str = "PUSHBENCH1";
const APNS_TOPIC: &str = "com.example.pushbench";

/// Creates the benchmark's site, with APNs and FCM test credentials (`seed credentials`)
/// besides its VAPID keys; returns its id.
async fn new_site(config: &BenchConfig, launcher: &Launcher) -> anyhow::Result<String> {
    let dir = config.out_dir.join("credentials");
    let dir_text = dir.to_string_lossy().into_owned();
    let token_uri = format!("{}/token", config.sink_base_url());
    let files = launcher
        .output(
            "seed",
            &["credentials", "--out", &dir_text, "--token-uri", &token_uri],
        )
        .await?;
    let mut lines = files.lines();
    let (Some(p8), Some(account)) = (lines.next(), lines.next()) else {
        anyhow::bail!("`seed credentials` printed {files:?}, not two file names");
    };
    launcher
        .output(
            "seed",
            &[
                "site",
                "--apns-key-file",
                p8,
                "--apns-team-id",
                APNS_TEAM,
                "--apns-topic",
                APNS_TOPIC,
                "--fcm-service-account",
                account,
            ],
        )
        .await
}

/// Files of the site's APNs key and FCM service account, for a verifying simulator.
#[derive(Debug, Clone)]
pub struct MobileKeys {
    /// `AuthKey_<KEYID>.p8`.
    pub apns_key_file: PathBuf,
    /// The service-account JSON.
    pub fcm_service_account: PathBuf,
}

/// Writes the APNs key and FCM service account stored on `site_id` into the run's output
/// directory (a reused audience's site was created by an earlier run); `None` when the site
/// has neither.
pub async fn mobile_keys(
    config: &BenchConfig,
    store: &Store,
    site_id: &str,
) -> anyhow::Result<Option<MobileKeys>> {
    let site = store
        .site(parse_object_id("site", site_id)?)
        .await?
        .with_context(|| format!("site {site_id} is gone"))?;
    let (Some(apns), Some(fcm)) = (site.apns, site.fcm) else {
        return Ok(None);
    };
    let dir = config.out_dir.join("site-credentials");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let keys = MobileKeys {
        apns_key_file: dir.join(format!("AuthKey_{}.p8", apns.key_id)),
        fcm_service_account: dir.join("service-account.json"),
    };
    std::fs::write(&keys.apns_key_file, apns.private_key)
        .with_context(|| format!("writing {}", keys.apns_key_file.display()))?;
    std::fs::write(&keys.fcm_service_account, fcm.service_account)
        .with_context(|| format!("writing {}", keys.fcm_service_account.display()))?;
    Ok(Some(keys))
}

/// Forgets the seeded audience (deletes the marker), for a run that may unsubscribe some of
/// it: the simulator answers 404/410 to a planned share of subscribers.
pub async fn invalidate(store: &Store) -> anyhow::Result<()> {
    store
        .database()
        .collection::<Document>(META)
        .delete_one(doc! { "_id": "audience" })
        .await
        .context("deleting the pushbench_meta marker")?;
    Ok(())
}

/// Creates this run's push for `site_id`; returns its id.
pub async fn new_push(
    config: &BenchConfig,
    launcher: &Launcher,
    site_id: &str,
) -> anyhow::Result<String> {
    let title = format!("pushbench {}", config.stamp);
    launcher
        .output(
            "seed",
            &[
                "push",
                "--site",
                site_id,
                "--title",
                &title,
                "--body",
                "One of a benchmark's deliveries.",
            ],
        )
        .await
}
