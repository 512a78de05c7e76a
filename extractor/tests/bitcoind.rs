//! The extractor on a real Bitcoin Core v30.0 (regtest, loopback): every tracepoint regtest can
//! fire, observed through NATS, each field checked against what RPC says of the same thing.
//!
//! Which test covers which of the 20 tracepoints (`extractor_common::Tracepoint::ALL`):
//!
//! - `every_tracepoint_regtest_fires_arrives_with_the_values_rpc_reports`: net:inbound_message,
//!   net:outbound_message, net:inbound_connection, net:outbound_connection,
//!   net:misbehaving_connection, net:closed_connection, validation:block_connected,
//!   utxocache:add, utxocache:spent, utxocache:uncache, coin_selection:selected_coins,
//!   coin_selection:normal_create_tx_internal, coin_selection:attempting_aps_create_tx,
//!   coin_selection:aps_create_tx_internal, mempool:added, mempool:removed, mempool:replaced,
//!   mempool:rejected (18).
//! - `an_evicted_inbound_peer_is_reported_as_getpeerinfo_knew_it_and_then_closed`:
//!   net:evicted_inbound_connection (and the net:closed_connection that follows it).
//! - `events_of_three_processes_of_one_restarted_bitcoind_share_one_extractor_run`:
//!   validation:block_connected per process, and utxocache:flush (the flush of each process's
//!   shutdown).
//! - `v1_bytes_per_peer_and_message_type_add_up_to_getpeerinfo` and
//!   `v2_bytes_per_peer_and_message_type_add_up_to_getpeerinfo`: the sizes of
//!   net:inbound_message and net:outbound_message against Core's own byte counters.
//!
//! Each test has its own bitcoind copy, nats-server and node id, so they run in parallel.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use std::time::{Duration, Instant};

use nodescope_proto::event::Payload;
use nodescope_proto::json::hex;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::subjects::Category;
use nodescope_proto::{ConnectionType, Event, FlushModeV30, Network, Peer, RemovalReason};
use nodescope_regtest::bitcoin::hashes::Hash as _;
use nodescope_regtest::bitcoin::p2p::address::Address;
use nodescope_regtest::bitcoin::p2p::message::NetworkMessage;
use nodescope_regtest::bitcoin::p2p::message_blockdata::{GetHeadersMessage, Inventory};
use nodescope_regtest::bitcoin::p2p::{Magic, ServiceFlags};
use nodescope_regtest::bitcoin::{BlockHash, Txid};
use nodescope_regtest::p2p::v1;
use nodescope_regtest::serde_json::{json, Value};
use nodescope_regtest::{
    p2p::payload, wait_until, Error, Node, NodeConfig, RawPeer, Transport, DEFAULT_WALLET, TIMEOUT,
};

use common::bus::Collected;
use common::traced::{traced_extractor, Traced};
use common::{blocking, private_bitcoind, start_extractor};

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

/// Ends the extractor as SIGINT would and checks it ran to the end and marked no event.
async fn stop(traced: Traced) -> Vec<Event> {
    let events = traced.bus.events();
    traced
        .extractor
        .stop()
        .await
        .expect("the extractor ran to the end");
    assert!(
        events
            .iter()
            .all(|e| e.error.is_empty() || matches!(e.payload, Some(Payload::ExtractorStats(_)))),
        "no event carries an error mark"
    );
    events
}

// ---------------------------------------------------------------------------------------------
// net:evicted_inbound_connection

const EVICTION_NODE: &str = "regtest-e2e-eviction";

