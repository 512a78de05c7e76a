//! Inbound eviction in Bitcoin Core 30: with `-maxconnections=N` there are `N - 11` inbound
//! slots (8 full-relay + 2 block-relay-only outbound + 1 feeler are reserved). When they are
//! full, a new inbound peer makes Core evict an existing one — but only if one is left after its
//! protections (4 by netgroup, 8 by ping, 4 by tx, 4 by block time, then half of the rest by
//! uptime), i.e. with more than 20 inbound peers; else the newcomer is dropped instead.

use std::time::Duration;

use nodescope_regtest::{wait_until, Error, Node, NodeConfig, RawPeer, Transport, TIMEOUT};

const MAX_CONNECTIONS: u32 = 35;
const INBOUND_SLOTS: usize = 24;
const PEERS: usize = INBOUND_SLOTS + 6;

#[test]
fn surplus_peers_are_refused_when_too_few_can_be_evicted() {
    // 13 - 11 = 2 slots: every candidate is protected, so newcomers are dropped on accept.
    let node = Node::start(NodeConfig::new().max_connections(13)).unwrap();
    let mut kept: Vec<RawPeer> = (0..2)
        .map(|_| node.raw_peer(Transport::V1).unwrap())
        .collect();
    for transport in [Transport::V1, Transport::V2] {
        match node.raw_peer(transport) {
            Err(Error::PeerClosed { .. }) | Err(Error::P2p { .. }) => {}
            other => panic!("a third inbound peer should be refused, got {other:?}"),
        }
    }
    for peer in &mut kept {
        assert!(!peer.is_closed());
    }
    assert_eq!(node.peers().unwrap().len(), 2);
}

#[test]
fn extra_inbound_peers_evict_existing_ones() {
    let config = NodeConfig::new().max_connections(MAX_CONNECTIONS);
    assert_eq!(config.inbound_slots() as usize, INBOUND_SLOTS);
    let node = Node::start(config).unwrap();
    let mut peers: Vec<RawPeer> = Vec::new();
    let mut refused = 0;
    for i in 0..PEERS {
        let transport = if i % 2 == 0 {
            Transport::V1
        } else {
            Transport::V2
        };
        match node.raw_peer(transport) {
            Ok(peer) => peers.push(peer),
            Err(Error::PeerClosed { .. }) | Err(Error::P2p { .. }) => refused += 1,
            Err(e) => panic!("peer {i}: {e}"),
        }
    }
    let inbound = |node: &Node| -> nodescope_regtest::Result<usize> {
        Ok(node
            .peers()?
            .iter()
            .filter(|p| p["inbound"] == true)
            .count())
    };
    // Evicted peers see their socket closed; together with refused ones they are the surplus.
    let evicted = wait_until("the surplus peers to be disconnected", TIMEOUT, || {
        let closed = peers
            .iter_mut()
            .map(|p| p.is_closed())
            .filter(|&c| c)
            .count();
        Ok((closed + refused >= PEERS - INBOUND_SLOTS).then_some(closed))
    })
    .unwrap();
    assert!(
        evicted > 0,
        "Core should evict established peers, not only refuse new ones"
    );
    wait_until("getpeerinfo to list only the slots' worth", TIMEOUT, || {
        Ok((inbound(&node)? == INBOUND_SLOTS).then_some(()))
    })
    .unwrap();
    // Every survivor is still served.
    for peer in &mut peers {
        if peer.is_closed() {
            continue;
        }
        peer.send("ping", &7u64.to_le_bytes()).unwrap();
        peer.recv_until("pong", Duration::from_secs(30)).unwrap();
        assert!(node.peer_info(peer.local_addr()).unwrap().is_some());
    }
}
