//! The logger against a real nats-server, events published as the extractor publishes them: in
//! process for what it prints and filters, as a binary for a closed pipe and for signals.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use nodescope_consumer::testing::{client, publish, EventSource, NatsServer};
use nodescope_logger::{run_to, Args};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p::{decode_p2p, DecodeOptions};
use nodescope_proto::{
    ConnectionType, ExtractorKind, MempoolAdded, MisbehavingConnection, NetMessage, Network,
    OutboundConnection, Peer, PeerConnection, PeerMessage, PeerPing, PeerState,
};
use tokio::sync::oneshot;

mod common;
use common::Output;

struct Logger {
    output: Output,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Logger {
    fn start(server: &NatsServer, flags: &[&str]) -> Logger {
        let url = server.url();
        let mut argv = vec!["logger", "--nats-url", url.as_str()];
        argv.extend_from_slice(flags);
        let args = Args::parse_from(argv);
        let output = Output::default();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run_to(
            args,
            async move {
                let _ = stopped.await;
            },
            output.clone(),
        ));
        Logger {
            output,
            stop: Some(stop),
            task,
        }
    }

    /// Publishes `probe` until the logger prints it (it has subscribed), then forgets it.
    async fn wait_ready(
        &self,
        publisher: &async_nats::Client,
        probe: &mut dyn FnMut() -> nodescope_proto::Event,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.output.lines().is_empty() {
            assert!(Instant::now() < deadline, "the logger never printed");
            publish(publisher, &probe()).await;
            publisher.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.output.clear();
    }

    /// Waits until `count` lines were printed (and a little more, to catch extra ones).
    async fn lines(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.output.lines().len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.output.lines()
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the logger stops on shutdown")
            .unwrap()
            .expect("and exits cleanly");
    }
}

fn peer(id: i64) -> Option<Peer> {
    Some(Peer {
        id,
        addr: format!("198.51.100.{id}:8333"),
        conn_type: ConnectionType::OutboundFullRelay as i32,
        conn_type_other: String::new(),
    })
}

fn message(peer_id: i64, msg_type: &str, payload: &[u8]) -> Payload {
    Payload::InboundMessage(NetMessage {
        peer: peer(peer_id),
        message: Some(decode_p2p(
            msg_type,
            payload,
            payload.len() as u64,
            DecodeOptions::default(),
        )),
    })
}

fn added(vsize: i32) -> Payload {
    Payload::MempoolAdded(MempoolAdded {
        txid: vec![0x11; 32],
        vsize,
        fee: vsize as i64 * 3,
    })
}

#[tokio::test]
async fn prints_every_event_in_order_and_survives_a_malformed_message() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let logger = Logger::start(&server, &[]);
    let mut warmup = EventSource::new("warmup", 1);
    logger
        .wait_ready(&publisher, &mut || warmup.stamp(added(1)))
        .await;

    let mut node = EventSource::new("node-a", 7);
    let events = [
        node.stamp(Payload::OutboundConnection(OutboundConnection {
            peer: peer(5),
            network: Network::Ipv4 as i32,
            outbound_count: 8,
        })),
        node.stamp(message(5, "ping", &42u64.to_le_bytes())),
        node.stamp(added(150)),
    ];
    publish(&publisher, &events[0]).await;
    publish(&publisher, &events[1]).await;
    publisher
        .publish("nodescope.node-a.mempool", vec![0xff, 0xff, 0xff].into())
        .await
        .unwrap();
    publish(&publisher, &events[2]).await;

    let lines = logger.lines(3).await;
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let tail = |line: &str| line.split_once(' ').unwrap().1.to_string();
    assert_eq!(
        tail(&lines[0]),
        "node-a net.connection outbound_connection peer=5 addr=198.51.100.5:8333 conn=outbound_full_relay network=ipv4 outbound_count=8"
    );
    assert_eq!(
        tail(&lines[1]),
        "node-a net.message inbound_message peer=5 addr=198.51.100.5:8333 conn=outbound_full_relay msg=ping size=8 nonce=42"
    );
    assert_eq!(
        tail(&lines[2]),
        format!(
            "node-a mempool mempool_added txid={} vsize=150 fee=450 feerate=3.00sat/vB",
            "11".repeat(32)
        )
    );
    assert_eq!(
        lines[0].split(' ').next().unwrap(),
        nodescope_logger::line::time(events[0].timestamp_ns)
    );
    logger.stop().await;
}

#[tokio::test]
async fn filters_by_category_node_peer_and_message_type() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let logger = Logger::start(
        &server,
        &[
            "--categories",
            "net.message,net.connection",
            "--nodes",
            "node-a",
            "--peers",
            "5,6",
            "--msg-types",
            "ping,inv",
        ],
    );
    let mut warmup = EventSource::new("node-a", 1);
    logger
        .wait_ready(&publisher, &mut || {
            warmup.stamp(message(6, "ping", &[0; 8]))
        })
        .await;

    let mut a = EventSource::new("node-a", 2);
    let mut b = EventSource::new("node-b", 2);
    let inv = [&[1u8, 1, 0, 0, 0][..], &[0x22; 32][..]].concat();
    // In publishing order (sequence numbers follow it); only the 2nd and the last pass.
    let events = [
        a.stamp(message(7, "ping", &2u64.to_le_bytes())), // another peer
        a.stamp(message(5, "ping", &1u64.to_le_bytes())),
        a.stamp(message(5, "pong", &3u64.to_le_bytes())), // another type
        b.stamp(message(5, "ping", &4u64.to_le_bytes())), // another node
        a.stamp(added(100)),                              // another category
        a.stamp(Payload::MisbehavingConnection(MisbehavingConnection {
            peer_id: 5,
            message: "not a message".into(),
        })), // not a P2P message
        a.stamp(message(6, "inv", &inv)),
    ];
    for event in &events {
        publish(&publisher, event).await;
    }
    let lines = logger.lines(2).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains(" peer=5 ") && lines[0].ends_with("msg=ping size=8 nonce=1"));
    assert!(
        lines[1].contains(" peer=6 ") && lines[1].ends_with("msg=inv size=37 items=1 tx=1"),
        "{}",
        lines[1]
    );
    logger.stop().await;
}

