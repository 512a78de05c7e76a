//! inv, getdata and notfound straight from the wire to protobuf: the `body` field of a
//! [`P2pMessage`](crate::P2pMessage), written as prost writes what the decoder builds, with no
//! item, hash or map built and freed in between. These messages are most of a node's traffic (a
//! 1 KiB inv holds 28 entries), and building and encoding their items was about half of the
//! extractor's cost for each.
//!
//! The decoder stays the definition: any payload this does not take whole (a short or long
//! payload, a non-minimal count) is left to it, and it says what is wrong. A test holds both to
//! the same bytes.

use bitcoin::consensus::encode::{deserialize_partial, VarInt};
use prost::bytes::BufMut;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use super::decode::inventory_type;

/// Bytes of one wire entry: a 4-byte type and a 32-byte hash.
const ENTRY: usize = 36;
/// Most bytes an encoded item takes with its key and length: key, length, type (key and up to
/// 5 bytes), type_raw (the same), hash (key, length, 32).
const MAX_ITEM: usize = 2 + 6 + 6 + 34;
/// Field numbers in p2p.proto: `P2pInventory.items`, `P2pInventory.count_by_type`, and
/// `InventoryItem`'s `type`, `type_raw` and `hash`; the map entry's key and value.
const ITEMS: u32 = 1;
const COUNT_BY_TYPE: u32 = 2;
const ITEM_TYPE: u32 = 1;
const ITEM_TYPE_RAW: u32 = 2;
const ITEM_HASH: u32 = 3;
const MAP_KEY: u32 = 1;
const MAP_VALUE: u32 = 2;

/// `P2pMessage`'s body field number for an inventory message type.
fn body_field(msg_type: &str) -> Option<u32> {
    match msg_type {
        "inv" => Some(18),
        "getdata" => Some(19),
        "notfound" => Some(20),
        _ => None,
    }
}

