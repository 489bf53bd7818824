//! Throughput of the sink: requests per second and the sink's own CPU time per request.
//!
//! The sink runs on its own tokio runtime (threads named `sink-*`), the load generator
//! (`reqwest`) on another (`load-*`), both in this process, so the CPU each side used is read
//! per thread from `/proc/self/task/<tid>/schedstat` (nanoseconds on CPU) and the sink's cost
//! is not blurred by the client's. No timing is asserted; the figures are for reports.
//!
//! ```text
//! cargo run --release -p pushservice-push-sink --example throughput -- \
//!     [--protocol h2c|h1|tls] [--requests 200000] [--concurrency 256] [--connections 4] \
//!     [--sink-threads 1] [--load-threads 1] [--verify]
//! ```
//!
//! `--verify` sends real Web Push messages (ece-encrypted for seeded subscribers, VAPID signed
//! with p256) to a verifying sink, to price verification and decryption.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use pushservice_model::ObjectId;
use pushservice_push_sink::{Protocol, Sink, SinkConfig, Verify};

const SEED: &[u8] = b"throughput-seed";

struct Args {
    protocol: Protocol,
    requests: u64,
    concurrency: usize,
    connections: usize,
    sink_threads: usize,
    load_threads: usize,
    verify: bool,
}

fn args() -> Args {
    let mut args = Args {
        protocol: Protocol::H2c,
        requests: 200_000,
        concurrency: 256,
        connections: 4,
        sink_threads: 1,
        load_threads: 1,
        verify: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag value");
        match flag.as_str() {
            "--protocol" => args.protocol = value().parse().expect("h1, h2c or tls"),
            "--requests" => args.requests = value().parse().expect("number"),
            "--concurrency" => args.concurrency = value().parse().expect("number"),
            "--connections" => args.connections = value().parse().expect("number"),
            "--sink-threads" => args.sink_threads = value().parse().expect("number"),
            "--load-threads" => args.load_threads = value().parse().expect("number"),
            "--verify" => args.verify = true,
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Nanoseconds on CPU of this process's threads whose name starts with `prefix`.
fn thread_cpu_ns(prefix: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            let schedstat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
            total += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// Pre-built requests: (path suffix, authorization, body).
type Message = (String, String, Vec<u8>);

/// In verify mode, real messages for `count` subscribers; otherwise one fake body.
fn messages(verify: bool, count: usize, origin: &str) -> Vec<Message> {
    let fake_auth = "vapid t=eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl, k=BKey";
    if !verify {
        return vec![(String::new(), fake_auth.to_owned(), vec![0x5a; 180])];
    }
    let key = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"aud":"{origin}","exp":{exp},"sub":"mailto:bench@example.com"}}"#
    ));
    let input = format!("{header}.{claims}");
    let signature: Signature = key.sign(input.as_bytes());
    let auth = format!(
        "vapid t={input}.{}, k={}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        URL_SAFE_NO_PAD.encode(key.verifying_key().to_encoded_point(false).as_bytes())
    );
    let payload = br#"{"pushId":"65a1b2c3d4e5f60718293a4b","title":"Benchmark","options":{"body":"A notification of a typical size, with a body of a sentence or two."}}"#;
    (0..count)
        .map(|_| {
            let id = ObjectId::new();
            let keys = pushservice_seed::subscriber_keys(SEED, &id);
            let body = ece::encrypt(&keys.public_key, &keys.auth, payload).unwrap();
            (id.to_hex(), auth.clone(), body)
        })
        .collect()
}

fn main() {
    let args = args();
    let sink_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.sink_threads)
        .thread_name("sink-worker")
        .enable_all()
        .build()
        .unwrap();
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.load_threads)
        .thread_name("load-worker")
        .enable_all()
        .build()
        .unwrap();

    let sink = sink_rt
        .block_on(Sink::start(SinkConfig {
            protocol: args.protocol,
            verify: args.verify.then(|| Verify {
                key_seed: SEED.to_vec(),
                expected_subject: None,
                apns_keys: Vec::new(),
                fcm_accounts: Vec::new(),
            }),
            ..SinkConfig::default()
        }))
        .unwrap();
    let base = sink.base_url();
    let messages = Arc::new(messages(args.verify, 2_000, &base));
    let clients: Vec<reqwest::Client> = (0..args.connections)
        .map(|_| {
            let builder = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(args.concurrency);
            let builder = match args.protocol {
                Protocol::Http1 => builder.http1_only(),
                Protocol::H2c => builder.http2_prior_knowledge(),
                Protocol::Tls => builder
                    .tls_certs_only([
                        reqwest::Certificate::from_pem(sink.cert_pem().unwrap()).unwrap()
                    ]),
            };
            builder.build().unwrap()
        })
        .collect();

    let run = |requests: u64| {
        let next = Arc::new(AtomicU64::new(0));
        load_rt.block_on(async {
            let mut tasks = Vec::new();
            for worker in 0..args.concurrency {
                let client = clients[worker % clients.len()].clone();
                let (next, messages, base) = (next.clone(), messages.clone(), base.clone());
                tasks.push(tokio::spawn(async move {
                    let mut failed = 0u64;
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= requests {
                            return failed;
                        }
                        let (id, auth, body) = &messages[n as usize % messages.len()];
                        let url = if id.is_empty() {
                            format!("{base}/wp/{n:024x}")
                        } else {
                            format!("{base}/wp/{id}")
                        };
                        let response = client
                            .post(url)
                            .header("ttl", "86400")
                            .header("content-encoding", "aes128gcm")
                            .header("urgency", "normal")
                            .header("authorization", auth)
                            .body(body.clone())
                            .send()
                            .await;
                        match response {
                            Ok(r) if r.status().as_u16() == 201 => {}
                            _ => failed += 1,
                        }
                    }
                }));
            }
            let mut failed = 0;
            for task in tasks {
                failed += task.await.unwrap();
            }
            failed
        })
    };

    // Warm up connections, caches and the subscriber table, then measure.
    run(args.requests / 10);
    let (sink_before, load_before) = (thread_cpu_ns("sink-"), thread_cpu_ns("load-"));
    let started = Instant::now();
    let failed = run(args.requests);
    let wall = started.elapsed();
    let sink_cpu = Duration::from_nanos(thread_cpu_ns("sink-") - sink_before);
    let load_cpu = Duration::from_nanos(thread_cpu_ns("load-") - load_before);
    let stats = sink.stats();

    let n = args.requests as f64;
    println!(
        "protocol={} verify={} requests={} concurrency={} connections={} sink_threads={} load_threads={}",
        args.protocol,
        args.verify,
        args.requests,
        args.concurrency,
        args.connections,
        args.sink_threads,
        args.load_threads
    );
    println!(
        "wall={:.2}s rate={:.0} req/s failed={failed} | sink CPU {:.1} µs/req ({:.2} s) | load generator CPU {:.1} µs/req",
        wall.as_secs_f64(),
        n / wall.as_secs_f64(),
        sink_cpu.as_secs_f64() * 1e6 / n,
        sink_cpu.as_secs_f64(),
        load_cpu.as_secs_f64() * 1e6 / n,
    );
    println!(
        "sink stats: requests={} accepted={} distinct={} duplicates={} verify_failed={:?}",
        stats.requests,
        stats.accepted,
        stats.distinct_accepted,
        stats.duplicates,
        stats.verify_failed
    );
    sink_rt.block_on(sink.shutdown());
}