/// `extractor p2p`'s events (category p2p): `--msg-types` keeps the node's messages of those
/// types and leaves out the connections and pings, which are no messages.
#[tokio::test]
async fn p2p_events_are_printed_and_filtered_by_message_type() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let logger = Logger::start(
        &server,
        &[
            "--categories",
            "p2p,mempool",
            "--msg-types",
            "inv,feefilter",
        ],
    );
    let peer_message = |msg_type: &str, payload: &[u8], since_previous_ns| {
        Payload::PeerMessage(PeerMessage {
            connection: 2,
            message: Some(decode_p2p(
                msg_type,
                payload,
                payload.len() as u64,
                DecodeOptions::default(),
            )),
            since_previous_ns,
        })
    };
    let inv = [&[1u8, 5, 0, 0, 0][..], &[0x33; 32][..]].concat();
    let mut warmup = EventSource::of(ExtractorKind::P2p, "warmup", 1);
    logger
        .wait_ready(&publisher, &mut || {
            warmup.stamp(peer_message("inv", &inv, 0))
        })
        .await;

    let mut p2p = EventSource::of(ExtractorKind::P2p, "node-a", 3);
    let events = [
        p2p.stamp(Payload::PeerConnection(PeerConnection {
            state: PeerState::Connected as i32,
            connection: 2,
            transport: "v2".into(),
            ..PeerConnection::default()
        })),
        p2p.stamp(peer_message("inv", &inv, 2_250_000_000)),
        p2p.stamp(peer_message("ping", &7u64.to_le_bytes(), 0)),
        p2p.stamp(Payload::PeerPing(PeerPing {
            connection: 2,
            nonce: 7,
            rtt_ns: 1_000_000,
        })),
        p2p.stamp(peer_message("feefilter", &1000i64.to_le_bytes(), 0)),
        EventSource::new("node-a", 4).stamp(added(100)),
    ];
    for event in &events {
        publish(&publisher, event).await;
    }
    let lines = logger.lines(2).await;
    let tail = |line: &str| line.split_once(' ').unwrap().1.to_string();
    assert_eq!(
        lines.iter().map(|l| tail(l)).collect::<Vec<_>>(),
        [
            "node-a p2p peer_message connection=2 msg=inv size=37 items=1 wtx=1 since_previous=2.250s",
            "node-a p2p peer_message connection=2 msg=feefilter size=8 feerate=1000sat/kvB",
        ]
    );
    logger.stop().await;
}

#[tokio::test]
async fn json_lines_carry_every_field() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let logger = Logger::start(&server, &["--json"]);
    let mut warmup = EventSource::new("warmup", 1);
    logger
        .wait_ready(&publisher, &mut || warmup.stamp(added(1)))
        .await;
    let mut node = EventSource::new("node-a", 9);
    let event = node.stamp(added(250));
    publish(&publisher, &event).await;
    let lines = logger.lines(1).await;
    assert_eq!(lines.len(), 1);
    let value: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let mut expected = serde_json::json!({
        "time": nodescope_logger::line::time(event.timestamp_ns),
        "category": "mempool",
        "event": "mempool_added",
    });
    expected.as_object_mut().unwrap().extend(
        nodescope_proto::json::to_json(&event)
            .as_object()
            .unwrap()
            .clone(),
    );
    assert_eq!(value, expected);
    assert_eq!(value["mempool_added"]["vsize"], 250);
    logger.stop().await;
}

/// `logger | head -1`: once the reader goes, the logger ends quietly, with success.
#[tokio::test]
async fn a_closed_pipe_ends_the_logger_quietly_and_sigterm_stops_it() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    for closed_pipe in [true, false] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_logger"))
            .args(["--nats-url", &server.url()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut node = EventSource::new("node-a", 1);
        // Publish until the first line comes out (the logger has subscribed).
        let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line_tx.send(line).unwrap();
            stdout
        });
        let first = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                publish(&publisher, &node.stamp(added(1))).await;
                if let Ok(Some(line)) =
                    tokio::time::timeout(Duration::from_millis(100), line_rx.recv()).await
                {
                    return line;
                }
            }
        })
        .await
        .expect("a first line");
        assert!(first.contains(" mempool_added "), "{first}");
        let stdout = reader.join().unwrap();
        if closed_pipe {
            drop(stdout);
            for _ in 0..50 {
                publish(&publisher, &node.stamp(added(2))).await;
            }
            publisher.flush().await.unwrap();
        } else {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let status = wait(&mut child, Duration::from_secs(10));
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(status.success(), "exit {status:?}; stderr: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Error"),
            "{stderr}"
        );
    }
}

fn wait(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the logger did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
