//! `pushctl dlq stats|tail|replay`: the dead-letter topic (`TOPIC_PUSH_DLQ`) as something an
//! operator can act on.
//!
//! Reading, counting and replaying dead letters live in [`pushservice_control::dlq`] (the
//! console's routes in `pushapi` use them too); these modules parse the arguments and print.
//!
//! - [`stats`] — counts by push and by reason, oldest and newest failure.
//! - [`tail`] — JSON lines.
//! - [`replay`] — back onto the push topic with a fresh budget, at most once per dead letter.

pub mod replay;
pub mod stats;
pub mod tail;

use pushservice_model::parse_object_id;

pub(crate) use pushservice_control::dlq::Scan;
pub use pushservice_control::dlq::{DeadLetter, header, rfc3339};

use crate::cli::{DlqAction, DlqArgs};
use crate::error::CommandError;

/// Runs `pushctl dlq ...`.
pub async fn run(args: DlqArgs) -> Result<(), CommandError> {
    match args.action {
        DlqAction::Stats(args) => stats::run(args).await,
        DlqAction::Tail(args) => tail::run(args).await,
        DlqAction::Replay(args) => replay::run(args).await,
    }
}

/// The `--push` filter, checked as an id first (exit 2 on a malformed one).
pub(crate) fn push_filter(push_id: Option<&str>) -> Result<Option<String>, CommandError> {
    push_id
        .map(|id| parse_object_id("push", id).map(|id| id.to_hex()))
        .transpose()
        .map_err(CommandError::from)
}
