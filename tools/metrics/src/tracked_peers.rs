//! The peers of a node the exporter keeps state about: which connections it saw open (for
//! `connections_open`) and pings waiting for their pong (for `p2p_ping_rtt`). Bounded: a peer
//! is forgotten when its connection closes, and past [`MAX_PEERS`] new peers go untracked.

use std::collections::HashMap;

/// Peers tracked per node: far above bitcoind's connection limits, so only a flood of made-up
/// peer ids reaches it.
pub const MAX_PEERS: usize = 10_000;

#[derive(Default)]
pub struct TrackedPeer {
    /// The connection's (direction, connection type) labels, when this exporter saw it open
    /// (counted in `connections_open`).
    pub open: Option<(&'static str, &'static str)>,
    /// A ping waiting for its pong, by [`PING_OUT`] / [`PING_IN`]: (nonce, time ns).
    pub pings: [Option<(u64, u64)>; 2],
}

/// The node's ping, sent to the peer.
pub const PING_OUT: usize = 0;
/// The peer's ping, sent to the node.
pub const PING_IN: usize = 1;

#[derive(Default)]
pub struct TrackedPeers {
    peers: HashMap<i64, TrackedPeer>,
}

impl TrackedPeers {
    /// The state of peer `id`, tracked from now on unless [`MAX_PEERS`] are tracked already.
    pub fn track(&mut self, id: i64) -> Option<&mut TrackedPeer> {
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&id) {
            return None;
        }
        Some(self.peers.entry(id).or_default())
    }

    /// The state of peer `id`, if it is tracked.
    pub fn get(&mut self, id: i64) -> Option<&mut TrackedPeer> {
        self.peers.get_mut(&id)
    }

    /// Peer `id`'s connection closed: what was tracked about it.
    pub fn forget(&mut self, id: i64) -> Option<TrackedPeer> {
        self.peers.remove(&id)
    }
}
