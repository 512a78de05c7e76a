//! Every family the fleet tool serves on `/metrics` (README "Fleet view"), registered in one
//! place. Labels come from closed sets: `node` (the nodes followed, at most `--max-nodes`; the
//! events of further nodes count under `other`), kind, outcome, depth, reason, category.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::sighting::Kind;

pub type Node = Arc<str>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: Node,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeKindLabels {
    pub node: Node,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepthLabels {
    pub node: Node,
    pub depth: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PairLabels {
    pub node_a: Node,
    pub node_b: Node,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub node: Node,
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// The depth label of a reorg: 1, 2, 3 or 4+.
pub const DEPTHS: [&str; 4] = ["1", "2", "3", "4+"];

pub fn depth_label(depth: u32) -> &'static str {
    DEPTHS[(depth.clamp(1, 4) - 1) as usize]
}

/// Offsets: a millisecond (one host, loopback) to ten minutes (a node that was catching up).
fn offset_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
        600.0,
    ])
}

pub struct Metrics {
    pub nodes: Gauge,
    pub block_offset: Family<NodeLabels, Histogram>,
    pub block_spread: Histogram,
    pub last_block_spread: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub tx_offset: Family<NodeLabels, Histogram>,
    pub first_seen: Family<NodeKindLabels, Counter>,
    pub propagations: Family<OutcomeLabels, Counter>,
    pub not_seen: Family<NodeKindLabels, Counter>,
    pub reorgs: Family<DepthLabels, Counter>,
    pub reorg_depth: Family<NodeLabels, Gauge>,
    pub selfish: Family<NodeLabels, Counter>,
    pub mempool_divergence: Family<PairLabels, Gauge>,
    pub mempool_tracked: Family<NodeLabels, Gauge>,
    pub tip_height: Family<NodeLabels, Gauge>,
    pub distinct_tips: Gauge,
    pub tracked: Family<KindLabels, Gauge>,
    pub evicted: Family<KindLabels, Counter>,
    pub late: Family<KindLabels, Counter>,
    pub events_received: Family<CategoryLabels, Counter>,
    pub events_missed: Family<NodeLabels, Counter>,
    pub undecodable: Counter,
    pub published: Counter,
    pub publish_dropped: Family<ReasonLabels, Counter>,
    pub nats_connected: Gauge,
}

