//! `pushctl setup`: Kafka topics and MongoDB indexes, everything an installation needs once.

use pushservice_store::Store;

use crate::cli::SetupArgs;
use crate::error::CommandError;

/// Runs `pushctl setup`.
pub async fn run(args: SetupArgs) -> Result<(), CommandError> {
    let mongo = args.mongo.settings()?;
    let store = Store::connect(&mongo).await?;
    let result: Result<(), CommandError> = async {
        store.ensure_indexes().await?;
        println!("indexes ready in {}", mongo.redacted_url());
        super::topics::create(&args.kafka).await
    }
    .await;
    store.close().await;
    result
}
