//! `pushctl send <pushId>`: the original service's `node cmd/send.js <pushId>`.
//!
//! Order matters for "loses nothing": everything that can be checked is checked before the push
//! changes state (id, push, site, status, broker and topic). Only then is the push moved to
//! `processing`, atomically, and its `raw-push` message published with `acks=all`. If the
//! broker does not acknowledge in time, the push is moved back to the status it had, so the
//! same command can simply be run again.

use std::time::{SystemTime, UNIX_EPOCH};

use pushservice_kafka::rdkafka::producer::{FutureRecord, Producer as _};
use pushservice_kafka::{ProducerTuning, check_reachable, producer};
use pushservice_model::{PushStatus, RawPushMessage, parse_object_id};
use pushservice_store::{Store, Transition};

use crate::cli::SendArgs;
use crate::error::CommandError;

/// Runs `pushctl send`.
pub async fn run(args: SendArgs) -> Result<(), CommandError> {
    let push_id = parse_object_id("push", &args.push_id)?;
    let mongo = args.mongo.settings()?;
    let kafka = args.kafka.settings()?;
    let topic = args.topics.settings()?.raw_push.name;

    let store = Store::connect(&mongo).await?;
    let result: Result<(), CommandError> = async {
    let push = store.push(push_id).await?.ok_or_else(|| {
        CommandError::NotFound(format!(
            "push {push_id} does not exist in {}; check the id (pushes are created by your \
             backend or `seed push`)",
            mongo.redacted_url()
        ))
    })?;
    if store.site(push.site_id).await?.is_none() {
        return Err(CommandError::NotFound(format!(
            "push {push_id} belongs to site {}, which does not exist; the push cannot be signed",
            push.site_id
        )));
    }
    let previous = push.status;
    if previous != PushStatus::Pending && !args.force {
        return Err(CommandError::Conflict(format!(
            "push {push_id} is {previous}, not pending; pass --force to send it again"
        )));
    }

    let producer = producer(&kafka, &ProducerTuning::command(kafka.timeout))?;
    {
        let (producer, kafka, topic) = (producer.clone(), kafka.clone(), topic.clone());
        tokio::task::spawn_blocking(move || {
            check_reachable(producer.client(), &kafka, Some(&topic))
        })
        .await
        .map_err(|e| anyhow::anyhow!("broker check task failed: {e}"))??;
    }

    // Also forgets any fan-out checkpoint, so a forced resend reaches everyone again.
    match store.restart_push(push_id, previous).await? {
        Transition::Done(_) => {}
        Transition::Conflict(now) => {
            let now = now.map_or("gone".to_owned(), |s| s.to_string());
            return Err(CommandError::Conflict(format!(
                "push {push_id} changed from {previous} to {now} while sending; nothing was \
                 published"
            )));
        }
    }

    let message = RawPushMessage {
        push_id: push_id.to_hex(),
        site_id: push.site_id.to_hex(),
        triggered_at: now_millis(),
    };
    let payload = message.to_json();
    let record = FutureRecord::to(&topic)
        .key(&message.push_id)
        .payload(&payload);
    match producer.send(record, kafka.timeout).await {
        Ok(delivery) => {
            tracing::info!(
                push_id = %push_id, partition = delivery.partition, offset = delivery.offset,
                "raw-push published"
            );
            println!(
                "push {push_id} sent: {topic} partition {} offset {}",
                delivery.partition, delivery.offset
            );
            Ok(())
        }
        Err((error, _)) => {
            // Not acknowledged: put the push back so that running the command again works.
            let reverted = store
                .transition_push(push_id, PushStatus::Processing, previous)
                .await;
            if let Err(e) = &reverted {
                tracing::error!(push_id = %push_id, error = %e, "could not restore push status");
            }
            Err(CommandError::Kafka(
                pushservice_kafka::KafkaError::Unreachable {
                    brokers: kafka.brokers.clone(),
                    timeout: kafka.timeout,
                    source: error,
                },
            ))
        }
    }
    }
    .await;
    store.close().await;
    result
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
