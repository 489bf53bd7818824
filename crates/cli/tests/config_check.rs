//! `pushctl config check` as an operator runs it, against the real Kafka broker and
//! MongoDB-protocol server: a clean installation passes; a broken one (a missing topic, a
//! wrong partition count, a site whose VAPID public key is another site's, an FCM site whose
//! service account is not JSON) gets every problem at once, each naming its key or field;
//! an unreachable broker is "could not check" (exit 2), not "clean".

use std::process::Output;

use pushservice_config::{KafkaSettings, MongoSettings, Topics};
use pushservice_model::{ApnsCredentials, FcmCredentials};
use pushservice_seed::{apns_test_key, fcm_test_service_account, new_site};
use pushservice_store::Store;
use pushservice_testkit::{env_for, kafka_settings, mongo_settings, store, topics};
use serde_json::Value;

/// A long enough admin token, so pushapi's settings load.
const ADMIN_TOKEN: &str = "config-check-test-admin-token-0123456789";

struct World {
    mongo: MongoSettings,
    kafka: KafkaSettings,
    /// What the configuration says (may differ from what was created).
    topics: Topics,
    store: Store,
}

impl World {
    /// Fresh database; every topic of `created` made on the broker.
    async fn new(created: &Topics) -> World {
        let (mongo, kafka) = (mongo_settings(), kafka_settings());
        pushservice_kafka::ensure_topics(&kafka, &created.all())
            .await
            .expect("topics");
        let store = store(&mongo).await;
        World {
            mongo,
            kafka,
            topics: created.clone(),
            store,
        }
    }

