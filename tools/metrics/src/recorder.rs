//! Turns what the consumer layer delivers into metric updates. Owns the per-node state that
//! some metrics need (which connections are open, pings waiting for their pong, the user-agent
//! ranking, the last run id per extractor); all of it is bounded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use nodescope_consumer::{extractor_name, Continuity, Item, Received};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{Category, Event, NetMessage, P2pInventory};
use prometheus_client::metrics::counter::Counter;

use crate::labels::{self, FlushModes, INBOUND, OTHER, OUTBOUND};
use crate::metrics::*;
use crate::user_agents::UserAgents;

/// Peers tracked per node (open connections, pending pings): far above bitcoind's connection
/// limits, so only a flood of made-up peer ids reaches it; beyond it new peers go untracked.
pub const MAX_PEERS: usize = 10_000;
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
    nodes: HashMap<Box<str>, NodeState>,
    /// Where nodes beyond `max_nodes` are counted.
    overflow: Option<NodeState>,
}

struct NodeState {
    node: Node,
    peers: HashMap<i64, PeerState>,
    user_agents: UserAgents,
    /// The last run id seen per extractor kind (by its protobuf number), to count restarts.
    run_ids: HashMap<i32, u64>,
    /// The series every event (`events_received`) and every P2P message (`p2p_messages`,
    /// `p2p_message_payload_bytes`) updates, cached: indexing instead of hashing a label set.
    received: Vec<Option<Counter>>,
    messages: Vec<Option<(Counter, Counter)>>,
    rpc: crate::rpc::RpcState,
    peer: crate::peer::PeerState,
    wire: crate::wire::WireBytes,
}

/// Extractor kinds by protobuf number (0 and unknown numbers are "unknown"); one more than the
/// highest known kind, or that kind's events would share the "unknown" slot and its label.
const EXTRACTORS: usize = 5;
/// Connection types by protobuf number (0 and unknown numbers are "other").
const CONN_TYPES: usize = 7;
const MSG_TYPES: usize = nodescope_proto::p2p::MESSAGE_TYPES.len() + 1;

#[derive(Default)]
struct PeerState {
    /// The connection's labels, when this exporter saw it open (counted in `connections_open`).
    open: Option<(&'static str, &'static str)>,
    /// A ping waiting for its pong: [sent by the node, sent by the peer] → (nonce, time ns).
    pings: [Option<(u64, u64)>; 2],
}

const PING_OUT: usize = 0;
const PING_IN: usize = 1;

impl NodeState {
    fn new(name: &str, config: &Config) -> NodeState {
        NodeState {
            node: Arc::from(name),
            peers: HashMap::new(),
            user_agents: UserAgents::new(config.user_agents, Instant::now()),
            run_ids: HashMap::new(),
            received: vec![None; EXTRACTORS * Category::ALL.len()],
            messages: vec![None; 2 * MSG_TYPES * CONN_TYPES],
            rpc: Default::default(),
            peer: Default::default(),
            wire: Default::default(),
        }
    }

    fn received(&mut self, m: &Metrics, extractor: i32, category: Category) -> &Counter {
        let e = usize::try_from(extractor)
            .ok()
            .filter(|e| *e < EXTRACTORS)
            .unwrap_or(0);
        self.received[e * Category::ALL.len() + category.index()].get_or_insert_with(|| {
            m.events_received.get_or_create_owned(&StreamLabels {
                node: self.node.clone(),
                extractor: extractor_name(extractor),
                category: category.as_str(),
            })
        })
    }

    /// (messages, payload bytes) of one direction, message type and connection type.
    fn message(
        &mut self,
        m: &Metrics,
        direction: &'static str,
        msg_type: &str,
        conn_type: i32,
    ) -> &(Counter, Counter) {
        let d = usize::from(direction == OUTBOUND);
        let t = labels::msg_type_index(msg_type);
        let c = usize::try_from(conn_type)
            .ok()
            .filter(|c| *c < CONN_TYPES)
            .unwrap_or(0);
        self.messages[(d * MSG_TYPES + t) * CONN_TYPES + c].get_or_insert_with(|| {
            let labels = MessageLabels {
                node: self.node.clone(),
                direction,
                msg_type: labels::MSG_TYPE_LABELS[t],
                conn_type: labels::conn_type(conn_type),
            };
            (
                m.p2p_messages.get_or_create_owned(&labels),
                m.p2p_message_bytes.get_or_create_owned(&labels),
            )
        })
    }

    /// The state of peer `id`, created unless [`MAX_PEERS`] are tracked already.
    fn peer(&mut self, id: i64) -> Option<&mut PeerState> {
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&id) {
            return None;
        }
        Some(self.peers.entry(id).or_default())
    }
}

