//! Property tests: any byte string, as any message type, decodes without panicking into a
//! message that either has a body or says why not and keeps the bytes. Real payloads built with
//! rust-bitcoin are mutated (bit flips, truncation at every length, insertions, deletions).

use std::sync::OnceLock;

use nodescope_proto::p2p::samples::sample_payloads;
use nodescope_proto::p2p::{
    decode_p2p_encoding_inventory, decode_p2p_unguarded, DecodeOptions, MESSAGE_TYPES,
};
use nodescope_proto::P2pMessage;
use proptest::prelude::*;
use prost::Message;

fn samples() -> &'static [(&'static str, Vec<u8>)] {
    static SAMPLES: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    SAMPLES.get_or_init(sample_payloads)
}

/// Types whose payload may legitimately end early (optional fields, as in Core) or be anything.
fn tolerates_prefixes(msg_type: &str) -> bool {
    matches!(msg_type, "version" | "reject" | "alert")
}

/// The invariants every decoded message holds.
fn check_invariants(msg_type: &str, payload: &[u8], size: u64, m: &P2pMessage) {
    assert_eq!(m.msg_type, msg_type);
    assert_eq!(m.size, size);
    assert_eq!(m.truncated, (payload.len() as u64) < size);
    if m.unknown_type {
        assert!(m.body.is_none() && m.decode_error.is_empty());
        assert_eq!(m.raw, payload);
    } else if m.body.is_some() {
        assert!(m.decode_error.is_empty(), "{msg_type}: {}", m.decode_error);
        assert!(!m.truncated);
    } else {
        assert!(
            !m.decode_error.is_empty(),
            "{msg_type}: no body and no error"
        );
        assert_eq!(m.raw, payload, "{msg_type}: raw must keep the bytes");
    }
}

fn decode(msg_type: &str, payload: &[u8], size: u64) -> P2pMessage {
    let options = DecodeOptions { keep_raw: false };
    let m = decode_p2p_unguarded(msg_type, payload, size, options);
    check_invariants(msg_type, payload, size, &m);
    // The path that encodes inventories from the wire: the same message once its body is read.
    let (mut encoding, mut body) = (P2pMessage::default(), Vec::new());
    decode_p2p_encoding_inventory(
        &mut encoding,
        msg_type.into(),
        payload,
        size,
        options,
        &mut body,
    );
    encoding.merge(body.as_slice()).expect("a body field");
    assert_eq!(encoding, m, "{msg_type}: the encoding path differs");
    m
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..12)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..12).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match *m {
        Mutation::FlipBit(i, b) if len > 0 => bytes[i % len] ^= 1 << b,
        Mutation::SetByte(i, v) if len > 0 => bytes[i % len] = v,
        Mutation::Insert(i, ref v) => {
            let at = i % (len + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::Delete(i, n) if len > 0 => {
            let at = i % len;
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random bytes as every message type (and an unknown one).
    #[test]
    fn random_bytes_any_type(kind in 0usize..=MESSAGE_TYPES.len(), bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let msg_type = MESSAGE_TYPES.get(kind).copied().unwrap_or("sendtxrcncl");
        decode(msg_type, &bytes, bytes.len() as u64);
        // and reported as cut short
        decode(msg_type, &bytes, bytes.len() as u64 + 1);
    }

    /// Random bytes after a plausible start: a small CompactSize count, so that lists are walked.
    #[test]
    fn random_bytes_after_small_count(kind in 0usize..MESSAGE_TYPES.len(), count in 0u8..5, bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut payload = vec![count];
        payload.extend(bytes);
        decode(MESSAGE_TYPES[kind], &payload, payload.len() as u64);
    }

    /// Mutations of real payloads: never a panic; a changed payload that does not decode keeps its
    /// bytes and says why.
    #[test]
    fn mutated_real_payloads(which in 0usize..36, mutations in proptest::collection::vec(mutation(), 1..4)) {
        let (msg_type, original) = &samples()[which];
        let mut bytes = original.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode(msg_type, &bytes, bytes.len() as u64);
    }
}

/// Every strict prefix of every real payload is a decode error (except where Core accepts a
/// shorter message), and is flagged as truncated when the size says so.
#[test]
fn truncation_at_every_length() {
    for (msg_type, bytes) in samples() {
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            let m = decode(msg_type, prefix, bytes.len() as u64);
            assert!(m.truncated);
            assert_eq!(
                m.decode_error,
                format!("truncated: captured {cut} of {} bytes", bytes.len())
            );
            assert_eq!(m.raw, prefix);
            let m = decode(msg_type, prefix, cut as u64);
            if !tolerates_prefixes(msg_type) {
                assert!(m.body.is_none(), "{msg_type} cut at {cut} decoded");
                assert!(!m.decode_error.is_empty());
                assert_eq!(m.raw, prefix);
            }
        }
    }
}

/// Every single bit flip of the small real payloads decodes or fails cleanly.
#[test]
fn every_bit_flip_of_small_payloads() {
    for (msg_type, bytes) in samples() {
        if bytes.len() > 600 {
            continue;
        }
        for i in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            decode(msg_type, &flipped, flipped.len() as u64);
        }
    }
}

/// Inserting or deleting a byte anywhere in a real payload makes it fail (lists are
/// length-prefixed), except where the format tolerates it.
#[test]
fn insertions_and_deletions_are_errors() {
    for (msg_type, bytes) in samples() {
        for at in 0..bytes.len() {
            let mut deleted = bytes.clone();
            deleted.remove(at);
            decode(msg_type, &deleted, deleted.len() as u64);
            let mut inserted = bytes.clone();
            inserted.insert(at, 0xff);
            decode(msg_type, &inserted, inserted.len() as u64);
        }
        // Appending a byte is always trailing garbage, except where Core ignores it.
        let mut appended = bytes.clone();
        appended.push(0);
        let m = decode(msg_type, &appended, appended.len() as u64);
        if !matches!(*msg_type, "version" | "alert" | "reject") {
            assert!(m.body.is_none(), "{msg_type} + 1 byte decoded");
        }
    }
}

/// The largest message there is: a 4,000,000-byte block, cut and corrupted.
#[test]
fn max_size_block_mutations() {
    use bitcoin::hashes::Hash;
    use simulator::payloads::{max_size_block, Rng};
    let mut rng = Rng::new(11);
    let funding = bitcoin::OutPoint {
        txid: bitcoin::Txid::from_byte_array([3; 32]),
        vout: 0,
    };
    let block = max_size_block(
        &mut rng,
        bitcoin::BlockHash::all_zeros(),
        1,
        1_750_000_000,
        funding,
    );
    let bytes = bitcoin::consensus::encode::serialize(&block);
    assert_eq!(bytes.len(), 4_000_000);
    assert!(decode("block", &bytes, 4_000_000).body.is_some());
    // Cut anywhere: an error that keeps the bytes.
    for cut in [0, 1, 79, 80, 81, 500, 1_000, 32_568, 3_999_999] {
        let m = decode("block", &bytes[..cut], cut as u64);
        assert!(
            m.body.is_none() && !m.decode_error.is_empty(),
            "cut at {cut}"
        );
    }
    // Header bit flips still decode (another hash); flips in lengths fail cleanly or not at all.
    for at in [
        0usize, 4, 36, 68, 72, 76, 80, 81, 85, 86, 200, 400, 1_000, 2_000_000, 3_999_990,
    ] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x80;
        decode("block", &flipped, flipped.len() as u64);
    }
}
