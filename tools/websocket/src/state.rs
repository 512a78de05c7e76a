//! What the live page shows about one node, kept from the events as they arrive so that a page
//! opened at any moment sees the present at once: the connected peers with their traffic,
//! message counts by type, mempool activity, recent blocks, the pipeline's health and, when a
//! connectivity-check tool watches the node, how reachable the addresses its peers announce
//! are, per network; when `extractor rpc` watches it, what bitcoind says about itself
//! ([`crate::summary`]); when `extractor p2p` is one of its peers, what the node does as a
//! peer ([`crate::peer_view`]); for the `fleet` tool's own node id, the fleet's block
//! propagation and reorgs ([`crate::fleet_view`]). The page only draws this state (sent a few times a second), so what it
//! shows is exactly what the events said, whatever their rate.

use std::collections::{BTreeMap, HashMap, VecDeque};

use nodescope_consumer::{Continuity, Received};
use nodescope_proto::event::Payload;
use nodescope_proto::json::hex;
use nodescope_proto::{
    AddrNetwork, ConnectivityCheck, ConnectivityResult, Network, Peer, V2Support,
};
use serde::Serialize;

use crate::fleet_view::FleetView;
use crate::peer_view::PeerView;
use crate::summary::{RpcSummary, ZmqSummary};

/// Peers kept per node. bitcoind serves a few hundred connections at most; this only bounds a
/// misbehaving stream (peers seen in messages but never closed).
pub const MAX_PEERS: usize = 4096;
/// Blocks listed.
pub const RECENT_BLOCKS: usize = 20;
/// Mempool reasons (removal, rejection) kept by name before the rest count as `other`.
pub const MAX_REASONS: usize = 64;

#[derive(Debug, Default, Clone, Serialize)]
pub struct NodeState {
    /// Changed since it was last rendered for pages.
    #[serde(skip)]
    pub changed: bool,
    pub node: String,
    /// Time of the newest event, ns since the epoch.
    pub last_event_ns: u64,
    pub peers: BTreeMap<i64, PeerState>,
    /// Peers dropped from `peers` because there were more than [`MAX_PEERS`].
    pub peers_dropped: u64,
    /// By message type (`other` for types bitcoind does not know).
    pub messages: BTreeMap<String, Traffic>,
    pub mempool: Mempool,
    pub blocks: VecDeque<Block>,
    pub pipeline: Pipeline,
    /// Connectivity checks of announced addresses by network ([`CHECK_NETWORKS`]): empty until
    /// the first check, so pages of nodes nobody checks show nothing of it.
    pub connectivity: BTreeMap<&'static str, Reachability>,
    /// The latest RPC answers and failures (empty until `extractor rpc` publishes).
    pub rpc: RpcSummary,
    /// The ZMQ notifications.
    pub zmq: ZmqSummary,
    /// The node as `extractor p2p`, one of its peers, sees it (empty until it publishes).
    pub p2p: PeerView,
    /// What the `fleet` tool publishes (under its own node id): empty for other nodes.
    pub fleet: FleetView,
}

/// The networks checks are counted under: the closed set of the page's rows (Tor v2 and
/// networks nodescope does not know are `other`).
pub const CHECK_NETWORKS: [&str; 6] = ["ipv4", "ipv6", "torv3", "i2p", "cjdns", "other"];

/// How the checks of one network's addresses ended. Counts only, never addresses: the memory
/// stays the same whatever peers announce.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Reachability {
    pub checks: u64,
    pub reachable: u64,
    pub refused: u64,
    pub timeout: u64,
    pub reset: u64,
    pub wrong_magic: u64,
    pub not_bitcoin: u64,
    pub proxy_error: u64,
    pub unreachable_network: u64,
    /// Results this tool does not know (unspecified, or added to the schema after it).
    pub other: u64,
    /// Reachable among the checks that dialled (all but `unreachable_network`, which says
    /// nothing about the address, only that its network cannot be reached from the checker);
    /// `None` until one did.
    pub reachable_share: Option<f64>,
    /// Peers that accepted a BIP324 handshake, of those where one was tried.
    pub v2_supported: u64,
    pub v2_tried: u64,
}

