//! One `bitcoind -regtest` process: free loopback ports, a temporary datadir, start-up that
//! waits for RPC, restart/stop/kill, and clean-up on drop. Chain, wallet and peer helpers are in
//! `node/chain.rs`, the configuration in `node/config.rs`.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::EarlyExit;
use crate::rpc::RpcClient;
use crate::{bin_dir, wait_until, Error, Result, TIMEOUT};

mod chain;
mod config;

pub use config::{NodeConfig, ZmqEndpoints, DEFAULT_MAX_CONNECTIONS, RESERVED_OUTBOUND_SLOTS};

/// The wallet [`NodeConfig::wallet`] creates and the wallet helpers use.
pub const DEFAULT_WALLET: &str = "default";

/// A valid regtest address nobody can spend from (P2WSH of 32 zero bytes, Bitcoin Core's
/// functional tests use the same): where [`Node::generate`] mines to when there is no wallet.
pub const BURN_ADDRESS: &str = "bcrt1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq3xueyj";

/// How long an explicit [`Node::stop`] / [`Node::restart`] waits for bitcoind to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Drop`] waits after RPC `stop` before SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(10);
/// Set to keep the datadir of dropped nodes (its path is printed), for post-mortems.
const KEEP_ENV: &str = "NODESCOPE_REGTEST_KEEP";

/// A running (or stopped) regtest bitcoind owned by the test: dropping it stops the process and
/// deletes its datadir, also while a panic unwinds.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    bitcoind: PathBuf,
    /// `None` only once dropped with [`KEEP_ENV`] set.
    datadir: Option<tempfile::TempDir>,
    child: Option<Child>,
    pid: u32,
    p2p_port: u16,
    rpc_port: u16,
    zmq: Option<ZmqEndpoints>,
    rpc: RpcClient,
    /// Whether [`Node::mature_coins`] already mined its 101 blocks.
    matured: AtomicBool,
}

impl Node {
    /// Starts bitcoind on free ports with a fresh datadir and waits (up to [`TIMEOUT`]) until
    /// its RPC answers — and, with [`NodeConfig::wallet`], until the wallet is loaded. If it
    /// fails to bind (a free port taken in the meantime) it is tried once more on new ports.
    pub fn start(config: NodeConfig) -> Result<Node> {
        let bitcoind = match &config.bitcoind {
            Some(path) => path.clone(),
            None => bin_dir()?.join("bitcoind"),
        };
        match Node::start_once(&config, &bitcoind) {
            Err(e) if is_bind_failure(&e) => {
                tracing::warn!("bitcoind could not bind its ports, retrying on others: {e}");
                Node::start_once(&config, &bitcoind)
            }
            other => other,
        }
    }

