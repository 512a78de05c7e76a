//! `extractor rpc` against the real bitcoind: every payload equals, field for field, the answer
//! it was made from (recorded by a proxy between the two); cookie auth across a restart; a
//! wrong password; bitcoind down at the start; one call only; a large address manager in parts;
//! ZMQ notifications matching RPC, and a ZMQ gap counted; gettxoutsetinfo from the
//! coinstatsindex within the subsidy schedule, and not called without the index.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodescope_proto::event::Payload;
use nodescope_proto::rpc_call::Result as Answer;
use nodescope_proto::{Event, RpcCall, RpcFailureKind, ZmqNotification};
use nodescope_regtest::{Node, NodeConfig, Transport};
use serde_json::{json, Value};

use common::blocking;
use common::bus::Collected;

const WAIT: Duration = Duration::from_secs(30);

/// The RPC calls of the events received so far, with the event.
fn calls(events: &[Event]) -> Vec<(Event, RpcCall)> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::RpcCall(call)) => Some((e.clone(), call.clone())),
            _ => None,
        })
        .collect()
}

fn zmq_notifications(events: &[Event]) -> Vec<ZmqNotification> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::ZmqNotification(n)) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn rpc_args<'a>(node: &'a Node, nats: &'a str, cookie: &'a str, port: &'a str) -> Vec<String> {
    let _ = node;
    [
        "--chain",
        "regtest",
        "--rpc-url",
        port,
        "--rpc-cookie-file",
        cookie,
        "--nats-url",
        nats,
        "--node-id",
        "rpc-node",
        "--stats-interval",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn url_of(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Records every JSON-RPC exchange passing through it: (method, the answer's `result`).
struct RecordingProxy {
    port: u16,
    answers: Arc<Mutex<Vec<(String, Value)>>>,
}

impl RecordingProxy {
    fn start(upstream: u16) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers = Arc::new(Mutex::new(Vec::new()));
        let sink = answers.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || relay(client, upstream, &sink));
            }
        });
        RecordingProxy { port, answers }
    }

    fn answers_of(&self, method: &str) -> Vec<Value> {
        let answers = self.answers.lock().unwrap();
        answers
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn relay(mut client: TcpStream, upstream: u16, sink: &Mutex<Vec<(String, Value)>>) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let mut to_server = server.try_clone().unwrap();
    let mut from_client = client.try_clone().unwrap();
    let request = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 65536];
        while let Ok(n) = from_client.read(&mut chunk) {
            if n == 0 || to_server.write_all(&chunk[..n]).is_err() {
                break;
            }
            seen.extend_from_slice(&chunk[..n]);
        }
        let _ = to_server.shutdown(std::net::Shutdown::Write);
        seen
    });
    let mut response = Vec::new();
    let mut chunk = [0u8; 65536];
    while let Ok(n) = server.read(&mut chunk) {
        if n == 0 || client.write_all(&chunk[..n]).is_err() {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        if complete(&response) {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
    let request = request.join().unwrap();
    if let (Some(request), Some(response)) = (body(&request), body(&response)) {
        let request: Value = serde_json::from_slice(request).unwrap();
        let response: Value = serde_json::from_slice(response).unwrap();
        let method = request["method"].as_str().unwrap_or_default().to_string();
        sink.lock()
            .unwrap()
            .push((method, response["result"].clone()));
    }
}

/// The HTTP message's body, once all of it (by Content-Length) is there.
fn body(message: &[u8]) -> Option<&[u8]> {
    let end = message.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&message[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    message.get(end..end + length)
}

fn complete(message: &[u8]) -> bool {
    body(message).is_some()
}

/// `ours` (a payload as JSON) equals `theirs` (bitcoind's answer) key for key, both ways;
/// numbers are compared as numbers (bitcoind prints 1, the payload holds 1.0).
fn assert_same(path: &str, ours: &Value, theirs: &Value) {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            assert_eq!(a.as_f64(), b.as_f64(), "{path}: {a} != {b}")
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => assert_same(&format!("{path}.{key}"), x, y),
                    (x, y) => panic!("{path}.{key}: payload {x:?}, bitcoind {y:?}"),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: lengths");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_same(&format!("{path}[{i}]"), x, y);
            }
        }
        _ => assert_eq!(ours, theirs, "{path}"),
    }
}

