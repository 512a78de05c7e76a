//! The fleet's state, fed one event at a time, with no I/O: which nodes are followed, the
//! blocks and sampled transactions awaiting their propagation event, each node's chain and
//! mempool. What it derives comes back as payloads to publish; the metrics are kept as it goes.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use nodescope_proto::event::Payload;
use nodescope_proto::{
    BlockPropagation, Category, Event, ExtractorKind, FleetState, MempoolPair, NodeTip, Reorg,
    TxPropagation,
};

use crate::catch_up;
use crate::chain::{NodeChain, SelfishRule};
use crate::mempool::{Mempools, MAX_NODES};
use crate::metrics::{
    depth_label, CategoryLabels, DepthLabels, KindLabels, Metrics, Node, NodeKindLabels,
    NodeLabels, OutcomeLabels, PairLabels,
};
use crate::sighting::{self, Hash, Kind, MempoolChange, Sighting};
use crate::table::{Finished, Table};

#[derive(Debug, Clone)]
pub struct Config {
    pub max_nodes: usize,
    pub node_timeout: Duration,
    pub block_timeout: Duration,
    pub tx_timeout: Duration,
    pub max_blocks: usize,
    pub max_txs: usize,
    /// The share of transactions followed, 0 to 1.
    pub tx_sample: f64,
    pub mempool_capacity: usize,
    pub reorg_settle: Duration,
    pub selfish: SelfishRule,
}

struct Followed {
    name: String,
    label: Node,
    last_heard: Instant,
    /// Its block_connected events arrive (eBPF): a block is complete only once it connected it.
    validating: bool,
    chain: NodeChain,
}

pub struct Fleet {
    config: Config,
    pub metrics: Metrics,
    slots: Vec<Option<Followed>>,
    by_name: HashMap<String, usize>,
    /// The followed nodes' names, sorted (what "every node" means for an item).
    names: Vec<String>,
    blocks: Table,
    txs: Table,
    mempools: Mempools,
    /// A transaction is sampled when the first 8 bytes of its id are below this.
    sample_below: u64,
    other: Node,
}

impl Fleet {
    pub fn new(config: Config, metrics: Metrics) -> Fleet {
        let max_nodes = config.max_nodes.clamp(1, MAX_NODES);
        let sample = config.tx_sample.clamp(0.0, 1.0);
        Fleet {
            slots: (0..max_nodes).map(|_| None).collect(),
            by_name: HashMap::new(),
            names: Vec::new(),
            blocks: Table::new(config.max_blocks, config.block_timeout),
            txs: Table::new(config.max_txs, config.tx_timeout),
            mempools: Mempools::new(config.mempool_capacity),
            sample_below: if sample >= 1.0 {
                u64::MAX
            } else {
                (sample * u64::MAX as f64) as u64
            },
            other: Node::from("other"),
            config,
            metrics,
        }
    }

    /// The names of the nodes followed, sorted.
    pub fn nodes(&self) -> &[String] {
        &self.names
    }

    /// What `event` adds; the payloads it finished.
    pub fn observe(&mut self, event: &Event, category: Category, now: Instant) -> Vec<Payload> {
        let mut out = Vec::new();
        if event.extractor == ExtractorKind::Fleet as i32 {
            return out;
        }
        // An extractor's own stats name the extractor's host when it traces several nodes:
        // they keep a followed node alive but do not make one.
        let slot = if category == Category::Extractor {
            self.by_name.get(&event.node_id).copied().inspect(|&s| {
                self.followed(s).last_heard = now;
            })
        } else {
            self.follow(&event.node_id, now)
        };
        let label = slot.map_or(self.other.clone(), |s| self.label(s));
        self.metrics
            .events_received
            .get_or_create(&CategoryLabels {
                node: label,
                category: category.as_str(),
            })
            .inc();
        let Some(slot) = slot else {
            return out;
        };
        let seen = sighting::observe(event);
        let node = event.node_id.as_str();
        let time_ns = event.timestamp_ns;
        if let Some(connected) = &seen.connected {
            let rule = self.config.selfish.clone();
            let followed = self.followed(slot);
            followed.validating = true;
            if let Some(reorg) =
                followed
                    .chain
                    .connected(node, connected.hash, connected.height, now, &rule)
            {
                out.push(self.reorg(slot, reorg));
            }
            if let Some(entry) = self.blocks.entry(&connected.hash, true, now) {
                entry.connected(node, time_ns, connected.height, connected.duration_ns);
            }
        }
        for s in &seen.sightings {
            match s.kind {
                Kind::Block => self.block_seen(slot, node, time_ns, s, now),
                Kind::Tx => self.tx_seen(node, time_ns, s, now),
            }
        }
        if let Some(ids) = seen.tx_ids {
            self.txs.alias(&ids.wtxid, &ids.txid);
            self.txs.alias(&ids.txid, &ids.wtxid);
        }
        let others: Vec<usize> = self.followed_slots().collect();
        match seen.mempool {
            Some(MempoolChange::Added(txid)) => self.mempools.add(slot, txid, others.into_iter()),
            Some(MempoolChange::Removed(txid)) => {
                self.mempools.remove(slot, &txid, others.into_iter())
            }
            None => {}
        }
        for s in &seen.sightings {
            if let Some(payload) = self.take_if_complete(s.kind, &s.hash) {
                out.push(payload);
            }
        }
        out
    }

