//! The live page in a real headless Chromium (Debian's `chromium`, driven over the DevTools
//! protocol): fed with known events, the rendered DOM shows exactly their numbers, a page
//! opened after the events still shows them (snapshot), and the page reconnects when the tool
//! comes back. A screenshot is saved as a test artifact.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use nodescope_consumer::testing::{client, http_get, poll_for, publish, EventSource, NatsServer};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::rpc_call::Result as Answer;
use nodescope_proto::zmq_notification::Body as ZmqBody;
use nodescope_proto::{
    AddrNetwork, BlockConnected, BlockHeaderSummary, BlockchainInfo, ClosedConnection,
    ConnectionType, ConnectivityCheck, ConnectivityResult, ExtractorKind, ExtractorStats,
    InboundConnection, InventoryItem, InventoryType, MempoolAdded, MempoolInfo, MempoolRejected,
    MempoolRemoved, NetAddress, NetMessage, NetTotals, Network, NetworkInfo, NetworkReachability,
    OutboundConnection, P2pAddr, P2pCmpctBlock, P2pFeeFilter, P2pHeaders, P2pInventory, P2pMessage,
    P2pVersion, Peer, PeerConnection, PeerInfo, PeerInfoList, PeerMessage, PeerPing, PeerState,
    RemovalReason, RpcCall, RpcFailure, RpcFailureKind, TxSummary, Uptime, V2Support,
    ZmqNotification,
};
use nodescope_websocket::{run_on, Args};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fields drop in order: the DevTools socket before the browser.
struct Browser {
    devtools: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
    _child: ChildGuard,
}