    fn start_once(config: &NodeConfig, bitcoind: &Path) -> Result<Node> {
        let datadir = tempfile::Builder::new()
            .prefix("nodescope-regtest-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary datadir", e))?;
        let ports = free_ports(if config.zmq { 6 } else { 2 })?;
        let zmq = config.zmq.then(|| {
            let url = |port: u16| format!("tcp://127.0.0.1:{port}");
            ZmqEndpoints {
                hashblock: url(ports[2]),
                hashtx: url(ports[3]),
                rawblock: url(ports[4]),
                sequence: url(ports[5]),
            }
        });
        let rpc_addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, ports[1]));
        let cookie = datadir.path().join("regtest").join(".cookie");
        let mut node = Node {
            config: config.clone(),
            bitcoind: bitcoind.to_path_buf(),
            datadir: Some(datadir),
            child: None,
            pid: 0,
            p2p_port: ports[0],
            rpc_port: ports[1],
            zmq,
            rpc: RpcClient::new(rpc_addr, cookie),
            matured: AtomicBool::new(false),
        };
        node.spawn()?;
        Ok(node)
    }

    /// The bitcoind command line (without the binary).
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-regtest",
            "-server",
            "-rpcbind=127.0.0.1",
            "-rpcallowip=127.0.0.1",
            "-fallbackfee=0.0001",
            "-debug=net",
            "-printtoconsole=0",
            "-dnsseed=0",
            "-fixedseeds=0",
            "-discover=0",
            "-listenonion=0",
            "-natpmp=0",
            "-txindex=0",
        ]
        .map(String::from)
        .into();
        args.push(format!("-datadir={}", self.datadir().display()));
        args.push(format!("-rpcport={}", self.rpc_port));
        args.push(format!(
            "-v2transport={}",
            u8::from(self.config.v2transport)
        ));
        if self.config.listen {
            args.push("-listen=1".into());
            args.push(format!("-bind=127.0.0.1:{}", self.p2p_port));
        } else {
            args.push("-listen=0".into());
        }
        if let Some(n) = self.config.max_connections {
            args.push(format!("-maxconnections={n}"));
        }
        if let Some(z) = &self.zmq {
            args.push(format!("-zmqpubhashblock={}", z.hashblock));
            args.push(format!("-zmqpubhashtx={}", z.hashtx));
            args.push(format!("-zmqpubrawblock={}", z.rawblock));
            args.push(format!("-zmqpubsequence={}", z.sequence));
        }
        args.extend(self.config.args.iter().cloned());
        args
    }

    /// Runs bitcoind on this node's datadir and ports, then waits until it is usable.
    fn spawn(&mut self) -> Result<()> {
        let open = |name: &str| {
            let path = self.datadir().join(name);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))
        };
        let (stdout, stderr) = (open("bitcoind.stdout")?, open("bitcoind.stderr")?);
        let args = self.args();
        tracing::debug!(bitcoind = %self.bitcoind.display(), ?args, "starting bitcoind");
        let child = Command::new(&self.bitcoind)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| Error::io(format!("running {}", self.bitcoind.display()), e))?;
        self.pid = child.id();
        self.child = Some(child);
        let what = format!(
            "bitcoind (pid {}) to answer RPC on port {}",
            self.pid, self.rpc_port
        );
        wait_until(&what, TIMEOUT, || {
            self.check_running()?;
            self.rpc("getblockchaininfo", json!([])).map(Some)
        })?;
        if self.config.wallet {
            self.ensure_wallet()?;
        }
        tracing::info!(pid = self.pid, p2p = %self.p2p_addr(), rpc = self.rpc_port, "bitcoind ready");
        Ok(())
    }

    /// Loads [`DEFAULT_WALLET`], creating it on first start.
    fn ensure_wallet(&self) -> Result<()> {
        let loaded = self.rpc("listwallets", json!([]))?;
        if loaded
            .as_array()
            .into_iter()
            .flatten()
            .any(|w| w == DEFAULT_WALLET)
        {
            return Ok(());
        }
        match self.rpc("loadwallet", json!([DEFAULT_WALLET])) {
            Ok(_) => Ok(()),
            // -18: no such wallet yet.
            Err(Error::Rpc { code: -18, .. }) => self
                .rpc(
                    "createwallet",
                    json!({"wallet_name": DEFAULT_WALLET, "load_on_startup": true}),
                )
                .map(drop),
            Err(e) => Err(e),
        }
    }

    /// Returns `EarlyExit` (with the ends of stderr and debug.log) if bitcoind has exited.
    fn check_running(&mut self) -> Result<()> {
        let child = self.child.as_mut().ok_or(Error::NotRunning)?;
        let status = child
            .try_wait()
            .map_err(|e| Error::io(format!("waiting for bitcoind pid {}", self.pid), e))?;
        match status {
            None => Ok(()),
            Some(status) => {
                self.child = None;
                let stderr_path = self.datadir().join("bitcoind.stderr");
                Err(Error::EarlyExit(Box::new(EarlyExit {
                    bitcoind: self.bitcoind.clone(),
                    status: status.to_string(),
                    stderr: tail(&stderr_path, 20),
                    stderr_path,
                    debug_log: self.debug_log(),
                    log_tail: tail(&self.debug_log(), 40),
                })))
            }
        }
    }

    /// Calls an RPC method on the node (no wallet in the URL) and returns its `result`;
    /// an RPC error becomes [`Error::Rpc`].
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value> {
        self.rpc_at("/", method, &params)
    }

    /// Calls a wallet RPC method on `/wallet/<wallet>`.
    pub fn rpc_wallet(&self, wallet: &str, method: &str, params: Value) -> Result<Value> {
        self.rpc_at(
            &format!("/wallet/{}", percent_encode(wallet)),
            method,
            &params,
        )
    }

    fn rpc_at(&self, path: &str, method: &str, params: &Value) -> Result<Value> {
        if self.child.is_none() {
            return Err(Error::NotRunning);
        }
        self.rpc.call(path, method, params)
    }

    /// Stops bitcoind with RPC `stop` and waits for the process to exit (SIGKILL, and an
    /// error, after 30 s). The datadir and ports are kept for [`Node::restart`].
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Err(e) = self.rpc.call("/", "stop", &json!([])) {
            tracing::debug!(
                pid = self.pid,
                "RPC stop failed ({e}); waiting for exit anyway"
            );
        }
        match wait_exit(&mut child, STOP_TIMEOUT) {
            Ok(status) => {
                tracing::debug!(pid = self.pid, %status, "bitcoind stopped");
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Stops bitcoind (if running) and starts it again on the same datadir and ports; the pid
    /// changes, chain and wallet are kept.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Ends bitcoind abruptly with SIGKILL (no shutdown, no flush) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .and_then(|()| child.wait().map(drop))
                .map_err(|e| Error::io(format!("killing bitcoind pid {}", self.pid), e))?;
        }
        Ok(())
    }

    /// Whether the bitcoind process is alive (it may have exited by itself, e.g. on an
    /// assertion or after an RPC `stop` sent directly).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                if let Some(mut child) = self.child.take() {
                    let _ = child.wait();
                }
                false
            }
            None => false,
        }
    }

    /// The pid of the current bitcoind process (of the last one once stopped).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The datadir (`-datadir`); regtest files are under `regtest/`.
    pub fn datadir(&self) -> &Path {
        self.datadir
            .as_ref()
            .map(tempfile::TempDir::path)
            .expect("datadir exists until drop")
    }

    /// The node's debug.log, for tests that check what bitcoind logged.
    pub fn debug_log(&self) -> PathBuf {
        self.datadir().join("regtest").join("debug.log")
    }

    /// The RPC cookie file (rewritten on every start).
    pub fn cookie_path(&self) -> PathBuf {
        self.datadir().join("regtest").join(".cookie")
    }

    /// Where the node accepts P2P connections (`127.0.0.1:<port>`; nothing listens there
    /// with `listen: false`).
    pub fn p2p_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.p2p_port))
    }

    /// The RPC port on 127.0.0.1.
    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    /// The bitcoind binary this node runs (for attaching uprobes to it).
    pub fn bitcoind_path(&self) -> &Path {
        &self.bitcoind
    }

    /// The chain name, as bitcoind and nodescope's events call it.
    pub fn chain(&self) -> &'static str {
        "regtest"
    }

    /// The ZMQ endpoints, if started with [`NodeConfig::zmq`].
    pub fn zmq(&self) -> Option<&ZmqEndpoints> {
        self.zmq.as_ref()
    }

    /// The configuration the node was started with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// A `bitcoin-cli` command already pointed at this node (add the method and arguments):
    /// the one next to the node's bitcoind, else the one in [`bin_dir`].
    pub fn cli(&self) -> Command {
        let sibling = self.bitcoind.with_file_name("bitcoin-cli");
        let binary = match bin_dir() {
            Ok(dir) if !sibling.is_file() => dir.join("bitcoin-cli"),
            _ => sibling,
        };
        let mut cli = Command::new(binary);
        cli.arg("-regtest")
            .arg(format!("-datadir={}", self.datadir().display()))
            .arg(format!("-rpcport={}", self.rpc_port));
        cli
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.rpc.call("/", "stop", &json!([]));
            if wait_exit(&mut child, DROP_GRACE).is_err() {
                tracing::warn!(
                    pid = self.pid,
                    "bitcoind did not stop in {DROP_GRACE:?}, killing it"
                );
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::env::var_os(KEEP_ENV).is_some() {
            if let Some(dir) = self.datadir.take() {
                eprintln!(
                    "{KEEP_ENV} is set: keeping bitcoind datadir {}",
                    dir.keep().display()
                );
            }
        }
    }
}

/// Whether bitcoind exited because a port was taken (Core says "Unable to bind ..." for P2P
/// and RPC, "Failed to bind" for ZMQ).
fn is_bind_failure(e: &Error) -> bool {
    let Error::EarlyExit(exit) = e else {
        return false;
    };
    ["Unable to bind", "Failed to bind", "Address already in use"]
        .iter()
        .any(|needle| exit.stderr.contains(needle) || exit.log_tail.contains(needle))
}

/// Polls the child until it exits, up to `timeout`.
fn wait_exit(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let what = format!("bitcoind pid {} to exit", child.id());
    wait_until(&what, timeout, || {
        child
            .try_wait()
            .map_err(|e| Error::io("waiting for bitcoind", e))
    })
}

/// `n` distinct loopback ports nothing listens on right now (all held open while picking).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io("picking a free loopback port", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io("reading a picked port", e))
}

/// The last `lines` lines of a text file, or a note saying why there are none.
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Percent-encodes a wallet name for the `/wallet/<name>` URL.
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
