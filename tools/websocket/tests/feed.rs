//! The websocket tool against a real nats-server, events published as the extractor publishes
//! them: what each client receives with its filters, the snapshot on connect, a stalled client
//! next to a live one, hundreds of clients, origins, health and shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use nodescope_consumer::testing::{
    assert_promtool_clean, client, http_get, publish, wait_until, EventSource, NatsServer,
};
use nodescope_proto::event::Payload;
use nodescope_proto::rpc_call::Result as Answer;
use nodescope_proto::zmq_notification::Body as ZmqBody;
use nodescope_proto::{
    AddrNetwork, BlockConnected, BlockchainInfo, ConnectionType, ConnectivityCheck,
    ConnectivityResult, Event, ExtractorKind, InboundConnection, MempoolAdded, NetAddress,
    NetMessage, Network, P2pMessage, Peer, PeerInfo, PeerInfoList, RpcCall, RpcFailure,
    RpcFailureKind, V2Support, ZmqNotification, ZmqSequence,
};
use nodescope_websocket::{run_on, Args};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Tool {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Tool {
    async fn start(server: &NatsServer, flags: &[&str]) -> Tool {
        let url = server.url();
        let mut argv = vec!["websocket", "--nats-url", url.as_str()];
        argv.extend_from_slice(flags);
        let args = Args::parse_from(argv);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_on(listener, args, async move {
            let _ = stopped.await;
        }));
        Tool {
            address,
            stop: Some(stop),
            task,
        }
    }

    /// A client of `/ws?query`, once the tool confirmed its subscription.
    async fn connect(&self, query: &str) -> Client {
        let (mut socket, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/ws?{query}", self.address))
                .await
                .expect("websocket handshake");
        let hello = next_json(&mut socket).await;
        assert_eq!(hello["type"], "subscribed", "{hello}");
        socket
    }

    /// A client that reads its handshake reply and nothing after, with a small receive buffer
    /// so that it stalls the tool's writes soon.
    async fn connect_stalling(&self) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(self.address).await.unwrap();
        let (mut socket, _) = tokio_tungstenite::client_async(
            format!("ws://{}/ws", self.address),
            MaybeTlsStream::Plain(stream),
        )
        .await
        .expect("websocket handshake");
        assert_eq!(next_json(&mut socket).await["type"], "subscribed");
        socket
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the tool stops")
            .unwrap()
            .expect("cleanly");
    }
}

async fn next_json(socket: &mut Client) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a valid frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The next event frames, skipping state and feed frames.
async fn next_events(socket: &mut Client, count: usize) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < count {
        let frame = next_json(socket).await;
        if frame["type"] == "event" {
            events.push(frame);
        }
    }
    events
}

/// Nothing more arrives within `wait`.
async fn quiet(socket: &mut Client, wait: Duration) {
    if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(wait, socket.next()).await {
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_ne!(frame["type"], "event", "unexpected {frame}");
    }
}

fn expected(event: &Event) -> Value {
    serde_json::json!({
        "type": "event",
        "category": event.category().unwrap().as_str(),
        "event": nodescope_proto::json::to_json(event),
    })
}

fn added(vsize: i32) -> Payload {
    Payload::MempoolAdded(MempoolAdded {
        txid: vec![0x42; 32],
        vsize,
        fee: 1000,
    })
}

fn peer(id: i64) -> Option<Peer> {
    Some(Peer {
        id,
        addr: format!("192.0.2.{id}:8333"),
        conn_type: ConnectionType::Inbound as i32,
        conn_type_other: String::new(),
    })
}