/// Core 30 with `-maxconnections=35` has 35 - 11 = 24 inbound slots; 30 raw peers fill them and
/// make it evict some (it protects ~20 inbound peers first, see tools/regtest/tests/eviction.rs;
/// newcomers it cannot make room for are refused instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_inbound_peer_is_reported_as_getpeerinfo_knew_it_and_then_closed() {
    const MAX_CONNECTIONS: u32 = 35;
    const INBOUND_SLOTS: usize = 24;
    const PEERS: usize = INBOUND_SLOTS + 6;
    let traced = traced_extractor(Some(EVICTION_NODE)).await;
    let bus = &traced.bus;
    let config = NodeConfig::new()
        .max_connections(MAX_CONNECTIONS)
        .bitcoind(&traced.bitcoind);
    assert_eq!(config.inbound_slots() as usize, INBOUND_SLOTS);
    let node = blocking(|| Node::start(config)).expect("starting the traced node");

    // Every peer as getpeerinfo listed it while connected (by peer id), before any eviction
    // could remove it: evictions happen only when a newcomer is accepted, and every newcomer
    // is followed by a getpeerinfo.
    let mut known: HashMap<i64, Value> = HashMap::new();
    let mut peers: Vec<RawPeer> = Vec::new();
    for i in 0..PEERS {
        let transport = if i % 2 == 0 {
            Transport::V1
        } else {
            Transport::V2
        };
        match blocking(|| node.raw_peer(transport)) {
            Ok(peer) => peers.push(peer),
            // No eviction candidate left: Core drops the newcomer (no event of its own).
            Err(Error::PeerClosed { .. }) | Err(Error::P2p { .. }) => {}
            Err(e) => panic!("raw peer {i}: {e}"),
        }
        for peer in blocking(|| node.peers()).expect("getpeerinfo") {
            known.entry(peer["id"].as_i64().unwrap()).or_insert(peer);
        }
    }
    blocking(|| {
        wait_until("the inbound slots to be exactly full", TIMEOUT, || {
            let inbound = node
                .peers()?
                .iter()
                .filter(|p| p["inbound"] == true)
                .count();
            Ok((inbound == INBOUND_SLOTS).then_some(()))
        })
    })
    .unwrap();
    let expected = peers.len() - INBOUND_SLOTS;
    assert!(expected > 0, "Core should evict, not only refuse");
    eprintln!(
        "{} raw peers accepted, {expected} of them evicted, {} refused",
        peers.len(),
        PEERS - peers.len()
    );

    // One event per evicted peer, and those are the raw peers whose socket Core closed.
    let evicted = bus
        .wait_for(
            "net:evicted_inbound_connection for every evicted peer",
            Duration::from_secs(30),
            |events| {
                let evicted: Vec<(u64, nodescope_proto::EvictedInboundConnection)> = events
                    .iter()
                    .filter_map(|e| match &e.payload {
                        Some(Payload::EvictedInboundConnection(c)) => Some((e.sequence, c.clone())),
                        _ => None,
                    })
                    .collect();
                let closed = peers
                    .iter_mut()
                    .map(RawPeer::is_closed)
                    .filter(|&c| c)
                    .count();
                (evicted.len() == expected && closed == expected).then_some(evicted)
            },
        )
        .await;
    for (sequence, event) in evicted {
        let peer = event.peer.expect("the evicted peer");
        let before = known
            .get(&peer.id)
            .unwrap_or_else(|| panic!("evicted peer {} was never in getpeerinfo", peer.id));
        assert_eq!(peer.addr, before["addr"].as_str().unwrap());
        let raw = peers
            .iter_mut()
            .find(|p| p.local_addr().to_string() == peer.addr)
            .unwrap_or_else(|| panic!("{} is none of our raw peers", peer.addr));
        assert!(
            raw.is_closed(),
            "Core closed the evicted peer {}",
            peer.addr
        );
        assert_eq!(before["connection_type"], "inbound");
        assert_eq!(peer.conn_type, ConnectionType::Inbound as i32);
        assert_eq!(event.network, network(before) as i32);
        assert_eq!(event.network, Network::Unroutable as i32);
        assert_eq!(event.connected_since, before["conntime"].as_i64().unwrap());

        // Then it is closed (both are net.connection events: one sequence orders them).
        let closed = bus
            .payload(
                "net:closed_connection of the evicted peer",
                |e, p| match p {
                    Payload::ClosedConnection(c)
                        if same_peer(&c.peer, peer.id) && e.sequence > sequence =>
                    {
                        Some(c.clone())
                    }
                    _ => None,
                },
            )
            .await;
        assert_eq!(closed.peer.as_ref().unwrap().addr, peer.addr);
        assert_eq!(closed.connected_since, event.connected_since);
        assert_eq!(closed.network, event.network);
    }
    // No survivor was reported evicted (the count matched and each evicted one is closed), and
    // every survivor is still served.
    for peer in &mut peers {
        if peer.is_closed() {
            continue;
        }
        blocking(|| {
            peer.send("ping", &payload::ping(7))?;
            peer.recv_until("pong", TIMEOUT)
        })
        .expect("a survivor answers");
    }
    drop(node);
    stop(traced).await;
}

