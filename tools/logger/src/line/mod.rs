//! One line per event: `time node category event key=value…`, with the fields that matter for
//! that event, or the whole event as one JSON object (for Loki/promtail).

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use nodescope_proto::event::Payload;
use nodescope_proto::json::hex;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::rpc_call::Result as Answer;
use nodescope_proto::zmq_notification::Body as ZmqBody;
use nodescope_proto::{
    json, AddrNetwork, Category, ConnectivityCheck, ConnectivityResult, Event, ExtractorStats,
    NetAddress, Network, P2pMessage, Peer, PeerConnection, PeerInfoList, PeerState, RpcCall,
    RpcFailure, V2Support, ZmqNotification,
};

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

/// `state=… connection=… transport=… dialled=node|extractor remote=… local=…`, what the
/// node's version said, how long it lasted, the failed attempts before it and why it ended.
/// The user agent and the reason are quoted: they come from the node or the network.
fn peer_connection(line: &mut String, c: &PeerConnection) {
    let state = match PeerState::try_from(c.state) {
        Ok(PeerState::Connected) => "connected",
        Ok(PeerState::Disconnected) => "disconnected",
        Ok(PeerState::Failed) => "failed",
        Ok(PeerState::Unspecified) | Err(_) => "unknown",
    };
    let _ = write!(line, " state={state} connection={}", c.connection);
    if !c.transport.is_empty() {
        let _ = write!(line, " transport={}", Token(&c.transport));
    }
    let dialled = if c.node_dialled { "node" } else { "extractor" };
    let _ = write!(
        line,
        " dialled={dialled} remote={} local={}",
        Token(&c.remote),
        Token(&c.local)
    );
    if let Some(v) = &c.version {
        let _ = write!(
            line,
            " user_agent={:?} version={} start_height={} services={}",
            v.user_agent,
            v.version,
            v.start_height,
            v.service_names.join(",")
        );
    }
    if c.connected_ns > 0 {
        let seconds = i64::try_from(c.connected_ns / 1_000_000_000).unwrap_or(i64::MAX);
        let _ = write!(line, " connected_for={}", human_seconds(seconds));
    }
    if c.retries > 0 {
        let _ = write!(line, " retries={}", c.retries);
    }
    if !c.reason.is_empty() {
        let _ = write!(line, " reason={:?}", c.reason);
    }
}

/// `method=… duration=… reply_bytes=…`, then a summary of the answer (or of the failure), then
/// the answer's keys the schema lacks. What bitcoind wrote (chain names, its user agent, error
/// messages, JSON keys) is quoted whenever it could break the line or fake a field.
fn rpc_call(line: &mut String, c: &RpcCall) {
    let _ = write!(
        line,
        " method={} duration={:.3}ms reply_bytes={}",
        Token(&c.method),
        c.duration_ns as f64 / 1e6,
        c.reply_bytes
    );
    if let Some(answer) = &c.result {
        rpc_answer(line, answer);
    }
    if !c.unknown_fields.is_empty() {
        let _ = write!(
            line,
            " unknown_fields={}",
            Token(&c.unknown_fields.join(","))
        );
    }
}