    /// Events of `node` were lost on the way.
    pub fn missed(&mut self, node: &str, count: u64) {
        let label = self
            .by_name
            .get(node)
            .map_or(self.other.clone(), |&s| self.label(s));
        self.metrics
            .events_missed
            .get_or_create(&NodeLabels { node: label })
            .inc_by(count);
    }

    /// Timeouts, settled reorgs and nodes gone silent; the gauges brought up to date.
    pub fn tick(&mut self, now: Instant) -> Vec<Payload> {
        let mut out = Vec::new();
        for finished in self.blocks.expire(now, &self.names) {
            out.push(self.block_finished(finished, "timeout"));
        }
        for finished in self.txs.expire(now, &self.names) {
            out.push(self.tx_finished(finished, "timeout"));
        }
        for slot in 0..self.slots.len() {
            let Some(followed) = self.slots[slot].as_mut() else {
                continue;
            };
            if let Some(reorg) =
                followed
                    .chain
                    .settle(now, self.config.reorg_settle, &self.config.selfish)
            {
                out.push(self.reorg(slot, reorg));
            }
            if now.duration_since(self.followed(slot).last_heard) >= self.config.node_timeout {
                self.unfollow(slot);
            }
        }
        self.gauges();
        out
    }

    /// Tips and mempool divergence of the nodes followed.
    pub fn state(&self) -> FleetState {
        let mut tips = Vec::new();
        for slot in self.followed_slots() {
            let followed = self.slots[slot].as_ref().expect("followed");
            let (height, hash) = followed.chain.tip().unwrap_or((-1, [0; 32]));
            tips.push(NodeTip {
                node: followed.name.clone(),
                hash: if height >= 0 {
                    hash.to_vec()
                } else {
                    Vec::new()
                },
                height,
                mempool_tracked: self.mempools.held(slot),
            });
        }
        tips.sort_by(|a, b| a.node.cmp(&b.node));
        let mut mempool_pairs = Vec::new();
        for (a, b) in self.pairs() {
            let (name_a, name_b) = (&self.slot_name(a), &self.slot_name(b));
            mempool_pairs.push(MempoolPair {
                node_a: name_a.clone(),
                node_b: name_b.clone(),
                only_in_a: self.mempools.only_in(a, b),
                only_in_b: self.mempools.only_in(b, a),
            });
        }
        mempool_pairs.sort_by(|x, y| (&x.node_a, &x.node_b).cmp(&(&y.node_a, &y.node_b)));
        FleetState {
            tips,
            distinct_tips: self.distinct_tips() as u32,
            mempool_pairs,
        }
    }

    fn block_seen(&mut self, slot: usize, node: &str, time_ns: u64, s: &Sighting, now: Instant) {
        if let Some(peer) = &s.peer {
            self.followed(slot).chain.brought(s.hash, peer, time_ns);
        }
        if let Some(entry) = self.blocks.entry(&s.hash, true, now) {
            entry.see(node, time_ns, s.source, s.peer.as_deref());
        }
    }

