//! [`decode_event`]: `Event::decode`, but without the parts of the event the exporter never
//! reads. Decoding every hash, script, address string and inventory map of a P2P message costs
//! several times what the metrics of the event cost; skipped, they are neither allocated nor
//! copied.
//!
//! The event is still the schema's `Event`, built by the generated code: the encoded message
//! is walked field by field, and the fields the exporter reads whole are handed (each run of
//! them in a row as one message) to the generated `merge`. Skipped are the hashes and txids of every payload, the
//! addresses of a message's peer, a message's raw bytes, the entries of inventory maps, every
//! announced address but its network, and the contents of message bodies the exporter does not
//! look into (the body is there, at its defaults: which message it was is kept). What is kept
//! of each payload is what the modules of this crate read of it; the tests check that an
//! event decoded either way gives the same metrics.
//!
//! An event these walks cannot read (malformed, or a wire type they do not expect) is decoded
//! by `Event::decode`, so that it fails with the same error. A malformed part inside what is
//! skipped is not noticed (an invalid UTF-8 string in a skipped address, say): the event is
//! counted rather than undecodable.

use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{Event, NetMessage, P2pAddr, P2pInventory, P2pMessage};
use prost::{DecodeError, Message};

/// Field numbers, from the schema (proto/*.proto); the tests check them against the generated
/// types.
mod number {
    // Event: its payloads.
    pub const INBOUND_MESSAGE: u32 = 10;
    pub const OUTBOUND_MESSAGE: u32 = 11;
    pub const BLOCK_CONNECTED: u32 = 20;
    pub const UTXOCACHE_ADD: u32 = 31;
    pub const UTXOCACHE_SPENT: u32 = 32;
    pub const UTXOCACHE_UNCACHE: u32 = 33;
    pub const MEMPOOL_ADDED: u32 = 50;
    pub const MEMPOOL_REMOVED: u32 = 51;
    pub const MEMPOOL_REJECTED: u32 = 53;
    /// The first field of BlockConnected, UtxoCacheCoin and the Mempool* payloads: the block's
    /// hash, the transaction's txid.
    pub const HASH: u32 = 1;
    // NetMessage
    pub const PEER: u32 = 1;
    pub const MESSAGE: u32 = 2;
    // Peer
    pub const PEER_ADDR: u32 = 2;
    pub const PEER_CONN_TYPE_OTHER: u32 = 4;
    // P2pMessage: what the exporter reads of it.
    pub const MSG_TYPE: u32 = 1;
    pub const DECODE_ERROR: u32 = 5;
    pub const VERSION: u32 = 10;
    pub const PING: u32 = 12;
    pub const PONG: u32 = 13;
    pub const ADDR: u32 = 14;
    pub const ADDRV2: u32 = 15;
    pub const INV: u32 = 18;
    pub const GETDATA: u32 = 19;
    pub const NOTFOUND: u32 = 20;
    pub const FEEFILTER: u32 = 30;
    // P2pAddr, NetAddress
    pub const ADDRESSES: u32 = 1;
    pub const SERVICE_NAMES: u32 = 3;
    pub const ADDRESS: u32 = 6;
    pub const ADDRESS_BYTES: u32 = 8;
    // P2pInventory, InventoryItem
    pub const ITEMS: u32 = 1;
    pub const ITEM_HASH: u32 = 3;
}

/// An event decoded from `buf` as [`Event::decode`] would, without what the exporter never
/// reads (see the module's documentation).
pub fn decode_event(buf: &[u8]) -> Result<Event, DecodeError> {
    match event(buf) {
        Some(event) => Ok(event),
        None => Event::decode(buf),
    }
}

/// Reads a field in part: what `$decode` makes of what the field holds, as member `$member` of
/// the oneof `$oneof` of a `$message`.
macro_rules! member {
    ($message:ty, $oneof:ident, $member:path, $decode:expr) => {
        Read::Part(|message: &mut $message, content| {
            message.$oneof = Some($member($decode(content)?));
            Some(())
        })
    };
}

