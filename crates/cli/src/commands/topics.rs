//! `pushctl topics create|describe`.

use pushservice_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use pushservice_kafka::{KafkaError, client_config, ensure_topics, partition_count};

use crate::cli::{KafkaTopicArgs, TopicsAction, TopicsArgs};
use crate::error::CommandError;

/// Runs `pushctl topics ...`.
pub async fn run(args: TopicsArgs) -> Result<(), CommandError> {
    match args.action {
        TopicsAction::Create(args) => create(&args).await,
        TopicsAction::Describe(args) => describe(&args).await,
    }
}

/// Creates the configured topics; prints one line per topic.
pub async fn create(args: &KafkaTopicArgs) -> Result<(), CommandError> {
    let kafka = args.kafka.settings()?;
    let topics = args.topics.settings()?;
    for outcome in ensure_topics(&kafka, &topics.all()).await? {
        println!("{outcome}");
    }
    Ok(())
}

async fn describe(args: &KafkaTopicArgs) -> Result<(), CommandError> {
    let kafka = args.kafka.settings()?;
    let topics = args.topics.settings()?;
    let lines = tokio::task::spawn_blocking(move || -> Result<Vec<String>, KafkaError> {
        let client: BaseConsumer =
            client_config(&kafka)
                .create()
                .map_err(|e| KafkaError::Client {
                    context: "creating client".into(),
                    source: e,
                })?;
        let mut lines = Vec::new();
        for spec in topics.all() {
            let line = match partition_count(client.client(), &kafka, &spec.name) {
                Ok(n) => format!(
                    "{}: {n} partitions (configured {})",
                    spec.name, spec.partitions
                ),
                Err(KafkaError::UnknownTopic { .. }) => format!("{}: missing", spec.name),
                Err(e) => return Err(e),
            };
            lines.push(line);
        }
        Ok(lines)
    })
    .await
    .map_err(|e| anyhow::anyhow!("describe task failed: {e}"))??;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
