//! `pushctl status <pushId>`: a push's state and counters, as JSON.

use pushservice_model::parse_object_id;
use pushservice_store::Store;

use crate::cli::StatusArgs;
use crate::error::CommandError;

/// Runs `pushctl status`.
pub async fn run(args: StatusArgs) -> Result<(), CommandError> {
    let push_id = parse_object_id("push", &args.push_id)?;
    let store = Store::connect(&args.mongo.settings()?).await?;
    let result: Result<(), CommandError> = async {
        let push = store
            .push_with_live_totals(push_id)
            .await?
            .ok_or_else(|| CommandError::NotFound(format!("push {push_id} does not exist")))?;
        let summary = serde_json::json!({
            "pushId": push.id.to_hex(),
            "siteId": push.site_id.to_hex(),
            "status": push.status,
            "title": push.title,
            "totalSent": push.total_sent,
            "totalDeliver": push.total_deliver,
            "totalClick": push.total_click,
            "totalClose": push.total_close,
            "totalAccepted": push.total_accepted,
            "totalUnsubscribed": push.total_unsubscribed,
            "totalFailed": push.total_failed,
            "fanout": push.fanout.as_ref().map(|f| serde_json::json!({
                "produced": f.produced,
                "skipped": f.skipped,
                "lastSubscriberId": f.last_subscriber_id.map(|id| id.to_hex()),
            })),
            "failureReason": push.failure_reason,
            "deliveryFailures": push.delivery_failures,
        });
        println!("{summary:#}");
        Ok(())
    }
    .await;
    store.close().await;
    result
}