fn rpc_answer(line: &mut String, answer: &Answer) {
    match answer {
        Answer::PeerInfo(list) => peer_info(line, list),
        Answer::MempoolInfo(m) => {
            let _ = write!(
                line,
                " size={} bytes={} usage={} max={} minfee={}sat/vB",
                m.size,
                m.bytes,
                m.usage,
                m.maxmempool,
                btc_per_kvb(m.mempoolminfee)
            );
            if !m.loaded {
                line.push_str(" not_loaded");
            }
        }
        Answer::NetTotals(t) => {
            let _ = write!(line, " recv={} sent={}", t.totalbytesrecv, t.totalbytessent);
            if t.uploadtarget.as_ref().is_some_and(|u| u.target_reached) {
                line.push_str(" upload_target_reached");
            }
        }
        Answer::MemoryInfo(m) => {
            let locked = m.locked.unwrap_or_default();
            let _ = write!(
                line,
                " locked_used={} locked_free={} locked_total={}",
                locked.used, locked.free, locked.total
            );
        }
        Answer::AddrmanInfo(a) => {
            // bitcoind sums every network under all_networks; a sum of the others otherwise.
            let all = a.networks.get("all_networks").copied().unwrap_or_else(|| {
                a.networks.values().fold(Default::default(), |sum, n| {
                    nodescope_proto::AddrmanCounts {
                        new: sum.new + n.new,
                        tried: sum.tried + n.tried,
                        total: sum.total + n.total,
                    }
                })
            });
            let _ = write!(
                line,
                " new={} tried={} total={}",
                all.new, all.tried, all.total
            );
        }
        Answer::Uptime(u) => {
            let seconds = i64::try_from(u.seconds).unwrap_or(i64::MAX);
            let _ = write!(
                line,
                " uptime={} seconds={}",
                human_seconds(seconds),
                u.seconds
            );
        }
        Answer::BlockchainInfo(b) => {
            let _ = write!(
                line,
                " chain={} blocks={} headers={} progress={:.4}% ibd={} best={}",
                Token(&b.chain),
                b.blocks,
                b.headers,
                b.verificationprogress * 100.0,
                b.initialblockdownload,
                hex(&b.bestblockhash)
            );
            if b.pruned {
                line.push_str(" pruned");
            }
            if !b.warnings.is_empty() {
                let _ = write!(line, " warnings={:?}", b.warnings.join("; "));
            }
        }
        Answer::NetworkInfo(n) => {
            let reachable: Vec<&str> = n
                .networks
                .iter()
                .filter(|r| r.reachable)
                .map(|r| r.name.as_str())
                .collect();
            let _ = write!(
                line,
                " version={} subversion={} connections={} in={} out={} reachable={}",
                n.version,
                Token(&n.subversion),
                n.connections,
                n.connections_in,
                n.connections_out,
                Token(&reachable.join(","))
            );
            if !n.networkactive {
                line.push_str(" network_inactive");
            }
        }
        Answer::ChainTxStats(s) => {
            if let Some(rate) = s.txrate {
                let _ = write!(line, " txrate={rate:.3}tx/s");
            }
            if let Some(count) = s.txcount {
                let _ = write!(line, " txcount={count}");
            }
            let _ = write!(
                line,
                " window_blocks={} window_end={}",
                s.window_block_count, s.window_final_block_height
            );
        }
        Answer::OrphanTxs(o) => {
            let bytes: u64 = o.orphans.iter().map(|t| t.bytes).sum();
            let _ = write!(line, " orphans={} bytes={bytes}", o.orphans.len());
        }
        Answer::RawAddrman(r) => {
            // Parts count from 1 here, as people count them (the payload's `part` from 0).
            let _ = write!(
                line,
                " part={}/{} answer={} entries={} new_total={} tried_total={}",
                u64::from(r.part) + 1,
                r.parts,
                r.answer_id,
                r.entries.len(),
                r.new_total,
                r.tried_total
            );
        }
        Answer::IndexInfo(i) => {
            let synced = i.indexes.values().filter(|s| s.synced).count();
            let _ = write!(line, " indexes={} synced={synced}", i.indexes.len());
            let mut behind: Vec<&str> = i
                .indexes
                .iter()
                .filter(|(_, s)| !s.synced)
                .map(|(name, _)| name.as_str())
                .collect();
            if !behind.is_empty() {
                behind.sort_unstable();
                let _ = write!(line, " syncing={}", Token(&behind.join(",")));
            }
        }
        Answer::TxOutSetInfo(t) => {
            let _ = write!(
                line,
                " height={} txouts={} total_amount={:.8}BTC",
                t.height, t.txouts, t.total_amount
            );
            if let Some(unspendable) = t.total_unspendable_amount {
                let _ = write!(line, " unspendable={unspendable:.8}BTC");
            }
            // Without the coinstatsindex bitcoind scanned the set, and says how much it read.
            if let Some(transactions) = t.transactions {
                let _ = write!(line, " transactions={transactions}");
            }
            if let Some(disk_size) = t.disk_size {
                let _ = write!(line, " disk_size={disk_size}");
            }
            let _ = write!(line, " best={}", hex(&t.bestblock));
        }
        Answer::Failure(f) => rpc_failure(line, f),
    }
}

/// `peers=… inbound=… outbound=…`, then the peers per transport (`v1`, `v2`, `detecting`).
fn peer_info(line: &mut String, list: &PeerInfoList) {
    let inbound = list.peers.iter().filter(|p| p.inbound).count();
    let _ = write!(
        line,
        " peers={} inbound={inbound} outbound={}",
        list.peers.len(),
        list.peers.len() - inbound
    );
    let mut transports: Vec<(&str, usize)> = Vec::new();
    for peer in &list.peers {
        let transport = match peer.transport_protocol_type.as_str() {
            known @ ("v1" | "v2" | "detecting") => known,
            _ => "other_transport",
        };
        match transports.iter_mut().find(|(t, _)| *t == transport) {
            Some((_, count)) => *count += 1,
            None => transports.push((transport, 1)),
        }
    }
    transports.sort_unstable();
    for (transport, count) in transports {
        let _ = write!(line, " {transport}={count}");
    }
}

/// `failure=<kind>`, bitcoind's code when there is one, and its message.
fn rpc_failure(line: &mut String, f: &RpcFailure) {
    let kind = f.kind_name();
    let _ = write!(line, " failure={kind}");
    if f.code != 0 {
        let _ = write!(line, " code={}", f.code);
    }
    if !f.message.is_empty() {
        let _ = write!(line, " message={:?}", f.message);
    }
}

/// A fee rate bitcoind gives in BTC/kvB, in sat/vB (1 BTC/kvB = 100,000 sat/vB).
fn btc_per_kvb(rate: f64) -> String {
    format!("{:.3}", rate * 100_000.0)
}