// ---------------------------------------------------------------------------------------------
// One extractor run across bitcoind restarts

const RESTART_NODE: &str = "regtest-e2e-restart";

/// The extractor attaches by path, so a restarted bitcoind (a new process, a new pid) is traced
/// again without the extractor restarting: one run id, sequences that go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_three_processes_of_one_restarted_bitcoind_share_one_extractor_run() {
    let mut traced = traced_extractor(Some(RESTART_NODE)).await;
    let mut node = blocking(|| Node::start(NodeConfig::new().bitcoind(&traced.bitcoind)))
        .expect("starting the traced node");
    let bus = &traced.bus;
    let mut pids: Vec<u32> = Vec::new();
    // Everything below runs alongside the extractor: had it exited, this would fail at once.
    traced
        .extractor
        .alongside(async {
            for round in 0..3 {
                if round > 0 {
                    blocking(|| node.restart()).expect("restarting bitcoind");
                }
                let pid = node.pid();
                assert!(!pids.contains(&pid), "a restart gives a new process");
                let hash = blocking(|| node.generate(1)).unwrap().remove(0);
                let (event, block) = bus
                    .payload(
                        "validation:block_connected of this process",
                        |e, p| match p {
                            Payload::BlockConnected(b) if hex(&b.hash) == hash => {
                                Some((e.clone(), b.clone()))
                            }
                            _ => None,
                        },
                    )
                    .await;
                assert_eq!(event.pid, pid, "the block of round {round}");
                assert_eq!(block.height, round + 1);
                pids.push(pid);
            }
            // Each stopped process flushed its coins cache on the way out (ForceFlushStateToDisk:
            // mode ALWAYS).
            for &pid in &pids[..2] {
                let flush = bus
                    .payload(
                        "utxocache:flush at the shutdown of a process",
                        |e, p| match p {
                            Payload::UtxocacheFlush(f) if e.pid == pid => Some(*f),
                            _ => None,
                        },
                    )
                    .await;
                assert_eq!(flush.mode_v30, FlushModeV30::Always as i32);
                assert!(!flush.for_prune);
            }
            // And its stats go on, counting what all three processes fired.
            let fired = bus
                .events()
                .iter()
                .filter(|e| !matches!(e.payload, Some(Payload::ExtractorStats(_))))
                .count() as u64;
            bus.stats_when(|s| s.events_read >= fired).await;
        })
        .await;
    drop(node);
    let events = stop(traced).await;

    let run_id = events[0].run_id;
    assert!(
        events.iter().all(|e| e.run_id == run_id),
        "one extractor run: one run id"
    );
    assert!(events.iter().all(|e| e.node_id == RESTART_NODE));
    for e in events
        .iter()
        .filter(|e| !matches!(e.payload, Some(Payload::ExtractorStats(_))))
    {
        assert!(
            pids.contains(&e.pid),
            "{}: pid {} is none of the node's processes {pids:?}",
            common::bus::payload_kind(e),
            e.pid
        );
    }
    // Per category, in the order they arrived: 0, 1, 2, … across the restarts, no reset, no hole.
    let mut sequences: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &events {
        let category = Category::of(e.payload.as_ref().expect("a payload"));
        sequences
            .entry(category.as_str())
            .or_default()
            .push(e.sequence);
    }
    for (category, numbers) in &sequences {
        let expected: Vec<u64> = (0..numbers.len() as u64).collect();
        assert_eq!(numbers, &expected, "sequence numbers of {category}");
    }
    eprintln!(
        "processes {pids:?}; events per category: {:?}",
        sequences
            .iter()
            .map(|(category, numbers)| (category, numbers.len()))
            .collect::<Vec<_>>()
    );
    for category in ["validation", "utxocache", "extractor"] {
        assert!(sequences.contains_key(category), "some {category} events");
    }
}

