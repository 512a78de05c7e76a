//! Every payload in the ground truth decodes with rust-bitcoin as the message type it is
//! announced as; arguments fit the catalogue; the required edge values are present.

mod common;

use std::collections::BTreeSet;

use bitcoin::p2p::message::NetworkMessage;
use common::*;
use extractor_common::{ArgKind, Tracepoint};
use simulator::payloads::decode_payload;
use simulator::TruthArg;

#[test]
fn truth_is_complete_valid_and_has_the_edge_values() {
    let records = legacy_truth("payloads", &[]);
    let mut msg_types = BTreeSet::new();
    let mut strings = BTreeSet::new();
    let mut networks = BTreeSet::new();
    let mut conn_types = BTreeSet::new();
    let mut replaced_with_tx = BTreeSet::new();
    let mut flush_modes = BTreeSet::new();
    let mut max_block = 0;
    let mut last_ts = 0;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert!(r.ts_ns >= last_ts && r.ts_ns > 1_600_000_000_000_000_000);
        last_ts = r.ts_ns;
        let tp = r
            .tracepoint()
            .unwrap_or_else(|| panic!("unknown tracepoint {}", r.tracepoint));
        assert_eq!(r.args.len(), tp.args().len(), "{tp}: argument count");
        for (arg, kind) in r.args.iter().zip(tp.args()) {
            let ok = match (arg, kind) {
                (TruthArg::Int(v), ArgKind::I64) => i64::try_from(*v).is_ok(),
                (TruthArg::Int(v), ArgKind::U64) => u64::try_from(*v).is_ok(),
                (TruthArg::Int(v), ArgKind::I32) => i32::try_from(*v).is_ok(),
                (TruthArg::Int(v), ArgKind::U32) => u32::try_from(*v).is_ok(),
                (TruthArg::Int(v), ArgKind::Bool) => *v == 0 || *v == 1,
                (TruthArg::Str(s), ArgKind::CStr) => s.is_ascii(),
                (TruthArg::Bytes(b), ArgKind::Hash32) => b.len() == 32,
                (TruthArg::Bytes(_), ArgKind::Bytes) => true,
                _ => false,
            };
            assert!(ok, "{tp}: {arg:?} is not a {kind:?}");
            if let TruthArg::Str(s) = arg {
                strings.insert(s.clone());
            }
        }
        match tp {
            Tracepoint::NetInboundMessage | Tracepoint::NetOutboundMessage => {
                let msg_type = r.args[3].as_str().unwrap();
                let data = r.args[5].as_bytes().unwrap();
                assert_eq!(
                    r.args[4].as_int().unwrap(),
                    data.len() as i128,
                    "size argument"
                );
                let msg =
                    decode_payload(msg_type, data).unwrap_or_else(|e| panic!("event {i}: {e:#}"));
                if let NetworkMessage::Block(b) = &msg {
                    assert!(
                        b.check_merkle_root() && b.check_witness_commitment(),
                        "block {i} is consistent"
                    );
                    max_block = max_block.max(data.len());
                }
                msg_types.insert(msg_type.to_string());
                conn_types.insert(r.args[2].as_str().unwrap().to_string());
            }
            Tracepoint::NetInboundConnection | Tracepoint::NetOutboundConnection => {
                networks.insert(r.args[3].as_int().unwrap());
            }
            Tracepoint::MempoolReplaced => {
                replaced_with_tx.insert(r.args[7].as_int().unwrap());
            }
            Tracepoint::UtxocacheFlush => {
                flush_modes.insert(r.args[1].as_int().unwrap());
            }
            _ => {}
        }
    }
    for t in [
        "version",
        "verack",
        "wtxidrelay",
        "sendaddrv2",
        "sendcmpct",
        "feefilter",
        "ping",
        "pong",
        "getheaders",
        "headers",
        "inv",
        "getdata",
        "tx",
        "cmpctblock",
        "block",
        "addr",
        "addrv2",
        "getaddr",
        "getcfcheckpt",
    ] {
        assert!(msg_types.contains(t), "no {t} message");
    }
    assert_eq!(max_block, 4_000_000, "largest block payload");
    assert!(
        networks.contains(&0) && networks.contains(&3),
        "networks {networks:?}"
    );
    for c in ["inbound", "manual", "outbound-full-relay"] {
        assert!(conn_types.contains(c), "{c}");
    }
    assert_eq!(replaced_with_tx, BTreeSet::from([0, 1]));
    assert_eq!(flush_modes, BTreeSet::from([0, 1, 2, 3]));
    for reason in [
        "expiry",
        "sizelimit",
        "reorg",
        "block",
        "conflict",
        "replaced",
    ] {
        assert!(strings.contains(reason), "removal reason {reason}");
    }
    for algo in [
        "bnb",
        "knapsack",
        "srd",
        "cg",
        "manual",
        "",
        "alice",
        "addr message size = 1001",
    ] {
        assert!(strings.contains(algo), "{algo:?}");
    }
    let has_len = |pred: &dyn Fn(&str) -> bool| strings.iter().any(|s| pred(s));
    assert!(has_len(&|s| s.len() == 12 && s == "getcfcheckpt"));
    assert!(
        has_len(&|s| s.len() == 68 && s.contains(".onion:")),
        "68-char Tor v3 addr:port"
    );
    assert!(
        has_len(&|s| s.len() == 118 && s.starts_with("mandatory-script-verify-flag-failed")),
        "118-char reject reason"
    );
    let misbehaving: Vec<&str> = records
        .iter()
        .filter(|r| r.tracepoint == "net:misbehaving_connection")
        .map(|r| r.args[1].as_str().unwrap())
        .collect();
    assert!(misbehaving.contains(&""), "empty misbehaving message");
    assert!(
        misbehaving.iter().any(|m| m.len() == 128),
        "128-char misbehaving message: {misbehaving:?}"
    );

    // Plausible order: replaced -> removed(replaced) -> added.
    for (i, r) in records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.tracepoint == "mempool:replaced")
    {
        let txid = r.args[0].as_bytes().unwrap();
        let removed = records[i..]
            .iter()
            .position(|x| x.tracepoint == "mempool:removed" && x.args[0].as_bytes() == Some(txid))
            .expect("replaced tx is removed");
        assert_eq!(records[i + removed].args[1].as_str(), Some("replaced"));
        assert!(records[i + removed..]
            .iter()
            .any(|x| x.tracepoint == "mempool:added"));
    }
}

#[test]
fn content_is_deterministic_per_seed() {
    let strip = |v: Vec<simulator::TruthRecord>| {
        v.into_iter()
            .map(|r| (r.tracepoint, r.args))
            .collect::<Vec<_>>()
    };
    let a = strip(legacy_truth("seed-a", &["--seed", "5"]));
    let b = strip(legacy_truth("seed-b", &["--seed", "5"]));
    let c = strip(legacy_truth("seed-c", &["--seed", "6"]));
    assert_eq!(a, b);
    assert_ne!(a, c);
}
