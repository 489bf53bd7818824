//! The pushservice side of the side-by-side peer run (`scripts/bench-peer`): the CPU our
//! delivery path spends per Web Push message, measured the same way as the npm `web-push`
//! peer in `bench/peer/send.js`, against the same push-service simulator and the same
//! deliveries.
//!
//! Two modes, run as separate processes so that making the deliveries never counts as
//! sending them:
//!
//! ```text
//! # 1. Write the shared input: a header line (VAPID key pair, subject, payload, TTL,
//! #    urgency), then one PushSubscription per line, for subscribers whose keys are derived
//! #    from the key seed exactly as `pushservice_seed::subscriber_keys` derives them, so a
//! #    verifying `push-sink` with the same SEED_KEY_SEED decrypts what both peers send.
//! cargo run --release -p pushservice-webpush --example peer_rust -- \
//!     --generate subscriptions.jsonl --endpoint-base https://127.0.0.1:9443/wp \
//!     --count 100000 --key-seed bench-peer
//!
//! # 2. Send every delivery in the file through one `WebPushClient` with at most C in
//! #    flight, and print one JSON line with CPU µs per message.
//! cargo run --release -p pushservice-webpush --example peer_rust -- \
//!     --send subscriptions.jsonl --concurrency 256 [--ca-file sink-cert.pem] [--threads 2]
//! ```
//!
//! What is measured is the product's per-message path, [`WebPushClient::send`]: a fresh
//! ephemeral P-256 key and salt per message (RFC 8291), the cached VAPID header (RFC 8292),
//! one pooled HTTP/2 connection negotiated by ALPN. The subscription's base64url keys are
//! decoded inside the measured loop, as the sender decodes them per delivery. CPU is the
//! process's user + system time from `/proc/self/stat` (all threads, including exited ones),
//! read just before and after the send phase; setting up the client, the runtime and reading
//! the file are outside it, as in the Node peer.

use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use aws_lc_rs::agreement::{self, ECDH_P256};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pushservice_model::{ObjectId, Urgency};
use pushservice_provider::{DeliveryOutcome, EndpointPolicy, HttpConfig};
use pushservice_webpush::{
    VapidKey, WebPushClient, WebPushConfig, WebPushRequest, decode_auth, decode_p256dh,
};
use serde::{Deserialize, Serialize};

/// The VAPID contact both peers sign with.
const SUBJECT: &str = "mailto:bench@example.com";

/// A notification of typical size (~300 bytes of JSON), the same bytes for every delivery
/// and both peers; it travels in the input file's header so the Node peer sends it verbatim.
const PAYLOAD: &str = concat!(
    r#"{"pushId":"65a1b2c3d4e5f60718293a4b","title":"Spring sale: 30% off everything","#,
    r#""options":{"body":"Our biggest sale of the season starts now. Tap to see this "#,
    r#"week's deals before they are gone.","icon":"https://cdn.example.com/i/shop-192.png","#,
    r#""data":{"url":"https://shop.example.com/sale?utm_source=push"}}}"#
);

/// TTL and urgency of every delivery (the issue's "TTL 3600, urgency normal").
const TTL: u32 = 3600;

/// First line of the input file: what every delivery shares.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    vapid: VapidPair,
    payload: String,
    ttl: u32,
    urgency: String,
    count: usize,
}

/// A VAPID key pair in base64url, as `web-push`'s `vapidDetails` takes it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VapidPair {
    subject: String,
    public_key: String,
    private_key: String,
}

/// One line after the header: a browser's `PushSubscription.toJSON()`, which `web-push`
/// takes as is.
#[derive(Debug, Serialize, Deserialize)]
struct Subscription {
    endpoint: String,
    keys: SubscriptionKeys,
}

#[derive(Debug, Serialize, Deserialize)]
struct SubscriptionKeys {
    p256dh: String,
    auth: String,
}

/// What the command line asks for.
enum Mode {
    Generate {
        out: PathBuf,
        endpoint_base: String,
        count: usize,
        key_seed: String,
    },
    Send {
        input: PathBuf,
        concurrency: usize,
        ca_file: Option<PathBuf>,
        threads: Option<usize>,
    },
}

