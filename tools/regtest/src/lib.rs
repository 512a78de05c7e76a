//! Real Bitcoin Core v30.0 regtest nodes on loopback, for nodescope's tests and `cargo xtask demo`.
//!
//! - [`Node`]: a `bitcoind -regtest` on free ports with a temporary datadir, cookie-authenticated
//!   JSON-RPC ([`Node::rpc`]), wallet and chain helpers, restart/stop/kill, and clean-up on drop
//!   (also when a test panics).
//! - [`RawPeer`]: a raw P2P client speaking v1 or BIP324 v2 transport, for sending any message —
//!   well-formed or not — and reading what the node answers.
//! - [`wait_until`]: the one way to wait for something (polling with a deadline, never a fixed
//!   sleep).
//!
//! Everything is synchronous (std threads, processes and blocking sockets), so it works from
//! plain `#[test]`s and, through `spawn_blocking`, from async tests.
//!
//! ```no_run
//! use nodescope_regtest::{p2p::payload, Node, NodeConfig, Transport};
//! use std::time::Duration;
//!
//! let alice = Node::start(NodeConfig::new().wallet(true))?;
//! let bob = Node::start(NodeConfig::new())?;
//! alice.connect_to(&bob)?;
//! alice.mature_coins()?;
//! let txid = alice.send_to_address(&alice.new_address()?, 1.0)?;
//! bob.wait_for_mempool(&txid)?;
//!
//! let mut peer = bob.raw_peer(Transport::V2)?;
//! peer.send("ping", &payload::ping(7))?;
//! let pong = peer.recv_until("pong", Duration::from_secs(10))?;
//! assert_eq!(payload::nonce(&pong), Some(7));
//! # Ok::<(), nodescope_regtest::Error>(())
//! ```

#![warn(missing_docs)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod error;
mod node;
pub mod p2p;
mod rpc;

pub use error::{EarlyExit, Error, Result};
pub use node::{
    Node, NodeConfig, ZmqEndpoints, BURN_ADDRESS, DEFAULT_MAX_CONNECTIONS, DEFAULT_WALLET,
    RESERVED_OUTBOUND_SLOTS,
};
pub use p2p::{RawPeer, Transport};
/// The versions this crate builds messages and RPC parameters with.
pub use {bitcoin, serde_json};

/// The default deadline for start-up, connections and other waits of this crate.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variable naming a directory with `bitcoind` and `bitcoin-cli`, overriding
/// the copy `cargo xtask setup` installs in the workspace's `target/`.
pub const BIN_ENV: &str = "NODESCOPE_BITCOIND_BIN";

/// The directory holding `bitcoind` and `bitcoin-cli`, so every test runs the same Bitcoin Core:
/// `$NODESCOPE_BITCOIND_BIN` if set, else `<workspace>/target/bitcoin-core/30.0/bin`.
pub fn bin_dir() -> Result<PathBuf> {
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join("target/bitcoin-core/30.0/bin");
    let default = default.canonicalize().unwrap_or(default);
    let mut looked = Vec::new();
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        let dir = PathBuf::from(dir);
        if has_binaries(&dir) {
            return Ok(dir);
        }
        looked.push(format!("{} (from {BIN_ENV})", dir.display()));
    } else {
        if has_binaries(&default) {
            return Ok(default);
        }
        looked.push(format!("{} ({BIN_ENV} is not set)", default.display()));
    }
    Err(Error::BinNotFound {
        looked: looked.join(", "),
    })
}

/// A copy of the installed bitcoind in `dir`, for a test that traces it: uprobes attach by
/// path, so no other test's tracer sees the nodes started from this copy.
pub fn private_bitcoind(dir: &std::path::Path) -> Result<PathBuf> {
    let source = bin_dir()?.join("bitcoind");
    let copy = dir.join("bitcoind");
    std::fs::copy(&source, &copy).map_err(|error| {
        Error::io(
            format!("copying {} to {}", source.display(), copy.display()),
            error,
        )
    })?;
    Ok(copy)
}

#[cfg(test)]
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    const fn sendable<T: Send>() {}
    shareable::<Node>();
    sendable::<RawPeer>();
    shareable::<Error>();
};

fn has_binaries(dir: &std::path::Path) -> bool {
    dir.join("bitcoind").is_file() && dir.join("bitcoin-cli").is_file()
}

/// Polls `poll` every ~20 ms until it returns `Ok(Some(_))` or `timeout` passes — the way to
/// wait for a node to reach a state without fixed sleeps.
///
/// `Ok(None)` and non-fatal errors mean "not yet" (the last error is kept for the timeout
/// message, which names `what`); fatal errors ([`Error::is_fatal`]: the process exited, the
/// peer closed, ...) are returned at once.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut poll: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match poll() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => last_error = Some(e.to_string()),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                timeout,
                last_error: last_error.unwrap_or_else(|| "none".to_string()),
            });
        }
        std::thread::sleep(Duration::from_millis(20).min(deadline - now));
    }
}
