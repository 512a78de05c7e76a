//! One node's chain as its `block_connected` events show it: the tip, the recent blocks by
//! height, and reorgs. A block connected at a height not above the tip is a reorg: the blocks
//! from that height up were disconnected. The reorg is reported once the new branch is in (no
//! block came for `settle`: the messages that brought its blocks travel on another subject than
//! their block_connected events, and may arrive after them), with where the branch's
//! blocks came from: several from one peer in rapid succession is the pattern of a withheld
//! chain being released (selfish mining).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use nodescope_proto::Reorg;

use crate::sighting::Hash;

/// Heights remembered per node: deeper reorgs report only the hashes still known.
const REMEMBERED_BLOCKS: usize = 2_016;
/// Peers remembered per node for the blocks they brought.
const REMEMBERED_SOURCES: usize = 1_024;

#[derive(Debug, Clone)]
pub struct SelfishRule {
    /// Blocks of one branch from one peer at least.
    pub min_blocks: u32,
    /// Within this time of each other (their first sightings).
    pub window: Duration,
}

struct Pending {
    reorg: Reorg,
    branch: Vec<Hash>,
    last_height: i32,
    last_connect: Instant,
}

#[derive(Default)]
pub struct NodeChain {
    tip: Option<(i32, Hash)>,
    blocks: BTreeMap<i32, Hash>,
    /// Block → the first peer that brought it, and when.
    sources: HashMap<Hash, (String, u64)>,
    source_order: VecDeque<Hash>,
    pending: Option<Pending>,
}

impl NodeChain {
    pub fn tip(&self) -> Option<(i32, Hash)> {
        self.tip
    }

    /// A peer brought `hash` at `time_ns` (the first such sighting is kept).
    pub fn brought(&mut self, hash: Hash, peer: &str, time_ns: u64) {
        if self.sources.contains_key(&hash) {
            return;
        }
        if self.source_order.len() >= REMEMBERED_SOURCES {
            if let Some(old) = self.source_order.pop_front() {
                self.sources.remove(&old);
            }
        }
        self.sources.insert(hash, (peer.to_string(), time_ns));
        self.source_order.push_back(hash);
    }

    /// The node connected `hash` at `height`; a finished reorg when this completes one.
    pub fn connected(
        &mut self,
        node: &str,
        hash: Hash,
        height: i32,
        now: Instant,
        rule: &SelfishRule,
    ) -> Option<Reorg> {
        let mut finished = None;
        if let Some(pending) = &mut self.pending {
            if height == pending.last_height + 1 {
                pending.branch.push(hash);
                pending.last_height = height;
                pending.last_connect = now;
                self.record(hash, height);
                return None;
            }
            finished = self.finish(rule);
        }
        if let Some((tip_height, tip_hash)) = self.tip {
            if height <= tip_height && tip_hash != hash {
                let disconnected: Vec<Vec<u8>> = self
                    .blocks
                    .range(height..=tip_height)
                    .rev()
                    .map(|(_, h)| h.to_vec())
                    .collect();
                self.blocks.retain(|&h, _| h < height);
                self.pending = Some(Pending {
                    reorg: Reorg {
                        node: node.to_string(),
                        old_tip: tip_hash.to_vec(),
                        old_height: tip_height,
                        new_block: hash.to_vec(),
                        new_height: height,
                        depth: (tip_height - height + 1) as u32,
                        disconnected,
                        ..Reorg::default()
                    },
                    branch: vec![hash],
                    last_height: height,
                    last_connect: now,
                });
            }
        }
        self.record(hash, height);
        finished
    }

    /// A reorg whose branch stopped growing for `settle`.
    pub fn settle(&mut self, now: Instant, settle: Duration, rule: &SelfishRule) -> Option<Reorg> {
        let quiet = self
            .pending
            .as_ref()
            .is_some_and(|p| now >= p.last_connect + settle);
        if quiet {
            self.finish(rule)
        } else {
            None
        }
    }

    fn record(&mut self, hash: Hash, height: i32) {
        self.blocks.insert(height, hash);
        while self.blocks.len() > REMEMBERED_BLOCKS {
            self.blocks.pop_first();
        }
        self.tip = Some((height, hash));
    }

