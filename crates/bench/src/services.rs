//! The shared services (Kafka, MongoDB/FerretDB): checking that they answer, finding their
//! processes so their CPU can be measured, and the Kafka administration of a run.
//!
//! A run creates its own topics (with `pushctl setup`) and consumer groups, so runs never see
//! each other's messages or offsets; [`KafkaAdmin::delete_run`] removes them at the end.
//! Before the push is sent, the run waits until [`KafkaAdmin::group_settled`] says each
//! consumer group is stable and its members hold every partition, so no rebalance disturbs
//! the measurement.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use pushservice_config::{KafkaSettings, MongoSettings};
use pushservice_kafka::rdkafka::admin::{AdminClient, AdminOptions};
use pushservice_kafka::rdkafka::client::DefaultClientContext;
use pushservice_kafka::{check_reachable, client_config, describe_group};
use pushservice_store::Store;

/// Hint appended to "service not answering" errors.
const SERVICES_HINT: &str = "start the local services with `scripts/services up` \
    (or point MONGODB_URL / KAFKA_BROKERS at running ones)";

/// Connects to MongoDB (pinging it) and asks Kafka for metadata; errors say what to start.
pub async fn connect(
    mongodb_url: &str,
    kafka: &KafkaSettings,
) -> anyhow::Result<(Store, KafkaAdmin)> {
    let mongo = MongoSettings {
        url: mongodb_url.to_owned(),
        timeout: Duration::from_secs(5),
        batch_size: 1_000,
    };
    let store = Store::connect(&mongo)
        .await
        .with_context(|| format!("MongoDB does not answer; {SERVICES_HINT}"))?;
    let admin = KafkaAdmin::new(kafka)?;
    let probe = Arc::clone(&admin.client);
    let settings = kafka.clone();
    tokio::task::spawn_blocking(move || check_reachable(probe.inner(), &settings, None))
        .await
        .context("Kafka probe panicked")?
        .with_context(|| format!("Kafka does not answer; {SERVICES_HINT}"))?;
    Ok((store, admin))
}

/// An admin client for a run's topics and groups.
pub struct KafkaAdmin {
    client: Arc<AdminClient<DefaultClientContext>>,
    timeout: Duration,
}

impl KafkaAdmin {
    /// Creates the client (connections are made lazily).
    pub fn new(settings: &KafkaSettings) -> anyhow::Result<KafkaAdmin> {
        let client = client_config(settings)
            .create()
            .context("creating a Kafka admin client")?;
        Ok(KafkaAdmin {
            client: Arc::new(client),
            timeout: settings.timeout,
        })
    }

    /// Whether `group` is stable with `members` members that hold `partitions` partitions
    /// between them (false also when Kafka cannot say).
    pub async fn group_settled(&self, group: &str, members: usize, partitions: usize) -> bool {
        let client = Arc::clone(&self.client);
        let name = group.to_owned();
        let wait = self.timeout;
        let found = tokio::task::spawn_blocking(move || {
            let view = describe_group(client.inner(), &name, wait).ok()??;
            Some((view.state == "Stable", view.members.len(), view.assigned()))
        })
        .await
        .ok()
        .flatten();
        found == Some((true, members, partitions))
    }

    /// Deletes the run's topics and consumer groups; best effort, problems are returned as
    /// text for the report.
    pub async fn delete_run(&self, topics: &[String], groups: &[String]) -> Vec<String> {
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        let mut problems = Vec::new();
        let topic_names: Vec<&str> = topics.iter().map(String::as_str).collect();
        match self.client.delete_topics(&topic_names, &options).await {
            Ok(results) => problems.extend(
                results
                    .into_iter()
                    .filter_map(|r| r.err().map(|(name, code)| format!("topic {name}: {code}"))),
            ),
            Err(e) => problems.push(format!("deleting topics: {e}")),
        }
        let group_names: Vec<&str> = groups.iter().map(String::as_str).collect();
        if group_names.is_empty() {
            return problems;
        }
        match self.client.delete_groups(&group_names, &options).await {
            Ok(results) => problems.extend(
                results
                    .into_iter()
                    .filter_map(|r| r.err().map(|(name, code)| format!("group {name}: {code}"))),
            ),
            Err(e) => problems.push(format!("deleting groups: {e}")),
        }
        problems
    }
}

/// The Kafka and MongoDB server processes, found by `scripts/services`'s pid files, or else by
/// who listens on their ports (`ss -ltnp`). Either may be missing (remote services).
pub fn service_pids(bin_dir: &Path, kafka_port: u16, mongo_port: u16) -> Vec<(String, u32)> {
    let mut run_dirs: Vec<PathBuf> = Vec::new();
    if let Some(cache) = std::env::var_os("PUSHSERVICE_CACHE_DIR") {
        run_dirs.push(PathBuf::from(cache).join("run"));
    }
    if let Ok(cwd) = std::env::current_dir() {
        run_dirs.extend(cwd.ancestors().map(|d| d.join(".cache/run")));
    }
    run_dirs.extend(bin_dir.ancestors().map(|d| d.join(".cache/run")));
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    let from_files = |file: &str| {
        run_dirs.iter().find_map(|dir| {
            let text = std::fs::read_to_string(dir.join(file)).ok()?;
            text.trim().parse::<u32>().ok().filter(|&pid| alive(pid))
        })
    };
    let mut found = Vec::new();
    for (name, file, port) in [
        ("kafka", "kafka/kafka.pid", kafka_port),
        ("ferretdb", "ferretdb/ferretdb.pid", mongo_port),
    ] {
        if let Some(pid) = from_files(file).or_else(|| listener_pid(port)) {
            found.push((name.to_owned(), pid));
        }
    }
    found
}

/// The process listening on TCP `port`, from `ss -ltnp`.
fn listener_pid(port: u16) -> Option<u32> {
    let out = std::process::Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output()
        .ok()?;
    parse_ss_pid(&String::from_utf8_lossy(&out.stdout))
}

/// The first `pid=N` in `ss -p` output.
pub fn parse_ss_pid(text: &str) -> Option<u32> {
    let at = text.find("pid=")? + 4;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The port of the first `host:port` of a broker list or MongoDB URL authority; `default`
/// when there is none.
pub fn first_port(list: &str, default: u16) -> u16 {
    let authority = list
        .split("://")
        .last()
        .unwrap_or(list)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let first = authority.rsplit('@').next().unwrap_or("").split(',').next();
    first
        .and_then(|hp| hp.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_output_gives_the_pid() {
        let line = r#"LISTEN 0 50 [::ffff:127.0.0.1]:9092 *:* users:(("java",pid=3226,fd=1066))"#;
        assert_eq!(parse_ss_pid(line), Some(3226));
        assert_eq!(parse_ss_pid("LISTEN 0 50 127.0.0.1:9092 *:*"), None);
    }

    #[test]
    fn ports_come_from_broker_lists_and_urls() {
        assert_eq!(first_port("127.0.0.1:9092", 1), 9092);
        assert_eq!(first_port("k1:9093,k2:9094", 1), 9093);
        assert_eq!(first_port("mongodb://u:p@h:27018/db?x=1", 1), 27018);
        assert_eq!(first_port("mongodb://h/db", 27017), 27017);
    }
}