impl Reachability {
    fn count(&mut self, check: &ConnectivityCheck) {
        self.checks += 1;
        use ConnectivityResult as R;
        let class = match R::try_from(check.result) {
            Ok(R::Reachable) => &mut self.reachable,
            Ok(R::Refused) => &mut self.refused,
            Ok(R::Timeout) => &mut self.timeout,
            Ok(R::Reset) => &mut self.reset,
            Ok(R::WrongMagic) => &mut self.wrong_magic,
            Ok(R::NotBitcoin) => &mut self.not_bitcoin,
            Ok(R::ProxyError) => &mut self.proxy_error,
            Ok(R::UnreachableNetwork) => &mut self.unreachable_network,
            Ok(R::Unspecified) | Err(_) => &mut self.other,
        };
        *class += 1;
        let dialled = self.checks - self.unreachable_network;
        self.reachable_share = (dialled > 0).then(|| self.reachable as f64 / dialled as f64);
        match V2Support::try_from(check.v2) {
            Ok(V2Support::NotTried) => {}
            Ok(V2Support::Supported) => {
                self.v2_supported += 1;
                self.v2_tried += 1;
            }
            _ => self.v2_tried += 1,
        }
    }
}

/// The row a check counts in: one of [`CHECK_NETWORKS`].
fn check_network(check: &ConnectivityCheck) -> &'static str {
    let network = check.address.as_ref().map_or(0, |a| a.network);
    match AddrNetwork::try_from(network) {
        Ok(AddrNetwork::Ipv4) => "ipv4",
        Ok(AddrNetwork::Ipv6) => "ipv6",
        Ok(AddrNetwork::Torv3) => "torv3",
        Ok(AddrNetwork::I2p) => "i2p",
        Ok(AddrNetwork::Cjdns) => "cjdns",
        Ok(AddrNetwork::Torv2 | AddrNetwork::Unknown) | Err(_) => "other",
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PeerState {
    pub id: i64,
    pub addr: String,
    pub conn_type: String,
    pub network: &'static str,
    /// Seconds since the epoch; `None` for a peer first seen in a message (connected before the
    /// tool started).
    pub connected_since: Option<i64>,
    #[serde(flatten)]
    pub traffic: Traffic,
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Traffic {
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Traffic {
    fn count(&mut self, inbound: bool, size: u64) {
        if inbound {
            self.msgs_in += 1;
            self.bytes_in += size;
        } else {
            self.msgs_out += 1;
            self.bytes_out += size;
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Mempool {
    pub added: u64,
    pub added_vbytes: u64,
    pub added_fees: i64,
    pub removed: BTreeMap<String, u64>,
    pub replaced: u64,
    pub rejected: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Block {
    pub height: i32,
    pub hash: String,
    pub transactions: u64,
    pub inputs: i32,
    pub sigop_cost: i64,
    pub duration_ns: i64,
    pub time_ns: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Pipeline {
    /// New events received, all categories.
    pub events: u64,
    pub by_category: BTreeMap<&'static str, u64>,
    /// Events that never arrived (sequence gaps, starts of new runs missed).
    pub missed: u64,
    pub restarts: u64,
    pub replayed: u64,
    pub undecodable: u64,
    /// The extractor's own counters, from its latest stats event (this run's totals).
    pub extractor: Option<ExtractorCounters>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ExtractorCounters {
    pub events_read: u64,
    pub published: u64,
    pub kernel_drops: u64,
    pub kernel_payload_drops: u64,
    pub expired_incomplete: u64,
    pub closed_at_shutdown: u64,
    pub stray_chunks: u64,
    /// Ring records that did not parse: lost between the kernel and the extractor, as drops are.
    pub malformed_records: u64,
    pub dropped_queue_full: u64,
    pub dropped_too_large: u64,
    pub decode_errors: u64,
    pub queued: u64,
}

/// Counts `key` in a map of at most [`MAX_REASONS`] names (then `other`): reasons are free text
/// from bitcoind.
fn count_reason(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(count) = map.get_mut(key) {
        *count += 1;
    } else if map.len() < MAX_REASONS {
        map.insert(key.to_string(), 1);
    } else {
        *map.entry("other".to_string()).or_default() += 1;
    }
}

impl NodeState {
    pub fn new(node: &str) -> NodeState {
        NodeState {
            node: node.to_string(),
            ..NodeState::default()
        }
    }

    pub fn apply(&mut self, received: &Received) {
        let event = &received.event;
        self.last_event_ns = self.last_event_ns.max(event.timestamp_ns);
        self.pipeline.events += 1;
        *self
            .pipeline
            .by_category
            .entry(received.category.as_str())
            .or_default() += 1;
        self.pipeline.missed += received.continuity.missed();
        if matches!(received.continuity, Continuity::Restart { .. }) {
            self.pipeline.restarts += 1;
        }
        let Some(payload) = &event.payload else {
            return;
        };
        use Payload as P;
        match payload {
            P::InboundMessage(m) | P::OutboundMessage(m) => {
                let inbound = matches!(payload, P::InboundMessage(_));
                let (msg_type, size) = m
                    .message
                    .as_ref()
                    .map_or(("", 0), |msg| (msg.msg_type.as_str(), msg.size));
                let label = if nodescope_proto::p2p::is_known_type(msg_type) {
                    msg_type
                } else {
                    "other"
                };
                match self.messages.get_mut(label) {
                    Some(traffic) => traffic.count(inbound, size),
                    None => self
                        .messages
                        .entry(label.to_string())
                        .or_default()
                        .count(inbound, size),
                }
                if let Some(peer) = &m.peer {
                    self.peer(peer, None, None).traffic.count(inbound, size);
                }
            }
            P::InboundConnection(c) => {
                let since = (event.timestamp_ns / 1_000_000_000) as i64;
                if let Some(peer) = &c.peer {
                    self.peer(peer, Some(c.network), Some(since));
                }
            }
            P::OutboundConnection(c) => {
                let since = (event.timestamp_ns / 1_000_000_000) as i64;
                if let Some(peer) = &c.peer {
                    self.peer(peer, Some(c.network), Some(since));
                }
            }
            P::ClosedConnection(c) => {
                if let Some(peer) = &c.peer {
                    self.peers.remove(&peer.id);
                }
            }
            P::BlockConnected(b) => {
                self.blocks.push_front(Block {
                    height: b.height,
                    hash: hex(&b.hash),
                    transactions: b.transactions,
                    inputs: b.inputs,
                    sigop_cost: b.sigop_cost,
                    duration_ns: b.duration_ns,
                    time_ns: event.timestamp_ns,
                });
                self.blocks.truncate(RECENT_BLOCKS);
            }
            P::MempoolAdded(a) => {
                self.mempool.added += 1;
                self.mempool.added_vbytes += a.vsize.max(0) as u64;
                self.mempool.added_fees += a.fee;
            }
            P::MempoolRemoved(r) => {
                count_reason(&mut self.mempool.removed, r.reason_name());
            }
            P::MempoolReplaced(_) => self.mempool.replaced += 1,
            P::MempoolRejected(r) => count_reason(&mut self.mempool.rejected, &r.reason),
            P::ConnectivityCheck(c) => self
                .connectivity
                .entry(check_network(c))
                .or_default()
                .count(c),
            P::RpcCall(c) => self.rpc.apply(event, c),
            P::ZmqNotification(z) => self.zmq.apply(event, z),
            P::PeerConnection(_) | P::PeerMessage(_) | P::PeerPing(_) => self.p2p.apply(event),
            P::BlockPropagation(_) | P::TxPropagation(_) | P::Reorg(_) | P::FleetState(_) => {
                self.fleet.apply(event)
            }
            P::ExtractorStats(s) => {
                self.pipeline.extractor = Some(ExtractorCounters {
                    events_read: s.events_read,
                    published: s.published,
                    kernel_drops: s.kernel_drops.values().sum(),
                    kernel_payload_drops: s.kernel_payload_drops.values().sum(),
                    expired_incomplete: s.expired_incomplete,
                    closed_at_shutdown: s.closed_at_shutdown,
                    stray_chunks: s.stray_chunks,
                    malformed_records: s.malformed_records,
                    dropped_queue_full: s.dropped_queue_full,
                    dropped_too_large: s.dropped_too_large,
                    decode_errors: s.decode_errors,
                    queued: s.queued,
                })
            }
            _ => {}
        }
    }

    /// The peer's entry, created (or completed, for a connection event) from what the event
    /// says.
    fn peer(
        &mut self,
        peer: &Peer,
        network: Option<i32>,
        connected_since: Option<i64>,
    ) -> &mut PeerState {
        if !self.peers.contains_key(&peer.id) && self.peers.len() >= MAX_PEERS {
            // The oldest id goes: bitcoind numbers peers in connection order.
            self.peers.pop_first();
            self.peers_dropped += 1;
        }
        let entry = self.peers.entry(peer.id).or_insert_with(|| PeerState {
            id: peer.id,
            addr: peer.addr.clone(),
            conn_type: peer.conn_type_name().to_string(),
            network: "unknown",
            connected_since: None,
            traffic: Traffic::default(),
        });
        if let Some(network) = network {
            entry.network = Network::try_from(network).map_or("unknown", Network::label);
            entry.connected_since = connected_since;
            entry.addr.clone_from(&peer.addr);
            entry.conn_type = peer.conn_type_name().to_string();
        }
        entry
    }
}

/// The states of every node seen, by node id.
#[derive(Debug, Default)]
pub struct Nodes {
    pub nodes: HashMap<String, NodeState>,
}

impl Nodes {
    /// The node's state, marked changed (it is only asked for to be changed).
    pub fn node(&mut self, node: &str) -> &mut NodeState {
        if !self.nodes.contains_key(node) {
            self.nodes.insert(node.to_string(), NodeState::new(node));
        }
        let state = self.nodes.get_mut(node).expect("just inserted");
        state.changed = true;
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodescope_consumer::testing::EventSource;
    use nodescope_proto::{
        BlockConnected, ClosedConnection, ExtractorStats, InboundConnection, MempoolAdded,
        MempoolRejected, MempoolRemoved, NetAddress, NetMessage, P2pMessage,
    };
    use nodescope_proto::{Category, ConnectionType, Event, RemovalReason};

    fn received(event: Event, continuity: Continuity) -> Received {
        Received {
            category: event.category().unwrap(),
            event,
            continuity,
        }
    }

    fn peer(id: i64) -> Option<Peer> {
        Some(Peer {
            id,
            addr: format!("10.0.0.{id}:8333"),
            conn_type: ConnectionType::Inbound as i32,
            conn_type_other: String::new(),
        })
    }

    fn message(id: i64, msg_type: &str, size: u64, inbound: bool) -> Payload {
        let m = NetMessage {
            peer: peer(id),
            message: Some(P2pMessage {
                msg_type: msg_type.into(),
                size,
                ..P2pMessage::default()
            }),
        };
        if inbound {
            Payload::InboundMessage(m)
        } else {
            Payload::OutboundMessage(m)
        }
    }

    /// Two processes of one binary are two nodes, and both number their peers from 0: peer 5
    /// of one is never peer 5 of the other.
    #[test]
    fn peers_are_kept_per_node() {
        let mut nodes = Nodes::default();
        for node in ["host-main", "host-signet"] {
            let mut source = EventSource::new(node, 1);
            let event = source.stamp(Payload::InboundConnection(InboundConnection {
                peer: peer(5),
                network: Network::Ipv4 as i32,
                inbound_count: 1,
            }));
            nodes.node(node).apply(&received(event, Continuity::Next));
        }
        let mut source = EventSource::new("host-main", 2);
        let closed = source.stamp(Payload::ClosedConnection(ClosedConnection {
            peer: peer(5),
            ..Default::default()
        }));
        nodes
            .node("host-main")
            .apply(&received(closed, Continuity::Next));
        assert!(nodes.nodes["host-main"].peers.is_empty());
        assert!(nodes.nodes["host-signet"].peers.contains_key(&5));
    }

    #[test]
    fn peers_traffic_mempool_blocks_and_pipeline_follow_the_events() {
        let mut source = EventSource::new("n", 1);
        let mut state = NodeState::new("n");
        let mut apply = |payload: Payload| {
            let event = source.stamp(payload);
            state.apply(&received(event, Continuity::Next));
        };
        apply(Payload::InboundConnection(InboundConnection {
            peer: peer(1),
            network: Network::Ipv4 as i32,
            inbound_count: 1,
        }));
        apply(message(1, "inv", 37, true));
        apply(message(1, "getdata", 37, false));
        apply(message(1, "inv", 73, true));
        apply(message(2, "tx", 200, true)); // a peer connected before we started
        apply(message(2, "bogus", 5, true));
        apply(Payload::MempoolAdded(MempoolAdded {
            txid: vec![1; 32],
            vsize: 100,
            fee: 1000,
        }));
        apply(Payload::MempoolRemoved(MempoolRemoved {
            reason: RemovalReason::Block as i32,
            ..Default::default()
        }));
        apply(Payload::MempoolRejected(MempoolRejected {
            txid: vec![2; 32],
            reason: "min relay fee not met".into(),
        }));
        apply(Payload::BlockConnected(BlockConnected {
            hash: vec![0xaa; 32],
            height: 7,
            transactions: 2,
            inputs: 3,
            sigop_cost: 4,
            duration_ns: 5_000_000,
        }));
        apply(Payload::ClosedConnection(ClosedConnection {
            peer: peer(1),
            ..Default::default()
        }));
        apply(Payload::ExtractorStats(ExtractorStats {
            events_read: 11,
            published: 10,
            kernel_drops: [("net".to_string(), 2), ("mempool".to_string(), 1)].into(),
            malformed_records: 4,
            ..Default::default()
        }));

        assert_eq!(state.peers.len(), 1, "peer 1 closed");
        let peer2 = &state.peers[&2];
        assert_eq!(peer2.connected_since, None);
        assert_eq!(peer2.network, "unknown");
        assert_eq!(
            peer2.traffic,
            Traffic {
                msgs_in: 2,
                msgs_out: 0,
                bytes_in: 205,
                bytes_out: 0
            }
        );
        assert_eq!(
            state.messages["inv"],
            Traffic {
                msgs_in: 2,
                msgs_out: 0,
                bytes_in: 110,
                bytes_out: 0
            }
        );
        assert_eq!(state.messages["getdata"].msgs_out, 1);
        assert_eq!(state.messages["other"].bytes_in, 5);
        assert_eq!(state.mempool.added, 1);
        assert_eq!(state.mempool.added_vbytes, 100);
        assert_eq!(state.mempool.removed["block"], 1);
        assert_eq!(state.mempool.rejected["min relay fee not met"], 1);
        assert_eq!(state.blocks[0].height, 7);
        assert_eq!(state.blocks[0].hash, "aa".repeat(32));
        assert_eq!(state.pipeline.events, 12);
        assert_eq!(state.pipeline.by_category["net.message"], 5);
        let extractor = state.pipeline.extractor.as_ref().unwrap();
        assert_eq!(extractor.kernel_drops, 3);
        assert_eq!(extractor.malformed_records, 4);
        assert_eq!(extractor.published, 10);
    }

    #[test]
    fn a_connection_event_fills_in_a_peer_first_seen_in_a_message() {
        let mut source = EventSource::new("n", 1);
        let mut state = NodeState::new("n");
        state.apply(&received(
            source.stamp(message(3, "ping", 8, true)),
            Continuity::First,
        ));
        let connected = source.stamp(Payload::InboundConnection(InboundConnection {
            peer: peer(3),
            network: Network::Onion as i32,
            inbound_count: 1,
        }));
        let since = (connected.timestamp_ns / 1_000_000_000) as i64;
        state.apply(&received(connected, Continuity::First));
        let peer = &state.peers[&3];
        assert_eq!(peer.network, "onion");
        assert_eq!(peer.connected_since, Some(since));
        assert_eq!(peer.traffic.msgs_in, 1);
    }

    #[test]
    fn gaps_restarts_and_bounds_are_counted() {
        let mut source = EventSource::new("n", 1);
        let mut state = NodeState::new("n");
        state.apply(&received(
            source.stamp(message(1, "ping", 8, true)),
            Continuity::Gap { missed: 4 },
        ));
        state.apply(&received(
            source.stamp(message(1, "ping", 8, true)),
            Continuity::Restart { missed: 2 },
        ));
        assert_eq!(state.pipeline.missed, 6);
        assert_eq!(state.pipeline.restarts, 1);
        for id in 0..(MAX_PEERS as i64 + 10) {
            state.apply(&received(
                source.stamp(message(id, "ping", 8, true)),
                Continuity::Next,
            ));
        }
        assert_eq!(state.peers.len(), MAX_PEERS);
        assert_eq!(state.peers_dropped, 10);
        assert!(!state.peers.contains_key(&0));
        for n in 0..(MAX_REASONS + 5) {
            state.apply(&received(
                source.stamp(Payload::MempoolRejected(MempoolRejected {
                    txid: vec![],
                    reason: format!("reason {n}"),
                })),
                Continuity::Next,
            ));
        }
        assert_eq!(state.mempool.rejected.len(), MAX_REASONS + 1);
        assert_eq!(state.mempool.rejected["other"], 5);
        let _ = Category::Mempool;
    }

    fn check(network: AddrNetwork, result: i32, v2: V2Support) -> Payload {
        Payload::ConnectivityCheck(ConnectivityCheck {
            address: Some(NetAddress {
                network: network as i32,
                address: "192.0.2.1".into(),
                port: 8333,
                ..NetAddress::default()
            }),
            result,
            v2: v2 as i32,
            ..ConnectivityCheck::default()
        })
    }

    #[test]
    fn connectivity_checks_are_summed_per_network_and_result() {
        use ConnectivityResult as R;
        let mut source = EventSource::new("n", 1);
        let mut state = NodeState::new("n");
        assert!(state.connectivity.is_empty(), "nothing until a check");
        let mut apply = |payload: Payload| {
            state.apply(&received(source.stamp(payload), Continuity::Next));
        };
        apply(check(
            AddrNetwork::Ipv4,
            R::Reachable as i32,
            V2Support::Supported,
        ));
        apply(check(
            AddrNetwork::Ipv4,
            R::Reachable as i32,
            V2Support::NotSupported,
        ));
        apply(check(
            AddrNetwork::Ipv4,
            R::Refused as i32,
            V2Support::NotTried,
        ));
        apply(check(
            AddrNetwork::Ipv4,
            R::Timeout as i32,
            V2Support::NotTried,
        ));
        apply(check(
            AddrNetwork::Torv3,
            R::UnreachableNetwork as i32,
            V2Support::NotTried,
        ));
        apply(check(
            AddrNetwork::Torv2,
            R::WrongMagic as i32,
            V2Support::NotTried,
        ));
        apply(check(AddrNetwork::Unknown, 77, V2Support::NotTried));
        apply(Payload::ConnectivityCheck(ConnectivityCheck::default()));

        assert_eq!(
            state.connectivity["ipv4"],
            Reachability {
                checks: 4,
                reachable: 2,
                refused: 1,
                timeout: 1,
                reachable_share: Some(0.5),
                v2_supported: 1,
                v2_tried: 2,
                ..Reachability::default()
            }
        );
        let tor = &state.connectivity["torv3"];
        assert_eq!((tor.checks, tor.unreachable_network), (1, 1));
        assert_eq!(tor.reachable_share, None, "nothing was dialled");
        let other = &state.connectivity["other"];
        assert_eq!((other.checks, other.wrong_magic, other.other), (3, 1, 2));
        assert_eq!(other.reachable_share, Some(0.0));
        assert!(state
            .connectivity
            .keys()
            .all(|network| CHECK_NETWORKS.contains(network)));
        assert_eq!(state.pipeline.by_category["connectivity"], 8);
    }
}