// ---------------------------------------------------------------------------------------------
// Bytes per peer and message type: net:inbound_message / net:outbound_message against
// getpeerinfo's bytesrecv_per_msg / bytessent_per_msg.
//
// What Bitcoin Core counts (src/net.cpp; the code is the same in v28, v30 and on master):
//
// - Received, CNode::ReceiveMsgBytes: for each complete message the transport hands over
//   (`m_transport->GetReceivedMessage(time, reject_message)`),
//   `mapRecvBytesPerMsgType[msg.m_type] += msg.m_raw_message_size` — under "*other*" when the
//   type is not one of ALL_NET_MESSAGE_TYPES ("To prevent a memory DOS, only allow known message
//   types"), and also under "*other*" when the transport rejected the message
//   (`if (reject_message) { mapRecvBytesPerMsgType.at(NET_MESSAGE_TYPE_OTHER) +=
//   msg.m_raw_message_size; continue; }`: v1 wrong checksum or invalid message type, v2
//   undecodable type). Rejected messages are dropped right there: no tracepoint ever sees them.
//   net:inbound_message fires later, in PeerManagerImpl::ProcessMessages, for each message taken
//   off the process queue (`PollMessage`), with `msg.m_type` and `msg.m_recv.size()`: it lags
//   the counter, and messages still queued when a peer is disconnected are counted, not traced.
// - Sent, CConnman::SocketSendData: `node.AccountForSentBytes(msg_type, nBytes)` for the bytes
//   each send() wrote on behalf of a message, `if (!msg_type.empty()) { // don't report v2
//   handshake bytes for now`. net:outbound_message fires in CConnman::PushMessage when the
//   message is queued: it leads the counter.
// - The framing counted with each message: V1Transport::GetReceivedMessage
//   `msg.m_raw_message_size = hdr.nMessageSize + CMessageHeader::HEADER_SIZE` (24);
//   V2Transport::GetReceivedMessage `msg.m_raw_message_size = m_recv_decode_buffer.size() +
//   BIP324Cipher::EXPANSION`: the decrypted contents (the 1-byte short id, or 0x00 and the
//   12-byte type, then the payload) plus 3 (length) + 1 (header) + 16 (tag). Sending builds the
//   same frames (V1Transport::SetMessageToSend: the 24-byte header; V2Transport::SetMessageToSend:
//   `V2_MESSAGE_MAP(msg.m_type)`'s short id if the type has one, else 1 + 12 bytes, encrypted
//   into contents + EXPANSION) and counts all of it under the message's type. A v1 peer of a
//   v2-capable node is served by V2Transport's `m_v1_fallback`, i.e. counted as v1.
//
// So, per peer and type, once the traffic in flight has been counted and traced (polled: pings,
// getdata after an inv, block announcements never stop for long):
//   v1: bytes*_per_msg[type] == Σ (size + 24)
//   v2: bytes*_per_msg[type] == Σ (size + 20 + (1 if BIP324 gives the type a short id, else 13))
// with received unknown types under "*other*", plus the rejected messages the test itself sent
// (known to it, invisible to the tracepoints). For v1 the per-type entries also add up to
// bytessent / bytesrecv: nothing is sent outside messages.
//
// What the tracepoints cannot account for, v2:
// - The handshake: the 64-byte key, 0-4095 bytes of garbage, the 16-byte garbage terminator and
//   the version packet (20 bytes, its contents are empty in v30) are in bytessent / bytesrecv
//   but in no per-type entry (SocketSendData skips them by their empty msg_type, ReceiveMsgBytes
//   counts complete application messages only) and fire no tracepoint; decoy packets likewise
//   (Core sends none; received ones are dropped in V2Transport::ProcessReceivedPacketBytes,
//   `ignore`). Our raw v2 peer sends neither garbage nor decoys, so there bytesrecv exceeds the
//   per-type sum by exactly 64 + 16 + 20; Core's own garbage has a random length, so what it
//   sends (and what one Core node receives from another) is only bounded.
// - Which encoding a received message used: BIP324 allows a type that has a short id in the
//   13-byte form too, which Core counts 12 bytes larger; the tracepoint passes the type string
//   only. Core and our raw peer always use the short id, and the comparison assumes it.
// - Short ids 29-32 (assigned by BIP324, not implemented) decode to the empty type: counted
//   under "*other*", traced with msg_type "" (our raw peer cannot send them; not exercised).

