//! Offline fallback: a message to `user:<id>` published with a fallback names a pending push
//! (made by `pushapi`, its audience that user). When the deadline passes and no device of the
//! user acked the message on any gateway, the push is sent, once: a unique claim per message
//! decides which gateway sends it. Acked in time, the push is canceled instead.
//!
//! Acks reach MongoDB within a second (each gateway writes its figures every second), so a
//! fallback is decided a little after its deadline ([`SETTLE_MARGIN`]).

use std::time::Duration;

use pushservice_control::PushTrigger;
use pushservice_model::{DateTime, ObjectId};
use pushservice_store::Store;
use tokio_util::sync::CancellationToken;

/// How long after the deadline a fallback is decided: the gateways' figure writes (every
/// second) must have landed.
pub const SETTLE_MARGIN: Duration = Duration::from_millis(1_500);

/// Decides due fallbacks every `every` until `stop`.
pub async fn run(store: Store, trigger: PushTrigger, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(e) = decide_due(&store, &trigger).await {
            tracing::warn!(error = %e, "deciding realtime fallbacks");
        }
    }
}

async fn decide_due(store: &Store, trigger: &PushTrigger) -> anyhow::Result<()> {
    let cutoff = DateTime::from_millis(
        DateTime::now().timestamp_millis() - i64::try_from(SETTLE_MARGIN.as_millis()).unwrap_or(0),
    );
    for fallback in store.due_fallbacks(cutoff, 100).await? {
        let acked: u64 = store
            .ack_figures(&fallback.site_id, &fallback.id)
            .await?
            .iter()
            .map(|f| f.acked)
            .sum();
        let Ok(push_id) = ObjectId::parse_str(&fallback.push_id) else {
            store.settle_fallback(&fallback.id, "failed").await?;
            continue;
        };
        if acked > 0 {
            // Delivered and acknowledged: the push is not needed.
            let _ = store.cancel_push(push_id).await;
            store.settle_fallback(&fallback.id, "acked").await?;
            continue;
        }
        if !store.claim_fallback(&fallback.id).await? {
            continue; // Another gateway sends it.
        }
        match trigger.send(store, push_id, false).await {
            Ok(_) => {
                tracing::info!(message = fallback.id, push = %push_id, "fallback push sent: nobody acked in time");
                store.settle_fallback(&fallback.id, "sent").await?;
            }
            Err(pushservice_control::ControlError::NotPending { status, .. }) => {
                tracing::warn!(message = fallback.id, push = %push_id, %status, "fallback push was not pending; not sent");
                store.settle_fallback(&fallback.id, "failed").await?;
            }
            Err(e) => {
                // Kafka away: give the claim back, the next round tries again.
                tracing::warn!(error = %e, message = fallback.id, "sending a fallback push");
                store.release_fallback(&fallback.id).await?;
            }
        }
    }
    Ok(())
}