    fn tx_seen(&mut self, node: &str, time_ns: u64, s: &Sighting, now: Instant) {
        if let Some(other) = s.also {
            self.txs.alias(&s.hash, &other);
            self.txs.alias(&other, &s.hash);
        }
        let tracked = self.txs.is_tracked(&s.hash);
        let sampled = self.sampled(&s.hash) || s.also.is_some_and(|o| self.sampled(&o));
        let Some(entry) = self.txs.entry(&s.hash, tracked || sampled, now) else {
            return;
        };
        if s.wtxid {
            entry.wtxid.get_or_insert(s.hash);
            if let Some(txid) = s.also {
                entry.txid.get_or_insert(txid);
            }
        } else {
            entry.txid.get_or_insert(s.hash);
        }
        entry.see(node, time_ns, s.source, s.peer.as_deref());
        if let Some(other) = s.also {
            self.txs.alias(&s.hash, &other);
        }
    }

    fn sampled(&self, id: &Hash) -> bool {
        let head = u64::from_be_bytes(id[..8].try_into().expect("8 bytes"));
        self.sample_below == u64::MAX || head < self.sample_below
    }

    fn take_if_complete(&mut self, kind: Kind, id: &Hash) -> Option<Payload> {
        let every: Vec<(String, bool)> = self
            .followed_slots()
            .map(|s| {
                let f = self.slots[s].as_ref().expect("followed");
                (f.name.clone(), f.validating)
            })
            .collect();
        match kind {
            Kind::Block => {
                let finished = self.blocks.take_if(id, &self.names, |entry| {
                    every.iter().all(|(node, validating)| {
                        entry
                            .sightings
                            .get(node)
                            .is_some_and(|s| !validating || s.connected_ns.is_some())
                    })
                })?;
                Some(self.block_finished(finished, "complete"))
            }
            Kind::Tx => {
                let finished = self.txs.take_if(id, &self.names, |entry| {
                    every
                        .iter()
                        .all(|(node, _)| entry.sightings.contains_key(node))
                })?;
                Some(self.tx_finished(finished, "complete"))
            }
        }
    }

    fn block_finished(&mut self, f: Finished, outcome: &'static str) -> Payload {
        self.count_finished(Kind::Block, &f, outcome);
        self.metrics.block_spread.observe(seconds(f.spread_ns));
        self.metrics.last_block_spread.set(seconds(f.spread_ns));
        Payload::BlockPropagation(BlockPropagation {
            hash: f.ids.first().map(|h| h.to_vec()).unwrap_or_default(),
            height: f.height,
            first_node: f.first_node,
            first_seen_ns: f.first_seen_ns,
            spread_ns: f.spread_ns,
            nodes: f.nodes,
            missing: f.missing,
        })
    }

    fn tx_finished(&mut self, f: Finished, outcome: &'static str) -> Payload {
        self.count_finished(Kind::Tx, &f, outcome);
        Payload::TxPropagation(TxPropagation {
            txid: f.txid.map(|h| h.to_vec()).unwrap_or_default(),
            wtxid: f.wtxid.map(|h| h.to_vec()).unwrap_or_default(),
            first_node: f.first_node,
            first_seen_ns: f.first_seen_ns,
            spread_ns: f.spread_ns,
            nodes: f.nodes,
            missing: f.missing,
        })
    }

    fn count_finished(&mut self, kind: Kind, f: &Finished, outcome: &'static str) {
        let m = &self.metrics;
        m.propagations
            .get_or_create(&OutcomeLabels {
                kind: kind.as_str(),
                outcome,
            })
            .inc();
        let offsets = match kind {
            Kind::Block => &m.block_offset,
            Kind::Tx => &m.tx_offset,
        };
        for sighting in &f.nodes {
            let Some(&slot) = self.by_name.get(&sighting.node) else {
                continue;
            };
            let node = self.label(slot);
            offsets
                .get_or_create(&NodeLabels { node: node.clone() })
                .observe(seconds(sighting.offset_ns));
            if sighting.node == f.first_node {
                m.first_seen
                    .get_or_create(&NodeKindLabels {
                        node,
                        kind: kind.as_str(),
                    })
                    .inc();
            }
        }
        for missing in &f.missing {
            if let Some(&slot) = self.by_name.get(missing) {
                m.not_seen
                    .get_or_create(&NodeKindLabels {
                        node: self.label(slot),
                        kind: kind.as_str(),
                    })
                    .inc();
            }
        }
    }