    fn pushctl(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_pushctl"))
            .args(args)
            .env_remove("KAFKA_SECURITY_ENABLED")
            .env_remove("SENDER_FCM_TOKEN_URL")
            .envs(env_for(&self.mongo, &self.kafka, &self.topics))
            .env("API_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(extra_env.iter().copied())
            .output()
            .expect("pushctl runs")
    }

    /// A web site, one with APNs, one with FCM: all usable.
    async fn good_sites(&self) {
        let web = new_site("mailto:ops@example.com").expect("site");
        self.store.insert_site(&web).await.expect("insert");
        let mut ios = new_site("mailto:ios@example.com").expect("site");
        let key = apns_test_key().expect("p8");
        ios.apns = Some(ApnsCredentials {
            team_id: "TEAM123456".into(),
            key_id: key.key_id.clone(),
            private_key: key.p8,
            topic: "com.example.app".into(),
            sandbox: true,
        });
        self.store.insert_site(&ios).await.expect("insert");
        let mut android = new_site("mailto:android@example.com").expect("site");
        android.fcm = Some(FcmCredentials {
            service_account: fcm_test_service_account(
                "test-project",
                "https://oauth2.googleapis.com/token",
            )
            .expect("account"),
        });
        self.store.insert_site(&android).await.expect("insert");
    }

    async fn finish(self, created: &Topics) {
        pushservice_testkit::remove_test_data(&self.store, &self.kafka, created).await;
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_clean_installation_passes() {
    let created = topics();
    let world = World::new(&created).await;
    world.good_sites().await;

    let out = world.pushctl(&["config", "check"], &[]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "expected exit 0\nstdout:\n{text}\nstderr:\n{}",
        stderr(&out)
    );
    assert!(text.starts_with("configuration OK\n"), "{text}");
    for expected in [
        "parser settings load",
        "sender settings load",
        "pushapi settings load",
        "gateway settings load",
        &format!("topic {} has 8 partitions", created.push.name),
        "credentials of 3 site(s) are usable",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let out = world.pushctl(&["config", "check", "--json"], &[]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["ok"], true, "{json:#}");
    assert_eq!(json["problems"], serde_json::json!([]), "{json:#}");
    world.finish(&created).await;
}

#[tokio::test]
async fn a_broken_installation_gets_every_problem_with_its_key() {
    // On the broker: no outcome topic, a push topic of 8 partitions. Configured: 12.
    let mut created = topics();
    let outcomes = created.outcomes.name.clone();
    let world = {
        let mut on_broker = created.clone();
        on_broker.outcomes.name = format!("{outcomes}-not-this-one");
        let mut world = World::new(&on_broker).await;
        world.topics = created.clone();
        world.topics.push.partitions = 12;
        created = on_broker;
        world
    };
    world.good_sites().await;
    // A site whose public key is another pair's.
    let mut mismatched = new_site("mailto:a@example.com").expect("site");
    mismatched.public_key = new_site("mailto:b@example.com").expect("site").public_key;
    world.store.insert_site(&mismatched).await.expect("insert");
    // An Android site whose service account is not JSON.
    let mut broken_fcm = new_site("mailto:c@example.com").expect("site");
    broken_fcm.fcm = Some(FcmCredentials {
        service_account: "{\"project_id\": \"x\", ".into(),
    });
    world.store.insert_site(&broken_fcm).await.expect("insert");

    let out = world.pushctl(&["config", "check", "--json"], &[]);
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(out.status.code(), Some(1), "{json:#}\n{}", stderr(&out));
    let subjects: Vec<&str> = json["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["subject"].as_str().expect("subject"))
        .collect();
    let expected = [
        "TOPIC_PUSH_PARTITIONS".to_owned(),
        "TOPIC_PUSH_OUTCOMES".to_owned(),
        format!("site {} publicKey/privateKey", mismatched.id.to_hex()),
        format!("site {} fcm.serviceAccount", broken_fcm.id.to_hex()),
    ];
    assert_eq!(subjects, expected, "{json:#}");
    let problems = &json["problems"];
    assert!(
        problems[0]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("has 8 partitions, TOPIC_PUSH_PARTITIONS says 12")),
        "{problems:#}"
    );
    assert!(
        problems[0]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("TOPIC_PUSH_PARTITIONS=8")),
        "{problems:#}"
    );
    assert!(
        problems[1]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("pushctl setup")),
        "{problems:#}"
    );
    assert!(
        problems[2]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("does not match the private key")),
        "{problems:#}"
    );
    assert!(
        problems[3]["fix"]
            .as_str()
            .is_some_and(|f| f.starts_with(&format!(
                "pushctl site fcm {} --service-account",
                broken_fcm.id.to_hex()
            ))),
        "{problems:#}"
    );

    // The text names the same, and says how many.
    let out = world.pushctl(&["config", "check"], &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("PROBLEMS (4)\n"), "{text}");
    assert!(
        stderr(&out).contains("4 problem(s) found"),
        "{}",
        stderr(&out)
    );

    // A wrong setting of one daemon is a problem too, named by its key.
    let out = world.pushctl(
        &["config", "check", "--json"],
        &[("SENDER_MAX_PENDING", "1")],
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let named = json["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .any(|p| p["subject"] == "SENDER_MAX_PENDING");
    assert!(named, "{json:#}");
    world.finish(&created).await;
}

#[tokio::test]
async fn an_unreachable_broker_is_not_checked_and_exits_2() {
    let created = topics();
    let world = World::new(&created).await;
    let out = world.pushctl(
        &["config", "check", "--json", "--daemons", "parser,sender"],
        &[
            // Nothing listens on port 1.
            ("KAFKA_BROKERS", "127.0.0.1:1"),
            ("KAFKA_TIMEOUT_MS", "1000"),
        ],
    );
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(out.status.code(), Some(2), "{json:#}");
    let unchecked = json["unchecked"].as_array().expect("unchecked");
    assert!(
        unchecked.iter().any(|u| {
            u["what"] == "Kafka topics and partition counts"
                && u["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("127.0.0.1:1"))
        }),
        "{json:#}"
    );
    world.finish(&created).await;
}
