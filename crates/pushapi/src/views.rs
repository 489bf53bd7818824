//! What the API answers: documents as JSON without anything secret.

use pushservice_model::{Push, Site};
use pushservice_store::{EventCounts, Registered};
use serde_json::{Value, json};

fn time(t: Option<bson::DateTime>) -> Value {
    t.and_then(|t| t.try_to_rfc3339_string().ok())
        .map_or(Value::Null, Value::String)
}

/// A site without private keys or key hashes.
pub fn site(site: &Site) -> Value {
    let fcm = site
        .fcm
        .as_ref()
        .map(|fcm| match pushservice_fcm_account(&fcm.service_account) {
            Some((project, email)) => json!({ "projectId": project, "clientEmail": email }),
            None => json!({ "unusable": true }),
        });
    json!({
        "id": site.id.to_hex(),
        "subject": site.subject,
        "publicKey": site.public_key,
        "allowedOrigins": site.allowed_origins,
        "apiKeys": site.api_keys.iter().map(|k| json!({
            "id": k.id,
            "createdAt": time(k.created_at),
        })).collect::<Vec<_>>(),
        "apns": site.apns.as_ref().map(|apns| json!({
            "teamId": apns.team_id,
            "keyId": apns.key_id,
            "topic": apns.topic,
            "sandbox": apns.sandbox,
        })),
        "fcm": fcm,
        "createdAt": time(site.created_at),
        "updatedAt": time(site.updated_at),
    })
}

/// The project and client email of a service account, read without keeping the key.
fn pushservice_fcm_account(json: &str) -> Option<(String, String)> {
    let value: Value = serde_json::from_str(json).ok()?;
    Some((
        value.get("project_id")?.as_str()?.to_owned(),
        value.get("client_email")?.as_str()?.to_owned(),
    ))
}

/// A push with its totals (live delivery sums and event counts when given).
pub fn push(push: &Push, events: Option<EventCounts>) -> Value {
    let events = events.unwrap_or(EventCounts {
        delivered: push.total_deliver,
        clicked: push.total_click,
        closed: push.total_close,
    });
    let settled =
        push.total_accepted + push.total_unsubscribed + push.total_failed + push.total_canceled;
    json!({
        "id": push.id.to_hex(),
        "siteId": push.site_id.to_hex(),
        "status": push.status.as_str(),
        "title": push.title,
        "options": push.options,
        "launchUrl": push.launch_url,
        "priority": push.priority,
        "timeToLive": push.time_to_live,
        "audience": push.audience,
        "failureReason": push.failure_reason,
        "totals": {
            "sent": push.total_sent,
            "accepted": push.total_accepted,
            "unsubscribed": push.total_unsubscribed,
            "failed": push.total_failed,
            "canceled": push.total_canceled,
            "pending": (push.total_sent - settled).max(0),
            "delivered": events.delivered,
            "clicked": events.clicked,
            "closed": events.closed,
        },
        "fanout": push.fanout.as_ref().map(|f| json!({
            "produced": f.produced,
            "skipped": f.skipped,
            "canceled": f.canceled,
            "finishedAt": time(f.finished_at),
        })),
        "deliveryFailures": push.delivery_failures,
        "createdAt": time(push.created_at),
        "updatedAt": time(push.updated_at),
        "canceledAt": time(push.canceled_at),
    })
}

/// Whether every delivery of a push has its outcome: nothing more will change but events.
pub fn is_final(push: &Push) -> bool {
    use pushservice_model::PushStatus;
    let settled =
        push.total_accepted + push.total_unsubscribed + push.total_failed + push.total_canceled;
    match push.status {
        PushStatus::Pending | PushStatus::Processing => false,
        PushStatus::Done => settled >= push.total_sent,
        PushStatus::Failed => true,
        PushStatus::Canceled => {
            // Final once the parser has stopped and counted the subscribers it never reached
            // (`fanout.finishedAt`), and every delivery it produced has an outcome.
            push.fanout
                .as_ref()
                .filter(|f| f.finished_at.is_some())
                .is_some_and(|f| settled >= f.produced.max(push.total_sent) + f.canceled)
        }
    }
}

/// A registered subscriber.
pub fn registered(site_id: &str, platform: &str, registered: Registered) -> Value {
    json!({
        "id": registered.id.to_hex(),
        "siteId": site_id,
        "platform": platform,
        "created": registered.created,
    })
}