/// The answer as bitcoind would print it, from the payload.
fn as_json(answer: &Answer) -> Value {
    match answer {
        Answer::PeerInfo(a) => serde_json::to_value(a),
        Answer::MempoolInfo(a) => serde_json::to_value(a),
        Answer::NetTotals(a) => serde_json::to_value(a),
        Answer::MemoryInfo(a) => serde_json::to_value(a),
        Answer::AddrmanInfo(a) => serde_json::to_value(a),
        Answer::Uptime(a) => serde_json::to_value(a),
        Answer::BlockchainInfo(a) => serde_json::to_value(a),
        Answer::NetworkInfo(a) => serde_json::to_value(a),
        Answer::ChainTxStats(a) => serde_json::to_value(a),
        Answer::OrphanTxs(a) => serde_json::to_value(a),
        Answer::IndexInfo(a) => serde_json::to_value(a),
        Answer::TxOutSetInfo(a) => serde_json::to_value(a),
        Answer::RawAddrman(part) => {
            let mut tables = json!({"new": {}, "tried": {}});
            for e in &part.entries {
                let mut entry = json!({
                    "address": e.address, "port": e.port, "network": e.network,
                    "services": e.services, "time": e.time, "source": e.source,
                    "source_network": e.source_network,
                });
                if let Some(asn) = e.mapped_as {
                    entry["mapped_as"] = asn.into();
                }
                if let Some(asn) = e.source_mapped_as {
                    entry["source_mapped_as"] = asn.into();
                }
                tables[&e.table][&e.bucket_position] = entry;
            }
            Ok(tables)
        }
        Answer::Failure(f) => panic!("a failure: {f:?}"),
    }
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_payload_is_the_answer_it_came_from() {
    let node = blocking(|| {
        Node::start(
            NodeConfig::new()
                .wallet(true)
                .zmq(true)
                .v2transport(true)
                .arg("-txindex")
                .arg("-coinstatsindex"),
        )
    })
    .unwrap();
    let other = blocking(|| Node::start(NodeConfig::new().v2transport(true))).unwrap();
    blocking(|| {
        node.connect_to(&other)?;
        node.mature_coins()?;
        node.send_to_address(&node.new_address()?, 1.0)?;
        node.rpc("addpeeraddress", json!(["8.8.8.8", 8333]))?;
        node.rpc("addpeeraddress", json!(["1.1.1.1", 8333, true]))
    })
    .unwrap();
    let mut raw = blocking(|| node.raw_peer(Transport::V1)).unwrap();
    // A transaction whose parent the node has never seen: an orphan from the raw peer.
    blocking(|| raw.send_message(&orphan())).unwrap();

    let proxy = RecordingProxy::start(node.rpc_port());
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), "rpc-node").await;
    let cookie = node.cookie_path().display().to_string();
    let mut args = rpc_args(&node, &nats.url(), &cookie, &url_of(proxy.port));
    args.extend(
        [
            "--interval",
            "300ms",
            "--slow-interval",
            "300ms",
            "--no-zmq",
        ]
        .map(String::from),
    );
    let (mut extractor, _pause) = common::start_rpc_extractor(&args);

    let methods = nodescope_proto::rpc::Method::ALL;
    let seen = extractor
        .alongside(bus.wait_for("an answer of every method", WAIT, |events| {
            let answered: std::collections::BTreeSet<String> = events
                .iter()
                .filter_map(|e| match &e.payload {
                    Some(Payload::RpcCall(c)) if e.error.is_empty() => Some(c.method.clone()),
                    _ => None,
                })
                .collect();
            (answered.len() == methods.len()).then_some(answered)
        }))
        .await;
    assert_eq!(seen.len(), methods.len());

    // Each event is compared with the answer it was made from: the n-th answer of a method
    // through the proxy is the n-th event of that method.
    let mut per_method: BTreeMap<String, Vec<RpcCall>> = BTreeMap::new();
    for (event, call) in calls(&bus.events()) {
        assert!(event.error.is_empty(), "{}: {}", call.method, event.error);
        assert_eq!(event.chain, "regtest");
        assert!(
            call.unknown_fields.is_empty(),
            "{}: {:?}",
            call.method,
            call.unknown_fields
        );
        assert!(call.duration_ns > 0 && call.reply_bytes > 0, "{call:?}");
        per_method
            .entry(call.method.clone())
            .or_default()
            .push(call);
    }
    for (method, events) in &per_method {
        let answers = proxy.answers_of(method);
        assert!(
            answers.len() >= events.len(),
            "{method}: more events than answers"
        );
        for (call, answer) in events.iter().zip(&answers) {
            assert_same(method, &as_json(call.result.as_ref().unwrap()), answer);
        }
    }
    // What the node was made to have is there.
    let last = |method: &str| per_method[method].last().unwrap().result.clone().unwrap();
    let Answer::PeerInfo(peers) = last("getpeerinfo") else {
        panic!()
    };
    let transports: std::collections::BTreeSet<&str> = peers
        .peers
        .iter()
        .map(|p| p.transport_protocol_type.as_str())
        .collect();
    assert_eq!(
        transports,
        ["v1", "v2"].into(),
        "one v2 peer and the raw v1 one"
    );
    let Answer::IndexInfo(indexes) = last("getindexinfo") else {
        panic!()
    };
    assert!(
        indexes.indexes.contains_key("txindex") && indexes.indexes.contains_key("coinstatsindex")
    );
    let Answer::RawAddrman(addrman) = last("getrawaddrman") else {
        panic!()
    };
    assert_eq!((addrman.new_total, addrman.tried_total), (1, 1));
    let Answer::MempoolInfo(mempool) = last("getmempoolinfo") else {
        panic!()
    };
    assert_eq!(mempool.size, 1);
    extractor.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_read_again_after_a_restart_and_zmq_follows() {
    let mut node = blocking(|| Node::start(NodeConfig::new().zmq(true))).unwrap();
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), "rpc-node").await;
    let cookie = node.cookie_path().display().to_string();
    let mut args = rpc_args(&node, &nats.url(), &cookie, &url_of(node.rpc_port()));
    args.extend(["--interval", "200ms", "--calls", "uptime,getblockchaininfo"].map(String::from));
    let (mut extractor, _pause) = common::start_rpc_extractor(&args);
    extractor.alongside(mined_and_notified(&node, &bus)).await;
    let old_cookie = std::fs::read_to_string(node.cookie_path()).unwrap();
    blocking(|| node.restart()).unwrap();
    assert_ne!(
        std::fs::read_to_string(node.cookie_path()).unwrap(),
        old_cookie
    );
    // Answers again, with the new cookie: an uptime after the failures of the restart.
    extractor
        .alongside(
            bus.wait_for("an uptime of the restarted node", WAIT, |events| {
                // The calls failed while bitcoind restarted, and answer again after.
                let all = calls(events);
                let restarted = all.iter().rposition(|(e, _)| !e.error.is_empty())?;
                all[restarted + 1..]
                    .iter()
                    .any(|(_, c)| matches!(c.result, Some(Answer::Uptime(_))))
                    .then_some(())
            }),
        )
        .await;
    // And ZMQ is subscribed to the new process.
    extractor.alongside(mined_and_notified(&node, &bus)).await;
    extractor.stop().await.unwrap();
}