use nodescope_proto::p2p::wire::{
    core_framing_bytes, CORE_MESSAGE_TYPES, CORE_OTHER as OTHER, V2_EXPANSION,
};
/// The v2 handshake of an initiator without garbage: key, garbage terminator, version packet.
const V2_HANDSHAKE_WITHOUT_GARBAGE: u64 = 64 + 16 + V2_EXPANSION;
/// BIP324's and Core's `MAX_GARBAGE_LEN`.
const V2_MAX_GARBAGE: u64 = 4095;

/// Bytes per message type, as getpeerinfo's bytesrecv_per_msg and bytessent_per_msg.
type ByType = BTreeMap<String, u64>;

/// What Core counts for one message of `msg_type` besides its payload, on a connection of
/// getpeerinfo's `transport_protocol_type`.
fn framing(transport: &str, msg_type: &str) -> u64 {
    let short_id = nodescope_proto::p2p::wire::v2_short_id(msg_type).is_some();
    match transport {
        "v1" => core_framing_bytes(false, short_id),
        "v2" => core_framing_bytes(true, short_id),
        other => panic!("transport_protocol_type {other:?}"),
    }
}

/// Σ (size + framing) per type over the net:inbound_message (received) and
/// net:outbound_message (sent) events of peer `peer_id`, unknown received types as "*other*".
fn bytes_from_events(events: &[Event], peer_id: i64, transport: &str) -> (ByType, ByType) {
    let (mut received, mut sent) = (ByType::new(), ByType::new());
    for event in events {
        let (message, inbound) = match &event.payload {
            Some(Payload::InboundMessage(m)) => (m, true),
            Some(Payload::OutboundMessage(m)) => (m, false),
            _ => continue,
        };
        if !same_peer(&message.peer, peer_id) {
            continue;
        }
        let body = message.message.as_ref().expect("a P2P message");
        let msg_type = body.msg_type.as_str();
        let bytes = body.size + framing(transport, msg_type);
        if inbound {
            let name = if CORE_MESSAGE_TYPES.contains(&msg_type) {
                msg_type
            } else {
                OTHER
            };
            *received.entry(name.to_string()).or_default() += bytes;
        } else {
            *sent.entry(msg_type.to_string()).or_default() += bytes;
        }
    }
    (received, sent)
}

fn bytes_of(peer: &Value, field: &str) -> ByType {
    peer[field]
        .as_object()
        .unwrap_or_else(|| panic!("getpeerinfo {field}"))
        .iter()
        .map(|(name, bytes)| (name.clone(), bytes.as_u64().unwrap()))
        .collect()
}

fn total(bytes: &ByType) -> u64 {
    bytes.values().sum()
}

