//! End to end against a real Bitcoin Core v30.0 (regtest, loopback), as root (eBPF): the real
//! extractor in both its modes (`ebpf` and `rpc`, in this process) and the exporter. With a v1
//! and a v2 raw peer exchanging messages of many types (one of a type Core does not know),
//! `nodescope_p2p_wire_bytes_total` per direction, message type and transport is exactly what
//! getpeerinfo's `bytesrecv_per_msg` / `bytessent_per_msg` add up to over the peers of that
//! transport, and nothing is left unattributed.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use clap::Parser;
use common::{value, Tool};
use nodescope_consumer::testing::wait_until;
use nodescope_regtest::bitcoin::hashes::Hash as _;
use nodescope_regtest::bitcoin::p2p::message::NetworkMessage;
use nodescope_regtest::bitcoin::p2p::message_blockdata::{GetHeadersMessage, Inventory};
use nodescope_regtest::bitcoin::p2p::Magic;
use nodescope_regtest::bitcoin::{BlockHash, Txid};
use nodescope_regtest::serde_json::Value;
use nodescope_regtest::{p2p::payload, Node, NodeConfig, RawPeer, Transport, TIMEOUT};
use tokio::sync::oneshot;

const NODE: &str = "wire-bytes-e2e";

/// Blocking harness calls (RPC, raw sockets) off the async workers, so that the extractors
/// and the exporter running in this process keep going meanwhile.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

