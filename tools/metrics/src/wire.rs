//! Bytes on the wire per message type exactly as bitcoind counts them in getpeerinfo's
//! `bytessent_per_msg` / `bytesrecv_per_msg`, from the eBPF extractor's P2P messages (which give
//! payload sizes) joined with `extractor rpc`'s getpeerinfo (which names each peer's transport).
//!
//! What bitcoind v30.0 counts for one message besides its payload:
//! - v1: the 24-byte header;
//! - v2 (BIP324): 3 bytes of length, 1 header byte and a 16-byte tag, plus the type: 1 byte for
//!   the types with a short id ([`labels::V2_SHORT_ID_TYPES`]; also the empty type of the
//!   unassigned ids 29-32), 13 for the others (`0x00` and the 12-byte type);
//! - the v2 key exchange, garbage and version packet belong to no type: nothing to add.
//!
//! Received types bitcoind does not know are counted under `*other*` ([`labels::CORE_OTHER`]).
//!
//! A peer's first messages (version, verack, ...) come before any getpeerinfo names its
//! transport: they wait, per peer, as counts and payload bytes per type, and are counted with the
//! right framing once a getpeerinfo lists the peer as `v1` or `v2` (`detecting`: not yet known,
//! they wait on). Bytes that never learn their transport are counted, payload only, in the
//! `unattributed` families with the reason: the peer closed first (`closed`), the next
//! [`UNMATCHED_AFTER_POLLS`] getpeerinfo answers did not list it (`unmatched`), more than
//! [`MAX_PENDING_PEERS`] peers were waiting (`overflow`), bitcoind restarted (`restart`), or
//! getpeerinfo named a transport this version does not know (`other_transport`).
//!
//! Peer ids are per bitcoind process: an event of another process id (`Event.pid`) than the
//! tracked one is a restart, which gives up what was waiting and forgets every transport;
//! getpeerinfo answers taken before it (of the previous process) are then ignored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::LazyLock;

use nodescope_proto::{Event, NetMessage, PeerInfo};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::{Registry, Unit};

use crate::labels::{self, CORE_MSG_TYPES};
use crate::metrics::{label_sets, Counters, Gauges, Node, NodeLabels};
use nodescope_proto::p2p::wire;

label_sets! {
    WireLabels { direction, msg_type, transport }
    UnattributedLabels { direction, msg_type, reason }
}

/// Peers per node whose bytes wait for their transport; beyond it a new peer's bytes are
/// counted as unattributed (`overflow`) at once.
pub const MAX_PENDING_PEERS: usize = 1_000;
/// getpeerinfo answers taken after a peer's first message that may leave it out before its
/// bytes are given up (`unmatched`); also how long a transport is remembered after its peer
/// left getpeerinfo (its last messages may come after the answer).
pub const UNMATCHED_AFTER_POLLS: u8 = 3;
/// Closed peers remembered, so that their late messages are not left waiting: the ids of one
/// process never come back.
const CLOSED_REMEMBERED: usize = 1_000;
/// Transports remembered per node: far above bitcoind's connection limits.
const MAX_KNOWN_PEERS: usize = crate::tracked_peers::MAX_PEERS;

const TYPES: usize = CORE_MSG_TYPES.len();
/// Tally slots are the types' indexes, then this one: `*other*` reached through an unassigned
/// BIP324 short id (the empty type), 1 byte of type on v2.
const EMPTY_TYPE: usize = TYPES;