fn message(id: i64, msg_type: &str, size: u64) -> Payload {
    Payload::InboundMessage(NetMessage {
        peer: peer(id),
        message: Some(P2pMessage {
            msg_type: msg_type.into(),
            size,
            ..P2pMessage::default()
        }),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_receive_exactly_the_events_they_asked_for() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let tool = Tool::start(&server, &[]).await;
    let mut everything = tool.connect("").await;
    let mut mempool_of_a = tool.connect("nodes=node-a&categories=mempool").await;
    let mut changing = tool.connect("nodes=node-b").await;

    let mut a = EventSource::new("node-a", 1);
    let mut b = EventSource::new("node-b", 1);
    let events = [
        a.stamp(added(100)),
        b.stamp(added(200)),
        a.stamp(message(1, "ping", 8)),
        a.stamp(added(101)),
    ];
    for event in &events {
        publish(&publisher, event).await;
    }
    let all = next_events(&mut everything, 4).await;
    assert_eq!(all, events.iter().map(expected).collect::<Vec<_>>());
    let mine = next_events(&mut mempool_of_a, 2).await;
    assert_eq!(mine, [expected(&events[0]), expected(&events[3])]);
    assert_eq!(next_events(&mut changing, 1).await, [expected(&events[1])]);

    // Change the filter with a message: node-a's net.message only.
    changing
        .send(Message::Text(
            r#"{"type":"subscribe","nodes":["node-a"],"categories":["net.message"]}"#.into(),
        ))
        .await
        .unwrap();
    let confirmation = next_json(&mut changing).await;
    assert_eq!(confirmation["type"], "subscribed");
    assert_eq!(confirmation["nodes"], serde_json::json!(["node-a"]));
    assert_eq!(
        confirmation["categories"],
        serde_json::json!(["net.message"])
    );
    let later = [a.stamp(added(102)), a.stamp(message(2, "inv", 37))];
    for event in &later {
        publish(&publisher, event).await;
    }
    assert_eq!(next_events(&mut changing, 1).await, [expected(&later[1])]);
    assert_eq!(
        next_events(&mut mempool_of_a, 1).await,
        [expected(&later[0])]
    );
    quiet(&mut mempool_of_a, Duration::from_millis(300)).await;
    quiet(&mut changing, Duration::from_millis(300)).await;

    // A bad subscribe message is answered with what is wrong; the client stays connected.
    changing
        .send(Message::Text(
            r#"{"type":"subscribe","categories":["mempol"]}"#.into(),
        ))
        .await
        .unwrap();
    let error = next_json(&mut changing).await;
    assert_eq!(error["type"], "error");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("unknown category \"mempol\""));
    tool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_gets_the_current_state_at_once_on_connect() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let tool = Tool::start(&server, &["--state-interval-ms", "50"]).await;
    // Something must be subscribed to know the tool hears the bus: a plain client.
    let mut probe = tool.connect("").await;
    let mut a = EventSource::new("node-a", 1);
    let connected = a.stamp(Payload::InboundConnection(InboundConnection {
        peer: peer(7),
        network: Network::Ipv6 as i32,
        inbound_count: 1,
    }));
    let block = a.stamp(Payload::BlockConnected(BlockConnected {
        hash: vec![0xbb; 32],
        height: 101,
        transactions: 3,
        inputs: 4,
        sigop_cost: 5,
        duration_ns: 2_500_000,
    }));
    for event in [&connected, &a.stamp(message(7, "ping", 8)), &block] {
        publish(&publisher, event).await;
    }
    next_events(&mut probe, 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A page opened now sees the peer that connected before it, the block and the counts.
    let mut page = tool.connect("events=0&state=1").await;
    let frame = next_json(&mut page).await;
    assert_eq!(frame["type"], "state", "{frame}");
    assert_eq!(frame["node"], "node-a");
    let state = &frame["state"];
    assert_eq!(state["peers"]["7"]["addr"], "192.0.2.7:8333");
    assert_eq!(state["peers"]["7"]["network"], "ipv6");
    assert_eq!(state["peers"]["7"]["msgs_in"], 1);
    assert_eq!(state["peers"]["7"]["bytes_in"], 8);
    assert_eq!(
        state["peers"]["7"]["connected_since"],
        connected.timestamp_ns / 1_000_000_000
    );
    assert_eq!(state["blocks"][0]["height"], 101);
    assert_eq!(state["blocks"][0]["duration_ns"], 2_500_000);
    assert_eq!(state["messages"]["ping"]["msgs_in"], 1);
    assert_eq!(state["pipeline"]["events"], 3);
    let feed = next_json(&mut page).await;
    assert_eq!(feed["type"], "feed");
    assert_eq!(feed["receiving"], true);
    tool.stop().await;
}

fn check(
    network: AddrNetwork,
    address: &str,
    result: ConnectivityResult,
    v2: V2Support,
) -> Payload {
    Payload::ConnectivityCheck(ConnectivityCheck {
        address: Some(NetAddress {
            network: network as i32,
            address: address.into(),
            port: 8333,
            ..NetAddress::default()
        }),
        addr_version: "addrv2".into(),
        announced_by: peer(3),
        result: result as i32,
        v2: v2 as i32,
        ..ConnectivityCheck::default()
    })
}

/// The connectivity tool's checks reach clients that ask for the category, and pages get
/// them summed per network and result (counts only, no addresses) in the node's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectivity_checks_make_a_reachability_summary() {
    use ConnectivityResult::{ProxyError, Reachable, Refused, Timeout, UnreachableNetwork};
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let tool = Tool::start(&server, &["--state-interval-ms", "50"]).await;
    let mut checks_only = tool.connect("categories=connectivity").await;
    let mut page = tool.connect("events=0&state=1").await;

    let mut checker = EventSource::of(ExtractorKind::ConnectivityCheck, "node-a", 1);
    let onion = format!("{}.onion", "a".repeat(56));
    let events = [
        checker.stamp(check(
            AddrNetwork::Ipv4,
            "198.51.100.1",
            Reachable,
            V2Support::Supported,
        )),
        checker.stamp(check(
            AddrNetwork::Ipv4,
            "198.51.100.2",
            Reachable,
            V2Support::NotSupported,
        )),
        checker.stamp(check(
            AddrNetwork::Ipv4,
            "198.51.100.3",
            Refused,
            V2Support::NotTried,
        )),
        checker.stamp(check(
            AddrNetwork::Ipv6,
            "2001:db8::1",
            Timeout,
            V2Support::NotTried,
        )),
        checker.stamp(check(
            AddrNetwork::Torv3,
            &onion,
            ProxyError,
            V2Support::NotTried,
        )),
        checker.stamp(check(
            AddrNetwork::I2p,
            "x.b32.i2p",
            UnreachableNetwork,
            V2Support::NotTried,
        )),
    ];
    // An event of another category in between: the checks-only client must not get it.
    let mut ebpf = EventSource::new("node-a", 1);
    publish(&publisher, &ebpf.stamp(added(100))).await;
    for event in &events {
        publish(&publisher, event).await;
    }
    let received = next_events(&mut checks_only, events.len()).await;
    assert_eq!(received, events.iter().map(expected).collect::<Vec<_>>());
    assert_eq!(received[0]["category"], "connectivity");

    // State frames come as the state changes: wait for the one with every check in it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let connectivity = loop {
        let frame = next_json(&mut page).await;
        if frame["type"] == "state" {
            let connectivity = &frame["state"]["connectivity"];
            let checks: u64 = connectivity
                .as_object()
                .map(|networks| {
                    networks
                        .values()
                        .map(|n| n["checks"].as_u64().unwrap())
                        .sum()
                })
                .unwrap_or(0);
            if checks == events.len() as u64 {
                break connectivity.clone();
            }
        }
        assert!(Instant::now() < deadline, "no state with all the checks");
    };
    assert_eq!(
        connectivity["ipv4"],
        serde_json::json!({
            "checks": 3, "reachable": 2, "refused": 1, "timeout": 0, "reset": 0,
            "wrong_magic": 0, "not_bitcoin": 0, "proxy_error": 0, "unreachable_network": 0,
            "other": 0, "reachable_share": 2.0 / 3.0, "v2_supported": 1, "v2_tried": 2,
        })
    );
    assert_eq!(connectivity["ipv6"]["timeout"], 1);
    assert_eq!(connectivity["ipv6"]["reachable_share"], 0.0);
    assert_eq!(connectivity["torv3"]["proxy_error"], 1);
    assert_eq!(connectivity["i2p"]["unreachable_network"], 1);
    assert_eq!(
        connectivity["i2p"]["reachable_share"],
        Value::Null,
        "nothing dialled"
    );
    let text = connectivity.to_string();
    assert!(
        !text.contains("198.51.100") && !text.contains(".onion"),
        "no addresses are kept: {text}"
    );
    tool.stop().await;
}

