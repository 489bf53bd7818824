//! `pushctl site` as a user runs it against the real MongoDB-protocol server: set, show and
//! remove a site's APNs and FCM credentials, and refuse files the senders could not use.

use std::path::PathBuf;
use std::process::{Command, Output};

use pushservice_config::MongoSettings;
use pushservice_seed::{apns_test_key, fcm_test_service_account, new_site};
use pushservice_store::Store;
use pushservice_testkit::{mongo_settings, store, unique_name};

struct World {
    mongo: MongoSettings,
    store: Store,
    dir: PathBuf,
}

impl World {
    async fn new() -> World {
        let mongo = mongo_settings();
        let store = store(&mongo).await;
        let dir = std::env::temp_dir().join(unique_name("pushctl-site"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        World { mongo, store, dir }
    }

    fn pushctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pushctl"))
            .args(args)
            .env("PUSHSERVICE_ENV_FILE", "/dev/null")
            .env("MONGODB_URL", &self.mongo.url)
            .output()
            .expect("pushctl runs")
    }

    /// `pushctl site apns <site_id> --key-file <key_file>`, team TEAMID0001, app
    /// com.example.app.
    fn set_apns(&self, site_id: &str, key_file: &str) -> Output {
        self.pushctl(&[
            "site",
            "apns",
            site_id,
            "--key-file",
            key_file,
            "--team-id",
            "TEAMID0001",
            "--topic",
            "com.example.app",
        ])
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    }

    async fn finish(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = self.store.database().drop().await;
    }
}

fn stdout_json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "pushctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn apns_and_fcm_credentials_are_set_shown_without_secrets_and_removed() {
    let world = World::new().await;
    let site = new_site("mailto:ops@example.com").expect("keys");
    world.store.insert_site(&site).await.expect("site");
    let id = site.id.to_hex();
    let key = apns_test_key().expect("APNs key");
    let key_file = world.write(&key.file_name(), &key.p8);
    let account =
        fcm_test_service_account("site-test", "https://oauth2.googleapis.com/token").expect("SA");
    let account_file = world.write("service-account.json", &account);

    let shown = stdout_json(&world.set_apns(&id, &key_file));
    assert_eq!(shown["apns"]["keyId"], key.key_id.as_str());
    assert_eq!(shown["apns"]["teamId"], "TEAMID0001");
    assert_eq!(shown["apns"]["sandbox"], false);
    let shown =
        stdout_json(&world.pushctl(&["site", "fcm", &id, "--service-account", &account_file]));
    assert_eq!(shown["fcm"]["projectId"], "site-test");
    let text = shown.to_string();
    assert!(!text.contains("PRIVATE KEY"), "secrets shown: {text}");

    let stored = world
        .store
        .site(site.id)
        .await
        .expect("query")
        .expect("site");
    let apns = stored.apns.expect("APNs stored");
    assert_eq!(apns.private_key, key.p8, "the key is stored as given");
    assert_eq!(apns.topic, "com.example.app");
    assert_eq!(stored.fcm.expect("FCM stored").service_account, account);
    assert_eq!(stored.public_key, site.public_key, "VAPID keys untouched");

    let shown = stdout_json(&world.pushctl(&["site", "apns", &id, "--remove"]));
    assert!(shown["apns"].is_null());
    assert_eq!(shown["fcm"]["projectId"], "site-test");
    let stored = world
        .store
        .site(site.id)
        .await
        .expect("query")
        .expect("site");
    assert!(stored.apns.is_none());
    world.finish().await;
}

#[tokio::test]
async fn unusable_files_and_unknown_sites_are_refused_with_what_to_do() {
    let world = World::new().await;
    let site = new_site("mailto:ops@example.com").expect("keys");
    world.store.insert_site(&site).await.expect("site");
    let id = site.id.to_hex();

    let not_a_key = world.write("AuthKey_ABCDEFGHIJ.p8", "hello");
    let output = world.set_apns(&id, &not_a_key);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("AuthKey_ABCDEFGHIJ.p8"), "{stderr}");

    let key = apns_test_key().expect("APNs key");
    let badly_named = world.write("signing.p8", &key.p8);
    let output = world.set_apns(&id, &badly_named);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--key-id"));

    let broken = world.write("sa.json", r#"{"project_id":"p"}"#);
    let output = world.pushctl(&["site", "fcm", &id, "--service-account", &broken]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("client_email"));

    let good = world.write(&key.file_name(), &key.p8);
    let unknown = pushservice_model::ObjectId::new().to_hex();
    let output = world.set_apns(&unknown, &good);
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));

    let stored = world
        .store
        .site(site.id)
        .await
        .expect("query")
        .expect("site");
    assert!(
        stored.apns.is_none() && stored.fcm.is_none(),
        "nothing written"
    );
    world.finish().await;
}
