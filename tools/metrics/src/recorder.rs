//! Turns what the consumer layer delivers into metric updates: finds the state of the event's
//! node, counts the event in the pipeline families (received, missed, restarts) and hands its
//! payload to the module of its kind. Each node's state is its own (up to `max_nodes`, then
//! one shared `other`) and bounded: which connections are open, pings waiting for their pong,
//! the user-agent ranking, the last run id per extractor, the series of its frequent events.

use std::collections::HashMap;
use std::sync::Arc;

use nodescope_consumer::{extractor_name, Continuity, Item, Received};
use nodescope_proto::event::Payload;
use nodescope_proto::Category;
use prometheus_client::metrics::counter::Counter;

use crate::connections;
use crate::labels::{enum_slot, FlushModes, ENUM_SLOTS, OTHER};
use crate::metrics::*;
use crate::net_messages::{self, MessageState};
use crate::series_slots::SeriesSlots;
use crate::tracked_peers::TrackedPeers;
use crate::utxo_cache::{self, CoinSeries, Operation};
use crate::{blocks, coin_selection, mempool};

/// The node label of undecodable messages whose subject names no node.
pub const UNKNOWN_NODE: &str = "unknown";

#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// User agents with their own series, per node.
    pub user_agents: usize,
    /// Nodes with their own series; events of further nodes count under node="other".
    pub max_nodes: usize,
    pub flush_modes: FlushModes,
}

pub struct Recorder {
    metrics: Arc<Metrics>,
    config: Config,
    /// Every node's state, by the node's name in `by_name`; then, once `max_nodes` have one,
    /// the state the further nodes share (`overflow`).
    states: Vec<NodeState>,
    by_name: HashMap<Box<str>, usize>,
    overflow: Option<usize>,
    /// The state of the previous event's node (a named one): events come in runs of one node,
    /// and comparing its name is cheaper than hashing it.
    last: usize,
}

struct NodeState {
    /// The node's name in events ("" for the shared state of the nodes past `max_nodes`).
    name: Box<str>,
    /// Its `node` label.
    node: Node,
    /// `events_received` by extractor kind and category.
    received: SeriesSlots<Counter>,
    /// The last run id seen per extractor kind (by its protobuf number), to count restarts: a
    /// handful of kinds, scanned.
    run_ids: Vec<(i32, u64)>,
    peers: TrackedPeers,
    messages: MessageState,
    mempool: mempool::MempoolSeries,
    coins: CoinSeries,
    rpc: crate::rpc::RpcState,
    peer: crate::peer::PeerState,
    wire: crate::wire::WireBytes,
}

impl NodeState {
    fn new(name: &str, node: &str, config: &Config) -> NodeState {
        NodeState {
            name: name.into(),
            node: Arc::from(node),
            received: SeriesSlots::new(ENUM_SLOTS * Category::ALL.len()),
            run_ids: Vec::new(),
            peers: TrackedPeers::default(),
            messages: MessageState::new(config.user_agents),
            mempool: Default::default(),
            coins: Default::default(),
            rpc: Default::default(),
            peer: Default::default(),
            wire: Default::default(),
        }
    }

    fn received(&mut self, m: &Metrics, extractor: i32, category: Category) -> &Counter {
        let slot = enum_slot(extractor) * Category::ALL.len() + category.index();
        let node = &self.node;
        self.received.get(slot, || {
            m.events_received.get_or_create_owned(&StreamLabels {
                node: node.clone(),
                extractor: extractor_name(extractor),
                category: category.as_str(),
            })
        })
    }

    /// Records `run_id` as the last of `extractor`'s; whether it is a new one (a restart).
    fn restarted(&mut self, extractor: i32, run_id: u64) -> bool {
        match self.run_ids.iter_mut().find(|(kind, _)| *kind == extractor) {
            Some((_, last)) => std::mem::replace(last, run_id) != run_id,
            None => {
                self.run_ids.push((extractor, run_id));
                false
            }
        }
    }
}