impl Recorder {
    pub fn new(metrics: Arc<Metrics>, config: Config) -> Recorder {
        Recorder {
            metrics,
            config,
            nodes: HashMap::new(),
            overflow: None,
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
        // Two look-ups on the first event of a node only: the borrow checker does not allow
        // returning from `get_mut` and inserting in the same match.
        if self.nodes.contains_key(name) {
            return self.nodes.get_mut(name).expect("present");
        }
        if self.nodes.len() < self.config.max_nodes {
            let state = NodeState::new(name, &self.config);
            return self.nodes.entry(name.into()).or_insert(state);
        }
        let config = self.config;
        self.overflow.get_or_insert_with(|| {
            tracing::warn!(
                max_nodes = config.max_nodes,
                node = name,
                "more nodes than --max-nodes: counting the new ones as node=\"other\""
            );
            NodeState::new(OTHER, &config)
        })
    }

    fn event(&mut self, received: &Received) {
        let metrics = self.metrics.clone();
        let config = self.config;
        let event = &received.event;
        let state = self.node(&event.node_id);
        let node = state.node.clone();
        let extractor = received.extractor_name();
        state
            .received(&metrics, event.extractor, received.category)
            .inc();
        if let Continuity::Gap { missed } | Continuity::Restart { missed } = received.continuity {
            if missed > 0 {
                let stream = StreamLabels {
                    node: node.clone(),
                    extractor,
                    category: received.category.as_str(),
                };
                metrics.events_missed.get_or_create(&stream).inc_by(missed);
            }
        }
        if let Some(previous) = state.run_ids.insert(event.extractor, event.run_id) {
            if previous != event.run_id {
                metrics
                    .extractor_restarts
                    .get_or_create(&ExtractorLabels {
                        node: node.clone(),
                        extractor,
                    })
                    .inc();
            }
        }
        let Some(payload) = &event.payload else {
            return;
        };
        let m = &*metrics;
        let n = || NodeLabels { node: node.clone() };
        match payload {
            Payload::InboundMessage(message) => net_message(m, state, INBOUND, message, event),
            Payload::OutboundMessage(message) => net_message(m, state, OUTBOUND, message, event),
            Payload::InboundConnection(c) => {
                let peer = c.peer.clone().unwrap_or_default();
                opened(m, state, &peer, c.network);
            }
            Payload::OutboundConnection(c) => {
                let peer = c.peer.clone().unwrap_or_default();
                opened(m, state, &peer, c.network);
            }
            Payload::EvictedInboundConnection(c) => {
                m.connections_evicted
                    .get_or_create(&NetworkLabels {
                        node,
                        network: labels::network(c.network),
                    })
                    .inc();
            }
            Payload::MisbehavingConnection(c) => {
                m.connections_misbehaving
                    .get_or_create(&ReasonLabels {
                        node,
                        reason: labels::misbehaving_class(&c.message),
                    })
                    .inc();
            }
            Payload::ClosedConnection(c) => {
                let peer = c.peer.clone().unwrap_or_default();
                state.wire.closed(&m.wire, &node, event, peer.id);
                let conn_type = labels::conn_type(peer.conn_type);
                m.connections_closed
                    .get_or_create(&ConnectionLabels {
                        node: node.clone(),
                        direction: labels::conn_direction(peer.conn_type),
                        conn_type,
                        network: labels::network(c.network),
                    })
                    .inc();
                let closed_at = event.timestamp_ns as f64 / 1e9;
                let age = (closed_at - c.connected_since as f64).max(0.0);
                m.connection_age_at_close
                    .get_or_create(&ConnTypeLabels {
                        node: node.clone(),
                        conn_type,
                    })
                    .observe(age);
                if let Some(PeerState {
                    open: Some((direction, conn_type)),
                    ..
                }) = state.peers.remove(&peer.id)
                {
                    m.connections_open
                        .get_or_create(&OpenLabels {
                            node,
                            direction,
                            conn_type,
                        })
                        .dec();
                }
            }
            Payload::BlockConnected(b) => {
                m.block_height.get_or_create(&n()).set(b.height as i64);
                m.blocks_connected.get_or_create(&n()).inc();
                m.block_connect_duration
                    .get_or_create(&n())
                    .observe(b.duration_ns.max(0) as f64 / 1e9);
                m.block_transactions
                    .get_or_create(&n())
                    .inc_by(b.transactions);
                m.block_inputs
                    .get_or_create(&n())
                    .inc_by(b.inputs.max(0) as u64);
                m.block_sigop_cost
                    .get_or_create(&n())
                    .inc_by(b.sigop_cost.max(0) as u64);
            }
            Payload::UtxocacheFlush(f) => {
                let mode = labels::flush_mode(f.mode, config.flush_modes);
                m.utxocache_flushes
                    .get_or_create(&FlushLabels {
                        node: node.clone(),
                        mode,
                        for_prune: labels::bool_label(f.for_prune),
                    })
                    .inc();
                m.utxocache_flush_duration
                    .get_or_create(&ModeLabels {
                        node: node.clone(),
                        mode,
                    })
                    .observe(f.duration_us.max(0) as f64 / 1e6);
                m.utxocache_flush_coins
                    .get_or_create(&n())
                    .set(f.coins_count as i64);
                m.utxocache_flush_memory
                    .get_or_create(&n())
                    .set(f.coins_mem_usage as i64);
            }
            Payload::UtxocacheAdd(c) => coin(m, node, "add", c.value),
            Payload::UtxocacheSpent(c) => coin(m, node, "spent", c.value),
            Payload::UtxocacheUncache(c) => coin(m, node, "uncache", c.value),
            Payload::SelectedCoins(s) => {
                let labels = AlgorithmLabels {
                    node,
                    algorithm: labels::algorithm(&s.algorithm),
                };
                m.coin_selections.get_or_create(&labels).inc();
                m.coin_selection_value
                    .get_or_create(&labels)
                    .inc_by(s.selected_value.max(0) as u64);
            }
            Payload::NormalCreateTxInternal(t) => create_tx(m, node, "normal", t.success),
            // What follows it (aps_create_tx_internal) says how the attempt went.
            Payload::AttemptingApsCreateTx(_) => {}
            Payload::ApsCreateTxInternal(t) => {
                if t.use_aps {
                    m.aps_used.get_or_create(&n()).inc();
                }
                create_tx(m, node, "aps", t.success);
            }
            Payload::MempoolAdded(a) => {
                m.mempool_added.get_or_create(&n()).inc();
                m.mempool_added_vsize
                    .get_or_create(&n())
                    .observe(a.vsize as f64);
                m.mempool_added_fee
                    .get_or_create(&n())
                    .observe(a.fee as f64);
                if a.vsize > 0 {
                    m.mempool_added_feerate
                        .get_or_create(&n())
                        .observe(a.fee as f64 / a.vsize as f64);
                }
            }
            Payload::MempoolRemoved(r) => {
                m.mempool_removed
                    .get_or_create(&ReasonLabels {
                        node,
                        reason: labels::removal_reason(r.reason),
                    })
                    .inc();
            }
            Payload::MempoolReplaced(r) => {
                m.mempool_replaced
                    .get_or_create(&ReplacementLabels {
                        node,
                        replaced_by: if r.replaced_by_transaction {
                            "transaction"
                        } else {
                            "package"
                        },
                    })
                    .inc();
            }
            Payload::MempoolRejected(r) => {
                m.mempool_rejected
                    .get_or_create(&ReasonLabels {
                        node,
                        reason: labels::reject_class(&r.reason),
                    })
                    .inc();
            }
            // Only counted in events_received: the connectivity tool serves its own metrics.
            Payload::ConnectivityCheck(_) => {}
            Payload::RpcCall(c) => {
                crate::rpc::call(m, &mut state.rpc, &mut state.wire, &node, event, c)
            }
            Payload::ZmqNotification(z) => crate::rpc::zmq(m, &node, event, z),
            Payload::PeerConnection(_) | Payload::PeerMessage(_) | Payload::PeerPing(_) => {
                crate::peer::record(m, &mut state.peer, &node, event)
            }
            // The fleet tool serves its own families (README "Fleet view").
            Payload::BlockPropagation(_)
            | Payload::TxPropagation(_)
            | Payload::Reorg(_)
            | Payload::FleetState(_) => {}
            Payload::ExtractorStats(s) => crate::stats::extractor_stats(m, node, extractor, s),
        }
    }
}

fn opened(m: &Metrics, state: &mut NodeState, peer: &nodescope_proto::Peer, network: i32) {
    let direction = labels::conn_direction(peer.conn_type);
    let conn_type = labels::conn_type(peer.conn_type);
    m.connections_opened
        .get_or_create(&ConnectionLabels {
            node: state.node.clone(),
            direction,
            conn_type,
            network: labels::network(network),
        })
        .inc();
    let node = state.node.clone();
    let open = |direction, conn_type| OpenLabels {
        node: node.clone(),
        direction,
        conn_type,
    };
    let Some(tracked) = state.peer(peer.id) else {
        return;
    };
    // A peer id seen open already: bitcoind restarted without closing it (ids start over).
    if let Some((direction, conn_type)) = tracked.open.take() {
        m.connections_open
            .get_or_create(&open(direction, conn_type))
            .dec();
    }
    tracked.open = Some((direction, conn_type));
    m.connections_open
        .get_or_create(&open(direction, conn_type))
        .inc();
}

fn net_message(
    m: &Metrics,
    state: &mut NodeState,
    direction: &'static str,
    net: &NetMessage,
    event: &Event,
) {
    let Some(message) = &net.message else {
        return;
    };
    let (node, timestamp_ns) = (state.node.clone(), event.timestamp_ns);
    state
        .wire
        .message(&m.wire, &node, event, direction == OUTBOUND, net);
    let (peer_id, conn_type) = net
        .peer
        .as_ref()
        .map_or((-1, 0), |peer| (peer.id, peer.conn_type));
    let (messages, bytes) = state.message(m, direction, &message.msg_type, conn_type);
    messages.inc();
    bytes.inc_by(message.size);
    let msg_type = labels::MSG_TYPE_LABELS[labels::msg_type_index(&message.msg_type)];
    if !message.decode_error.is_empty() {
        m.p2p_message_decode_errors
            .get_or_create(&MessageTypeLabels {
                node: node.clone(),
                direction,
                msg_type,
            })
            .inc();
    }
    let Some(body) = &message.body else {
        return;
    };
    match body {
        Body::Addr(addr) | Body::Addrv2(addr) => {
            for address in &addr.addresses {
                m.p2p_addresses
                    .get_or_create(&AddressLabels {
                        node: node.clone(),
                        direction,
                        msg_type,
                        family: labels::address_family(address.network),
                    })
                    .inc();
            }
        }
        Body::Inv(inv) | Body::Getdata(inv) | Body::Notfound(inv) => {
            inventory(m, &node, direction, msg_type, inv)
        }
        Body::Feefilter(filter) => {
            m.p2p_feefilter
                .get_or_create(&DirectionLabels { node, direction })
                .observe(filter.fee_rate as f64 / 1000.0);
        }
        Body::Version(version) => {
            let label = state.user_agents.label(&version.user_agent, Instant::now());
            for gone in label.dropped {
                for direction in [INBOUND, OUTBOUND] {
                    m.p2p_user_agents.remove(&UserAgentLabels {
                        node: node.clone(),
                        direction,
                        user_agent: gone.clone(),
                    });
                }
            }
            m.p2p_user_agents
                .get_or_create(&UserAgentLabels {
                    node,
                    direction,
                    user_agent: label.user_agent,
                })
                .inc();
        }
        Body::Ping(ping) => {
            // Our ping goes out, the peer's comes in; either waits for the pong coming back.
            let slot = if direction == OUTBOUND {
                PING_OUT
            } else {
                PING_IN
            };
            if let Some(peer) = state.peer(peer_id) {
                peer.pings[slot] = Some((ping.nonce, timestamp_ns));
            }
        }
        Body::Pong(pong) => {
            let (slot, ping_direction) = if direction == INBOUND {
                (PING_OUT, OUTBOUND)
            } else {
                (PING_IN, INBOUND)
            };
            let Some(peer) = state.peers.get_mut(&peer_id) else {
                return;
            };
            if let Some((nonce, sent_ns)) = peer.pings[slot] {
                if nonce == pong.nonce {
                    peer.pings[slot] = None;
                    let rtt = timestamp_ns.saturating_sub(sent_ns) as f64 / 1e9;
                    m.p2p_ping_rtt
                        .get_or_create(&DirectionLabels {
                            node,
                            direction: ping_direction,
                        })
                        .observe(rtt);
                }
            }
        }
        _ => {}
    }
}

fn inventory(
    m: &Metrics,
    node: &Node,
    direction: &'static str,
    msg_type: &'static str,
    inv: &P2pInventory,
) {
    // Entries come in runs of one type: count a run with one update.
    let mut items = inv.items.iter().map(|item| item.r#type).peekable();
    while let Some(inv_type) = items.next() {
        let mut count = 1;
        while items.next_if_eq(&inv_type).is_some() {
            count += 1;
        }
        m.p2p_inv_entries
            .get_or_create(&InvLabels {
                node: node.clone(),
                direction,
                msg_type,
                inv_type: labels::inv_type(inv_type),
            })
            .inc_by(count);
    }
}

fn coin(m: &Metrics, node: Node, operation: &'static str, value: i64) {
    let labels = OperationLabels { node, operation };
    m.utxocache_coins.get_or_create(&labels).inc();
    m.utxocache_coin_value
        .get_or_create(&labels)
        .inc_by(value.max(0) as u64);
}

fn create_tx(m: &Metrics, node: Node, attempt: &'static str, success: bool) {
    m.create_tx
        .get_or_create(&CreateTxLabels {
            node,
            attempt,
            result: if success { "success" } else { "failure" },
        })
        .inc();
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
