//! The chain, wallet, mempool and peer helpers of [`Node`]: what tests do over and over, each
//! waiting by polling RPC.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bitcoin::Network;
use serde_json::{json, Value};

use super::{Node, BURN_ADDRESS, DEFAULT_WALLET};
use crate::{wait_until, Error, RawPeer, Result, Transport, TIMEOUT};

impl Node {
    /// Mines `n` blocks — to a new wallet address if the node has a wallet, else to
    /// [`BURN_ADDRESS`] — and returns their hashes.
    pub fn generate(&self, n: u32) -> Result<Vec<String>> {
        let address = if self.config.wallet {
            self.new_address()?
        } else {
            BURN_ADDRESS.to_string()
        };
        self.generate_to(n, &address)
    }

    /// Mines `n` blocks to `address` and returns their hashes.
    pub fn generate_to(&self, n: u32, address: &str) -> Result<Vec<String>> {
        let reply = self.rpc("generatetoaddress", json!([n, address]))?;
        strings(&reply).ok_or_else(|| Error::unexpected("generatetoaddress", reply))
    }

    /// Makes the wallet's coins spendable: mines 101 blocks the first time it is called (a
    /// coinbase matures after 100 confirmations), nothing afterwards.
    pub fn mature_coins(&self) -> Result<()> {
        self.require_wallet("mature_coins")?;
        if !self.matured.load(Ordering::SeqCst) {
            self.generate(101)?;
            self.matured.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// A new receiving address of the node's wallet.
    pub fn new_address(&self) -> Result<String> {
        self.require_wallet("new_address")?;
        let reply = self.rpc_wallet(DEFAULT_WALLET, "getnewaddress", json!([]))?;
        as_string(reply, "getnewaddress")
    }

    /// The wallet's trusted balance in BTC.
    pub fn balance(&self) -> Result<f64> {
        self.require_wallet("balance")?;
        let reply = self.rpc_wallet(DEFAULT_WALLET, "getbalance", json!([]))?;
        reply
            .as_f64()
            .ok_or_else(|| Error::unexpected("getbalance", reply))
    }

    /// Pays `btc` to `address` from the wallet (RBF-signalling, as v30 wallets do by default)
    /// and returns the txid.
    pub fn send_to_address(&self, address: &str, btc: f64) -> Result<String> {
        self.require_wallet("send_to_address")?;
        let reply = self.rpc_wallet(DEFAULT_WALLET, "sendtoaddress", json!([address, btc]))?;
        as_string(reply, "sendtoaddress")
    }

    /// Replaces a wallet transaction by one paying a higher fee (BIP125 RBF) and returns the
    /// new txid.
    pub fn bump_fee(&self, txid: &str) -> Result<String> {
        self.require_wallet("bump_fee")?;
        let reply = self.rpc_wallet(DEFAULT_WALLET, "bumpfee", json!([txid]))?;
        match reply["txid"].as_str() {
            Some(txid) => Ok(txid.to_string()),
            None => Err(Error::unexpected("bumpfee", reply)),
        }
    }

    fn require_wallet(&self, what: &'static str) -> Result<()> {
        if self.config.wallet {
            Ok(())
        } else {
            Err(Error::NoWallet { what })
        }
    }

    /// The height of the best chain.
    pub fn block_count(&self) -> Result<u64> {
        let reply = self.rpc("getblockcount", json!([]))?;
        reply
            .as_u64()
            .ok_or_else(|| Error::unexpected("getblockcount", reply))
    }

    /// The hash of the best block.
    pub fn best_block_hash(&self) -> Result<String> {
        as_string(self.rpc("getbestblockhash", json!([]))?, "getbestblockhash")
    }

    /// Whether `txid` is in the mempool now.
    pub fn in_mempool(&self, txid: &str) -> Result<bool> {
        match self.rpc("getmempoolentry", json!([txid])) {
            Ok(_) => Ok(true),
            // -5: not in mempool.
            Err(Error::Rpc { code: -5, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until `txid` is in the mempool.
    pub fn wait_for_mempool(&self, txid: &str) -> Result<()> {
        let what = format!("{txid} in the mempool of {}", self.p2p_addr());
        wait_until(&what, TIMEOUT, || Ok(self.in_mempool(txid)?.then_some(())))
    }

    /// Waits until all `nodes` have the same best block and returns its hash.
    pub fn sync_blocks(nodes: &[&Node]) -> Result<String> {
        wait_until("the nodes to agree on the best block", TIMEOUT, || {
            let tips = nodes
                .iter()
                .map(|n| n.best_block_hash())
                .collect::<Result<Vec<_>>>()?;
            Ok(match tips.split_first() {
                Some((first, rest)) if rest.iter().all(|t| t == first) => Some(first.clone()),
                _ => None,
            })
        })
    }

    /// `getpeerinfo`, as a list.
    pub fn peers(&self) -> Result<Vec<Value>> {
        let reply = self.rpc("getpeerinfo", json!([]))?;
        match reply {
            Value::Array(peers) => Ok(peers),
            other => Err(Error::unexpected("getpeerinfo", other)),
        }
    }

    /// The `getpeerinfo` entry whose `addr` is `addr` (e.g. a [`RawPeer::local_addr`]).
    pub fn peer_info(&self, addr: SocketAddr) -> Result<Option<Value>> {
        let addr = addr.to_string();
        Ok(self
            .peers()?
            .into_iter()
            .find(|p| p["addr"] == addr.as_str()))
    }

    /// Connects this node to `other` (`addnode <addr> onetry`) and waits until both list the
    /// other in `getpeerinfo` with the version/verack handshake done.
    pub fn connect_to(&self, other: &Node) -> Result<()> {
        let target = other.p2p_addr().to_string();
        self.rpc("addnode", json!([target, "onetry"]))?;
        let what = format!("{} and {target} to finish their handshake", self.p2p_addr());
        wait_until(&what, TIMEOUT, || {
            let ours = self.peers()?;
            let Some(outbound) = ours
                .iter()
                .find(|p| p["addr"] == target.as_str() && handshake_done(p))
            else {
                return Ok(None);
            };
            let local = &outbound["addrbind"];
            let theirs = other.peers()?;
            Ok(theirs
                .iter()
                .any(|p| &p["addr"] == local && handshake_done(p))
                .then_some(()))
        })
    }

    /// Disconnects every peer and waits until `getpeerinfo` is empty.
    pub fn disconnect_all(&self) -> Result<()> {
        for peer in self.peers()? {
            match self.rpc("disconnectnode", json!(["", peer["id"]])) {
                // -29: already gone.
                Ok(_) | Err(Error::Rpc { code: -29, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let what = format!("{} to have no peers", self.p2p_addr());
        wait_until(&what, TIMEOUT, || {
            Ok(self.peers()?.is_empty().then_some(()))
        })
    }

    /// A raw P2P peer connected to this node, handshake done.
    pub fn raw_peer(&self, transport: Transport) -> Result<RawPeer> {
        RawPeer::connect(self.p2p_addr(), Network::Regtest, transport)
    }
}

/// The node received our `version` and `verack` (the test framework's criterion; 21 bytes is
/// the smallest v2 `verack`).
fn handshake_done(peer: &Value) -> bool {
    peer["version"].as_u64().unwrap_or(0) != 0
        && peer["bytesrecv_per_msg"]["verack"].as_u64().unwrap_or(0) >= 21
}

fn as_string(reply: Value, what: &str) -> Result<String> {
    match reply {
        Value::String(s) => Ok(s),
        other => Err(Error::unexpected(what, other)),
    }
}

fn strings(reply: &Value) -> Option<Vec<String>> {
    reply
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}
