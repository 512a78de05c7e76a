//! The fleet's NATS as shipped (compose/nats/hub.conf and leaf.conf), on loopback: a hub and two
//! leaf servers, one per node host. Two real regtest nodes, each with its own `extractor rpc`
//! (ZMQ on) publishing into its own leaf; the fleet tool, a client of the hub, follows both
//! nodes and publishes a block's propagation with both nodes' ZMQ sightings.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use nodescope_consumer::testing::{free_port, http_get, wait_until, NatsServer};
use nodescope_proto::event::Payload;
use nodescope_proto::Event;
use nodescope_regtest::{Node, NodeConfig};
use prost::Message;
use tokio::sync::oneshot;

const WITHIN: Duration = Duration::from_secs(60);

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../compose/nats")
        .join(name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_tool_on_the_hub_follows_nodes_publishing_into_two_leaves() {
    let leaf_port = free_port().to_string();
    let leafnode_listen = format!("127.0.0.1:{leaf_port}");
    let hub = NatsServer::start_shipped(
        &shipped("hub.conf"),
        &[
            ("NODESCOPE_LEAFNODE_LISTEN", &leafnode_listen),
            ("NODESCOPE_LEAF_USER", "leaf"),
            ("NODESCOPE_LEAF_PASSWORD", "leaf-secret"),
        ],
    );
    let hub_url = format!("nats-leaf://leaf:leaf-secret@127.0.0.1:{leaf_port}");
    let leaves = [
        NatsServer::start_shipped(&shipped("leaf.conf"), &[("NODESCOPE_HUB_URL", &hub_url)]),
        NatsServer::start_shipped(&shipped("leaf.conf"), &[("NODESCOPE_HUB_URL", &hub_url)]),
    ];
    // A wrong password is refused: the hub's leaf port is not open to anyone.
    let intruder = NatsServer::start_shipped(
        &shipped("leaf.conf"),
        &[(
            "NODESCOPE_HUB_URL",
            &format!("nats-leaf://leaf:wrong@127.0.0.1:{leaf_port}"),
        )],
    );

    // What reaches the hub.
    let client = async_nats::connect(hub.url()).await.unwrap();
    let mut fleet_events = client.subscribe("nodescope.fleet.fleet").await.unwrap();
    let mut zmq_events = client.subscribe("nodescope.*.zmq").await.unwrap();
    let mut intruded = client.subscribe("nodescope.intruder.>").await.unwrap();
    client.flush().await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let args = nodescope_fleet::Args::parse_from(["fleet", "--nats-url", &hub.url()]);
    let (stop_fleet, fleet_stopped) = oneshot::channel::<()>();
    let fleet = tokio::spawn(nodescope_fleet::serve(listener, args, async {
        let _ = fleet_stopped.await;
    }));

    let nodes: Vec<Node> = tokio::task::block_in_place(|| {
        let nodes: Vec<Node> = (0..2)
            .map(|_| Node::start(NodeConfig::new().zmq(true)).expect("a node"))
            .collect();
        nodes[1].connect_to(&nodes[0]).unwrap();
        nodes
    });
    let ids = ["host-a-regtest", "host-b-regtest"];
    let extractors: Vec<_> = (0..2)
        .map(|i| common::rpc_extractor(&nodes[i], ids[i], &leaves[i].url(), &[]))
        .collect();

    // Both nodes' events reach the hub through their leaves, and the fleet follows both.
    wait_until("the fleet tool following both nodes", WITHIN, || async {
        http_get(&metrics_url)
            .await
            .1
            .lines()
            .any(|l| l == "nodescope_fleet_nodes 2")
    })
    .await;
    // The extractors subscribed to ZMQ once they read getzmqnotifications: wait for the first
    // notification of each before mining the block the test is about.
    let mut subscribed = std::collections::BTreeSet::new();
    let first_block = tokio::task::block_in_place(|| nodes[0].generate(1)).unwrap();
    let deadline = tokio::time::Instant::now() + WITHIN;
    while subscribed.len() < 2 {
        let message = tokio::time::timeout_at(deadline, zmq_events.next())
            .await
            .expect("ZMQ notifications of both nodes at the hub")
            .unwrap();
        let event = Event::decode(message.payload).unwrap();
        subscribed.insert(event.node_id);
    }
    let _ = first_block;

    let intruder_client = async_nats::connect(intruder.url()).await.unwrap();
    intruder_client
        .publish(
            "nodescope.intruder.mempool",
            "not from a leaf of ours".into(),
        )
        .await
        .unwrap();
    intruder_client.flush().await.unwrap();

    let hash = tokio::task::block_in_place(|| nodes[0].generate(1))
        .unwrap()
        .remove(0);
    let deadline = tokio::time::Instant::now() + WITHIN;
    let block = loop {
        let message = tokio::time::timeout_at(deadline, fleet_events.next())
            .await
            .expect("the block's propagation at the hub")
            .unwrap();
        if let Some(Payload::BlockPropagation(b)) = Event::decode(message.payload).unwrap().payload
        {
            if hex(&b.hash) == hash {
                break b;
            }
        }
    };
    assert!(block.missing.is_empty(), "{block:?}");
    // Both nodes; which ZMQ notification arrives first is a matter of microseconds (the
    // miner's fires after it connected the block, as the peer's does).
    let mut nodes_seen: Vec<&str> = block.nodes.iter().map(|s| s.node.as_str()).collect();
    nodes_seen.sort();
    assert_eq!(nodes_seen, ids, "{block:?}");
    assert!(block.nodes.iter().all(|s| s.source == "zmq"), "{block:?}");
    // Published before the block, it would have come first through a connected leaf.
    client.flush().await.unwrap();
    assert!(
        futures::FutureExt::now_or_never(intruded.next()).is_none(),
        "a leaf with a wrong password reached the hub"
    );

    let _ = stop_fleet.send(());
    fleet.await.unwrap().expect("the fleet tool ended cleanly");
    for (stop, task) in extractors {
        let _ = stop.send(());
        task.await.unwrap().expect("an extractor ended cleanly");
    }
}
