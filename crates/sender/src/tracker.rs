//! Which messages are final, per partition, in offset order.
//!
//! Deliveries finish out of order (one push service answers in 2 s while thousands of later
//! messages are accepted), but a Kafka offset commit means "everything before this is done",
//! and the records a delivery produces (its outcome, a retry, a dead letter) are written in
//! the same transaction that commits its offset. So the tracker keeps, per assigned
//! partition, every message taken and not yet released: pending ones, and finished ones with
//! their records. A finish releases the longest run of finished messages at the front of
//! its partition, records in offset order, with the offset to commit after them. A message
//! whose records were not released is never committed, so a crash redelivers it, and its
//! records (written or not) are never counted twice: they are released only together with
//! its commit.
//!
//! A partition's tracker is replaced when the partition is assigned again; finishes carry
//! the generation they started in, and those of an older generation are ignored (their
//! partition may be someone else's by now). Each generation also has a cancellation token,
//! cancelled when the partition is revoked, so that deliveries of a partition that moved stop
//! instead of racing the new owner, which redelivers them anyway.

use std::collections::{BTreeMap, HashMap};

use tokio_util::sync::CancellationToken;

/// A partition of one of the topics the sender consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Index of the topic in the sender's subscription (0: the push topic, then the retry
    /// tiers).
    pub topic: usize,
    /// Partition.
    pub partition: i32,
}

/// The tracker of every partition this member owns; `T` is what a finished message
/// produces.
#[derive(Debug)]
pub struct OffsetTracker<T> {
    partitions: HashMap<TopicPartition, PartitionState<T>>,
    next_generation: u64,
}

impl<T> Default for OffsetTracker<T> {
    fn default() -> Self {
        OffsetTracker {
            partitions: HashMap::new(),
            next_generation: 0,
        }
    }
}

#[derive(Debug)]
struct PartitionState<T> {
    generation: u64,
    /// Cancelled when this generation's assignment ends.
    revoked: CancellationToken,
    /// Messages taken and not released: `None` while pending, then what they produced.
    taken: BTreeMap<i64, Option<T>>,
    /// One past the highest offset taken in this generation.
    next_offset: Option<i64>,
}

/// Identifies a message for [`OffsetTracker::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// Where the message came from.
    pub source: TopicPartition,
    /// Offset.
    pub offset: i64,
    /// Assignment generation the message was taken in.
    pub generation: u64,
}

/// Finished messages at the front of a partition, ready to be committed together with what
/// they produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Release<T> {
    /// The partition.
    pub source: TopicPartition,
    /// The offset to commit: one past the last released message.
    pub next_offset: i64,
    /// What the released messages produced, in offset order.
    pub produced: Vec<T>,
}

impl<T> OffsetTracker<T> {
    /// Starts tracking `source` (it was just assigned). A partition tracked already keeps
    /// its state: its first message raced the assignment and is pending in it.
    pub fn assign(&mut self, source: TopicPartition) {
        if self.partitions.contains_key(&source) {
            return;
        }
        self.next_generation += 1;
        self.partitions.insert(
            source,
            PartitionState {
                generation: self.next_generation,
                revoked: CancellationToken::new(),
                taken: BTreeMap::new(),
                next_offset: None,
            },
        );
    }

    /// Stops tracking `source` (revoked): its deliveries in progress are told to stop, and
    /// late finishes for it are ignored. Returns how many messages were dropped unreleased.
    pub fn revoke(&mut self, source: TopicPartition) -> usize {
        match self.partitions.remove(&source) {
            Some(state) => {
                state.revoked.cancel();
                state.taken.len()
            }
            None => 0,
        }
    }

    /// Records that `offset` of `source` was taken; returns its ticket and the token that is
    /// cancelled if the partition is revoked before the delivery ends. A partition that was
    /// never assigned explicitly (assignment raced the first message) is assigned now.
    pub fn begin(&mut self, source: TopicPartition, offset: i64) -> (Ticket, CancellationToken) {
        self.assign(source);
        let next_generation = &mut self.next_generation;
        let state = self.partitions.entry(source).or_insert_with(|| {
            // Unreachable after `assign`; kept total so no panic path exists.
            *next_generation += 1;
            PartitionState {
                generation: *next_generation,
                revoked: CancellationToken::new(),
                taken: BTreeMap::new(),
                next_offset: None,
            }
        });
        state.taken.insert(offset, None);
        state.next_offset = Some(state.next_offset.map_or(offset + 1, |n| n.max(offset + 1)));
        let ticket = Ticket {
            source,
            offset,
            generation: state.generation,
        };
        (ticket, state.revoked.clone())
    }

    /// Records that the ticket's message is final and what it produced. Returns the finished
    /// messages now at the front of the partition, if any.
    pub fn finish(&mut self, ticket: Ticket, produced: T) -> Option<Release<T>> {
        let state = self.partitions.get_mut(&ticket.source)?;
        if state.generation != ticket.generation {
            return None;
        }
        let slot = state.taken.get_mut(&ticket.offset)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(produced);
        let mut released = Vec::new();
        let mut next_offset = None;
        while let Some(entry) = state.taken.first_entry() {
            if entry.get().is_none() {
                break;
            }
            let offset = *entry.key();
            if let Some(produced) = entry.remove() {
                released.push(produced);
            }
            next_offset = Some(offset + 1);
        }
        next_offset.map(|next_offset| Release {
            source: ticket.source,
            next_offset,
            produced: released,
        })
    }