fn rpc_call(method: &str, answer: Answer) -> Payload {
    Payload::RpcCall(RpcCall {
        method: method.into(),
        duration_ns: 1_500_000,
        reply_bytes: 300,
        unknown_fields: Vec::new(),
        result: Some(answer),
    })
}

/// `extractor rpc`'s answers and ZMQ notifications reach the clients that ask for the rpc and
/// zmq categories, and pages get them as the node's summary: the latest answer per method, the
/// methods failing now, counts per ZMQ topic and the latest block announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_answers_and_zmq_notifications_make_a_node_summary() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let tool = Tool::start(&server, &["--state-interval-ms", "50"]).await;
    let mut rpc_and_zmq = tool.connect("categories=rpc,zmq").await;
    let mut page = tool.connect("events=0&state=1").await;

    let mut rpc = EventSource::of(ExtractorKind::Rpc, "node-a", 1);
    let peer = |connection_type: &str, transport: &str, ping: f64| PeerInfo {
        inbound: connection_type == "inbound",
        connection_type: connection_type.into(),
        transport_protocol_type: transport.into(),
        pingtime: Some(ping),
        ..PeerInfo::default()
    };
    let chain = |blocks| {
        Answer::BlockchainInfo(BlockchainInfo {
            chain: "regtest".into(),
            blocks,
            headers: 120,
            bestblockhash: vec![0x0f; 32],
            verificationprogress: 1.0,
            ..BlockchainInfo::default()
        })
    };
    // Stamped in order: a sequence number below the last one seen would be a replay.
    let first = rpc.stamp(rpc_call("getblockchaininfo", chain(110)));
    let peers = rpc.stamp(rpc_call(
        "getpeerinfo",
        Answer::PeerInfo(PeerInfoList {
            peers: vec![
                peer("outbound-full-relay", "v2", 0.004),
                peer("outbound-full-relay", "v1", 0.008),
                peer("inbound", "v2", 0.100),
            ],
        }),
    ));
    let mut failed = rpc.stamp(rpc_call(
        "uptime",
        Answer::Failure(RpcFailure {
            kind: RpcFailureKind::Auth as i32,
            code: 401,
            message: "HTTP 401: wrong user or password".into(),
        }),
    ));
    failed.error = "uptime: HTTP 401".into();
    let events = [
        first,
        peers,
        failed,
        rpc.stamp(Payload::ZmqNotification(ZmqNotification {
            topic: "hashblock".into(),
            zmq_sequence: 9,
            endpoint: "tcp://127.0.0.1:28332".into(),
            missed_before: 1,
            body: Some(ZmqBody::Hash(vec![0x0f; 32])),
        })),
        rpc.stamp(Payload::ZmqNotification(ZmqNotification {
            topic: "sequence".into(),
            zmq_sequence: 40,
            endpoint: "tcp://127.0.0.1:28332".into(),
            missed_before: 0,
            body: Some(ZmqBody::Sequence(ZmqSequence {
                hash: vec![0x0f; 32],
                label: "C".into(),
                mempool_sequence: None,
            })),
        })),
        rpc.stamp(rpc_call("getblockchaininfo", chain(111))),
    ];
    // An event of another category first: the rpc/zmq client must not get it.
    let mut ebpf = EventSource::new("node-a", 1);
    publish(&publisher, &ebpf.stamp(added(100))).await;
    for event in &events {
        publish(&publisher, event).await;
    }
    let received = next_events(&mut rpc_and_zmq, events.len()).await;
    assert_eq!(received, events.iter().map(expected).collect::<Vec<_>>());
    assert_eq!(received[0]["category"], "rpc");
    assert_eq!(received[3]["category"], "zmq");
    assert_eq!(
        received[3]["event"]["zmq_notification"]["hash"],
        "0f".repeat(32)
    );
    quiet(&mut rpc_and_zmq, Duration::from_millis(300)).await;

    // The state frame that has every event in it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let frame = next_json(&mut page).await;
        if frame["type"] == "state" && frame["state"]["pipeline"]["events"] == 7 {
            break frame["state"].clone();
        }
        assert!(Instant::now() < deadline, "no state with every event");
    };
    let summary = &state["rpc"];
    let chain = &summary["blockchain"];
    assert_eq!(chain["chain"], "regtest");
    assert_eq!(chain["blocks"], 111, "the latest answer");
    assert_eq!(chain["headers"], 120);
    assert_eq!(chain["bestblockhash"], "0f".repeat(32));
    assert_eq!(chain["verification_progress"], 1.0);
    assert_eq!(chain["time_ns"], events[5].timestamp_ns);
    let peers = &summary["peers"];
    assert_eq!(
        (&peers["peers"], &peers["inbound"], &peers["outbound"]),
        (&3.into(), &1.into(), &2.into())
    );
    assert_eq!(
        peers["by_connection_type"],
        serde_json::json!({"inbound": 1, "outbound-full-relay": 2})
    );
    assert_eq!(peers["by_transport"], serde_json::json!({"v1": 1, "v2": 2}));
    assert_eq!(peers["median_ping_ms"], 8.0);
    assert_eq!(
        summary["failures"],
        serde_json::json!({"uptime": {
            "time_ns": events[2].timestamp_ns, "kind": "auth", "code": 401,
            "message": "HTTP 401: wrong user or password",
        }})
    );
    assert_eq!(summary["uptime"], Value::Null, "it never answered");
    assert_eq!(
        (&summary["answers"], &summary["failed"]),
        (&3.into(), &1.into())
    );
    let zmq = &state["zmq"];
    assert_eq!(
        zmq["topics"],
        serde_json::json!({
            "hashblock": {"received": 1, "missed": 1},
            "sequence": {"received": 1, "missed": 0},
        })
    );
    assert_eq!(zmq["missed"], 1);
    assert_eq!(
        zmq["last_block"],
        serde_json::json!({"hash": "0f".repeat(32), "time_ns": events[3].timestamp_ns})
    );
    assert_eq!(state["pipeline"]["by_category"]["rpc"], 4);
    assert_eq!(state["pipeline"]["by_category"]["zmq"], 2);
    tool.stop().await;
}

