//! The phases of `pushbench api`, against a running pushapi:
//!
//! 1. `POST /v1/sites` (admin token): the run's site and its API key;
//! 2. N registrations, then a sample registered again (idempotency);
//! 3. `POST /v1/sites/{siteId}/pushes` (site key, `send: true`): a push, sent to the run's
//!    raw-push topic where no parser reads it (events of an unsent push are ignored);
//! 4. M events for registered subscribers while a poller follows the push's totals, until
//!    they equal the distinct pairs sent; a last look after the writer's flush interval
//!    makes sure late duplicates did not raise them.
//!
//! Each phase's figures are stored in [`Partial`] as soon as it ends, so a failure later
//! still leaves a result of what was measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::api::client::{self, EventTotals, Site};
use crate::api::config::ApiBenchConfig;
use crate::api::daemon::{Pushapi, reset_peak_rss};
use crate::api::load::{self, worker_client};
use crate::api::plan::{self, PLAN_SEED};
use crate::api::report::{
    Counted, Events, Idempotency, PlanReport, PollSample, Registrations, RequestStats,
};
use crate::api::usage::Meter;
use crate::procstat::read_memory;
use crate::services::parse_ss_pid;

/// Timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How many mismatching answers of the idempotency check are kept as examples.
const EXAMPLES: usize = 5;

/// The poller gives up when every event is answered and the totals have not moved for this
/// long (pushapi ignored events, or stopped writing them).
const STALL: Duration = Duration::from_secs(60);

/// What the run has measured so far.
#[derive(Debug, Default)]
pub struct Partial {
    /// The pushapi process.
    pub api: Option<Pushapi>,
    /// The run's site.
    pub site: Option<Site>,
    /// The run's push.
    pub push_id: Option<String>,
    /// Phase 1.
    pub registrations: Option<Registrations>,
    /// After phase 1.
    pub idempotency: Option<Idempotency>,
    /// Phase 2.
    pub events: Option<Events>,
    /// Whether pushapi's peak-RSS mark could be reset per phase.
    pub peak_reset: bool,
}

/// Runs every phase against `partial.api`, recording figures into `partial`.
pub async fn measure(
    config: &ApiBenchConfig,
    meter: &Meter,
    http: &reqwest::Client,
    partial: &mut Partial,
) -> anyhow::Result<()> {
    let Partial {
        api,
        site,
        push_id,
        registrations,
        idempotency,
        events,
        peak_reset,
    } = partial;
    let api = api.as_mut().context("pushapi is not running")?;
    let base = api.base_url.clone();
    let clients: Vec<reqwest::Client> = (0..config.concurrency)
        .map(|_| worker_client(REQUEST_TIMEOUT))
        .collect::<anyhow::Result<_>>()?;

    let run_site = client::create_site(http, &base, &api.admin_token, &config.stamp).await?;
    eprintln!("site {} created", run_site.id);
    *site = Some(run_site.clone());

    eprintln!(
        "phase 1: {} registrations from {} connections",
        config.subscribers, config.concurrency
    );
    *peak_reset = reset_peak_rss(api.proc.pid());
    let url = Arc::new(format!("{base}/v1/sites/{}/subscribers", run_site.id));
    let stamp = config.stamp.clone();
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..config.subscribers)
            .map(|i| plan::subscription_body(&stamp, i))
            .collect(),
    );
    let before = meter.snapshot(&mut api.proc);
    let run = {
        let (url, bodies) = (Arc::clone(&url), Arc::clone(&bodies));
        load::run(
            "registrations",
            bodies.len(),
            config.concurrency,
            &clients,
            Arc::new(AtomicUsize::new(0)),
            move |client, i| {
                let (url, body) = (Arc::clone(&url), bodies[i].clone());
                async move { client::register(&client, &url, body).await }
            },
        )
        .await?
    };
    let after = meter.snapshot(&mut api.proc);
    let ids: Vec<Option<String>> = run
        .done
        .iter()
        .map(|d| match (&d.answer.status, &d.answer.value) {
            (Some(201), Some(registered)) if registered.created => Some(registered.id.clone()),
            _ => None,
        })
        .collect();
    let created = ids.iter().flatten().count() as u64;
    let distinct_ids = ids
        .iter()
        .flatten()
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    let stats = RequestStats::of(&run);
    let port = api
        .base_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    *registrations = Some(Registrations {
        cpu: meter.between(&before, &after, stats.requests),
        stats,
        created,
        distinct_ids,
        pushapi_peak_rss_kb: read_memory(api.proc.pid()).map(|(hwm, _)| hwm),
        connections: established_connections(port),
    });

    let sample = config.idempotency_sample as usize;
    if sample > 0 {
        let n = bodies.len();
        let indices: Arc<Vec<usize>> = Arc::new((0..sample).map(|k| k * n / sample).collect());
        let run = {
            let (url, bodies, indices) =
                (Arc::clone(&url), Arc::clone(&bodies), Arc::clone(&indices));
            load::run(
                "re-registrations",
                indices.len(),
                config.concurrency,
                &clients,
                Arc::new(AtomicUsize::new(0)),
                move |client, k| {
                    let (url, body) = (Arc::clone(&url), bodies[indices[k]].clone());
                    async move { client::register(&client, &url, body).await }
                },
            )
            .await?
        };
        let mut same_id = 0;
        let mut mismatches = Vec::new();
        for done in &run.done {
            let first = ids[indices[done.index]].as_deref();
            let answer = &done.answer;
            let same = answer.status == Some(200)
                && answer
                    .value
                    .as_ref()
                    .is_some_and(|r| !r.created && Some(r.id.as_str()) == first);
            if same {
                same_id += 1;
            } else if mismatches.len() < EXAMPLES {
                mismatches.push(format!(
                    "subscriber #{}: first {first:?}, again {:?} {:?}",
                    indices[done.index], answer.status, answer.value
                ));
            }
        }
        *idempotency = Some(Idempotency {
            stats: RequestStats::of(&run),
            same_id,
            mismatches,
        });
    }

    let registered: Vec<String> = ids.into_iter().flatten().collect();
    anyhow::ensure!(
        !registered.is_empty(),
        "no registration succeeded; nothing to send events for"
    );
    let run_push = client::create_push(http, &base, &run_site, &config.stamp).await?;
    *push_id = Some(run_push.clone());
    eprintln!(
        "phase 2: {} events for push {run_push} from {} connections",
        config.events, config.concurrency
    );
    *events = Some(
        post_events(
            config,
            meter,
            api,
            http,
            &clients,
            &run_site,
            &run_push,
            &registered,
            *peak_reset,
        )
        .await?,
    );
    Ok(())
}

