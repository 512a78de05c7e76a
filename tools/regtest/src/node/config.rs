//! How a [`Node`] is started: [`NodeConfig`], and the ZMQ endpoints it gets.

use std::path::PathBuf;

#[cfg(doc)]
use super::{Node, DEFAULT_WALLET};

/// How to start a [`Node`]. `NodeConfig::default()` is a listening, v2-capable node without
/// wallet or ZMQ; the builder methods change one field each.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Extra bitcoind arguments (e.g. `"-blockfilterindex=1"`), appended after ours.
    pub args: Vec<String>,
    /// `-v2transport` (BIP324); on by default, as in Core 30.
    pub v2transport: bool,
    /// `-maxconnections`; inbound slots are `max_connections - 11` (8 full-relay, 2
    /// block-relay-only outbound and 1 feeler are reserved), so use at least 12 to accept any.
    pub max_connections: Option<u32>,
    /// Create (first start) or load (restart) the wallet [`DEFAULT_WALLET`].
    pub wallet: bool,
    /// Publish hashblock, hashtx, rawblock and sequence over ZMQ on free loopback ports.
    pub zmq: bool,
    /// Accept P2P connections on 127.0.0.1 ([`Node::p2p_addr`]); `false` gives `-listen=0`.
    pub listen: bool,
    /// The bitcoind binary to run instead of [`crate::bin_dir`]`/bitcoind`, e.g. a private
    /// copy, so that uprobes attached by path see only this node.
    pub bitcoind: Option<PathBuf>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            args: Vec::new(),
            v2transport: true,
            max_connections: None,
            wallet: false,
            zmq: false,
            listen: true,
            bitcoind: None,
        }
    }
}

/// Automatic outbound slots Bitcoin Core 30 reserves out of `-maxconnections`: 8 full-relay,
/// 2 block-relay-only and 1 feeler (`CConnman::Init`).
pub const RESERVED_OUTBOUND_SLOTS: u32 = 8 + 2 + 1;

/// Bitcoin Core's default `-maxconnections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 125;

impl NodeConfig {
    /// How many inbound peers the node accepts before it evicts or refuses one:
    /// `max(0, maxconnections - 11)`. Eviction of an existing peer needs more than 20 inbound
    /// peers (Core protects 4 by netgroup, 8 by ping, 4 by tx and 4 by block time first), so
    /// with fewer slots surplus peers are refused instead.
    pub fn inbound_slots(&self) -> u32 {
        self.max_connections
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            .saturating_sub(RESERVED_OUTBOUND_SLOTS)
    }

    /// The default configuration (same as `NodeConfig::default()`).
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends one extra bitcoind argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    /// Sets [`NodeConfig::v2transport`].
    pub fn v2transport(mut self, on: bool) -> Self {
        self.v2transport = on;
        self
    }
    /// Sets [`NodeConfig::max_connections`].
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }
    /// Sets [`NodeConfig::wallet`].
    pub fn wallet(mut self, on: bool) -> Self {
        self.wallet = on;
        self
    }
    /// Sets [`NodeConfig::zmq`].
    pub fn zmq(mut self, on: bool) -> Self {
        self.zmq = on;
        self
    }
    /// Sets [`NodeConfig::listen`].
    pub fn listen(mut self, on: bool) -> Self {
        self.listen = on;
        self
    }
    /// Sets [`NodeConfig::bitcoind`].
    pub fn bitcoind(mut self, path: impl Into<PathBuf>) -> Self {
        self.bitcoind = Some(path.into());
        self
    }
}

/// The ZMQ endpoints of a node started with [`NodeConfig::zmq`], as `tcp://127.0.0.1:<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZmqEndpoints {
    /// `-zmqpubhashblock`.
    pub hashblock: String,
    /// `-zmqpubhashtx`.
    pub hashtx: String,
    /// `-zmqpubrawblock`.
    pub rawblock: String,
    /// `-zmqpubsequence`.
    pub sequence: String,
}