/// `extractor p2p`'s events reach the clients of the p2p category, and pages get them as the
/// node's peer's-eye view: the connection open now, how the last one ended, pings, the node's
/// announcements and the malformed message, a new extractor run forgetting the old run's
/// connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_events_make_a_peers_eye_view() {
    use nodescope_proto::p2p_message::Body;
    use nodescope_proto::{
        BlockHeaderSummary, InventoryItem, InventoryType, P2pFeeFilter, P2pHeaders, P2pInventory,
        P2pVersion, PeerConnection, PeerMessage, PeerPing, PeerState,
    };
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let tool = Tool::start(&server, &["--state-interval-ms", "50"]).await;
    let mut p2p_client = tool.connect("categories=p2p").await;
    let mut page = tool.connect("events=0&state=1").await;

    let connection = |state: PeerState, number, reason: &str| {
        Payload::PeerConnection(PeerConnection {
            state: state as i32,
            connection: number,
            transport: "v2".into(),
            remote: "127.0.0.1:18444".into(),
            local: "127.0.0.1:8555".into(),
            version: Some(P2pVersion {
                version: 70016,
                user_agent: "/Satoshi:30.0.0/".into(),
                start_height: 200,
                ..P2pVersion::default()
            }),
            reason: reason.into(),
            connected_ns: 90_000_000_000,
            retries: 3,
            ..PeerConnection::default()
        })
    };
    let sent = |msg_type: &str, body| {
        Payload::PeerMessage(PeerMessage {
            connection: 1,
            message: Some(P2pMessage {
                msg_type: msg_type.into(),
                size: 50,
                body: Some(body),
                ..P2pMessage::default()
            }),
            since_previous_ns: 1_000_000_000,
        })
    };
    let inv = Body::Inv(P2pInventory {
        items: vec![
            InventoryItem {
                r#type: InventoryType::Wtx as i32,
                type_raw: 5,
                hash: vec![0x01; 32],
            };
            2
        ],
        ..P2pInventory::default()
    });
    let headers = Body::Headers(P2pHeaders {
        count: 1,
        headers: vec![BlockHeaderSummary {
            hash: vec![0x0e; 32],
            ..BlockHeaderSummary::default()
        }],
    });
    let mut old_run = EventSource::of(ExtractorKind::P2p, "node-a", 1);
    let mut run = EventSource::of(ExtractorKind::P2p, "node-a", 2);
    let mut events = vec![
        // Run 1's connection 1 never disconnects: the extractor restarted.
        old_run.stamp(connection(PeerState::Connected, 1, "")),
        run.stamp(connection(PeerState::Connected, 1, "")),
        run.stamp(connection(PeerState::Connected, 2, "")),
        run.stamp(connection(PeerState::Disconnected, 2, "closed by the node")),
        run.stamp(sent("inv", inv.clone())),
        run.stamp(sent("headers", headers)),
        run.stamp(sent(
            "feefilter",
            Body::Feefilter(P2pFeeFilter { fee_rate: 2000 }),
        )),
        run.stamp(Payload::PeerPing(PeerPing {
            connection: 1,
            nonce: 9,
            rtt_ns: 3_500_000,
        })),
    ];
    let mut malformed = run.stamp(sent("inv", inv));
    malformed.error = "bad checksum".into();
    events.push(malformed.clone());
    let mut ebpf = EventSource::new("node-a", 1);
    publish(&publisher, &ebpf.stamp(added(100))).await;
    for event in &events {
        publish(&publisher, event).await;
    }
    let received = next_events(&mut p2p_client, events.len()).await;
    assert_eq!(received, events.iter().map(expected).collect::<Vec<_>>());
    assert!(received.iter().all(|e| e["category"] == "p2p"));
    quiet(&mut p2p_client, Duration::from_millis(300)).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let frame = next_json(&mut page).await;
        if frame["type"] == "state" && frame["state"]["pipeline"]["events"] == 10 {
            break frame["state"].clone();
        }
        assert!(Instant::now() < deadline, "no state with every event");
    };
    let view = &state["p2p"];
    assert_eq!(
        view["open"],
        serde_json::json!({"1": {
            "connection": 1, "transport": "v2", "node_dialled": false,
            "remote": "127.0.0.1:18444", "user_agent": "/Satoshi:30.0.0/", "version": 70016,
            "start_height": 200, "since_ns": events[1].timestamp_ns, "retries": 3,
        }}),
        "run 1's connection is gone, run 2's second ended"
    );
    assert_eq!(
        view["last_disconnect"],
        serde_json::json!({
            "connection": 2, "reason": "closed by the node",
            "time_ns": events[3].timestamp_ns, "connected_ns": 90_000_000_000u64,
        })
    );
    assert_eq!(view["last_failure"], Value::Null);
    assert_eq!(view["state"], "disconnected");
    assert_eq!(
        (&view["connections"], &view["failed"], &view["disconnects"]),
        (&3.into(), &0.into(), &1.into())
    );
    assert_eq!(
        (&view["pings"], &view["last_rtt_ms"]),
        (&1.into(), &3.5.into())
    );
    assert_eq!(view["median_rtt_ms"], 3.5);
    assert_eq!(view["inv_entries"], serde_json::json!({"wtx": 2}));
    assert_eq!(
        view["tx_announced"], 2,
        "the malformed inv's entries are not counted"
    );
    assert_eq!(
        view["last_block"],
        serde_json::json!({
            "msg_type": "headers", "hash": "0e".repeat(32), "time_ns": events[5].timestamp_ns,
        })
    );
    assert_eq!(
        view["feefilter"],
        serde_json::json!({"sat_per_kvb": 2000, "time_ns": events[6].timestamp_ns})
    );
    assert_eq!(
        (&view["messages"], &view["malformed"]),
        (&4.into(), &1.into())
    );
    assert_eq!(
        view["last_malformed"],
        serde_json::json!({
            "msg_type": "inv", "error": "bad checksum", "time_ns": malformed.timestamp_ns,
        })
    );
    assert_eq!(state["pipeline"]["by_category"]["p2p"], 9);
    tool.stop().await;
}