/// Phase 2: posts the planned events and follows the totals until they are complete.
#[allow(clippy::too_many_arguments)]
async fn post_events(
    config: &ApiBenchConfig,
    meter: &Meter,
    api: &mut Pushapi,
    http: &reqwest::Client,
    clients: &[reqwest::Client],
    site: &Site,
    push_id: &str,
    registered: &[String],
    peak_reset: bool,
) -> anyhow::Result<Events> {
    let planned = plan::plan_events(
        registered.len(),
        config.events,
        config.duplicate_per_mille,
        PLAN_SEED,
    );
    let bodies: Arc<Vec<String>> = Arc::new(
        planned
            .events
            .iter()
            .map(|(i, kind)| plan::event_body(push_id, &registered[*i], *kind))
            .collect(),
    );
    let expected = EventTotals {
        delivered: planned.expected_delivered as i64,
        clicked: planned.expected_clicked as i64,
        closed: 0,
    };
    let url = Arc::new(format!("{}/v1/events", api.base_url));
    let answered = Arc::new(AtomicUsize::new(0));
    if peak_reset {
        reset_peak_rss(api.proc.pid());
    }
    let poller = Poller {
        http: http.clone(),
        base: api.base_url.clone(),
        push_id: push_id.to_owned(),
        key: site.key.clone(),
        expected,
        events: bodies.len(),
        answered: Arc::clone(&answered),
        interval: config.poll,
        deadline: config.timeout,
    };
    let before = meter.snapshot(&mut api.proc);
    let t0 = Instant::now();
    let polling = tokio::spawn(poller.run(t0));
    let run = {
        let (url, bodies) = (Arc::clone(&url), Arc::clone(&bodies));
        load::run(
            "events",
            bodies.len(),
            config.concurrency,
            clients,
            answered,
            move |client, i| {
                let (url, body) = (Arc::clone(&url), bodies[i].clone());
                async move { client::post_event(&client, &url, body).await }
            },
        )
        .await?
    };
    let accepted = meter.snapshot(&mut api.proc);
    let mut polled = polling.await.context("the totals poller panicked")?;
    let counted_at = meter.snapshot(&mut api.proc);
    let accept = RequestStats::of(&run);
    let busy_retries = run.done.iter().map(|d| u64::from(d.answer.retries)).sum();

    // Events still queued after the totals were complete could only be duplicates: give the
    // writer two flush intervals and a second, then look again.
    if polled.reached_at.is_some() {
        let flush_ms = api
            .settings
            .get("API_EVENTS_FLUSH_MS")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(500);
        tokio::time::sleep(Duration::from_millis(2 * flush_ms + 1_000)).await;
        let totals = client::push_totals(http, &api.base_url, push_id, &site.key).await?;
        if totals.delivered > expected.delivered || totals.clicked > expected.clicked {
            polled.overcount = Some(totals);
        }
        polled.last = Some(totals);
    }
    let wall_s = polled.reached_at;
    let events = bodies.len() as f64;
    Ok(Events {
        plan: PlanReport {
            events: bodies.len() as u64,
            distinct: planned.distinct,
            duplicates: planned.duplicates,
            duplicate_per_mille: planned.duplicates * 1000 / (bodies.len() as u64).max(1),
            subscribers: planned.expected_delivered,
            expected_delivered: planned.expected_delivered,
            expected_clicked: planned.expected_clicked,
        },
        accept_cpu: meter.between(&before, &accepted, accept.requests),
        counted: Counted {
            reached: wall_s.is_some() && polled.overcount.is_none(),
            wall_s: wall_s.map(round3),
            events_per_s: wall_s.map(|w| (events / w.max(1e-9)).round()),
            distinct_per_s: wall_s.map(|w| (planned.distinct as f64 / w.max(1e-9)).round()),
            lag_after_acceptance_s: wall_s.map(|w| round3(w - accept.wall_s)),
            last_totals: polled.last,
            overcount: polled.overcount,
            cpu: if wall_s.is_some() {
                meter.between(&before, &counted_at, accept.requests)
            } else {
                Vec::new()
            },
        },
        accept,
        busy_retries,
        pushapi_peak_rss_kb: read_memory(api.proc.pid()).map(|(hwm, _)| hwm),
        timeline: polled.samples,
    })
}

