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
//!
//! A revocation is a handover in two steps, so the new owner redelivers as little as
//! possible. First [`OffsetTracker::hand_over`]: retries held until they are due stop waiting
//! (they were not sent; each is [`OffsetTracker::abandon`]ed and the new owner holds it
//! again), while deliveries under way go on until the partition is
//! [`OffsetTracker::settled`]: nothing pending before the first abandoned message, so every
//! delivery that could still be committed is finished. Then the finished front is committed
//! and [`OffsetTracker::revoke`] stops whatever is left. Without the first step, a revocation
//! cancelled every delivery in progress, and every message finished behind the oldest of
//! them (hundreds, with thousands taken) was delivered a second time by the new owner.

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
    /// Cancelled when the handover of the partition begins (and by `revoked`).
    handover: CancellationToken,
    /// Messages taken and not released.
    taken: BTreeMap<i64, Slot<T>>,
    /// One past the highest offset taken in this generation.
    next_offset: Option<i64>,
}

impl<T> PartitionState<T> {
    fn new(generation: u64) -> Self {
        let revoked = CancellationToken::new();
        PartitionState {
            generation,
            handover: revoked.child_token(),
            revoked,
            taken: BTreeMap::new(),
            next_offset: None,
        }
    }
}

/// A message taken and not released.
#[derive(Debug)]
enum Slot<T> {
    /// Its delivery is under way (or held until due).
    Pending,
    /// Final, with what it produced.
    Finished(T),
    /// Given up by this member (a held retry stopped by a handover): never released, so
    /// neither it nor anything after it is committed here.
    Abandoned,
}

/// The cancellation tokens of a message taken: see [`OffsetTracker::begin`].
#[derive(Debug, Clone)]
pub struct Stops {
    /// Cancelled when the partition is revoked: its delivery stops.
    pub revoked: CancellationToken,
    /// Cancelled when the partition's handover begins (and on revocation): a retry held
    /// until it is due stops waiting.
    pub handover: CancellationToken,
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
        self.partitions
            .insert(source, PartitionState::new(self.next_generation));
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

    /// Records that `offset` of `source` was taken; returns its ticket and the tokens that
    /// tell its delivery to stop. A partition that was never assigned explicitly (assignment
    /// raced the first message) is assigned now.
    pub fn begin(&mut self, source: TopicPartition, offset: i64) -> (Ticket, Stops) {
        self.assign(source);
        let next_generation = &mut self.next_generation;
        let state = self.partitions.entry(source).or_insert_with(|| {
            // Unreachable after `assign`; kept total so no panic path exists.
            *next_generation += 1;
            PartitionState::new(*next_generation)
        });
        state.taken.insert(offset, Slot::Pending);
        state.next_offset = Some(state.next_offset.map_or(offset + 1, |n| n.max(offset + 1)));
        let ticket = Ticket {
            source,
            offset,
            generation: state.generation,
        };
        let stops = Stops {
            revoked: state.revoked.clone(),
            handover: state.handover.clone(),
        };
        (ticket, stops)
    }

    /// Records that the ticket's message is final and what it produced. Returns the finished
    /// messages now at the front of the partition, if any.
    pub fn finish(&mut self, ticket: Ticket, produced: T) -> Option<Release<T>> {
        let state = self.partitions.get_mut(&ticket.source)?;
        if state.generation != ticket.generation {
            return None;
        }
        let slot = state.taken.get_mut(&ticket.offset)?;
        if !matches!(slot, Slot::Pending) {
            return None;
        }
        *slot = Slot::Finished(produced);
        let mut released = Vec::new();
        let mut next_offset = None;
        while let Some(entry) = state.taken.first_entry() {
            if !matches!(entry.get(), Slot::Finished(_)) {
                break;
            }
            let offset = *entry.key();
            if let Slot::Finished(produced) = entry.remove() {
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

    /// Gives up the ticket's message (it was never sent): it stays unreleased, so neither it
    /// nor anything after it is committed by this member.
    pub fn abandon(&mut self, ticket: Ticket) {
        if let Some(state) = self.partitions.get_mut(&ticket.source)
            && state.generation == ticket.generation
            && let Some(slot) = state.taken.get_mut(&ticket.offset)
            && matches!(slot, Slot::Pending)
        {
            *slot = Slot::Abandoned;
        }
    }

    /// Begins the handover of `source`: retries held until due stop waiting.
    pub fn hand_over(&mut self, source: TopicPartition) {
        if let Some(state) = self.partitions.get(&source) {
            state.handover.cancel();
        }
    }

    /// Whether nothing more of `source` can be released: no message pending before the first
    /// abandoned one (true too for a partition not tracked).
    pub fn settled(&self, source: TopicPartition) -> bool {
        self.partitions
            .get(&source)
            .and_then(|state| state.taken.values().next())
            .is_none_or(|front| matches!(front, Slot::Abandoned))
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
        assert!(!old_revoked.revoked.is_cancelled());
        assert_eq!(tracker.revoke(tp(0, 3)), 1);
        assert!(
            old_revoked.revoked.is_cancelled(),
            "revoking tells deliveries to stop"
        );
        assert_eq!(tracker.finish(old, ()), None);
        tracker.assign(tp(0, 3));
        let (new, new_revoked) = tracker.begin(tp(0, 3), 7);
        assert!(!new_revoked.revoked.is_cancelled());
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
    #[test]
    fn a_handover_waits_for_deliveries_under_way_and_not_for_held_retries() {
        let mut tracker = OffsetTracker::default();
        tracker.assign(P0);
        let (held, held_stops) = tracker.begin(P0, 10);
        let (sent, sent_stops) = tracker.begin(P0, 11);
        assert!(!tracker.settled(P0), "10 and 11 are under way");

        tracker.hand_over(P0);
        assert!(
            held_stops.handover.is_cancelled(),
            "held retries stop waiting"
        );
        assert!(!sent_stops.revoked.is_cancelled(), "deliveries go on");
        tracker.abandon(held);
        assert!(
            tracker.settled(P0),
            "nothing after an abandoned message can be released"
        );
        assert_eq!(
            tracker.finish(sent, ()),
            None,
            "11 is not committed past the abandoned 10"
        );
        assert_eq!(
            tracker.finish(held, ()),
            None,
            "an abandoned message stays given up"
        );

        tracker.revoke(P0);
        assert!(sent_stops.revoked.is_cancelled());
        assert!(tracker.settled(P0), "untracked");
    }

    #[test]
    fn a_partition_settles_once_its_front_is_finished() {
        let mut tracker = OffsetTracker::default();
        tracker.assign(P0);
        let (first, _) = tracker.begin(P0, 5);
        let (second, _) = tracker.begin(P0, 6);
        tracker.hand_over(P0);
        assert_eq!(tracker.finish(second, 6), None);
        assert!(!tracker.settled(P0), "5 is under way");
        assert_eq!(
            tracker.finish(first, 5).map(|r| r.produced),
            Some(vec![5, 6])
        );
        assert!(tracker.settled(P0));
        assert_eq!(tracker.taken(), 0);
    }
}
