//! The P2P lines: the fields of a P2P message (one a node's tracepoints saw, or one the node
//! sent on the extractor's own connection to it), and how such a connection went.

use std::fmt::Write as _;

use nodescope_proto::json::hex;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{P2pMessage, PeerConnection, PeerState};

use super::{human_seconds, Token};

/// `state=… connection=… transport=… dialled=node|extractor remote=… local=…`, what the
/// node's version said, how long it lasted, the failed attempts before it and why it ended.
/// The user agent and the reason are quoted: they come from the node or the network.
pub(super) fn peer_connection(line: &mut String, c: &PeerConnection) {
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

pub(super) fn p2p_message(line: &mut String, message: &P2pMessage) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::test_support::{event, inbound, message};
    use crate::line::{json, text};
    use nodescope_proto::event::Payload;
    use nodescope_proto::p2p::{decode_p2p, DecodeOptions};
    use nodescope_proto::{Category, P2pVersion};

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
}
