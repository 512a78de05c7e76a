//! `cargo xtask demo`: a local NATS, the tools, and the extractor attached to a real regtest
//! bitcoind (or, with `--simulated`, to the simulator) with traffic to show.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nodescope_regtest::serde_json::json;
use nodescope_regtest::{p2p::payload, Node, NodeConfig, Transport};

use crate::{cargo, check, workspace_root};

pub struct DemoOptions {
    pub simulated: bool,
    pub pace_ms: u64,
    pub seconds: Option<u64>,
}

/// Children that are stopped (SIGTERM, then reaped) when the demo ends, however it ends.
struct Processes(Vec<(&'static str, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in self.0.iter_mut().rev() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

impl Processes {
    fn start(&mut self, name: &'static str, command: &mut Command) -> Result<()> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        self.0.push((name, child));
        Ok(())
    }

    /// The first child that exited, if any.
    fn exited(&mut self) -> Result<Option<String>> {
        for (name, child) in self.0.iter_mut() {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(format!("{name} exited ({status})")));
            }
        }
        Ok(None)
    }
}

pub fn run(options: DemoOptions) -> Result<()> {
    let mut packages = vec![
        "extractor",
        "nodescope-logger",
        "nodescope-metrics",
        "nodescope-websocket",
    ];
    if options.simulated {
        packages.push("simulator");
    }
    let mut args = vec!["build", "--bins"];
    for package in &packages {
        args.extend(["--package", package]);
    }
    check(
        cargo(&args).status()?,
        "building the extractor and the tools",
    )?;
    let root = workspace_root();
    let bin = |name: &str| root.join("target/debug").join(name);
    let mut processes = Processes(Vec::new());
    start_nats_and_tools(&root, &bin, &mut processes)?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc_flag(stop);
    }
    let deadline = options
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let running = || !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d);

    if options.simulated {
        start_extractor(&bin, &bin("bitcoind-sim"), &mut processes)?;
        println!("demo: starting the simulated bitcoind (regtest-like scenario, looping)");
        processes.start(
            "bitcoind-sim",
            Command::new(bin("bitcoind-sim")).args([
                "--loop",
                "--pace",
                &options.pace_ms.to_string(),
                "--wait-for-tracer",
                "all",
                "--wait-timeout",
                "60",
                "regtest-like",
            ]),
        )?;
        while running() {
            if let Some(exited) = processes.exited()? {
                bail!("{exited}; the demo stops");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    } else {
        let bitcoind = nodescope_regtest::bin_dir()
            .context("Bitcoin Core is needed for the demo (or run `cargo xtask demo --simulated`)")?
            .join("bitcoind");
        // Attached before the nodes start, so the log shows their very first connections.
        start_extractor(&bin, &bitcoind, &mut processes)?;
        println!("demo: starting two regtest nodes ({})", bitcoind.display());
        let traced = Node::start(NodeConfig::new().wallet(true).zmq(true))?;
        // The same node as bitcoind tells it over RPC and ZMQ, under the same node id.
        processes.start(
            "extractor rpc",
            Command::new(bin("extractor"))
                .args([
                    "rpc",
                    "--chain",
                    "regtest",
                    "--node-id",
                    "demo",
                    "--interval",
                    "5s",
                ])
                .args([
                    "--slow-interval",
                    "30s",
                    "--nats-url",
                    "nats://127.0.0.1:4222",
                ])
                .arg("--rpc-url")
                .arg(format!("http://127.0.0.1:{}", traced.rpc_port()))
                .arg("--rpc-cookie-file")
                .arg(traced.cookie_path()),
        )?;
        // The extractor traces every process of the binary it is given: the peer runs a copy,
        // so that only the traced node's events are shown.
        let peer_binary = root.join("target/demo/peer-bitcoind");
        std::fs::create_dir_all(root.join("target/demo"))?;
        std::fs::copy(&bitcoind, &peer_binary)
            .with_context(|| format!("copying bitcoind to {}", peer_binary.display()))?;
        let peer = Node::start(NodeConfig::new().bitcoind(&peer_binary))?;
        println!(
            "demo: node on {} (RPC {}), its peer on {}",
            traced.p2p_addr(),
            traced.rpc_port(),
            peer.p2p_addr()
        );
        traced.connect_to(&peer)?;
        traced.mature_coins()?;
        let mut traffic = Traffic::new(&traced)?;
        let pace = Duration::from_millis(options.pace_ms.max(1) * 25);
        while running() {
            if let Some(exited) = processes.exited()? {
                bail!("{exited}; the demo stops");
            }
            traffic.step(&traced)?;
            std::thread::sleep(pace);
        }
    }
    println!("demo: done");
    Ok(())
}

/// What the demo makes the traced node do, one step at a time: payments (some bumped by RBF),
/// a block now and then, and a raw peer that pings and comes and goes.
struct Traffic {
    step: u64,
    address: String,
    unconfirmed: Vec<String>,
    raw_peer: Option<nodescope_regtest::RawPeer>,
}

impl Traffic {
    fn new(node: &Node) -> Result<Traffic> {
        Ok(Traffic {
            step: 0,
            address: node.new_address()?,
            unconfirmed: Vec::new(),
            raw_peer: None,
        })
    }

    fn step(&mut self, node: &Node) -> Result<()> {
        self.step += 1;
        const AMOUNTS: [f64; 5] = [0.1, 0.25, 0.5, 1.0, 0.05];
        let amount = AMOUNTS[self.step as usize % AMOUNTS.len()];
        let txid = node.send_to_address(&self.address, amount)?;
        if self.step.is_multiple_of(4) {
            // The wallet may refuse (a descendant, say): the demo goes on without the bump.
            if let Ok(bumped) = node.bump_fee(&txid) {
                self.unconfirmed.push(bumped);
            }
        } else {
            self.unconfirmed.push(txid);
        }
        if self.step.is_multiple_of(10) {
            node.generate(1)?;
            self.unconfirmed.clear();
        }
        if self.step.is_multiple_of(3) {
            match self.raw_peer.take() {
                // Every other time, the raw peer leaves (a closed connection) ...
                Some(_) if self.step.is_multiple_of(6) => {}
                // ... or pings.
                Some(mut peer) => {
                    peer.send("ping", &payload::ping(self.step))?;
                    self.raw_peer = Some(peer);
                }
                None => {
                    let transport = if self.step.is_multiple_of(2) {
                        Transport::V2
                    } else {
                        Transport::V1
                    };
                    self.raw_peer = Some(node.raw_peer(transport)?);
                }
            }
        }
        if self.step.is_multiple_of(25) {
            // A forced flush of the coins cache (utxocache:flush).
            node.rpc("gettxoutsetinfo", json!([]))?;
        }
        Ok(())
    }
}

fn start_nats_and_tools(
    root: &Path,
    bin: &dyn Fn(&str) -> PathBuf,
    processes: &mut Processes,
) -> Result<()> {
    let nats_config = root.join("compose/nats/nats.conf");
    println!(
        "demo: starting nats-server on 127.0.0.1:4222 ({})",
        nats_config.display()
    );
    processes.start(
        "nats-server",
        Command::new("nats-server")
            .arg("--config")
            .arg(&nats_config),
    )?;
    wait_for_port(4222, "nats-server")?;

    // The tools subscribe before anything is published, so they see every event.
    let nats = ["--nats-url", "nats://127.0.0.1:4222"];
    println!("demo: Prometheus metrics on http://127.0.0.1:8282/metrics");
    processes.start("metrics", Command::new(bin("metrics")).args(nats))?;
    println!(
        "demo: the live page on http://127.0.0.1:47482/ (websocket feed: ws://127.0.0.1:47482/ws)"
    );
    processes.start("websocket", Command::new(bin("websocket")).args(nats))?;
    wait_for_ready(8282, "the metrics tool")?;
    wait_for_ready(47482, "the websocket tool")?;
    println!("demo: the logger prints every event below");
    processes.start("logger", Command::new(bin("logger")).args(nats))?;
    // The logger has no health endpoint: its subscription is confirmed once it logs; the
    // extractor's first events follow attaching anyway, which takes longer.
    Ok(())
}

fn start_extractor(
    bin: &dyn Fn(&str) -> PathBuf,
    bitcoind: &Path,
    processes: &mut Processes,
) -> Result<()> {
    println!("demo: starting the extractor on {}", bitcoind.display());
    processes.start(
        "extractor",
        Command::new(bin("extractor"))
            .args([
                "ebpf",
                "--node-id",
                "demo",
                "--nats-url",
                "nats://127.0.0.1:4222",
                "--bitcoind-path",
            ])
            .arg(bitcoind),
    )
}

/// Sets `stop` on SIGINT/SIGTERM, so the demo ends its loop and drops (stops) the nodes.
fn ctrlc_flag(stop: Arc<AtomicBool>) {
    static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    let _ = STOP.set(stop);
    extern "C" fn on_signal(_: libc::c_int) {
        if let Some(stop) = STOP.get() {
            stop.store(true, Ordering::SeqCst);
        }
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Waits until `/healthz` on 127.0.0.1:`port` answers 200: the tool is connected and
/// subscribed.
fn wait_for_ready(port: u16, what: &str) -> Result<()> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = std::net::TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut stream| {
                stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                write!(
                    stream,
                    "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )?;
                let mut reply = String::new();
                stream.read_to_string(&mut reply)?;
                Ok(reply.starts_with("HTTP/1.1 200"))
            })
            .unwrap_or(false);
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} was not ready on 127.0.0.1:{port} within 20 s (is the port taken?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_port(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not start listening on 127.0.0.1:{port} (is the port taken?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
