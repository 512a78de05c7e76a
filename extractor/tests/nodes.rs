//! Two regtest nodes of one bitcoind binary under one extractor: each process is a node of its
//! own (node id from its chain and data directory, the chain in the envelope, sequences of its
//! own), their events never mix, and a restarted node keeps its id and its sequences go on.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use nodescope_proto::event::Payload;
use nodescope_proto::{Category, Event};
use nodescope_regtest::{Node, NodeConfig};

use common::blocking;
use common::bus::Collected;
use common::traced::{traced_extractor, Traced};

/// The node id events of `pid` carry, once one with a block arrived.
async fn node_of(bus: &Collected, pid: u32) -> String {
    bus.wait_for(
        &format!("a block_connected of pid {pid}"),
        Duration::from_secs(30),
        |events| {
            events.iter().find_map(|e| {
                (e.pid == pid && matches!(e.payload, Some(Payload::BlockConnected(_))))
                    .then(|| e.node_id.clone())
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_process_of_one_binary_is_a_node_of_its_own() {
    // No --node-id: the extractor names each process's node.
    let Traced {
        bitcoind,
        bus,
        mut extractor,
        nats: _nats,
        dir: _dir,
    } = traced_extractor(None).await;
    let mut a = blocking(|| Node::start(NodeConfig::new().bitcoind(&bitcoind))).unwrap();
    let b = blocking(|| Node::start(NodeConfig::new().bitcoind(&bitcoind))).unwrap();
    blocking(|| a.connect_to(&b)).unwrap();
    blocking(|| a.generate(3)).unwrap();
    blocking(|| Node::sync_blocks(&[&a, &b])).unwrap();

    let (a_pid, b_pid) = (a.pid(), b.pid());
    let a_node = extractor.alongside(node_of(&bus, a_pid)).await;
    let b_node = extractor.alongside(node_of(&bus, b_pid)).await;
    let host = nodescope_publish::host_name();
    assert_ne!(a_node, b_node);
    for node in [&a_node, &b_node] {
        assert!(
            node.starts_with(&format!("{host}-regtest-")),
            "{node}: <host>-<chain>-<datadir hash>"
        );
    }

    // A restart: a new process, the same node.
    blocking(|| a.restart()).unwrap();
    assert_ne!(a.pid(), a_pid);
    blocking(|| a.generate(1)).unwrap();
    assert_eq!(extractor.alongside(node_of(&bus, a.pid())).await, a_node);
    let restarted_pid = a.pid();

    let events = bus.events();
    let of = |node: &str| -> Vec<&Event> { events.iter().filter(|e| e.node_id == node).collect() };
    for (node, pids) in [
        (&a_node, vec![a_pid, restarted_pid]),
        (&b_node, vec![b_pid]),
    ] {
        let node_events = of(node);
        for event in &node_events {
            assert_eq!(event.chain, "regtest", "{event:?}");
            if !matches!(event.payload, Some(Payload::ExtractorStats(_))) {
                assert!(
                    pids.contains(&event.pid),
                    "{node}: an event of pid {}",
                    event.pid
                );
            }
        }
        // Each node numbers its own events: per category, 0, 1, 2, … with no gap, across the
        // restart too.
        let mut sequences: BTreeMap<Category, Vec<u64>> = BTreeMap::new();
        for event in &node_events {
            sequences
                .entry(event.category().unwrap())
                .or_default()
                .push(event.sequence);
        }
        for (category, numbers) in sequences {
            let expected: Vec<u64> = (0..numbers.len() as u64).collect();
            assert_eq!(numbers, expected, "{node} {category}");
        }
    }
    // Peer 0 of one node is not peer 0 of the other: both exist, each under its own node.
    for node in [&a_node, &b_node] {
        assert!(
            of(node).iter().any(|e| matches!(
                &e.payload,
                Some(Payload::InboundMessage(m) | Payload::OutboundMessage(m))
                    if m.peer.as_ref().is_some_and(|p| p.id == 0)
            )),
            "{node} has messages of its peer 0"
        );
    }
    extractor.stop().await.unwrap();
}