/// The fleet tool's events (category `fleet`, under its own node id) reach the fleet clients,
/// and pages get them as that node's fleet view: the latest blocks with every node's offset,
/// the first node and the missing ones, a report without sightings or height kept as it is,
/// the reorgs with their selfish-mining hint, the fleet's tips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_reports_make_a_fleet_view() {
    use nodescope_proto::{BlockPropagation, FleetState, NodeSighting, NodeTip, Reorg};
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let tool = Tool::start(&server, &["--state-interval-ms", "50"]).await;
    let mut fleet_client = tool.connect("categories=fleet").await;
    let mut page = tool.connect("events=0&state=1").await;

    let sighting = |node: &str, offset_ms: u64| NodeSighting {
        node: node.into(),
        first_seen_ns: 1_700_000_000_000_000_000 + offset_ms * 1_000_000,
        offset_ns: offset_ms * 1_000_000,
        source: "cmpctblock".into(),
        peer: "192.0.2.9:8333".into(),
        connected_ns: Some(1_700_000_000_000_000_000 + offset_ms * 1_000_000 + 5_000_000),
        validation_ns: Some(3_000_000),
    };
    let mut fleet = EventSource::of(ExtractorKind::Fleet, "fleet", 1);
    let events = vec![
        fleet.stamp(Payload::BlockPropagation(BlockPropagation {
            hash: vec![0xa1; 32],
            height: Some(200),
            first_node: "node-b".into(),
            first_seen_ns: 1_700_000_000_000_000_000,
            spread_ns: 250_000_000,
            nodes: vec![
                sighting("node-b", 0),
                sighting("node-a", 40),
                sighting("node-c", 250),
            ],
            missing: vec![],
        })),
        fleet.stamp(Payload::BlockPropagation(BlockPropagation {
            hash: vec![0xa2; 32],
            height: Some(201),
            first_node: "node-a".into(),
            first_seen_ns: 1_700_000_000_600_000_000,
            spread_ns: 12_000_000,
            nodes: vec![sighting("node-a", 0), sighting("node-b", 12)],
            missing: vec!["node-c".into()],
        })),
        // What a confused publisher might send: nothing but a hash.
        fleet.stamp(Payload::BlockPropagation(BlockPropagation {
            hash: vec![0xa3; 32],
            ..BlockPropagation::default()
        })),
        fleet.stamp(Payload::Reorg(Reorg {
            node: "node-c".into(),
            old_tip: vec![0xb1; 32],
            old_height: 201,
            new_block: vec![0xb2; 32],
            new_height: 200,
            depth: 2,
            disconnected: vec![vec![0xb1; 32], vec![0xa1; 32]],
            possible_selfish_mining: true,
            branch_source: "198.51.100.7:8333".into(),
            branch_blocks_from_source: 3,
        })),
        fleet.stamp(Payload::FleetState(FleetState {
            tips: vec![
                NodeTip {
                    node: "node-a".into(),
                    hash: vec![0xa2; 32],
                    height: 201,
                    mempool_tracked: 5,
                },
                NodeTip {
                    node: "node-c".into(),
                    hash: vec![0xb2; 32],
                    height: 200,
                    mempool_tracked: 4,
                },
            ],
            distinct_tips: 2,
            mempool_pairs: vec![],
        })),
    ];
    let mut ebpf = EventSource::new("node-a", 1);
    publish(&publisher, &ebpf.stamp(added(100))).await;
    for event in &events {
        publish(&publisher, event).await;
    }
    let received = next_events(&mut fleet_client, events.len()).await;
    assert_eq!(received, events.iter().map(expected).collect::<Vec<_>>());
    assert!(received.iter().all(|e| e["category"] == "fleet"));
    quiet(&mut fleet_client, Duration::from_millis(300)).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let frame = next_json(&mut page).await;
        if frame["type"] == "state"
            && frame["node"] == "fleet"
            && frame["state"]["pipeline"]["events"] == events.len()
        {
            break frame["state"].clone();
        }
        assert!(Instant::now() < deadline, "no fleet state with every event");
    };
    let view = &state["fleet"];
    let blocks = view["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 3, "{view:#}");
    assert_eq!(
        blocks[0],
        serde_json::json!({
            "hash": "a3".repeat(32), "height": null, "first_node": "", "first_seen_ns": 0,
            "spread_ns": 0, "nodes": [], "nodes_dropped": 0, "missing": [],
            "missing_dropped": 0, "time_ns": events[2].timestamp_ns,
        }),
        "newest first, odd as it came"
    );
    assert_eq!(blocks[1]["height"], 201);
    assert_eq!(blocks[1]["missing"], serde_json::json!(["node-c"]));
    assert_eq!(blocks[2]["hash"], "a1".repeat(32));
    assert_eq!(blocks[2]["first_node"], "node-b");
    assert_eq!(blocks[2]["spread_ns"], 250_000_000);
    let offsets: Vec<(&str, u64)> = blocks[2]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap(),
                n["offset_ns"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        offsets,
        [
            ("node-b", 0),
            ("node-a", 40_000_000),
            ("node-c", 250_000_000)
        ]
    );
    assert_eq!(
        blocks[2]["nodes"][1],
        serde_json::json!({
            "node": "node-a", "offset_ns": 40_000_000, "source": "cmpctblock",
            "peer": "192.0.2.9:8333", "validation_ns": 3_000_000,
        })
    );
    assert_eq!(
        view["reorgs"],
        serde_json::json!([{
            "node": "node-c", "depth": 2, "old_height": 201, "new_height": 200,
            "new_block": "b2".repeat(32), "disconnected": 2, "possible_selfish_mining": true,
            "branch_source": "198.51.100.7:8333", "branch_blocks_from_source": 3,
            "time_ns": events[3].timestamp_ns,
        }])
    );
    assert_eq!(
        (
            &view["block_reports"],
            &view["reorg_count"],
            &view["selfish_flags"]
        ),
        (&3.into(), &1.into(), &1.into())
    );
    assert_eq!(view["distinct_tips"], 2);
    assert_eq!(view["tips"][1]["node"], "node-c");
    assert_eq!(state["pipeline"]["by_category"]["fleet"], 5);
    tool.stop().await;
}

/// A client that stops reading must not delay another: the live client gets every event, in
/// order, while its neighbour is stalled and still connected (the live one does not wait for
/// the stalled one to be dropped); then the stalled one is disconnected and what it lost is
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_does_not_delay_the_others() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    // A queue longer than the events published: the live client cannot fall behind.
    let tool = Tool::start(&server, &["--client-queue", "4096", "--send-timeout", "10"]).await;
    let mut live = tool.connect("").await;
    let mut stalled = tool.connect_stalling().await;
    let mut source = EventSource::new("node-a", 1);
    // 16 MB: more than the stalled client's socket buffers hold, so that writes to it stall.
    let events: Vec<Event> = (0..2000)
        .map(|_| {
            let mut event = source.stamp(message(1, "tx", 8000));
            event.error = "x".repeat(8000);
            event
        })
        .collect();
    for event in &events {
        publish(&publisher, event).await;
    }
    for event in &events {
        let frame = next_events(&mut live, 1).await.remove(0);
        assert_eq!(
            frame["event"]["sequence"], event.sequence,
            "the live client misses nothing"
        );
    }
    let (_, health) = http_get(&format!("http://{}/healthz", tool.address)).await;
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["counters"]["clients"], 2, "{health}");
    assert_eq!(health["counters"]["stalled_disconnects"], 0, "{health}");

    wait_until(
        "the stalled client is disconnected",
        Duration::from_secs(30),
        || async {
            let (_, health) = http_get(&format!("http://{}/healthz", tool.address)).await;
            let counters = &serde_json::from_str::<Value>(&health).unwrap()["counters"];
            counters["stalled_disconnects"] == 1 && counters["clients"] == 1
        },
    )
    .await;
    let (status, health) = http_get(&format!("http://{}/healthz", tool.address)).await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["counters"]["stalled_disconnects"], 1, "{health}");
    assert!(
        health["counters"]["lagged_events"].as_u64().unwrap() > 0,
        "{health}"
    );
    assert_eq!(health["counters"]["clients"], 1, "{health}");
    // The same counts for Prometheus.
    let (status, metrics) = http_get(&format!("http://{}/metrics", tool.address)).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\nnodescope_websocket_stalled_disconnects_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nnodescope_websocket_clients 1\n"),
        "{metrics}"
    );
    let lagged = health["counters"]["lagged_events"].as_u64().unwrap();
    assert!(
        metrics.contains(&format!(
            "\nnodescope_websocket_lagged_events_total {lagged}\n"
        )),
        "{metrics}"
    );
    assert_promtool_clean(&metrics);

    // What the stalled client lost is exactly what did not reach it: it reads now what the
    // tool had written to its socket before dropping it, up to the last whole frame.
    let mut received = 0;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(10), stalled.next()).await
    {
        if let Message::Text(text) = message {
            received += (serde_json::from_str::<Value>(&text).unwrap()["type"] == "event") as u64;
        }
    }
    assert_eq!(received + lagged, events.len() as u64);
    tool.stop().await;
}

