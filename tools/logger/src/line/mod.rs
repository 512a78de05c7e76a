//! One line per event: `time node category event key=value…`, with the fields that matter for
//! that event, or the whole event as one JSON object (for Loki/promtail).
//!
//! The payloads with much to say have a file each: `p2p` (P2P messages and the extractor's own
//! connections to a node), `rpc`, `zmq`, `connectivity` and `extractor` (its own counters); the
//! fleet's are in `crate::fleet`.

mod connectivity;
mod extractor;
mod p2p;
mod rpc;
mod zmq;

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use nodescope_proto::event::Payload;
use nodescope_proto::json::hex;
use nodescope_proto::{json, Category, Event, Network, Peer};

use connectivity::connectivity_check;
use extractor::extractor_stats;
use p2p::{p2p_message, peer_connection};
use rpc::rpc_call;
use zmq::zmq_notification;

/// `2026-11-22T10:01:02.123456Z`: UTC, microseconds (events of one message handler are often
/// microseconds apart).
pub fn time(timestamp_ns: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_nanos(timestamp_ns);
    humantime::format_rfc3339_micros(time).to_string()
}

/// The text line, without the newline.
pub fn text(event: &Event, category: Category) -> String {
    let mut line = String::with_capacity(160);
    let name = event.payload.as_ref().map_or("none", Payload::name);
    let _ = write!(
        line,
        "{} {} {} {}",
        time(event.timestamp_ns),
        event.node_id,
        category,
        name
    );
    if let Some(payload) = &event.payload {
        fields(&mut line, payload, event.timestamp_ns);
    }
    if !event.truncated_fields.is_empty() {
        let _ = write!(line, " truncated={}", event.truncated_fields.join(","));
    }
    if !event.error.is_empty() {
        let _ = write!(line, " error={:?}", event.error);
    }
    line
}

/// The JSON line: `time`, `category` and `event` (the payload's name) first, then every field
/// of the event as `nodescope_proto::json` renders it.
pub fn json(event: &Event, category: Category) -> String {
    let mut object = serde_json::Map::new();
    object.insert("time".into(), time(event.timestamp_ns).into());
    object.insert("category".into(), category.as_str().into());
    object.insert(
        "event".into(),
        event.payload.as_ref().map_or("none", Payload::name).into(),
    );
    if let serde_json::Value::Object(fields) = json::to_json(event) {
        object.extend(fields);
    }
    serde_json::Value::Object(object).to_string()
}

fn peer(line: &mut String, peer: Option<&Peer>) {
    let Some(peer) = peer else { return };
    let _ = write!(
        line,
        " peer={} addr={} conn={}",
        peer.id,
        peer.addr,
        peer.conn_type_name()
    );
}

fn network(value: i32) -> &'static str {
    Network::try_from(value).map_or("unknown", Network::label)
}

fn age(line: &mut String, connected_since: i64, timestamp_ns: u64) {
    let _ = write!(line, " connected_since={connected_since}");
    let now = (timestamp_ns / 1_000_000_000) as i64;
    if connected_since > 0 && now >= connected_since {
        let _ = write!(line, " age={}s", now - connected_since);
    }
}