fn event(buf: &[u8]) -> Option<Event> {
    use number::*;
    use Payload::*;
    fields(buf, |number| match number {
        INBOUND_MESSAGE => member!(Event, payload, InboundMessage, net_message),
        OUTBOUND_MESSAGE => member!(Event, payload, OutboundMessage, net_message),
        BLOCK_CONNECTED => member!(Event, payload, BlockConnected, without_hash),
        UTXOCACHE_ADD => member!(Event, payload, UtxocacheAdd, without_hash),
        UTXOCACHE_SPENT => member!(Event, payload, UtxocacheSpent, without_hash),
        UTXOCACHE_UNCACHE => member!(Event, payload, UtxocacheUncache, without_hash),
        MEMPOOL_ADDED => member!(Event, payload, MempoolAdded, without_hash),
        MEMPOOL_REMOVED => member!(Event, payload, MempoolRemoved, without_hash),
        MEMPOOL_REJECTED => member!(Event, payload, MempoolRejected, without_hash),
        _ => Read::Whole,
    })
}

/// A payload without its block hash or txid.
fn without_hash<M: Message + Default>(buf: &[u8]) -> Option<M> {
    without(buf, &[number::HASH])
}

fn net_message(buf: &[u8]) -> Option<NetMessage> {
    use number::*;
    fields(buf, |number| match number {
        PEER => Read::Part(|net: &mut NetMessage, content| {
            net.peer = Some(without(content, &[PEER_ADDR, PEER_CONN_TYPE_OTHER])?);
            Some(())
        }),
        MESSAGE => Read::Part(|net, content| {
            net.message = Some(p2p_message(content)?);
            Some(())
        }),
        _ => Read::Whole,
    })
}

fn p2p_message(buf: &[u8]) -> Option<P2pMessage> {
    use number::*;
    fields(buf, |number| match number {
        MSG_TYPE | DECODE_ERROR | VERSION | PING | PONG | FEEFILTER => Read::Whole,
        ADDR => member!(P2pMessage, body, Body::Addr, addresses),
        ADDRV2 => member!(P2pMessage, body, Body::Addrv2, addresses),
        INV => member!(P2pMessage, body, Body::Inv, inventory),
        GETDATA => member!(P2pMessage, body, Body::Getdata, inventory),
        NOTFOUND => member!(P2pMessage, body, Body::Notfound, inventory),
        // The raw bytes, the bodies not looked into.
        _ => Read::Presence,
    })
}

/// Each address's network only.
fn addresses(buf: &[u8]) -> Option<P2pAddr> {
    use number::*;
    fields(buf, |number| match number {
        ADDRESSES => Read::Part(|addr: &mut P2pAddr, content| {
            let address = without(content, &[SERVICE_NAMES, ADDRESS, ADDRESS_BYTES])?;
            addr.addresses.push(address);
            Some(())
        }),
        _ => Read::Whole,
    })
}

/// Each entry's type only; no counts by type.
fn inventory(buf: &[u8]) -> Option<P2pInventory> {
    use number::*;
    fields(buf, |number| match number {
        ITEMS => Read::Part(|inv: &mut P2pInventory, content| {
            inv.items.push(without(content, &[ITEM_HASH])?);
            Some(())
        }),
        _ => Read::Skip,
    })
}

/// An `M` from `buf`, without fields `skipped`.
fn without<M: Message + Default>(buf: &[u8], skipped: &[u32]) -> Option<M> {
    fields(buf, |number| {
        if skipped.contains(&number) {
            Read::Skip
        } else {
            Read::Whole
        }
    })
}

/// How a field of a message `M` is read.
enum Read<M> {
    /// Decoded by the generated code.
    Whole,
    /// Read in part by this function, from what the field holds (a length-delimited field).
    Part(fn(&mut M, &[u8]) -> Option<()>),
    /// Only its presence: merged as if it were empty (see [`Field::hollow_into`]).
    Presence,
    /// Not at all.
    Skip,
}

