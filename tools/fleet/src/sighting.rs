//! What one event tells the fleet tool: blocks and transactions the node showed it knew of (and
//! how), a block it connected, and changes to its mempool. A message the node received or sent
//! naming an item is a sighting; the earliest one counts.

use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::zmq_notification::Body as ZmqBody;
use nodescope_proto::{Event, P2pMessage};

pub type Hash = [u8; 32];

/// A hash as the schema carries it (display order); `None` for a payload that is not 32 bytes.
pub fn hash(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Block,
    Tx,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Block => "block",
            Kind::Tx => "tx",
        }
    }
}

/// The node showed it knew of `hash` (for a `tx` message, `also` is its other id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub kind: Kind,
    pub hash: Hash,
    /// A transaction's `hash` is its wtxid (else its txid).
    pub wtxid: bool,
    pub also: Option<Hash>,
    pub source: &'static str,
    pub peer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub hash: Hash,
    pub height: i32,
    pub duration_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MempoolChange {
    Added(Hash),
    Removed(Hash),
}

/// A transaction message seen on the wire, sent or received: it ties a txid to its wtxid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxIds {
    pub txid: Hash,
    pub wtxid: Hash,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Observation {
    pub sightings: Vec<Sighting>,
    pub connected: Option<Connected>,
    pub mempool: Option<MempoolChange>,
    pub tx_ids: Option<TxIds>,
}

// BIP 144 / BIP 339 inventory types on the wire.
const MSG_TX: u32 = 1;
const MSG_BLOCK: u32 = 2;
const MSG_CMPCT_BLOCK: u32 = 4;
const MSG_WTX: u32 = 5;
const MSG_WITNESS_FLAG: u32 = 1 << 30;
/// MAX_BLOCKS_TO_ANNOUNCE of Core's net_processing.
const MAX_ANNOUNCED_HEADERS: usize = 8;

/// What `event` tells; empty for events that say nothing about blocks, transactions or mempools.
pub fn observe(event: &Event) -> Observation {
    let mut seen = Observation::default();
    let Some(payload) = &event.payload else {
        return seen;
    };
    match payload {
        Payload::InboundMessage(m) => {
            let peer = m.peer.as_ref().map(|p| p.addr.clone());
            if let Some(message) = &m.message {
                message_sightings(&mut seen, message, peer, Source::Received);
            }
        }
        Payload::OutboundMessage(m) => {
            if let Some(message) = &m.message {
                message_sightings(&mut seen, message, None, Source::Sent);
            }
        }
        Payload::PeerMessage(m) => {
            if let Some(message) = &m.message {
                message_sightings(&mut seen, message, None, Source::ToPeerExtractor);
            }
        }
        Payload::BlockConnected(b) => {
            if let Some(hash) = hash(&b.hash) {
                seen.connected = Some(Connected {
                    hash,
                    height: b.height,
                    duration_ns: b.duration_ns.max(0) as u64,
                });
                seen.sightings.push(Sighting {
                    kind: Kind::Block,
                    hash,
                    wtxid: false,
                    also: None,
                    source: "block_connected",
                    peer: None,
                });
            }
        }
        Payload::MempoolAdded(a) => {
            if let Some(txid) = hash(&a.txid) {
                seen.mempool = Some(MempoolChange::Added(txid));
                seen.sightings.push(Sighting {
                    kind: Kind::Tx,
                    hash: txid,
                    wtxid: false,
                    also: None,
                    source: "mempool_added",
                    peer: None,
                });
            }
        }
        Payload::MempoolRemoved(r) => {
            seen.mempool = hash(&r.txid).map(MempoolChange::Removed);
        }
        Payload::ZmqNotification(z) => zmq(&mut seen, &z.topic, z.body.as_ref()),
        _ => {}
    }
    seen
}