fn orphan() -> nodescope_regtest::bitcoin::p2p::message::NetworkMessage {
    use nodescope_regtest::bitcoin::{
        absolute, hashes::Hash, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction,
        TxIn, TxOut, Txid, Witness,
    };
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([0x42; 32]), 0),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(10_000),
            script_pubkey: ScriptBuf::new_op_return([1u8; 20]),
        }],
    };
    nodescope_regtest::bitcoin::p2p::message::NetworkMessage::Tx(tx)
}

/// Mines a block at a time until one's `hashblock` arrives (the first may come before the
/// subscription is in place: ZMQ's "slow joiner"); returns its hash.
async fn mined_and_notified(node: &Node, bus: &Collected) -> String {
    for _ in 0..20 {
        let hash = blocking(|| node.generate(1)).unwrap().remove(0);
        let seen = bus
            .find_within(Duration::from_secs(1), |events| {
                zmq_notifications(events)
                    .iter()
                    .any(|n| n.topic == "hashblock" && hex(n) == hash)
                    .then_some(())
            })
            .await;
        if seen.is_some() {
            return hash;
        }
    }
    panic!("no hashblock for any of 20 blocks");
}

/// `-rpcauth=<user>:<salt>$<HMAC-SHA256(salt, password)>`, as share/rpcauth/rpcauth.py makes it.
fn rpcauth(user: &str, password: &str) -> String {
    use nodescope_regtest::bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
    let salt = "5f2c1e0d9a8b7c6d5e4f3a2b1c0d9e8f";
    let mut engine = hmac::HmacEngine::<sha256::Hash>::new(salt.as_bytes());
    engine.input(password.as_bytes());
    let mac = hmac::Hmac::<sha256::Hash>::from_engine(engine);
    format!("-rpcauth={user}:{salt}${mac}")
}