/// An `M` made of the fields of `buf`, each read as `how` says for its number; `None` if `buf`
/// or a field is not what the walk expects. Fields in a row read whole are decoded together,
/// in one call of the generated code, and always in their order among the others.
fn fields<M: Message + Default>(buf: &[u8], how: impl Fn(u32) -> Read<M>) -> Option<M> {
    let mut message = M::default();
    let mut rest = buf;
    // Where the fields in a row to read whole start.
    let mut whole_from = None;
    let merge_whole = |message: &mut M, from: &mut Option<usize>, to: usize| match from.take() {
        Some(from) => message.merge(&buf[from..to]).ok(),
        None => Some(()),
    };
    while !rest.is_empty() {
        let at = buf.len() - rest.len();
        let field = Field::next(&mut rest)?;
        let read = how(field.number);
        if let Read::Whole = read {
            whole_from.get_or_insert(at);
            continue;
        }
        merge_whole(&mut message, &mut whole_from, at)?;
        match read {
            Read::Part(part) => part(&mut message, field.content()?)?,
            Read::Presence => field.hollow_into(&mut message)?,
            Read::Skip | Read::Whole => {}
        }
    }
    merge_whole(&mut message, &mut whole_from, buf.len())?;
    Some(message)
}

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH_DELIMITED: u64 = 2;
const FIXED32: u64 = 5;

/// One field of an encoded message.
struct Field<'a> {
    number: u32,
    wire_type: u64,
    /// The field, key included: a message of this one field.
    whole: &'a [u8],
    key_len: usize,
    /// What a length-delimited field holds (empty for other wire types).
    value: &'a [u8],
}

impl<'a> Field<'a> {
    /// The field at the start of `buf`, which then starts after it. Inlined in the walk of
    /// each message type: a call per field cost more than the parsing.
    #[inline(always)]
    fn next(buf: &mut &'a [u8]) -> Option<Field<'a>> {
        let start = *buf;
        let key = varint(buf)?;
        let key_len = start.len() - buf.len();
        let wire_type = key & 7;
        let value = match wire_type {
            VARINT => varint(buf).map(|_| &[][..])?,
            FIXED64 => take(buf, 8).map(|_| &[][..])?,
            LENGTH_DELIMITED => {
                let len = usize::try_from(varint(buf)?).ok()?;
                take(buf, len)?
            }
            FIXED32 => take(buf, 4).map(|_| &[][..])?,
            // Groups, or not protobuf.
            _ => return None,
        };
        Some(Field {
            number: u32::try_from(key >> 3).ok()?,
            wire_type,
            whole: &start[..start.len() - buf.len()],
            key_len,
            value,
        })
    }

    /// What a length-delimited field (a message, a string, bytes) holds.
    fn content(&self) -> Option<&'a [u8]> {
        (self.wire_type == LENGTH_DELIMITED).then_some(self.value)
    }

    /// The field decoded into `message` by the generated code.
    fn merge_into(&self, message: &mut impl Message) -> Option<()> {
        message.merge(self.whole).ok()
    }

    /// A length-delimited field merged as if it were empty: a message field is set, at its
    /// defaults (a oneof member still says which one it is), a string or bytes stays empty;
    /// nothing is allocated. Other fields (numbers) are merged as they are.
    fn hollow_into(&self, message: &mut impl Message) -> Option<()> {
        if self.wire_type != LENGTH_DELIMITED {
            return self.merge_into(message);
        }
        // A key takes at most 10 bytes (5 written the shortest way); then a length of 0.
        let mut empty = [0u8; 11];
        empty[..self.key_len].copy_from_slice(&self.whole[..self.key_len]);
        message.merge(&empty[..=self.key_len]).ok()
    }
}

