//! The endpoint policy as a sender runs it with its defaults (no
//! `SENDER_ALLOW_PRIVATE_ENDPOINTS`): subscriptions whose endpoints point at loopback, by IP
//! literal (v4 and v6), by name (`localhost`, refused once resolved) or over plain `http`,
//! fail for good with `endpoint not allowed`, and the sender never connects to them.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{KEY_SEED, World, terminate};
use pushservice_model::{Platform, PushStatus};
use pushservice_push_sink::{Behaviour, Latency};
use pushservice_seed::{SubscriberSeed, seed_subscribers};

/// Subscribers per endpoint form.
const PER_FORM: u64 = 5;

/// Loopback listeners (127.0.0.1 and, where available, [::1] on the same port) that accept
/// and count every connection made to them.
struct Trap {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Trap {
    fn start() -> Trap {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = v4.local_addr().expect("local address").port();
        let mut listeners = vec![v4];
        // Best effort: a machine without IPv6 loopback cannot be connected to there anyway.
        if let Ok(v6) = TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
            listeners.push(v6);
        }
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = listeners
            .into_iter()
            .map(|listener| {
                listener.set_nonblocking(true).expect("non-blocking");
                let (accepted, stop) = (accepted.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((stream, peer)) => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                                eprintln!("endpoint policy: connection accepted from {peer}");
                                drop(stream);
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
            })
            .collect();
        Trap {
            port,
            accepted,
            stop,
            threads,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_defaults_the_senders_never_connect_to_loopback() {
    // The world's simulator is not used: no subscriber points at it.
    let world = World::new(0, Behaviour::default(), Latency::None).await;
    let trap = Trap::start();
    let port = trap.port;

    // The trap counts what connects to it: check that before relying on a zero.
    TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).expect("trap answers");
    let deadline = Instant::now() + Duration::from_secs(5);
    while trap.accepted() < 1 {
        assert!(Instant::now() < deadline, "the trap counted no connection");
        std::thread::sleep(Duration::from_millis(10));
    }
    trap.accepted.store(0, Ordering::Relaxed);

    let forms = [
        format!("https://127.0.0.1:{port}/wp"),
        format!("https://localhost:{port}/wp"),
        format!("https://[::1]:{port}/wp"),
        format!("http://127.0.0.1:{port}/wp"),
    ];
    for endpoint_base in &forms {
        let seed = SubscriberSeed {
            site_id: world.site.id,
            count: PER_FORM,
            platform: Platform::Web,
            endpoint_base: endpoint_base.clone(),
            key_seed: KEY_SEED.to_vec(),
            batch_size: 1_000,
        };
        seed_subscribers(&world.store, &seed, |_| {})
            .await
            .expect("subscribers seeded");
    }
    let subscribers = world.subscribers().await;
    let audience = forms.len() as u64 * PER_FORM;
    assert_eq!(subscribers.len() as u64, audience);
    for form in &forms {
        assert_eq!(
            subscribers
                .iter()
                .filter(|s| {
                    s.subscription()
                        .expect("a PushSubscription")
                        .endpoint
                        .starts_with(&format!("{form}/"))
                })
                .count() as u64,
            PER_FORM,
            "subscribers at {form}/<id>"
        );
    }

    let (stop_parser, parser) = world.parser();
    let mut command = world.sender_command();
    // The production defaults: no private endpoints; Apple's and Google's provider URLs
    // (never contacted: there are only Web Push subscribers).
    command
        .env_remove("SENDER_ALLOW_PRIVATE_ENDPOINTS")
        .env_remove("SENDER_APNS_URL")
        .env_remove("SENDER_FCM_URL")
        .env_remove("SENDER_FCM_TOKEN_URL");
    let mut sender = common::Daemon(command.spawn().expect("sender starts"));
    let started = Instant::now();
    world.send().await;

    let limit = Duration::from_secs(120);
    let deadline = started + limit;
    let push = loop {
        if let Ok(Some(status)) = sender.try_wait() {
            panic!("the sender exited with {status} (see its log above)");
        }
        let push = world
            .store
            .push_with_live_totals(world.push.id)
            .await
            .expect("query")
            .expect("push");
        let failures: i64 = push.delivery_failures.iter().map(|f| f.count).sum();
        if push.status == PushStatus::Done
            && push.total_failed == audience as i64
            && failures == audience as i64
        {
            break push;
        }
        assert!(
            Instant::now() < deadline,
            "not settled in {limit:?}: expected status done, totalFailed {audience}, \
             deliveryFailures adding up to {audience}, no connection; actual status {}, \
             totalAccepted {}, totalUnsubscribed {}, totalFailed {}, deliveryFailures {:?}, \
             {} connections accepted",
            push.status,
            push.total_accepted,
            push.total_unsubscribed,
            push.total_failed,
            push.delivery_failures,
            trap.accepted(),
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let wall = started.elapsed();
    // The push document itself carries the totals once the senders' recorders wrote them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored = world.push_now().await;
        if stored.total_failed == audience as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "push document totalFailed: expected {audience}, actual {} (live {})",
            stored.total_failed,
            push.total_failed
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(terminate(&mut sender), Some(0), "sender exits 0 on SIGTERM");
    let _ = stop_parser.send(());
    parser.await.expect("join").expect("parser ran cleanly");
    let connections = trap.accepted();
    trap.stop();

    eprintln!(
        "endpoint policy: settled in {:.1} s; totals accepted {} unsubscribed {} failed {} \
         of {audience}; {connections} connections; deliveryFailures {:?}",
        wall.as_secs_f64(),
        push.total_accepted,
        push.total_unsubscribed,
        push.total_failed,
        push.delivery_failures,
    );
    assert_eq!(connections, 0, "connections accepted on loopback");
    assert_eq!(push.total_sent, audience as i64, "totalSent");
    assert_eq!(push.total_failed, audience as i64, "totalFailed");
    assert_eq!(push.total_accepted, 0, "totalAccepted");
    assert_eq!(push.total_unsubscribed, 0, "totalUnsubscribed");
    for failure in &push.delivery_failures {
        assert!(
            failure.reason.contains("endpoint not allowed"),
            "reason {:?} ({} deliveries)",
            failure.reason,
            failure.count
        );
    }
    // `localhost` is a name: refused at connection time, on the addresses it resolves to.
    let by_name: i64 = push
        .delivery_failures
        .iter()
        .filter(|f| f.reason.contains("localhost"))
        .map(|f| f.count)
        .sum();
    assert_eq!(
        by_name, PER_FORM as i64,
        "failures naming localhost: {:?}",
        push.delivery_failures
    );
    // Refused is a failure of the sender's policy, not a gone subscription.
    let still_subscribed = world
        .subscribers()
        .await
        .iter()
        .filter(|s| s.subscribed)
        .count() as u64;
    assert_eq!(still_subscribed, audience, "nobody unsubscribed");
    world.finish().await;
}