/// Whether BIP324 gives each of [`CORE_MSG_TYPES`] a short id.
static SHORT_ID: LazyLock<[bool; TYPES]> =
    LazyLock::new(|| CORE_MSG_TYPES.map(|t| wire::v2_short_id(t).is_some()));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    V1,
    V2,
    /// A transport_protocol_type this version does not know: no framing to add.
    Other,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::V1 => "v1",
            Transport::V2 => "v2",
            Transport::Other => labels::OTHER,
        }
    }

    /// Bytes bitcoind counts for one message of `slot` besides its payload.
    fn framing(self, slot: usize) -> u64 {
        match self {
            Transport::V1 => wire::core_framing_bytes(false, false),
            // The unassigned short ids 29-32 are traced with an empty type.
            Transport::V2 => wire::core_framing_bytes(true, slot == EMPTY_TYPE || SHORT_ID[slot]),
            Transport::Other => 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Reason {
    Closed,
    Unmatched,
    Overflow,
    Restart,
    OtherTransport,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Closed => "closed",
            Reason::Unmatched => "unmatched",
            Reason::Overflow => "overflow",
            Reason::Restart => "restart",
            Reason::OtherTransport => "other_transport",
        }
    }
}

fn slot(msg_type: &str) -> usize {
    if msg_type.is_empty() {
        EMPTY_TYPE
    } else {
        labels::core_msg_type_index(msg_type)
    }
}

fn type_label(slot: usize) -> &'static str {
    CORE_MSG_TYPES[slot.min(TYPES - 1)]
}

fn direction_label(outbound: usize) -> &'static str {
    if outbound == 1 {
        labels::OUTBOUND
    } else {
        labels::INBOUND
    }
}

#[derive(Default)]
pub struct WireMetrics {
    pub bytes: Counters<WireLabels>,
    pub unattributed_payload: Counters<UnattributedLabels>,
    pub unattributed_messages: Counters<UnattributedLabels>,
    pub pending_peers: Gauges<NodeLabels>,
}

impl WireMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register_with_unit(
            "p2p_wire",
            "P2P bytes on the wire per message type as bitcoind counts them in getpeerinfo's bytessent_per_msg/bytesrecv_per_msg (payload and framing of the peer's transport)",
            Unit::Bytes,
            self.bytes.clone(),
        );
        r.register_with_unit(
            "p2p_wire_unattributed_payload",
            "P2P payload bytes of messages whose transport never became known (so not in p2p_wire_bytes), by reason",
            Unit::Bytes,
            self.unattributed_payload.clone(),
        );
        r.register(
            "p2p_wire_unattributed_messages",
            "P2P messages whose transport never became known (so not in p2p_wire_bytes), by reason",
            self.unattributed_messages.clone(),
        );
        r.register(
            "p2p_wire_pending_peers",
            "Peers whose message bytes wait for a getpeerinfo naming their transport",
            self.pending_peers.clone(),
        );
    }
}

#[derive(Clone, Copy, Default)]
struct Tally {
    messages: u64,
    payload: u64,
}

/// A peer's bytes waiting for its transport, per (direction, slot) it has messages of: a few
/// entries each (at most 2 × ([`TYPES`] + 1)).
struct Pending {
    first_ns: u64,
    polls_without: u8,
    tallies: Vec<((u8, u8), Tally)>,
}

impl Pending {
    fn new(first_ns: u64) -> Pending {
        Pending {
            first_ns,
            polls_without: 0,
            tallies: Vec::new(),
        }
    }

    fn add(&mut self, outbound: usize, slot: usize, size: u64) {
        // Both below 256: a direction and a slot.
        let key = (outbound as u8, slot as u8);
        let at = match self.tallies.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                self.tallies.push((key, Tally::default()));
                self.tallies.len() - 1
            }
        };
        let tally = &mut self.tallies[at].1;
        tally.messages += 1;
        tally.payload += size;
    }

    fn counted(&self) -> impl Iterator<Item = (usize, usize, Tally)> + '_ {
        self.tallies
            .iter()
            .map(|((d, s), tally)| (usize::from(*d), usize::from(*s), *tally))
    }
}

struct Known {
    transport: Transport,
    /// getpeerinfo answers in a row without the peer.
    absent: u8,
}

/// One node's join of P2P messages with getpeerinfo's transports (see the module's doc).
#[derive(Default)]
pub struct WireBytes {
    /// The process whose peers are tracked (0: none seen yet) and its first event's time.
    pid: u32,
    pid_since_ns: u64,
    /// When the last restart was seen (0: none): older getpeerinfo answers are of the process
    /// before.
    restarted_at_ns: u64,
    known: HashMap<i64, Known>,
    pending: HashMap<i64, Pending>,
    closed: HashSet<i64>,
    closed_order: VecDeque<i64>,
    /// The `p2p_wire_bytes` series by (direction, type, transport), cached.
    series: Vec<Option<Counter>>,
}

