//! Lines for what the fleet tool publishes: who saw a block or transaction first and how far
//! behind the others were, reorgs, and the fleet's tips and mempool divergence.

use std::fmt::Write as _;

use nodescope_proto::json::hex;
use nodescope_proto::{BlockPropagation, FleetState, NodeSighting, Reorg, TxPropagation};

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// ` nodes=a:+0.000s(inv),b:+0.120s(block_connected)` and the nodes that never saw it.
fn sightings(line: &mut String, nodes: &[NodeSighting], missing: &[String]) {
    line.push_str(" nodes=");
    for (i, node) in nodes.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(
            line,
            "{comma}{}:+{:.3}s({})",
            node.node,
            seconds(node.offset_ns),
            node.source
        );
    }
    if !missing.is_empty() {
        let _ = write!(line, " missing={}", missing.join(","));
    }
}

pub fn block_propagation(line: &mut String, b: &BlockPropagation) {
    let _ = write!(line, " hash={}", hex(&b.hash));
    if let Some(height) = b.height {
        let _ = write!(line, " height={height}");
    }
    let _ = write!(
        line,
        " first={} spread={:.3}s",
        b.first_node,
        seconds(b.spread_ns)
    );
    sightings(line, &b.nodes, &b.missing);
}

pub fn tx_propagation(line: &mut String, t: &TxPropagation) {
    if !t.txid.is_empty() {
        let _ = write!(line, " txid={}", hex(&t.txid));
    }
    if !t.wtxid.is_empty() && t.wtxid != t.txid {
        let _ = write!(line, " wtxid={}", hex(&t.wtxid));
    }
    let _ = write!(
        line,
        " first={} spread={:.3}s",
        t.first_node,
        seconds(t.spread_ns)
    );
    sightings(line, &t.nodes, &t.missing);
}

pub fn reorg(line: &mut String, r: &Reorg) {
    let _ = write!(
        line,
        " reorg_node={} depth={} old_tip={} old_height={} new_block={} new_height={} disconnected={}",
        r.node,
        r.depth,
        hex(&r.old_tip),
        r.old_height,
        hex(&r.new_block),
        r.new_height,
        r.disconnected.iter().map(|h| hex(h)).collect::<Vec<_>>().join(",")
    );
    if r.possible_selfish_mining {
        let _ = write!(
            line,
            " possible_selfish_mining=true branch_source={:?} branch_blocks_from_source={}",
            r.branch_source, r.branch_blocks_from_source
        );
    }
}

pub fn fleet_state(line: &mut String, s: &FleetState) {
    let _ = write!(line, " distinct_tips={} tips=", s.distinct_tips);
    for (i, tip) in s.tips.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(
            line,
            "{comma}{}:{}:{}",
            tip.node,
            tip.height,
            hex(&tip.hash)
        );
    }
    let diverging: Vec<String> = s
        .mempool_pairs
        .iter()
        .filter(|p| p.only_in_a + p.only_in_b > 0)
        .map(|p| format!("{}/{}:{}/{}", p.node_a, p.node_b, p.only_in_a, p.only_in_b))
        .collect();
    let _ = write!(line, " mempool_diverging={}", diverging.len());
    if !diverging.is_empty() {
        let _ = write!(line, " mempool_pairs={}", diverging.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodescope_proto::{MempoolPair, NodeTip};

    fn sighting(node: &str, offset_ns: u64, source: &str) -> NodeSighting {
        NodeSighting {
            node: node.into(),
            offset_ns,
            source: source.into(),
            ..NodeSighting::default()
        }
    }

    #[test]
    fn block_line_names_first_node_offsets_and_missing() {
        let mut line = String::new();
        block_propagation(
            &mut line,
            &BlockPropagation {
                hash: vec![0xab; 32],
                height: Some(7),
                first_node: "a".into(),
                spread_ns: 120_000_000,
                nodes: vec![sighting("a", 0, "inv"), sighting("b", 120_000_000, "block")],
                missing: vec!["c".into()],
                ..BlockPropagation::default()
            },
        );
        assert_eq!(
            line,
            format!(
                " hash={} height=7 first=a spread=0.120s nodes=a:+0.000s(inv),b:+0.120s(block) missing=c",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn state_line_lists_tips_and_only_diverging_pairs() {
        let mut line = String::new();
        fleet_state(
            &mut line,
            &FleetState {
                tips: vec![
                    NodeTip {
                        node: "a".into(),
                        hash: vec![1],
                        height: 5,
                        mempool_tracked: 2,
                    },
                    NodeTip {
                        node: "b".into(),
                        hash: vec![2],
                        height: 4,
                        mempool_tracked: 0,
                    },
                ],
                distinct_tips: 2,
                mempool_pairs: vec![MempoolPair {
                    node_a: "a".into(),
                    node_b: "b".into(),
                    only_in_a: 2,
                    only_in_b: 0,
                }],
            },
        );
        assert_eq!(
            line,
            " distinct_tips=2 tips=a:5:01,b:4:02 mempool_diverging=1 mempool_pairs=a/b:2/0"
        );
    }
}
