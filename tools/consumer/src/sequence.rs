//! Gap and restart detection. An extractor numbers its events per run and per category from 0
//! (see the envelope in `proto/nodescope.proto`), so a subscriber can tell, for every stream
//! (node × extractor kind × category), whether it missed events, whether the extractor
//! restarted (new `run_id`), and whether an event is a replay it already has (the extractor
//! resends its last second after a NATS reconnect).

use std::collections::HashMap;

use nodescope_proto::Category;

/// How an event relates to the one seen before it on the same stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// The first event seen on this stream since the tool started: joining mid-stream is not a
    /// gap.
    First,
    /// The next number, nothing missed.
    Next,
    /// Numbers skipped: `missed` events of this stream never arrived.
    Gap { missed: u64 },
    /// A new extractor run; `missed` of its events (it counts from 0) came before this one.
    Restart { missed: u64 },
    /// A number already seen (a replay after a reconnect): not new.
    Replayed,
}

impl Continuity {
    /// Events that never arrived right before this one.
    pub fn missed(self) -> u64 {
        match self {
            Continuity::Gap { missed } | Continuity::Restart { missed } => missed,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    run_id: u64,
    last: u64,
}

/// A node's streams by (extractor kind, category): a handful, so a list.
type NodeStreams = Vec<((i32, Category), Stream)>;

/// The last sequence number per stream. Looking up a known node allocates nothing.
#[derive(Debug, Default)]
pub struct SequenceTracker {
    nodes: HashMap<String, NodeStreams>,
}

impl SequenceTracker {
    pub fn observe(
        &mut self,
        node: &str,
        extractor: i32,
        category: Category,
        run_id: u64,
        sequence: u64,
    ) -> Continuity {
        let streams = match self.nodes.get_mut(node) {
            Some(streams) => streams,
            None => self.nodes.entry(node.to_string()).or_default(),
        };
        let key = (extractor, category);
        let Some((_, stream)) = streams.iter_mut().find(|(k, _)| *k == key) else {
            streams.push((
                key,
                Stream {
                    run_id,
                    last: sequence,
                },
            ));
            return Continuity::First;
        };
        if stream.run_id != run_id {
            *stream = Stream {
                run_id,
                last: sequence,
            };
            return Continuity::Restart { missed: sequence };
        }
        if sequence <= stream.last {
            return Continuity::Replayed;
        }
        let missed = sequence - stream.last - 1;
        stream.last = sequence;
        if missed == 0 {
            Continuity::Next
        } else {
            Continuity::Gap { missed }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMPOOL: Category = Category::Mempool;

    #[test]
    fn consecutive_numbers_then_a_gap() {
        let mut tracker = SequenceTracker::default();
        assert_eq!(tracker.observe("a", 1, MEMPOOL, 7, 40), Continuity::First);
        assert_eq!(tracker.observe("a", 1, MEMPOOL, 7, 41), Continuity::Next);
        assert_eq!(
            tracker.observe("a", 1, MEMPOOL, 7, 45),
            Continuity::Gap { missed: 3 }
        );
        assert_eq!(tracker.observe("a", 1, MEMPOOL, 7, 46), Continuity::Next);
    }

    #[test]
    fn streams_are_separate_per_node_extractor_and_category() {
        let mut tracker = SequenceTracker::default();
        assert_eq!(tracker.observe("a", 1, MEMPOOL, 7, 0), Continuity::First);
        assert_eq!(tracker.observe("b", 1, MEMPOOL, 9, 5), Continuity::First);
        assert_eq!(tracker.observe("a", 2, MEMPOOL, 8, 3), Continuity::First);
        assert_eq!(
            tracker.observe("a", 1, Category::NetMessage, 7, 0),
            Continuity::First
        );
        assert_eq!(tracker.observe("a", 1, MEMPOOL, 7, 1), Continuity::Next);
        assert_eq!(tracker.observe("b", 1, MEMPOOL, 9, 6), Continuity::Next);
    }

    #[test]
    fn a_new_run_id_is_a_restart_counting_what_it_missed_from_zero() {
        let mut tracker = SequenceTracker::default();
        tracker.observe("a", 1, MEMPOOL, 7, 100);
        assert_eq!(
            tracker.observe("a", 1, MEMPOOL, 8, 0),
            Continuity::Restart { missed: 0 }
        );
        assert_eq!(tracker.observe("a", 1, MEMPOOL, 8, 1), Continuity::Next);
        assert_eq!(
            tracker.observe("a", 1, MEMPOOL, 9, 4),
            Continuity::Restart { missed: 4 }
        );
    }

    #[test]
    fn replays_after_a_reconnect_are_recognised() {
        let mut tracker = SequenceTracker::default();
        for sequence in 0..10 {
            tracker.observe("a", 1, MEMPOOL, 7, sequence);
        }
        for sequence in 6..10 {
            assert_eq!(
                tracker.observe("a", 1, MEMPOOL, 7, sequence),
                Continuity::Replayed
            );
        }
        assert_eq!(tracker.observe("a", 1, MEMPOOL, 7, 10), Continuity::Next);
    }
}
