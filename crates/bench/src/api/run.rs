//! One `pushbench api` run, step by step.
//!
//! 1. check that Kafka and MongoDB answer; find their processes;
//! 2. `pushctl setup` on the run's database and topics;
//! 3. start pushapi and wait for `/readyz`;
//! 4. the phases ([`crate::api::phases`]);
//! 5. stop pushapi with SIGTERM (it drains its event queue), then read the push document and
//!    the counters from MongoDB directly;
//! 6. delete the run's topics and database; write `result.json`, print the summary.
//!
//! Whatever fails after the topics exist, pushapi is stopped and the topics and database are
//! deleted; what was measured until then is still written.

use std::time::Duration;

use anyhow::Context as _;
use bson::{Document, doc};
use pushservice_model::parse_object_id;
use pushservice_store::Store;

use crate::api::client::EventTotals;
use crate::api::config::ApiBenchConfig;
use crate::api::daemon::{self, PUSHAPI, STOP_GRACE};
use crate::api::load::worker_client;
use crate::api::phases::{Partial, measure};
use crate::api::report::{self, ApiBenchResult, ConfigReport, Final, NOTES, ProcessSummary};
use crate::api::usage::Meter;
use crate::checks::git_describe;
use crate::launch::{Launcher, kafka_env};
use crate::procstat::{Machine, clock_ticks_per_second};
use crate::services::{first_port, service_pids};

/// Runs `pushbench api`; `Ok(true)` when every expectation held.
pub async fn run(config: ApiBenchConfig) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&config.out_dir)
        .with_context(|| format!("creating {}", config.out_dir.display()))?;
    let out_dir = config
        .out_dir
        .canonicalize()
        .context("resolving --out-dir")?;
    let config = ApiBenchConfig { out_dir, ..config };
    let clk = clock_ticks_per_second();
    eprintln!(
        "pushbench api {}: {} registrations, {} events, {} connections; database {}; output in {}",
        config.stamp,
        config.subscribers,
        config.events,
        config.concurrency,
        config.database,
        config.out_dir.display()
    );
    let (store, admin) = crate::services::connect(&config.mongodb_url, &config.kafka).await?;
    let launcher = launcher(&config)?;
    let mut others = service_pids(
        &config.bin_dir,
        first_port(&config.kafka.brokers, 9092),
        first_port(&config.mongodb_url, 27017),
    );
    others.push(("pushbench".to_owned(), std::process::id()));
    let meter = Meter {
        others,
        clk: clk as f64,
    };
    let http = worker_client(Duration::from_secs(30))?;

    let mut partial = Partial::default();
    let measured: anyhow::Result<()> = async {
        launcher.output("pushctl", &["setup"]).await?;
        partial.api = Some(daemon::start(&config, &launcher, &http).await?);
        measure(&config, &meter, &http, &mut partial).await
    }
    .await;
    let mut pushapi = None;
    if let Some(api) = partial.api.as_mut() {
        let exit = api.proc.stop(STOP_GRACE).await.ok();
        pushapi = Some(ProcessSummary {
            pid: api.proc.pid(),
            cpu_lifetime_s: api.proc.sample() as f64 / clk as f64,
            peak_rss_kb: api.proc.peak_rss_kb(),
            peak_rss_reset: partial.peak_reset,
            exit,
        });
    }
    let final_check = read_final(&store, &partial).await;

    let mut cleanup_problems = admin.delete_run(&config.all_topics(), &[]).await;
    if !config.keep_database
        && let Err(e) = store.database().drop().await
    {
        cleanup_problems.push(format!("dropping database {}: {e}", config.database));
    }
    store.close().await;

    let mut result = ApiBenchResult {
        mode: "api",
        outcome: String::new(),
        run: config.stamp.clone(),
        config: ConfigReport {
            subscribers: config.subscribers,
            events: config.events,
            concurrency: config.concurrency,
            duplicate_per_mille: config.duplicate_per_mille,
            idempotency_sample: config.idempotency_sample,
            poll_ms: config.poll.as_millis(),
            database: config.database.clone(),
            keep_database: config.keep_database,
            api_url: partial
                .api
                .as_ref()
                .map_or_else(String::new, |a| a.base_url.clone()),
            pushapi_settings: partial
                .api
                .as_ref()
                .map(|a| a.settings.clone())
                .unwrap_or_default(),
            site_id: partial.site.as_ref().map(|s| s.id.clone()),
            push_id: partial.push_id.clone(),
            topics: config.all_topics(),
            git: git_describe(),
            pushapi_modified_unix_s: std::fs::metadata(config.bin_dir.join(PUSHAPI))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            bin_dir: config.bin_dir.display().to_string(),
            machine: Machine::read(clk),
        },
        registrations: partial.registrations.clone(),
        idempotency: partial.idempotency.clone(),
        events: partial.events.clone(),
        final_check,
        pushapi,
        failures: Vec::new(),
        warnings: Vec::new(),
        cleanup_problems,
        notes: NOTES.to_vec(),
    };
    let created = result.registrations.as_ref().map_or(0, |r| r.created);
    result.failures = report::failures(&result, created);
    result.warnings = report::warnings(&result);
    if let Err(e) = &measured {
        result.failures.insert(0, format!("error: {e:#}"));
    }
    result.outcome = match result.failures.first() {
        None => "complete".to_owned(),
        Some(first) => format!("failed: {first}"),
    };
    let json_path = config.out_dir.join("result.json");
    let json = serde_json::to_string_pretty(&result).context("serialising the result")?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    print!("{}", report::render(&result, &json_path));
    Ok(result.failures.is_empty())
}

