//! `pushctl watch <pushId>`: follow a push until every delivery has an outcome.
//!
//! Prints a progress line whenever the counts move, at most once per poll (fanned out, accepted, unsubscribed, failed, rate) and
//! returns once the parser is done and the senders' counters account for every delivery
//! message, or when the push failed, or after `--timeout-secs`.

use std::time::{Duration, Instant};

use pushservice_model::{PushStatus, parse_object_id};
use pushservice_store::Store;

use crate::cli::WatchArgs;
use crate::error::CommandError;

/// Runs `pushctl watch`.
pub async fn run(args: WatchArgs) -> Result<(), CommandError> {
    let push_id = parse_object_id("push", &args.push_id)?;
    let store = Store::connect(&args.mongo.settings()?).await?;
    let result: Result<(), CommandError> = async {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut last_counts = None;
    let mut last_print = Instant::now();
    loop {
        let push = store
            .push_with_live_totals(push_id)
            .await?
            .ok_or_else(|| CommandError::NotFound(format!("push {push_id} does not exist")))?;
        let fanned_out = push.fanout.as_ref().map_or(0, |f| f.produced);
        let outcomes = push.total_accepted + push.total_unsubscribed + push.total_failed;
        let seconds = started.elapsed().as_secs_f64().max(1e-3);
        let line = format!(
            "{:>6.1}s  {:<10} fanned out {:>9}  accepted {:>9}  unsubscribed {:>7}  failed {:>6}  ({:.0} outcomes/s)",
            seconds,
            push.status.as_str(),
            fanned_out,
            push.total_accepted,
            push.total_unsubscribed,
            push.total_failed,
            outcomes as f64 / seconds,
        );
        let counts = (push.status, fanned_out, outcomes);
        if last_counts != Some(counts) || last_print.elapsed() >= Duration::from_secs(10) {
            println!("{line}");
            last_counts = Some(counts);
            last_print = Instant::now();
        }
        match push.status {
            PushStatus::Done if outcomes >= push.total_sent => {
                println!(
                    "push {push_id} complete: {} delivery messages, {} accepted, {} unsubscribed, {} failed",
                    push.total_sent,
                    push.total_accepted,
                    push.total_unsubscribed,
                    push.total_failed
                );
                return Ok(());
            }
            PushStatus::Failed | PushStatus::Canceled => {
                return Err(CommandError::Conflict(format!(
                    "push {push_id} is {}{}",
                    push.status,
                    push.failure_reason
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(CommandError::Other(anyhow::anyhow!(
                "push {push_id} not complete after {}s (is a parser and a sender running?)",
                args.timeout_secs
            )));
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    }
    .await;
    store.close().await;
    result
}
