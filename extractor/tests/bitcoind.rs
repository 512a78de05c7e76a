//! The extractor on a real Bitcoin Core v30.0 (regtest, loopback): every tracepoint regtest can
//! fire, observed through NATS, each field checked against what RPC says of the same thing.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use nodescope_proto::event::Payload;
use nodescope_proto::json::hex;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{ConnectionType, Network, Peer, RemovalReason};
use nodescope_regtest::bitcoin::p2p::address::Address;
use nodescope_regtest::bitcoin::p2p::message::NetworkMessage;
use nodescope_regtest::bitcoin::p2p::ServiceFlags;
use nodescope_regtest::serde_json::{json, Value};
use nodescope_regtest::{p2p::payload, Node, NodeConfig, Transport, DEFAULT_WALLET};

use common::bus::Collected;
use common::start_extractor;

/// Blocking harness calls (RPC, raw sockets) off the async workers, so the extractor running in
/// this process keeps reading meanwhile.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

/// A private copy of bitcoind: tracing is by path, so tests running side by side must not
/// trace one another's nodes.
fn private_bitcoind(dir: &Path) -> PathBuf {
    let source = nodescope_regtest::bin_dir()
        .expect("Bitcoin Core is installed (cargo xtask setup)")
        .join("bitcoind");
    let copy = dir.join("bitcoind");
    std::fs::copy(&source, &copy).expect("copying bitcoind");
    copy
}

fn sats(btc: &Value) -> i64 {
    (btc.as_f64().expect("an amount") * 1e8).round() as i64
}

fn peer_of(node: &Node, addr: SocketAddr) -> Value {
    blocking(|| node.peer_info(addr))
        .expect("getpeerinfo")
        .unwrap_or_else(|| panic!("{addr} is not in getpeerinfo"))
}

/// getpeerinfo's `network`, as the tracepoints number them.
fn network(peer: &Value) -> Network {
    match peer["network"].as_str().unwrap() {
        "not_publicly_routable" => Network::Unroutable,
        "ipv4" => Network::Ipv4,
        "ipv6" => Network::Ipv6,
        "onion" => Network::Onion,
        "i2p" => Network::I2p,
        "cjdns" => Network::Cjdns,
        "internal" => Network::Internal,
        other => panic!("getpeerinfo network {other:?}"),
    }
}

fn same_peer(peer: &Option<Peer>, id: i64) -> bool {
    peer.as_ref().is_some_and(|p| p.id == id)
}