fn parse_args() -> Result<Mode, String> {
    let mut generate = None;
    let mut send = None;
    let mut endpoint_base = None;
    let mut count = None;
    let mut key_seed = None;
    let mut concurrency = 256;
    let mut ca_file = None;
    let mut threads = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| {
            text.parse::<usize>()
                .map_err(|_| format!("{flag}: {text:?} is not a number"))
        };
        match flag.as_str() {
            "--generate" => generate = Some(PathBuf::from(value()?)),
            "--send" => send = Some(PathBuf::from(value()?)),
            "--endpoint-base" => endpoint_base = Some(value()?),
            "--count" => count = Some(number(value()?)?),
            "--key-seed" => key_seed = Some(value()?),
            "--concurrency" => concurrency = number(value()?)?,
            "--ca-file" => ca_file = Some(PathBuf::from(value()?)),
            "--threads" => threads = Some(number(value()?)?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    match (generate, send) {
        (Some(out), None) => Ok(Mode::Generate {
            out,
            endpoint_base: endpoint_base.ok_or("--generate needs --endpoint-base")?,
            count: count.ok_or("--generate needs --count")?,
            key_seed: key_seed.ok_or("--generate needs --key-seed")?,
        }),
        (None, Some(input)) if concurrency > 0 => Ok(Mode::Send {
            input,
            concurrency,
            ca_file,
            threads,
        }),
        (None, Some(_)) => Err("--concurrency must be at least 1".to_owned()),
        _ => Err("give exactly one of --generate FILE or --send FILE".to_owned()),
    }
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|mode| match mode {
        Mode::Generate {
            out,
            endpoint_base,
            count,
            key_seed,
        } => generate(&out, &endpoint_base, count, key_seed.as_bytes()),
        Mode::Send {
            input,
            concurrency,
            ca_file,
            threads,
        } => send(&input, concurrency, ca_file, threads),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("peer_rust: {message}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// --generate

/// Writes the header and `count` subscriptions at `endpoint_base/<ObjectId>`.
fn generate(
    out: &std::path::Path,
    endpoint_base: &str,
    count: usize,
    key_seed: &[u8],
) -> Result<(), String> {
    // One VAPID key pair per run, as one site would have; both peers sign with it.
    let vapid = VapidKey::generate().map_err(|e| e.to_string())?;
    let header = Header {
        vapid: VapidPair {
            subject: SUBJECT.to_owned(),
            public_key: vapid.public_key_base64().to_owned(),
            private_key: vapid.private_key_base64().map_err(|e| e.to_string())?,
        },
        payload: PAYLOAD.to_owned(),
        ttl: TTL,
        urgency: Urgency::Normal.as_str().to_owned(),
        count,
    };
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut writer = BufWriter::new(file);
    let io = |e: std::io::Error| format!("writing {}: {e}", out.display());
    serde_json::to_writer(&mut writer, &header).map_err(|e| e.to_string())?;
    writer.write_all(b"\n").map_err(io)?;
    let base = endpoint_base.trim_end_matches('/');
    for _ in 0..count {
        let id = ObjectId::new();
        let (public_key, auth) = subscriber_public_keys(key_seed, &id);
        let subscription = Subscription {
            endpoint: format!("{base}/{}", id.to_hex()),
            keys: SubscriptionKeys {
                p256dh: URL_SAFE_NO_PAD.encode(public_key),
                auth: URL_SAFE_NO_PAD.encode(auth),
            },
        };
        serde_json::to_writer(&mut writer, &subscription).map_err(|e| e.to_string())?;
        writer.write_all(b"\n").map_err(io)?;
    }
    writer.flush().map_err(io)?;
    Ok(())
}

/// Subscriber `id`'s public key and auth secret, derived from `key_seed` exactly as
/// `pushservice_seed::subscriber_keys` does (seed/src/keys.rs).
///
/// Repeated here rather than taken from `pushservice-seed` because that crate depends on the
/// MongoDB store, which this crate should not pull in even as a dev-dependency. Drift cannot
/// go unnoticed: the verifying sink derives the private keys with the real function, so a
/// mismatch fails every decryption and `scripts/bench-peer` stops.
fn subscriber_public_keys(key_seed: &[u8], id: &ObjectId) -> ([u8; 65], [u8; 16]) {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key_seed);
    let auth_tag = hmac::sign(&key, &[b"auth".as_slice(), &id.bytes()].concat());
    let mut auth = [0u8; 16];
    auth.copy_from_slice(&auth_tag.as_ref()[..16]);
    for counter in 0u8..=u8::MAX {
        let tag = hmac::sign(
            &key,
            &[b"p256".as_slice(), &id.bytes(), &[counter]].concat(),
        );
        // About 2^-32 of HMAC outputs are not a valid scalar; the counter moves on, as in seed.
        let Ok(private) = agreement::PrivateKey::from_private_key(&ECDH_P256, tag.as_ref()) else {
            continue;
        };
        let Ok(public) = private.compute_public_key() else {
            continue;
        };
        let mut public_key = [0u8; 65];
        public_key.copy_from_slice(public.as_ref());
        return (public_key, auth);
    }
    unreachable!("no valid P-256 scalar in 256 HMAC outputs")
}

// ---------------------------------------------------------------------------------------------
// --send

/// The one-line result, the same shape as the Node peer's.
#[derive(Debug, Serialize)]
struct Report {
    peer: &'static str,
    protocol: &'static str,
    messages: usize,
    accepted: u64,
    failed: u64,
    concurrency: usize,
    /// Client-side TCP connections to the sink still established after the run.
    connections: Option<usize>,
    wall_s: f64,
    cpu_s: f64,
    cpu_user_s: f64,
    cpu_sys_s: f64,
    cpu_us_per_msg: f64,
    msgs_per_s: f64,
}

fn send(
    input: &std::path::Path,
    concurrency: usize,
    ca_file: Option<PathBuf>,
    threads: Option<usize>,
) -> Result<(), String> {
    let (header, subscriptions) = read_input(input)?;
    let vapid = VapidKey::from_base64(&header.vapid.public_key, &header.vapid.private_key)
        .map_err(|e| e.to_string())?;
    let urgency = match header.urgency.as_str() {
        "very-low" => Urgency::VeryLow,
        "low" => Urgency::Low,
        "normal" => Urgency::Normal,
        "high" => Urgency::High,
        other => return Err(format!("unknown urgency {other:?} in the header")),
    };
    let extra_root_certificates = match &ca_file {
        Some(path) => vec![std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?],
        None => Vec::new(),
    };
    let sink_port = subscriptions
        .first()
        .and_then(|s| endpoint_port(&s.endpoint));
    let clock_ticks = clock_ticks_per_second();

    // The product's client as the sender builds it; the request slots are raised to C so
    // the only bound on requests in flight is this run's concurrency (all go to one origin).
    // The simulator listens on loopback: SENDER_ALLOW_PRIVATE_ENDPOINTS=true for the sender.
    let client = WebPushClient::new(WebPushConfig {
        http: HttpConfig {
            extra_root_certificates,
            endpoint_policy: EndpointPolicy {
                allow_private: true,
                allowed_hosts: Vec::new(),
            },
            ..HttpConfig::default()
        },
        concurrency,
        per_origin_concurrency: concurrency,
        ..WebPushConfig::default()
    })
    .map_err(|e| e.to_string())?;

    // The sender's runtime shape: multi-threaded tokio, one worker per core unless told.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build().map_err(|e| e.to_string())?;

    let shared = Arc::new(Shared {
        client,
        vapid,
        subscriptions,
        payload: header.payload.into_bytes(),
        ttl: header.ttl,
        urgency,
        next: AtomicUsize::new(0),
        accepted: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });

    let cpu_before = process_cpu_ticks()?;
    let started = Instant::now();
    let first_failure = runtime.block_on(async {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| tokio::spawn(worker(shared.clone())))
            .collect();
        let mut first_failure = None;
        for worker in workers {
            match worker.await {
                Ok(failure) => first_failure = first_failure.or(failure),
                Err(e) => first_failure = first_failure.or(Some(format!("worker died: {e}"))),
            }
        }
        first_failure
    });
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = process_cpu_ticks()?;
    // Read while the pooled connection is still open (the client lives in `shared`).
    let connections = sink_port.and_then(established_connections_to);

    let messages = shared.subscriptions.len();
    let (user, sys) = (
        (cpu_after.0 - cpu_before.0) as f64 / clock_ticks,
        (cpu_after.1 - cpu_before.1) as f64 / clock_ticks,
    );
    let report = Report {
        peer: "pushservice",
        // ALPN offers h2 first and the sink (like real push services) takes it.
        protocol: "h2",
        messages,
        accepted: shared.accepted.load(Ordering::Relaxed),
        failed: shared.failed.load(Ordering::Relaxed),
        concurrency,
        connections,
        wall_s: wall,
        cpu_s: user + sys,
        cpu_user_s: user,
        cpu_sys_s: sys,
        cpu_us_per_msg: (user + sys) * 1e6 / messages.max(1) as f64,
        msgs_per_s: messages as f64 / wall,
    };
    if let Some(failure) = first_failure {
        eprintln!("peer_rust: first failure: {failure}");
    }
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    drop(shared);
    runtime.shutdown_background();
    Ok(())
}

/// Everything the workers share: one client (one connection pool), one site key.
struct Shared {
    client: WebPushClient,
    vapid: VapidKey,
    subscriptions: Vec<Subscription>,
    payload: Vec<u8>,
    ttl: u32,
    urgency: Urgency,
    /// Index of the next delivery to take.
    next: AtomicUsize,
    accepted: AtomicU64,
    failed: AtomicU64,
}

/// Sends deliveries until none are left; returns the first failure it saw, if any. C of these
/// run at once, which bounds requests in flight to C, as the sender's per-origin limit does.
async fn worker(shared: Arc<Shared>) -> Option<String> {
    let mut first_failure = None;
    loop {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(subscription) = shared.subscriptions.get(index) else {
            return first_failure;
        };
        // Decoded per message, as the sender decodes each subscriber it streams from MongoDB.
        let keys = decode_p256dh(&subscription.keys.p256dh)
            .and_then(|p256dh| Ok((p256dh, decode_auth(&subscription.keys.auth)?)));
        let outcome = match keys {
            Ok((p256dh, auth)) => {
                shared
                    .client
                    .send(&WebPushRequest {
                        withdrawn: None,
                        endpoint: &subscription.endpoint,
                        p256dh: &p256dh,
                        auth: &auth,
                        payload: &shared.payload,
                        ttl: shared.ttl,
                        urgency: shared.urgency,
                        topic: None,
                        vapid_key: &shared.vapid,
                        subject: SUBJECT,
                        site_key: "bench-peer-site",
                    })
                    .await
            }
            Err(e) => DeliveryOutcome::Permanent {
                status: None,
                reason: e.to_string(),
            },
        };
        if outcome == DeliveryOutcome::Accepted {
            shared.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            first_failure.get_or_insert_with(|| format!("{outcome:?}"));
        }
    }
}

/// Reads the header and every subscription (before the measured phase).
fn read_input(path: &std::path::Path) -> Result<(Header, Vec<Subscription>), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = BufReader::new(file).lines();
    let first = lines
        .next()
        .ok_or_else(|| format!("{} is empty", path.display()))?
        .map_err(|e| e.to_string())?;
    let header: Header = serde_json::from_str(&first)
        .map_err(|e| format!("header line of {}: {e}", path.display()))?;
    let mut subscriptions = Vec::with_capacity(header.count);
    for (number, line) in lines.enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        subscriptions.push(
            serde_json::from_str(&line)
                .map_err(|e| format!("line {} of {}: {e}", number + 2, path.display()))?,
        );
    }
    if subscriptions.len() != header.count {
        return Err(format!(
            "{} holds {} subscriptions, its header says {}",
            path.display(),
            subscriptions.len(),
            header.count
        ));
    }
    Ok((header, subscriptions))
}

/// This process's (user, system) CPU time in clock ticks: fields 14 and 15 of
/// `/proc/self/stat`. They include every thread, exited ones too (unlike per-task
/// `schedstat`), which matters because tokio's blocking pool threads come and go.
fn process_cpu_ticks() -> Result<(u64, u64), String> {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .map_err(|e| format!("/proc/self/stat (Linux only): {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unexpected /proc/self/stat format")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field 14 (utime) is `fields[11]`.
    let tick = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or("unexpected /proc/self/stat format")
    };
    Ok((tick(11)?, tick(12)?))
}

/// `sysconf(_SC_CLK_TCK)` without `unsafe` (the workspace forbids it): ask `getconf`. Linux
/// has reported 100 on every mainstream architecture for decades, so that is the fallback.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// The explicit port of an `https://host:port/...` endpoint.
fn endpoint_port(endpoint: &str) -> Option<u16> {
    let origin = pushservice_webpush::origin(endpoint).ok()?;
    let (_, port) = origin.rsplit_once(':')?;
    port.parse().ok()
}

/// Established TCP connections (IPv4 and IPv6) whose remote port is `port`: the client ends
/// of connections to the sink. Shows HTTP/2 multiplexing (one connection) against HTTP/1.1
/// keep-alive (one per request in flight). Counts every process in the network namespace,
/// so it is exact only while this peer is the sink's only client, as in `scripts/bench-peer`.
fn established_connections_to(port: u16) -> Option<usize> {
    let mut count = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address (hex ip:hex port), st (01 = ESTABLISHED), ...
            let remote_port = fields
                .get(2)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) && fields.get(3) == Some(&"01") {
                count += 1;
            }
        }
    }
    Some(count)
}
