//! The RPC extractor benchmark (`cargo xtask bench rpc [--quick]`): a measurement, not a test.
//! It never fails because a machine is slow; it prints what it measured.
//!
//! A real Bitcoin Core v30.0 regtest node (`-debug=none`, `-txindex`, ZMQ on) with 50 inbound
//! raw P2P peers (half v1, half BIP324 v2, answering the node's pings so they stay), a wallet,
//! a mempool of 50 transactions and 1,000 addresses in its address manager; a private
//! nats-server; the release `extractor rpc` as a child process (its CPU time from its CPU-time
//! clock, the kernel's utime + stime in ns; its peak RSS from `/proc/PID/status`); and a
//! subscriber (this program) that reads every event and notes its size and what it says.
//!
//! * The run: `extractor rpc --interval 1s --slow-interval 5s` with every method and ZMQ, while
//!   the wallet pays once a second (hashtx and sequence notifications) and a block is mined now
//!   and then. Per method: answers, the RPC answer's bytes (`RpcCall.reply_bytes`), the
//!   published event's bytes (the NATS payload), call latency (`RpcCall.duration_ns`); per
//!   poll (one `--interval`): the extractor's CPU, from one `getpeerinfo` event to the next.
//! * One method at a time: `--calls <method> --no-zmq` every 250 ms, with no load: the
//!   extractor's CPU per call of that method, and bitcoind's, each less its idle CPU (measured
//!   with the extractor started with one call due per hour).

mod bench_report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use futures::StreamExt as _;
use nodescope_bus::test_server::NatsServer;
use nodescope_proto::event::Payload;
use nodescope_proto::rpc::{Method, Pace};
use nodescope_proto::rpc_call::Result as Answer;
use nodescope_proto::{Event, ExtractorStats};
use nodescope_regtest::{Node, NodeConfig, RawPeer, Transport};
use prost::Message as _;
use tokio::process::Command;
use tokio::sync::watch;

use bench_report::{fixed, machine, print_table, thousands};

#[derive(Parser, Debug)]
#[command(about = "nodescope RPC extractor benchmark: prints a table")]
struct Args {
    /// A smoke run: 10 polls, 5 calls per method alone.
    #[arg(long)]
    quick: bool,
    /// Directory holding the release `extractor` (default: the one this example was built
    /// into).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Raw P2P peers connected to the node.
    #[arg(long, default_value_t = 50)]
    peers: usize,
    /// Polls (fast intervals) measured in the run (default 60, 10 with --quick).
    #[arg(long)]
    polls: Option<usize>,
}

const NODE: &str = "bench";
const INTERVAL: Duration = Duration::from_secs(1);
const SLOW_INTERVAL: Duration = Duration::from_secs(5);
/// The interval of the one-method runs.
const ALONE_INTERVAL: Duration = Duration::from_millis(250);
/// Transactions in the mempool before the run, and addresses in the address manager.
const MEMPOOL_TXS: usize = 50;
const ADDRESSES: usize = 1_000;
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// /proc

/// CPU seconds of process `pid` so far (all its threads, ended ones included), in ns steps:
/// its CPU-time clock (`clock_getcpuclockid`), with `/proc/PID/stat`'s utime + stime (10 ms
/// ticks) where that clock cannot be read. NaN once the process is gone.
fn cpu_seconds(pid: i32) -> f64 {
    let mut clock: libc::clockid_t = 0;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both pointers are to live locals of the right types.
    let read = unsafe {
        libc::clock_getcpuclockid(pid, &mut clock) == 0 && libc::clock_gettime(clock, &mut now) == 0
    };
    if read {
        return now.tv_sec as f64 + now.tv_nsec as f64 / 1e9;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields 14 (utime) and 15 (stime) of proc(5); the text after the name starts at field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) as f64 / hz,
        _ => f64::NAN,
    }
}

/// The kernel's peak resident set (VmHWM) of `pid`, in MB (10^6 bytes).
fn peak_rss_mb(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kb| kb * 1024.0 / 1e6)
}

// ---------------------------------------------------------------------------------------------
// The subscriber

/// One event as it arrived.
#[derive(Debug, Clone)]
struct Record {
    at: Instant,
    /// The RPC method, the ZMQ topic, or `extractor_stats`.
    name: String,
    kind: Kind,
    /// The published event (the NATS payload).
    event_bytes: usize,
    reply_bytes: u64,
    duration_ns: u64,
    /// Not the first part of a getrawaddrman answer (its call is counted by part 0).
    later_part: bool,
    failed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rpc,
    Zmq,
    Stats,
}