const NODE: &str = "regtest-e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tracepoint_regtest_fires_arrives_with_the_values_rpc_reports() {
    common::assert_root();
    let dir = tempfile::tempdir().unwrap();
    let bitcoind = private_bitcoind(dir.path());
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), NODE).await;
    let mut extractor = start_extractor(&[
        "ebpf",
        "--bitcoind-path",
        bitcoind.to_str().unwrap(),
        "--node-id",
        NODE,
        "--nats-url",
        &nats.url(),
        "--stats-interval",
        "1",
    ]);
    let traced = blocking(|| Node::start(NodeConfig::new().wallet(true).bitcoind(&bitcoind)))
        .expect("starting the traced node");
    let other = blocking(|| Node::start(NodeConfig::new())).expect("starting its peer");
    extractor
        .alongside(bus.stats_when(|s| s.attached_locations == 20))
        .await;

    // Blocks: hash, height, transactions and inputs as getblock says; the coinbase's coin.
    let hashes = blocking(|| traced.generate(101)).unwrap();
    for hash in [&hashes[0], &hashes[100]] {
        let block = blocking(|| traced.rpc("getblock", json!([hash, 2]))).unwrap();
        let connected = bus
            .payload("validation:block_connected", |_, p| match p {
                Payload::BlockConnected(b) if hex(&b.hash) == *hash => Some(b.clone()),
                _ => None,
            })
            .await;
        let txs = block["tx"].as_array().unwrap();
        assert_eq!(connected.height as i64, block["height"].as_i64().unwrap());
        assert_eq!(connected.transactions, txs.len() as u64);
        let inputs: usize = txs
            .iter()
            .map(|tx| tx["vin"].as_array().unwrap().len())
            .sum();
        assert_eq!(connected.inputs as usize, inputs);
        let coinbase = &txs[0];
        let added = bus
            .payload("utxocache:add of the coinbase", |_, p| match p {
                Payload::UtxocacheAdd(c) if hex(&c.txid) == coinbase["txid"].as_str().unwrap() => {
                    Some(c.clone())
                }
                _ => None,
            })
            .await;
        assert!(added.coinbase);
        assert_eq!(added.height as i64, block["height"].as_i64().unwrap());
        assert_eq!(
            added.value,
            sats(&coinbase["vout"][added.vout as usize]["value"])
        );
    }

    // Connections: ids, addresses and types as getpeerinfo says.
    blocking(|| traced.connect_to(&other)).unwrap();
    let outbound = peer_of(&traced, other.p2p_addr());
    let opened = bus
        .payload("net:outbound_connection", |_, p| match p {
            Payload::OutboundConnection(c)
                if same_peer(&c.peer, outbound["id"].as_i64().unwrap()) =>
            {
                Some(c.clone())
            }
            _ => None,
        })
        .await;
    let peer = opened.peer.unwrap();
    assert_eq!(peer.addr, outbound["addr"].as_str().unwrap());
    assert_eq!(outbound["connection_type"], "manual");
    assert_eq!(peer.conn_type, ConnectionType::Manual as i32);
    assert_eq!(opened.network, network(&outbound) as i32);

    let mut raw = blocking(|| traced.raw_peer(Transport::V1)).unwrap();
    let inbound = peer_of(&traced, raw.local_addr());
    let inbound_id = inbound["id"].as_i64().unwrap();
    let accepted = bus
        .payload("net:inbound_connection", |_, p| match p {
            Payload::InboundConnection(c) if same_peer(&c.peer, inbound_id) => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        accepted.peer.as_ref().unwrap().addr,
        raw.local_addr().to_string()
    );
    assert_eq!(
        accepted.peer.unwrap().conn_type,
        ConnectionType::Inbound as i32
    );
    assert_eq!(inbound["connection_type"], "inbound");

    // Messages both ways: a ping in, the pong with its nonce out.
    let nonce = 0x6e6f_6465_7363_6f70;
    blocking(|| raw.send("ping", &payload::ping(nonce))).unwrap();
    for (what, inbound_direction, msg_type) in [
        ("net:inbound_message ping", true, "ping"),
        ("net:outbound_message pong", false, "pong"),
    ] {
        let message = bus
            .payload(what, |_, p| {
                let message = match (p, inbound_direction) {
                    (Payload::InboundMessage(m), true) | (Payload::OutboundMessage(m), false) => m,
                    _ => return None,
                };
                let body = message.message.as_ref()?;
                let echoed = matches!(&body.body, Some(Body::Ping(p)) | Some(Body::Pong(p)) if p.nonce == nonce);
                (same_peer(&message.peer, inbound_id) && body.msg_type == msg_type && echoed)
                    .then(|| message.clone())
            })
            .await;
        assert_eq!(message.message.unwrap().size, 8);
        assert_eq!(message.peer.unwrap().addr, raw.local_addr().to_string());
    }

    // A payment: coin selection, then the transaction in the mempool with getmempoolentry's
    // vsize and fee.
    let address = blocking(|| traced.new_address()).unwrap();
    let txid = blocking(|| traced.send_to_address(&address, 1.5)).unwrap();
    let wallet_tx =
        blocking(|| traced.rpc_wallet(DEFAULT_WALLET, "gettransaction", json!([txid]))).unwrap();
    let fee = -sats(&wallet_tx["fee"]);
    let selected = bus
        .payload("coin_selection:selected_coins", |_, p| match p {
            Payload::SelectedCoins(s) => Some(s.clone()),
            _ => None,
        })
        .await;
    assert_eq!(selected.wallet, DEFAULT_WALLET);
    assert!(!selected.algorithm.is_empty());
    let normal = bus
        .payload("coin_selection:normal_create_tx_internal", |_, p| match p {
            Payload::NormalCreateTxInternal(n) => Some(n.clone()),
            _ => None,
        })
        .await;
    assert!(normal.success);
    assert_eq!(normal.wallet, DEFAULT_WALLET);
    let attempting = bus
        .payload("coin_selection:attempting_aps_create_tx", |_, p| match p {
            Payload::AttemptingApsCreateTx(a) => Some(a.clone()),
            _ => None,
        })
        .await;
    assert_eq!(attempting.wallet, DEFAULT_WALLET);
    let aps = bus
        .payload("coin_selection:aps_create_tx_internal", |_, p| match p {
            Payload::ApsCreateTxInternal(a) => Some(a.clone()),
            _ => None,
        })
        .await;
    assert_eq!(aps.wallet, DEFAULT_WALLET);
    // The wallet keeps the avoid-partial-spends transaction when it costs no more.
    let chosen_fee = if aps.success && aps.use_aps {
        aps.fee
    } else {
        normal.fee
    };
    assert_eq!(
        chosen_fee, fee,
        "the fee of the transaction the wallet sent"
    );

    let entry = blocking(|| traced.rpc("getmempoolentry", json!([txid]))).unwrap();
    let added = bus
        .payload("mempool:added", |_, p| match p {
            Payload::MempoolAdded(a) if hex(&a.txid) == txid => Some(a.clone()),
            _ => None,
        })
        .await;
    assert_eq!(added.vsize as i64, entry["vsize"].as_i64().unwrap());
    assert_eq!(added.fee, sats(&entry["fees"]["base"]));
    assert_eq!(added.fee, fee);

    // RBF: the bump replaces it; both sides' fees and sizes as RPC said.
    let bumped = blocking(|| traced.bump_fee(&txid)).unwrap();
    let bumped_entry = blocking(|| traced.rpc("getmempoolentry", json!([bumped]))).unwrap();
    let replaced = bus
        .payload("mempool:replaced", |_, p| match p {
            Payload::MempoolReplaced(r) if hex(&r.replaced_txid) == txid => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(hex(&replaced.replacement_id), bumped);
    assert!(replaced.replaced_by_transaction);
    assert_eq!(replaced.replaced_fee, fee);
    assert_eq!(
        replaced.replaced_vsize as i64,
        entry["vsize"].as_i64().unwrap()
    );
    assert_eq!(
        replaced.replacement_fee,
        sats(&bumped_entry["fees"]["base"])
    );
    assert_eq!(
        replaced.replacement_vsize as i64,
        bumped_entry["vsize"].as_i64().unwrap()
    );
    let removed = removal(&bus, &txid).await;
    assert_eq!(removed.reason, RemovalReason::Replaced as i32);
    assert_eq!(removed.fee, fee);

    // Mined: removed for the block; its input spent from the coins cache.
    let bumped_tx = blocking(|| traced.rpc("getrawtransaction", json!([bumped, true]))).unwrap();
    blocking(|| traced.generate(1)).unwrap();
    let removed = removal(&bus, &bumped).await;
    assert_eq!(removed.reason, RemovalReason::Block as i32);
    let input = &bumped_tx["vin"][0];
    let spent = bus
        .payload("utxocache:spent of the bump's input", |_, p| match p {
            Payload::UtxocacheSpent(c)
                if hex(&c.txid) == input["txid"].as_str().unwrap()
                    && c.vout as i64 == input["vout"].as_i64().unwrap() =>
            {
                Some(c.clone())
            }
            _ => None,
        })
        .await;
    assert!(spent.value > 0);

    // A transaction the mempool rejects: its reason as RPC gives it, and the coin it pulled
    // into the coins cache (emptied by a flush just before) uncached again.
    let (rejected_txid, reason, coin) = blocking(|| zero_fee_transaction(&traced));
    let rejected = bus
        .payload("mempool:rejected", |_, p| match p {
            Payload::MempoolRejected(r) if hex(&r.txid) == rejected_txid => Some(r.clone()),
            _ => None,
        })
        .await;
    assert!(
        reason.starts_with(&rejected.reason),
        "RPC said {reason:?}, the tracepoint {:?}",
        rejected.reason
    );
    bus.payload(
        "utxocache:uncache of the rejected transaction's coin",
        |_, p| match p {
            Payload::UtxocacheUncache(c) if hex(&c.txid) == coin.0 && c.vout == coin.1 => Some(()),
            _ => None,
        },
    )
    .await;

    // Misbehaviour: an addr message over 1,000 entries; the peer is then disconnected.
    let mut rogue = blocking(|| traced.raw_peer(Transport::V1)).unwrap();
    let rogue_id = peer_of(&traced, rogue.local_addr())["id"].as_i64().unwrap();
    let addresses = (0..1001u32)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let address = Address::new(&SocketAddr::new(ip.into(), 18444), ServiceFlags::NETWORK);
            (1_700_000_000u32, address)
        })
        .collect();
    blocking(|| rogue.send_message(&NetworkMessage::Addr(addresses))).unwrap();
    let misbehaving = bus
        .payload("net:misbehaving_connection", |_, p| match p {
            Payload::MisbehavingConnection(m) if m.peer_id == rogue_id => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(misbehaving.message, "addr message size = 1001");
    let closed = bus
        .payload(
            "net:closed_connection of the misbehaving peer",
            |_, p| match p {
                Payload::ClosedConnection(c) if same_peer(&c.peer, rogue_id) => Some(c.clone()),
                _ => None,
            },
        )
        .await;
    assert_eq!(closed.peer.unwrap().addr, rogue.local_addr().to_string());
    assert_eq!(
        closed.network,
        Network::Unroutable as i32,
        "loopback is not publicly routable"
    );
    assert!(closed.connected_since > 0);

    let events = bus.events();
    let stats = extractor.stop().await;
    stats.expect("the extractor ran to the end");
    assert!(
        events
            .iter()
            .all(|e| e.error.is_empty() || matches!(e.payload, Some(Payload::ExtractorStats(_)))),
        "no event carries an error mark"
    );
    assert!(events.iter().all(|e| e.node_id == NODE));
}

async fn removal(bus: &Collected, txid: &str) -> nodescope_proto::MempoolRemoved {
    bus.payload("mempool:removed", |_, p| match p {
        Payload::MempoolRemoved(r) if hex(&r.txid) == txid => Some(r.clone()),
        _ => None,
    })
    .await
}

/// Signs a transaction paying its whole input back (no fee), flushes the coins cache and submits
/// the transaction: the mempool refuses it. Returns its txid, the RPC error message and the coin it spends.
fn zero_fee_transaction(node: &Node) -> (String, String, (String, u32)) {
    let unspent = node
        .rpc_wallet(DEFAULT_WALLET, "listunspent", json!([]))
        .unwrap();
    let coin = &unspent.as_array().unwrap()[0];
    let (coin_txid, vout) = (
        coin["txid"].as_str().unwrap().to_string(),
        coin["vout"].as_u64().unwrap() as u32,
    );
    let address = node.new_address().unwrap();
    let raw = node
        .rpc(
            "createrawtransaction",
            json!([[{"txid": coin_txid, "vout": vout}], [{ address: coin["amount"] }]]),
        )
        .unwrap();
    let signed = node
        .rpc_wallet(DEFAULT_WALLET, "signrawtransactionwithwallet", json!([raw]))
        .unwrap();
    let hex_tx = signed["hex"].as_str().unwrap();
    let decoded = node.rpc("decoderawtransaction", json!([hex_tx])).unwrap();
    let txid = decoded["txid"].as_str().unwrap().to_string();
    // Signing looked the coin up in the node's coins cache: a forced flush (gettxoutsetinfo)
    // empties the cache, so the mempool's lookup brings the coin back and uncaches it.
    node.rpc("gettxoutsetinfo", json!([])).unwrap();
    let error = node
        .rpc("sendrawtransaction", json!([hex_tx]))
        .expect_err("a transaction without fee is refused");
    let message = match error {
        nodescope_regtest::Error::Rpc { message, .. } => message,
        other => panic!("sendrawtransaction failed otherwise: {other}"),
    };
    (txid, message, (coin_txid, vout))
}