/// `extractor <args>` running in this process until its sender is dropped or fired.
fn extractor(
    args: &[&str],
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let cli =
        extractor::cli::Cli::parse_from(std::iter::once("extractor").chain(args.iter().copied()));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(extractor::cli::run(cli, async {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// A raw peer that answers the node's pings (so that pongs are received too).
fn answering_raw_peer(node: &Node, transport: Transport) -> RawPeer {
    let mut peer = RawPeer::connect_no_handshake(node.p2p_addr(), Magic::REGTEST, transport)
        .expect("connecting a raw peer");
    peer.set_auto_pong(true);
    peer.handshake().expect("the raw peer's handshake");
    peer
}

/// Messages of many types from a raw peer, one of them of a type Core does not know (counted
/// by it under "*other*"); waits until the node answered the last ping, i.e. processed them.
fn chatter(peer: &mut RawPeer, tip: &str) {
    let tip: BlockHash = tip.parse().expect("a block hash");
    let messages = [
        NetworkMessage::Ping(1),
        NetworkMessage::GetHeaders(GetHeadersMessage::new(vec![tip], BlockHash::all_zeros())),
        NetworkMessage::Inv(vec![Inventory::Transaction(Txid::from_byte_array([7; 32]))]),
        NetworkMessage::GetData(vec![Inventory::Block(tip)]),
        NetworkMessage::SendHeaders,
        NetworkMessage::FeeFilter(1000),
        NetworkMessage::GetAddr,
    ];
    for message in &messages {
        peer.send_message(message).expect("sending");
    }
    peer.send("nodescope", b"hello").expect("sending");
    peer.send("ping", &payload::ping(2)).expect("sending");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while payload::nonce(
        &peer
            .recv_until("pong", deadline - std::time::Instant::now())
            .unwrap(),
    ) != Some(2)
    {}
}

/// (direction, msg_type, transport) → bytes.
type Bytes = BTreeMap<(String, String, String), u64>;

/// What getpeerinfo counts, summed over the peers of each transport.
fn getpeerinfo_bytes(peers: &[Value]) -> Bytes {
    let mut bytes = Bytes::new();
    for peer in peers {
        let transport = peer["transport_protocol_type"].as_str().unwrap();
        for (field, direction) in [
            ("bytesrecv_per_msg", "inbound"),
            ("bytessent_per_msg", "outbound"),
        ] {
            for (msg_type, count) in peer[field].as_object().unwrap() {
                let key = (direction.into(), msg_type.clone(), transport.into());
                *bytes.entry(key).or_default() += count.as_u64().unwrap();
            }
        }
    }
    bytes
}

/// The labels of a sample line `family{a="x",b="y"} value`, and its value.
fn labelled(line: &str) -> (BTreeMap<&str, &str>, f64) {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let labels = &series[series.find('{').unwrap() + 1..series.len() - 1];
    let labels = labels
        .split(',')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            (key, value.trim_matches('"'))
        })
        .collect();
    (labels, value.parse().unwrap())
}

/// The node's samples of `family` in a scrape.
fn node_samples<'a>(scrape: &'a str, family: &str) -> Vec<(BTreeMap<&'a str, &'a str>, f64)> {
    let prefix = format!(r#"{family}{{node="{NODE}","#);
    scrape
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .map(labelled)
        .collect()
}

fn exported_bytes(scrape: &str) -> Bytes {
    node_samples(scrape, "nodescope_p2p_wire_bytes_total")
        .into_iter()
        .map(|(labels, value)| {
            let key = (
                labels["direction"].to_string(),
                labels["msg_type"].to_string(),
                labels["transport"].to_string(),
            );
            (key, value as u64)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_bytes_per_type_and_transport_are_what_getpeerinfo_counts() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF programs: run it as root"
    );
    let tool = Tool::start(&[]).await;
    let nats = tool.nats.url();
    let dir = tempfile::tempdir().unwrap();
    let bitcoind = nodescope_regtest::private_bitcoind(dir.path())
        .expect("Bitcoin Core is installed (cargo xtask setup)");
    let bitcoind_path = bitcoind.to_str().unwrap();
    let (stop_ebpf, ebpf) = extractor(&[
        "ebpf",
        "--bitcoind-path",
        bitcoind_path,
        "--node-id",
        NODE,
        "--nats-url",
        &nats,
        "--stats-interval",
        "1",
    ]);
    let attached =
        format!(r#"nodescope_extractor_attached_locations{{node="{NODE}",extractor="ebpf"}}"#);
    wait_until(
        "the eBPF extractor attached",
        Duration::from_secs(60),
        || async { value(&tool.scrape().await, &attached) == Some(20.0) },
    )
    .await;

    let node = blocking(|| Node::start(NodeConfig::new().bitcoind(&bitcoind)))
        .expect("starting the traced node");
    let rpc_url = format!("http://127.0.0.1:{}", node.rpc_port());
    let cookie = node.cookie_path();
    let (stop_rpc, rpc) = extractor(&[
        "rpc",
        "--chain",
        "regtest",
        "--rpc-url",
        &rpc_url,
        "--rpc-cookie-file",
        cookie.to_str().unwrap(),
        "--node-id",
        NODE,
        "--interval",
        "1",
        "--stats-interval",
        "1",
        "--nats-url",
        &nats,
    ]);

    let tip = blocking(|| node.generate(1)).unwrap().remove(0);
    let mut v1 = blocking(|| answering_raw_peer(&node, Transport::V1));
    let mut v2 = blocking(|| answering_raw_peer(&node, Transport::V2));
    blocking(|| {
        chatter(&mut v1, &tip);
        chatter(&mut v2, &tip);
    });
    // A block after `sendheaders`: announced to both peers by headers.
    blocking(|| node.generate(1)).unwrap();

    // Traffic never stops for long (pings, announcements): each try compares getpeerinfo with
    // the scrape of the same moment; they agree once what is in flight has been counted.
    let last_difference = Mutex::new(String::new());
    wait_until(
        "the exported wire bytes to equal getpeerinfo's",
        Duration::from_secs(60),
        || async {
            assert!(
                !ebpf.is_finished() && !rpc.is_finished(),
                "an extractor exited early"
            );
            let peers = blocking(|| node.peers()).expect("getpeerinfo");
            let core = getpeerinfo_bytes(&peers);
            let scrape = tool.scrape().await;
            let exported = exported_bytes(&scrape);
            let transports: Vec<_> = peers
                .iter()
                .map(|p| p["transport_protocol_type"].as_str().unwrap().to_string())
                .collect();
            if exported == core && transports.len() == 2 {
                return true;
            }
            let difference = format!(
                "transports {transports:?}\ngetpeerinfo: {core:?}\nexported:    {exported:?}"
            );
            let mut last = last_difference.lock().unwrap();
            if *last != difference {
                eprintln!("not yet equal:\n{difference}");
                *last = difference;
            }
            false
        },
    )
    .await;

    let scrape = tool.scrape().await;
    let exported = exported_bytes(&scrape);
    for transport in ["v1", "v2"] {
        for (direction, msg_type) in [
            ("inbound", "version"),
            ("inbound", "verack"),
            ("inbound", "ping"),
            ("inbound", "pong"),
            ("inbound", "getheaders"),
            ("inbound", "sendheaders"),
            ("inbound", "*other*"),
            ("outbound", "version"),
            ("outbound", "headers"),
        ] {
            let key = (direction.into(), msg_type.into(), transport.into());
            assert!(exported.contains_key(&key), "no {key:?} in {exported:?}");
        }
    }
    assert!(
        node_samples(&scrape, "nodescope_p2p_wire_unattributed_messages_total").is_empty(),
        "unattributed messages: {scrape}"
    );
    let pending = format!(r#"nodescope_p2p_wire_pending_peers{{node="{NODE}"}}"#);
    assert_eq!(value(&scrape, &pending), Some(0.0));
    // The RPC side's own view of the same peers (from its latest getpeerinfo).
    wait_until(
        "nodescope_rpc_peers to count one v1 and one v2 peer",
        Duration::from_secs(20),
        || async {
            let scrape = tool.scrape().await;
            let mut peers_by_transport = BTreeMap::new();
            // A kind of peer that went away stays at 0.
            for (labels, count) in node_samples(&scrape, "nodescope_rpc_peers")
                .into_iter()
                .filter(|(_, count)| *count > 0.0)
            {
                *peers_by_transport
                    .entry(labels["transport"].to_string())
                    .or_insert(0.0) += count;
            }
            peers_by_transport == BTreeMap::from([("v1".to_string(), 1.0), ("v2".to_string(), 1.0)])
        },
    )
    .await;

    drop((v1, v2));
    let _ = stop_rpc.send(());
    rpc.await
        .expect("the rpc extractor's task")
        .expect("the rpc extractor ends cleanly");
    let _ = stop_ebpf.send(());
    ebpf.await
        .expect("the ebpf extractor's task")
        .expect("the ebpf extractor ends cleanly");
    drop(node);
    tool.stop().await;
}
