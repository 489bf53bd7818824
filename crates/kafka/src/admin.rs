//! Topic administration: create what is missing, report what exists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushservice_config::{KafkaSettings, TopicSpec};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::client::{KafkaError, check_reachable, client_config};

/// What [`ensure_topics`] found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    /// The topic was created with the requested partitions.
    Created {
        /// Topic name.
        name: String,
        /// Partition count.
        partitions: i32,
    },
    /// The topic was already there; it was left as it is.
    Existed {
        /// Topic name.
        name: String,
        /// Partition count it has.
        partitions: i32,
        /// Partition count that was requested.
        requested: i32,
    },
}

impl std::fmt::Display for TopicOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicOutcome::Created { name, partitions } => {
                write!(f, "created topic {name} with {partitions} partitions")
            }
            TopicOutcome::Existed {
                name,
                partitions,
                requested,
            } if partitions == requested => {
                write!(
                    f,
                    "topic {name} already exists with {partitions} partitions"
                )
            }
            TopicOutcome::Existed {
                name,
                partitions,
                requested,
            } => write!(
                f,
                "topic {name} already exists with {partitions} partitions, not the {requested} \
                 configured; left unchanged (add partitions with Kafka's own tools if you mean to)"
            ),
        }
    }
}

/// Creates every topic of `specs` that does not exist yet; safe to run any number of times.
///
/// Returns once the cluster's metadata shows every topic, so a producer started right after
/// does not race topic propagation.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    specs: &[TopicSpec],
) -> Result<Vec<TopicOutcome>, KafkaError> {
    let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(
        client_config(settings)
            .create()
            .map_err(|e| KafkaError::client("creating admin client", e))?,
    );
    blocking(&admin, settings, |client, settings| {
        check_reachable(client, settings, None)
    })
    .await?;

    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(settings.timeout))
        .request_timeout(Some(settings.timeout));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| KafkaError::client("creating topics", e))?;

    let mut outcomes = Vec::with_capacity(specs.len());
    for (spec, result) in specs.iter().zip(results) {
        match result {
            Ok(_) => outcomes.push(TopicOutcome::Created {
                name: spec.name.clone(),
                partitions: spec.partitions,
            }),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let name = spec.name.clone();
                let partitions =
                    blocking(&admin, settings, move |c, s| partition_count(c, s, &name)).await?;
                outcomes.push(TopicOutcome::Existed {
                    name: spec.name.clone(),
                    partitions,
                    requested: spec.partitions,
                });
            }
            Err((name, code)) => {
                return Err(KafkaError::client(
                    format!("creating topic {name:?} ({} partitions)", spec.partitions),
                    rdkafka::error::KafkaError::AdminOp(code),
                ));
            }
        }
    }

    // Creation is acknowledged by the controller before every broker's metadata has it.
    let deadline = Instant::now() + settings.timeout;
    for spec in specs {
        loop {
            let name = spec.name.clone();
            match blocking(&admin, settings, move |c, s| partition_count(c, s, &name)).await {
                Ok(n) if n >= spec.partitions.min(1) => break,
                Ok(_) | Err(KafkaError::UnknownTopic { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(outcomes)
}

/// Runs a blocking metadata call on the blocking pool, so async workers never stall on it.
async fn blocking<T: Send + 'static>(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    settings: &KafkaSettings,
    call: impl FnOnce(&Client<DefaultClientContext>, &KafkaSettings) -> Result<T, KafkaError>
    + Send
    + 'static,
) -> Result<T, KafkaError> {
    let admin = Arc::clone(admin);
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || call(admin.inner(), &settings))
        .await
        .unwrap_or_else(|join| {
            Err(KafkaError::client(
                format!("metadata task: {join}"),
                rdkafka::error::KafkaError::Canceled,
            ))
        })
}

/// Partition count of `topic`, or [`KafkaError::UnknownTopic`].
pub fn partition_count<C: rdkafka::ClientContext>(
    client: &Client<C>,
    settings: &KafkaSettings,
    topic: &str,
) -> Result<i32, KafkaError> {
    let partitions = check_reachable(client, settings, Some(topic))?;
    Ok(i32::try_from(partitions).unwrap_or(i32::MAX))
}