impl Browser {
    async fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1400,1100",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's chromium (installed by `cargo xtask setup`)");
        // Killed on drop, whatever fails next.
        let guard = ChildGuard(child);
        // Chromium writes the port it chose into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse::<u16>().ok())
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not start its DevTools server"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (_, targets) = tokio::time::timeout(
            Duration::from_secs(10),
            http_get(&format!("http://127.0.0.1:{port}/json/list")),
        )
        .await
        .expect("DevTools lists its targets");
        let targets: Value = serde_json::from_str(&targets).unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (devtools, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .expect("DevTools accepts a websocket")
        .unwrap();
        Browser {
            _child: guard,
            _profile: profile,
            devtools,
            next_id: 1,
        }
    }

    /// Calls a DevTools method and returns its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.devtools
            .send(Message::Text(request.into()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.devtools.next())
                .await
                .expect("a DevTools reply")
                .unwrap()
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates `expression` (which returns a JSON string) in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        serde_json::from_str(result["result"]["value"].as_str().unwrap_or("null")).unwrap()
    }

    /// What the page shows, read from its DOM.
    async fn shown(&mut self) -> Value {
        self.eval(
            r##"JSON.stringify({
                status: document.getElementById("status-text").textContent,
                node: document.getElementById("node").value,
                events: document.getElementById("stat-events").textContent,
                missed: document.getElementById("stat-missed").textContent,
                kernelDrops: document.getElementById("stat-kernel-drops").textContent,
                published: document.getElementById("stat-published").textContent,
                peerCount: document.getElementById("peer-count").textContent,
                peers: [...document.querySelectorAll("#peers tbody tr")].map(r => [...r.cells].map(c => c.textContent)),
                messages: [...document.querySelectorAll("#messages tbody tr")].map(r => [r.cells[0].textContent, ...[...r.cells].slice(4).map(c => c.textContent)]),
                added: document.getElementById("mempool-added").textContent,
                vbytes: document.getElementById("mempool-vbytes").textContent,
                replaced: document.getElementById("mempool-replaced").textContent,
                removed: document.getElementById("mempool-removed").textContent,
                rejected: document.getElementById("mempool-rejected").textContent,
                removedReasons: [...document.querySelectorAll("#mempool-removed-reasons li")].map(li => li.textContent),
                rejectedReasons: [...document.querySelectorAll("#mempool-rejected-reasons li")].map(li => li.textContent),
                blocks: [...document.querySelectorAll("#blocks tbody tr")].map(r => [...r.cells].slice(0, 6).map(c => c.textContent)),
                connectivityShown: !document.getElementById("connectivity").hidden,
                connectivityChecks: document.getElementById("connectivity-checks").textContent,
                reachability: [...document.querySelectorAll("#reachability tbody tr")].map(r => [...r.cells].map(c => c.textContent)),
                rpcShown: !document.getElementById("rpc").hidden,
                rpc: Object.fromEntries([...document.querySelectorAll("#rpc .stat b")].map(b => [b.id.slice(4), b.textContent])),
                rpcPeerTypes: [...document.querySelectorAll("#rpc-peer-types li")].map(li => li.textContent),
                rpcTransports: [...document.querySelectorAll("#rpc-transports li")].map(li => li.textContent),
                rpcFailures: [...document.querySelectorAll("#rpc-failures li")].map(li => [li.getAttribute("data-method"), li.firstChild.textContent]),
                zmqShown: !document.getElementById("zmq").hidden,
                zmqLastBlock: document.getElementById("zmq-last-block").textContent,
                zmqMissed: document.getElementById("zmq-missed").textContent,
                zmqTopics: [...document.querySelectorAll("#zmq-topics tbody tr")].map(r => [...r.cells].map(c => c.textContent)),
                p2pShown: !document.getElementById("p2p").hidden,
                p2p: Object.fromEntries([...document.querySelectorAll("#p2p .stat b")].map(b => [b.id.slice(4), b.textContent])),
                p2pAddresses: [...document.querySelectorAll("#p2p-addresses li")].map(li => li.textContent),
                p2pInv: [...document.querySelectorAll("#p2p-inv li")].map(li => li.textContent),
                p2pConnections: [...document.querySelectorAll("#p2p-connections tbody tr")].map(r => [...r.cells].map(c => c.textContent)),
            })"##,
        )
        .await
    }

    /// Waits until the page shows what `ready` accepts; returns it.
    async fn wait_for(&mut self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let shown = self.shown().await;
            if ready(&shown) {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}: {shown:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Tool {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_tool(server: &NatsServer, listener: tokio::net::TcpListener) -> Tool {
    let args = Args::parse_from([
        "websocket",
        "--nats-url",
        &server.url(),
        "--state-interval-ms",
        "100",
    ]);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_on(listener, args, async move {
        let _ = stopped.await;
    }));
    Tool { stop, task }
}

impl Tool {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn peer(id: i64, conn_type: ConnectionType) -> Option<Peer> {
    Some(Peer {
        id,
        addr: format!("203.0.113.{id}:8333"),
        conn_type: conn_type as i32,
        conn_type_other: String::new(),
    })
}

fn message(
    id: i64,
    conn_type: ConnectionType,
    msg_type: &str,
    size: u64,
    inbound: bool,
) -> Payload {
    let message = NetMessage {
        peer: peer(id, conn_type),
        message: Some(P2pMessage {
            msg_type: msg_type.into(),
            size,
            ..P2pMessage::default()
        }),
    };
    if inbound {
        Payload::InboundMessage(message)
    } else {
        Payload::OutboundMessage(message)
    }
}

/// A small node's life: three peers (one leaves), traffic, mempool changes, two blocks and the
/// extractor's stats.
fn scenario(source: &mut EventSource) -> Vec<nodescope_proto::Event> {
    use ConnectionType::{Inbound, OutboundFullRelay};
    let mut payloads = vec![
        Payload::OutboundConnection(OutboundConnection {
            peer: peer(1, OutboundFullRelay),
            network: Network::Ipv4 as i32,
            outbound_count: 1,
        }),
        Payload::InboundConnection(InboundConnection {
            peer: peer(2, Inbound),
            network: Network::Ipv6 as i32,
            inbound_count: 1,
        }),
        Payload::InboundConnection(InboundConnection {
            peer: peer(3, Inbound),
            network: Network::Onion as i32,
            inbound_count: 2,
        }),
    ];
    for _ in 0..5 {
        payloads.push(message(1, OutboundFullRelay, "inv", 37, true));
    }
    for _ in 0..2 {
        payloads.push(message(1, OutboundFullRelay, "getdata", 37, false));
    }
    for _ in 0..3 {
        payloads.push(message(3, Inbound, "ping", 8, true));
    }
    payloads.push(message(2, Inbound, "version", 102, true));
    payloads.push(Payload::ClosedConnection(ClosedConnection {
        peer: peer(2, Inbound),
        network: Network::Ipv6 as i32,
        connected_since: 1,
    }));
    for vsize in [110, 120, 130, 140] {
        payloads.push(Payload::MempoolAdded(MempoolAdded {
            txid: vec![vsize as u8; 32],
            vsize,
            fee: 1000,
        }));
    }
    payloads.push(Payload::MempoolRemoved(MempoolRemoved {
        txid: vec![110; 32],
        reason: RemovalReason::Block as i32,
        ..Default::default()
    }));
    payloads.push(Payload::MempoolRejected(MempoolRejected {
        txid: vec![9; 32],
        reason: "min relay fee not met".into(),
    }));
    for (height, ms) in [(100, 4), (101, 12)] {
        payloads.push(Payload::BlockConnected(BlockConnected {
            hash: vec![height as u8; 32],
            height,
            transactions: 2,
            inputs: 3,
            sigop_cost: 8,
            duration_ns: ms * 1_000_000,
        }));
    }
    payloads.push(Payload::ExtractorStats(ExtractorStats {
        events_read: 24,
        published: 24,
        kernel_drops: [("net".to_string(), 7)].into(),
        malformed_records: 2,
        ..Default::default()
    }));
    payloads.into_iter().map(|p| source.stamp(p)).collect()
}

/// What a connectivity checker watching the node found: two IPv4 addresses reachable (one
/// over v2), one refused, and a Tor address its network cannot reach.
fn checks(source: &mut EventSource) -> Vec<nodescope_proto::Event> {
    use ConnectivityResult::{Reachable, Refused, UnreachableNetwork};
    [
        (AddrNetwork::Ipv4, Reachable, V2Support::Supported),
        (AddrNetwork::Ipv4, Reachable, V2Support::NotSupported),
        (AddrNetwork::Ipv4, Refused, V2Support::NotTried),
        (AddrNetwork::Torv3, UnreachableNetwork, V2Support::NotTried),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, (network, result, v2))| {
        source.stamp(Payload::ConnectivityCheck(ConnectivityCheck {
            address: Some(NetAddress {
                network: network as i32,
                address: format!("198.51.100.{n}"),
                port: 8333,
                ..NetAddress::default()
            }),
            result: result as i32,
            v2: v2 as i32,
            ..ConnectivityCheck::default()
        }))
    })
    .collect()
}

fn rpc_call(method: &str, answer: Answer) -> Payload {
    Payload::RpcCall(RpcCall {
        method: method.into(),
        duration_ns: 2_000_000,
        reply_bytes: 512,
        unknown_fields: Vec::new(),
        result: Some(answer),
    })
}

fn rpc_peer(connection_type: &str, transport: &str, ping: Option<f64>) -> PeerInfo {
    PeerInfo {
        inbound: connection_type == "inbound",
        connection_type: connection_type.into(),
        transport_protocol_type: transport.into(),
        pingtime: ping,
        ..PeerInfo::default()
    }
}

/// What `extractor rpc` says of the node: one answer of each method the page shows, a
/// getmempoolinfo that failed after it had answered once, a getblockchaininfo that failed and
/// then answered (no longer failing), and ZMQ notifications with a gap.
fn rpc_and_zmq(source: &mut EventSource) -> Vec<nodescope_proto::Event> {
    let reachable = |name: &str, reachable: bool| NetworkReachability {
        name: name.into(),
        reachable,
        ..NetworkReachability::default()
    };
    let failure = |kind: RpcFailureKind, code: i64, message: &str| {
        Answer::Failure(RpcFailure {
            kind: kind as i32,
            code,
            message: message.into(),
        })
    };
    let mut events = vec![
        source.stamp(rpc_call(
            "getblockchaininfo",
            failure(RpcFailureKind::RpcError, -28, "Loading block index…"),
        )),
        source.stamp(rpc_call(
            "getblockchaininfo",
            Answer::BlockchainInfo(BlockchainInfo {
                chain: "regtest".into(),
                blocks: 101,
                headers: 103,
                verificationprogress: 0.5,
                initialblockdownload: true,
                size_on_disk: 2_500_000,
                pruned: false,
                ..BlockchainInfo::default()
            }),
        )),
        source.stamp(rpc_call(
            "getnetworkinfo",
            Answer::NetworkInfo(NetworkInfo {
                version: 300_000,
                subversion: "/Satoshi:30.0.0/".into(),
                connections: 3,
                connections_in: 1,
                connections_out: 2,
                networkactive: true,
                networks: vec![
                    reachable("ipv4", true),
                    reachable("onion", false),
                    reachable("ipv6", true),
                ],
                ..NetworkInfo::default()
            }),
        )),
        source.stamp(rpc_call(
            "getmempoolinfo",
            Answer::MempoolInfo(MempoolInfo {
                loaded: true,
                size: 1234,
                bytes: 456_000,
                usage: 1_500_000,
                maxmempool: 300_000_000,
                mempoolminfee: 0.000_01,
                ..MempoolInfo::default()
            }),
        )),
        source.stamp(rpc_call(
            "getnettotals",
            Answer::NetTotals(NetTotals {
                totalbytesrecv: 5_000_000,
                totalbytessent: 7_500,
                ..NetTotals::default()
            }),
        )),
        source.stamp(rpc_call(
            "uptime",
            Answer::Uptime(Uptime {
                seconds: 2 * 86_400 + 3 * 3600 + 120,
            }),
        )),
        source.stamp(rpc_call(
            "getpeerinfo",
            Answer::PeerInfo(PeerInfoList {
                peers: vec![
                    rpc_peer("outbound-full-relay", "v2", Some(0.010)),
                    rpc_peer("block-relay-only", "v1", Some(0.050)),
                    rpc_peer("inbound", "v2", Some(0.020)),
                ],
            }),
        )),
    ];
    let mut failed = source.stamp(rpc_call(
        "getmempoolinfo",
        failure(RpcFailureKind::Timeout, 0, ""),
    ));
    failed.error = "getmempoolinfo: no answer within 5 s".into();
    events.push(failed);
    let zmq = |topic: &str, missed_before, hash: u8| {
        Payload::ZmqNotification(ZmqNotification {
            topic: topic.into(),
            zmq_sequence: 1,
            endpoint: "tcp://127.0.0.1:28332".into(),
            missed_before,
            body: Some(ZmqBody::Hash(vec![hash; 32])),
        })
    };
    for payload in [
        zmq("hashblock", 0, 0x11),
        zmq("hashtx", 0, 0x01),
        zmq("hashtx", 2, 0x02),
        zmq("hashblock", 0, 0x22),
    ] {
        events.push(source.stamp(payload));
    }
    events
}

/// What `extractor p2p` saw of the node: a connection the node dialled and closed, a failed
/// dial, then the connection up now (v2, after that failure), the node's announcements on it,
/// a malformed message and three pings.
fn peer_view(source: &mut EventSource) -> Vec<nodescope_proto::Event> {
    use PeerState::{Connected, Disconnected, Failed};
    let connection = |state: PeerState, number, transport: &str, user_agent: &str| PeerConnection {
        state: state as i32,
        connection: number,
        transport: transport.into(),
        node_dialled: number == 1,
        remote: "127.0.0.1:18444".into(),
        local: "127.0.0.1:8555".into(),
        version: (!user_agent.is_empty()).then(|| P2pVersion {
            version: 70016,
            user_agent: user_agent.into(),
            start_height: 101,
            ..P2pVersion::default()
        }),
        ..PeerConnection::default()
    };
    let sent = |msg_type: &str, body| {
        Payload::PeerMessage(PeerMessage {
            connection: 3,
            message: Some(P2pMessage {
                msg_type: msg_type.into(),
                size: 100,
                body: Some(body),
                ..P2pMessage::default()
            }),
            since_previous_ns: 0,
        })
    };
    let inv = |types: &[InventoryType]| {
        Body::Inv(P2pInventory {
            items: types
                .iter()
                .map(|t| InventoryItem {
                    r#type: *t as i32,
                    type_raw: 0,
                    hash: vec![0x01; 32],
                })
                .collect(),
            ..P2pInventory::default()
        })
    };
    let header = |byte| BlockHeaderSummary {
        hash: vec![byte; 32],
        ..BlockHeaderSummary::default()
    };
    let address = |network: AddrNetwork| NetAddress {
        network: network as i32,
        ..NetAddress::default()
    };
    use InventoryType::{Block, Tx, Wtx};
    let mut payloads = vec![
        Payload::PeerConnection(connection(Connected, 1, "v1", "/Satoshi:29.0.0/")),
        Payload::PeerConnection(PeerConnection {
            reason: "closed by the node".into(),
            connected_ns: 60_000_000_000,
            ..connection(Disconnected, 1, "v1", "/Satoshi:29.0.0/")
        }),
        Payload::PeerConnection(PeerConnection {
            reason: "dialling 127.0.0.1:18444: Connection refused (os error 111)".into(),
            ..connection(Failed, 2, "", "")
        }),
        Payload::PeerConnection(PeerConnection {
            retries: 1,
            ..connection(Connected, 3, "v2", "/Satoshi:30.0.0/")
        }),
        sent("inv", inv(&[Wtx, Wtx, Block])),
        sent("inv", inv(&[Tx])),
        sent("tx", Body::Tx(TxSummary::default())),
        sent(
            "addrv2",
            Body::Addrv2(P2pAddr {
                addresses: vec![
                    address(AddrNetwork::Ipv4),
                    address(AddrNetwork::Torv3),
                    address(AddrNetwork::Torv3),
                ],
            }),
        ),
        sent(
            "feefilter",
            Body::Feefilter(P2pFeeFilter { fee_rate: 1000 }),
        ),
        sent(
            "headers",
            Body::Headers(P2pHeaders {
                count: 1,
                headers: vec![header(0x0c)],
            }),
        ),
        sent(
            "cmpctblock",
            Body::Cmpctblock(P2pCmpctBlock {
                header: Some(header(0x0d)),
                ..P2pCmpctBlock::default()
            }),
        ),
    ];
    for rtt_ms in [4, 6, 10] {
        payloads.push(Payload::PeerPing(PeerPing {
            connection: 3,
            nonce: rtt_ms,
            rtt_ns: rtt_ms * 1_000_000,
        }));
    }
    let mut events: Vec<_> = payloads.into_iter().map(|p| source.stamp(p)).collect();
    let mut malformed = source.stamp(sent("inv", inv(&[Wtx])));
    malformed.error = "bad checksum".into();
    events.push(malformed);
    events
}

fn artifact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_what_the_events_say() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let tool = start_tool(&server, listener).await;

    // The events come first: the page, opened after them, must show them from the snapshot.
    let mut source = EventSource::new("node-a", 1);
    let mut events = scenario(&mut source);
    let mut checker = EventSource::of(ExtractorKind::ConnectivityCheck, "node-a", 7);
    events.extend(checks(&mut checker));
    let mut rpc = EventSource::of(ExtractorKind::Rpc, "node-a", 3);
    events.extend(rpc_and_zmq(&mut rpc));
    let mut p2p = EventSource::of(ExtractorKind::P2p, "node-a", 4);
    events.extend(peer_view(&mut p2p));
    let count = events.len();
    let (mut probe, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
        .await
        .unwrap();
    probe.next().await.unwrap().unwrap(); // subscribed
    for event in &events {
        publish(&publisher, event).await;
    }
    let mut seen = 0;
    while seen < count {
        let frame = tokio::time::timeout(Duration::from_secs(10), probe.next())
            .await
            .expect("the tool relays every event");
        if let Message::Text(_) = frame.unwrap().unwrap() {
            seen += 1;
        }
    }
    eprintln!("the tool has all {count} events; starting chromium");

    let all_events = thousands(count);
    let mut browser = Browser::start().await;
    browser
        .call(
            "Page.navigate",
            json!({"url": format!("http://{address}/")}),
        )
        .await;
    let shown = browser
        .wait_for("all the events", |s| s["events"] == all_events.as_str())
        .await;
    assert_eq!(shown["status"], "live");
    assert_eq!(shown["node"], "node-a");
    assert_eq!(shown["peerCount"], "2");
    let (first, second) = (peer_row_of(&shown, 0), peer_row_of(&shown, 1));
    assert_eq!(
        [&first[..4], &first[5..]].concat(),
        [
            "1",
            "203.0.113.1:8333",
            "outbound_full_relay",
            "ipv4",
            "5",
            "2",
            "185 B",
            "74 B"
        ]
    );
    assert!(first[4].ends_with("s ago"), "{first:?}");
    assert_eq!(
        [&second[..4], &second[5..]].concat(),
        [
            "3",
            "203.0.113.3:8333",
            "inbound",
            "onion",
            "3",
            "0",
            "24 B",
            "0 B"
        ]
    );
    let mut messages = shown["messages"].clone();
    messages
        .as_array_mut()
        .unwrap()
        .sort_by_key(|m| m[0].as_str().unwrap().to_string());
    assert_eq!(
        messages,
        json!([
            ["getdata", "0", "2", "0 B", "74 B"],
            ["inv", "5", "0", "185 B", "0 B"],
            ["ping", "3", "0", "24 B", "0 B"],
            ["version", "1", "0", "102 B", "0 B"],
        ])
    );
    assert_eq!(shown["added"], "4");
    assert_eq!(shown["vbytes"], "500");
    assert_eq!(shown["removed"], "1");
    assert_eq!(shown["rejected"], "1");
    assert_eq!(shown["replaced"], "0");
    assert_eq!(shown["removedReasons"], json!(["block1"]));
    assert_eq!(shown["rejectedReasons"], json!(["min relay fee not met1"]));
    assert_eq!(
        shown["blocks"],
        json!([
            [
                "101",
                format!("{}…{}", "65".repeat(8), "65".repeat(4)),
                "2",
                "3",
                "8",
                "12.00 ms"
            ],
            [
                "100",
                format!("{}…{}", "64".repeat(8), "64".repeat(4)),
                "2",
                "3",
                "8",
                "4.00 ms"
            ],
        ])
    );
    // Dropped by the full ring and not parsed: both lost on the way out of the kernel.
    assert_eq!(shown["kernelDrops"], "9");
    assert_eq!(shown["published"], "24");
    assert_eq!(shown["missed"], "0");
    assert_eq!(shown["connectivityShown"], true);
    assert_eq!(shown["connectivityChecks"], "4");
    assert_eq!(
        shown["reachability"],
        json!([
            ["ipv4", "3", "2", "66.7%", "1", "0", "0", "0", "0", "0", "0", "0", "1 of 2"],
            ["torv3", "1", "0", "–", "0", "0", "0", "0", "0", "0", "1", "0", "–"],
        ])
    );

    // The node summary from RPC: the latest answer of each method, the one call failing now.
    assert_eq!(shown["rpcShown"], true);
    assert_eq!(
        shown["rpc"],
        json!({
            "chain": "regtest", "blocks": "101", "headers": "103", "progress": "50.0000%",
            "ibd": "yes", "size": "2.50 MB", "pruned": "no", "uptime": "2d 3h",
            "version": "/Satoshi:30.0.0/ (300000)", "connections": "3 (1 / 2)",
            "reachable": "ipv4, ipv6", "mempool-size": "1,234", "mempool-bytes": "456.0 kB",
            "mempool-usage": "1.50 MB of 300.00 MB", "mempool-minfee": "1.00 sat/vB",
            "recv": "5.00 MB", "sent": "7.5 kB", "peers": "3 (1 in / 2 out)", "ping": "20.0 ms",
        })
    );
    assert_eq!(
        shown["rpcPeerTypes"],
        json!(["block-relay-only1", "inbound1", "outbound-full-relay1"])
    );
    assert_eq!(shown["rpcTransports"], json!(["v22", "v11"]));
    assert_eq!(
        shown["rpcFailures"],
        json!([[
            "getmempoolinfo",
            "getmempoolinfo: timeout — getmempoolinfo: no answer within 5 s"
        ]]),
        "getblockchaininfo answered after its failure"
    );
    assert_eq!(shown["zmqShown"], true);
    assert_eq!(
        shown["zmqLastBlock"],
        format!("{}…{}", "22".repeat(8), "22".repeat(4))
    );
    assert_eq!(shown["zmqMissed"], "2");
    assert_eq!(
        shown["zmqTopics"],
        json!([["hashblock", "2", "0"], ["hashtx", "2", "2"]])
    );

    // The peer's-eye view: the connection up now, how the others ended, the announcements.
    assert_eq!(shown["p2pShown"], true);
    let p2p = shown["p2p"].as_object().unwrap();
    let stat = |id: &str| p2p[id].as_str().unwrap().to_string();
    assert!(stat("since").ends_with("s ago"), "{p2p:?}");
    assert!(stat("last-disconnect").starts_with("closed by the node ("));
    assert!(stat("last-failure")
        .starts_with("dialling 127.0.0.1:18444: Connection refused (os error 111) ("));
    assert!(
        stat("last-block-time").ends_with(" (cmpctblock)"),
        "{p2p:?}"
    );
    let mut fixed = p2p.clone();
    for varying in [
        "since",
        "last-disconnect",
        "last-failure",
        "last-block-time",
    ] {
        fixed.remove(varying);
    }
    assert_eq!(
        Value::Object(fixed),
        json!({
            "state": "connected", "transport": "v2", "user-agent": "/Satoshi:30.0.0/",
            "retries": "1", "counts": "2 / 1 / 1", "rtt": "10.00 ms", "rtt-median": "6.00 ms",
            "inv-rate": "0.0", "feefilter": "1,000 sat/kvB",
            "last-block": format!("{}…{}", "0d".repeat(8), "0d".repeat(4)),
            "tx": "3 / 1", "messages": "8", "malformed": "1",
        })
    );
    assert_eq!(shown["p2pAddresses"], json!(["torv32", "ipv41"]));
    assert_eq!(shown["p2pInv"], json!(["wtx2", "block1", "tx1"]));
    let connections = shown["p2pConnections"].as_array().unwrap();
    assert_eq!(connections.len(), 1, "{connections:?}");
    let open = connections[0].as_array().unwrap();
    assert_eq!(
        open[..5],
        json!([
            "3",
            "v2",
            "extractor",
            "127.0.0.1:18444",
            "/Satoshi:30.0.0/"
        ])
        .as_array()
        .unwrap()[..]
    );
    assert!(open[5].as_str().unwrap().ends_with("s ago"), "{open:?}");

    let screenshot = browser
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(screenshot["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let path = artifact("websocket-live-page.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {}", path.display());

    // Thousands of events a second: the page keeps up and its numbers stay exact.
    let burst = 5_000;
    let started = Instant::now();
    for _ in 0..burst {
        let ping = message(1, ConnectionType::OutboundFullRelay, "ping", 8, true);
        publish(&publisher, &source.stamp(ping)).await;
    }
    publisher.flush().await.unwrap();
    let rate = burst as f64 / started.elapsed().as_secs_f64();
    let total = thousands(count + burst);
    let shown = browser
        .wait_for("the burst", |s| s["events"] == total.as_str())
        .await;
    println!("burst of {burst} events published at {rate:.0}/s, all shown");
    assert_eq!(
        peer_row_of(&shown, 0)[5],
        thousands(5 + burst),
        "peer 1's messages in: 5 inv + the burst"
    );
    assert_eq!(shown["missed"], "0");

    // The tool goes away: the page says so, then reconnects to a new one on the same address
    // and shows that one's state.
    tool.stop().await;
    browser
        .wait_for("the disconnection", |s| {
            s["status"].as_str().unwrap().starts_with("disconnected")
        })
        .await;
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let tool = start_tool(&server, listener).await;
    let mut restarted = EventSource::new("node-a", 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    let shown = loop {
        // Until the new tool has subscribed, events are not heard: publish until the page
        // shows one.
        publish(
            &publisher,
            &restarted.stamp(message(9, ConnectionType::Inbound, "ping", 8, true)),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shown = browser.shown().await;
        // Live again, and drawing the new tool's state: the old one's peers were 1 and 3.
        let new_peer = shown["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|row| row[0] == "9"));
        if shown["status"] == "live" && new_peer {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not come back: {shown:#}"
        );
    };
    assert_eq!(peer_row_of(&shown, 0)[0], "9");
    assert_eq!(
        shown["connectivityShown"], false,
        "no checks, no reachability card"
    );
    assert_eq!(shown["rpcShown"], false, "no RPC answers, no summary card");
    assert_eq!(shown["zmqShown"], false, "no notifications, no ZMQ card");
    assert_eq!(
        shown["p2pShown"], false,
        "no extractor p2p, no peer's-eye card"
    );
    assert_eq!(
        shown["blocks"],
        json!([]),
        "the new tool's state, not the old one"
    );
    tool.stop().await;
}

/// What the fleet tool reports of twelve blocks on three nodes (heights 300…311): node-a first
/// on even heights, node-b on odd ones, node-c a little later each time, and missing entirely
/// from the last block; then a reorg on node-c flagged as possible selfish mining.
fn fleet_reports(source: &mut EventSource) -> Vec<nodescope_proto::Event> {
    use nodescope_proto::{BlockPropagation, NodeSighting, Reorg};
    let base = 1_700_000_000_000_000_000u64;
    let mut events = Vec::new();
    for n in 0..12u64 {
        let (first, second) = if n % 2 == 0 {
            ("node-a", "node-b")
        } else {
            ("node-b", "node-a")
        };
        let last = n == 11;
        let mut offsets = vec![(first, 0), (second, 20 + n * 10)];
        if !last {
            offsets.push(("node-c", 100 + n * 25));
        }
        let nodes: Vec<NodeSighting> = offsets
            .iter()
            .map(|(node, ms)| NodeSighting {
                node: node.to_string(),
                first_seen_ns: base + n * 600_000_000_000 + ms * 1_000_000,
                offset_ns: ms * 1_000_000,
                source: "headers".into(),
                peer: "192.0.2.1:8333".into(),
                connected_ns: None,
                validation_ns: Some(4_000_000),
            })
            .collect();
        events.push(source.stamp(Payload::BlockPropagation(BlockPropagation {
            hash: vec![0xc0 + n as u8; 32],
            height: Some(300 + n as i32),
            first_node: first.into(),
            first_seen_ns: base + n * 600_000_000_000,
            spread_ns: offsets.iter().map(|(_, ms)| ms * 1_000_000).max().unwrap(),
            nodes,
            missing: if last { vec!["node-c".into()] } else { vec![] },
        })));
    }
    events.push(source.stamp(Payload::Reorg(Reorg {
        node: "node-c".into(),
        old_tip: vec![0xd1; 32],
        old_height: 311,
        new_block: vec![0xd2; 32],
        new_height: 310,
        depth: 2,
        disconnected: vec![vec![0xd1; 32], vec![0xcb; 32]],
        possible_selfish_mining: true,
        branch_source: "198.51.100.7:8333".into(),
        branch_blocks_from_source: 3,
    })));
    events
}

/// Every message type bitcoind knows, in and out, with sizes that add up to hundreds of GB: the
/// widest numbers the messages table can get short of millions of messages.
fn heavy_traffic(source: &mut EventSource) -> Vec<nodescope_proto::Event> {
    use ConnectionType::OutboundFullRelay;
    let mut events = Vec::new();
    for (i, msg_type) in nodescope_proto::p2p::MESSAGE_TYPES.iter().enumerate() {
        for inbound in [true, false] {
            for _ in 0..3 {
                let size = 333_000_000_000 - i as u64 * 7_777_777;
                events.push(source.stamp(message(1, OutboundFullRelay, msg_type, size, inbound)));
            }
        }
    }
    events
}

/// Publishes `events` and waits until the tool relayed them all to a plain client (so it holds
/// them in its state before a page opens).
async fn publish_through(
    publisher: &async_nats::Client,
    address: std::net::SocketAddr,
    events: &[nodescope_proto::Event],
) {
    let (mut probe, _) = tokio_tungstenite::connect_async(format!("ws://{address}/ws"))
        .await
        .unwrap();
    probe.next().await.unwrap().unwrap(); // subscribed
    for event in events {
        publish(publisher, event).await;
    }
    let mut seen = 0;
    while seen < events.len() {
        let frame = tokio::time::timeout(Duration::from_secs(10), probe.next())
            .await
            .expect("the tool relays every event");
        if let Message::Text(_) = frame.unwrap().unwrap() {
            seen += 1;
        }
    }
}

impl Browser {
    /// Lays the page out at `width` × 1000 CSS pixels.
    async fn resize(&mut self, width: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
    }

    /// The fleet card as drawn: its blocks with their lanes, and where each lane's marker sits
    /// on its track (0 at the start, 1 at the end of the axis).
    async fn fleet(&mut self) -> Value {
        self.eval(
            r##"JSON.stringify({
                shown: !document.getElementById("fleet").hidden,
                nodeOptions: [...document.getElementById("node").options].map(o => o.value),
                axis: Number(document.getElementById("fleet-blocks").getAttribute("data-axis-ns")),
                reports: document.getElementById("fleet-reports").textContent,
                reorgs: document.getElementById("fleet-reorgs").textContent,
                reorgList: [...document.querySelectorAll("#fleet-reorg-list li")].map(li => [li.className, li.firstChild.textContent]),
                blocks: [...document.querySelectorAll("#fleet-blocks .fblock")].map(b => ({
                    hash: b.getAttribute("data-fleet-block"),
                    height: b.getAttribute("data-height"),
                    meta: [...b.querySelectorAll(".fmeta > *")].map(e => e.textContent),
                    lanes: [...b.querySelectorAll(".lane")].map(l => {
                        const track = l.querySelector(".track").getBoundingClientRect();
                        const mark = l.querySelector(".fmark");
                        const bar = l.querySelector(".fbar");
                        return {
                            node: l.getAttribute("data-fleet-node"),
                            first: l.classList.contains("first"),
                            missing: l.hasAttribute("data-missing"),
                            offset: l.hasAttribute("data-offset-ns") ? Number(l.getAttribute("data-offset-ns")) : null,
                            label: l.querySelector(".off").textContent,
                            at: mark ? (mark.getBoundingClientRect().left + 1 - track.left) / track.width : null,
                            bar: bar ? bar.getBoundingClientRect().width / track.width : null,
                        };
                    }),
                })),
            })"##,
        )
        .await
    }

    /// The layout: the cards shown, grouped in rows by their top edge, with the edges of
    /// `main`'s content box, and how the messages table fits its card.
    async fn layout(&mut self) -> Value {
        self.eval(
            r##"JSON.stringify((() => {
                const main = document.querySelector("main");
                const box = main.getBoundingClientRect(), style = getComputedStyle(main);
                const left = box.left + parseFloat(style.paddingLeft), right = box.right - parseFloat(style.paddingRight);
                const rows = new Map();
                for (const card of main.children) {
                    if (card.hidden || card.offsetParent === null) continue;
                    const r = card.getBoundingClientRect();
                    const top = Math.round(r.top);
                    if (!rows.has(top)) rows.set(top, []);
                    rows.get(top).push({ id: card.id || card.querySelector("h2").textContent, left: r.left, right: r.right, width: r.width });
                }
                const scroll = document.querySelector("#messages-card .scroll");
                const card = document.getElementById("messages-card").getBoundingClientRect();
                const table = document.getElementById("messages").getBoundingClientRect();
                return {
                    width: innerWidth, left, right, gap: parseFloat(style.columnGap),
                    rows: [...rows.entries()].sort((a, b) => a[0] - b[0]).map(([top, cards]) => cards.sort((a, b) => a.left - b.left)),
                    messageRows: document.querySelectorAll("#messages tbody tr").length,
                    scrollWidth: scroll.scrollWidth, clientWidth: scroll.clientWidth,
                    tableRight: table.right, cardRight: card.right,
                    pageScrollWidth: document.documentElement.scrollWidth,
                    bytesOut: [...document.querySelectorAll("#messages tbody tr")].map(r => r.cells[7].textContent),
                };
            })())"##,
        )
        .await
    }
}

/// The layout at `width`: the messages table fits its card (no sideways scroll, "bytes out"
/// inside), and every row of cards fills the page's width edge to edge with no hole between
/// cards (no empty column).
fn assert_layout_fills(layout: &Value, width: u32, cards: &str) {
    let context = format!("{cards} at {width} px: {layout:#}");
    let number = |v: &Value| v.as_f64().unwrap();
    assert_eq!(number(&layout["width"]), width as f64, "{context}");
    assert!(
        number(&layout["scrollWidth"]) <= number(&layout["clientWidth"]),
        "the messages table scrolls sideways: {context}"
    );
    assert!(
        number(&layout["tableRight"]) <= number(&layout["cardRight"]) + 0.5,
        "the messages table sticks out of its card: {context}"
    );
    assert!(
        number(&layout["pageScrollWidth"]) <= width as f64,
        "the page scrolls sideways: {context}"
    );
    let (left, right, gap) = (
        number(&layout["left"]),
        number(&layout["right"]),
        number(&layout["gap"]),
    );
    let rows = layout["rows"].as_array().unwrap();
    assert!(rows.len() >= 3, "{context}");
    for row in rows {
        let cards = row.as_array().unwrap();
        let first = &cards[0];
        let last = &cards[cards.len() - 1];
        assert!(
            (number(&first["left"]) - left).abs() <= 1.0
                && (number(&last["right"]) - right).abs() <= 1.0,
            "a row that does not reach both edges (an empty column): {row} in {context}"
        );
        let filled: f64 =
            cards.iter().map(|c| number(&c["width"])).sum::<f64>() + gap * (cards.len() - 1) as f64;
        assert!(
            (filled - (right - left)).abs() <= 2.0,
            "a hole between the cards of a row: {row} in {context}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_card_and_a_layout_that_fits() {
    let server = NatsServer::start();
    let publisher = client(&server).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let tool = start_tool(&server, listener).await;

    // node-a with every card (RPC, ZMQ, peer's-eye view) and heavy traffic; node-b plain; the
    // fleet tool's reports under its own id.
    let mut source = EventSource::new("node-a", 1);
    let mut events = scenario(&mut source);
    events.extend(heavy_traffic(&mut source));
    let mut rpc = EventSource::of(ExtractorKind::Rpc, "node-a", 3);
    events.extend(rpc_and_zmq(&mut rpc));
    let mut p2p = EventSource::of(ExtractorKind::P2p, "node-a", 4);
    events.extend(peer_view(&mut p2p));
    let mut plain = EventSource::new("node-b", 1);
    events.extend(scenario(&mut plain));
    events.extend(heavy_traffic(&mut plain));
    let mut fleet = EventSource::of(ExtractorKind::Fleet, "fleet", 1);
    events.extend(fleet_reports(&mut fleet));
    publish_through(&publisher, address, &events).await;

    let mut browser = Browser::start().await;
    browser.resize(1280).await;
    browser
        .call(
            "Page.navigate",
            json!({"url": format!("http://{address}/")}),
        )
        .await;
    let shown = poll_for(
        "the page drawing the fleet's blocks",
        Duration::from_secs(20),
        async || {
            let shown = browser.fleet().await;
            // The nodes' states come apart from the fleet's: until both are drawn, the only
            // stream heard may be the fleet tool's, which the page then offers for want of any.
            if shown["blocks"].as_array().is_some_and(|b| b.len() == 10)
                && shown["shown"] == true
                && shown["nodeOptions"] == json!(["node-a", "node-b"])
            {
                Ok(shown)
            } else {
                Err(format!("{shown:#}"))
            }
        },
    )
    .await;

    // The fleet tool's stream is the fleet card, not a node to choose.
    assert_eq!(shown["nodeOptions"], json!(["node-a", "node-b"]));
    assert_eq!(shown["reports"], "12");
    assert_eq!(shown["reorgs"], "1 (1)");
    let reorgs = shown["reorgList"].as_array().unwrap();
    assert_eq!(reorgs.len(), 1, "{reorgs:?}");
    assert_eq!(reorgs[0][0], "bad", "the selfish-mining hint is marked");
    assert_eq!(
        reorgs[0][1],
        format!(
            "node-c: depth 2, height 311 → 310 ({}…{}) — possible selfish mining: 3 blocks from 198.51.100.7:8333",
            "d2".repeat(8),
            "d2".repeat(4)
        )
    );
    // The ten latest, newest first; the axis is shared and holds the largest spread.
    let blocks = shown["blocks"].as_array().unwrap();
    let heights: Vec<&str> = blocks
        .iter()
        .map(|b| b["height"].as_str().unwrap())
        .collect();
    assert_eq!(
        heights,
        ["311", "310", "309", "308", "307", "306", "305", "304", "303", "302"]
    );
    let axis = shown["axis"].as_f64().unwrap();
    let largest = (100 + 10 * 25) as f64 * 1e6; // node-c at height 310
    assert!(axis >= largest && axis <= 2.0 * largest, "axis {axis}");
    for block in blocks {
        let n = block["height"].as_str().unwrap().parse::<u64>().unwrap() - 300;
        let hash = format!("{:02x}", 0xc0 + n);
        assert_eq!(block["hash"], hash.repeat(32));
        assert_eq!(block["meta"][0], format!("#{}", 300 + n));
        assert_eq!(
            block["meta"][1],
            format!("{}…{}", hash.repeat(8), hash.repeat(4))
        );
        let lanes = block["lanes"].as_array().unwrap();
        let nodes: Vec<&str> = lanes.iter().map(|l| l["node"].as_str().unwrap()).collect();
        assert_eq!(nodes, ["node-a", "node-b", "node-c"], "{block:#}");
        let first = if n % 2 == 0 { "node-a" } else { "node-b" };
        for lane in lanes {
            let node = lane["node"].as_str().unwrap();
            assert_eq!(lane["first"], node == first, "{lane}");
            if n == 11 && node == "node-c" {
                assert_eq!(lane["missing"], true);
                assert_eq!(lane["label"], "missing");
                assert_eq!(
                    lane["at"],
                    Value::Null,
                    "no marker for a node that missed it"
                );
                continue;
            }
            let expected_ms = if node == first {
                0
            } else if node == "node-c" {
                100 + n * 25
            } else {
                20 + n * 10
            };
            assert_eq!(lane["offset"], expected_ms * 1_000_000, "{lane}");
            let label = if node == first {
                "first".to_string()
            } else {
                format!("+{:.1} ms", expected_ms as f64)
            };
            assert_eq!(lane["label"], label.as_str());
            // The marker and the bar end where the offset falls on the shared axis.
            let fraction = expected_ms as f64 * 1e6 / axis;
            let at = lane["at"].as_f64().unwrap();
            let bar = lane["bar"].as_f64().unwrap();
            assert!(
                (at - fraction).abs() < 0.01 && (bar - fraction).abs() < 0.01,
                "{node} at height {}: marker {at}, bar {bar}, expected {fraction}",
                300 + n
            );
        }
        let spread = if n == 11 { 20 + n * 10 } else { 100 + n * 25 };
        assert_eq!(block["meta"][2], format!("spread {:.1} ms", spread as f64));
        let seen = if n == 11 {
            "2 of 3 nodes"
        } else {
            "3 of 3 nodes"
        };
        assert!(
            block["meta"][3].as_str().unwrap().starts_with(seen),
            "{block:#}"
        );
    }

    // The layout at common widths, with every card of node-a and with node-b's plainer page.
    let mut layout = Value::Null;
    for width in [1280, 1920] {
        browser.resize(width).await;
        layout = poll_for("the layout", Duration::from_secs(20), async || {
            let layout = browser.layout().await;
            if layout["width"] == width
                && layout["messageRows"] == nodescope_proto::p2p::MESSAGE_TYPES.len()
            {
                Ok(layout)
            } else {
                Err(format!("{layout:#}"))
            }
        })
        .await;
        assert_layout_fills(&layout, width, "node-a's cards");
    }
    assert!(
        layout["bytesOut"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b.as_str().unwrap().ends_with(" GB")),
        "{layout:#}"
    );
    // The whole page at 1920 px, not just the first screen.
    let height = browser
        .eval("JSON.stringify(document.documentElement.scrollHeight)")
        .await;
    let screenshot = browser
        .call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": 1920, "height": height, "scale": 1}}),
        )
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(screenshot["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let path = artifact("websocket-fleet-page.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {}", path.display());

    // A busy node's widest numbers (no test can send billions of messages): drawn into the
    // page's own state, then laid out again at both widths.
    browser
        .eval(
            r#"(() => {
                const s = states.get("node-a");
                const before = JSON.parse(JSON.stringify(s));
                for (const t of Object.values(s.messages)) {
                    t.msgs_in = t.msgs_out = 12345678901; t.bytes_in = t.bytes_out = 987.65e12;
                }
                for (const t of Object.values(before.messages)) t.msgs_in = t.msgs_out = 12345678901 - 123456;
                previous.set("node-a", { time: s.__time - 1000, state: before });
                draw();
                return "null";
            })()"#,
        )
        .await;
    for width in [1280, 1920] {
        browser.resize(width).await;
        let layout = poll_for("the layout", Duration::from_secs(20), async || {
            let layout = browser.layout().await;
            if layout["width"] == width {
                Ok(layout)
            } else {
                Err(format!("{layout:#}"))
            }
        })
        .await;
        assert!(
            layout["bytesOut"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b == "987.65 TB"),
            "{layout:#}"
        );
        assert_layout_fills(&layout, width, "node-a's cards, the widest numbers");
    }

    browser
        .eval(
            r#"(() => { const s = document.getElementById("node"); s.value = "node-b"; s.dispatchEvent(new Event("change")); return "null"; })()"#,
        )
        .await;
    for width in [1920, 1280] {
        browser.resize(width).await;
        let layout = poll_for("node-b shown", Duration::from_secs(20), async || {
            let layout = browser.layout().await;
            let p2p_gone = layout["rows"].as_array().is_some_and(|rows| {
                rows.iter()
                    .flat_map(|row| row.as_array().unwrap())
                    .all(|c| c["id"] != "p2p")
            });
            if layout["width"] == width && p2p_gone {
                Ok(layout)
            } else {
                Err(format!("{layout:#}"))
            }
        })
        .await;
        assert_layout_fills(&layout, width, "node-b's cards");
    }
    tool.stop().await;
}

/// `n` as the page writes it (en-US grouping).
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

fn peer_row_of(shown: &Value, i: usize) -> Vec<String> {
    shown["peers"][i]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}