/// A client that falls a whole queue behind loses the oldest events, is told how many at the
/// place it lost them, and the tool counts exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_falls_behind_is_told_what_it_lost() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let tool = Tool::start(&server, &["--client-queue", "16", "--send-timeout", "60"]).await;
    let mut live = tool.connect("").await;
    // Reads nothing while the events are published: its socket fills, the tool's writes to it
    // wait, and the queue passes it by.
    let mut behind = tool.connect_stalling().await;
    let mut source = EventSource::new("node-a", 1);
    let events: Vec<Event> = (0..600)
        .map(|_| {
            let mut event = source.stamp(message(1, "tx", 16000));
            event.error = "x".repeat(16000);
            event
        })
        .collect();
    for event in &events {
        publish(&publisher, event).await;
    }
    let last = events.last().unwrap().sequence;
    // The tool has them all once the live client saw the last one (it may have fallen behind
    // too, a queue of 16 being short: then it was told).
    let mut live_dropped = 0;
    loop {
        let frame = next_json(&mut live).await;
        live_dropped += frame["dropped"].as_u64().unwrap_or(0);
        if frame["event"]["sequence"] == last {
            break;
        }
    }

    let mut received = 0;
    let mut dropped = 0;
    // Told since the last event received.
    let mut told = 0;
    let mut next = events[0].sequence;
    while next <= last {
        let frame = next_json(&mut behind).await;
        match frame["type"].as_str() {
            Some("lagged") => {
                told += frame["dropped"].as_u64().unwrap();
            }
            Some("event") => {
                let sequence = frame["event"]["sequence"].as_u64().unwrap();
                assert_eq!(
                    sequence - next,
                    told,
                    "the events skipped before sequence {sequence} are what the notice said"
                );
                dropped += told;
                told = 0;
                received += 1;
                next = sequence + 1;
            }
            _ => {}
        }
    }
    assert!(dropped > 0, "the client fell behind");
    assert_eq!(received + dropped, events.len() as u64);
    let (_, health) = http_get(&format!("http://{}/healthz", tool.address)).await;
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health["counters"]["lagged_events"],
        dropped + live_dropped,
        "{health}"
    );
    assert_eq!(health["counters"]["stalled_disconnects"], 0, "{health}");
    tool.stop().await;
}

