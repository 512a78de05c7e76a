//! Every tracepoint payload from the simulator's ground truth: each argument bitcoind passes
//! must appear, exactly, at its documented place in the event's JSON rendering.

use extractor_common::{ArgKind, Tracepoint};
use nodescope_proto::json::to_json;
use nodescope_proto::p2p::DecodeOptions;
use nodescope_proto::{tracepoint_payload, Event};
use serde_json::{json, Value};
use simulator::truth::{read_truth, TruthArg};

/// Where each argument lands in the rendered payload, in argument order (TRACEPOINTS.md §4).
fn json_paths(tp: Tracepoint) -> (&'static str, &'static [&'static str]) {
    use Tracepoint as T;
    const MESSAGE: &[&str] = &[
        "peer.id",
        "peer.addr",
        "peer.conn_type",
        "message.msg_type",
        "message.size",
        "message",
    ];
    const COIN: &[&str] = &["txid", "vout", "height", "value", "coinbase"];
    match tp {
        T::NetInboundMessage => ("inbound_message", MESSAGE),
        T::NetOutboundMessage => ("outbound_message", MESSAGE),
        T::NetInboundConnection => (
            "inbound_connection",
            &[
                "peer.id",
                "peer.addr",
                "peer.conn_type",
                "network",
                "inbound_count",
            ],
        ),
        T::NetOutboundConnection => (
            "outbound_connection",
            &[
                "peer.id",
                "peer.addr",
                "peer.conn_type",
                "network",
                "outbound_count",
            ],
        ),
        T::NetEvictedInboundConnection => (
            "evicted_inbound_connection",
            &[
                "peer.id",
                "peer.addr",
                "peer.conn_type",
                "network",
                "connected_since",
            ],
        ),
        T::NetMisbehavingConnection => ("misbehaving_connection", &["peer_id", "message"]),
        T::NetClosedConnection => (
            "closed_connection",
            &[
                "peer.id",
                "peer.addr",
                "peer.conn_type",
                "network",
                "connected_since",
            ],
        ),
        T::ValidationBlockConnected => (
            "block_connected",
            &[
                "hash",
                "height",
                "transactions",
                "inputs",
                "sigop_cost",
                "duration_ns",
            ],
        ),
        T::UtxocacheFlush => (
            "utxocache_flush",
            &[
                "duration_us",
                "mode",
                "coins_count",
                "coins_mem_usage",
                "for_prune",
            ],
        ),
        T::UtxocacheAdd => ("utxocache_add", COIN),
        T::UtxocacheSpent => ("utxocache_spent", COIN),
        T::UtxocacheUncache => ("utxocache_uncache", COIN),
        T::CoinSelectionSelectedCoins => (
            "selected_coins",
            &["wallet", "algorithm", "target", "waste", "selected_value"],
        ),
        T::CoinSelectionNormalCreateTxInternal => (
            "normal_create_tx_internal",
            &["wallet", "success", "fee", "change_pos"],
        ),
        T::CoinSelectionAttemptingApsCreateTx => ("attempting_aps_create_tx", &["wallet"]),
        T::CoinSelectionApsCreateTxInternal => (
            "aps_create_tx_internal",
            &["wallet", "use_aps", "success", "fee", "change_pos"],
        ),
        T::MempoolAdded => ("mempool_added", &["txid", "vsize", "fee"]),
        T::MempoolRemoved => (
            "mempool_removed",
            &["txid", "reason", "vsize", "fee", "entry_time"],
        ),
        T::MempoolReplaced => (
            "mempool_replaced",
            &[
                "replaced_txid",
                "replaced_vsize",
                "replaced_fee",
                "replaced_entry_time",
                "replacement_id",
                "replacement_vsize",
                "replacement_fee",
                "replaced_by_transaction",
            ],
        ),
        T::MempoolRejected => ("mempool_rejected", &["txid", "reason"]),
    }
}

/// What the rendering of a ground-truth argument must be, by kind and place.
fn expected_json(tp: Tracepoint, index: usize, arg: &TruthArg) -> Value {
    let path = json_paths(tp).1[index];
    let enum_string =
        path == "peer.conn_type" || (tp == Tracepoint::MempoolRemoved && path == "reason");
    match (tp.args()[index], arg) {
        (ArgKind::Bool, TruthArg::Int(v)) => json!(*v != 0),
        (ArgKind::U32, TruthArg::Int(v)) if path == "network" => {
            json!(
                [
                    "unroutable",
                    "ipv4",
                    "ipv6",
                    "onion",
                    "i2p",
                    "cjdns",
                    "internal"
                ][*v as usize]
            )
        }
        (_, TruthArg::Int(v)) => json!(*v as i64),
        (ArgKind::CStr, TruthArg::Str(s)) if enum_string => json!(s.replace('-', "_")),
        (_, TruthArg::Str(s)) => json!(s),
        (ArgKind::Hash32, TruthArg::Bytes(b)) => {
            json!(b
                .iter()
                .rev()
                .map(|x| format!("{x:02x}"))
                .collect::<String>())
        }
        (kind, arg) => panic!("{tp} argument {index}: unexpected {kind:?} {arg:?}"),
    }
}

fn lookup<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |v, key| &v[key])
}

#[test]
fn every_tracepoint_payload_from_the_simulator_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let truth_path = dir.path().join("truth.jsonl");
    let binary = simulator::binary_path("bitcoind-sim-legacy").unwrap();
    let status = std::process::Command::new(binary)
        .arg("--truth")
        .arg(&truth_path)
        .arg("regtest-like")
        .status()
        .unwrap();
    assert!(status.success());
    let truth = read_truth(&truth_path).unwrap();
    let mut seen = std::collections::BTreeSet::new();

    for record in &truth {
        let tp = record.tracepoint().unwrap();
        seen.insert(tp);
        let converted = tracepoint_payload(tp, record.arg_values(), DecodeOptions::default());
        assert!(converted.error.is_empty(), "{tp}: {}", converted.error);
        assert!(
            converted.truncated_fields.is_empty(),
            "{tp}: {:?}",
            converted.truncated_fields
        );
        let event = Event {
            payload: Some(converted.payload),
            ..Event::default()
        };
        let rendered = to_json(&event);
        let (payload_name, paths) = json_paths(tp);
        let payload = &rendered[payload_name];
        assert!(payload.is_object(), "{tp}: no {payload_name} in {rendered}");
        for (index, arg) in record.args.iter().enumerate() {
            let path = paths[index];
            if tp.args()[index] == ArgKind::Bytes {
                // The P2P payload: decoded whole, of the size the tracepoint reported.
                let message = lookup(payload, path);
                let msg_type = record.args[3].as_str().unwrap();
                assert_eq!(
                    message["decode_error"],
                    json!(""),
                    "{tp} {msg_type}: {message}"
                );
                assert_eq!(message["truncated"], json!(false), "{tp} {msg_type}");
                assert_eq!(
                    message["size"],
                    json!(arg.as_bytes().unwrap().len()),
                    "{tp} {msg_type}"
                );
                continue;
            }
            assert_eq!(
                lookup(payload, path),
                &expected_json(tp, index, arg),
                "{tp} argument {index} at {path}"
            );
        }
        let category = event.category().unwrap();
        assert!(
            category.as_str().starts_with(tp.provider()),
            "{tp} published as {category}"
        );
    }
    assert_eq!(seen.len(), 20, "all tracepoints covered");
}