/// Follows a push's totals while its events are posted.
struct Poller {
    http: reqwest::Client,
    base: String,
    push_id: String,
    key: String,
    expected: EventTotals,
    events: usize,
    answered: Arc<AtomicUsize>,
    interval: Duration,
    deadline: Duration,
}

/// What the poller saw.
#[derive(Debug, Default)]
struct Polled {
    samples: Vec<PollSample>,
    /// Seconds from the first event to the poll that saw everything answered and counted.
    reached_at: Option<f64>,
    overcount: Option<EventTotals>,
    last: Option<EventTotals>,
}

impl Poller {
    /// Polls from `t0` until every event is answered and the totals are complete, the totals
    /// go above the expected counts, they stall (unchanged for [`STALL`] with every event
    /// answered), or the deadline passes.
    async fn run(self, t0: Instant) -> Polled {
        let mut polled = Polled::default();
        let mut moved = Instant::now();
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let answered = self.answered.load(Ordering::Relaxed);
            let totals =
                client::push_totals(&self.http, &self.base, &self.push_id, &self.key).await;
            let counted =
                client::metric(&self.http, &self.base, "pushapi_events_counted_total").await;
            let t_s = t0.elapsed().as_secs_f64();
            if let Ok(totals) = totals {
                if polled.last != Some(totals) || answered < self.events {
                    moved = Instant::now();
                }
                polled.last = Some(totals);
                polled.samples.push(PollSample {
                    t_s: round3(t_s),
                    answered: answered as u64,
                    delivered: totals.delivered,
                    clicked: totals.clicked,
                    counted_metric: counted,
                });
                if totals.delivered > self.expected.delivered
                    || totals.clicked > self.expected.clicked
                {
                    polled.overcount = Some(totals);
                    return polled;
                }
                if answered >= self.events
                    && totals.delivered == self.expected.delivered
                    && totals.clicked == self.expected.clicked
                {
                    polled.reached_at = Some(t_s);
                    return polled;
                }
            }
            if t0.elapsed() >= self.deadline || moved.elapsed() >= STALL {
                return polled;
            }
        }
    }
}

/// Established TCP connections to `port` on this machine whose local end is a client
/// (destination port `port`), from `ss`.
fn established_connections(port: u16) -> Option<usize> {
    let out = std::process::Command::new("ss")
        .args([
            "-Htnp",
            "state",
            "established",
            &format!("( dport = :{port} )"),
        ])
        .output()
        .ok()?;
    let own = std::process::id();
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|line| parse_ss_pid(line) == Some(own))
            .count(),
    )
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