/// Polls (up to 30 s) until getpeerinfo's per-type counters of the peer at `addr` are what its
/// events add up to, with `rejected` bytes (messages the transport dropped before any
/// tracepoint) added to received "*other*"; returns that getpeerinfo entry. Traffic never stops
/// for good, so each try compares getpeerinfo with the events received so far.
async fn bytes_agree(bus: &Collected, node: &Node, addr: SocketAddr, rejected: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let peer = peer_of(node, addr);
        let id = peer["id"].as_i64().unwrap();
        let transport = peer["transport_protocol_type"]
            .as_str()
            .unwrap()
            .to_string();
        let (mut received, sent) = bytes_from_events(&bus.events(), id, &transport);
        if rejected > 0 {
            *received.entry(OTHER.to_string()).or_default() += rejected;
        }
        let core_received = bytes_of(&peer, "bytesrecv_per_msg");
        let core_sent = bytes_of(&peer, "bytessent_per_msg");
        if received == core_received && sent == core_sent {
            eprintln!("peer {id} ({addr}, {transport}) agrees with getpeerinfo: received {received:?}, sent {sent:?}");
            return peer;
        }
        if Instant::now() > deadline {
            panic!(
                "peer {id} ({addr}, {transport}): the events do not add up to getpeerinfo in 30 s\n\
                 received, getpeerinfo: {core_received:?}\n\
                 received, events:      {received:?}\n\
                 sent, getpeerinfo:     {core_sent:?}\n\
                 sent, events:          {sent:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A raw peer that answers the node's pings (so that pongs are received too).
fn answering_raw_peer(node: &Node, transport: Transport) -> RawPeer {
    let mut peer = RawPeer::connect_no_handshake(node.p2p_addr(), Magic::REGTEST, transport)
        .expect("connecting a raw peer");
    peer.set_auto_pong(true);
    peer.handshake().expect("the raw peer's handshake");
    peer
}

/// Messages of many types from a raw peer, among them one of a type Core does not know (traced,
/// counted under "*other*") and ones the transport rejects (counted under "*other*", never
/// traced): an invalid type, and on v1 a wrong checksum. Waits until the node answered the last
/// ping, i.e. processed everything; returns the bytes Core counts for the rejected messages.
fn chatter(peer: &mut RawPeer, tip: &str) -> u64 {
    let tip: BlockHash = tip.parse().expect("a block hash");
    let unknown_tx = Txid::from_byte_array([7; 32]);
    let messages = [
        NetworkMessage::Ping(1),
        NetworkMessage::GetHeaders(GetHeadersMessage::new(vec![tip], BlockHash::all_zeros())),
        NetworkMessage::Inv(vec![Inventory::Transaction(unknown_tx)]),
        NetworkMessage::GetData(vec![Inventory::Block(tip)]),
        NetworkMessage::SendHeaders,
        NetworkMessage::FeeFilter(1000),
        NetworkMessage::GetAddr,
    ];
    for message in &messages {
        peer.send_message(message).expect("sending");
    }
    // Unknown to Core: processed (and traced) as "nodescope", counted as "*other*".
    peer.send("nodescope", b"hello").unwrap();
    // No valid message type (a byte below 0x20): V1Transport (`!hdr.IsMessageTypeValid()`) and
    // V2Transport (GetMessageType) reject it.
    let invalid_payload = [0u8; 3];
    peer.send("\u{1}bad", &invalid_payload).unwrap();
    let mut rejected = invalid_payload.len() as u64
        + match peer.transport() {
            Transport::V1 => v1::HEADER_LEN as u64,
            Transport::V2 => V2_EXPANSION + 13,
        };
    if peer.transport() == Transport::V1 {
        let ping = payload::ping(3);
        let frame = v1::frame_with(
            Magic::REGTEST.to_bytes(),
            v1::command_bytes("ping").unwrap(),
            ping.len() as u32,
            [0; 4],
            &ping,
        );
        peer.send_raw(&frame).unwrap();
        rejected += frame.len() as u64;
    }
    peer.send("ping", &payload::ping(2)).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while payload::nonce(&peer.recv_until("pong", deadline - Instant::now()).unwrap()) != Some(2) {}
    rejected
}

fn assert_unknown_type_traced(bus: &Collected, node: &Node, addr: SocketAddr) {
    let id = peer_of(node, addr)["id"].as_i64().unwrap();
    assert!(
        bus.events().iter().any(|e| matches!(&e.payload,
            Some(Payload::InboundMessage(m)) if same_peer(&m.peer, id)
                && m.message.as_ref().is_some_and(|b| b.msg_type == "nodescope" && b.size == 5 && b.unknown_type))),
        "the unknown message type of peer {id} was traced"
    );
}

/// The traced node and an untraced peer, both with `-v2transport` as given, connected, each
/// having mined blocks the other synced.
fn two_synced_nodes(traced: &Traced, v2transport: bool) -> (Node, Node) {
    let node = blocking(|| {
        Node::start(
            NodeConfig::new()
                .v2transport(v2transport)
                .bitcoind(&traced.bitcoind),
        )
    })
    .expect("starting the traced node");
    let other = blocking(|| Node::start(NodeConfig::new().v2transport(v2transport)))
        .expect("starting its peer");
    blocking(|| -> nodescope_regtest::Result<()> {
        node.connect_to(&other)?;
        node.generate(2)?;
        Node::sync_blocks(&[&node, &other])?;
        other.generate(2)?;
        Node::sync_blocks(&[&node, &other]).map(drop)
    })
    .expect("two nodes in sync");
    (node, other)
}

const BYTES_V1_NODE: &str = "regtest-e2e-bytes-v1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_bytes_per_peer_and_message_type_add_up_to_getpeerinfo() {
    let traced = traced_extractor(Some(BYTES_V1_NODE)).await;
    let (node, other) = two_synced_nodes(&traced, false);
    let mut raw = blocking(|| answering_raw_peer(&node, Transport::V1));
    let tip = blocking(|| node.best_block_hash()).unwrap();
    let rejected = blocking(|| chatter(&mut raw, &tip));
    // A block after `sendheaders`: announced to the raw peer by headers, and relayed.
    blocking(|| {
        node.generate(1)?;
        Node::sync_blocks(&[&node, &other])
    })
    .unwrap();

    let bus = &traced.bus;
    for (addr, rejected) in [(other.p2p_addr(), 0), (raw.local_addr(), rejected)] {
        let peer = bytes_agree(bus, &node, addr, rejected).await;
        assert_eq!(peer["transport_protocol_type"], "v1");
        assert_eq!(
            peer["bytesrecv"].as_u64().unwrap(),
            total(&bytes_of(&peer, "bytesrecv_per_msg")),
            "v1: every byte received belongs to a message"
        );
        assert_eq!(
            peer["bytessent"].as_u64().unwrap(),
            total(&bytes_of(&peer, "bytessent_per_msg")),
            "v1: every byte sent belongs to a message"
        );
    }
    assert_unknown_type_traced(bus, &node, raw.local_addr());
    drop((raw, other, node));
    stop(traced).await;
}

const BYTES_V2_NODE: &str = "regtest-e2e-bytes-v2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_bytes_per_peer_and_message_type_add_up_to_getpeerinfo() {
    let traced = traced_extractor(Some(BYTES_V2_NODE)).await;
    let (node, other) = two_synced_nodes(&traced, true);
    let tip = blocking(|| node.best_block_hash()).unwrap();
    let mut raw_v2 = blocking(|| answering_raw_peer(&node, Transport::V2));
    let rejected_v2 = blocking(|| chatter(&mut raw_v2, &tip));
    // A v1 peer of the same v2-capable node.
    let mut raw_v1 = blocking(|| answering_raw_peer(&node, Transport::V1));
    let rejected_v1 = blocking(|| chatter(&mut raw_v1, &tip));
    blocking(|| {
        node.generate(1)?;
        Node::sync_blocks(&[&node, &other])
    })
    .unwrap();

    let bus = &traced.bus;
    let handshake = |peer: &Value| {
        (
            peer["bytesrecv"].as_u64().unwrap() - total(&bytes_of(peer, "bytesrecv_per_msg")),
            peer["bytessent"].as_u64().unwrap() - total(&bytes_of(peer, "bytessent_per_msg")),
        )
    };
    let with_core_garbage =
        V2_HANDSHAKE_WITHOUT_GARBAGE..=V2_HANDSHAKE_WITHOUT_GARBAGE + V2_MAX_GARBAGE;

    // Two Core nodes: both handshakes carry random garbage.
    let peer = bytes_agree(bus, &node, other.p2p_addr(), 0).await;
    assert_eq!(peer["transport_protocol_type"], "v2");
    let (received, sent) = handshake(&peer);
    assert!(
        with_core_garbage.contains(&received),
        "received outside messages: {received}"
    );
    assert!(
        with_core_garbage.contains(&sent),
        "sent outside messages: {sent}"
    );

    // Our raw v2 peer sends no garbage and no decoys: exactly key, terminator, version packet.
    let peer = bytes_agree(bus, &node, raw_v2.local_addr(), rejected_v2).await;
    assert_eq!(peer["transport_protocol_type"], "v2");
    let (received, sent) = handshake(&peer);
    assert_eq!(
        received, V2_HANDSHAKE_WITHOUT_GARBAGE,
        "received outside messages"
    );
    assert!(
        with_core_garbage.contains(&sent),
        "sent outside messages: {sent}"
    );
    assert_unknown_type_traced(bus, &node, raw_v2.local_addr());

    // The v1 peer is counted as v1, with nothing outside messages.
    let peer = bytes_agree(bus, &node, raw_v1.local_addr(), rejected_v1).await;
    assert_eq!(peer["transport_protocol_type"], "v1");
    assert_eq!(handshake(&peer), (0, 0));
    assert_unknown_type_traced(bus, &node, raw_v1.local_addr());

    drop((raw_v1, raw_v2, other, node));
    stop(traced).await;
}