fn fields(line: &mut String, payload: &Payload, timestamp_ns: u64) {
    use Payload as P;
    match payload {
        P::InboundMessage(m) | P::OutboundMessage(m) => {
            peer(line, m.peer.as_ref());
            if let Some(message) = &m.message {
                p2p_message(line, message);
            }
        }
        P::InboundConnection(c) => {
            peer(line, c.peer.as_ref());
            let _ = write!(
                line,
                " network={} inbound_count={}",
                network(c.network),
                c.inbound_count
            );
        }
        P::OutboundConnection(c) => {
            peer(line, c.peer.as_ref());
            let _ = write!(
                line,
                " network={} outbound_count={}",
                network(c.network),
                c.outbound_count
            );
        }
        P::EvictedInboundConnection(c) => {
            peer(line, c.peer.as_ref());
            let _ = write!(line, " network={}", network(c.network));
            age(line, c.connected_since, timestamp_ns);
        }
        P::ClosedConnection(c) => {
            peer(line, c.peer.as_ref());
            let _ = write!(line, " network={}", network(c.network));
            age(line, c.connected_since, timestamp_ns);
        }
        P::MisbehavingConnection(m) => {
            let _ = write!(line, " peer={} message={:?}", m.peer_id, m.message);
        }
        P::BlockConnected(b) => {
            let _ = write!(
                line,
                " height={} hash={} txs={} inputs={} sigops={} duration={:.3}ms",
                b.height,
                hex(&b.hash),
                b.transactions,
                b.inputs,
                b.sigop_cost,
                b.duration_ns as f64 / 1e6
            );
        }
        P::UtxocacheFlush(f) => {
            let _ = write!(
                line,
                " duration={:.3}ms mode={} coins={} mem_usage={} for_prune={}",
                f.duration_us as f64 / 1e3,
                f.mode,
                f.coins_count,
                f.coins_mem_usage,
                f.for_prune
            );
        }
        P::UtxocacheAdd(c) | P::UtxocacheSpent(c) | P::UtxocacheUncache(c) => {
            let _ = write!(
                line,
                " outpoint={}:{} height={} value={} coinbase={}",
                hex(&c.txid),
                c.vout,
                c.height,
                c.value,
                c.coinbase
            );
        }
        P::SelectedCoins(s) => {
            let _ = write!(
                line,
                " wallet={:?} algorithm={} target={} waste={} selected_value={}",
                s.wallet, s.algorithm, s.target, s.waste, s.selected_value
            );
        }
        P::NormalCreateTxInternal(t) => {
            let _ = write!(
                line,
                " wallet={:?} success={} fee={} change_pos={}",
                t.wallet, t.success, t.fee, t.change_pos
            );
        }
        P::AttemptingApsCreateTx(t) => {
            let _ = write!(line, " wallet={:?}", t.wallet);
        }
        P::ApsCreateTxInternal(t) => {
            let _ = write!(
                line,
                " wallet={:?} use_aps={} success={} fee={} change_pos={}",
                t.wallet, t.use_aps, t.success, t.fee, t.change_pos
            );
        }
        P::MempoolAdded(a) => {
            let _ = write!(
                line,
                " txid={} vsize={} fee={}",
                hex(&a.txid),
                a.vsize,
                a.fee
            );
            feerate(line, a.fee, a.vsize);
        }
        P::MempoolRemoved(r) => {
            let _ = write!(
                line,
                " txid={} reason={} vsize={} fee={} entry_time={}",
                hex(&r.txid),
                r.reason_name(),
                r.vsize,
                r.fee,
                r.entry_time
            );
        }
        P::MempoolReplaced(r) => {
            let _ = write!(
                line,
                " replaced={} replaced_vsize={} replaced_fee={} replacement={} replacement_vsize={} replacement_fee={}",
                hex(&r.replaced_txid),
                r.replaced_vsize,
                r.replaced_fee,
                hex(&r.replacement_id),
                r.replacement_vsize,
                r.replacement_fee
            );
            if !r.replaced_by_transaction {
                line.push_str(" replaced_by=package");
            }
        }
        P::MempoolRejected(r) => {
            let _ = write!(line, " txid={} reason={:?}", hex(&r.txid), r.reason);
        }
        P::ConnectivityCheck(c) => connectivity_check(line, c),
        P::RpcCall(c) => rpc_call(line, c),
        P::ZmqNotification(z) => zmq_notification(line, z),
        P::PeerConnection(c) => peer_connection(line, c),
        P::PeerMessage(m) => {
            let _ = write!(line, " connection={}", m.connection);
            if let Some(message) = &m.message {
                p2p_message(line, message);
            }
            if m.since_previous_ns > 0 {
                let _ = write!(
                    line,
                    " since_previous={:.3}s",
                    m.since_previous_ns as f64 / 1e9
                );
            }
        }
        P::PeerPing(p) => {
            let _ = write!(
                line,
                " connection={} nonce={} rtt={:.3}ms",
                p.connection,
                p.nonce,
                p.rtt_ns as f64 / 1e6
            );
        }
        P::BlockPropagation(b) => crate::fleet::block_propagation(line, b),
        P::TxPropagation(t) => crate::fleet::tx_propagation(line, t),
        P::Reorg(r) => crate::fleet::reorg(line, r),
        P::FleetState(s) => crate::fleet::fleet_state(line, s),
        P::ExtractorStats(s) => extractor_stats(line, s),
    }
}

/// A value written bare when it is plain printable ASCII, else quoted and escaped like the
/// free-text fields: a space, quote or control character in it cannot split or forge fields.
struct Token<'a>(&'a str);