/// The launcher of the run: its database, Kafka, per-run topics (one partition each: pushapi
/// only checks the raw-push topic, no push is sent), and pushapi's log level.
fn launcher(config: &ApiBenchConfig) -> anyhow::Result<Launcher> {
    let [raw, push, dlq, retry, outcomes] = config.topics();
    let mut env = kafka_env(&config.kafka_args);
    env.push(("MONGODB_URL".to_owned(), config.mongodb_url.clone()));
    for (key, value) in [
        ("TOPIC_RAW_PUSH", raw),
        ("TOPIC_PUSH", push),
        ("TOPIC_PUSH_DLQ", dlq),
        ("TOPIC_PUSH_RETRY", retry),
        ("TOPIC_PUSH_OUTCOMES", outcomes),
    ] {
        env.push((key.to_owned(), value));
    }
    for key in [
        "TOPIC_RAW_PUSH_PARTITIONS",
        "TOPIC_PUSH_PARTITIONS",
        "TOPIC_PUSH_DLQ_PARTITIONS",
        "TOPIC_PUSH_RETRY_PARTITIONS",
        "TOPIC_PUSH_OUTCOMES_PARTITIONS",
    ] {
        env.push((key.to_owned(), "1".to_owned()));
    }
    env.push(("LOG_LEVEL".to_owned(), config.log_level.clone()));
    Launcher::with_env(&config.bin_dir, &config.out_dir, &[PUSHAPI, "pushctl"], env)
}

/// What MongoDB holds once pushapi has stopped (best effort: a field is `None` when it could
/// not be read).
async fn read_final(store: &Store, partial: &Partial) -> Final {
    let database = store.database();
    let count = |name: &'static str, filter: Document| {
        let collection = database.collection::<Document>(name);
        async move { collection.count_documents(filter).await.ok() }
    };
    let mut out = Final::default();
    if let Some(site) = partial
        .site
        .as_ref()
        .and_then(|s| parse_object_id("site", &s.id).ok())
    {
        out.subscribers_docs = count("subscribers", doc! { "siteId": site }).await;
        out.subscriber_claims_docs = count("subscriberClaims", doc! { "siteId": site }).await;
    }
    let Some(push_id) = partial
        .push_id
        .as_ref()
        .and_then(|p| parse_object_id("push", p).ok())
    else {
        return out;
    };
    if let Ok(Some(push)) = store.push(push_id).await {
        out.push_total_deliver = Some(push.total_deliver);
        out.push_total_click = Some(push.total_click);
    }
    out.event_stats = store.event_counts(push_id).await.ok().map(|c| EventTotals {
        delivered: c.delivered,
        clicked: c.clicked,
        closed: c.closed,
    });
    out.push_events_docs = count("pushEvents", doc! {}).await;
    out
}