impl Recorder {
    pub fn new(metrics: Arc<Metrics>, config: Config) -> Recorder {
        Recorder {
            metrics,
            config,
            states: Vec::new(),
            by_name: HashMap::new(),
            overflow: None,
            last: 0,
        }
    }

    pub fn record(&mut self, item: &Item) {
        match item {
            Item::Event(received) => self.event(received),
            Item::Replayed(stream) => {
                let node = self.node(&stream.node).node.clone();
                self.metrics
                    .events_replayed
                    .get_or_create(&StreamLabels {
                        node,
                        extractor: extractor_name(stream.extractor as i32),
                        category: stream.category.as_str(),
                    })
                    .inc();
            }
            Item::Undecodable(bad) => {
                let node = self
                    .node(bad.node.as_deref().unwrap_or(UNKNOWN_NODE))
                    .node
                    .clone();
                self.metrics
                    .undecodable_messages
                    .get_or_create(&NodeLabels { node })
                    .inc();
            }
        }
    }

    /// The state of node `name`; past `max_nodes` distinct nodes, the shared `other` one.
    fn node(&mut self, name: &str) -> &mut NodeState {
        if self.states.get(self.last).is_some_and(|s| *s.name == *name) {
            return &mut self.states[self.last];
        }
        let at = match self.by_name.get(name) {
            Some(at) => *at,
            None if self.by_name.len() < self.config.max_nodes => {
                self.states.push(NodeState::new(name, name, &self.config));
                self.by_name.insert(name.into(), self.states.len() - 1);
                self.states.len() - 1
            }
            None => {
                if self.overflow.is_none() {
                    tracing::warn!(
                        max_nodes = self.config.max_nodes,
                        node = name,
                        "more nodes than --max-nodes: counting the new ones as node=\"other\""
                    );
                    self.states.push(NodeState::new("", OTHER, &self.config));
                    self.overflow = Some(self.states.len() - 1);
                }
                return &mut self.states[self.overflow.expect("made above")];
            }
        };
        self.last = at;
        &mut self.states[at]
    }

