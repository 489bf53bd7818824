//! `pushctl publish` and `pushctl realtime-token`: realtime messages and connection tokens,
//! through the same code as the API.

use std::time::Duration;

use pushservice_control::RealtimePublisher;
use pushservice_model::parse_object_id;
use pushservice_store::Store;
use serde_json::value::RawValue;

use crate::cli::{PublishArgs, RealtimeTokenArgs};
use crate::error::CommandError;

/// Runs `pushctl publish`.
pub async fn publish(args: PublishArgs) -> Result<(), CommandError> {
    let site = parse_object_id("site", &args.site_id)?;
    let data = RawValue::from_string(args.data.clone()).map_err(|e| {
        CommandError::InvalidInput(format!(
            "the message must be JSON ({e}); quote text as '\"hello\"' or an object as '{{\"text\":\"hello\"}}'"
        ))
    })?;
    let store = Store::connect(&args.mongo.settings()?).await?;
    let exists = store.realtime_settings(site).await?.is_some();
    store.close().await;
    if !exists {
        return Err(CommandError::NotFound(format!(
            "site {site} does not exist"
        )));
    }
    let topics = args.topics.settings()?;
    let publisher = RealtimePublisher::new(&args.kafka.settings()?, topics.realtime.name)?;
    let published = publisher
        .publish(site, &args.channel, data, args.ack, None)
        .await?;
    println!(
        "published {} to {} (position {})",
        published.id, args.channel, published.offset
    );
    Ok(())
}

/// Runs `pushctl realtime-token`.
pub async fn token(args: RealtimeTokenArgs) -> Result<(), CommandError> {
    let site = parse_object_id("site", &args.site_id)?;
    let channels: Vec<String> = args
        .channels
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let store = Store::connect(&args.mongo.settings()?).await?;
    let minted = pushservice_control::realtime::token(
        &store,
        site,
        &args.user,
        channels,
        Duration::from_secs(args.ttl_secs),
    )
    .await;
    store.close().await;
    let (token, _) = minted?;
    println!("{token}");
    Ok(())
}