impl WireBytes {
    /// A P2P message (`event`'s payload is `net`), sent by the node if `outbound`.
    pub fn message(
        &mut self,
        m: &WireMetrics,
        node: &Node,
        event: &Event,
        outbound: bool,
        net: &NetMessage,
    ) {
        let Some(message) = &net.message else {
            return;
        };
        let peer = net.peer.as_ref().map_or(-1, |p| p.id);
        let d = usize::from(outbound);
        let s = slot(&message.msg_type);
        let size = message.size;
        if !self.current(m, node, event) {
            return give_up_one(m, node, d, s, size, Reason::Restart);
        }
        if let Some(known) = self.known.get(&peer) {
            match known.transport {
                Transport::Other => give_up_one(m, node, d, s, size, Reason::OtherTransport),
                transport => {
                    let bytes = size + transport.framing(s);
                    self.counter(m, node, d, s, transport).inc_by(bytes);
                }
            }
            return;
        }
        if self.closed.contains(&peer) {
            return give_up_one(m, node, d, s, size, Reason::Closed);
        }
        let waiting = self.pending.len();
        match self.pending.get_mut(&peer) {
            Some(pending) => pending.add(d, s, size),
            None if waiting < MAX_PENDING_PEERS => {
                let mut pending = Pending::new(event.timestamp_ns);
                pending.add(d, s, size);
                self.pending.insert(peer, pending);
                self.pending_gauge(m, node);
            }
            None => give_up_one(m, node, d, s, size, Reason::Overflow),
        }
    }

    /// net:closed_connection of `peer`: what still waits is given up.
    pub fn closed(&mut self, m: &WireMetrics, node: &Node, event: &Event, peer: i64) {
        if !self.current(m, node, event) {
            return;
        }
        if let Some(pending) = self.pending.remove(&peer) {
            give_up(m, node, &pending, Reason::Closed);
            self.pending_gauge(m, node);
        }
        if self.closed.insert(peer) {
            self.closed_order.push_back(peer);
            if self.closed_order.len() > CLOSED_REMEMBERED {
                let oldest = self.closed_order.pop_front().expect("not empty");
                self.closed.remove(&oldest);
            }
        }
    }

    /// A getpeerinfo answer taken at `taken_ns`.
    pub fn peer_info(&mut self, m: &WireMetrics, node: &Node, taken_ns: u64, peers: &[PeerInfo]) {
        if taken_ns < self.restarted_at_ns {
            return;
        }
        let mut listed = HashSet::with_capacity(peers.len());
        for peer in peers {
            listed.insert(peer.id);
            let transport = match peer.transport_protocol_type.as_str() {
                "v1" => Transport::V1,
                "v2" => Transport::V2,
                "detecting" => {
                    if let Some(pending) = self.pending.get_mut(&peer.id) {
                        pending.polls_without = 0;
                    }
                    continue;
                }
                _ => Transport::Other,
            };
            if self.known.len() < MAX_KNOWN_PEERS || self.known.contains_key(&peer.id) {
                let absent = 0;
                self.known.insert(peer.id, Known { transport, absent });
            }
            if let Some(pending) = self.pending.remove(&peer.id) {
                self.flush(m, node, &pending, transport);
            }
        }
        self.known.retain(|id, known| {
            if !listed.contains(id) {
                known.absent += 1;
            }
            known.absent < UNMATCHED_AFTER_POLLS
        });
        let mut unmatched = Vec::new();
        for (id, pending) in &mut self.pending {
            if !listed.contains(id) && pending.first_ns < taken_ns {
                pending.polls_without += 1;
                if pending.polls_without >= UNMATCHED_AFTER_POLLS {
                    unmatched.push(*id);
                }
            }
        }
        for id in unmatched {
            let pending = self.pending.remove(&id).expect("listed above");
            give_up(m, node, &pending, Reason::Unmatched);
        }
        self.pending_gauge(m, node);
    }

