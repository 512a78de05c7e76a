//! The page's fleet view, from the `fleet` tool's events (category `fleet`, published under the
//! fleet tool's own node id): the latest blocks with, per block, each node's offset from the
//! fleet's first sighting, the first node and the nodes that missed it; the latest reorgs (node,
//! depth, the selfish-mining hint); the fleet's tips. Kept in the [`NodeState`] of the fleet
//! tool's node id, so a page gets it in the snapshot on connect like any node's state.
//!
//! Bounded whatever the events say: [`FLEET_BLOCKS`] blocks, [`MAX_SIGHTINGS`] sightings per
//! block (the earliest; the rest only counted), as many missing names, [`RECENT_REORGS`]
//! reorgs, [`MAX_SIGHTINGS`] tips, names cut to [`MAX_NAME`] characters and hashes to 32
//! bytes.
//!
//! [`NodeState`]: crate::state::NodeState

use std::collections::VecDeque;

use nodescope_proto::event::Payload;
use nodescope_proto::json::hex;
use nodescope_proto::{BlockPropagation, Event, FleetState, NodeSighting, Reorg};
use serde::Serialize;

/// Blocks listed, newest report first.
pub const FLEET_BLOCKS: usize = 10;
/// Sightings kept per block (and missing nodes, and tips): more than any fleet one page can
/// draw; a larger report keeps its earliest and counts the rest.
pub const MAX_SIGHTINGS: usize = 64;
/// Reorgs listed, newest first.
pub const RECENT_REORGS: usize = 5;
/// Characters kept of a node name, a source or a peer address.
pub const MAX_NAME: usize = 64;
/// Bytes kept of a hash (a block hash is 32).
const MAX_HASH: usize = 32;