#[inline]
fn varint(buf: &mut &[u8]) -> Option<u64> {
    // Most are one byte: keys, small numbers, short lengths.
    if let [byte @ 0..0x80, rest @ ..] = *buf {
        *buf = rest;
        return Some(u64::from(*byte));
    }
    let mut value = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

#[inline]
fn take<'a>(buf: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if buf.len() < len {
        return None;
    }
    let (taken, rest) = buf.split_at(len);
    *buf = rest;
    Some(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodescope_proto::*;

    /// The number of the one field `message` encodes.
    fn number_of(message: impl Message) -> u32 {
        let buf = message.encode_to_vec();
        let mut rest = &buf[..];
        let field = Field::next(&mut rest).expect("a field");
        assert!(rest.is_empty(), "more than one field");
        field.number
    }

    #[test]
    fn field_numbers_are_the_schemas() {
        use number::*;
        let event = |payload| Event {
            payload: Some(payload),
            ..Event::default()
        };
        let payloads = [
            (INBOUND_MESSAGE, Payload::InboundMessage(Default::default())),
            (
                OUTBOUND_MESSAGE,
                Payload::OutboundMessage(Default::default()),
            ),
            (BLOCK_CONNECTED, Payload::BlockConnected(Default::default())),
            (UTXOCACHE_ADD, Payload::UtxocacheAdd(Default::default())),
            (UTXOCACHE_SPENT, Payload::UtxocacheSpent(Default::default())),
            (
                UTXOCACHE_UNCACHE,
                Payload::UtxocacheUncache(Default::default()),
            ),
            (MEMPOOL_ADDED, Payload::MempoolAdded(Default::default())),
            (MEMPOOL_REMOVED, Payload::MempoolRemoved(Default::default())),
            (
                MEMPOOL_REJECTED,
                Payload::MempoolRejected(Default::default()),
            ),
        ];
        for (number, payload) in payloads {
            assert_eq!(number_of(event(payload)), number);
        }
        let hash = vec![1];
        assert_eq!(
            number_of(BlockConnected {
                hash: hash.clone(),
                ..Default::default()
            }),
            HASH
        );
        assert_eq!(
            number_of(UtxoCacheCoin {
                txid: hash.clone(),
                ..Default::default()
            }),
            HASH
        );
        assert_eq!(
            number_of(MempoolAdded {
                txid: hash.clone(),
                ..Default::default()
            }),
            HASH
        );
        assert_eq!(
            number_of(MempoolRemoved {
                txid: hash.clone(),
                ..Default::default()
            }),
            HASH
        );
        assert_eq!(
            number_of(MempoolRejected {
                txid: hash.clone(),
                ..Default::default()
            }),
            HASH
        );

        let net = NetMessage {
            peer: Some(Peer::default()),
            ..Default::default()
        };
        assert_eq!(number_of(net), PEER);
        let net = NetMessage {
            message: Some(P2pMessage::default()),
            ..Default::default()
        };
        assert_eq!(number_of(net), MESSAGE);
        let text = || "x".to_string();
        let peer = Peer {
            addr: text(),
            ..Default::default()
        };
        assert_eq!(number_of(peer), PEER_ADDR);
        let peer = Peer {
            conn_type_other: text(),
            ..Default::default()
        };
        assert_eq!(number_of(peer), PEER_CONN_TYPE_OTHER);

        let message = |msg_type: String, decode_error: String, body| P2pMessage {
            msg_type,
            decode_error,
            body,
            ..Default::default()
        };
        assert_eq!(number_of(message(text(), String::new(), None)), MSG_TYPE);
        assert_eq!(
            number_of(message(String::new(), text(), None)),
            DECODE_ERROR
        );
        let bodies = [
            (VERSION, Body::Version(Default::default())),
            (PING, Body::Ping(Default::default())),
            (PONG, Body::Pong(Default::default())),
            (ADDR, Body::Addr(Default::default())),
            (ADDRV2, Body::Addrv2(Default::default())),
            (INV, Body::Inv(Default::default())),
            (GETDATA, Body::Getdata(Default::default())),
            (NOTFOUND, Body::Notfound(Default::default())),
            (FEEFILTER, Body::Feefilter(Default::default())),
        ];
        for (number, body) in bodies {
            let body = message(String::new(), String::new(), Some(body));
            assert_eq!(number_of(body), number);
        }

        let addr = P2pAddr {
            addresses: vec![NetAddress::default()],
        };
        assert_eq!(number_of(addr), ADDRESSES);
        let address = NetAddress {
            service_names: vec![text()],
            ..Default::default()
        };
        assert_eq!(number_of(address), SERVICE_NAMES);
        let address = NetAddress {
            address: text(),
            ..Default::default()
        };
        assert_eq!(number_of(address), ADDRESS);
        let address = NetAddress {
            address_bytes: hash.clone(),
            ..Default::default()
        };
        assert_eq!(number_of(address), ADDRESS_BYTES);

        let inv = P2pInventory {
            items: vec![InventoryItem::default()],
            ..Default::default()
        };
        assert_eq!(number_of(inv), ITEMS);
        let item = InventoryItem {
            hash,
            ..Default::default()
        };
        assert_eq!(number_of(item), ITEM_HASH);
    }

    #[test]
    fn what_is_read_is_decoded_and_the_rest_is_not() {
        let p2p: std::collections::HashMap<_, _> =
            p2p::samples::sample_payloads().into_iter().collect();
        let inbound = |msg_type: &str| {
            let payload = &p2p[msg_type];
            let options = p2p::DecodeOptions::default();
            Payload::InboundMessage(NetMessage {
                peer: Some(Peer {
                    id: 7,
                    addr: "203.0.113.7:8333".into(),
                    conn_type: ConnectionType::Inbound as i32,
                    conn_type_other: String::new(),
                }),
                message: Some(p2p::decode_p2p(
                    msg_type,
                    payload,
                    payload.len() as u64,
                    options,
                )),
            })
        };
        let event = |payload| {
            let event = Event {
                node_id: "node-a".into(),
                timestamp_ns: 1_700_000_000_000_000_000,
                payload: Some(payload),
                ..Event::default()
            };
            decode_event(&event.encode_to_vec()).unwrap()
        };
        let inv = inbound("inv");
        let Payload::InboundMessage(NetMessage {
            message:
                Some(P2pMessage {
                    body: Some(Body::Inv(whole)),
                    ..
                }),
            ..
        }) = &inv
        else {
            panic!("not an inv");
        };
        let Some(Payload::InboundMessage(net)) = event(inv.clone()).payload else {
            panic!("not an inbound message");
        };
        let peer = net.peer.unwrap();
        assert_eq!((peer.id, peer.addr.as_str()), (7, ""));
        let message = net.message.unwrap();
        assert_eq!(message.msg_type, "inv");
        let Some(Body::Inv(read)) = message.body else {
            panic!("not an inv");
        };
        let types = |inv: &P2pInventory| inv.items.iter().map(|i| i.r#type).collect::<Vec<_>>();
        assert_eq!(types(&read), types(whole));
        assert!(read.items.iter().all(|i| i.hash.is_empty()));
        assert!(read.count_by_type.is_empty() && !whole.count_by_type.is_empty());

        let Some(Payload::InboundMessage(net)) = event(inbound("tx")).payload else {
            panic!("not an inbound message");
        };
        let message = net.message.unwrap();
        assert!(message.size > 0);
        assert_eq!(message.body, Some(Body::Tx(TxSummary::default())));

        let added = Payload::MempoolAdded(MempoolAdded {
            txid: vec![1; 32],
            vsize: 141,
            fee: 1410,
        });
        let Some(Payload::MempoolAdded(added)) = event(added).payload else {
            panic!("not a mempool_added");
        };
        assert_eq!((added.txid.len(), added.vsize, added.fee), (0, 141, 1410));
    }

    /// A key written longer than it need be (protobuf allows it) is read, even where the field
    /// is merged as empty.
    #[test]
    fn long_keys_are_read() {
        // A length-delimited field (shorter than 128 bytes) with its key written shortest.
        let field = |number: u8, content: &[u8]| {
            [&[number << 3 | 2, content.len() as u8][..], content].concat()
        };
        // P2pMessage.raw, its key 0x22 in 8 bytes.
        let raw = [
            &[0xa2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 3][..],
            &[1, 2, 3],
        ]
        .concat();
        let event = field(10, &field(2, &raw));
        let whole = Event::decode(&event[..]).unwrap();
        let Some(Payload::InboundMessage(net)) = &whole.payload else {
            panic!("not an inbound message");
        };
        assert_eq!(net.message.as_ref().unwrap().raw, [1, 2, 3]);
        let Some(Payload::InboundMessage(net)) = decode_event(&event).unwrap().payload else {
            panic!("not an inbound message");
        };
        assert_eq!(net.message.unwrap(), P2pMessage::default());
    }

    #[test]
    fn what_is_not_an_event_fails_as_with_event_decode() {
        for garbage in [&b"\xff\xff\xff"[..], b"\x08", b"\x52\x05\x0a", b"\x0b\x0c"] {
            assert_eq!(
                decode_event(garbage).unwrap_err().to_string(),
                Event::decode(garbage).unwrap_err().to_string()
            );
        }
    }
}
