//! `extractor p2p` against the real bitcoind: the node dials the extractor (`-addnode`) over v1
//! and v2 and lists it as a manual peer with our user agent; pings; a block mined elsewhere
//! arrives as a headers announcement; a wallet transaction as an inv and then, requested, as a
//! tx; a restarted node is dialled again; two nodes on one listener stay apart; garbage does not
//! stop the listener.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{Event, PeerConnection, PeerState};
use nodescope_regtest::{Node, NodeConfig};

use common::blocking;
use common::bus::Collected;

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connections(events: &[Event]) -> Vec<PeerConnection> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::PeerConnection(c)) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn bodies(events: &[Event]) -> Vec<(u64, Body)> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::PeerMessage(m)) => m
                .message
                .as_ref()
                .and_then(|m| m.body.clone())
                .map(|b| (m.connection, b)),
            _ => None,
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn p2p_args(port: u16, nats: &str, extra: &[&str]) -> Vec<String> {
    let listen = format!("127.0.0.1:{port}");
    let mut args: Vec<String> = [
        "p2p",
        "--listen",
        &listen,
        "--chain",
        "regtest",
        "--nats-url",
        nats,
        "--node-id",
        "p2p-node",
        "--ping-interval",
        "300ms",
        "--stats-interval",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The first connection whose handshake completed (over `transport`, when given).
async fn connected(bus: &Collected, transport: Option<&str>) -> PeerConnection {
    bus.wait_for(&format!("a connection ({transport:?})"), WAIT, |events| {
        connections(events).into_iter().find(|c| {
            c.state == PeerState::Connected as i32 && transport.is_none_or(|t| c.transport == t)
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_dials_in_over_v1_and_v2_and_sees_a_manual_peer() {
    for (v2, transport) in [(false, "v1"), (true, "v2")] {
        let port = free_port();
        let nats = nodescope_bus::test_server::NatsServer::start();
        let bus = Collected::start(&nats.url(), "p2p-node").await;
        let mut extractor = common::start_unprivileged(&p2p_args(port, &nats.url(), &[]));
        let node = blocking(|| {
            Node::start(
                NodeConfig::new()
                    .v2transport(v2)
                    .arg(format!("-addnode=127.0.0.1:{port}")),
            )
        })
        .unwrap();
        let up = extractor.alongside(connected(&bus, Some(transport))).await;
        assert!(up.node_dialled);
        let version = up.version.expect("the node's version");
        assert!(version.user_agent.contains("Satoshi:30.0.0"), "{version:?}");
        // The node's view of us.
        // block_in_place: the extractor in this process keeps running meanwhile.
        let peer = blocking(|| {
            nodescope_regtest::wait_until("the node to list us, pinged", WAIT, || {
                Ok(node.peers()?.into_iter().find(|p| {
                    p["addr"] == format!("127.0.0.1:{port}") && p.get("pingtime").is_some()
                }))
            })
        })
        .unwrap();
        assert_eq!(peer["connection_type"], "manual");
        assert_eq!(peer["subver"], extractor::p2p::user_agent());
        assert_eq!(peer["transport_protocol_type"], transport);
        // Our pings come back, quickly on loopback, as the node's of us do.
        let rtts: Vec<u64> = extractor
            .alongside(bus.wait_for("three ping round trips", WAIT, |events| {
                let rtts: Vec<u64> = events
                    .iter()
                    .filter_map(|e| match &e.payload {
                        Some(Payload::PeerPing(p)) => Some(p.rtt_ns),
                        _ => None,
                    })
                    .collect();
                (rtts.len() >= 3).then_some(rtts)
            }))
            .await;
        let pingtime = peer["pingtime"].as_f64().unwrap();
        for rtt in rtts {
            assert!(rtt > 0 && rtt < 1_000_000_000, "rtt {rtt} ns");
        }
        assert!(pingtime < 1.0, "the node's ping of us: {pingtime} s");
        // Every event is the node's, from the p2p extractor, in order.
        for (i, event) in bus
            .events()
            .iter()
            .filter(|e| e.extractor == 3 && !matches!(e.payload, Some(Payload::ExtractorStats(_))))
            .enumerate()
        {
            assert_eq!(
                (event.sequence, event.chain.as_str()),
                (i as u64, "regtest")
            );
        }
        extractor.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_arrive_as_headers_and_transactions_as_inv_then_tx() {
    let port = free_port();
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), "p2p-node").await;
    let mut extractor = common::start_unprivileged(&p2p_args(port, &nats.url(), &[]));
    let node = blocking(|| {
        Node::start(
            NodeConfig::new()
                .wallet(true)
                .arg(format!("-addnode=127.0.0.1:{port}")),
        )
    })
    .unwrap();
    let miner = blocking(|| Node::start(NodeConfig::new())).unwrap();
    blocking(|| node.connect_to(&miner)).unwrap();
    extractor.alongside(connected(&bus, None)).await;
    blocking(|| node.mature_coins()).unwrap();
    blocking(|| Node::sync_blocks(&[&node, &miner])).unwrap();
    // A block found by another node.
    let block = blocking(|| miner.generate(1)).unwrap().remove(0);
    blocking(|| Node::sync_blocks(&[&node, &miner])).unwrap();
    extractor
        .alongside(
            bus.wait_for("the block announced by headers", WAIT, |events| {
                bodies(events).into_iter().find(|(_, b)| match b {
                    Body::Headers(h) => h.headers.iter().any(|h| hex(&h.hash) == block),
                    Body::Cmpctblock(c) => c.header.as_ref().is_some_and(|h| hex(&h.hash) == block),
                    _ => false,
                })
            }),
        )
        .await;
    // A payment: announced by wtxid, then sent when we ask.
    let txid = blocking(|| node.send_to_address(&node.new_address()?, 1.0)).unwrap();
    let entry = blocking(|| {
        node.rpc(
            "getmempoolentry",
            nodescope_regtest::serde_json::json!([txid]),
        )
    })
    .unwrap();
    let wtxid = entry["wtxid"].as_str().unwrap().to_string();
    let (announced, sent) = extractor
        .alongside(
            bus.wait_for("the transaction's inv and tx", WAIT, |events| {
                let bodies = bodies(events);
                let announced = bodies.iter().position(|(_, b)| {
                matches!(b, Body::Inv(inv) if inv.items.iter().any(|i| hex(&i.hash) == wtxid))
            })?;
                let sent = bodies
                    .iter()
                    .position(|(_, b)| matches!(b, Body::Tx(tx) if hex(&tx.txid) == txid))?;
                Some((announced, sent))
            }),
        )
        .await;
    assert!(announced < sent, "inv first, then tx");
    extractor.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_dialled_again() {
    let mut node = blocking(|| Node::start(NodeConfig::new())).unwrap();
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), "p2p-node").await;
    let target = node.p2p_addr().to_string();
    let mut args = p2p_args(0, &nats.url(), &["--connect", &target]);
    args[2] = "none".into();
    let mut extractor = common::start_unprivileged(&args);
    let first = extractor.alongside(connected(&bus, None)).await;
    assert!(!first.node_dialled);
    blocking(|| node.restart()).unwrap();
    let again = extractor
        .alongside(
            bus.wait_for("a second connection after the restart", WAIT, |events| {
                let all = connections(events);
                let down = all.iter().any(|c| {
                    c.state == PeerState::Disconnected as i32 && c.connection == first.connection
                });
                all.into_iter().find(|c| {
                    down && c.state == PeerState::Connected as i32
                        && c.connection > first.connection
                })
            }),
        )
        .await;
    assert_eq!(again.remote, target);
    let peers = blocking(|| node.peers()).unwrap();
    assert!(peers
        .iter()
        .any(|p| p["subver"] == extractor::p2p::user_agent() && p["inbound"] == true));
    extractor.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_listener_stay_apart_and_garbage_does_not_stop_it() {
    let port = free_port();
    let nats = nodescope_bus::test_server::NatsServer::start();
    let alice_bus = Collected::start(&nats.url(), "alice").await;
    let bob_bus = Collected::start(&nats.url(), "bob").await;
    let all = Collected::start(&nats.url(), "*").await;
    let mut extractor = common::start_unprivileged(&p2p_args(
        port,
        &nats.url(),
        &["--node", "ua:alice=alice,ua:bob=bob"],
    ));
    // Garbage first: bytes that are neither a v1 version nor a BIP324 key exchange.
    let mut junk = blocking(|| {
        nodescope_regtest::wait_until("the listener to accept", WAIT, || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        })
    })
    .unwrap();
    junk.write_all(&[0x55; 200]).unwrap();
    drop(junk);
    extractor
        .alongside(
            all.wait_for("the garbage connection failed", WAIT, |events| {
                connections(events)
                    .into_iter()
                    .find(|c| c.state == PeerState::Failed as i32)
            }),
        )
        .await;

    let alice = blocking(|| {
        Node::start(
            NodeConfig::new()
                .arg("-uacomment=alice")
                .arg(format!("-addnode=127.0.0.1:{port}")),
        )
    })
    .unwrap();
    let bob = blocking(|| {
        Node::start(
            NodeConfig::new()
                .arg("-uacomment=bob")
                .arg(format!("-addnode=127.0.0.1:{port}")),
        )
    })
    .unwrap();
    let a = extractor.alongside(connected(&alice_bus, None)).await;
    let b = extractor.alongside(connected(&bob_bus, None)).await;
    assert!(a.version.unwrap().user_agent.contains("(alice)"));
    assert!(b.version.unwrap().user_agent.contains("(bob)"));
    blocking(|| alice.generate(1)).unwrap();
    extractor
        .alongside(alice_bus.wait_for("alice's headers", WAIT, |events| {
            bodies(events)
                .into_iter()
                .find(|(_, b)| matches!(b, Body::Headers(_)))
        }))
        .await;
    let of = |events: &[Event]| -> BTreeSet<u64> {
        events
            .iter()
            .filter_map(|e| match &e.payload {
                Some(Payload::PeerMessage(m)) => Some(m.connection),
                Some(Payload::PeerPing(p)) => Some(p.connection),
                _ => None,
            })
            .collect()
    };
    let (alice_events, bob_events) = (alice_bus.events(), bob_bus.events());
    assert!(alice_events.iter().all(|e| e.node_id == "alice"));
    assert!(bob_events.iter().all(|e| e.node_id == "bob"));
    assert_eq!(of(&alice_events), [a.connection].into());
    assert_eq!(of(&bob_events), [b.connection].into());
    drop(bob);
    extractor.stop().await.unwrap();
}
