//! Raw P2P peers against a real node: v1 and v2 handshakes, ping/pong, and malformed frames.

use std::time::Duration;

use bitcoin::p2p::Magic;
use nodescope_regtest::p2p::{payload, v1};
use nodescope_regtest::{wait_until, Node, NodeConfig, RawPeer, Transport, TIMEOUT};
use serde_json::Value;

const RECV: Duration = Duration::from_secs(30);

/// Sends a ping, expects the pong with the same nonce.
fn ping_pong(peer: &mut RawPeer, nonce: u64) {
    peer.send("ping", &payload::ping(nonce)).unwrap();
    let pong = peer.recv_until("pong", RECV).unwrap();
    assert_eq!(payload::nonce(&pong), Some(nonce));
}

/// The node's `getpeerinfo` entry for `peer`, once it has counted `min_ping_bytes` of pings.
fn peer_entry(node: &Node, peer: &RawPeer, min_ping_bytes: u64) -> Value {
    wait_until("the raw peer in getpeerinfo", TIMEOUT, || {
        Ok(node
            .peer_info(peer.local_addr())?
            .filter(|p| p["bytesrecv_per_msg"]["ping"].as_u64().unwrap_or(0) >= min_ping_bytes))
    })
    .unwrap()
}

#[test]
fn v1_handshake_and_ping_pong() {
    let node = Node::start(NodeConfig::new()).unwrap();
    let mut peer = node.raw_peer(Transport::V1).unwrap();
    let theirs = peer.their_version().expect("the node's version").clone();
    assert!(
        theirs.user_agent.contains("Satoshi:30.0.0"),
        "{}",
        theirs.user_agent
    );
    // What the node sends after verack is kept for us.
    peer.recv_until("sendcmpct", RECV).unwrap();

    ping_pong(&mut peer, 0x0123_4567_89ab_cdef);
    let entry = peer_entry(&node, &peer, 1);
    assert_eq!(entry["transport_protocol_type"], "v1");
    assert_eq!(entry["inbound"], true);
    assert_eq!(entry["subver"], payload::USER_AGENT);
    assert_eq!(entry["bytesrecv_per_msg"]["ping"], 8 + 24);
}

#[test]
fn v2_handshake_and_ping_pong() {
    let node = Node::start(NodeConfig::new()).unwrap();
    let mut peer = node.raw_peer(Transport::V2).unwrap();
    assert!(peer.their_version().is_some());
    ping_pong(&mut peer, 42);
    let entry = peer_entry(&node, &peer, 1);
    assert_eq!(entry["transport_protocol_type"], "v2");
    assert_eq!(entry["session_id"].as_str().map(str::len), Some(64));
    // length 3 + header 1 + short id 1 + nonce 8 + tag 16: the short id was used.
    assert_eq!(entry["bytesrecv_per_msg"]["ping"], 3 + 1 + 1 + 8 + 16);
}

#[test]
fn v2_peer_is_refused_by_a_v1_only_node() {
    let node = Node::start(NodeConfig::new().v2transport(false)).unwrap();
    let err = node.raw_peer(Transport::V2).unwrap_err();
    assert!(err.to_string().contains("BIP324 handshake failed"), "{err}");
}

#[test]
fn auto_pong_answers_the_nodes_pings() {
    let node = Node::start(NodeConfig::new()).unwrap();
    // The node pings every new peer right after the handshake, so auto-pong goes on before it.
    let mut peer =
        RawPeer::connect_no_handshake(node.p2p_addr(), Magic::REGTEST, Transport::V2).unwrap();
    peer.set_auto_pong(true);
    peer.handshake().unwrap();
    // Answered, the ping gives the node a ping time.
    peer.recv_until("ping", RECV).unwrap();
    wait_until("the node to measure our ping time", TIMEOUT, || {
        Ok(node
            .peer_info(peer.local_addr())?
            .filter(|p| p["minping"].is_number()))
    })
    .unwrap();
}

#[test]
fn node_survives_malformed_v1_frames() {
    let mut node = Node::start(NodeConfig::new()).unwrap();

    // Wrong checksum: the message is dropped, the connection stays usable.
    let mut peer = node.raw_peer(Transport::V1).unwrap();
    let mut bad = v1::frame(Magic::REGTEST, "ping", &payload::ping(1));
    bad[20] ^= 0xff;
    peer.send_raw(&bad).unwrap();
    ping_pong(&mut peer, 2); // the pong for nonce 1 never comes
    assert!(node.peer_info(peer.local_addr()).unwrap().is_some());

    // A length header over 4 MB: the node drops the peer.
    let mut big = node.raw_peer(Transport::V1).unwrap();
    let header = v1::frame_with(
        Magic::REGTEST.to_bytes(),
        v1::command_bytes("ping").unwrap(),
        v1::MAX_PAYLOAD + 1,
        [0; 4],
        &[],
    );
    big.send_raw(&header).unwrap();
    big.wait_closed(RECV).unwrap();

    // Mainnet magic on a regtest node: dropped too.
    let mut wrong = node.raw_peer(Transport::V1).unwrap();
    wrong
        .send_raw(&v1::frame(Magic::BITCOIN, "ping", &payload::ping(3)))
        .unwrap();
    wrong.wait_closed(RECV).unwrap();

    // The node is still up and answering, and the well-behaved peer is still connected.
    assert!(node.is_running());
    node.rpc("getnetworkinfo", serde_json::json!([])).unwrap();
    ping_pong(&mut peer, 4);
    wait_until("only the good peer to remain", TIMEOUT, || {
        Ok((node.peers()?.len() == 1).then_some(()))
    })
    .unwrap();
}

#[test]
fn messages_can_be_sent_before_the_version() {
    // Core ignores anything but `version` first (logged, no reply); the handshake still works.
    let v1_only = Node::start(NodeConfig::new().v2transport(false)).unwrap();
    let mut peer =
        RawPeer::connect_no_handshake(v1_only.p2p_addr(), Magic::REGTEST, Transport::V1).unwrap();
    peer.send("ping", &payload::ping(5)).unwrap();
    peer.handshake().unwrap();
    ping_pong(&mut peer, 6);

    let node = Node::start(NodeConfig::new()).unwrap();
    let mut peer =
        RawPeer::connect_no_handshake(node.p2p_addr(), Magic::REGTEST, Transport::V2).unwrap();
    peer.send("ping", &payload::ping(7)).unwrap();
    peer.handshake().unwrap();
    ping_pong(&mut peer, 8);

    // On a v2-capable node, v1 bytes that do not start with `version` are taken for a BIP324
    // key: the node answers with its own key, which is no v1 frame.
    let mut peer =
        RawPeer::connect_no_handshake(node.p2p_addr(), Magic::REGTEST, Transport::V1).unwrap();
    peer.send("ping", &payload::ping(9)).unwrap();
    let reason = peer.wait_closed(RECV).unwrap();
    assert!(reason.contains("magic"), "{reason}");
}
