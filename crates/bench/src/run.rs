//! One benchmark run, step by step.
//!
//! 1. check that Kafka and MongoDB answer; find their processes;
//! 2. reuse or seed the audience (measured on its own);
//! 3. start the simulator; create the run's topics and indexes with `pushctl setup`;
//! 4. create a new push; start the parser and the senders; wait until they are settled;
//! 5. reset the simulator's counters, take t = 0, run `pushctl send`;
//! 6. sample until every delivery has an outcome (or timeout);
//! 7. stop the fleet with SIGTERM, read the final push document, delete topics and groups;
//! 8. write `result.json` and `throughput.svg`, print the summary.
//!
//! Whatever fails after the topics exist, the fleet is stopped and the topics are deleted
//! before the error is returned.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use pushservice_model::{PushStatus, parse_object_id};
use pushservice_store::Store;

use crate::config::BenchConfig;
use crate::fleet::Daemons;
use crate::launch::Launcher;
use crate::monitor::{End, Watch, Watched, watch};
use crate::procs::Proc;
use crate::procstat::{Machine, clock_ticks_per_second, read_memory};
use crate::report::{BenchResult, Facts, ProcessFacts};
use crate::seed::{Audience, prepare};
use crate::services::{KafkaAdmin, first_port, service_pids};
use crate::sink::SinkClient;
use crate::svg::{Chart, render};
use crate::{fleet, seed, summary};

/// Runs the benchmark; `Ok(true)` when every delivery was accepted.
pub async fn run(config: BenchConfig) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&config.out_dir)
        .with_context(|| format!("creating {}", config.out_dir.display()))?;
    // Absolute, because the children are handed paths inside it.
    let out_dir = config
        .out_dir
        .canonicalize()
        .context("resolving --out-dir")?;
    let config = BenchConfig { out_dir, ..config };
    let clk = clock_ticks_per_second();
    eprintln!(
        "pushbench {}: {} subscribers, {} senders, {} simulator{}; output in {}",
        config.stamp,
        config.subscribers,
        config.senders,
        config.sink_protocol,
        if config.sink_verify {
            " (verifying)"
        } else {
            ""
        },
        config.out_dir.display()
    );

    let (store, admin) = crate::services::connect(&config.mongodb_url, &config.kafka).await?;
    let launcher = Launcher::new(&config)?;
    let mut others = service_pids(
        &config.bin_dir,
        first_port(&config.kafka.brokers, 9092),
        first_port(&config.mongodb_url, 27017),
    );
    others.push(("pushbench".to_owned(), std::process::id()));
    let mongo_server = others
        .iter()
        .find(|(n, _)| n == "ferretdb")
        .map(|(_, pid)| *pid);
    let audience = prepare(&config, &store, &launcher, mongo_server, clk as f64).await?;

    let mobile_keys = seed::mobile_keys(&config, &store, &audience.site_id).await?;
    let (sink_proc, sink) = fleet::start_sink(&config, &launcher, mobile_keys.as_ref()).await?;
    let mut procs = vec![sink_proc];
    let measured = async {
        launcher.output("pushctl", &["setup"]).await?;
        measure(
            &config, &store, &admin, &launcher, &sink, &mut procs, &others, &audience,
        )
        .await
    }
    .await;
    let exits = fleet::stop(&mut procs).await;
    let cleanup_problems = admin
        .delete_run(&config.all_topics(), &config.groups())
        .await;
    let measured = measured?;

    let mut processes = Vec::new();
    for (proc, exit) in procs.iter_mut().zip(exits) {
        processes.push(ProcessFacts {
            name: proc.name.clone(),
            kind: "child",
            pid: proc.pid(),
            peak_rss_kb: Some(proc.peak_rss_kb()),
            lifetime_ticks: Some(proc.sample()),
            exit: exit.ok(),
        });
    }
    processes.extend(others.iter().map(|(name, pid)| ProcessFacts {
        name: name.clone(),
        kind: if *pid == std::process::id() {
            "self"
        } else {
            "service"
        },
        pid: *pid,
        peak_rss_kb: read_memory(*pid).map(|(hwm, _)| hwm),
        lifetime_ticks: None,
        exit: None,
    }));
    let final_push = store.push(measured.push_id).await.ok().flatten();
    store.close().await;

    let complete = measured.watch.end == End::Complete;
    let result = BenchResult::build(Facts {
        config: &config,
        machine: Machine::read(clk),
        site_id: audience.site_id.clone(),
        push_id: measured.push_id.to_hex(),
        seeding: audience.seeding.clone(),
        t0_unix_ms: measured.t0_unix_ms,
        watch: &measured.watch,
        processes,
        final_push,
        cleanup_problems,
    });
    write_outputs(&config, &result)?;
    Ok(complete)
}