/// `topic=… zmq_sequence=… endpoint=…`, lost messages before it, then what it carries.
fn zmq_notification(line: &mut String, z: &ZmqNotification) {
    let _ = write!(
        line,
        " topic={} zmq_sequence={} endpoint={}",
        Token(&z.topic),
        z.zmq_sequence,
        Token(&z.endpoint)
    );
    if z.missed_before > 0 {
        let _ = write!(line, " missed_before={}", z.missed_before);
    }
    match &z.body {
        Some(ZmqBody::Hash(hash)) => {
            let _ = write!(line, " hash={}", hex(hash));
        }
        Some(ZmqBody::RawBlock(block)) => {
            let _ = write!(line, " block_size={}", block.len());
        }
        Some(ZmqBody::Sequence(s)) => {
            let _ = write!(line, " hash={} label={}", hex(&s.hash), Token(&s.label));
            if let Some(sequence) = s.mempool_sequence {
                let _ = write!(line, " mempool_sequence={sequence}");
            }
        }
        None => {}
    }
}

/// `result=… address=… network=…`, who announced it and how, then what the check saw. The
/// address, user agent and detail come from peers or a peer's answer: quoted (escaped) whenever
/// they could break the line or fake a field.
fn connectivity_check(line: &mut String, c: &ConnectivityCheck) {
    let result =
        ConnectivityResult::try_from(c.result).map_or("unknown", ConnectivityResult::label);
    let _ = write!(line, " result={result}");
    if let Some(address) = &c.address {
        net_address(line, address);
    }
    if !c.addr_version.is_empty() {
        let _ = write!(line, " msg={}", Token(&c.addr_version));
    }
    peer(line, c.announced_by.as_ref());
    if c.getaddr_response {
        line.push_str(" getaddr_response");
    }
    if c.address.as_ref().is_some_and(|a| a.time != 0) {
        let _ = write!(line, " age={}", human_seconds(c.timestamp_age_s));
    }
    if !c.proxy.is_empty() {
        let _ = write!(line, " proxy={}", Token(&c.proxy));
    }
    if !c.checked_chain.is_empty() {
        let _ = write!(line, " chain={}", Token(&c.checked_chain));
    }
    if c.connect_ns > 0 {
        let _ = write!(line, " connect={:.3}ms", c.connect_ns as f64 / 1e6);
    }
    if c.handshake_ns > 0 {
        let _ = write!(line, " handshake={:.3}ms", c.handshake_ns as f64 / 1e6);
    }
    if let Some(v) = &c.version {
        let _ = write!(
            line,
            " version={} user_agent={:?} start_height={} services={}",
            v.version,
            v.user_agent,
            v.start_height,
            v.service_names.join(",")
        );
    }
    if c.verack {
        line.push_str(" verack");
    }
    match V2Support::try_from(c.v2) {
        Ok(V2Support::NotTried) => {}
        v2 => {
            let _ = write!(line, " v2={}", v2.map_or("unknown", V2Support::label));
        }
    }
    if !c.detail.is_empty() {
        let _ = write!(line, " detail={:?}", c.detail);
    }
}

