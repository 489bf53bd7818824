//! The `seed` binary against the real MongoDB-protocol server, as a user runs it.

use std::process::{Command, Output};

use bson::doc;
use futures::TryStreamExt as _;
use pushservice_model::{PushStatus, Subscriber, parse_object_id};
use pushservice_seed::subscriber_keys;
use pushservice_store::SUBSCRIBERS;
use pushservice_testkit::{mongo_settings, store};

fn seed(mongo_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seed"))
        .args(args)
        .env("MONGODB_URL", mongo_url)
        .env("PUSHSERVICE_ENV_FILE", "/dev/null")
        .env("QUERY_BATCH_SIZE", "400")
        .env_remove("SEED_KEY_SEED")
        .env_remove("SEED_ENDPOINT_BASE")
        .output()
        .expect("seed runs")
}

fn stdout_ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "seed failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn seeds_a_site_a_push_and_subscribers_with_real_keys() {
    let mongo = mongo_settings();
    let store = store(&mongo).await;

    let site_id = parse_object_id("site", &stdout_ok(&seed(&mongo.url, &["site"]))).expect("id");
    let site = store
        .site(site_id)
        .await
        .expect("query")
        .expect("site stored");
    let public = pushservice_model::subscriber::decode_base64(&site.public_key).expect("b64");
    let private = pushservice_model::subscriber::decode_base64(&site.private_key).expect("b64");
    assert_eq!((public.len(), private.len()), (65, 32));

    let push_out = seed(
        &mongo.url,
        &["push", "--site", &site_id.to_hex(), "--title", "Seeded"],
    );
    let push_id = parse_object_id("push", &stdout_ok(&push_out)).expect("id");
    let push = store
        .push(push_id)
        .await
        .expect("query")
        .expect("push stored");
    assert_eq!(
        (push.status, push.title.as_str(), push.site_id),
        (PushStatus::Pending, "Seeded", site_id)
    );

    let count = "2500"; // not a multiple of the 400 batch size, so the last batch is partial
    let out = seed(
        &mongo.url,
        &[
            "subscribers",
            "--site",
            &site_id.to_hex(),
            "--count",
            count,
            "--endpoint-base",
            "http://127.0.0.1:9999/wp/",
        ],
    );
    assert_eq!(stdout_ok(&out), count);
    assert_eq!(
        store.count_subscribers(site_id, true).await.expect("count"),
        2500
    );

    let subscribers: Vec<Subscriber> = store
        .database()
        .collection::<Subscriber>(SUBSCRIBERS)
        .find(doc! { "siteId": site_id })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("read all");
    let mut seen_keys = std::collections::HashSet::new();
    for subscriber in &subscribers {
        let subscription = subscriber.subscription().expect("valid pushEndPoint");
        assert_eq!(
            subscription.endpoint,
            format!("http://127.0.0.1:9999/wp/{}", subscriber.id.to_hex())
        );
        // The stored public key is the one derived from the default seed and the id, so a
        // decrypting simulator can recompute the private key.
        let keys = subscriber_keys(b"pushservice-seed", &subscriber.id);
        assert_eq!(
            subscription.p256dh_bytes().expect("p256dh"),
            keys.public_key
        );
        seen_keys.insert(subscription.keys.p256dh.clone());
    }
    assert_eq!(seen_keys.len(), 2500, "every subscriber has its own key");
}

#[tokio::test]
async fn refuses_unknown_or_malformed_site() {
    let mongo = mongo_settings();
    let out = seed(&mongo.url, &["push", "--site", "65a1f0c2e4b0a1b2c3d4e5f6"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("site 65a1f0c2e4b0a1b2c3d4e5f6 does not exist"),
        "{stderr}"
    );

    let out = seed(
        &mongo.url,
        &["subscribers", "--site", "xyz", "--count", "1"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("malformed site id \"xyz\""), "{stderr}");
}