    /// Whether `event` is of the process whose peers are tracked. An event of a newer process
    /// (bitcoind restarted, its peer ids start over) makes that one tracked, giving up what
    /// waited and forgetting the transports; a late event of an older one is not.
    fn current(&mut self, m: &WireMetrics, node: &Node, event: &Event) -> bool {
        let (pid, at) = (event.pid, event.timestamp_ns);
        if pid == 0 || pid == self.pid {
            return true;
        }
        if self.pid == 0 {
            (self.pid, self.pid_since_ns) = (pid, at);
            return true;
        }
        if at < self.pid_since_ns {
            return false;
        }
        for (_, pending) in self.pending.drain() {
            give_up(m, node, &pending, Reason::Restart);
        }
        self.known.clear();
        self.closed.clear();
        self.closed_order.clear();
        (self.pid, self.pid_since_ns, self.restarted_at_ns) = (pid, at, at);
        self.pending_gauge(m, node);
        true
    }

    fn flush(&mut self, m: &WireMetrics, node: &Node, pending: &Pending, transport: Transport) {
        if transport == Transport::Other {
            return give_up(m, node, pending, Reason::OtherTransport);
        }
        for (d, s, tally) in pending.counted() {
            let bytes = tally.payload + tally.messages * transport.framing(s);
            self.counter(m, node, d, s, transport).inc_by(bytes);
        }
    }

    fn counter(
        &mut self,
        m: &WireMetrics,
        node: &Node,
        outbound: usize,
        slot: usize,
        transport: Transport,
    ) -> &Counter {
        if self.series.is_empty() {
            self.series = vec![None; 2 * TYPES * 2];
        }
        let t = usize::from(transport == Transport::V2);
        let label = slot.min(TYPES - 1);
        self.series[(outbound * TYPES + label) * 2 + t].get_or_insert_with(|| {
            m.bytes.get_or_create_owned(&WireLabels {
                node: node.clone(),
                direction: direction_label(outbound),
                msg_type: type_label(slot),
                transport: transport.label(),
            })
        })
    }

    fn pending_gauge(&self, m: &WireMetrics, node: &Node) {
        m.pending_peers
            .get_or_create(&NodeLabels { node: node.clone() })
            .set(self.pending.len() as i64);
    }
}

fn give_up(m: &WireMetrics, node: &Node, pending: &Pending, reason: Reason) {
    for (d, s, tally) in pending.counted() {
        unattributed(m, node, d, s, tally, reason);
    }
}

fn give_up_one(m: &WireMetrics, node: &Node, d: usize, s: usize, size: u64, reason: Reason) {
    let tally = Tally {
        messages: 1,
        payload: size,
    };
    unattributed(m, node, d, s, tally, reason);
}

fn unattributed(m: &WireMetrics, node: &Node, d: usize, s: usize, tally: Tally, reason: Reason) {
    let labels = UnattributedLabels {
        node: node.clone(),
        direction: direction_label(d),
        msg_type: type_label(s),
        reason: reason.label(),
    };
    m.unattributed_payload
        .get_or_create(&labels)
        .inc_by(tally.payload);
    m.unattributed_messages
        .get_or_create(&labels)
        .inc_by(tally.messages);
}

#[cfg(test)]
mod tests {
    use nodescope_consumer::testing::{sample, EventSource};
    use nodescope_consumer::{Continuity, Item, Received};
    use nodescope_proto::event::Payload;
    use nodescope_proto::rpc_call::Result as Answer;
    use nodescope_proto::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::{Config, FlushModes, Metrics, Recorder};

    const NODE: &str = "node-a";
    const PID: u32 = 4242;

    /// The recorder fed with the events of an eBPF and an RPC extractor of one node.
    struct Harness {
        recorder: Recorder,
        registry: Registry,
        ebpf: EventSource,
        rpc: EventSource,
        /// The time of the next event (ns), counting up.
        now: u64,
    }