    fn reorg(&mut self, slot: usize, reorg: Reorg) -> Payload {
        let node = self.label(slot);
        let m = &self.metrics;
        m.reorgs
            .get_or_create(&DepthLabels {
                node: node.clone(),
                depth: depth_label(reorg.depth),
            })
            .inc();
        m.reorg_depth
            .get_or_create(&NodeLabels { node: node.clone() })
            .set(reorg.depth.into());
        if reorg.possible_selfish_mining {
            m.selfish.get_or_create(&NodeLabels { node }).inc();
        }
        tracing::info!(node = %reorg.node, depth = reorg.depth, old_height = reorg.old_height,
            new_height = reorg.new_height, possible_selfish_mining = reorg.possible_selfish_mining, "reorg");
        Payload::Reorg(reorg)
    }

    /// The slot of `node`, followed from now on if there is room.
    fn follow(&mut self, node: &str, now: Instant) -> Option<usize> {
        if let Some(&slot) = self.by_name.get(node) {
            self.followed(slot).last_heard = now;
            return Some(slot);
        }
        let slot = self.slots.iter().position(Option::is_none)?;
        let label = Node::from(node);
        self.metrics.node_followed(&label);
        self.mempools.forget(slot);
        self.slots[slot] = Some(Followed {
            name: node.to_string(),
            label,
            last_heard: now,
            validating: false,
            chain: NodeChain::default(),
        });
        self.by_name.insert(node.to_string(), slot);
        self.names.push(node.to_string());
        self.names.sort();
        tracing::info!(node, followed = self.names.len(), "following a new node");
        Some(slot)
    }

    fn unfollow(&mut self, slot: usize) {
        let Some(gone) = self.slots[slot].take() else {
            return;
        };
        self.by_name.remove(&gone.name);
        self.names.retain(|n| n != &gone.name);
        let others: Vec<Node> = self.followed_slots().map(|s| self.label(s)).collect();
        self.metrics.node_dropped(&gone.label, &others);
        self.mempools.forget(slot);
        tracing::info!(node = %gone.name, silent_for = ?self.config.node_timeout, "no longer following a silent node");
    }

    fn gauges(&mut self) {
        let m = &self.metrics;
        m.nodes.set(self.names.len() as i64);
        for slot in self.followed_slots() {
            let node = self.label(slot);
            let n = NodeLabels { node };
            m.mempool_tracked
                .get_or_create(&n)
                .set(self.mempools.held(slot) as i64);
            if let Some((height, _)) = self.slots[slot].as_ref().and_then(|f| f.chain.tip()) {
                m.tip_height.get_or_create(&n).set(height.into());
            }
        }
        for (a, b) in self.pairs() {
            let (node_a, node_b) = (self.label(a), self.label(b));
            let divergence = self.mempools.only_in(a, b) + self.mempools.only_in(b, a);
            m.mempool_divergence
                .get_or_create(&PairLabels { node_a, node_b })
                .set(divergence as i64);
        }
        m.distinct_tips.set(self.distinct_tips() as i64);
        for (kind, table) in [(Kind::Block, &self.blocks), (Kind::Tx, &self.txs)] {
            let k = KindLabels {
                kind: kind.as_str(),
            };
            m.tracked.get_or_create(&k).set(table.len() as i64);
            catch_up(&m.evicted.get_or_create(&k), table.counts.evicted);
            catch_up(&m.late.get_or_create(&k), table.counts.late);
        }
    }

    fn distinct_tips(&self) -> usize {
        self.followed_slots()
            .filter_map(|s| self.slots[s].as_ref().and_then(|f| f.chain.tip()))
            .map(|(_, hash)| hash)
            .collect::<BTreeSet<_>>()
            .len()
    }

    fn followed_slots(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.slots.len()).filter(|&s| self.slots[s].is_some())
    }

    /// Every pair of followed slots, by name order.
    fn pairs(&self) -> Vec<(usize, usize)> {
        let slots: Vec<usize> = self.names.iter().map(|n| self.by_name[n]).collect();
        let mut pairs = Vec::new();
        for (i, &a) in slots.iter().enumerate() {
            for &b in &slots[i + 1..] {
                pairs.push((a, b));
            }
        }
        pairs
    }

    fn followed(&mut self, slot: usize) -> &mut Followed {
        self.slots[slot].as_mut().expect("a followed slot")
    }

    fn label(&self, slot: usize) -> Node {
        self.slots[slot]
            .as_ref()
            .map_or(self.other.clone(), |f| f.label.clone())
    }

    fn slot_name(&self, slot: usize) -> String {
        self.slots[slot]
            .as_ref()
            .map(|f| f.name.clone())
            .unwrap_or_default()
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}