impl std::fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain = !self.0.is_empty()
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if plain {
            f.write_str(self.0)
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// `45s`, `5m3s`, `3h12m`, `2d3h`: the two largest units (a minus for a time in the future).
fn human_seconds(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    let (d, h, m) = (s / 86_400, s / 3_600 % 24, s / 60 % 60);
    match s {
        0..60 => format!("{sign}{s}s"),
        60..3_600 => format!("{sign}{m}m{}s", s % 60),
        3_600..86_400 => format!("{sign}{}h{m}m", s / 3_600),
        _ => format!("{sign}{d}d{h}h"),
    }
}

fn feerate(line: &mut String, fee: i64, vsize: i32) {
    if vsize > 0 {
        let _ = write!(line, " feerate={:.2}sat/vB", fee as f64 / vsize as f64);
    }
}

/// What the tests of every file here build their events from.
#[cfg(test)]
mod test_support {
    use nodescope_proto::event::Payload;
    use nodescope_proto::p2p::{decode_p2p, samples::sample_payloads, DecodeOptions};
    use nodescope_proto::rpc_call::Result as Answer;
    use nodescope_proto::{ConnectionType, Event, NetMessage, P2pMessage, Peer, RpcCall};

    pub(super) const T: u64 = 1_763_800_000_123_456_789;

    pub(super) fn event(payload: Payload) -> Event {
        Event {
            node_id: "node-a".into(),
            timestamp_ns: T,
            payload: Some(payload),
            ..Event::default()
        }
    }

    pub(super) fn message(msg_type: &str) -> P2pMessage {
        let (_, payload) = sample_payloads()
            .into_iter()
            .find(|(t, _)| *t == msg_type)
            .unwrap();
        decode_p2p(
            msg_type,
            &payload,
            payload.len() as u64,
            DecodeOptions::default(),
        )
    }

    pub(super) fn inbound(message: P2pMessage) -> Event {
        event(Payload::InboundMessage(NetMessage {
            peer: Some(Peer {
                id: 12,
                addr: "203.0.113.7:8333".into(),
                conn_type: ConnectionType::OutboundFullRelay as i32,
                conn_type_other: String::new(),
            }),
            message: Some(message),
        }))
    }

    pub(super) fn rpc(method: &str, answer: Answer) -> Event {
        event(Payload::RpcCall(RpcCall {
            method: method.into(),
            duration_ns: 1_234_567,
            reply_bytes: 2048,
            unknown_fields: Vec::new(),
            result: Some(answer),
        }))
    }

    pub(super) fn peer_info(inbound: bool, transport: &str) -> nodescope_proto::PeerInfo {
        nodescope_proto::PeerInfo {
            inbound,
            transport_protocol_type: transport.into(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{event, inbound, message, peer_info, rpc, T};
    use super::*;
    use nodescope_proto::rpc_call::Result as Answer;
    use nodescope_proto::zmq_notification::Body as ZmqBody;
    use nodescope_proto::{
        BlockConnected, ClosedConnection, ConnectionType, MempoolAdded, MempoolRemoved,
        MisbehavingConnection, PeerInfoList, RemovalReason, RpcFailure, RpcFailureKind,
        ZmqNotification,
    };

    #[test]
    fn time_is_utc_with_microseconds() {
        assert_eq!(time(T), "2025-11-22T08:26:40.123456Z");
    }

    #[test]
    fn connection_mempool_and_block_lines() {
        let closed = event(Payload::ClosedConnection(ClosedConnection {
            peer: Some(Peer {
                id: 3,
                addr: "[2001:db8::1]:8333".into(),
                conn_type: ConnectionType::Inbound as i32,
                conn_type_other: String::new(),
            }),
            network: Network::Ipv6 as i32,
            connected_since: (T / 1_000_000_000) as i64 - 90,
        }));
        assert!(text(&closed, Category::NetConnection).ends_with(&format!(
            "closed_connection peer=3 addr=[2001:db8::1]:8333 conn=inbound network=ipv6 connected_since={} age=90s",
            (T / 1_000_000_000) as i64 - 90
        )));
        let misbehaving = event(Payload::MisbehavingConnection(MisbehavingConnection {
            peer_id: 9,
            message: "invalid header received".into(),
        }));
        assert!(text(&misbehaving, Category::NetConnection)
            .ends_with("misbehaving_connection peer=9 message=\"invalid header received\""));
        let added = event(Payload::MempoolAdded(MempoolAdded {
            txid: vec![0xab; 32],
            vsize: 141,
            fee: 2820,
        }));
        assert!(text(&added, Category::Mempool).ends_with(&format!(
            "mempool_added txid={} vsize=141 fee=2820 feerate=20.00sat/vB",
            "ab".repeat(32)
        )));
        let removed = event(Payload::MempoolRemoved(MempoolRemoved {
            txid: vec![1; 32],
            reason: RemovalReason::Unknown as i32,
            reason_other: "future-reason".into(),
            vsize: 200,
            fee: 300,
            entry_time: 1_700_000_000,
        }));
        assert!(text(&removed, Category::Mempool).contains(" reason=future-reason vsize=200"));
        let block = event(Payload::BlockConnected(BlockConnected {
            hash: vec![0; 32],
            height: 800_000,
            transactions: 3000,
            inputs: 7000,
            sigop_cost: 16000,
            duration_ns: 12_345_678,
        }));
        assert!(text(&block, Category::Validation).ends_with(&format!(
            "block_connected height=800000 hash={} txs=3000 inputs=7000 sigops=16000 duration=12.346ms",
            "0".repeat(64)
        )));
    }

    #[test]
    fn errors_and_cut_fields_are_shown() {
        let mut rejected = event(Payload::MempoolRejected(Default::default()));
        rejected.truncated_fields = vec!["reason".into()];
        rejected.error = "argument 2 unreadable".into();
        assert!(text(&rejected, Category::Mempool)
            .ends_with(" truncated=reason error=\"argument 2 unreadable\""));
    }

    #[test]
    fn json_lines_lead_with_time_category_and_event_then_every_field() {
        let line = json(&inbound(message("ping")), Category::NetMessage);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(&keys[..4], ["time", "category", "event", "node_id"]);
        assert_eq!(value["time"], "2025-11-22T08:26:40.123456Z");
        assert_eq!(value["event"], "inbound_message");
        assert_eq!(value["inbound_message"]["peer"]["id"], 12);
        assert_eq!(value["inbound_message"]["message"]["msg_type"], "ping");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn json_lines_carry_rpc_answers_and_zmq_notifications_whole() {
        let mut peer = peer_info(true, "v2");
        peer.addr = "203.0.113.9:8333".into();
        peer.pingtime = Some(0.25);
        let line = json(
            &rpc(
                "getpeerinfo",
                Answer::PeerInfo(PeerInfoList { peers: vec![peer] }),
            ),
            Category::Rpc,
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["category"], "rpc");
        assert_eq!(value["event"], "rpc_call");
        let call = &value["rpc_call"];
        assert_eq!(call["method"], "getpeerinfo");
        assert_eq!(call["duration_ns"], 1_234_567);
        assert_eq!(call["peer_info"]["peers"][0]["addr"], "203.0.113.9:8333");
        assert_eq!(call["peer_info"]["peers"][0]["pingtime"], 0.25);
        assert_eq!(
            call["peer_info"]["peers"][0]["transport_protocol_type"],
            "v2"
        );
        assert!(call.get("failure").is_none(), "{call}");

        let failed = json(
            &rpc(
                "uptime",
                Answer::Failure(RpcFailure {
                    kind: RpcFailureKind::Auth as i32,
                    code: 401,
                    message: String::new(),
                }),
            ),
            Category::Rpc,
        );
        let value: serde_json::Value = serde_json::from_str(&failed).unwrap();
        assert_eq!(value["rpc_call"]["failure"]["kind"], "auth");
        assert_eq!(value["rpc_call"]["failure"]["code"], 401);

        let zmq = event(Payload::ZmqNotification(ZmqNotification {
            topic: "hashtx".into(),
            zmq_sequence: 5,
            body: Some(ZmqBody::Hash(vec![0xcd; 32])),
            ..Default::default()
        }));
        let value: serde_json::Value = serde_json::from_str(&json(&zmq, Category::Zmq)).unwrap();
        assert_eq!(value["event"], "zmq_notification");
        assert_eq!(value["zmq_notification"]["topic"], "hashtx");
        assert_eq!(value["zmq_notification"]["hash"], "cd".repeat(32));
        assert_eq!(value["zmq_notification"]["missed_before"], 0);
    }

    #[test]
    fn ages_read_in_their_two_largest_units() {
        assert_eq!(human_seconds(0), "0s");
        assert_eq!(human_seconds(59), "59s");
        assert_eq!(human_seconds(303), "5m3s");
        assert_eq!(human_seconds(3 * 86_400 + 7_300), "3d2h");
        assert_eq!(human_seconds(-7_260), "-2h1m");
        assert_eq!(human_seconds(i64::MIN).chars().next(), Some('-'));
    }
}