    impl Harness {
        fn new() -> Harness {
            let (metrics, registry) = Metrics::new();
            let config = Config {
                user_agents: 10,
                max_nodes: 10,
                flush_modes: FlushModes::V30,
            };
            Harness {
                recorder: Recorder::new(metrics, config),
                registry,
                ebpf: EventSource::new(NODE, 1),
                rpc: EventSource::of(ExtractorKind::Rpc, NODE, 2),
                now: 1_700_000_000_000_000_000,
            }
        }

        /// `event` timestamped now (1 ms after the previous one).
        fn at_now(&mut self, mut event: Event) -> Event {
            self.now += 1_000_000;
            event.timestamp_ns = self.now;
            event
        }

        fn record(&mut self, mut event: Event, pid: u32) {
            event.pid = pid;
            let category = event.category().expect("a payload");
            let received = Received {
                category,
                event,
                continuity: Continuity::First,
            };
            self.recorder.record(&Item::Event(Box::new(received)));
        }

        /// A P2P message of `peer` of process `pid`, received by the node if `inbound`.
        fn message_of(&mut self, pid: u32, inbound: bool, peer: i64, msg_type: &str, size: u64) {
            let event = self.message_event(inbound, peer, msg_type, size);
            self.record(event, pid);
        }

        fn message_event(&mut self, inbound: bool, peer: i64, msg_type: &str, size: u64) -> Event {
            let net = NetMessage {
                peer: Some(Peer {
                    id: peer,
                    ..Peer::default()
                }),
                message: Some(P2pMessage {
                    msg_type: msg_type.into(),
                    size,
                    ..P2pMessage::default()
                }),
            };
            let payload = if inbound {
                Payload::InboundMessage(net)
            } else {
                Payload::OutboundMessage(net)
            };
            let event = self.ebpf.stamp(payload);
            self.at_now(event)
        }

        fn message(&mut self, inbound: bool, peer: i64, msg_type: &str, size: u64) {
            self.message_of(PID, inbound, peer, msg_type, size);
        }

        fn closed(&mut self, peer: i64) {
            let event = self.ebpf.stamp(Payload::ClosedConnection(ClosedConnection {
                peer: Some(Peer {
                    id: peer,
                    ..Peer::default()
                }),
                ..ClosedConnection::default()
            }));
            let event = self.at_now(event);
            self.record(event, PID);
        }

        /// A getpeerinfo answer listing `(peer id, transport_protocol_type)`, taken now.
        fn peer_info(&mut self, peers: &[(i64, &str)]) {
            let event = self.peer_info_event(peers);
            self.record(event, 0);
        }

        fn peer_info_event(&mut self, peers: &[(i64, &str)]) -> Event {
            let peers = peers
                .iter()
                .map(|(id, transport)| PeerInfo {
                    id: *id,
                    network: "not_publicly_routable".into(),
                    connection_type: "inbound".into(),
                    transport_protocol_type: transport.to_string(),
                    ..PeerInfo::default()
                })
                .collect();
            let event = self.rpc.stamp(Payload::RpcCall(RpcCall {
                method: "getpeerinfo".into(),
                duration_ns: 1_000_000,
                result: Some(Answer::PeerInfo(PeerInfoList { peers })),
                ..RpcCall::default()
            }));
            self.at_now(event)
        }

        fn scrape(&self) -> String {
            let mut scrape = String::new();
            encode(&mut scrape, &self.registry).unwrap();
            scrape
        }

        fn wire(&self, direction: &str, msg_type: &str, transport: &str) -> Option<f64> {
            let series = format!(
                r#"nodescope_p2p_wire_bytes_total{{node="{NODE}",direction="{direction}",msg_type="{msg_type}",transport="{transport}"}}"#
            );
            sample(&self.scrape(), &series)
        }