/// ` address=host:port network=… announced_services=…`; an address of a network nodescope does
/// not know is shown as its bytes in hex.
fn net_address(line: &mut String, a: &NetAddress) {
    let network = AddrNetwork::try_from(a.network).map_or("unknown", AddrNetwork::label);
    let host = match (a.address.is_empty(), a.address_bytes.is_empty()) {
        (false, _) => a.address.clone(),
        (true, false) => hex(&a.address_bytes),
        (true, true) => "?".to_string(),
    };
    // IPv6 and CJDNS addresses hold colons: bracketed, as in `[2001:db8::1]:8333`.
    let address = if host.contains(':') {
        format!("[{host}]:{}", a.port)
    } else {
        format!("{host}:{}", a.port)
    };
    let _ = write!(line, " address={} network={network}", Token(&address));
    if a.network == AddrNetwork::Unknown as i32 && a.network_id != 0 {
        let _ = write!(line, " network_id={}", a.network_id);
    }
    if !a.service_names.is_empty() {
        let _ = write!(line, " announced_services={}", a.service_names.join(","));
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
            if let Some(first) = h.headers.first() {
                let _ = write!(line, " first={}", hex(&first.hash));
            }
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
    for (name, counts) in [
        ("rpc_calls", &s.rpc_calls),
        ("rpc_failures", &s.rpc_failures),
        ("zmq_received", &s.zmq_received),
        ("zmq_missed", &s.zmq_missed),
    ] {
        if counts.is_empty() {
            continue;
        }
        let mut counts: Vec<_> = counts.iter().collect();
        counts.sort();
        let joined: Vec<String> = counts
            .into_iter()
            .map(|(key, count)| format!("{key}:{count}"))
            .collect();
        let _ = write!(line, " {name}={}", Token(&joined.join(",")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodescope_proto::p2p::{decode_p2p, samples::sample_payloads, DecodeOptions};
    use nodescope_proto::RpcFailureKind;
    use nodescope_proto::{
        BlockConnected, ClosedConnection, ConnectionType, MempoolAdded, MempoolRemoved,
        MisbehavingConnection, NetMessage, P2pVersion, RemovalReason,
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

    #[test]
    fn connectivity_lines_say_what_was_checked_and_how_it_ended() {
        let reachable = event(Payload::ConnectivityCheck(ConnectivityCheck {
            address: Some(NetAddress {
                time: 1_763_790_000,
                service_names: vec!["network".into(), "witness".into()],
                network: AddrNetwork::Ipv4 as i32,
                network_id: 1,
                address: "1.2.3.4".into(),
                port: 8333,
                ..NetAddress::default()
            }),
            addr_version: "addrv2".into(),
            announced_by: Some(Peer {
                id: 7,
                addr: "203.0.113.7:8333".into(),
                conn_type: ConnectionType::Inbound as i32,
                conn_type_other: String::new(),
            }),
            timestamp_age_s: 3 * 3600 + 5 * 60,
            result: ConnectivityResult::Reachable as i32,
            checked_chain: "main".into(),
            connect_ns: 12_000_000,
            handshake_ns: 40_500_000,
            version: Some(P2pVersion {
                version: 70016,
                service_names: vec!["network".into(), "witness".into()],
                user_agent: "/Satoshi:30.0.0/".into(),
                start_height: 912_345,
                ..P2pVersion::default()
            }),
            verack: true,
            v2: V2Support::Supported as i32,
            ..ConnectivityCheck::default()
        }));
        assert_eq!(
            text(&reachable, Category::Connectivity),
            "2025-11-22T08:26:40.123456Z node-a connectivity connectivity_check result=reachable address=1.2.3.4:8333 network=ipv4 announced_services=network,witness msg=addrv2 peer=7 addr=203.0.113.7:8333 conn=inbound age=3h5m chain=main connect=12.000ms handshake=40.500ms version=70016 user_agent=\"/Satoshi:30.0.0/\" start_height=912345 services=network,witness verack v2=supported"
        );

        let onion = format!("{}.onion", "a".repeat(56));
        let refused = event(Payload::ConnectivityCheck(ConnectivityCheck {
            address: Some(NetAddress {
                network: AddrNetwork::Torv3 as i32,
                network_id: 4,
                address: onion.clone(),
                port: 8333,
                ..NetAddress::default()
            }),
            addr_version: "addrv2".into(),
            getaddr_response: true,
            result: ConnectivityResult::Refused as i32,
            detail: "connection refused".into(),
            proxy: "127.0.0.1:9050".into(),
            connect_ns: 0,
            ..ConnectivityCheck::default()
        }));
        assert!(text(&refused, Category::Connectivity).ends_with(&format!(
            "connectivity_check result=refused address={onion}:8333 network=torv3 msg=addrv2 getaddr_response proxy=127.0.0.1:9050 detail=\"connection refused\""
        )));

        let ipv6_future = event(Payload::ConnectivityCheck(ConnectivityCheck {
            address: Some(NetAddress {
                time: 1,
                network: AddrNetwork::Ipv6 as i32,
                address: "2001:db8::1".into(),
                port: 18444,
                ..NetAddress::default()
            }),
            timestamp_age_s: -90,
            result: ConnectivityResult::Timeout as i32,
            v2: V2Support::Unknown as i32,
            ..ConnectivityCheck::default()
        }));
        assert!(text(&ipv6_future, Category::Connectivity).ends_with(
            "result=timeout address=[2001:db8::1]:18444 network=ipv6 age=-1m30s v2=unknown"
        ));
    }

    /// What a peer sent (its user agent, an unknown network's address, the check's account of
    /// its answer) cannot break the line or forge fields.
    #[test]
    fn connectivity_lines_escape_what_peers_sent() {
        let hostile = event(Payload::ConnectivityCheck(ConnectivityCheck {
            address: Some(NetAddress {
                network: AddrNetwork::Unknown as i32,
                network_id: 42,
                address_bytes: vec![0xde, 0xad],
                port: 1,
                ..NetAddress::default()
            }),
            result: 99,
            detail: "bad\nmagic \"x\" result=reachable".into(),
            proxy: "evil proxy".into(),
            version: Some(P2pVersion {
                user_agent: "/x/\n2025 node-b fake\u{1b}[31m".into(),
                ..P2pVersion::default()
            }),
            v2: 17,
            ..ConnectivityCheck::default()
        }));
        let line = text(&hostile, Category::Connectivity);
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
        assert!(line.contains(" result=unknown address=dead:1"), "{line}");
        assert!(line.contains(" network=unknown network_id=42"), "{line}");
        assert!(line.contains(" proxy=\"evil proxy\""), "{line}");
        assert!(
            line.contains(r#" user_agent="/x/\n2025 node-b fake\u{1b}[31m""#),
            "{line}"
        );
        assert!(line.contains(" v2=unknown"), "{line}");
        assert!(
            line.ends_with(r#" detail="bad\nmagic \"x\" result=reachable""#),
            "{line}"
        );
    }

    fn rpc(method: &str, answer: Answer) -> Event {
        event(Payload::RpcCall(RpcCall {
            method: method.into(),
            duration_ns: 1_234_567,
            reply_bytes: 2048,
            unknown_fields: Vec::new(),
            result: Some(answer),
        }))
    }

    fn peer_info(inbound: bool, transport: &str) -> nodescope_proto::PeerInfo {
        nodescope_proto::PeerInfo {
            inbound,
            transport_protocol_type: transport.into(),
            ..Default::default()
        }
    }

    #[test]
    fn rpc_lines_summarise_each_answer() {
        use nodescope_proto::{
            AddrmanCounts, AddrmanInfo, BlockchainInfo, ChainTxStats, IndexInfo, IndexState,
            MempoolInfo, NetTotals, NetworkInfo, NetworkReachability, OrphanTx, OrphanTxList,
            RawAddrmanEntry, RawAddrmanPart, TxOutSetInfo, Uptime,
        };
        let peers = rpc(
            "getpeerinfo",
            Answer::PeerInfo(PeerInfoList {
                peers: vec![
                    peer_info(true, "v2"),
                    peer_info(false, "v2"),
                    peer_info(false, "v1"),
                    peer_info(false, "detecting"),
                    peer_info(true, "v3"),
                ],
            }),
        );
        assert_eq!(
            text(&peers, Category::Rpc),
            "2025-11-22T08:26:40.123456Z node-a rpc rpc_call method=getpeerinfo duration=1.235ms reply_bytes=2048 peers=5 inbound=2 outbound=3 detecting=1 other_transport=1 v1=1 v2=2"
        );

        let mempool = rpc(
            "getmempoolinfo",
            Answer::MempoolInfo(MempoolInfo {
                loaded: true,
                size: 1500,
                bytes: 600_000,
                usage: 2_400_000,
                maxmempool: 300_000_000,
                mempoolminfee: 0.00001,
                ..Default::default()
            }),
        );
        assert!(text(&mempool, Category::Rpc).ends_with(
            "reply_bytes=2048 size=1500 bytes=600000 usage=2400000 max=300000000 minfee=1.000sat/vB"
        ));
        let not_loaded = rpc(
            "getmempoolinfo",
            Answer::MempoolInfo(MempoolInfo::default()),
        );
        assert!(text(&not_loaded, Category::Rpc).ends_with(" minfee=0.000sat/vB not_loaded"));

        let chain = rpc(
            "getblockchaininfo",
            Answer::BlockchainInfo(BlockchainInfo {
                chain: "main".into(),
                blocks: 912_000,
                headers: 912_003,
                bestblockhash: vec![0xab; 32],
                verificationprogress: 0.999_987_6,
                initialblockdownload: false,
                pruned: true,
                ..Default::default()
            }),
        );
        assert!(text(&chain, Category::Rpc).ends_with(&format!(
            "reply_bytes=2048 chain=main blocks=912000 headers=912003 progress=99.9988% ibd=false best={} pruned",
            "ab".repeat(32)
        )));

        let totals = rpc(
            "getnettotals",
            Answer::NetTotals(NetTotals {
                totalbytesrecv: 10_000,
                totalbytessent: 20_000,
                ..Default::default()
            }),
        );
        assert!(text(&totals, Category::Rpc).ends_with(" recv=10000 sent=20000"));

        let uptime = rpc(
            "uptime",
            Answer::Uptime(Uptime {
                seconds: 3 * 86_400 + 7_300,
            }),
        );
        assert!(text(&uptime, Category::Rpc).ends_with(" uptime=3d2h seconds=266500"));

        let reachability = |name: &str, reachable: bool| NetworkReachability {
            name: name.into(),
            reachable,
            ..Default::default()
        };
        let network = rpc(
            "getnetworkinfo",
            Answer::NetworkInfo(NetworkInfo {
                version: 300_000,
                subversion: "/Satoshi:30.0.0/".into(),
                connections: 11,
                connections_in: 1,
                connections_out: 10,
                networkactive: true,
                networks: vec![
                    reachability("ipv4", true),
                    reachability("ipv6", true),
                    reachability("onion", false),
                    reachability("i2p", true),
                ],
                ..Default::default()
            }),
        );
        assert!(text(&network, Category::Rpc).ends_with(
            " version=300000 subversion=/Satoshi:30.0.0/ connections=11 in=1 out=10 reachable=ipv4,ipv6,i2p"
        ));

        let counts = |new, tried| AddrmanCounts {
            new,
            tried,
            total: new + tried,
        };
        let addrman = rpc(
            "getaddrmaninfo",
            Answer::AddrmanInfo(AddrmanInfo {
                networks: [
                    ("ipv4".to_string(), counts(60, 5)),
                    ("all_networks".to_string(), counts(70, 6)),
                ]
                .into(),
            }),
        );
        assert!(text(&addrman, Category::Rpc).ends_with(" new=70 tried=6 total=76"));

        let stats = rpc(
            "getchaintxstats",
            Answer::ChainTxStats(ChainTxStats {
                txrate: Some(4.56789),
                txcount: Some(1_200_000_000),
                window_block_count: 4320,
                window_final_block_height: 912_000,
                ..Default::default()
            }),
        );
        assert!(text(&stats, Category::Rpc).ends_with(
            " txrate=4.568tx/s txcount=1200000000 window_blocks=4320 window_end=912000"
        ));

        let orphan = |bytes| OrphanTx {
            bytes,
            ..Default::default()
        };
        let orphans = rpc(
            "getorphantxs",
            Answer::OrphanTxs(OrphanTxList {
                orphans: vec![orphan(200), orphan(350)],
            }),
        );
        assert!(text(&orphans, Category::Rpc).ends_with(" orphans=2 bytes=550"));

        let raw = rpc(
            "getrawaddrman",
            Answer::RawAddrman(RawAddrmanPart {
                part: 1,
                parts: 3,
                answer_id: 42,
                new_total: 5000,
                tried_total: 900,
                entries: vec![RawAddrmanEntry::default(); 7],
            }),
        );
        assert!(text(&raw, Category::Rpc)
            .ends_with(" part=2/3 answer=42 entries=7 new_total=5000 tried_total=900"));

        let index = |synced| IndexState {
            synced,
            best_block_height: 10,
        };
        let indexes = rpc(
            "getindexinfo",
            Answer::IndexInfo(IndexInfo {
                indexes: [
                    ("txindex".to_string(), index(true)),
                    ("basic block filter index".to_string(), index(false)),
                    ("coinstatsindex".to_string(), index(true)),
                ]
                .into(),
            }),
        );
        assert!(text(&indexes, Category::Rpc)
            .ends_with(" indexes=3 synced=2 syncing=\"basic block filter index\""));

        let from_index = rpc(
            "gettxoutsetinfo",
            Answer::TxOutSetInfo(TxOutSetInfo {
                height: 200,
                bestblock: vec![0x22; 32],
                txouts: 200,
                total_amount: 8725.0,
                total_unspendable_amount: Some(50.0),
                ..Default::default()
            }),
        );
        assert!(text(&from_index, Category::Rpc).ends_with(&format!(
            "reply_bytes=2048 height=200 txouts=200 total_amount=8725.00000000BTC unspendable=50.00000000BTC best={}",
            "22".repeat(32)
        )));
        let scanned = rpc(
            "gettxoutsetinfo",
            Answer::TxOutSetInfo(TxOutSetInfo {
                height: 3,
                txouts: 3,
                total_amount: 149.99999859,
                transactions: Some(3),
                disk_size: Some(4096),
                ..Default::default()
            }),
        );
        assert!(text(&scanned, Category::Rpc).contains(
            " height=3 txouts=3 total_amount=149.99999859BTC transactions=3 disk_size=4096 best="
        ));
    }

    #[test]
    fn a_failed_call_says_how_it_failed_and_new_keys_are_named() {
        let mut failed = rpc(
            "getblockchaininfo",
            Answer::Failure(RpcFailure {
                kind: RpcFailureKind::RpcError as i32,
                code: -28,
                message: "Loading block index…".into(),
            }),
        );
        failed.error = "getblockchaininfo: RPC error -28".into();
        assert!(text(&failed, Category::Rpc).ends_with(
            " method=getblockchaininfo duration=1.235ms reply_bytes=2048 failure=rpc_error code=-28 message=\"Loading block index…\" error=\"getblockchaininfo: RPC error -28\""
        ));
        let timeout = rpc(
            "getpeerinfo",
            Answer::Failure(RpcFailure {
                kind: RpcFailureKind::Timeout as i32,
                ..Default::default()
            }),
        );
        assert!(text(&timeout, Category::Rpc).ends_with(" failure=timeout"));
        let future = rpc(
            "uptime",
            Answer::Failure(RpcFailure {
                kind: 99,
                ..Default::default()
            }),
        );
        assert!(text(&future, Category::Rpc).ends_with(" failure=unknown"));

        let mut newer = rpc(
            "uptime",
            Answer::Uptime(nodescope_proto::Uptime { seconds: 59 }),
        );
        if let Some(Payload::RpcCall(call)) = &mut newer.payload {
            call.unknown_fields = vec!["since".into(), "0.new field".into()];
        }
        assert!(text(&newer, Category::Rpc)
            .ends_with(" uptime=59s seconds=59 unknown_fields=\"since,0.new field\""));
    }

    /// What a node answers (its chain name, user agent, JSON keys) cannot break the line or
    /// fake a field either.
    #[test]
    fn rpc_lines_escape_what_the_node_sent() {
        let hostile = rpc(
            "getnetworkinfo",
            Answer::NetworkInfo(nodescope_proto::NetworkInfo {
                subversion: "/x/ connections=999\n".into(),
                networkactive: true,
                ..Default::default()
            }),
        );
        let line = text(&hostile, Category::Rpc);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains(r#" subversion="/x/ connections=999\n" connections=0"#),
            "{line}"
        );
        let chain = rpc(
            "getblockchaininfo",
            Answer::BlockchainInfo(nodescope_proto::BlockchainInfo {
                chain: "main ibd=true".into(),
                ..Default::default()
            }),
        );
        assert!(text(&chain, Category::Rpc).contains(" chain=\"main ibd=true\" blocks=0"));
    }

    #[test]
    fn zmq_lines_name_the_topic_the_hash_and_what_was_lost() {
        use nodescope_proto::ZmqSequence;
        let zmq = |topic: &str, missed_before, body| {
            event(Payload::ZmqNotification(ZmqNotification {
                topic: topic.into(),
                zmq_sequence: 17,
                endpoint: "tcp://127.0.0.1:28332".into(),
                missed_before,
                body: Some(body),
            }))
        };
        let mut hash = vec![0u8; 32];
        hash[0] = 0x4e;
        assert_eq!(
            text(&zmq("hashblock", 0, ZmqBody::Hash(hash.clone())), Category::Zmq),
            format!("2025-11-22T08:26:40.123456Z node-a zmq zmq_notification topic=hashblock zmq_sequence=17 endpoint=tcp://127.0.0.1:28332 hash=4e{}", "0".repeat(62))
        );
        let sequence = zmq(
            "sequence",
            3,
            ZmqBody::Sequence(ZmqSequence {
                hash: vec![0x11; 32],
                label: "A".into(),
                mempool_sequence: Some(905),
            }),
        );
        assert!(text(&sequence, Category::Zmq).ends_with(&format!(
            "zmq_sequence=17 endpoint=tcp://127.0.0.1:28332 missed_before=3 hash={} label=A mempool_sequence=905",
            "11".repeat(32)
        )));
        let connected = zmq(
            "sequence",
            0,
            ZmqBody::Sequence(ZmqSequence {
                hash: vec![0x22; 32],
                label: "C".into(),
                mempool_sequence: None,
            }),
        );
        assert!(text(&connected, Category::Zmq).ends_with(" label=C"));
        let block = zmq("rawblock", 0, ZmqBody::RawBlock(vec![0; 285]));
        assert!(
            text(&block, Category::Zmq).ends_with("endpoint=tcp://127.0.0.1:28332 block_size=285")
        );
    }

    #[test]
    fn stats_lines_show_rpc_and_zmq_counts_when_there_are_some() {
        let ebpf = text(
            &event(Payload::ExtractorStats(ExtractorStats::default())),
            Category::Extractor,
        );
        assert!(ebpf.ends_with(" queued=0 resent=0"), "{ebpf}");
        let rpc = event(Payload::ExtractorStats(ExtractorStats {
            published: 30,
            rpc_calls: [("uptime".to_string(), 10), ("getpeerinfo".to_string(), 9)].into(),
            rpc_failures: [("getpeerinfo".to_string(), 1)].into(),
            zmq_received: [("hashtx".to_string(), 120), ("hashblock".to_string(), 2)].into(),
            ..Default::default()
        }));
        assert!(text(&rpc, Category::Extractor).ends_with(
            " queued=0 resent=0 rpc_calls=getpeerinfo:9,uptime:10 rpc_failures=getpeerinfo:1 zmq_received=hashblock:2,hashtx:120"
        ));
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

    fn p2p_connection(state: PeerState) -> PeerConnection {
        PeerConnection {
            state: state as i32,
            connection: 3,
            transport: "v2".into(),
            node_dialled: true,
            remote: "127.0.0.1:18444".into(),
            local: "127.0.0.1:8555".into(),
            version: Some(P2pVersion {
                version: 70016,
                service_names: vec!["network".into(), "witness".into()],
                user_agent: "/Satoshi:30.0.0/".into(),
                start_height: 101,
                ..P2pVersion::default()
            }),
            ..PeerConnection::default()
        }
    }

    #[test]
    fn p2p_connection_lines_say_how_it_went_and_why_it_ended() {
        let connected = event(Payload::PeerConnection(p2p_connection(
            PeerState::Connected,
        )));
        assert_eq!(
            text(&connected, Category::P2p),
            "2025-11-22T08:26:40.123456Z node-a p2p peer_connection state=connected connection=3 transport=v2 dialled=node remote=127.0.0.1:18444 local=127.0.0.1:8555 user_agent=\"/Satoshi:30.0.0/\" version=70016 start_height=101 services=network,witness"
        );
        let disconnected = event(Payload::PeerConnection(PeerConnection {
            connected_ns: 303_400_000_000,
            reason: "closed by the node".into(),
            ..p2p_connection(PeerState::Disconnected)
        }));
        assert!(text(&disconnected, Category::P2p).ends_with(
            "services=network,witness connected_for=5m3s reason=\"closed by the node\""
        ));
        let failed = event(Payload::PeerConnection(PeerConnection {
            state: PeerState::Failed as i32,
            connection: 7,
            remote: "127.0.0.1:18444".into(),
            local: "127.0.0.1:18444".into(),
            reason: "dialling 127.0.0.1:18444: Connection refused (os error 111)".into(),
            retries: 4,
            ..PeerConnection::default()
        }));
        assert!(text(&failed, Category::P2p).ends_with(
            "peer_connection state=failed connection=7 dialled=extractor remote=127.0.0.1:18444 local=127.0.0.1:18444 retries=4 reason=\"dialling 127.0.0.1:18444: Connection refused (os error 111)\""
        ));
        // What the node says of itself cannot break the line or fake a field.
        let mut hostile = p2p_connection(PeerState::Connected);
        hostile.version.as_mut().unwrap().user_agent = "/x/\nstate=failed \"".into();
        hostile.transport = "v2 state=failed".into();
        hostile.state = 42;
        let line = text(&event(Payload::PeerConnection(hostile)), Category::P2p);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains(" state=unknown connection=3 transport=\"v2 state=failed\" "),
            "{line}"
        );
        assert!(
            line.contains(r#" user_agent="/x/\nstate=failed \"" "#),
            "{line}"
        );
    }

    #[test]
    fn p2p_message_and_ping_lines_sum_up_what_the_node_sent() {
        use nodescope_proto::{
            BlockHeaderSummary, InventoryItem, P2pCmpctBlock, P2pHeaders, P2pInventory,
            PeerMessage, PeerPing,
        };
        let sent = |msg_type: &str, size, body, since_previous_ns| {
            event(Payload::PeerMessage(PeerMessage {
                connection: 3,
                message: Some(P2pMessage {
                    msg_type: msg_type.into(),
                    size,
                    body: Some(body),
                    ..P2pMessage::default()
                }),
                since_previous_ns,
            }))
        };
        let item = |r#type: nodescope_proto::InventoryType| InventoryItem {
            r#type: r#type as i32,
            type_raw: 0,
            hash: vec![0x11; 32],
        };
        let inv = Body::Inv(P2pInventory {
            items: vec![
                item(nodescope_proto::InventoryType::Wtx),
                item(nodescope_proto::InventoryType::Wtx),
                item(nodescope_proto::InventoryType::Block),
            ],
            count_by_type: [("wtx".to_string(), 2), ("block".to_string(), 1)].into(),
        });
        assert_eq!(
            text(&sent("inv", 109, inv, 2_500_000_000), Category::P2p),
            "2025-11-22T08:26:40.123456Z node-a p2p peer_message connection=3 msg=inv size=109 items=3 block=1 wtx=2 since_previous=2.500s"
        );
        let header = |byte| BlockHeaderSummary {
            hash: vec![byte; 32],
            ..BlockHeaderSummary::default()
        };
        let headers = Body::Headers(P2pHeaders {
            count: 2,
            headers: vec![header(0xaa), header(0xbb)],
        });
        assert!(
            text(&sent("headers", 163, headers, 0), Category::P2p).ends_with(&format!(
                " connection=3 msg=headers size=163 count=2 first={}",
                "aa".repeat(32)
            ))
        );
        let cmpct = Body::Cmpctblock(P2pCmpctBlock {
            header: Some(header(0xcc)),
            short_id_count: 12,
            ..P2pCmpctBlock::default()
        });
        assert!(
            text(&sent("cmpctblock", 300, cmpct, 0), Category::P2p).ends_with(&format!(
                " msg=cmpctblock size=300 hash={} short_ids=12 prefilled=0",
                "cc".repeat(32)
            ))
        );
        let addr = message("addrv2");
        let Some(Body::Addrv2(a)) = &addr.body else {
            panic!("{addr:?}")
        };
        let entries = a.addresses.len();
        let addr = event(Payload::PeerMessage(PeerMessage {
            connection: 3,
            message: Some(addr),
            since_previous_ns: 0,
        }));
        assert!(text(&addr, Category::P2p).ends_with(&format!(" addresses={entries}")));
        let filter = Body::Feefilter(nodescope_proto::P2pFeeFilter { fee_rate: 1000 });
        assert!(text(&sent("feefilter", 8, filter, 0), Category::P2p)
            .ends_with(" connection=3 msg=feefilter size=8 feerate=1000sat/kvB"));
        let pong = Body::Pong(nodescope_proto::P2pPing { nonce: 77 });
        let mut malformed = sent("pong", 8, pong, 120_000_000_000);
        malformed.error = "bad checksum".into();
        assert!(text(&malformed, Category::P2p).ends_with(
            " connection=3 msg=pong size=8 nonce=77 since_previous=120.000s error=\"bad checksum\""
        ));
        let ping = event(Payload::PeerPing(PeerPing {
            connection: 3,
            nonce: 42,
            rtt_ns: 1_250_000,
        }));
        assert_eq!(
            text(&ping, Category::P2p),
            "2025-11-22T08:26:40.123456Z node-a p2p peer_ping connection=3 nonce=42 rtt=1.250ms"
        );
        let value: serde_json::Value = serde_json::from_str(&json(&ping, Category::P2p)).unwrap();
        assert_eq!(value["event"], "peer_ping");
        assert_eq!(value["peer_ping"]["rtt_ns"], 1_250_000);
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