    fn finish(&mut self, rule: &SelfishRule) -> Option<Reorg> {
        let Pending {
            mut reorg, branch, ..
        } = self.pending.take()?;
        let mut by_peer: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for hash in &branch {
            if let Some((peer, time_ns)) = self.sources.get(hash) {
                by_peer.entry(peer).or_default().push(*time_ns);
            }
        }
        if let Some((peer, times)) = by_peer.into_iter().max_by_key(|(_, t)| t.len()) {
            reorg.branch_source = peer.to_string();
            reorg.branch_blocks_from_source = times.len() as u32;
            let first = times.iter().min().copied().unwrap_or(0);
            let last = times.iter().max().copied().unwrap_or(0);
            reorg.possible_selfish_mining = times.len() as u32 >= rule.min_blocks
                && last - first <= rule.window.as_nanos() as u64;
        }
        Some(reorg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: SelfishRule = SelfishRule {
        min_blocks: 2,
        window: Duration::from_secs(30),
    };

    fn h(byte: u8) -> Hash {
        [byte; 32]
    }

    #[test]
    fn a_longer_branch_is_one_reorg_with_depth_and_disconnected_hashes() {
        let now = Instant::now();
        let mut chain = NodeChain::default();
        for (height, byte) in [(1, 1), (2, 2), (3, 3)] {
            assert!(chain.connected("a", h(byte), height, now, &RULE).is_none());
        }
        // 2 and 3 replaced by 12, 13, 14 brought by one peer within a second.
        for (byte, t) in [(12u8, 1_000), (13, 1_200), (14, 1_400)] {
            chain.brought(h(byte), "10.0.0.9:8333", t);
        }
        assert!(chain.connected("a", h(12), 2, now, &RULE).is_none());
        assert!(chain.connected("a", h(13), 3, now, &RULE).is_none());
        assert!(chain.connected("a", h(14), 4, now, &RULE).is_none());
        let settle = Duration::from_secs(2);
        assert!(chain.settle(now, settle, &RULE).is_none());
        let reorg = chain.settle(now + settle, settle, &RULE).unwrap();
        assert_eq!(reorg.depth, 2);
        assert_eq!(reorg.old_height, 3);
        assert_eq!(reorg.new_height, 2);
        assert_eq!(reorg.disconnected, [h(3).to_vec(), h(2).to_vec()]);
        assert_eq!(reorg.branch_source, "10.0.0.9:8333");
        assert_eq!(reorg.branch_blocks_from_source, 3);
        assert!(reorg.possible_selfish_mining);
        assert_eq!(chain.tip(), Some((4, h(14))));
    }

    #[test]
    fn a_same_height_replacement_settles_after_quiet_and_slow_blocks_are_not_selfish() {
        let now = Instant::now();
        let mut chain = NodeChain::default();
        chain.connected("a", h(1), 1, now, &RULE);
        chain.brought(h(2), "p", 0);
        assert!(chain.connected("a", h(2), 1, now, &RULE).is_none());
        assert!(chain.settle(now, Duration::from_secs(3), &RULE).is_none());
        let reorg = chain
            .settle(now + Duration::from_secs(3), Duration::from_secs(3), &RULE)
            .unwrap();
        assert_eq!(reorg.depth, 1);
        assert!(!reorg.possible_selfish_mining, "one block is not a pattern");
        // Two blocks from one peer 10 minutes apart: an ordinary reorg.
        chain.brought(h(3), "p", 0);
        chain.brought(h(4), "p", 600_000_000_000);
        chain.connected("a", h(3), 1, now, &RULE);
        chain.connected("a", h(4), 2, now, &RULE);
        let reorg = chain
            .settle(now + Duration::from_secs(3), Duration::from_secs(3), &RULE)
            .unwrap();
        assert_eq!(reorg.branch_blocks_from_source, 2);
        assert!(!reorg.possible_selfish_mining);
    }

    #[test]
    fn the_same_block_again_is_not_a_reorg() {
        let now = Instant::now();
        let mut chain = NodeChain::default();
        chain.connected("a", h(1), 1, now, &RULE);
        assert!(chain.connected("a", h(1), 1, now, &RULE).is_none());
        assert!(chain
            .settle(now + Duration::from_secs(60), Duration::from_secs(1), &RULE)
            .is_none());
    }
}