/// What the delivery phase produced.
struct Measured {
    push_id: pushservice_model::ObjectId,
    t0_unix_ms: u64,
    watch: Watch,
}

/// Steps 4 to 6: push, daemons, send, watch.
#[allow(clippy::too_many_arguments)]
async fn measure(
    config: &BenchConfig,
    store: &Store,
    admin: &KafkaAdmin,
    launcher: &Launcher,
    sink: &SinkClient,
    procs: &mut Vec<Proc>,
    others: &[(String, u32)],
    audience: &Audience,
) -> anyhow::Result<Measured> {
    if config.may_unsubscribe() {
        seed::invalidate(store).await?;
    }
    let push_hex = seed::new_push(config, launcher, &audience.site_id).await?;
    let push_id = parse_object_id("push", &push_hex)?;
    let backlog = config.backlog;
    let first = if backlog {
        Daemons::Parser
    } else {
        Daemons::All
    };
    fleet::start_daemons(config, launcher, sink, admin, procs, first).await?;

    sink.reset().await?;
    let mut send = launcher.command("pushctl");
    send.args(["send", &push_hex]);
    let mut send = Proc::spawn("pushctl-send", send, &launcher.log("pushctl"))?;
    let send_started = Instant::now();
    if backlog {
        // Fan the whole push out first; the clock starts when the senders do.
        let exit = send.wait(config.timeout).await?;
        anyhow::ensure!(
            exit.success(),
            "`pushctl send` failed ({exit}); see pushctl.log"
        );
        wait_until_fanned_out(store, push_id, config.timeout).await?;
        eprintln!(
            "push {push_hex} fanned out in {:.1} s with no sender running; starting the senders",
            send_started.elapsed().as_secs_f64()
        );
        fleet::start_daemons(config, launcher, sink, admin, procs, Daemons::Senders).await?;
    }
    let mut watched = Watched {
        children: procs.as_mut_slice(),
        others,
    };
    let baseline = watched.cpu_ticks();
    let t0_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let t0 = if backlog {
        Instant::now()
    } else {
        send_started
    };
    eprintln!(
        "push {push_hex} {}; waiting for {} deliveries",
        if backlog { "in the backlog" } else { "sent" },
        config.subscribers
    );
    let watch = watch(
        sink,
        store,
        push_id,
        config.subscribers,
        (!backlog).then_some(send),
        t0,
        watched,
        baseline,
        config.sample,
        config.timeout,
    )
    .await?;
    if watch.end == End::Complete {
        settle_counters(store, push_id).await;
    }
    Ok(Measured {
        push_id,
        t0_unix_ms,
        watch,
    })
}

/// Waits until the parser has marked the push `done` (backlog mode).
async fn wait_until_fanned_out(
    store: &Store,
    push_id: pushservice_model::ObjectId,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let push = store.push(push_id).await?;
        match push.as_ref().map(|p| p.status) {
            Some(PushStatus::Done) => return Ok(()),
            Some(PushStatus::Failed | PushStatus::Canceled) => {
                anyhow::bail!(
                    "push {push_id} ended {:?} during the fan-out",
                    push.map(|p| p.status)
                )
            }
            _ => {}
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "push {push_id} not fanned out in {timeout:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Waits (up to 5 s) until the senders' periodic counter flushes account for every delivery
/// message in the push document.
async fn settle_counters(store: &Store, push_id: pushservice_model::ObjectId) {
    let started = Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(5) {
        if let Ok(Some(push)) = store.push(push_id).await
            && push.total_accepted + push.total_unsubscribed + push.total_failed >= push.total_sent
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Writes `result.json` and `throughput.svg` and prints the summary.
fn write_outputs(config: &BenchConfig, result: &BenchResult) -> anyhow::Result<()> {
    let json_path = config.out_dir.join("result.json");
    let svg_path = config.out_dir.join("throughput.svg");
    let json = serde_json::to_string_pretty(result).context("serialising the result")?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let (t_s, rate, accepted, fanned_out) = result.chart_series();
    let wall = result
        .wall
        .total_s
        .map_or_else(|| "incomplete".to_owned(), |s| format!("{s:.1} s wall"));
    let chart = Chart {
        title: format!(
            "pushbench: {} subscribers, {} senders — {wall}",
            summary::thousands(config.subscribers),
            config.senders
        ),
        subtitle: format!(
            "{} simulator{}, {} push partitions, run {} ({})",
            config.sink_protocol,
            if config.sink_verify {
                " verifying"
            } else {
                " counting"
            },
            config.push_partitions,
            config.stamp,
            result.outcome
        ),
        t_s,
        rate,
        accepted,
        fanned_out,
        target: config.subscribers as f64,
    };
    std::fs::write(&svg_path, render(&chart))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    print!(
        "{}",
        summary::render(result, config.subscribers, &json_path, &svg_path)
    );
    Ok(())
}
