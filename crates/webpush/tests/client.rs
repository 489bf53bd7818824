//! `WebPushClient` against an in-process push service: HTTP/2 over TLS with ALPN, HTTP/1.1
//! and h2c in cleartext, every response class, unreachable and slow services, and the
//! per-origin concurrency bound, fair request slots between origins, and the endpoint policy
//! (a loopback listener that must see no connection). What the server received is decrypted
//! with `ece` and its VAPID header verified with `p256`, independently of this crate.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Protocol, PushServer, Subscriber, verify_vapid};
use hyper::Version;
use pushservice_model::Urgency;
use pushservice_provider::{DeliveryOutcome, EndpointPolicy, HttpConfig, RequestSlots};
use pushservice_webpush::{MAX_PLAINTEXT, VapidKey, WebPushClient, WebPushConfig, WebPushRequest};

const SUBJECT: &str = "mailto:ops@example.com";
const PAYLOAD: &[u8] = br#"{"title":"Sale","options":{"body":"50% off"}}"#;

/// The endpoint policy of a simulator on loopback: `SENDER_ALLOW_PRIVATE_ENDPOINTS=true`.
fn loopback_allowed() -> EndpointPolicy {
    EndpointPolicy {
        allow_private: true,
        allowed_hosts: Vec::new(),
    }
}

/// A client trusting `servers`' CAs, allowed to reach them on loopback.
fn client_for_all(servers: &[&PushServer], config: WebPushConfig) -> WebPushClient {
    let extra_root_certificates = servers
        .iter()
        .flat_map(|server| server.ca_pem.iter())
        .map(|pem| pem.as_bytes().to_vec())
        .collect();
    WebPushClient::new(WebPushConfig {
        http: HttpConfig {
            extra_root_certificates,
            endpoint_policy: loopback_allowed(),
            ..config.http
        },
        ..config
    })
    .expect("client")
}

fn client_for(server: &PushServer, config: WebPushConfig) -> WebPushClient {
    client_for_all(&[server], config)
}

/// A request for `subscriber` to `endpoint`, signed by `key`, topic "sale", urgency high.
fn request<'a>(
    endpoint: &'a str,
    subscriber: &'a Subscriber,
    key: &'a VapidKey,
) -> WebPushRequest<'a> {
    WebPushRequest {
        withdrawn: None,
        endpoint,
        p256dh: &subscriber.p256dh,
        auth: &subscriber.auth,
        payload: PAYLOAD,
        ttl: 3600,
        urgency: Urgency::High,
        topic: Some("sale"),
        vapid_key: key,
        subject: SUBJECT,
        site_key: "site-1",
    }
}

fn header<'a>(recorded: &'a common::Recorded, name: &str) -> Option<&'a str> {
    recorded
        .headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header"))
}

