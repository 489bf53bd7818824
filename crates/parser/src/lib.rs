//! The parser daemon: turns one triggered push into one delivery message per subscriber.
//!
//! It consumes `raw-push` in a consumer group (`ParserGroup`), streams the push's site's
//! subscribed audience (narrowed by the push's `audience`, if any) out of MongoDB in `_id`
//! order and produces one delivery message per subscriber onto the 200-partition `push` topic, keyed by subscriber id.
//!
//! Guarantees:
//! - **Nothing missed**: the `raw-push` offset is stored only once the push is fully fanned
//!   out (or failed for good); a checkpoint on the push document records the last subscriber
//!   whose message Kafka acknowledged, and a parser that picks the push up again resumes after
//!   it. Duplicates, each also counted in the push's totals, are bounded by two checkpoint
//!   windows, and only happen when a parser dies or Kafka fails: a parser that retries after
//!   MongoDB failed first waits for what it produced to be acknowledged and resumes after
//!   that, not at the stored checkpoint ([`supervisor::Progress`]).
//! - **Flat memory**: subscribers are streamed in batches, messages encoded into one reused
//!   buffer, and the producer's queue is bounded; a full queue makes the stream wait.
//! - **One bad record never stops it**: an unreadable subscriber is skipped and counted, an
//!   unknown push or malformed message is logged and skipped, a push whose site is missing is
//!   marked `failed`.
//! - **A canceled push stops within about a second**: the fan-out checks for a cancel
//!   twice a second, stops producing, and counts the subscribers it never reached as
//!   canceled (see [`fanout`]).
//! - **A failing push never wedges the parser**: MongoDB or Kafka trouble and panics are
//!   retried with backoff from the checkpoint; a fan-out that keeps failing past its budget
//!   (`PARSER_RETRY_*`), or fails in a way retrying cannot fix, marks its push `failed` with
//!   the reason and the parser moves on to the partition's next push.
//!
//! # Layout
//!
//! - [`config`] — flags and environment, validated into [`ParserConfig`].
//! - [`fanout`] — the fan-out of one push, with checkpoints.
//! - [`supervisor`] — retries of a failing fan-out within a budget, panics caught.
//! - [`metrics`] — pushes by verdict, messages produced, subscribers skipped.
//! - [`daemon`] — the consumer loop: one fan-out per partition at a time, offsets stored in
//!   order, partitions paused while their push is being fanned out and resumed across
//!   rebalances.

pub mod config;
pub mod daemon;
pub mod fanout;
pub mod metrics;
pub mod supervisor;

pub use config::{ParserArgs, ParserConfig};
pub use daemon::run;
pub use fanout::{CancelReport, FanoutError, FanoutReport, Verdict};
pub use supervisor::RetryPolicy;
