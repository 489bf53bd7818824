//! `pushctl cancel <pushId>`: stop a push. The parser stops fanning it out within a second
//! or two and senders drop its remaining deliveries (counted as canceled); the same as the
//! API's `POST /v1/pushes/{pushId}/cancel`.

use pushservice_model::parse_object_id;
use pushservice_store::{Store, Transition};

use crate::cli::StatusArgs;
use crate::error::CommandError;

/// Runs `pushctl cancel`.
pub async fn run(args: StatusArgs) -> Result<(), CommandError> {
    let push_id = parse_object_id("push", &args.push_id)?;
    let store = Store::connect(&args.mongo.settings()?).await?;
    let result = match store.cancel_push(push_id).await {
        Ok(Transition::Done(_)) => {
            println!("push {push_id} canceled");
            Ok(())
        }
        Ok(Transition::Conflict(None)) => Err(CommandError::NotFound(format!(
            "push {push_id} does not exist"
        ))),
        Ok(Transition::Conflict(Some(status))) => Err(CommandError::Conflict(format!(
            "push {push_id} is {status}; only a pending or processing push can be canceled"
        ))),
        Err(e) => Err(e.into()),
    };
    store.close().await;
    result
}