#[tokio::test]
async fn delivers_over_http2_tls_and_the_push_service_can_decrypt_and_verify() {
    let server = PushServer::start(Protocol::Tls).await;
    let client = client_for(&server, WebPushConfig::default());
    let (subscriber, key) = (Subscriber::new(), VapidKey::generate().expect("VAPID key"));
    let endpoint = format!("https://localhost:{}/wp/abc", server.addr.port());

    let outcome = client.send(&request(&endpoint, &subscriber, &key)).await;
    assert_eq!(outcome, DeliveryOutcome::Accepted);

    let mut invalid_topic = request(&endpoint, &subscriber, &key);
    invalid_topic.topic = Some("not a valid topic!");
    invalid_topic.urgency = Urgency::VeryLow;
    invalid_topic.payload = b"";
    assert_eq!(client.send(&invalid_topic).await, DeliveryOutcome::Accepted);

    let shown = format!("{:?}", request(&endpoint, &subscriber, &key));
    assert!(
        shown.contains("origin: \"https://localhost:") && !shown.contains("/wp/abc"),
        "{shown}"
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let first = &requests[0];
    assert_eq!(first.version, Version::HTTP_2, "ALPN must select h2");
    assert_eq!(first.path, "/wp/abc");
    assert_eq!(header(first, "ttl"), Some("3600"));
    assert_eq!(header(first, "urgency"), Some("high"));
    assert_eq!(header(first, "topic"), Some("sale"));
    assert_eq!(header(first, "content-encoding"), Some("aes128gcm"));
    assert_eq!(
        header(first, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(subscriber.decrypt(&first.body), PAYLOAD);

    let authorization = header(first, "authorization").expect("Authorization header");
    let claims = verify_vapid(authorization, key.public_key_base64());
    let origin = format!("https://localhost:{}", server.addr.port());
    assert_eq!(claims["aud"], origin.as_str());
    assert_eq!(claims["sub"], SUBJECT);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let exp = claims["exp"].as_u64().expect("numeric exp");
    assert!(exp > now && exp <= now + 24 * 3600, "exp {exp}, now {now}");

    let second = &requests[1];
    assert_eq!(header(second, "topic"), None, "an invalid Topic is dropped");
    assert_eq!(header(second, "urgency"), Some("very-low"));
    assert_eq!(subscriber.decrypt(&second.body), b"");
    assert_eq!(
        header(second, "authorization"),
        Some(authorization),
        "VAPID header reused"
    );
    assert_eq!(
        server.stats.connections.load(Ordering::SeqCst),
        1,
        "one pooled connection"
    );
}

#[tokio::test]
async fn maps_push_service_answers_to_outcomes() {
    let server = PushServer::start(Protocol::Tls).await;
    let client = client_for(&server, WebPushConfig::default());
    let (subscriber, key) = (Subscriber::new(), VapidKey::generate().expect("VAPID key"));
    let base = format!("https://localhost:{}/wp", server.addr.port());
    let send = |path: &str| {
        let endpoint = format!("{base}/{path}");
        let client = &client;
        let (subscriber, key) = (&subscriber, &key);
        async move { client.send(&request(&endpoint, subscriber, key)).await }
    };

    assert_eq!(
        send("gone").await,
        DeliveryOutcome::SubscriptionGone { status: 410 }
    );
    match send("busy").await {
        DeliveryOutcome::Transient {
            status,
            retry_after,
            ..
        } => {
            assert_eq!(status, Some(429));
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
        }
        other => panic!("429 gave {other:?}"),
    }
    match send("error").await {
        DeliveryOutcome::Transient { status, reason, .. } => {
            assert_eq!(status, Some(500));
            assert!(reason.contains("internal error"), "{reason}");
        }
        other => panic!("500 gave {other:?}"),
    }
    match send("big").await {
        DeliveryOutcome::Permanent { status, reason } => {
            assert_eq!(status, Some(413));
            assert!(reason.contains("payload too large"), "{reason}");
        }
        other => panic!("413 gave {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_and_slow_push_services_are_transient() {
    let (subscriber, key) = (Subscriber::new(), VapidKey::generate().expect("VAPID key"));

    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let client = WebPushClient::new(WebPushConfig {
        http: HttpConfig {
            endpoint_policy: loopback_allowed(),
            ..HttpConfig::default()
        },
        ..WebPushConfig::default()
    })
    .expect("client");
    let endpoint = format!("http://127.0.0.1:{port}/wp/secret-token");
    match client.send(&request(&endpoint, &subscriber, &key)).await {
        DeliveryOutcome::Transient {
            status: None,
            reason,
            ..
        } => {
            assert!(
                reason.contains(&format!("http://127.0.0.1:{port}")),
                "{reason}"
            );
            assert!(
                !reason.contains("secret-token"),
                "endpoint leaked into {reason}"
            );
        }
        other => panic!("closed port gave {other:?}"),
    }

    let server = PushServer::start(Protocol::Tls).await;
    let config = WebPushConfig {
        http: HttpConfig {
            request_timeout: Duration::from_millis(300),
            ..HttpConfig::default()
        },
        ..WebPushConfig::default()
    };
    let client = client_for(&server, config);
    let endpoint = format!("https://localhost:{}/wp/slow", server.addr.port());
    let started = std::time::Instant::now();
    match client.send(&request(&endpoint, &subscriber, &key)).await {
        DeliveryOutcome::Transient {
            status: None,
            reason,
            ..
        } => {
            assert!(
                reason.starts_with("timed out talking to https://localhost:"),
                "{reason}"
            );
            assert!(
                !reason.contains("/wp/slow"),
                "endpoint leaked into {reason}"
            );
        }
        other => panic!("slow server gave {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeout not applied"
    );
}

#[tokio::test]
async fn speaks_http1_and_h2c_to_cleartext_endpoints() {
    let (subscriber, key) = (Subscriber::new(), VapidKey::generate().expect("VAPID key"));
    for (protocol, prior_knowledge, version) in [
        (Protocol::Http1, false, Version::HTTP_11),
        (Protocol::H2c, true, Version::HTTP_2),
    ] {
        let server = PushServer::start(protocol).await;
        let config = WebPushConfig {
            http: HttpConfig {
                http2_prior_knowledge: prior_knowledge,
                ..HttpConfig::default()
            },
            ..WebPushConfig::default()
        };
        let client = client_for(&server, config);
        let endpoint = format!("http://127.0.0.1:{}/wp/abc", server.addr.port());
        for _ in 0..2 {
            let outcome = client.send(&request(&endpoint, &subscriber, &key)).await;
            assert_eq!(outcome, DeliveryOutcome::Accepted, "{protocol:?}");
        }
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].version, version, "{protocol:?}");
        assert_eq!(subscriber.decrypt(&requests[1].body), PAYLOAD);
        let claims = verify_vapid(
            header(&requests[0], "authorization").expect("Authorization"),
            key.public_key_base64(),
        );
        assert_eq!(
            claims["aud"],
            format!("http://127.0.0.1:{}", server.addr.port()).as_str()
        );
        assert_eq!(
            server.stats.connections.load(Ordering::SeqCst),
            1,
            "{protocol:?} keep-alive"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_concurrent_requests_per_origin() {
    let server = PushServer::start(Protocol::Tls).await;
    let config = WebPushConfig {
        per_origin_concurrency: 4,
        ..WebPushConfig::default()
    };
    let client = Arc::new(client_for(&server, config));
    let subscriber = Arc::new(Subscriber::new());
    let key = Arc::new(VapidKey::generate().expect("VAPID key"));
    let endpoint = Arc::new(format!("https://localhost:{}/wp/hold", server.addr.port()));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (client, subscriber, key, endpoint) = (
            client.clone(),
            subscriber.clone(),
            key.clone(),
            endpoint.clone(),
        );
        tasks.spawn(async move { client.send(&request(&endpoint, &subscriber, &key)).await });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.expect("task"), DeliveryOutcome::Accepted);
    }
    assert_eq!(server.requests().len(), 40);
    let max = server.stats.max_in_flight.load(Ordering::SeqCst);
    assert_eq!(
        max, 4,
        "expected the bound (4) to be reached and never exceeded, saw {max}"
    );
}

#[tokio::test]
async fn bad_subscriptions_and_settings_fail_permanently_without_a_request() {
    let server = PushServer::start(Protocol::Tls).await;
    let client = client_for(&server, WebPushConfig::default());
    let (subscriber, key) = (Subscriber::new(), VapidKey::generate().expect("VAPID key"));
    let endpoint = format!("https://localhost:{}/wp/abc", server.addr.port());
    let permanent_reason = |outcome| match outcome {
        DeliveryOutcome::Permanent {
            status: None,
            reason,
        } => reason,
        other => panic!("expected a permanent failure, got {other:?}"),
    };

    let too_large = vec![b'x'; MAX_PLAINTEXT + 1];
    let mut req = request(&endpoint, &subscriber, &key);
    req.payload = &too_large;
    let reason = permanent_reason(client.send(&req).await);
    assert_eq!(
        reason,
        "payload too large: 3994 bytes, the limit is 3993 bytes"
    );

    let mut off_curve = subscriber.p256dh;
    off_curve[40] ^= 0xff;
    let mut req = request(&endpoint, &subscriber, &key);
    req.p256dh = &off_curve;
    assert!(permanent_reason(client.send(&req).await).contains("p256dh"));

    let mut req = request(&endpoint, &subscriber, &key);
    req.subject = "ops@example.com";
    assert!(permanent_reason(client.send(&req).await).contains("VAPID subject"));

    let req = request("wss://localhost/wp/abc", &subscriber, &key);
    assert_eq!(
        permanent_reason(client.send(&req).await),
        "endpoint not allowed: wss:// is not allowed; push services use https"
    );

    assert!(
        server.requests().is_empty(),
        "nothing may be sent for a failed message"
    );
    let config = WebPushConfig {
        per_origin_concurrency: 0,
        ..WebPushConfig::default()
    };
    assert!(WebPushClient::new(config).is_err());
    let config = WebPushConfig {
        concurrency: 0,
        ..WebPushConfig::default()
    };
    assert!(WebPushClient::new(config).is_err());
    let config = WebPushConfig {
        http: HttpConfig {
            extra_root_certificates: vec![b"not a certificate".to_vec()],
            ..HttpConfig::default()
        },
        ..WebPushConfig::default()
    };
    assert!(WebPushClient::new(config).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_push_service_does_not_starve_the_others() {
    let slow = PushServer::start(Protocol::Tls).await;
    let fast = PushServer::start(Protocol::Tls).await;
    // Shared slots as the sender makes them: 4 in flight in all, 2 per origin.
    let slots = Arc::new(RequestSlots::new(4, 2).expect("slots"));
    let client = Arc::new(
        client_for_all(&[&slow, &fast], WebPushConfig::default()).with_slots(Arc::clone(&slots)),
    );
    let subscriber = Arc::new(Subscriber::new());
    let key = Arc::new(VapidKey::generate().expect("VAPID key"));
    // Ten deliveries to a push service answering in 5 s: two in flight, eight waiting.
    let slow_endpoint = Arc::new(format!("https://localhost:{}/wp/slow", slow.addr.port()));
    let mut stuck = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (client, subscriber, key, endpoint) = (
            client.clone(),
            subscriber.clone(),
            key.clone(),
            slow_endpoint.clone(),
        );
        stuck.spawn(async move { client.send(&request(&endpoint, &subscriber, &key)).await });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        slots.available(),
        2,
        "the slow origin holds only its own two slots"
    );

    let fast_endpoint = format!("https://localhost:{}/wp/abc", fast.addr.port());
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let outcome = client
            .send(&request(&fast_endpoint, &subscriber, &key))
            .await;
        assert_eq!(outcome, DeliveryOutcome::Accepted);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "deliveries to the fast origin waited for the slow one: {:?}",
        started.elapsed()
    );
    assert_eq!(fast.requests().len(), 20);
    stuck.abort_all();
}

/// Counts the connections a listener accepts.
async fn counting_listener(address: std::net::SocketAddr) -> Option<(u16, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind(address).await.ok()?;
    let port = listener.local_addr().ok()?.port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    Some((port, accepted))
}

#[tokio::test]
async fn the_default_policy_makes_no_connection_to_loopback() {
    let (port, accepted) = counting_listener("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("listener on 127.0.0.1");
    // [::1] on the same port too when the machine has IPv6, so nothing could reach it unseen.
    let v6 = counting_listener(format!("[::1]:{port}").parse().expect("address")).await;
    let client = WebPushClient::new(WebPushConfig::default()).expect("client");
    let (subscriber, key) = (Subscriber::new(), VapidKey::generate().expect("VAPID key"));
    for endpoint in [
        format!("https://127.0.0.1:{port}/x"),
        format!("https://localhost:{port}/x"),
        format!("https://[::1]:{port}/x"),
        format!("http://127.0.0.1:{port}/x"),
        format!("https://[::ffff:127.0.0.1]:{port}/x"),
    ] {
        match client.send(&request(&endpoint, &subscriber, &key)).await {
            DeliveryOutcome::Permanent {
                status: None,
                reason,
            } => assert!(
                reason.starts_with("endpoint not allowed: "),
                "{endpoint}: {reason}"
            ),
            other => panic!("{endpoint} gave {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "127.0.0.1 was connected to"
    );
    if let Some((_, v6_accepted)) = &v6 {
        assert_eq!(
            v6_accepted.load(Ordering::SeqCst),
            0,
            "[::1] was connected to"
        );
    }

    // The listener does see a connection when the policy allows one: the zeros above mean
    // something.
    let open = WebPushClient::new(WebPushConfig {
        http: HttpConfig {
            endpoint_policy: loopback_allowed(),
            ..HttpConfig::default()
        },
        ..WebPushConfig::default()
    })
    .expect("client");
    let endpoint = format!("http://127.0.0.1:{port}/x");
    let outcome = open.send(&request(&endpoint, &subscriber, &key)).await;
    assert_eq!(outcome.label(), "transient", "{outcome:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn allowed_hosts_refuse_other_hosts_before_connecting() {
    let server = PushServer::start(Protocol::Tls).await;
    let client = WebPushClient::new(WebPushConfig {
        http: HttpConfig {
            extra_root_certificates: server
                .ca_pem
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
            endpoint_policy: EndpointPolicy {
                allow_private: true,
                allowed_hosts: vec!["push.example.com".into()],
            },
            ..HttpConfig::default()
        },
        ..WebPushConfig::default()
    })
    .expect("client");
    let (subscriber, key) = (Subscriber::new(), VapidKey::generate().expect("VAPID key"));
    let endpoint = format!("https://localhost:{}/wp/abc", server.addr.port());
    match client.send(&request(&endpoint, &subscriber, &key)).await {
        DeliveryOutcome::Permanent { reason, .. } => assert_eq!(
            reason,
            "endpoint not allowed: localhost is not in SENDER_ENDPOINT_ALLOWED_HOSTS"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.stats.connections.load(Ordering::SeqCst), 0);
}
