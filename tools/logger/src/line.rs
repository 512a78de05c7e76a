//! One line per event: `time node category event key=value…`, with the fields that matter for
//! that event, or the whole event as one JSON object (for Loki/promtail).

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use nodescope_proto::event::Payload;
use nodescope_proto::json::hex;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{json, Category, Event, ExtractorStats, Network, P2pMessage, Peer};

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
        P::ExtractorStats(s) => extractor_stats(line, s),
    }
}

fn feerate(line: &mut String, fee: i64, vsize: i32) {
    if vsize > 0 {
        let _ = write!(line, " feerate={:.2}sat/vB", fee as f64 / vsize as f64);
    }
}

fn p2p_message(line: &mut String, message: &P2pMessage) {
    let _ = write!(line, " msg={} size={}", message.msg_type, message.size);
    if message.truncated {
        line.push_str(" truncated");
    }
    if message.unknown_type {
        line.push_str(" unknown_type");
    }
    if !message.decode_error.is_empty() {
        let _ = write!(line, " decode_error={:?}", message.decode_error);
    }
    let Some(body) = &message.body else { return };
    match body {
        Body::Version(v) => {
            let _ = write!(
                line,
                " version={} user_agent={:?} start_height={} services={} relay={}",
                v.version,
                v.user_agent,
                v.start_height,
                v.service_names.join(","),
                v.relay
            );
        }
        Body::Ping(p) | Body::Pong(p) => {
            let _ = write!(line, " nonce={}", p.nonce);
        }
        Body::Addr(a) | Body::Addrv2(a) => {
            let _ = write!(line, " addresses={}", a.addresses.len());
        }
        Body::Inv(i) | Body::Getdata(i) | Body::Notfound(i) => {
            let _ = write!(line, " items={}", i.items.len());
            let mut counts: Vec<_> = i.count_by_type.iter().collect();
            counts.sort();
            for (kind, count) in counts {
                let _ = write!(line, " {kind}={count}");
            }
        }
        Body::Tx(t) => {
            let _ = write!(
                line,
                " txid={} vsize={} inputs={} outputs={} value={}",
                hex(&t.txid),
                t.vsize,
                t.input_count,
                t.output_count,
                t.total_output_value
            );
        }
        Body::Block(b) => {
            if let Some(header) = &b.header {
                let _ = write!(line, " hash={}", hex(&header.hash));
            }
            let _ = write!(line, " txs={} weight={}", b.tx_count, b.weight);
        }
        Body::Cmpctblock(c) => {
            if let Some(header) = &c.header {
                let _ = write!(line, " hash={}", hex(&header.hash));
            }
            let _ = write!(
                line,
                " short_ids={} prefilled={}",
                c.short_id_count,
                c.prefilled_txs.len()
            );
        }
        Body::Headers(h) => {
            let _ = write!(line, " count={}", h.count);
        }
        Body::Getheaders(l) | Body::Getblocks(l) => {
            let _ = write!(
                line,
                " locator={} stop={}",
                l.locator_hashes.len(),
                hex(&l.stop_hash)
            );
        }
        Body::Feefilter(f) => {
            let _ = write!(line, " feerate={}sat/kvB", f.fee_rate);
        }
        Body::Sendcmpct(s) => {
            let _ = write!(line, " announce={} version={}", s.announce, s.version);
        }
        Body::Getblocktxn(g) => {
            let _ = write!(
                line,
                " block={} indexes={}",
                hex(&g.block_hash),
                g.indexes.len()
            );
        }
        Body::Blocktxn(b) => {
            let _ = write!(line, " block={} txs={}", hex(&b.block_hash), b.txs.len());
        }
        Body::Reject(r) => {
            let _ = write!(
                line,
                " message={:?} code={} reason={:?}",
                r.message, r.ccode_raw, r.reason
            );
        }
        _ => {}
    }
}

fn extractor_stats(line: &mut String, s: &ExtractorStats) {
    let kernel_drops: u64 = s.kernel_drops.values().sum();
    let payload_drops: u64 = s.kernel_payload_drops.values().sum();
    let _ = write!(
        line,
        " read={} published={} kernel_drops={} payload_drops={} expired_incomplete={} closed_at_shutdown={} stray_chunks={} queue_drops={} too_large={} decode_errors={} queued={} resent={}",
        s.events_read,
        s.published,
        kernel_drops,
        payload_drops,
        s.expired_incomplete,
        s.closed_at_shutdown,
        s.stray_chunks,
        s.dropped_queue_full,
        s.dropped_too_large,
        s.decode_errors,
        s.queued,
        s.resent
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodescope_proto::p2p::{decode_p2p, samples::sample_payloads, DecodeOptions};
    use nodescope_proto::{
        BlockConnected, ClosedConnection, ConnectionType, MempoolAdded, MempoolRemoved,
        MisbehavingConnection, NetMessage, RemovalReason,
    };

    const T: u64 = 1_763_800_000_123_456_789;

    fn event(payload: Payload) -> Event {
        Event {
            node_id: "node-a".into(),
            timestamp_ns: T,
            payload: Some(payload),
            ..Event::default()
        }
    }

    fn message(msg_type: &str) -> P2pMessage {
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

    fn inbound(message: P2pMessage) -> Event {
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

    #[test]
    fn time_is_utc_with_microseconds() {
        assert_eq!(time(T), "2025-11-22T08:26:40.123456Z");
    }

    #[test]
    fn a_message_line_names_the_peer_and_what_was_sent() {
        let ping = message("ping");
        let Some(Body::Ping(body)) = &ping.body else {
            panic!()
        };
        let nonce = body.nonce;
        assert_eq!(
            text(&inbound(ping), Category::NetMessage),
            format!("2025-11-22T08:26:40.123456Z node-a net.message inbound_message peer=12 addr=203.0.113.7:8333 conn=outbound_full_relay msg=ping size=8 nonce={nonce}")
        );
        let line = text(&inbound(message("inv")), Category::NetMessage);
        assert!(
            line.contains(" msg=inv size=") && line.contains(" items="),
            "{line}"
        );
        let line = text(&inbound(message("version")), Category::NetMessage);
        assert!(line.contains(" user_agent=\"/"), "{line}");
    }

    #[test]
    fn an_undecodable_or_cut_message_says_so() {
        let cut = decode_p2p("inv", &[2, 1, 0], 4_000, DecodeOptions::default());
        let line = text(&inbound(cut), Category::NetMessage);
        assert!(line.contains(" msg=inv size=4000 truncated"), "{line}");
        let bad = decode_p2p("inv", &[2, 1, 0], 3, DecodeOptions::default());
        let line = text(&inbound(bad), Category::NetMessage);
        assert!(
            line.contains(" msg=inv size=3 decode_error=\"inv: "),
            "{line}"
        );
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
}