fn hex(n: &ZmqNotification) -> String {
    use nodescope_proto::zmq_notification::Body;
    match &n.body {
        Some(Body::Hash(h)) => h.iter().map(|b| format!("{b:02x}")).collect(),
        Some(Body::Sequence(s)) => s.hash.iter().map(|b| format!("{b:02x}")).collect(),
        _ => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpcauth_user_is_let_in_and_a_wrong_password_is_a_clear_failure() {
    let node =
        blocking(|| Node::start(NodeConfig::new().arg(rpcauth("nodescope", "s3cret")))).unwrap();
    let nats = nodescope_bus::test_server::NatsServer::start();
    let user_args = |node_id: &str, password: &str| -> Vec<String> {
        [
            "--chain",
            "regtest",
            "--rpc-url",
            &url_of(node.rpc_port()),
            "--rpc-user",
            "nodescope",
            "--rpc-password",
            password,
            "--nats-url",
            &nats.url(),
            "--node-id",
            node_id,
            "--interval",
            "200ms",
            "--calls",
            "uptime",
            "--stats-interval",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let good = Collected::start(&nats.url(), "right").await;
    let (mut right, _pause) = common::start_rpc_extractor(&user_args("right", "s3cret"));
    right
        .alongside(good.stats_when(|s| s.rpc_calls.get("uptime").is_some_and(|n| *n >= 2)))
        .await;
    right.stop().await.unwrap();

    let bus = Collected::start(&nats.url(), "rpc-node").await;
    let (mut extractor, _pause) = common::start_rpc_extractor(&user_args("rpc-node", "wrong"));
    let stats = extractor
        .alongside(bus.stats_when(|s| s.rpc_failures.get("uptime").is_some_and(|n| *n >= 3)))
        .await;
    assert!(stats.rpc_calls.is_empty(), "{stats:?}");
    let (event, call) = calls(&bus.events()).remove(0);
    let Some(Answer::Failure(failure)) = call.result else {
        panic!("{call:?}")
    };
    assert_eq!(
        (failure.kind, failure.code),
        (RpcFailureKind::Auth as i32, 401)
    );
    assert!(
        event.error.contains("--rpc-user \"nodescope\""),
        "{}",
        event.error
    );
    extractor.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitcoind_down_at_the_start_is_waited_for_and_only_the_chosen_call_is_made() {
    let mut node = blocking(|| Node::start(NodeConfig::new())).unwrap();
    blocking(|| node.stop()).unwrap();
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), "rpc-node").await;
    let cookie = node.cookie_path().display().to_string();
    let mut args = rpc_args(&node, &nats.url(), &cookie, &url_of(node.rpc_port()));
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    args.extend(
        [
            "--interval",
            "200ms",
            "--slow-interval",
            "200ms",
            "--calls",
            "getmempoolinfo",
            "--ready-file",
            ready.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let (mut extractor, _pause) = common::start_rpc_extractor(&args);
    let stats = extractor
        .alongside(bus.stats_when(|s| {
            s.rpc_failures
                .get("getmempoolinfo")
                .is_some_and(|n| *n >= 2)
        }))
        .await;
    assert!(stats.rpc_calls.is_empty());
    let (event, call) = calls(&bus.events()).remove(0);
    let Some(Answer::Failure(failure)) = call.result else {
        panic!("{call:?}")
    };
    assert_eq!(
        failure.kind,
        RpcFailureKind::Unreachable as i32,
        "{}",
        event.error
    );
    assert!(!ready.exists(), "ready before bitcoind answered");
    blocking(|| node.restart()).unwrap();
    extractor
        .alongside(bus.stats_when(|s| s.rpc_calls.get("getmempoolinfo").is_some_and(|n| *n >= 2)))
        .await;
    let methods: std::collections::BTreeSet<String> = calls(&bus.events())
        .into_iter()
        .map(|(_, c)| c.method)
        .collect();
    assert_eq!(methods, ["getmempoolinfo".to_string()].into());
    assert!(ready.exists(), "--ready-file once bitcoind answers");
    extractor.stop().await.unwrap();
    assert!(!ready.exists(), "--ready-file removed at the stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zmq_notifications_name_the_blocks_and_transactions_rpc_names() {
    let node = blocking(|| Node::start(NodeConfig::new().wallet(true).zmq(true))).unwrap();
    blocking(|| node.mature_coins()).unwrap();
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), "rpc-node").await;
    let cookie = node.cookie_path().display().to_string();
    let mut args = rpc_args(&node, &nats.url(), &cookie, &url_of(node.rpc_port()));
    args.extend(["--interval", "200ms", "--calls", "uptime"].map(String::from));
    let (mut extractor, _pause) = common::start_rpc_extractor(&args);
    extractor.alongside(mined_and_notified(&node, &bus)).await;

    let txid = blocking(|| node.send_to_address(&node.new_address()?, 1.0)).unwrap();
    let block = blocking(|| node.generate(1)).unwrap().remove(0);
    assert_eq!(blocking(|| node.best_block_hash()).unwrap(), block);
    let seen = extractor
        .alongside(
            bus.wait_for("hashtx, hashblock and sequence of them", WAIT, |events| {
                let notes = zmq_notifications(events);
                let has = |topic: &str, hash: &str, label: Option<&str>| {
                    notes.iter().any(|n| {
                        n.topic == topic
                            && hex(n) == hash
                            && label.is_none_or(|l| match &n.body {
                                Some(nodescope_proto::zmq_notification::Body::Sequence(s)) => {
                                    s.label == l
                                }
                                _ => false,
                            })
                    })
                };
                (has("hashtx", &txid, None)
                    && has("hashblock", &block, None)
                    && has("sequence", &txid, Some("A"))
                    && has("sequence", &block, Some("C")))
                .then_some(notes)
            }),
        )
        .await;
    // The transaction's A carries the mempool sequence; the block's C none.
    let added = seen
        .iter()
        .find_map(|n| match &n.body {
            Some(nodescope_proto::zmq_notification::Body::Sequence(s)) if s.label == "A" => {
                Some(s.clone())
            }
            _ => None,
        })
        .unwrap();
    assert!(added.mempool_sequence.is_some());
    for n in &seen {
        assert_eq!(n.missed_before, 0, "{n:?}");
    }
    let events = bus.events();
    let first_hashblock = events
        .iter()
        .find(|e| matches!(&e.payload, Some(Payload::ZmqNotification(n)) if n.topic == "hashblock"))
        .unwrap();
    assert_eq!(
        (
            first_hashblock.chain.as_str(),
            first_hashblock.node_id.as_str()
        ),
        ("regtest", "rpc-node")
    );
    assert!(first_hashblock.error.is_empty());
    extractor.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zmq_gap_is_counted_when_the_reads_stop() {
    // A high-water mark of 1: what the socket buffers cannot take is dropped at once.
    let node =
        blocking(|| Node::start(NodeConfig::new().zmq(true).arg("-zmqpubhashblockhwm=1"))).unwrap();
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), "rpc-node").await;
    let cookie = node.cookie_path().display().to_string();
    let mut args = rpc_args(&node, &nats.url(), &cookie, &url_of(node.rpc_port()));
    args.extend(["--interval", "200ms", "--calls", "uptime"].map(String::from));
    let (mut extractor, pause) = common::start_rpc_extractor(&args);
    extractor.alongside(mined_and_notified(&node, &bus)).await;

    pause.send(true).unwrap();
    let mined = 5000;
    for _ in 0..mined / 500 {
        blocking(|| node.generate(500)).unwrap();
    }
    pause.send(false).unwrap();
    let last = extractor.alongside(mined_and_notified(&node, &bus)).await;
    let hashblocks: Vec<ZmqNotification> = zmq_notifications(&bus.events())
        .into_iter()
        .filter(|n| n.topic == "hashblock")
        .collect();
    let missed: u64 = hashblocks.iter().map(|n| n.missed_before as u64).sum();
    assert!(missed > 0, "{} hashblocks, none missed", hashblocks.len());
    // Every counter value from the first to the last is either received or counted missed.
    let (first, end) = (
        hashblocks[0].zmq_sequence as u64,
        hashblocks.last().unwrap().zmq_sequence as u64,
    );
    assert_eq!(hex(hashblocks.last().unwrap()), last);
    assert_eq!(hashblocks.len() as u64 + missed, end - first + 1);
    let stats = extractor
        .alongside(bus.stats_when(|s| s.zmq_missed.get("hashblock") == Some(&missed)))
        .await;
    assert_eq!(stats.zmq_received["hashblock"], hashblocks.len() as u64);
    extractor.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_address_manager_arrives_in_parts_within_the_payload_limit() {
    let node = blocking(|| Node::start(NodeConfig::new())).unwrap();
    // 12,000 public addresses in 12,000 /16s: far more than one 512 KiB part holds.
    blocking(|| {
        std::thread::scope(|scope| {
            for thread in 0..4u32 {
                let node = &node;
                scope.spawn(move || {
                    for i in (thread..12_000).step_by(4) {
                        let address =
                            format!("{}.{}.{}.1", 11 + i / 256 % 80, i % 256, 7 + i / 20_480);
                        node.rpc("addpeeraddress", json!([address, 8333])).unwrap();
                    }
                });
            }
        })
    });
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), "rpc-node").await;
    let cookie = node.cookie_path().display().to_string();
    let mut args = rpc_args(&node, &nats.url(), &cookie, &url_of(node.rpc_port()));
    args.extend(["--slow-interval", "60s", "--calls", "getrawaddrman"].map(String::from));
    let (mut extractor, _pause) = common::start_rpc_extractor(&args);
    let parts = extractor
        .alongside(
            bus.wait_for("every part of one getrawaddrman answer", WAIT, |events| {
                let parts: Vec<nodescope_proto::RawAddrmanPart> = calls(events)
                    .into_iter()
                    .filter_map(|(_, c)| match c.result {
                        Some(Answer::RawAddrman(p)) if p.answer_id == 1 => Some(p),
                        _ => None,
                    })
                    .collect();
                (!parts.is_empty() && parts.len() == parts[0].parts as usize).then_some(parts)
            }),
        )
        .await;
    assert!(parts.len() > 1, "split: {} part(s)", parts.len());
    for (i, (event, part)) in bus
        .events()
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::RpcCall(RpcCall {
                result: Some(Answer::RawAddrman(p)),
                ..
            })) => Some((e, p)),
            _ => None,
        })
        .enumerate()
    {
        use prost::Message;
        assert_eq!(part.part as usize, i);
        assert!(
            event.encoded_len() < 600 * 1024,
            "part {i}: {} bytes",
            event.encoded_len()
        );
    }
    // Put together, the parts are bitcoind's answer (the address manager is still).
    let whole = RpcCall {
        result: Some(Answer::RawAddrman(nodescope_proto::RawAddrmanPart {
            entries: parts.iter().flat_map(|p| p.entries.clone()).collect(),
            ..parts[0].clone()
        })),
        ..RpcCall::default()
    };
    let answer = blocking(|| node.rpc("getrawaddrman", json!([]))).unwrap();
    assert_same(
        "getrawaddrman",
        &as_json(whole.result.as_ref().unwrap()),
        &answer,
    );
    let total = parts[0].new_total + parts[0].tried_total;
    assert!(total > 10_000, "{total} addresses");
    extractor.stop().await.unwrap();
}