    /// Messages taken and not released, over all partitions.
    pub fn taken(&self) -> usize {
        self.partitions.values().map(|s| s.taken.len()).sum()
    }

    /// One past the highest offset taken from `source` since it was assigned: where its
    /// consumption must go on after a pause.
    pub fn next_offset(&self, source: TopicPartition) -> Option<i64> {
        self.partitions.get(&source)?.next_offset
    }

    /// Whether `source` is tracked (assigned to this member).
    pub fn owns(&self, source: TopicPartition) -> bool {
        self.partitions.contains_key(&source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P0: TopicPartition = TopicPartition {
        topic: 0,
        partition: 0,
    };

    fn tp(topic: usize, partition: i32) -> TopicPartition {
        TopicPartition { topic, partition }
    }

    #[test]
    fn releases_only_the_finished_front_in_offset_order() {
        let mut tracker = OffsetTracker::default();
        tracker.assign(P0);
        let tickets: Vec<Ticket> = (10..15).map(|o| tracker.begin(P0, o).0).collect();
        // 11 and 12 finish first: 10 is still pending, nothing may be committed.
        assert_eq!(tracker.finish(tickets[1], "b"), None);
        assert_eq!(tracker.finish(tickets[2], "c"), None);
        // 10 finishes: 10, 11, 12 are released in order, 13 pending.
        assert_eq!(
            tracker.finish(tickets[0], "a"),
            Some(Release {
                source: P0,
                next_offset: 13,
                produced: vec!["a", "b", "c"]
            })
        );
        assert_eq!(tracker.finish(tickets[4], "e"), None);
        assert_eq!(
            tracker.finish(tickets[3], "d"),
            Some(Release {
                source: P0,
                next_offset: 15,
                produced: vec!["d", "e"]
            })
        );
        assert_eq!(tracker.taken(), 0);
    }

    #[test]
    fn topics_and_partitions_are_independent() {
        let mut tracker = OffsetTracker::default();
        let (a, _) = tracker.begin(tp(0, 1), 100);
        let (b, _) = tracker.begin(tp(1, 1), 5);
        let (b2, _) = tracker.begin(tp(1, 1), 6);
        assert_eq!(tracker.finish(b2, 2), None);
        assert_eq!(tracker.finish(a, 1).map(|r| r.next_offset), Some(101));
        let release = tracker.finish(b, 3).expect("released");
        assert_eq!((release.next_offset, release.produced), (7, vec![3, 2]));
    }

    #[test]
    fn finishes_from_an_earlier_assignment_are_ignored() {
        let mut tracker = OffsetTracker::default();
        let (old, old_revoked) = tracker.begin(tp(0, 3), 7);
        assert!(!old_revoked.is_cancelled());
        assert_eq!(tracker.revoke(tp(0, 3)), 1);
        assert!(
            old_revoked.is_cancelled(),
            "revoking tells deliveries to stop"
        );
        assert_eq!(tracker.finish(old, ()), None);
        tracker.assign(tp(0, 3));
        let (new, new_revoked) = tracker.begin(tp(0, 3), 7);
        assert!(!new_revoked.is_cancelled());
        assert_eq!(
            tracker.finish(old, ()),
            None,
            "old generation must not finish the new one"
        );
        assert_eq!(tracker.taken(), 1);
        assert_eq!(tracker.finish(new, ()).map(|r| r.next_offset), Some(8));
    }

    #[test]
    fn an_unfinished_message_holds_back_everything_after_it() {
        let mut tracker = OffsetTracker::default();
        let (_first, _) = tracker.begin(P0, 20);
        let (second, _) = tracker.begin(P0, 21);
        assert_eq!(tracker.finish(second, ()), None, "20 is not final");
        assert_eq!(tracker.taken(), 2);
    }

    #[test]
    fn knows_where_consumption_goes_on() {
        let mut tracker = OffsetTracker::default();
        assert_eq!(tracker.next_offset(P0), None);
        let (t, _) = tracker.begin(P0, 41);
        tracker.begin(P0, 40);
        assert_eq!(tracker.next_offset(P0), Some(42));
        tracker.finish(t, ());
        assert_eq!(tracker.next_offset(P0), Some(42), "kept after release");
        tracker.revoke(P0);
        tracker.assign(P0);
        assert_eq!(
            tracker.next_offset(P0),
            None,
            "a new assignment starts afresh"
        );
    }

    #[test]
    fn a_ticket_finishes_once() {
        let mut tracker = OffsetTracker::default();
        let (t, _) = tracker.begin(P0, 0);
        assert_eq!(tracker.finish(t, 1).map(|r| r.produced), Some(vec![1]));
        assert_eq!(tracker.finish(t, 2), None);
    }
}