impl Metrics {
    pub fn new() -> (Metrics, Registry) {
        let mut registry = Registry::with_prefix("nodescope_fleet");
        let m = Metrics {
            nodes: Gauge::default(),
            block_offset: Family::new_with_constructor(offset_buckets),
            block_spread: offset_buckets(),
            last_block_spread: Gauge::default(),
            tx_offset: Family::new_with_constructor(offset_buckets),
            first_seen: Family::default(),
            propagations: Family::default(),
            not_seen: Family::default(),
            reorgs: Family::default(),
            reorg_depth: Family::default(),
            selfish: Family::default(),
            mempool_divergence: Family::default(),
            mempool_tracked: Family::default(),
            tip_height: Family::default(),
            distinct_tips: Gauge::default(),
            tracked: Family::default(),
            evicted: Family::default(),
            late: Family::default(),
            events_received: Family::default(),
            events_missed: Family::default(),
            undecodable: Counter::default(),
            published: Counter::default(),
            publish_dropped: Family::default(),
            nats_connected: Gauge::default(),
        };
        let r = &mut registry;
        r.register(
            "nodes",
            "Nodes followed: heard from within --node-timeout",
            m.nodes.clone(),
        );
        r.register_with_unit(
            "block_offset",
            "Per block, how long after the fleet's first sighting this node first saw it (0 for the first)",
            Unit::Seconds,
            m.block_offset.clone(),
        );
        r.register_with_unit(
            "block_spread",
            "Per block, the largest offset: from the first node's sighting to the last node's",
            Unit::Seconds,
            m.block_spread.clone(),
        );
        r.register_with_unit(
            "last_block_spread",
            "The spread of the latest block published",
            Unit::Seconds,
            m.last_block_spread.clone(),
        );
        r.register_with_unit(
            "tx_offset",
            "Per sampled transaction (--tx-sample), how long after the fleet's first sighting this node first saw it",
            Unit::Seconds,
            m.tx_offset.clone(),
        );
        r.register(
            "first_seen",
            "Times this node was the first of the fleet to see an item, by kind (block, tx)",
            m.first_seen.clone(),
        );
        r.register(
            "propagations",
            "Propagation events published, by kind and outcome (complete: every node saw it; timeout)",
            m.propagations.clone(),
        );
        r.register(
            "not_seen",
            "Items a node had not seen at the timeout, by kind",
            m.not_seen.clone(),
        );
        r.register(
            "reorgs",
            "Reorgs: a block connected at a height not above the node's previous tip, by depth (1, 2, 3, 4+)",
            m.reorgs.clone(),
        );
        r.register(
            "reorg_depth",
            "Depth of the node's latest reorg",
            m.reorg_depth.clone(),
        );
        r.register(
            "possible_selfish_mining",
            "Reorgs whose new branch came from one peer in rapid succession (--selfish-blocks within --selfish-window)",
            m.selfish.clone(),
        );
        r.register(
            "mempool_divergence",
            "Transactions in exactly one of the two nodes' mempools, as followed since the tool started (node_a < node_b)",
            m.mempool_divergence.clone(),
        );
        r.register(
            "mempool_tracked",
            "Transactions believed in the node's mempool: added and not removed since the tool followed it",
            m.mempool_tracked.clone(),
        );
        r.register(
            "tip_height",
            "Height of the node's tip: its latest block_connected",
            m.tip_height.clone(),
        );
        r.register(
            "distinct_tips",
            "Number of different tips among the nodes followed",
            m.distinct_tips.clone(),
        );
        r.register(
            "tracked",
            "Blocks and sampled transactions awaiting their propagation event, by kind",
            m.tracked.clone(),
        );
        r.register(
            "evicted",
            "Items dropped unpublished from a full table (--max-blocks, --max-txs; the least recently sighted), by kind",
            m.evicted.clone(),
        );
        r.register(
            "late",
            "Sightings of items whose propagation event was already published, by kind (not counted in it)",
            m.late.clone(),
        );
        r.register(
            "events_received",
            "Events consumed, by node and category",
            m.events_received.clone(),
        );
        r.register(
            "events_missed",
            "Events of the node lost on the way (sequence gaps)",
            m.events_missed.clone(),
        );
        r.register(
            "undecodable",
            "Messages on nodescope subjects that were not events",
            m.undecodable.clone(),
        );
        r.register("published", "Fleet events published", m.published.clone());
        r.register(
            "publish_dropped",
            "Fleet events not published, by reason (queue_full, too_large)",
            m.publish_dropped.clone(),
        );
        r.register(
            "nats_connected",
            "1 while connected to NATS and subscribed, else 0",
            m.nats_connected.clone(),
        );
        for kind in [Kind::Block, Kind::Tx] {
            let kind = kind.as_str();
            let _ = m.tracked.get_or_create(&KindLabels { kind });
            let _ = m.evicted.get_or_create(&KindLabels { kind });
            let _ = m.late.get_or_create(&KindLabels { kind });
            for outcome in ["complete", "timeout"] {
                let _ = m
                    .propagations
                    .get_or_create(&OutcomeLabels { kind, outcome });
            }
        }
        for reason in ["queue_full", "too_large"] {
            let _ = m.publish_dropped.get_or_create(&ReasonLabels { reason });
        }
        (m, registry)
    }

    /// A node is followed: its counters exist from 0, so that the first increment is a change
    /// Prometheus sees (a series born at 1 shows no increase).
    pub fn node_followed(&self, node: &Node) {
        for depth in DEPTHS {
            let _ = self.reorgs.get_or_create(&DepthLabels {
                node: node.clone(),
                depth,
            });
        }
        let n = NodeLabels { node: node.clone() };
        let _ = self.selfish.get_or_create(&n);
        let _ = self.events_missed.get_or_create(&n);
        for kind in [Kind::Block, Kind::Tx] {
            let labels = NodeKindLabels {
                node: node.clone(),
                kind: kind.as_str(),
            };
            let _ = self.first_seen.get_or_create(&labels);
            let _ = self.not_seen.get_or_create(&labels);
        }
    }

    /// A node is no longer followed: its gauges go (its counters stay, as counters do).
    pub fn node_dropped(&self, node: &Node, others: &[Node]) {
        let n = NodeLabels { node: node.clone() };
        self.mempool_tracked.remove(&n);
        self.tip_height.remove(&n);
        for other in others {
            let (a, b) = if node < other {
                (node, other)
            } else {
                (other, node)
            };
            self.mempool_divergence.remove(&PairLabels {
                node_a: a.clone(),
                node_b: b.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_labels_are_bounded() {
        assert_eq!(
            [0, 1, 2, 3, 4, 99].map(depth_label),
            ["1", "1", "2", "3", "4+", "4+"]
        );
    }
}