        /// (payload bytes, messages) given up for `reason`.
        fn unattributed(&self, direction: &str, msg_type: &str, reason: &str) -> (f64, f64) {
            let labels = format!(
                r#"{{node="{NODE}",direction="{direction}",msg_type="{msg_type}",reason="{reason}"}}"#
            );
            let scrape = self.scrape();
            let get = |family: &str| sample(&scrape, &format!("{family}{labels}")).unwrap_or(0.0);
            (
                get("nodescope_p2p_wire_unattributed_payload_bytes_total"),
                get("nodescope_p2p_wire_unattributed_messages_total"),
            )
        }

        fn pending_peers(&self) -> Option<f64> {
            let series = format!(r#"nodescope_p2p_wire_pending_peers{{node="{NODE}"}}"#);
            sample(&self.scrape(), &series)
        }

        /// Every `p2p_wire_bytes` sample.
        fn wire_samples(&self) -> Vec<String> {
            self.scrape()
                .lines()
                .filter(|l| l.starts_with("nodescope_p2p_wire_bytes_total{"))
                .map(String::from)
                .collect()
        }
    }

    #[test]
    fn v1_and_v2_peers_are_counted_with_their_framing_once_getpeerinfo_names_them() {
        let mut h = Harness::new();
        // Peer 1 (v1) and peer 2 (v2) say hello before any getpeerinfo; so does peer 3, which
        // is still "detecting" at the first answer.
        h.message(true, 1, "version", 102);
        h.message(false, 1, "version", 102);
        h.message(true, 1, "verack", 0);
        h.message(true, 1, "nodescope", 5);
        h.message(true, 2, "version", 102);
        h.message(true, 2, "sendheaders", 0);
        h.message(false, 2, "ping", 8);
        h.message(false, 2, "ping", 8);
        // An unassigned BIP324 short id: the empty type, under "*other*" with 1 byte of type.
        h.message(true, 2, "", 3);
        h.message(true, 3, "version", 102);
        assert!(h.wire_samples().is_empty(), "{:?}", h.wire_samples());
        assert_eq!(h.pending_peers(), Some(3.0));

        h.peer_info(&[(1, "v1"), (2, "v2"), (3, "detecting")]);
        assert_eq!(h.pending_peers(), Some(1.0));
        // Known from now on: counted at once. "reject" is decoded by nodescope but unknown to
        // Core 30: "*other*".
        h.message(true, 1, "reject", 10);
        h.message(true, 2, "ping", 8);
        h.message(true, 2, "nodescope", 5);

        let v1 = |d, t| h.wire(d, t, "v1");
        assert_eq!(v1("inbound", "version"), Some(102.0 + 24.0));
        assert_eq!(v1("outbound", "version"), Some(102.0 + 24.0));
        assert_eq!(v1("inbound", "verack"), Some(24.0));
        assert_eq!(v1("inbound", "*other*"), Some(5.0 + 24.0 + 10.0 + 24.0));
        let v2 = |d, t| h.wire(d, t, "v2");
        assert_eq!(v2("inbound", "version"), Some(102.0 + 33.0));
        assert_eq!(v2("inbound", "sendheaders"), Some(33.0));
        assert_eq!(v2("outbound", "ping"), Some(2.0 * (8.0 + 21.0)));
        assert_eq!(v2("inbound", "ping"), Some(8.0 + 21.0));
        assert_eq!(v2("inbound", "*other*"), Some(3.0 + 21.0 + 5.0 + 33.0));
        assert_eq!(h.wire_samples().len(), 9, "{:?}", h.wire_samples());

        // Peer 3 decided: v2.
        h.peer_info(&[(1, "v1"), (2, "v2"), (3, "v2")]);
        assert_eq!(
            h.wire("inbound", "version", "v2"),
            Some(2.0 * (102.0 + 33.0))
        );
        assert_eq!(h.pending_peers(), Some(0.0));
        assert_eq!(h.unattributed("inbound", "version", "closed"), (0.0, 0.0));
    }