/// The gettxoutsetinfo payloads among `events`, each with its event's error mark.
fn utxo_sets(events: &[Event]) -> Vec<nodescope_proto::TxOutSetInfo> {
    calls(events)
        .into_iter()
        .filter_map(|(_, c)| match c.result {
            Some(Answer::TxOutSetInfo(info)) => Some(info),
            _ => None,
        })
        .collect()
}

/// `args` with another `--node-id`.
fn with_node_id(mut args: Vec<String>, node_id: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == "--node-id").unwrap() + 1;
    args[at] = node_id.to_string();
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txoutsetinfo_comes_from_the_coinstatsindex_within_the_subsidy_schedule() {
    let node = blocking(|| Node::start(NodeConfig::new().arg("-coinstatsindex"))).unwrap();
    // 200 blocks on the genesis block: past regtest's first halving, at 150.
    let height = 200;
    blocking(|| node.generate(height)).unwrap();
    blocking(|| {
        nodescope_regtest::wait_until("the coinstatsindex synced at 200", WAIT, || {
            let index = node.rpc("getindexinfo", json!(["coinstatsindex"]))?;
            let index = &index["coinstatsindex"];
            Ok((index["synced"] == true && index["best_block_height"] == height).then_some(()))
        })
    })
    .unwrap();

    let proxy = RecordingProxy::start(node.rpc_port());
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), "rpc-node").await;
    let cookie = node.cookie_path().display().to_string();
    let mut args = rpc_args(&node, &nats.url(), &cookie, &url_of(proxy.port));
    args.extend(
        [
            "--slow-interval",
            "300ms",
            "--calls",
            "getindexinfo,gettxoutsetinfo",
            "--no-zmq",
        ]
        .map(String::from),
    );
    let (mut extractor, _pause) = common::start_rpc_extractor(&args);
    extractor
        .alongside(bus.wait_for("two gettxoutsetinfo answers", WAIT, |events| {
            (utxo_sets(events).len() >= 2).then_some(())
        }))
        .await;
    extractor.stop().await.unwrap();

    // Each payload is the answer it was made from, key for key.
    let events = bus.events();
    let published: Vec<RpcCall> = calls(&events)
        .into_iter()
        .filter(|(_, c)| c.method == "gettxoutsetinfo")
        .map(|(event, call)| {
            assert!(event.error.is_empty(), "{}", event.error);
            assert!(call.unknown_fields.is_empty(), "{:?}", call.unknown_fields);
            call
        })
        .collect();
    let answers = proxy.answers_of("gettxoutsetinfo");
    assert!(answers.len() >= published.len());
    for (call, answer) in published.iter().zip(&answers) {
        assert_same(
            "gettxoutsetinfo",
            &as_json(call.result.as_ref().unwrap()),
            answer,
        );
    }
    // Read from the index: its keys, not the scan's; and the supply within the schedule.
    let info = utxo_sets(&events).remove(0);
    assert_eq!(info.height, u64::from(height));
    assert_eq!(
        hex_of(&info.bestblock),
        blocking(|| node.best_block_hash()).unwrap()
    );
    assert!(info.block_info.is_some() && info.transactions.is_none() && info.disk_size.is_none());
    assert!(
        info.hash_serialized_3.is_none() && info.muhash.is_none(),
        "hash_type none"
    );
    // Blocks 0 to 149 at 50 BTC, 150 to 200 at 25.
    let limit = 150.0 * 50.0 + 51.0 * 25.0;
    assert!(
        info.total_amount <= limit,
        "{} > {limit}",
        info.total_amount
    );
    // Every subsidy was claimed; only the genesis block's 50 cannot be spent.
    let unspendable = info.total_unspendable_amount.unwrap();
    assert_eq!((info.total_amount, unspendable), (limit - 50.0, 50.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_coinstatsindex_txoutsetinfo_is_called_only_when_asked_to() {
    let node = blocking(|| Node::start(NodeConfig::new())).unwrap();
    blocking(|| node.generate(3)).unwrap();
    let proxy = RecordingProxy::start(node.rpc_port());
    let nats = nodescope_bus::test_server::NatsServer::start();
    let cookie = node.cookie_path().display().to_string();
    let mut args = rpc_args(&node, &nats.url(), &cookie, &url_of(proxy.port));
    args.extend(["--slow-interval", "200ms", "--no-zmq"].map(String::from));

    // Auto, every method: getindexinfo (all of them polled) shows no coinstatsindex. And auto
    // with gettxoutsetinfo alone: the extractor asks getindexinfo itself, and publishes nothing.
    for (node_id, calls_wanted) in [("auto-all", "all"), ("auto-alone", "gettxoutsetinfo")] {
        let bus = Collected::start(&nats.url(), node_id).await;
        let mut args = with_node_id(args.clone(), node_id);
        args.extend(["--calls", calls_wanted].map(String::from));
        let before = proxy.answers_of("getindexinfo").len();
        let (mut extractor, _pause) = common::start_rpc_extractor(&args);
        // Three slow polls have asked getindexinfo.
        extractor
            .alongside(async {
                tokio::task::block_in_place(|| {
                    nodescope_regtest::wait_until("getindexinfo asked 3 times", WAIT, || {
                        Ok((proxy.answers_of("getindexinfo").len() >= before + 3).then_some(()))
                    })
                })
                .unwrap_or_else(|e| panic!("{node_id}: {e}"))
            })
            .await;
        extractor.stop().await.unwrap();
        assert!(
            proxy.answers_of("gettxoutsetinfo").is_empty(),
            "{node_id}: gettxoutsetinfo called without the index"
        );
        let methods: std::collections::BTreeSet<String> = calls(&bus.events())
            .into_iter()
            .map(|(_, c)| c.method)
            .collect();
        assert!(
            !methods.contains("gettxoutsetinfo"),
            "{node_id}: {methods:?}"
        );
        if calls_wanted == "gettxoutsetinfo" {
            assert!(
                methods.is_empty(),
                "the probe is not published: {methods:?}"
            );
        }
    }

    // `always`: bitcoind scans the set, and says so with the scan's keys.
    let bus = Collected::start(&nats.url(), "always").await;
    let mut always = with_node_id(args.clone(), "always");
    always.extend(["--calls", "gettxoutsetinfo", "--txoutsetinfo", "always"].map(String::from));
    let (mut extractor, _pause) = common::start_rpc_extractor(&always);
    let info = extractor
        .alongside(bus.wait_for("a scanned gettxoutsetinfo", WAIT, |events| {
            utxo_sets(events).into_iter().next()
        }))
        .await;
    extractor.stop().await.unwrap();
    let answer = &proxy.answers_of("gettxoutsetinfo")[0];
    assert_same(
        "gettxoutsetinfo",
        &as_json(&Answer::TxOutSetInfo(info.clone())),
        answer,
    );
    assert_eq!((info.height, info.transactions), (3, Some(3)));
    assert!(info.block_info.is_none() && info.total_unspendable_amount.is_none());
    assert_eq!(info.total_amount, 150.0);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
