//! The one error type of the crate: every message names the value involved and, where there is
//! one, what to do about it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while running regtest nodes or talking to them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `bitcoind` / `bitcoin-cli` are not where we looked.
    #[error(
        "Bitcoin Core binaries not found: looked for bitcoind and bitcoin-cli in {looked}; \
         run `cargo xtask setup` (installs Bitcoin Core 30.0 into target/bitcoin-core/30.0/bin) \
         or set NODESCOPE_BITCOIND_BIN to a directory holding bitcoind and bitcoin-cli"
    )]
    BinNotFound {
        /// The directories looked at, already formatted.
        looked: String,
    },

    /// A local I/O operation (files, process spawning, sockets) failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing, with the path or address involved.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// bitcoind exited while we waited for it (usually a bad argument or a port clash).
    #[error("{0}")]
    EarlyExit(Box<EarlyExit>),

    /// A condition polled by [`crate::wait_until`] did not hold in time.
    #[error("timed out after {timeout:?} waiting for {what} (last error: {last_error})")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long we waited.
        timeout: Duration,
        /// The last error the poll returned, or "none".
        last_error: String,
    },

    /// bitcoind answered a JSON-RPC call with an error object.
    #[error("RPC {method} failed with code {code}: {message}")]
    Rpc {
        /// The RPC method called.
        method: String,
        /// Bitcoin Core's error code (e.g. -28 while warming up, -5 for "not found").
        code: i64,
        /// Bitcoin Core's error message.
        message: String,
    },

    /// The RPC server answered something that is not a JSON-RPC reply (bad cookie, wrong URL).
    #[error("RPC {method} at {url}: HTTP {status}: {body}")]
    Http {
        /// The RPC method called.
        method: String,
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the body.
        body: String,
    },

    /// A reply was well-formed but not what the helper expected.
    #[error("unexpected reply to {what}: {reply}")]
    Unexpected {
        /// The call or message concerned.
        what: String,
        /// The reply (or the part of it that did not fit).
        reply: String,
    },

    /// The node is stopped or killed; call `Node::restart` first.
    #[error("bitcoind is not running (stopped or killed); call Node::restart() to start it again")]
    NotRunning,

    /// A wallet helper was used on a node started without `NodeConfig::wallet`.
    #[error("{what} needs a wallet: start the node with NodeConfig {{ wallet: true, .. }}")]
    NoWallet {
        /// The helper that was called.
        what: &'static str,
    },

    /// The remote end closed a raw P2P connection (EOF, reset, or eviction).
    #[error("P2P connection to {peer} closed: {reason}")]
    PeerClosed {
        /// The node's address.
        peer: SocketAddr,
        /// Why, as far as we can tell.
        reason: String,
    },

    /// A raw P2P protocol problem (bad frame from the node, command too long, failed handshake).
    #[error("P2P {peer}: {message}")]
    P2p {
        /// The node's address.
        peer: SocketAddr,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Errors that no amount of waiting fixes: [`crate::wait_until`] returns them at once
    /// instead of polling until its deadline.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::BinNotFound { .. }
                | Error::EarlyExit(_)
                | Error::NotRunning
                | Error::NoWallet { .. }
                | Error::PeerClosed { .. }
        )
    }

    /// The JSON-RPC error code, if this is an RPC error.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            Error::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn unexpected(what: impl Into<String>, reply: impl ToString) -> Error {
        Error::Unexpected {
            what: what.into(),
            reply: reply.to_string(),
        }
    }
}

/// What we know about a bitcoind that exited during start-up (boxed in [`Error::EarlyExit`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "bitcoind ({bitcoind}) exited during start-up with {status}\n\
     --- last lines of its stderr ({stderr_path}) ---\n{stderr}\n\
     --- last lines of {debug_log} ---\n{log_tail}",
    bitcoind = bitcoind.display(),
    stderr_path = stderr_path.display(),
    debug_log = debug_log.display()
)]
pub struct EarlyExit {
    /// The binary that was run.
    pub bitcoind: PathBuf,
    /// Its exit status.
    pub status: String,
    /// Where its stderr went (deleted with the datadir).
    pub stderr_path: PathBuf,
    /// The end of its stderr.
    pub stderr: String,
    /// The node's debug.log (deleted with the datadir).
    pub debug_log: PathBuf,
    /// The end of debug.log.
    pub log_tail: String,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