#[derive(Debug, Default, Clone, Serialize)]
pub struct FleetView {
    /// The latest block propagation reports, newest first; a block reported again (after its
    /// timeout, say) replaces its earlier report.
    pub blocks: VecDeque<Propagation>,
    /// Reports received: blocks, sampled transactions.
    pub block_reports: u64,
    pub tx_reports: u64,
    /// The latest reorgs, newest first.
    pub reorgs: VecDeque<ReorgSeen>,
    /// Reorgs received, and those flagged as a possible selfish-mining pattern.
    pub reorg_count: u64,
    pub selfish_flags: u64,
    /// The latest fleet state's tips (at most [`MAX_SIGHTINGS`]) and how many differ.
    pub tips: Vec<Tip>,
    pub distinct_tips: Option<u32>,
    /// Time of the newest fleet event, ns since the epoch (0: none yet).
    pub last_event_ns: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Propagation {
    pub hash: String,
    /// `None` when no node connected it (yet).
    pub height: Option<i32>,
    /// The first node; the earliest sighting's node when the report names none.
    pub first_node: String,
    pub first_seen_ns: u64,
    /// The largest offset: the reported spread, or the largest offset kept if that is larger
    /// (the page's axis never cuts a bar).
    pub spread_ns: u64,
    /// Earliest first, at most [`MAX_SIGHTINGS`].
    pub nodes: Vec<Sighting>,
    /// Sightings left out of `nodes`.
    pub nodes_dropped: u64,
    /// Nodes that had not seen it at the fleet tool's timeout, at most [`MAX_SIGHTINGS`].
    pub missing: Vec<String>,
    pub missing_dropped: u64,
    /// When the report was published, ns since the epoch.
    pub time_ns: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Sighting {
    pub node: String,
    pub offset_ns: u64,
    pub source: String,
    pub peer: String,
    pub validation_ns: Option<u64>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ReorgSeen {
    pub node: String,
    pub depth: u32,
    pub old_height: i32,
    pub new_height: i32,
    pub new_block: String,
    /// How many disconnected blocks the fleet tool named (not the hashes).
    pub disconnected: u64,
    pub possible_selfish_mining: bool,
    pub branch_source: String,
    pub branch_blocks_from_source: u32,
    pub time_ns: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Tip {
    pub node: String,
    pub height: i32,
    pub hash: String,
}

fn name(text: &str) -> String {
    text.chars().take(MAX_NAME).collect()
}

fn short_hex(bytes: &[u8]) -> String {
    hex(&bytes[..bytes.len().min(MAX_HASH)])
}

impl FleetView {
    /// Any fleet event; others are ignored.
    pub fn apply(&mut self, event: &Event) {
        let time_ns = event.timestamp_ns;
        match &event.payload {
            Some(Payload::BlockPropagation(p)) => self.block(time_ns, p),
            Some(Payload::TxPropagation(_)) => self.tx_reports += 1,
            Some(Payload::Reorg(r)) => self.reorg(time_ns, r),
            Some(Payload::FleetState(s)) => self.state(s),
            _ => return,
        }
        self.last_event_ns = self.last_event_ns.max(time_ns);
    }

    fn block(&mut self, time_ns: u64, p: &BlockPropagation) {
        self.block_reports += 1;
        // The earliest MAX_SIGHTINGS, whatever order the report lists them in.
        let mut sightings: Vec<&NodeSighting> = p.nodes.iter().collect();
        let kept = sightings.len().min(MAX_SIGHTINGS);
        if sightings.len() > kept {
            sightings.select_nth_unstable_by_key(kept, |s| s.offset_ns);
            sightings.truncate(kept);
        }
        sightings.sort_by_key(|s| s.offset_ns);
        let nodes: Vec<Sighting> = sightings
            .iter()
            .map(|s| Sighting {
                node: name(&s.node),
                offset_ns: s.offset_ns,
                source: name(&s.source),
                peer: name(&s.peer),
                validation_ns: s.validation_ns,
            })
            .collect();
        let first_node = if p.first_node.is_empty() {
            nodes.first().map(|s| s.node.clone()).unwrap_or_default()
        } else {
            name(&p.first_node)
        };
        let largest = nodes.iter().map(|s| s.offset_ns).max().unwrap_or(0);
        let propagation = Propagation {
            hash: short_hex(&p.hash),
            height: p.height,
            first_node,
            first_seen_ns: p.first_seen_ns,
            spread_ns: p.spread_ns.max(largest),
            nodes_dropped: (p.nodes.len() - nodes.len()) as u64,
            nodes,
            missing: p
                .missing
                .iter()
                .take(MAX_SIGHTINGS)
                .map(|m| name(m))
                .collect(),
            missing_dropped: p.missing.len().saturating_sub(MAX_SIGHTINGS) as u64,
            time_ns,
        };
        self.blocks.retain(|b| b.hash != propagation.hash);
        self.blocks.push_front(propagation);
        self.blocks.truncate(FLEET_BLOCKS);
    }

    fn reorg(&mut self, time_ns: u64, r: &Reorg) {
        self.reorg_count += 1;
        if r.possible_selfish_mining {
            self.selfish_flags += 1;
        }
        self.reorgs.push_front(ReorgSeen {
            node: name(&r.node),
            depth: r.depth,
            old_height: r.old_height,
            new_height: r.new_height,
            new_block: short_hex(&r.new_block),
            disconnected: r.disconnected.len() as u64,
            possible_selfish_mining: r.possible_selfish_mining,
            branch_source: name(&r.branch_source),
            branch_blocks_from_source: r.branch_blocks_from_source,
            time_ns,
        });
        self.reorgs.truncate(RECENT_REORGS);
    }

    fn state(&mut self, s: &FleetState) {
        self.distinct_tips = Some(s.distinct_tips);
        self.tips = s
            .tips
            .iter()
            .take(MAX_SIGHTINGS)
            .map(|t| Tip {
                node: name(&t.node),
                height: t.height,
                hash: short_hex(&t.hash),
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodescope_consumer::testing::EventSource;
    use nodescope_proto::{ExtractorKind, NodeTip, TxPropagation};

    fn sighting(node: &str, offset_ms: u64) -> NodeSighting {
        NodeSighting {
            node: node.into(),
            first_seen_ns: 1_000_000_000 + offset_ms * 1_000_000,
            offset_ns: offset_ms * 1_000_000,
            source: "headers".into(),
            peer: "10.0.0.1:8333".into(),
            connected_ns: None,
            validation_ns: Some(2_000_000),
        }
    }

    fn block(byte: u8, height: Option<i32>, nodes: Vec<NodeSighting>) -> Payload {
        Payload::BlockPropagation(BlockPropagation {
            hash: vec![byte; 32],
            height,
            first_node: nodes.first().map(|n| n.node.clone()).unwrap_or_default(),
            first_seen_ns: 1_000_000_000,
            spread_ns: nodes.iter().map(|n| n.offset_ns).max().unwrap_or(0),
            nodes,
            missing: vec![],
        })
    }

    #[test]
    fn blocks_are_listed_newest_first_and_bounded() {
        let mut source = EventSource::of(ExtractorKind::Fleet, "fleet", 1);
        let mut view = FleetView::default();
        for n in 0..(FLEET_BLOCKS as u8 + 3) {
            let payload = block(
                n,
                Some(100 + n as i32),
                vec![sighting("a", 0), sighting("b", 40)],
            );
            view.apply(&source.stamp(payload));
        }
        assert_eq!(view.blocks.len(), FLEET_BLOCKS);
        assert_eq!(view.block_reports, FLEET_BLOCKS as u64 + 3);
        assert_eq!(view.blocks[0].height, Some(100 + FLEET_BLOCKS as i32 + 2));
        assert_eq!(view.blocks[0].first_node, "a");
        assert_eq!(view.blocks[0].spread_ns, 40_000_000);
        assert_eq!(view.blocks[0].nodes[1].offset_ns, 40_000_000);
        // A block reported again (complete after a timeout) replaces its first report.
        let again = block(
            FLEET_BLOCKS as u8,
            Some(1),
            vec![sighting("a", 0), sighting("c", 9)],
        );
        view.apply(&source.stamp(again));
        assert_eq!(view.blocks.len(), FLEET_BLOCKS);
        assert_eq!(view.blocks[0].height, Some(1));
        assert_eq!(
            view.blocks
                .iter()
                .filter(|b| b.hash == view.blocks[0].hash)
                .count(),
            1
        );
    }

    #[test]
    fn odd_reports_do_not_break_the_view() {
        let mut source = EventSource::of(ExtractorKind::Fleet, "fleet", 1);
        let mut view = FleetView::default();
        // No sightings, no height, no hash, no first node.
        view.apply(&source.stamp(Payload::BlockPropagation(BlockPropagation::default())));
        let empty = &view.blocks[0];
        assert_eq!(
            (empty.height, empty.first_node.as_str(), empty.nodes.len()),
            (None, "", 0)
        );
        // Ten thousand nodes, listed latest first, an understated spread, a huge hash and name.
        let mut nodes: Vec<NodeSighting> = (0..10_000u64)
            .rev()
            .map(|n| sighting(&format!("node-{n}"), n))
            .collect();
        nodes[0].node = "x".repeat(10_000);
        view.apply(&source.stamp(Payload::BlockPropagation(BlockPropagation {
            hash: vec![7; 1000],
            height: Some(5),
            first_node: String::new(),
            first_seen_ns: 1,
            spread_ns: 3,
            nodes,
            missing: (0..500).map(|n| format!("gone-{n}")).collect(),
        })));
        let big = &view.blocks[0];
        assert_eq!(big.nodes.len(), MAX_SIGHTINGS);
        assert_eq!(big.nodes_dropped, 10_000 - MAX_SIGHTINGS as u64);
        assert_eq!(big.nodes[0].node, "node-0", "the earliest are kept");
        assert_eq!(big.first_node, "node-0");
        assert!(big
            .nodes
            .windows(2)
            .all(|w| w[0].offset_ns <= w[1].offset_ns));
        assert_eq!(big.spread_ns, (MAX_SIGHTINGS as u64 - 1) * 1_000_000);
        assert_eq!(big.missing.len(), MAX_SIGHTINGS);
        assert_eq!(big.missing_dropped, 500 - MAX_SIGHTINGS as u64);
        assert_eq!(big.hash.len(), 64);
        // Other fleet events.
        view.apply(&source.stamp(Payload::TxPropagation(TxPropagation::default())));
        view.apply(&source.stamp(Payload::Reorg(Reorg {
            node: "n".repeat(300),
            depth: 2,
            disconnected: vec![vec![1; 32]; 2],
            possible_selfish_mining: true,
            ..Reorg::default()
        })));
        view.apply(&source.stamp(Payload::FleetState(FleetState {
            tips: vec![NodeTip::default(); 1000],
            distinct_tips: 2,
            mempool_pairs: vec![],
        })));
        assert_eq!(view.tx_reports, 1);
        assert_eq!((view.reorg_count, view.selfish_flags), (1, 1));
        assert_eq!(view.reorgs[0].node.len(), MAX_NAME);
        assert_eq!(view.reorgs[0].disconnected, 2);
        assert_eq!(view.tips.len(), MAX_SIGHTINGS);
        assert_eq!(view.distinct_tips, Some(2));
        for n in 0..10 {
            view.apply(&source.stamp(Payload::Reorg(Reorg {
                depth: n,
                ..Reorg::default()
            })));
        }
        assert_eq!(view.reorgs.len(), RECENT_REORGS);
        assert_eq!(view.reorgs[0].depth, 9);
    }
}