/// A raw client: the upgrade by hand, frames read and written as bytes.
struct RawClient {
    socket: TcpStream,
    received: Vec<u8>,
}

impl RawClient {
    /// Sends the upgrade request followed at once by `then` (frames sent before the reply).
    async fn connect(address: SocketAddr, then: &[u8]) -> RawClient {
        use tokio::io::AsyncWriteExt;
        let mut socket = TcpStream::connect(address).await.unwrap();
        let mut request = format!(
            "GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        request.extend_from_slice(then);
        socket.write_all(&request).await.unwrap();
        let mut client = RawClient {
            socket,
            received: Vec::new(),
        };
        let end = loop {
            if let Some(end) = client.received.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            assert!(
                client.read().await > 0,
                "the tool closed during the handshake"
            );
        };
        assert!(client.received.starts_with(b"HTTP/1.1 101 "));
        client.received.drain(..end + 4);
        client
    }

    async fn read(&mut self) -> usize {
        use tokio::io::AsyncReadExt;
        tokio::time::timeout(
            Duration::from_secs(10),
            self.socket.read_buf(&mut self.received),
        )
        .await
        .expect("bytes within 10 s")
        .unwrap()
    }

    async fn send(&mut self, frame: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.socket.write_all(frame).await.unwrap();
    }

    /// The next frame from the tool: its opcode and payload (a server's frames are unmasked).
    async fn next_frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if let [first, second, ..] = self.received[..] {
                assert_eq!(second & 0x80, 0, "a server's frames are not masked");
                let (length, header) = match second & 0x7f {
                    126 => (
                        u16::from_be_bytes([self.received[2], self.received[3]]) as usize,
                        4,
                    ),
                    127 => panic!("no frame here is that long"),
                    short => (short as usize, 2),
                };
                if self.received.len() >= header + length {
                    let payload = self.received[header..header + length].to_vec();
                    self.received.drain(..header + length);
                    assert_eq!(first & 0xf0, 0x80, "a final frame, no reserved bits");
                    return (first & 0x0f, payload);
                }
            }
            assert!(self.read().await > 0, "the tool closed the connection");
        }
    }

    /// The tool closed the connection after its last frame.
    async fn closed(&mut self) -> bool {
        self.received.is_empty() && self.read().await == 0
    }
}

