//! Which offsets may be committed, per partition.
//!
//! Deliveries finish out of order (a retry can take a minute while thousands of later
//! messages are accepted), but a Kafka offset commit means "everything before this is done".
//! The tracker keeps, per assigned partition, the offsets taken but not yet final; the
//! committable position is just below the oldest of them, or just past the newest finished
//! one when none is pending. Only that position is ever stored, so a crash redelivers every
//! message whose outcome was not final: at-least-once.
//!
//! A partition's tracker is replaced when the partition is assigned again; completions carry
//! the generation they started in, and those of an older generation are ignored (their
//! partition may be someone else's by now). Each generation also has a cancellation token,
//! cancelled when the partition is revoked, so that deliveries of a partition that moved stop
//! instead of racing the new owner, which redelivers them anyway.

use std::collections::{BTreeSet, HashMap};

use tokio_util::sync::CancellationToken;

/// The offset tracker of every partition this member owns.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, PartitionState>,
    next_generation: u64,
}

#[derive(Debug)]
struct PartitionState {
    generation: u64,
    /// Cancelled when this generation's assignment ends.
    revoked: CancellationToken,
    pending: BTreeSet<i64>,
    /// Highest offset whose outcome is final.
    highest_done: Option<i64>,
    /// Last offset reported as committable (stored); starts just below the first offset taken
    /// in this generation, so nothing below it (never seen here) is ever reported.
    stored: Option<i64>,
}

/// Identifies a message for [`OffsetTracker::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Assignment generation the message was taken in.
    pub generation: u64,
}

impl OffsetTracker {
    /// Starts tracking `partition` (it was just assigned). A partition tracked already keeps
    /// its state: its first message raced the assignment and is pending in it.
    pub fn assign(&mut self, partition: i32) {
        if self.partitions.contains_key(&partition) {
            return;
        }
        self.next_generation += 1;
        self.partitions.insert(
            partition,
            PartitionState {
                generation: self.next_generation,
                revoked: CancellationToken::new(),
                pending: BTreeSet::new(),
                highest_done: None,
                stored: None,
            },
        );
    }

    /// Stops tracking `partition` (revoked): its deliveries in progress are told to stop, and
    /// late completions for it are ignored.
    pub fn revoke(&mut self, partition: i32) {
        if let Some(state) = self.partitions.remove(&partition) {
            state.revoked.cancel();
        }
    }

    /// Records that `offset` of `partition` was taken; returns its ticket and the token that
    /// is cancelled if the partition is revoked before the delivery ends. A partition that
    /// was never assigned explicitly (assignment raced the first message) is assigned now.
    pub fn begin(&mut self, partition: i32, offset: i64) -> (Ticket, CancellationToken) {
        self.assign(partition);
        let state = self
            .partitions
            .get_mut(&partition)
            .expect("assign tracks the partition");
        if state.stored.is_none() && state.pending.is_empty() && state.highest_done.is_none() {
            state.stored = Some(offset - 1);
        }
        state.pending.insert(offset);
        let ticket = Ticket {
            partition,
            offset,
            generation: state.generation,
        };
        (ticket, state.revoked.clone())
    }

    /// Records that the ticket's outcome is final. Returns the offset that may now be stored
    /// (every message up to and including it is final), if it moved forward.
    pub fn complete(&mut self, ticket: Ticket) -> Option<i64> {
        let state = self.partitions.get_mut(&ticket.partition)?;
        if state.generation != ticket.generation || !state.pending.remove(&ticket.offset) {
            return None;
        }
        state.highest_done = Some(
            state
                .highest_done
                .map_or(ticket.offset, |h| h.max(ticket.offset)),
        );
        let committable = match state.pending.first() {
            Some(&oldest) => oldest - 1,
            None => state.highest_done?,
        };
        if state.stored.is_some_and(|s| s >= committable) || committable < 0 {
            return None;
        }
        state.stored = Some(committable);
        Some(committable)
    }

    /// Messages taken and not final, over all partitions.
    pub fn pending(&self) -> usize {
        self.partitions.values().map(|s| s.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_below_the_oldest_pending_offset() {
        let mut tracker = OffsetTracker::default();
        tracker.assign(0);
        let tickets: Vec<Ticket> = (10..15).map(|o| tracker.begin(0, o).0).collect();
        // 11 and 12 finish first: 10 is still pending, nothing may be committed.
        assert_eq!(tracker.complete(tickets[1]), None);
        assert_eq!(tracker.complete(tickets[2]), None);
        // 10 finishes: 10, 11, 12 are final, 13 pending.
        assert_eq!(tracker.complete(tickets[0]), Some(12));
        assert_eq!(tracker.complete(tickets[4]), None);
        assert_eq!(tracker.complete(tickets[3]), Some(14));
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn partitions_are_independent() {
        let mut tracker = OffsetTracker::default();
        let (a, _) = tracker.begin(1, 100);
        let (b, _) = tracker.begin(2, 5);
        let (b2, _) = tracker.begin(2, 6);
        assert_eq!(tracker.complete(b2), None);
        assert_eq!(tracker.complete(a), Some(100));
        assert_eq!(tracker.complete(b), Some(6));
    }

    #[test]
    fn completions_from_an_earlier_assignment_are_ignored() {
        let mut tracker = OffsetTracker::default();
        let (old, old_revoked) = tracker.begin(3, 7);
        assert!(!old_revoked.is_cancelled());
        tracker.revoke(3);
        assert!(
            old_revoked.is_cancelled(),
            "revoking tells deliveries to stop"
        );
        assert_eq!(tracker.complete(old), None);
        tracker.assign(3);
        let (new, new_revoked) = tracker.begin(3, 7);
        assert!(!new_revoked.is_cancelled());
        assert_eq!(
            tracker.complete(old),
            None,
            "old generation must not complete the new one"
        );
        assert_eq!(tracker.pending(), 1);
        assert_eq!(tracker.complete(new), Some(7));
    }

    #[test]
    fn an_assignment_racing_the_first_message_keeps_it_pending() {
        let mut tracker = OffsetTracker::default();
        let (first, _) = tracker.begin(4, 20);
        tracker.assign(4);
        let (second, _) = tracker.begin(4, 21);
        assert_eq!(tracker.complete(second), None, "20 is still pending");
        assert_eq!(tracker.complete(first), Some(21));
    }

    #[test]
    fn a_ticket_completes_once() {
        let mut tracker = OffsetTracker::default();
        let (t, _) = tracker.begin(0, 0);
        assert_eq!(tracker.complete(t), Some(0));
        assert_eq!(tracker.complete(t), None);
    }
}
