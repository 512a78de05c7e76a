//! The shared consumer layer against a real nats-server: subscribing by node and category,
//! decoding, skipping and reporting what is not an event, gaps, restarts and replays.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use nodescope_consumer::testing::{client, consumer_args, publish, EventSource, NatsServer};
use nodescope_consumer::{Consumer, Continuity, Item};
use nodescope_proto::event::Payload;
use nodescope_proto::{Category, MempoolAdded, MempoolRejected, UtxoCacheCoin};

async fn next(consumer: &mut Consumer) -> Item {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("an item within 10 s")
        .expect("the stream is open")
}

fn added(vsize: i32) -> Payload {
    Payload::MempoolAdded(MempoolAdded {
        txid: vec![7; 32],
        vsize,
        fee: 1000,
    })
}

#[tokio::test]
async fn events_arrive_decoded_with_gaps_restarts_and_replays_told_apart() {
    let server = NatsServer::start();
    let args = consumer_args(&server.url(), &[]);
    let mut consumer = Consumer::subscribe(&args, "test", &[]).await.unwrap();
    let publisher = client(&server).await;
    publisher.flush().await.unwrap();

    let mut run = EventSource::new("node-a", 1);
    let first = run.stamp(added(100));
    let second = run.stamp(added(101));
    run.lose(Category::Mempool, 3);
    let after_gap = run.stamp(added(105));
    for event in [&first, &second, &after_gap, &second] {
        publish(&publisher, event).await;
    }
    // Not an event at all, on one of our subjects.
    publisher
        .publish("nodescope.node-a.mempool", "not protobuf \u{ff}".into())
        .await
        .unwrap();
    let mut restarted = EventSource::new("node-a", 2);
    restarted.lose(Category::Mempool, 2);
    publish(&publisher, &restarted.stamp(added(200))).await;

    let mut continuity = Vec::new();
    for _ in 0..6 {
        match next(&mut consumer).await {
            Item::Event(received) => {
                assert_eq!(received.category, Category::Mempool);
                assert_eq!(received.event.node_id, "node-a");
                assert_eq!(received.extractor_name(), "ebpf");
                continuity.push(format!("{:?}", received.continuity));
            }
            Item::Replayed(stream) => {
                assert_eq!(stream.node, "node-a");
                continuity.push("Replayed".to_string());
            }
            Item::Undecodable(bad) => {
                assert_eq!(bad.node.as_deref(), Some("node-a"));
                assert_eq!(bad.subject, "nodescope.node-a.mempool");
                assert!(!bad.error.is_empty());
                continuity.push("Undecodable".to_string());
            }
        }
    }
    assert_eq!(
        continuity,
        [
            format!("{:?}", Continuity::First),
            format!("{:?}", Continuity::Next),
            format!("{:?}", Continuity::Gap { missed: 3 }),
            "Replayed".to_string(),
            "Undecodable".to_string(),
            format!("{:?}", Continuity::Restart { missed: 2 }),
        ]
    );
}

#[tokio::test]
async fn only_the_chosen_nodes_and_categories_are_received() {
    let server = NatsServer::start();
    let args = consumer_args(&server.url(), &["--nodes", "node-b,node-c"]);
    let mut consumer = Consumer::subscribe(&args, "test", &[Category::Mempool])
        .await
        .unwrap();
    let publisher = client(&server).await;
    let mut a = EventSource::new("node-a", 1);
    let mut b = EventSource::new("node-b", 1);
    publish(&publisher, &a.stamp(added(1))).await;
    publish(
        &publisher,
        &b.stamp(Payload::UtxocacheAdd(UtxoCacheCoin::default())),
    )
    .await;
    let wanted = b.stamp(Payload::MempoolRejected(MempoolRejected {
        txid: vec![1; 32],
        reason: "min relay fee not met".into(),
    }));
    publish(&publisher, &wanted).await;
    match next(&mut consumer).await {
        Item::Event(received) => assert_eq!(received.event, wanted),
        other => panic!("expected node-b's mempool event, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), consumer.next())
            .await
            .is_err(),
        "nothing else matches the filters"
    );
}

/// Waits until the consumer says it is receiving, then publishes one event: it must arrive.
async fn ready_then_one_event_arrives(consumer: &mut Consumer, server: &NatsServer, sequence: u64) {
    let health = consumer.health();
    tokio::time::timeout(Duration::from_secs(15), async {
        while !health.receiving() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("receiving within 15 s of NATS being up");
    let publisher = client(server).await;
    eprintln!("{:?} publishing", std::time::SystemTime::now());
    let mut run = EventSource::new("node-a", 1);
    run.lose(Category::Mempool, sequence);
    publish(&publisher, &run.stamp(added(1))).await;
    match next(consumer).await {
        Item::Event(received) => assert_eq!(received.event.sequence, sequence),
        other => panic!("expected the event, got {other:?}"),
    }
}

/// A way to `server` whose client-to-server direction is slow (each chunk waits `delay`), so
/// that a client's subscriptions reach the server well after its connection is up.
async fn slow_uplink_to(server: &NatsServer, delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let target = server.url().trim_start_matches("nats://").to_string();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                continue; // the server is down: the client sees a closed connection and retries
            };
            let (mut from_client, mut to_client) = inbound.into_split();
            let (mut from_server, mut to_server) = outbound.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
            });
            tokio::spawn(async move {
                let mut chunk = vec![0; 64 * 1024];
                while let Ok(read @ 1..) = from_client.read(&mut chunk).await {
                    tokio::time::sleep(delay).await;
                    if to_server.write_all(&chunk[..read]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("nats://{address}")
}

#[tokio::test]
async fn a_consumer_says_it_is_receiving_only_once_the_server_has_its_subscriptions() {
    let mut server = NatsServer::stopped_on(nodescope_consumer::testing::free_port());
    let url = slow_uplink_to(&server, Duration::from_millis(300)).await;
    let args = consumer_args(&url, &[]);
    let subscribing = tokio::time::timeout(
        Duration::from_secs(5),
        Consumer::subscribe(&args, "test", &[]),
    )
    .await
    .expect("subscribing does not wait for NATS");
    let mut consumer = subscribing.unwrap();
    let health = consumer.health();
    assert!(!health.receiving());

    // Started after the consumer: the first event published once it says so arrives.
    server.resume();
    ready_then_one_event_arrives(&mut consumer, &server, 0).await;

    // Lost and back: not receiving while down; once it says so again, nothing is missed, though
    // its subscriptions reach the server 300 ms after its connection is up.
    server.kill();
    tokio::time::timeout(Duration::from_secs(5), async {
        while health.receiving() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("not receiving once NATS is gone");
    server.resume();
    ready_then_one_event_arrives(&mut consumer, &server, 1).await;
}