/// Appends to `out` the `body` field (key, length, `P2pInventory`) of the message `msg_type`
/// with `payload`, and returns true; returns false with `out` untouched when `msg_type` is not
/// an inventory type or the payload is not exactly a well-formed inventory.
pub(crate) fn inventory_body(msg_type: &str, payload: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(field) = body_field(msg_type) else {
        return false;
    };
    // rust-bitcoin reads the count, with the decoder's rules (minimal encoding).
    let Ok((VarInt(count), start)) = deserialize_partial::<VarInt>(payload) else {
        return false;
    };
    let entries = &payload[start..];
    if count.checked_mul(ENTRY as u64) != Some(entries.len() as u64) {
        return false;
    }
    // Counted in message order of first appearance, as the decoder counts them; told apart by
    // type (one name each), not by comparing names.
    let mut counts: Vec<(i32, &'static str, u32)> = Vec::new();
    let mut items_len = 0usize;
    for entry in entries.chunks_exact(ENTRY) {
        let type_raw = u32::from_le_bytes(entry[..4].try_into().expect("4 bytes"));
        let (kind, name) = inventory_type(type_raw);
        let item = item_len(kind as i32, type_raw);
        items_len += key_len(ITEMS) + encoded_len_varint(item as u64) + item;
        match counts
            .iter_mut()
            .find(|(counted, _, _)| *counted == kind as i32)
        {
            Some((_, _, n)) => *n += 1,
            None => counts.push((kind as i32, name, 1)),
        }
    }
    let map_len: usize = counts
        .iter()
        .map(|(_, name, n)| {
            let entry = entry_len(name, *n);
            key_len(COUNT_BY_TYPE) + encoded_len_varint(entry as u64) + entry
        })
        .sum();
    let body_len = items_len + map_len;
    out.reserve(key_len(field) + encoded_len_varint(body_len as u64) + body_len);
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(body_len as u64, out);
    for entry in entries.chunks_exact(ENTRY) {
        let type_raw = u32::from_le_bytes(entry[..4].try_into().expect("4 bytes"));
        let kind = inventory_type(type_raw).0 as i32;
        // Written on the stack and appended at once: prost writes a varint a byte at a time,
        // which for a `Vec` is a call per byte.
        let mut item = [0u8; MAX_ITEM];
        let mut w = &mut item[..];
        encode_key(ITEMS, WireType::LengthDelimited, &mut w);
        encode_varint(item_len(kind, type_raw) as u64, &mut w);
        if kind != 0 {
            encode_key(ITEM_TYPE, WireType::Varint, &mut w);
            encode_varint(kind as u64, &mut w);
        }
        if type_raw != 0 {
            encode_key(ITEM_TYPE_RAW, WireType::Varint, &mut w);
            encode_varint(type_raw as u64, &mut w);
        }
        encode_key(ITEM_HASH, WireType::LengthDelimited, &mut w);
        encode_varint(32, &mut w);
        let mut hash: [u8; 32] = entry[4..].try_into().expect("32 bytes");
        // Display order: the wire's bytes reversed.
        hash.reverse();
        w.put_slice(&hash);
        let written = MAX_ITEM - w.remaining_mut();
        out.extend_from_slice(&item[..written]);
    }
    for (_, name, n) in counts {
        encode_key(COUNT_BY_TYPE, WireType::LengthDelimited, out);
        encode_varint(entry_len(name, n) as u64, out);
        encode_key(MAP_KEY, WireType::LengthDelimited, out);
        encode_varint(name.len() as u64, out);
        out.extend_from_slice(name.as_bytes());
        encode_key(MAP_VALUE, WireType::Varint, out);
        encode_varint(n as u64, out);
    }
    true
}

fn key_len(field: u32) -> usize {
    prost::encoding::key_len(field)
}

/// Encoded length of an `InventoryItem` (zero values are left out, as prost does).
fn item_len(kind: i32, type_raw: u32) -> usize {
    let kind_len = if kind != 0 {
        key_len(ITEM_TYPE) + encoded_len_varint(kind as u64)
    } else {
        0
    };
    let raw_len = if type_raw != 0 {
        key_len(ITEM_TYPE_RAW) + encoded_len_varint(type_raw as u64)
    } else {
        0
    };
    kind_len + raw_len + key_len(ITEM_HASH) + 1 + 32
}

/// Encoded length of a `count_by_type` entry (a name is never empty, a count never zero).
fn entry_len(name: &str, count: u32) -> usize {
    key_len(MAP_KEY)
        + encoded_len_varint(name.len() as u64)
        + name.len()
        + key_len(MAP_VALUE)
        + encoded_len_varint(count as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::{decode_p2p, DecodeOptions};
    use prost::Message;

    fn wire(entries: &[(u32, [u8; 32])], count: u64) -> Vec<u8> {
        let mut payload = bitcoin::consensus::serialize(&VarInt(count));
        for (type_raw, hash) in entries {
            payload.extend_from_slice(&type_raw.to_le_bytes());
            payload.extend_from_slice(hash);
        }
        payload
    }

    /// What prost writes for the decoder's body.
    fn decoded_body(msg_type: &str, payload: &[u8]) -> Vec<u8> {
        let message = decode_p2p(
            msg_type,
            payload,
            payload.len() as u64,
            DecodeOptions::default(),
        );
        assert!(message.decode_error.is_empty(), "{}", message.decode_error);
        let mut out = Vec::new();
        message.body.expect("decoded").encode(&mut out);
        out
    }

    #[test]
    fn writes_the_decoders_bytes() {
        let hash = |seed: u8| std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8));
        let cases: Vec<Vec<(u32, [u8; 32])>> = vec![
            vec![],
            vec![(5, hash(1))],
            (0..28).map(|i| (5, hash(i))).collect(),
            // Every known type, an unknown one, and zero (no `type_raw` field): the map has
            // several entries, whose order prost leaves to the hash map.
            vec![(0, hash(2))],
            vec![(0x4000_0002, hash(3))],
            vec![(7777, hash(4))],
        ];
        for msg_type in ["inv", "getdata", "notfound"] {
            for entries in &cases {
                let payload = wire(entries, entries.len() as u64);
                let mut out = Vec::new();
                assert!(inventory_body(msg_type, &payload, &mut out));
                assert_eq!(
                    out,
                    decoded_body(msg_type, &payload),
                    "{msg_type} {entries:?}"
                );
            }
        }
    }

    #[test]
    fn several_types_decode_to_the_decoders_body() {
        let entries: Vec<(u32, [u8; 32])> = [0, 1, 2, 3, 4, 5, 0x4000_0001, 0x4000_0002, 99, 1]
            .iter()
            .map(|t| (*t, [*t as u8; 32]))
            .collect();
        let payload = wire(&entries, entries.len() as u64);
        let mut out = Vec::new();
        assert!(inventory_body("inv", &payload, &mut out));
        let expected = decode_p2p(
            "inv",
            &payload,
            payload.len() as u64,
            DecodeOptions::default(),
        );
        let message = crate::P2pMessage::decode(out.as_slice()).expect("a P2pMessage field");
        assert_eq!(message.body, expected.body);
    }

    #[test]
    fn leaves_what_is_not_a_whole_inventory_to_the_decoder() {
        let entry = [(5, [9u8; 32])];
        let mut out = Vec::new();
        let short = wire(&entry, 2);
        let mut long = wire(&entry, 1);
        long.push(0);
        // 1 as a 3-byte count: rust-bitcoin refuses non-minimal encodings.
        let mut non_minimal = vec![0xfd, 1, 0];
        non_minimal.extend_from_slice(&wire(&entry, 1)[1..]);
        for payload in [&short, &long, &non_minimal, &vec![], &vec![0xff]] {
            assert!(!inventory_body("inv", payload, &mut out), "{payload:?}");
        }
        assert!(!inventory_body("ping", &wire(&entry, 1), &mut out));
        assert!(out.is_empty());
    }
}
