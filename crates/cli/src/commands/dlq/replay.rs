//! `pushctl dlq replay [--push ID] [--reason TEXT] [--dry-run] [--again]`: dead letters back
//! onto the push topic, keyed by subscriber id, with a fresh retry budget and `replayed:
//! true`, so the push's counts take the new outcome in place of the failure.
//!
//! Each dead letter is replayed at most once, across runs (and across `pushctl` and the
//! console), unless `--again`: see [`pushservice_control::dlq`] for the markers in the
//! MongoDB collection [`REPLAYS`] that make it so, and how a run that died is taken over.
//! When the broker refuses a message the command fails (exit 5): running it again retries.
//!
//! Records whose value is not a delivery message are never replayed; each is named on stderr
//! and counted.

use pushservice_control::dlq::{Filter, ReasonMatch, ReplayOptions, Replayer};
use pushservice_store::Store;

use super::push_filter;
use crate::cli::DlqReplayArgs;
use crate::error::CommandError;

pub use pushservice_control::dlq::{BATCH, REPLAYS, ReplayCounts, fresh};

/// Runs `pushctl dlq replay`.
pub async fn run(args: DlqReplayArgs) -> Result<(), CommandError> {
    let filter = Filter {
        push: push_filter(args.push_id.as_deref())?,
        site: None,
        reason: args
            .reason
            .as_deref()
            .map(|r| ReasonMatch::Contains(r.to_lowercase())),
    };
    let kafka = args.kafka.kafka.settings()?;
    let topics = args.kafka.topics.settings()?;
    let mongo = args.mongo.settings()?;
    let store = Store::connect(&mongo).await?;
    let options = ReplayOptions {
        dry_run: args.dry_run,
        again: args.again,
    };
    let result = match Replayer::new(&store, kafka, topics.push.name.clone(), options) {
        Ok(replayer) => {
            replayer
                .run(&filter, &topics.dead_letter.name, |id, why| {
                    eprintln!("unreadable dead letter {id}, not replayed: {why}");
                })
                .await
        }
        Err(e) => Err(e),
    };
    store.close().await;
    let counts = result?;
    let verb = if args.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    println!(
        "dead letters read from {}: {}",
        topics.dead_letter.name, counts.read
    );
    println!("{verb} onto {}: {}", topics.push.name, counts.replayed);
    println!("skipped, already replayed: {}", counts.skipped);
    println!("unreadable, never replayed: {}", counts.unreadable);
    println!("not matching: {}", counts.not_matching);
    Ok(())
}
