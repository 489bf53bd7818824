//! Connection settings shared by every client, and the errors they report.

use std::time::Duration;

use pushservice_config::KafkaSettings;
use rdkafka::ClientConfig;
use rdkafka::client::Client;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};

/// What went wrong talking to Kafka, said so that an operator knows what to do.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// No broker answered within the timeout.
    #[error(
        "could not reach Kafka at {brokers} within {timeout:?} ({source}); is the broker running \
         and KAFKA_BROKERS right?"
    )]
    Unreachable {
        /// The bootstrap list that was tried.
        brokers: String,
        /// How long we waited.
        timeout: Duration,
        /// librdkafka's error.
        source: RdKafkaError,
    },
    /// The topic does not exist on the cluster.
    #[error(
        "Kafka topic {topic:?} does not exist on {brokers}; create it with `pushctl topics create`"
    )]
    UnknownTopic {
        /// Missing topic.
        topic: String,
        /// The cluster asked.
        brokers: String,
    },
    /// Any other client error, with what we were doing.
    #[error("Kafka: {context}: {source}")]
    Client {
        /// What was being done.
        context: String,
        /// librdkafka's error.
        source: RdKafkaError,
    },
}

impl KafkaError {
    pub(crate) fn client(context: impl Into<String>, source: RdKafkaError) -> Self {
        KafkaError::Client {
            context: context.into(),
            source,
        }
    }
}

/// The settings every producer, consumer and admin client starts from.
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    let timeout_ms = settings.timeout.as_millis().to_string();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("client.id", "pushservice")
        .set("socket.connection.setup.timeout.ms", &timeout_ms)
        // Resolve and try every address of a broker name, not just the first.
        .set("client.dns.lookup", "use_all_dns_ips");
    if let Some(security) = &settings.security {
        config
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanisms", &security.mechanism)
            .set("sasl.username", &security.username)
            .set("sasl.password", &security.password);
        if let Some(ca) = &security.ca_location {
            config.set("ssl.ca.location", ca);
        }
    }
    config
}

/// Asks the cluster for metadata (of `topic`, when given) within the settings' timeout and
/// returns the topic's partition count (0 when no topic was asked about).
///
/// Fails with [`KafkaError::Unreachable`] when no broker answers and with
/// [`KafkaError::UnknownTopic`] when the topic is missing. Blocking: call it from
/// `spawn_blocking` in async code.
pub fn check_reachable<C: rdkafka::ClientContext>(
    client: &Client<C>,
    settings: &KafkaSettings,
    topic: Option<&str>,
) -> Result<usize, KafkaError> {
    let metadata = client
        .fetch_metadata(topic, settings.timeout)
        .map_err(|source| KafkaError::Unreachable {
            brokers: settings.brokers.clone(),
            timeout: settings.timeout,
            source,
        })?;
    let Some(topic) = topic else { return Ok(0) };
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len()),
        Some(t)
            if t.error().is_some_and(|e| {
                RDKafkaErrorCode::from(e) != RDKafkaErrorCode::UnknownTopicOrPartition
            }) =>
        {
            let code = t.error().map(RDKafkaErrorCode::from);
            Err(KafkaError::client(
                format!("metadata of topic {topic:?}"),
                RdKafkaError::MetadataFetch(code.unwrap_or(RDKafkaErrorCode::Unknown)),
            ))
        }
        _ => Err(KafkaError::UnknownTopic {
            topic: topic.to_owned(),
            brokers: settings.brokers.clone(),
        }),
    }
}