    fn event(&mut self, received: &Received) {
        let metrics = self.metrics.clone();
        let m = &*metrics;
        let config = self.config;
        let event = &received.event;
        let state = self.node(&event.node_id);
        let extractor = received.extractor_name();
        state.received(m, event.extractor, received.category).inc();
        let node = &state.node;
        if let Continuity::Gap { missed } | Continuity::Restart { missed } = received.continuity {
            if missed > 0 {
                let stream = StreamLabels {
                    node: node.clone(),
                    extractor,
                    category: received.category.as_str(),
                };
                m.events_missed.get_or_create(&stream).inc_by(missed);
            }
        }
        if state.restarted(event.extractor, event.run_id) {
            m.extractor_restarts
                .get_or_create(&ExtractorLabels {
                    node: state.node.clone(),
                    extractor,
                })
                .inc();
        }
        let Some(payload) = &event.payload else {
            return;
        };
        let node = &state.node;
        match payload {
            Payload::InboundMessage(net) | Payload::OutboundMessage(net) => {
                let outbound = matches!(payload, Payload::OutboundMessage(_));
                state.wire.message(&m.wire, node, event, outbound, net);
                let (messages, peers) = (&mut state.messages, &mut state.peers);
                net_messages::record(m, node, messages, peers, outbound, net, event);
            }
            Payload::InboundConnection(c) => {
                connections::opened(m, node, &mut state.peers, c.peer.as_ref(), c.network)
            }
            Payload::OutboundConnection(c) => {
                connections::opened(m, node, &mut state.peers, c.peer.as_ref(), c.network)
            }
            Payload::EvictedInboundConnection(c) => connections::evicted(m, node, c),
            Payload::MisbehavingConnection(c) => connections::misbehaving(m, node, c),
            Payload::ClosedConnection(c) => {
                let peer = c.peer.as_ref().map_or(0, |peer| peer.id);
                state.wire.closed(&m.wire, node, event, peer);
                connections::closed(m, node, &mut state.peers, event, c);
            }
            Payload::BlockConnected(b) => blocks::connected(m, node, b),
            Payload::UtxocacheFlush(f) => utxo_cache::flush(m, node, config.flush_modes, f),
            Payload::UtxocacheAdd(c) => {
                utxo_cache::coin(m, node, &mut state.coins, Operation::Add, c.value)
            }
            Payload::UtxocacheSpent(c) => {
                utxo_cache::coin(m, node, &mut state.coins, Operation::Spent, c.value)
            }
            Payload::UtxocacheUncache(c) => {
                utxo_cache::coin(m, node, &mut state.coins, Operation::Uncache, c.value)
            }
            Payload::SelectedCoins(s) => coin_selection::selected(m, node, s),
            Payload::NormalCreateTxInternal(t) => coin_selection::normal_create_tx(m, node, t),
            // What follows it (aps_create_tx_internal) says how the attempt went.
            Payload::AttemptingApsCreateTx(_) => {}
            Payload::ApsCreateTxInternal(t) => coin_selection::aps_create_tx(m, node, t),
            Payload::MempoolAdded(a) => mempool::added(m, node, &mut state.mempool, a),
            Payload::MempoolRemoved(r) => mempool::removed(m, node, &mut state.mempool, r),
            Payload::MempoolReplaced(r) => mempool::replaced(m, node, r),
            Payload::MempoolRejected(r) => mempool::rejected(m, node, r),
            // Only counted in events_received: the connectivity tool serves its own metrics.
            Payload::ConnectivityCheck(_) => {}
            Payload::RpcCall(c) => {
                crate::rpc::call(m, &mut state.rpc, &mut state.wire, node, event, c)
            }
            Payload::ZmqNotification(z) => crate::rpc::zmq(m, node, event, z),
            Payload::PeerConnection(_) | Payload::PeerMessage(_) | Payload::PeerPing(_) => {
                crate::peer::record(m, &mut state.peer, node, event)
            }
            // The fleet tool serves its own families (README "Fleet view").
            Payload::BlockPropagation(_)
            | Payload::TxPropagation(_)
            | Payload::Reorg(_)
            | Payload::FleetState(_) => {}
            Payload::ExtractorStats(s) => {
                crate::stats::extractor_stats(m, node.clone(), extractor, s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodescope_consumer::testing::EventSource;
    use nodescope_proto::{ConnectivityCheck, ExtractorKind};
    use prometheus_client::encoding::text::encode;

    /// Connectivity checks make no families here, but are counted as received under their own
    /// extractor label, even when an event of an unknown kind came first.
    #[test]
    fn connectivity_checks_are_counted_as_received() {
        let (metrics, registry) = Metrics::new();
        let mut recorder = Recorder::new(
            metrics,
            Config {
                user_agents: 10,
                max_nodes: 10,
                flush_modes: FlushModes::V30,
            },
        );
        let mut unknown = EventSource::of(ExtractorKind::Unspecified, "node-a", 1);
        let mut checks = EventSource::of(ExtractorKind::ConnectivityCheck, "node-a", 2);
        let mut record = |source: &mut EventSource| {
            let event = source.stamp(Payload::ConnectivityCheck(ConnectivityCheck::default()));
            let event = Received {
                category: Category::Connectivity,
                event,
                continuity: Continuity::First,
            };
            recorder.record(&Item::Event(Box::new(event)));
        };
        record(&mut unknown);
        for _ in 0..3 {
            record(&mut checks);
        }
        let mut scrape = String::new();
        encode(&mut scrape, &registry).unwrap();
        for line in [
            r#"nodescope_events_received_total{node="node-a",extractor="connectivity_check",category="connectivity"} 3"#,
            r#"nodescope_events_received_total{node="node-a",extractor="unknown",category="connectivity"} 1"#,
        ] {
            assert!(scrape.contains(line), "no {line} in {scrape}");
        }
    }
}