#[derive(Clone, Copy)]
enum Source {
    /// The node received it from a peer (the eBPF extractor's inbound messages).
    Received,
    /// The node sent it: it had it by then. For a relayed item a later time than its
    /// reception; for the node where it started (a block it mined, announced by cmpctblock
    /// before its own block_connected fires) the earliest sign there is.
    Sent,
    /// The node sent it to the P2P extractor: it announced what it had.
    ToPeerExtractor,
}

fn message_sightings(
    seen: &mut Observation,
    message: &P2pMessage,
    peer: Option<String>,
    source: Source,
) {
    let name = |received: &'static str, sent: &'static str, announced: &'static str| match source {
        Source::Received => received,
        Source::Sent => sent,
        Source::ToPeerExtractor => announced,
    };
    let mut push = |kind, hash, wtxid, also, source_name| {
        seen.sightings.push(Sighting {
            kind,
            hash,
            wtxid,
            also,
            source: source_name,
            peer: peer.clone(),
        })
    };
    match message.body.as_ref() {
        Some(Body::Inv(inv)) => {
            for item in &inv.items {
                let Some(hash) = hash(&item.hash) else {
                    continue;
                };
                match item.type_raw & !MSG_WITNESS_FLAG {
                    MSG_BLOCK | MSG_CMPCT_BLOCK => push(
                        Kind::Block,
                        hash,
                        false,
                        None,
                        name("inv", "sent:inv", "p2p:inv"),
                    ),
                    MSG_TX => push(
                        Kind::Tx,
                        hash,
                        false,
                        None,
                        name("inv", "sent:inv", "p2p:inv"),
                    ),
                    MSG_WTX => push(
                        Kind::Tx,
                        hash,
                        true,
                        None,
                        name("inv", "sent:inv", "p2p:inv"),
                    ),
                    _ => {}
                }
            }
        }
        // Core announces new blocks with at most 8 headers; a longer headers message answers
        // a getheaders (chain sync), it does not announce.
        Some(Body::Headers(headers)) if headers.headers.len() <= MAX_ANNOUNCED_HEADERS => {
            for header in &headers.headers {
                if let Some(hash) = hash(&header.hash) {
                    push(
                        Kind::Block,
                        hash,
                        false,
                        None,
                        name("headers", "sent:headers", "p2p:headers"),
                    );
                }
            }
        }
        Some(Body::Cmpctblock(block)) => {
            if let Some(hash) = block.header.as_ref().and_then(|h| hash(&h.hash)) {
                push(
                    Kind::Block,
                    hash,
                    false,
                    None,
                    name("cmpctblock", "sent:cmpctblock", "p2p:cmpctblock"),
                );
            }
        }
        Some(Body::Block(block)) => {
            if let Some(hash) = block.header.as_ref().and_then(|h| hash(&h.hash)) {
                push(
                    Kind::Block,
                    hash,
                    false,
                    None,
                    name("block", "sent:block", "p2p:block"),
                );
            }
        }
        Some(Body::Tx(tx)) => {
            if let Some(ids) = tx_ids(&tx.txid, &tx.wtxid) {
                push(
                    Kind::Tx,
                    ids.wtxid,
                    true,
                    Some(ids.txid),
                    name("tx", "sent:tx", "p2p:tx"),
                );
                seen.tx_ids = Some(ids);
            }
        }
        _ => {}
    }
}

fn tx_ids(txid: &[u8], wtxid: &[u8]) -> Option<TxIds> {
    Some(TxIds {
        txid: hash(txid)?,
        wtxid: hash(wtxid)?,
    })
}

