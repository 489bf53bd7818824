//! `pushctl send <pushId>`: the original service's `node cmd/send.js <pushId>`.
//!
//! The same implementation as the API's `POST /v1/pushes/{pushId}/send`
//! ([`pushservice_control::PushTrigger`]): everything is checked before the push changes
//! state, and a push whose `raw-push` the broker did not acknowledge is put back, so the
//! command can simply be run again.

use pushservice_control::PushTrigger;
use pushservice_model::parse_object_id;
use pushservice_store::Store;

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
        let trigger = PushTrigger::new(&kafka, topic.clone())?;
        trigger.check_reachable().await?;
        let published = trigger.send(&store, push_id, args.force).await?;
        println!(
            "push {push_id} sent: {topic} partition {} offset {}",
            published.partition, published.offset
        );
        Ok(())
    }
    .await;
    store.close().await;
    result
}