/// A `marker` call arrived: the CPU of the extractor and of bitcoind then.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    extractor_cpu: f64,
    bitcoind_cpu: f64,
}

#[derive(Default)]
struct Shared {
    records: Vec<Record>,
    marks: Vec<Mark>,
    /// Marks are taken when an answer of this method arrives (its first part).
    marker: String,
    extractor_pid: i32,
    bitcoind_pid: i32,
    stats: Option<ExtractorStats>,
    stats_events: u64,
    /// How many marks there are, for [`Subscriber::wait_marks`].
    marks_count: Option<watch::Sender<usize>>,
}

struct Subscriber {
    shared: Arc<Mutex<Shared>>,
    marks: watch::Receiver<usize>,
    stats: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    async fn start(url: &str, bitcoind_pid: i32) -> Result<Subscriber> {
        let client = async_nats::ConnectOptions::new()
            .subscription_capacity(1 << 16)
            .connect(url)
            .await
            .context("connecting the subscriber")?;
        let mut events = client.subscribe(format!("nodescope.{NODE}.>")).await?;
        client.flush().await?;
        let (marks_tx, marks) = watch::channel(0usize);
        let shared = Arc::new(Mutex::new(Shared {
            bitcoind_pid,
            marks_count: Some(marks_tx),
            ..Shared::default()
        }));
        let (stats_tx, stats) = watch::channel(0u64);
        let state = shared.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            while let Some(message) = events.next().await {
                let at = Instant::now();
                let Ok(event) = Event::decode(message.payload.as_ref()) else {
                    eprintln!("bench: an undecodable event on {}", message.subject);
                    continue;
                };
                let event_bytes = message.payload.len();
                let failed = !event.error.is_empty();
                let record = match event.payload {
                    Some(Payload::RpcCall(call)) => Record {
                        at,
                        later_part: matches!(&call.result, Some(Answer::RawAddrman(p)) if p.part > 0),
                        failed: failed || matches!(call.result, Some(Answer::Failure(_))),
                        name: call.method,
                        kind: Kind::Rpc,
                        event_bytes,
                        reply_bytes: call.reply_bytes,
                        duration_ns: call.duration_ns,
                    },
                    Some(Payload::ZmqNotification(n)) => Record {
                        at,
                        name: n.topic,
                        kind: Kind::Zmq,
                        event_bytes,
                        reply_bytes: 0,
                        duration_ns: 0,
                        later_part: false,
                        failed,
                    },
                    Some(Payload::ExtractorStats(stats)) => {
                        let mut shared = state.lock().unwrap_or_else(|e| e.into_inner());
                        shared.stats = Some(stats);
                        shared.stats_events += 1;
                        stats_tx.send_replace(shared.stats_events);
                        Record {
                            at,
                            name: "extractor_stats".into(),
                            kind: Kind::Stats,
                            event_bytes,
                            reply_bytes: 0,
                            duration_ns: 0,
                            later_part: false,
                            failed,
                        }
                    }
                    _ => continue,
                };
                let mut shared = state.lock().unwrap_or_else(|e| e.into_inner());
                if record.kind == Kind::Rpc && !record.later_part && record.name == shared.marker {
                    let mark = Mark {
                        at,
                        extractor_cpu: cpu_seconds(shared.extractor_pid),
                        bitcoind_cpu: cpu_seconds(shared.bitcoind_pid),
                    };
                    shared.marks.push(mark);
                    if let Some(count) = &shared.marks_count {
                        count.send_replace(shared.marks.len());
                    }
                }
                shared.records.push(record);
            }
        });
        Ok(Subscriber {
            shared,
            marks,
            stats,
            task,
        })
    }

    /// Forgets what arrived; marks are taken on `marker` of process `pid` from now on.
    fn reset(&mut self, marker: &str, pid: i32) {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.records.clear();
        shared.marks.clear();
        shared.marker = marker.to_string();
        shared.extractor_pid = pid;
        shared.stats = None;
        if let Some(count) = &shared.marks_count {
            count.send_replace(0);
        }
    }

    async fn wait_marks(&mut self, count: usize, within: Duration) -> Result<()> {
        let waited = tokio::time::timeout(within, self.marks.wait_for(|n| *n >= count))
            .await
            .is_ok_and(|r| r.is_ok());
        if !waited {
            bail!(
                "{} of {count} answers of {} within {within:?}",
                *self.marks.borrow(),
                self.shared.lock().unwrap_or_else(|e| e.into_inner()).marker
            );
        }
        Ok(())
    }

    fn snapshot(&self) -> (Vec<Record>, Vec<Mark>, Option<ExtractorStats>) {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        (
            shared.records.clone(),
            shared.marks.clone(),
            shared.stats.clone(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The extractor as a child process

struct Extractor {
    child: tokio::process::Child,
    pid: i32,
    log: PathBuf,
}

impl Extractor {
    fn spawn(
        bin: &Path,
        node: &Node,
        nats_url: &str,
        extra: &[String],
        log: &Path,
    ) -> Result<Self> {
        let child = Command::new(bin)
            .arg("rpc")
            .args([
                "--chain",
                "regtest",
                "--node-id",
                NODE,
                "--nats-url",
                nats_url,
            ])
            .arg("--rpc-url")
            .arg(format!("http://127.0.0.1:{}", node.rpc_port()))
            .arg("--rpc-cookie-file")
            .arg(node.cookie_path())
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the extractor's pid")? as i32;
        Ok(Extractor {
            child,
            pid,
            log: log.to_path_buf(),
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and its exit (killed after 10 s).
    async fn stop(mut self) -> Result<()> {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("the extractor exited with {status}:\n{}", self.log());
                }
                Ok(())
            }
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("the extractor did not stop within 10 s:\n{}", self.log())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The node and its load

/// The node as the run finds it: peers, mempool, address manager.
fn prepare_node(peers: usize) -> Result<(Arc<Node>, Vec<RawPeer>)> {
    let node = Node::start(
        NodeConfig::new()
            .wallet(true)
            .zmq(true)
            .arg("-debug=none")
            .arg("-txindex")
            // gettxoutsetinfo is called (--txoutsetinfo auto) only with the index synced.
            .arg("-coinstatsindex"),
    )
    .context("starting bitcoind")?;
    node.mature_coins()?;
    // 200 more mature coinbases: each payment can spend a confirmed coin instead of lengthening
    // a chain of unconfirmed change past the mempool's limits.
    node.generate(200)?;
    for _ in 0..MEMPOOL_TXS {
        node.send_to_address(&node.new_address()?, 0.01)?;
    }
    for i in 0..ADDRESSES {
        // Routable IPv4 addresses in distinct /16s; every fifth one straight into `tried`.
        let address = format!(
            "{}.{}.{}.{}",
            20 + i / 250,
            1 + i % 250,
            7 + i % 13,
            1 + i % 200
        );
        node.rpc(
            "addpeeraddress",
            serde_json::json!([address, 8333, i % 5 == 0]),
        )?;
    }
    let mut raw = Vec::with_capacity(peers);
    for i in 0..peers {
        let transport = if i % 2 == 0 {
            Transport::V1
        } else {
            Transport::V2
        };
        let mut peer = RawPeer::connect_no_handshake(
            node.p2p_addr(),
            nodescope_regtest::bitcoin::Network::Regtest,
            transport,
        )
        .with_context(|| format!("connecting raw peer {i}"))?;
        // Answers the ping that follows the handshake, and every later one: the peers stay.
        peer.set_auto_pong(true);
        peer.handshake()?;
        raw.push(peer);
    }
    nodescope_regtest::wait_until(
        "every raw peer in getpeerinfo",
        nodescope_regtest::TIMEOUT,
        || {
            let connected = node
                .peers()?
                .iter()
                .filter(|p| p["version"].as_u64().unwrap_or(0) != 0)
                .count();
            Ok((connected >= peers).then_some(()))
        },
    )?;
    Ok((Arc::new(node), raw))
}

/// While it runs: a payment every second (hashtx, sequence), a block every `block_every`.
struct Load {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl Load {
    fn start(node: Arc<Node>, block_every: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut payments, mut blocks) = (0u64, 0u64);
            let mut tick = 0u64;
            let start = Instant::now();
            while !stopped.load(Ordering::Relaxed) {
                tick += 1;
                let paid = node
                    .new_address()
                    .and_then(|a| node.send_to_address(&a, 0.001));
                match paid {
                    Ok(_) => payments += 1,
                    Err(e) => eprintln!("bench: a payment failed: {e}"),
                }
                if tick.is_multiple_of(block_every) {
                    match node.generate(1) {
                        Ok(_) => blocks += 1,
                        Err(e) => eprintln!("bench: mining failed: {e}"),
                    }
                }
                let next = start + Duration::from_secs(tick);
                while !stopped.load(Ordering::Relaxed) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            (payments, blocks)
        });
        Load { stop, thread }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// One method's (or topic's) events in the run's window.
#[derive(Debug, Default)]
struct Row {
    kind: Option<Kind>,
    calls: u64,
    failed: u64,
    events: u64,
    reply_bytes: u64,
    event_bytes: u64,
    latencies_ms: Vec<f64>,
}

struct RunResult {
    polls: usize,
    seconds: f64,
    rows: BTreeMap<String, Row>,
    cpu_per_poll_ms: Vec<f64>,
    bitcoind_cpu_s: f64,
    peak_rss_mb: f64,
    stats: Option<ExtractorStats>,
    payments: u64,
    blocks: u64,
}

/// The run: every method and ZMQ, under load, for `polls` fast intervals after a warm-up poll.
async fn run(
    bin: &Path,
    node: &Arc<Node>,
    nats_url: &str,
    subscriber: &mut Subscriber,
    polls: usize,
    dir: &Path,
) -> Result<RunResult> {
    let load = Load::start(node.clone(), (polls as u64 / 2).max(3));
    let extra = [
        "--interval",
        &format!("{}ms", INTERVAL.as_millis()),
        "--slow-interval",
        &format!("{}ms", SLOW_INTERVAL.as_millis()),
        "--stats-interval",
        "10",
    ]
    .map(String::from);
    subscriber.reset(Method::GetPeerInfo.name(), 0);
    let extractor = Extractor::spawn(bin, node, nats_url, &extra, &dir.join("extractor-run.log"))?;
    subscriber.reset(Method::GetPeerInfo.name(), extractor.pid);
    // Marks 0 (the first poll: connecting, the ZMQ subscriptions) and 1 open the window.
    let waited = subscriber
        .wait_marks(polls + 2, INTERVAL * (polls as u32 + 2) + WAIT)
        .await;
    let peak_rss_mb = peak_rss_mb(extractor.pid);
    let (payments, blocks) = load.stop();
    if let Err(e) = waited {
        let log = extractor.log();
        let _ = extractor.stop().await;
        bail!("{e:#}; the extractor's log:\n{log}");
    }
    let stats_before = *subscriber.stats.borrow();
    extractor.stop().await?;
    // Its final stats come after the stop.
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        subscriber.stats.wait_for(|n| *n > stats_before),
    )
    .await;
    let (records, marks, stats) = subscriber.snapshot();
    let (open, close) = (marks[1], marks[polls + 1]);
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.at >= open.at && r.at < close.at)
    {
        let row = rows.entry(r.name.clone()).or_default();
        row.kind = Some(r.kind);
        row.events += 1;
        row.event_bytes += r.event_bytes as u64;
        if r.later_part {
            continue;
        }
        row.calls += 1;
        if r.kind == Kind::Rpc {
            row.failed += u64::from(r.failed);
            row.reply_bytes += r.reply_bytes;
            row.latencies_ms.push(r.duration_ns as f64 / 1e6);
        }
    }
    let cpu_per_poll_ms = marks[1..=polls + 1]
        .windows(2)
        .map(|w| (w[1].extractor_cpu - w[0].extractor_cpu) * 1e3)
        .collect();
    Ok(RunResult {
        polls,
        seconds: close.at.duration_since(open.at).as_secs_f64(),
        rows,
        cpu_per_poll_ms,
        bitcoind_cpu_s: close.bitcoind_cpu - open.bitcoind_cpu,
        peak_rss_mb,
        stats,
        payments,
        blocks,
    })
}

/// One method alone, every 250 ms, no ZMQ, no load: CPU per call.
#[derive(Debug, Clone, Copy)]
struct Alone {
    extractor_us: f64,
    bitcoind_us: f64,
    peak_rss_mb: f64,
}

/// CPU seconds per second of each process with nothing to do: the extractor between polls (its
/// timers, NATS pings), bitcoind with its peers and no calls.
#[derive(Debug, Clone, Copy)]
struct Idle {
    extractor_per_s: f64,
    bitcoind_per_s: f64,
}

/// The extractor started with one call due per hour: after that call, `seconds` of nothing.
async fn idle(
    bin: &Path,
    node: &Node,
    nats_url: &str,
    subscriber: &mut Subscriber,
    seconds: u64,
    dir: &Path,
) -> Result<Idle> {
    let extra = [
        "--calls",
        "uptime",
        "--no-zmq",
        "--interval",
        "3600s",
        "--slow-interval",
        "3600s",
        "--stats-interval",
        "3600",
    ]
    .map(String::from);
    subscriber.reset(Method::Uptime.name(), 0);
    let extractor = Extractor::spawn(bin, node, nats_url, &extra, &dir.join("extractor-idle.log"))?;
    subscriber.reset(Method::Uptime.name(), extractor.pid);
    if let Err(e) = subscriber.wait_marks(1, WAIT).await {
        let log = extractor.log();
        let _ = extractor.stop().await;
        bail!("{e:#}; the extractor's log:\n{log}");
    }
    let bitcoind = node.pid() as i32;
    let (from, extractor_from, bitcoind_from) = (
        Instant::now(),
        cpu_seconds(extractor.pid),
        cpu_seconds(bitcoind),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = from.elapsed().as_secs_f64();
    let measured = Idle {
        extractor_per_s: (cpu_seconds(extractor.pid) - extractor_from) / elapsed,
        bitcoind_per_s: (cpu_seconds(bitcoind) - bitcoind_from) / elapsed,
    };
    extractor.stop().await?;
    Ok(measured)
}

/// One method every 250 ms; CPU per call beyond the idle CPU of both processes.
#[allow(clippy::too_many_arguments)]
async fn alone(
    bin: &Path,
    node: &Node,
    nats_url: &str,
    subscriber: &mut Subscriber,
    method: Method,
    calls: usize,
    idle: Idle,
    dir: &Path,
) -> Result<Alone> {
    let every = format!("{}ms", ALONE_INTERVAL.as_millis());
    let extra = [
        "--calls",
        method.name(),
        "--no-zmq",
        "--interval",
        &every,
        "--slow-interval",
        &every,
        "--stats-interval",
        "3600",
    ]
    .map(String::from);
    subscriber.reset(method.name(), 0);
    let log = dir.join(format!("extractor-{}.log", method.name()));
    let extractor = Extractor::spawn(bin, node, nats_url, &extra, &log)?;
    subscriber.reset(method.name(), extractor.pid);
    let waited = subscriber
        .wait_marks(calls + 1, ALONE_INTERVAL * (calls as u32 + 1) + WAIT)
        .await;
    let peak_rss_mb = peak_rss_mb(extractor.pid);
    if let Err(e) = waited {
        let log = extractor.log();
        let _ = extractor.stop().await;
        bail!("{e:#}; the extractor's log:\n{log}");
    }
    extractor.stop().await?;
    let (_, marks, _) = subscriber.snapshot();
    let (first, last) = (marks[0], marks[calls]);
    let seconds = last.at.duration_since(first.at).as_secs_f64();
    let bitcoind = last.bitcoind_cpu - first.bitcoind_cpu - idle.bitcoind_per_s * seconds;
    let extractor = last.extractor_cpu - first.extractor_cpu - idle.extractor_per_s * seconds;
    Ok(Alone {
        extractor_us: extractor * 1e6 / calls as f64,
        bitcoind_us: bitcoind * 1e6 / calls as f64,
        peak_rss_mb,
    })
}

// ---------------------------------------------------------------------------------------------
// The table

/// Prints rows with aligned columns: the first left-aligned, the others right-aligned.
/// µs per call beyond idle: below 0 is the idle figure's noise, shown as ~0.
fn per_call(us: f64) -> String {
    if us < 0.0 {
        "~0".into()
    } else {
        thousands(us)
    }
}

fn print(run: &RunResult, alone: &BTreeMap<Method, Alone>, idle: Idle, peers: usize, seconds: f64) {
    let polls = run.polls as f64;
    println!();
    println!(
        "nodescope RPC extractor benchmark ({:.0} s): Bitcoin Core v30.0 regtest, {peers} raw P2P \
         peers (v1 and v2), {MEMPOOL_TXS} transactions in the mempool at the start and a payment a \
         second, {ADDRESSES} addresses in the address manager, ZMQ on",
        seconds
    );
    println!("{}", machine());
    println!(
        "run: extractor rpc --interval {}s --slow-interval {}s, all methods and ZMQ, {} polls \
         ({:.1} s; {} payments, {} blocks); answers are bitcoind's JSON (reply_bytes), events the \
         published protobuf; µs/call: --calls <method> --no-zmq every {} ms without load, less \
         each process's idle CPU",
        INTERVAL.as_secs(),
        SLOW_INTERVAL.as_secs(),
        run.polls,
        run.seconds,
        run.payments,
        run.blocks,
        ALONE_INTERVAL.as_millis()
    );
    println!();
    let mut rows = vec![[
        "method",
        "pace",
        "calls",
        "failed",
        "answer B",
        "event B",
        "event/answer",
        "p50 ms",
        "p99 ms",
        "max ms",
        "extractor µs/call",
        "bitcoind µs/call",
    ]
    .map(String::from)
    .to_vec()];
    let (mut reply_total, mut calls_total, mut failed_total) = (0u64, 0u64, 0u64);
    for method in Method::ALL {
        let Some(row) = run.rows.get(method.name()) else {
            rows.push(vec![method.name().into(), "no answer".into()]);
            continue;
        };
        reply_total += row.reply_bytes;
        calls_total += row.calls;
        failed_total += row.failed;
        let latencies = sorted(row.latencies_ms.clone());
        let calls = row.calls.max(1) as f64;
        let solo = alone.get(method);
        rows.push(vec![
            method.name().into(),
            match method.pace() {
                Pace::Fast => "fast",
                Pace::Slow => "slow",
            }
            .into(),
            thousands(row.calls as f64),
            thousands(row.failed as f64),
            thousands(row.reply_bytes as f64 / calls),
            thousands(row.event_bytes as f64 / calls),
            fixed(row.event_bytes as f64 / row.reply_bytes.max(1) as f64, 2),
            fixed(percentile(&latencies, 50.0), 2),
            fixed(percentile(&latencies, 99.0), 2),
            fixed(latencies.last().copied().unwrap_or(f64::NAN), 2),
            solo.map_or("—".into(), |a| per_call(a.extractor_us)),
            solo.map_or("—".into(), |a| per_call(a.bitcoind_us)),
        ]);
    }
    let mut zmq_events = 0u64;
    for (name, row) in run.rows.iter().filter(|(_, r)| r.kind != Some(Kind::Rpc)) {
        if row.kind == Some(Kind::Zmq) {
            zmq_events += row.events;
        }
        rows.push(vec![
            match row.kind {
                Some(Kind::Zmq) => format!("zmq {name}"),
                _ => name.clone(),
            },
            "".into(),
            thousands(row.events as f64),
            "".into(),
            "".into(),
            thousands(row.event_bytes as f64 / row.events.max(1) as f64),
        ]);
    }
    print_table("  ", &rows);

    let events: u64 = run.rows.values().map(|r| r.events).sum();
    let event_bytes: u64 = run.rows.values().map(|r| r.event_bytes).sum();
    let rpc_event_bytes: u64 = run
        .rows
        .values()
        .filter(|r| r.kind == Some(Kind::Rpc))
        .map(|r| r.event_bytes)
        .sum();
    let cpu = sorted(run.cpu_per_poll_ms.clone());
    let cpu_total: f64 = cpu.iter().sum();
    println!();
    println!(
        "Per poll ({} polls of {} s):",
        run.polls,
        INTERVAL.as_secs()
    );
    let mut totals = vec![["", "per poll", "whole run"].map(String::from).to_vec()];
    totals.push(vec![
        "RPC calls (failed)".into(),
        format!("{:.1}", calls_total as f64 / polls),
        format!("{} ({failed_total})", thousands(calls_total as f64)),
    ]);
    totals.push(vec![
        "events published (ZMQ, stats included)".into(),
        format!("{:.1}", events as f64 / polls),
        format!(
            "{} (ZMQ {})",
            thousands(events as f64),
            thousands(zmq_events as f64)
        ),
    ]);
    totals.push(vec![
        "RPC answer bytes read".into(),
        thousands(reply_total as f64 / polls),
        thousands(reply_total as f64),
    ]);
    totals.push(vec![
        "event bytes published (RPC events)".into(),
        format!(
            "{} ({})",
            thousands(event_bytes as f64 / polls),
            thousands(rpc_event_bytes as f64 / polls)
        ),
        format!(
            "{} ({})",
            thousands(event_bytes as f64),
            thousands(rpc_event_bytes as f64)
        ),
    ]);
    totals.push(vec![
        "extractor CPU ms: mean / p50 / max".into(),
        format!(
            "{} / {} / {}",
            fixed(cpu_total / polls, 2),
            fixed(percentile(&cpu, 50.0), 2),
            fixed(cpu.last().copied().unwrap_or(f64::NAN), 2)
        ),
        format!(
            "{} ({} % of one core)",
            fixed(cpu_total, 1),
            fixed(cpu_total / 10.0 / run.seconds, 2)
        ),
    ]);
    totals.push(vec![
        "bitcoind CPU ms (RPC, peers, payments, blocks)".into(),
        fixed(run.bitcoind_cpu_s * 1e3 / polls, 2),
        fixed(run.bitcoind_cpu_s * 1e3, 1),
    ]);
    print_table("  ", &totals);
    let alone_rss = alone
        .values()
        .map(|a| a.peak_rss_mb)
        .fold(f64::NAN, f64::max);
    println!(
        "  idle CPU (taken off the µs/call columns): extractor {} ms/s between polls, bitcoind \
         {} ms/s with its {peers} peers",
        fixed(idle.extractor_per_s * 1e3, 2),
        fixed(idle.bitcoind_per_s * 1e3, 2)
    );
    println!(
        "  extractor peak RSS (VmHWM): {} MB in the run, {} MB at most with one method alone",
        fixed(run.peak_rss_mb, 1),
        fixed(alone_rss, 1)
    );
    if let Some(s) = &run.stats {
        let missed: u64 = s.zmq_missed.values().sum();
        let failures: u64 = s.rpc_failures.values().sum();
        println!(
            "  extractor's final stats (whole run): {} events, {} published, {} RPC failures, \
             {missed} ZMQ messages missed, dropped: queue full {}, too large {}",
            thousands(s.events_read as f64),
            thousands(s.published as f64),
            failures,
            s.dropped_queue_full,
            s.dropped_too_large
        );
    } else {
        println!("  no final stats from the extractor");
    }
}

// ---------------------------------------------------------------------------------------------

fn extractor_binary(args: &Args) -> Result<PathBuf> {
    let dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        // <target>/release/examples/rpc_bench → <target>/release
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("locating the target directory")?
            .to_path_buf(),
    };
    let path = dir.join("extractor");
    if !path.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p extractor --bins`",
            path.display()
        );
    }
    Ok(path)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = extractor_binary(&args)?;
    let polls = args
        .polls
        .unwrap_or(if args.quick { 10 } else { 60 })
        .max(1);
    let alone_calls = if args.quick { 5 } else { 20 };
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    eprintln!(
        "bench: a regtest node with {} raw peers, {MEMPOOL_TXS} mempool transactions and \
         {ADDRESSES} addresses…",
        args.peers
    );
    let (node, peers) = prepare_node(args.peers)?;
    let nats = NatsServer::start();
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut subscriber = Subscriber::start(&nats.url(), node.pid() as i32).await?;
            eprintln!("bench: the run, {polls} polls…");
            let result = run(&bin, &node, &nats.url(), &mut subscriber, polls, dir.path()).await?;
            eprintln!("bench: both idle…");
            let idle = idle(&bin, &node, &nats.url(), &mut subscriber, 4, dir.path()).await?;
            let mut solo = BTreeMap::new();
            for &method in Method::ALL {
                eprintln!("bench: {} alone, {alone_calls} calls…", method.name());
                let measured = alone(
                    &bin,
                    &node,
                    &nats.url(),
                    &mut subscriber,
                    method,
                    alone_calls,
                    idle,
                    dir.path(),
                )
                .await?;
                solo.insert(method, measured);
            }
            subscriber.task.abort();
            Ok::<_, anyhow::Error>((result, solo, idle))
        });
    let (result, solo, idle) = outcome?;
    let mut peers = peers;
    let still_connected = peers
        .iter_mut()
        .map(|p| !p.is_closed())
        .filter(|&up| up)
        .count();
    print(
        &result,
        &solo,
        idle,
        args.peers,
        started.elapsed().as_secs_f64(),
    );
    println!(
        "  raw peers still connected at the end: {still_connected} of {}",
        args.peers
    );
    Ok(())
}