/// `hashblock` and the `sequence` topic's C (connected) are block sightings, its A (added to
/// the mempool) a transaction's. `hashtx` is not: it also fires for every transaction of a
/// connected block, which says nothing about relay.
fn zmq(seen: &mut Observation, topic: &str, body: Option<&ZmqBody>) {
    let (kind, bytes) = match (topic, body) {
        ("hashblock", Some(ZmqBody::Hash(bytes))) => (Kind::Block, bytes),
        ("sequence", Some(ZmqBody::Sequence(s))) if s.label == "C" => (Kind::Block, &s.hash),
        ("sequence", Some(ZmqBody::Sequence(s))) if s.label == "A" => (Kind::Tx, &s.hash),
        _ => return,
    };
    if let Some(hash) = hash(bytes) {
        seen.sightings.push(Sighting {
            kind,
            hash,
            wtxid: false,
            also: None,
            source: "zmq",
            peer: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodescope_proto::{
        BlockHeaderSummary, InventoryItem, NetMessage, P2pCmpctBlock, P2pHeaders, P2pInventory,
        Peer, TxSummary,
    };

    fn inbound(body: Body) -> Event {
        Event {
            payload: Some(Payload::InboundMessage(NetMessage {
                peer: Some(Peer {
                    id: 3,
                    addr: "10.0.0.1:8333".into(),
                    ..Peer::default()
                }),
                message: Some(P2pMessage {
                    body: Some(body),
                    ..P2pMessage::default()
                }),
            })),
            ..Event::default()
        }
    }

    fn header(byte: u8) -> BlockHeaderSummary {
        BlockHeaderSummary {
            hash: vec![byte; 32],
            ..BlockHeaderSummary::default()
        }
    }

    #[test]
    fn inbound_inv_names_blocks_and_transactions_with_the_peer() {
        let item = |type_raw, byte| InventoryItem {
            type_raw,
            hash: vec![byte; 32],
            ..InventoryItem::default()
        };
        let seen = observe(&inbound(Body::Inv(P2pInventory {
            items: vec![
                item(MSG_BLOCK | MSG_WITNESS_FLAG, 1),
                item(MSG_WTX, 2),
                item(MSG_TX, 3),
                item(7, 4), // a type that names neither
                InventoryItem {
                    type_raw: MSG_TX,
                    hash: vec![5; 31], // a cut hash
                    ..InventoryItem::default()
                },
            ],
            ..P2pInventory::default()
        })));
        let got: Vec<_> = seen
            .sightings
            .iter()
            .map(|s| (s.kind, s.hash[0], s.source, s.peer.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (Kind::Block, 1, "inv", Some("10.0.0.1:8333")),
                (Kind::Tx, 2, "inv", Some("10.0.0.1:8333")),
                (Kind::Tx, 3, "inv", Some("10.0.0.1:8333")),
            ]
        );
    }

    #[test]
    fn headers_cmpctblock_and_tx_are_sightings_and_tx_ties_its_ids() {
        let seen = observe(&inbound(Body::Headers(P2pHeaders {
            count: 2,
            headers: vec![header(1), header(2)],
        })));
        assert_eq!(seen.sightings.len(), 2);
        let seen = observe(&inbound(Body::Cmpctblock(P2pCmpctBlock {
            header: Some(header(9)),
            ..P2pCmpctBlock::default()
        })));
        assert_eq!(seen.sightings[0].source, "cmpctblock");
        let seen = observe(&inbound(Body::Tx(TxSummary {
            txid: vec![1; 32],
            wtxid: vec![2; 32],
            ..TxSummary::default()
        })));
        assert_eq!(
            seen.tx_ids,
            Some(TxIds {
                txid: [1; 32],
                wtxid: [2; 32]
            })
        );
        assert_eq!(seen.sightings[0].hash, [2; 32]);
        assert_eq!(seen.sightings[0].also, Some([1; 32]));
    }

    #[test]
    fn outbound_messages_are_sightings_without_a_peer_and_tie_ids() {
        let event = Event {
            payload: Some(Payload::OutboundMessage(NetMessage {
                peer: None,
                message: Some(P2pMessage {
                    body: Some(Body::Tx(TxSummary {
                        txid: vec![1; 32],
                        wtxid: vec![2; 32],
                        ..TxSummary::default()
                    })),
                    ..P2pMessage::default()
                }),
            })),
            ..Event::default()
        };
        let seen = observe(&event);
        assert_eq!(seen.sightings.len(), 1);
        assert_eq!(seen.sightings[0].source, "sent:tx");
        assert_eq!(seen.sightings[0].peer, None);
        assert!(seen.tx_ids.is_some());
    }
}