/// A client's frame: masked, as clients must.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0xa1, 0x07, 0x5c, 0xe2];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// Pings are answered (one sent along with the upgrade request too), a close is answered and
/// ends the session, and frames that break the protocol close it with the reason.
#[tokio::test]
async fn pings_closes_and_broken_frames_are_answered() {
    let server = NatsServer::start();
    let tool = Tool::start(&server, &[]).await;
    let mut client = RawClient::connect(tool.address, &masked(0x9, b"are you there")).await;
    let (opcode, hello) = client.next_frame().await;
    assert_eq!(opcode, 0x1);
    let hello: Value = serde_json::from_slice(&hello).unwrap();
    assert_eq!(hello["type"], "subscribed");
    assert_eq!(client.next_frame().await, (0xa, b"are you there".to_vec()));

    client.send(&masked(0x9, b"")).await;
    assert_eq!(client.next_frame().await, (0xa, Vec::new()));
    client.send(&masked(0x8, &1000u16.to_be_bytes())).await;
    assert_eq!(
        client.next_frame().await,
        (0x8, 1000u16.to_be_bytes().to_vec())
    );
    assert!(client.closed().await);

    let mut broken = RawClient::connect(tool.address, &[]).await;
    assert_eq!(broken.next_frame().await.0, 0x1);
    broken.send(&[0x81, 0x01, b'x']).await; // unmasked
    let (opcode, close) = broken.next_frame().await;
    assert_eq!(opcode, 0x8);
    assert_eq!(&close[..2], &1002u16.to_be_bytes());
    assert_eq!(&close[2..], b"a client's frames must be masked");
    assert!(broken.closed().await);

    wait_until(
        "the tool counts no client",
        Duration::from_secs(10),
        || async {
            let (_, health) = http_get(&format!("http://{}/healthz", tool.address)).await;
            let health: Value = serde_json::from_str(&health).unwrap();
            health["counters"]["clients"] == 0
        },
    )
    .await;
    tool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_clients_each_get_every_event() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let tool = Tool::start(&server, &[]).await;
    let mut clients = Vec::new();
    for _ in 0..300 {
        clients.push(tool.connect("categories=mempool").await);
    }
    let mut a = EventSource::new("node-a", 1);
    let events: Vec<Event> = (0..50).map(|n| a.stamp(added(n))).collect();
    for event in &events {
        publish(&publisher, event).await;
    }
    let expected: Vec<Value> = events.iter().map(expected).collect();
    let receiving = clients.into_iter().map(|mut socket| {
        let expected = expected.clone();
        tokio::spawn(async move {
            assert_eq!(next_events(&mut socket, 50).await, expected);
        })
    });
    for client in futures::future::join_all(receiving).await {
        client.unwrap();
    }
    tool.stop().await;
}

#[tokio::test]
async fn health_page_origins_and_a_clean_shutdown() {
    let server = NatsServer::start();
    let tool = Tool::start(&server, &["--allowed-origins", "https://ops.example"]).await;
    let base = format!("http://{}", tool.address);
    let (status, page) = http_get(&format!("{base}/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>nodescope — live</title>"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    assert_eq!(http_get(&format!("{base}/healthz")).await.0, 200);
    assert_eq!(http_get(&format!("{base}/nope")).await.0, 404);
    assert_eq!(http_get(&format!("{base}/ws")).await.0, 400);

    let upgrade = |origin: &str| {
        let mut request = format!("ws://{}/ws", tool.address)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let refused = upgrade("https://evil.example").await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    upgrade("https://ops.example")
        .await
        .expect("an allowed origin");
    upgrade(&format!("http://{}", tool.address))
        .await
        .expect("the page's own origin");

    let mut socket = tool.connect("").await;
    let stopping = tokio::spawn(tool.stop());
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a close frame")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(
        close.unwrap().reason.as_str(),
        "the websocket tool is stopping"
    );
    stopping.await.unwrap();
}