    #[test]
    fn bytes_that_never_learn_their_transport_are_counted_with_the_reason() {
        let mut h = Harness::new();
        // Closed before any getpeerinfo; a message of it that comes after its close.
        h.message(true, 5, "version", 102);
        h.message(false, 5, "version", 101);
        h.message(false, 5, "verack", 0);
        h.closed(5);
        h.message(false, 5, "ping", 8);
        assert_eq!(h.unattributed("inbound", "version", "closed"), (102.0, 1.0));
        assert_eq!(
            h.unattributed("outbound", "version", "closed"),
            (101.0, 1.0)
        );
        assert_eq!(h.unattributed("outbound", "verack", "closed"), (0.0, 1.0));
        assert_eq!(h.unattributed("outbound", "ping", "closed"), (8.0, 1.0));
        assert_eq!(h.pending_peers(), Some(0.0));

        // Never listed: given up at the third answer taken after its first message.
        h.message(true, 6, "version", 100);
        h.peer_info(&[]);
        h.peer_info(&[(7, "v1")]);
        assert_eq!(h.pending_peers(), Some(1.0));
        h.peer_info(&[]);
        assert_eq!(
            h.unattributed("inbound", "version", "unmatched"),
            (100.0, 1.0)
        );
        assert_eq!(h.pending_peers(), Some(0.0));

        // A transport this version does not know: no framing to add.
        h.message(true, 8, "version", 90);
        h.peer_info(&[(8, "v3")]);
        h.message(true, 8, "verack", 0);
        assert_eq!(
            h.unattributed("inbound", "version", "other_transport"),
            (90.0, 1.0)
        );
        assert_eq!(
            h.unattributed("inbound", "verack", "other_transport"),
            (0.0, 1.0)
        );
        assert!(h.wire_samples().is_empty(), "{:?}", h.wire_samples());
    }

    #[test]
    fn pending_peers_are_bounded_and_the_overflow_counted() {
        let mut h = Harness::new();
        for peer in 0..MAX_PENDING_PEERS as i64 {
            h.message(true, peer, "version", 100);
        }
        h.message(true, 1_000_000, "version", 100);
        h.message(true, 1_000_000, "verack", 0);
        assert_eq!(h.pending_peers(), Some(MAX_PENDING_PEERS as f64));
        assert_eq!(
            h.unattributed("inbound", "version", "overflow"),
            (100.0, 1.0)
        );
        assert_eq!(h.unattributed("inbound", "verack", "overflow"), (0.0, 1.0));
        // A peer already waiting still adds to its tally.
        h.message(true, 0, "verack", 0);
        h.peer_info(&[(0, "v1")]);
        assert_eq!(h.wire("inbound", "verack", "v1"), Some(24.0));
        assert_eq!(h.wire("inbound", "version", "v1"), Some(124.0));
    }

    #[test]
    fn a_bitcoind_restart_starts_the_peers_over() {
        let mut h = Harness::new();
        h.peer_info(&[(0, "v1")]);
        // An answer and a message of the old process, delivered after the restart is seen.
        let stale = h.peer_info_event(&[(0, "v1"), (1, "v2")]);
        let late = h.message_event(true, 0, "ping", 8);
        h.message(true, 0, "ping", 8);
        h.message(true, 1, "version", 102);
        assert_eq!(h.wire("inbound", "ping", "v1"), Some(32.0));

        // bitcoind restarted: its peer 0 is a new peer, of unknown transport; what peer 1 of
        // the old process had waiting is given up.
        h.message_of(PID + 1, true, 0, "version", 100);
        assert_eq!(
            h.unattributed("inbound", "version", "restart"),
            (102.0, 1.0)
        );
        // The answer is ignored; the message is not the new process's peer 0's.
        h.record(stale, 0);
        assert_eq!(h.pending_peers(), Some(1.0));
        h.record(late, PID);
        assert_eq!(h.unattributed("inbound", "ping", "restart"), (8.0, 1.0));
        assert_eq!(h.wire("inbound", "ping", "v1"), Some(32.0));

        h.peer_info(&[(0, "v2")]);
        assert_eq!(h.wire("inbound", "version", "v2"), Some(133.0));
        assert_eq!(h.wire("inbound", "version", "v1"), None);
        assert_eq!(h.pending_peers(), Some(0.0));
    }
}
