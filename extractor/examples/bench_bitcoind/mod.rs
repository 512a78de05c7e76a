//! The real-bitcoind section of the extractor benchmark (`--sections bitcoind`): a Bitcoin Core
//! v30.0 regtest node flooded by raw v1 P2P peers, measured without and with the release
//! extractor attached (all tracepoints).
//!
//! For each load (`ping`, 8-byte payload; `inv` of 28 MSG_TX entries, 1009 bytes) the peers
//! write pre-built frames as fast as the node reads them, and three runs of a fixed window
//! follow each other: no extractor, the extractor attached, no extractor again (the two
//! baselines bracket the attached run, as other work on the machine drifts). In each window:
//!
//! * messages bitcoind took in: `getpeerinfo` `bytesrecv_per_msg` deltas ÷ (payload + 24),
//!   the same way in every run. The window opens after a warm-up, once the node's per-peer
//!   receive buffers are full, so what it takes in is what it processes;
//! * bitcoind's CPU (utime + stime of the whole process, from /proc; the uprobe traps and the
//!   eBPF programs run in its threads and count there) ÷ messages;
//! * the extractor's own CPU ÷ the events that reached our subscriber meanwhile;
//! * events lost: the extractor's final `extractor_stats` (kernel ring drops, payloads cut,
//!   queue drops) and sequence gaps seen by the subscriber over the extractor's whole run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bitcoin::hashes::Hash as _;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::Magic;
use futures::StreamExt as _;
use nodescope_proto::event::Payload;
use nodescope_proto::ExtractorStats;
use nodescope_regtest::p2p::{payload, v1};
use nodescope_regtest::{Node, NodeConfig, RawPeer, Transport};
use prost::Message as _;

use super::{
    fixed, print_table, process_cpu_seconds, spawn_extractor, stat_cpu_seconds, thousands,
    Envelope, Memory,
};

/// The node id the extractor publishes under here (the simulator sections use another).
const NODE: &str = "bitcoind";
/// Raw peers flooding the node, one thread each.
const PEERS: usize = 4;
/// Entries per `inv`: 1 + 28 × 36 = 1009 payload bytes.
const INV_ENTRIES: usize = 28;

/// One kind of flood.
#[derive(Debug, Clone, Copy)]
struct Load {
    command: &'static str,
    payload_len: u64,
    label: &'static str,
}

const LOADS: [Load; 2] = [
    Load {
        command: "ping",
        payload_len: 8,
        label: "ping (8-byte payload)",
    },
    Load {
        command: "inv",
        payload_len: 1 + INV_ENTRIES as u64 * 36,
        label: "inv (28 MSG_TX entries of random txids, 1009-byte payload)",
    },
];

// ---------------------------------------------------------------------------------------------
// The flood

const IDLE: u8 = 0;
const FLOOD: u8 = 1;
const QUIT: u8 = 2;

/// [`PEERS`] threads, each with a raw v1 peer, writing batches of frames while the mode is
/// [`FLOOD`] and reading (and dropping) whatever the node sends all the time.
struct Flood {
    mode: Arc<AtomicU8>,
    /// Times the node closed a connection (the thread then connects a new peer).
    disconnects: Arc<AtomicU64>,
    /// Why, the first time.
    first_close: Arc<Mutex<Option<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Flood {
    fn start(node: &Node, load: Load) -> Result<Flood> {
        let mode = Arc::new(AtomicU8::new(IDLE));
        let disconnects = Arc::new(AtomicU64::new(0));
        let first_close = Arc::new(Mutex::new(None));
        let mut threads = Vec::new();
        for index in 0..PEERS {
            // Connected here, so that a node refusing peers is an error at once.
            let peer = node
                .raw_peer(Transport::V1)
                .context("connecting a raw v1 peer")?;
            let batches = batches(load, index as u64);
            let addr = node.p2p_addr();
            let (mode, disconnects, first_close) =
                (mode.clone(), disconnects.clone(), first_close.clone());
            let thread = std::thread::Builder::new()
                .name(format!("flood-{index}"))
                .spawn(move || {
                    let mut peer = Some(peer);
                    let mut next = 0;
                    loop {
                        let now = mode.load(Ordering::Relaxed);
                        if now == QUIT {
                            return;
                        }
                        let Some(p) = peer.as_mut() else {
                            // Reconnect, retrying while the node is busy.
                            match RawPeer::connect(addr, Magic::REGTEST, Transport::V1) {
                                Ok(p) => peer = Some(p),
                                Err(_) => std::thread::sleep(Duration::from_millis(50)),
                            }
                            continue;
                        };
                        let sent = if now == FLOOD {
                            next = (next + 1) % batches.len();
                            p.send_raw(&batches[next]).map_err(|e| e.to_string())
                        } else {
                            std::thread::sleep(Duration::from_millis(5));
                            Ok(())
                        };
                        // Drop what the node sent (pongs, getdata, its own pings...).
                        while p.recv(Duration::ZERO).is_ok() {}
                        let closed = match sent {
                            Err(e) => Some(e),
                            Ok(()) if p.is_closed() => Some(
                                p.recv(Duration::ZERO)
                                    .err()
                                    .map_or_else(|| "closed".into(), |e| e.to_string()),
                            ),
                            Ok(()) => None,
                        };
                        if let Some(reason) = closed {
                            disconnects.fetch_add(1, Ordering::Relaxed);
                            first_close
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(reason);
                            peer = None;
                        }
                    }
                })
                .context("spawning a flood thread")?;
            threads.push(thread);
        }
        Ok(Flood {
            mode,
            disconnects,
            first_close,
            threads,
        })
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::Relaxed);
    }

    fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    fn stop(self) -> Option<String> {
        self.set(QUIT);
        for thread in self.threads {
            let _ = thread.join();
        }
        self.first_close
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Pre-built frames, in batches of about 32 KiB written with one `write` each, so that the
/// peers cost little CPU: pings with distinct nonces, or invs of distinct random txids (992
/// invs, 27,776 txids per peer, sent over and over; Core tracks at most 5,000 announcements
/// per peer anyway and ignores the rest).
fn batches(load: Load, seed: u64) -> Vec<Vec<u8>> {
    let frame_len = 24 + load.payload_len as usize;
    let per_batch = (32 * 1024 / frame_len).max(1);
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ payload::random_nonce() | 1;
    let mut next = move || {
        // xorshift64*
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let count = if load.command == "ping" { 1 } else { 32 };
    (0..count)
        .map(|_| {
            let mut batch = Vec::with_capacity(per_batch * frame_len);
            for _ in 0..per_batch {
                let payload = if load.command == "ping" {
                    payload::ping(next())
                } else {
                    let entries: Vec<Inventory> = (0..INV_ENTRIES)
                        .map(|_| {
                            let mut txid = [0u8; 32];
                            for chunk in txid.chunks_mut(8) {
                                chunk.copy_from_slice(&next().to_le_bytes());
                            }
                            Inventory::Transaction(bitcoin::Txid::from_byte_array(txid))
                        })
                        .collect();
                    payload::inv(&entries)
                };
                debug_assert_eq!(payload.len() as u64, load.payload_len);
                batch.extend_from_slice(&v1::frame(Magic::REGTEST, load.command, &payload));
            }
            batch
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The subscriber: every event of [`NODE`], unique sequence numbers per category.

#[derive(Debug, Default)]
struct Seen {
    bits: Vec<u64>,
    unique: u64,
    max: Option<u64>,
}

impl Seen {
    /// Numbers missing below the highest seen (sequences count up from 0 per extractor run).
    fn gaps(&self) -> u64 {
        self.max.map_or(0, |max| max + 1 - self.unique)
    }
}

#[derive(Debug, Default)]
struct Counts {
    run_id: Option<u64>,
    categories: BTreeMap<String, Seen>,
    /// Unique events of this extractor run.
    events: u64,
    duplicates: u64,
    last_event: Option<Instant>,
    /// The latest extractor stats: when received, the extractor's pid, the stats.
    stats: Option<(Instant, u32, ExtractorStats)>,
}

#[derive(Clone)]
struct Counter(Arc<Mutex<Counts>>);

impl Counter {
    async fn start(url: &str) -> Result<Counter> {
        let client = async_nats::ConnectOptions::new()
            .subscription_capacity(1 << 22)
            .connect(url)
            .await
            .context("connecting the subscriber")?;
        let prefix = format!("nodescope.{NODE}.");
        let mut events = client.subscribe(format!("{prefix}>")).await?;
        client.flush().await?;
        let counter = Counter(Arc::default());
        let counts = counter.0.clone();
        tokio::spawn(async move {
            let _client = client;
            while let Some(message) = events.next().await {
                let category = message
                    .subject
                    .as_str()
                    .strip_prefix(&prefix)
                    .unwrap_or("?");
                let stats = (category == "extractor")
                    .then(|| nodescope_proto::Event::decode(message.payload.clone()).ok())
                    .flatten();
                let Ok(event) = Envelope::decode(message.payload) else {
                    continue;
                };
                let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(stats) = stats {
                    if let Some(Payload::ExtractorStats(s)) = stats.payload {
                        c.stats = Some((Instant::now(), stats.pid, s));
                    }
                }
                if c.run_id != Some(event.run_id) {
                    c.run_id = Some(event.run_id);
                    c.categories.clear();
                }
                if !c.categories.contains_key(category) {
                    c.categories.insert(category.to_string(), Seen::default());
                }
                let seen = c.categories.get_mut(category).expect("just inserted");
                let (word, bit) = ((event.sequence / 64) as usize, event.sequence % 64);
                if seen.bits.len() <= word {
                    seen.bits.resize((word + 1).max(seen.bits.len() * 2), 0);
                }
                if seen.bits[word] & (1 << bit) != 0 {
                    c.duplicates += 1;
                    continue;
                }
                seen.bits[word] |= 1 << bit;
                seen.unique += 1;
                seen.max = seen.max.max(Some(event.sequence));
                c.events += 1;
                c.last_event = Some(Instant::now());
            }
        });
        Ok(counter)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Counts) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn reset(&self) {
        self.with(|c| *c = Counts::default());
    }

    /// The first stats of extractor `pid` received after `after`, waiting up to `timeout`.
    async fn stats_after(
        &self,
        pid: u32,
        after: Instant,
        timeout: Duration,
    ) -> Option<ExtractorStats> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.with(|c| match &c.stats {
                Some((at, from, s)) if *from == pid && *at > after => Some(s.clone()),
                _ => None,
            });
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until no event arrived for `quiet` (at most `limit`).
    async fn settle(&self, quiet: Duration, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            let last = self.with(|c| c.last_event).unwrap_or(start).max(start);
            if last.elapsed() >= quiet {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The extractor as a child process

struct Extractor {
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
    /// From its first stats.
    attached_locations: u32,
}

impl Extractor {
    async fn start(
        bin: &Path,
        bitcoind: &Path,
        nats_url: &str,
        log: &Path,
        counter: &Counter,
    ) -> Result<Extractor> {
        let started = Instant::now();
        let child = spawn_extractor(bin, bitcoind, nats_url, NODE, "all", log, &[])?;
        let pid = child.id().context("extractor pid")?;
        let mut extractor = Extractor {
            child,
            pid,
            log: log.to_path_buf(),
            attached_locations: 0,
        };
        // The first stats event says it is attached and connected.
        match counter
            .stats_after(pid, started, Duration::from_secs(20))
            .await
        {
            Some(stats) => extractor.attached_locations = stats.attached_locations,
            None => {
                let status = extractor.child.try_wait()?;
                bail!(
                    "the extractor published no stats within 20 s (exit: {status:?}); its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
        Ok(extractor)
    }

    fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(self.pid as i32)
    }

    /// SIGTERM, then its final stats (published once NATS confirmed everything it read).
    async fn stop(mut self, counter: &Counter) -> Result<ExtractorStats> {
        let stopping = Instant::now();
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        match counter
            .stats_after(self.pid, stopping, Duration::from_secs(3))
            .await
        {
            Some(stats) => Ok(stats),
            None => bail!(
                "no final stats from the extractor; its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Runs

/// What bitcoind's raw peers have sent it of `command`, in bytes, per peer id.
fn received_bytes(node: &Node, command: &str) -> Result<HashMap<u64, u64>> {
    Ok(node
        .peers()?
        .iter()
        .filter(|p| p["subver"] == payload::USER_AGENT)
        .filter_map(|p| {
            Some((
                p["id"].as_u64()?,
                p["bytesrecv_per_msg"][command].as_u64().unwrap_or(0),
            ))
        })
        .collect())
}

/// CPU seconds of each thread of `pid` so far, by name (bitcoind names its threads `b-msghand`,
/// `b-net`, ...).
fn thread_cpu_seconds(pid: i32) -> BTreeMap<String, f64> {
    let mut threads = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let (user, system) = stat_cpu_seconds(&dir.join("stat").to_string_lossy());
        let seconds = user + system;
        if seconds.is_finite() {
            *threads.entry(name.trim().to_string()).or_default() += seconds;
        }
    }
    threads
}

/// One window of one run.
#[derive(Debug, Clone, Default)]
struct Run {
    extractor: bool,
    seconds: f64,
    /// Messages of the load bitcoind took in during the window.
    messages: u64,
    bitcoind_cpu_s: f64,
    /// Of it, in the kernel (system time: syscalls, loopback TCP, uprobe traps, eBPF).
    bitcoind_system_s: f64,
    /// bitcoind's CPU seconds in the window by thread, most first.
    threads: Vec<(String, f64)>,
    disconnects: u64,
    /// With the extractor: its CPU and the events that reached the subscriber in the window.
    extractor_cpu_s: f64,
    events: u64,
    /// Over the extractor's whole run, from its final stats and the subscriber.
    stats: Option<ExtractorStats>,
    gaps: u64,
    duplicates: u64,
    peak_rss_mb: f64,
    attached_locations: u32,
}

impl Run {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }

    fn bitcoind_us_per_message(&self) -> f64 {
        self.bitcoind_cpu_s * 1e6 / self.messages.max(1) as f64
    }

    fn extractor_us_per_event(&self) -> f64 {
        self.extractor_cpu_s * 1e6 / self.events.max(1) as f64
    }

    fn kernel_drops(&self) -> Option<u64> {
        self.stats.as_ref().map(|s| s.kernel_drops.values().sum())
    }

    fn cut(&self) -> Option<u64> {
        self.stats
            .as_ref()
            .map(|s| s.kernel_payload_drops.values().sum())
    }

    fn queue_drops(&self) -> Option<u64> {
        self.stats
            .as_ref()
            .map(|s| s.dropped_queue_full + s.dropped_too_large)
    }
}

struct Setup<'a> {
    node: &'a Node,
    bitcoind: &'a Path,
    extractor: &'a Path,
    nats_url: &'a str,
    dir: &'a Path,
    counter: &'a Counter,
    warm_up: Duration,
    window: Duration,
}

/// Waits (at most `limit`) until bitcoind uses less than a tenth of a core: the backlog of the
/// previous run is processed.
async fn wait_idle(pid: i32, limit: Duration) {
    let start = Instant::now();
    let mut last = process_cpu_seconds(pid);
    while start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = process_cpu_seconds(pid);
        if now - last < 0.02 {
            return;
        }
        last = now;
    }
}

async fn run(setup: &Setup<'_>, load: Load, flood: &Flood, with_extractor: bool) -> Result<Run> {
    let pid = setup.node.pid() as i32;
    // Mostly past the previous run's backlog (which only adds to the warm-up if not).
    wait_idle(pid, Duration::from_secs(3)).await;
    setup.counter.reset();
    let extractor = if with_extractor {
        let log = setup
            .dir
            .join(format!("extractor-bitcoind-{}.log", load.command));
        Some(
            Extractor::start(
                setup.extractor,
                setup.bitcoind,
                setup.nats_url,
                &log,
                setup.counter,
            )
            .await?,
        )
    } else {
        None
    };
    flood.set(FLOOD);
    tokio::time::sleep(setup.warm_up).await;

    let snapshot = |extractor: &Option<Extractor>| {
        let events = setup.counter.with(|c| c.events);
        let extractor_cpu = extractor.as_ref().map_or(0.0, Extractor::cpu_seconds);
        let bitcoind_cpu = stat_cpu_seconds(&format!("/proc/{pid}/stat"));
        let threads = thread_cpu_seconds(pid);
        let at = Instant::now();
        let bytes = received_bytes(setup.node, load.command);
        (
            (at, events),
            (extractor_cpu, bitcoind_cpu, threads),
            flood.disconnects(),
            bytes,
        )
    };
    let ((t0, e0), (x0, b0, threads0), d0, bytes0) = snapshot(&extractor);
    let bytes0 = bytes0?;
    tokio::time::sleep(setup.window).await;
    let ((t1, e1), (x1, b1, threads1), d1, bytes1) = snapshot(&extractor);
    let bytes1 = bytes1?;
    flood.set(IDLE);
    let mut threads: Vec<(String, f64)> = threads1
        .into_iter()
        .map(|(name, s)| {
            let before = threads0.get(&name).copied().unwrap_or(0.0);
            (name, s - before)
        })
        .filter(|(_, s)| *s > 0.0)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));

    let received: u64 = bytes1
        .iter()
        .map(|(id, b)| b.saturating_sub(bytes0.get(id).copied().unwrap_or(0)))
        .sum();
    let mut run = Run {
        extractor: with_extractor,
        seconds: (t1 - t0).as_secs_f64(),
        messages: received / (load.payload_len + 24),
        bitcoind_cpu_s: (b1.0 + b1.1) - (b0.0 + b0.1),
        bitcoind_system_s: b1.1 - b0.1,
        threads,
        disconnects: d1 - d0,
        extractor_cpu_s: x1 - x0,
        events: e1 - e0,
        peak_rss_mb: f64::NAN,
        ..Run::default()
    };
    if let Some(extractor) = extractor {
        run.peak_rss_mb = Memory::read(extractor.pid as i32).map_or(f64::NAN, |m| m.peak_rss);
        run.attached_locations = extractor.attached_locations;
        // Stopped while the node still works off what its receive buffers hold (up to 5 MB
        // per peer): the probes are detached first, so that loses nothing.
        let stats = extractor.stop(setup.counter).await?;
        setup
            .counter
            .settle(Duration::from_millis(300), Duration::from_secs(3))
            .await;
        setup.counter.with(|c| {
            run.gaps = c.categories.values().map(Seen::gaps).sum();
            run.duplicates = c.duplicates;
        });
        run.stats = Some(stats);
    }
    eprintln!(
        "bench: bitcoind {} extractor={} {:.0} msgs/s bitcoind {:.2} µs/msg; events {} ({:.2} µs/event) drops(k/cut/q)={:?}/{:?}/{:?} gaps={} disconnects={}",
        load.command,
        with_extractor,
        run.rate(),
        run.bitcoind_us_per_message(),
        run.events,
        run.extractor_us_per_event(),
        run.kernel_drops(),
        run.cut(),
        run.queue_drops(),
        run.gaps,
        run.disconnects
    );
    if let Some(s) = run
        .stats
        .as_ref()
        .filter(|s| !s.kernel_drops.is_empty() || !s.kernel_payload_drops.is_empty())
    {
        eprintln!(
            "bench:   of {} events read: kernel drops {:?}, payloads cut {:?}",
            s.events_read, s.kernel_drops, s.kernel_payload_drops
        );
    }
    Ok(run)
}

pub struct LoadResult {
    load: Load,
    runs: Vec<Run>,
    first_close: Option<String>,
}

pub struct Section {
    version: String,
    window: Duration,
    warm_up: Duration,
    attached_locations: u32,
    loads: Vec<LoadResult>,
}

/// Runs the section: a node on a private copy of bitcoind (uprobes attach per file, so the
/// extractor sees only this node), then each load's three runs.
pub async fn measure(dir: &Path, extractor: &Path, nats_url: &str, quick: bool) -> Result<Section> {
    let bitcoind = dir.join("bitcoind-core");
    let original = nodescope_regtest::bin_dir()?.join("bitcoind");
    std::fs::copy(&original, &bitcoind)
        .with_context(|| format!("copying {}", original.display()))?;
    // -debug=none: the harness's -debug=net would log every message (and every inv entry).
    let node = Node::start(NodeConfig::new().bitcoind(&bitcoind).arg("-debug=none"))?;
    // Out of initial block download, as a synced node: tx announcements are then tracked.
    node.generate(1)?;
    let version = node.rpc("getnetworkinfo", nodescope_regtest::serde_json::json!([]))?
        ["subversion"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let counter = Counter::start(nats_url).await?;
    let setup = Setup {
        node: &node,
        bitcoind: &bitcoind,
        extractor,
        nats_url,
        dir,
        counter: &counter,
        warm_up: Duration::from_millis(if quick { 500 } else { 1000 }),
        window: Duration::from_secs(if quick { 2 } else { 5 }),
    };
    let mut loads = Vec::new();
    let mut attached_locations = 0;
    for load in LOADS {
        let flood = Flood::start(&node, load)?;
        let mut runs = Vec::new();
        for with_extractor in [false, true, false] {
            let r = run(&setup, load, &flood, with_extractor).await;
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    flood.stop();
                    return Err(e);
                }
            };
            if r.extractor {
                attached_locations = r.attached_locations;
            }
            runs.push(r);
        }
        let first_close = flood.stop();
        loads.push(LoadResult {
            load,
            runs,
            first_close,
        });
    }
    Ok(Section {
        version,
        window: setup.window,
        warm_up: setup.warm_up,
        attached_locations,
        loads,
    })
}

// ---------------------------------------------------------------------------------------------
// The table

/// `b-msghand 55 %, b-net 40 %, others 5 %`: the threads taking at least 3 % of the window's CPU.
fn by_thread(run: &Run) -> String {
    let total: f64 = run.threads.iter().map(|(_, s)| s).sum();
    let mut parts = Vec::new();
    let mut others = 0.0;
    for (name, seconds) in &run.threads {
        let share = seconds / total * 100.0;
        if share >= 3.0 {
            parts.push(format!("{name} {share:.0} %"));
        } else {
            others += share;
        }
    }
    if others >= 0.5 {
        parts.push(format!("others {others:.0} %"));
    }
    parts.join(", ")
}

fn percent(share: f64) -> String {
    if share.is_finite() {
        format!("{:.0} %", share * 100.0)
    } else {
        "—".into()
    }
}

fn count(n: Option<u64>) -> String {
    n.map_or("—".into(), |n| thousands(n as f64))
}

pub fn print(section: &Section) {
    println!();
    println!(
        "Real bitcoind — Bitcoin Core v{} regtest, {PEERS} raw v1 peers writing as fast as it \
         reads; {:.0} s windows after a {:.1} s warm-up; extractor with all tracepoints \
         ({} locations):",
        section
            .version
            .trim_matches('/')
            .trim_start_matches("Satoshi:"),
        section.window.as_secs_f64(),
        section.warm_up.as_secs_f64(),
        section.attached_locations
    );
    println!(
        "  how to read it: msgs/s = messages bitcoind took in (getpeerinfo); µs/msg = all of \
         bitcoind's CPU (uprobe traps and eBPF included) per message, ×base = that ÷ the mean \
         of the two runs without; extractor µs/event = its own CPU per event received; drops \
         from its final stats, gaps at the subscriber. Everything shares the same CPUs."
    );
    for result in &section.loads {
        println!();
        println!("  {}:", result.load.label);
        let mut rows = vec![[
            "run",
            "msgs/s",
            "bitcoind µs/msg",
            "×base",
            "events/s",
            "events/msg",
            "extractor µs/event",
            "kernel drops",
            "cut",
            "queue drops",
            "seq gaps",
            "disconnects",
        ]
        .map(String::from)
        .to_vec()];
        let base: Vec<&Run> = result.runs.iter().filter(|r| !r.extractor).collect();
        let base_us = base
            .iter()
            .map(|r| r.bitcoind_us_per_message())
            .sum::<f64>()
            / base.len().max(1) as f64;
        let base_rate = base.iter().map(|r| r.rate()).sum::<f64>() / base.len().max(1) as f64;
        let mut seen_base = 0;
        for r in &result.runs {
            let name = if r.extractor {
                "extractor attached".to_string()
            } else {
                seen_base += 1;
                if seen_base == 1 {
                    "no extractor".into()
                } else {
                    "no extractor (again)".into()
                }
            };
            let with = |s: String| if r.extractor { s } else { "—".into() };
            rows.push(vec![
                name,
                thousands(r.rate()),
                fixed(r.bitcoind_us_per_message(), 2),
                fixed(r.bitcoind_us_per_message() / base_us, 2),
                with(thousands(r.events as f64 / r.seconds)),
                with(fixed(r.events as f64 / r.messages.max(1) as f64, 2)),
                with(fixed(r.extractor_us_per_event(), 2)),
                count(r.kernel_drops()),
                count(r.cut()),
                count(r.queue_drops()),
                with(thousands(r.gaps as f64)),
                thousands(r.disconnects as f64),
            ]);
        }
        print_table("    ", &rows);
        for r in result.runs.iter().filter(|r| r.extractor) {
            let lost = r.kernel_drops().unwrap_or(0)
                + r.cut().unwrap_or(0)
                + r.queue_drops().unwrap_or(0)
                + r.gaps;
            println!(
                "    attached: bitcoind {:+.0} % CPU per message ({} → {} µs), {:+.0} % \
                 messages/s; extractor {} µs CPU per event, peak RSS {:.1} MB; lost {} of the {} \
                 events it read in its whole run{}",
                (r.bitcoind_us_per_message() / base_us - 1.0) * 100.0,
                fixed(base_us, 2),
                fixed(r.bitcoind_us_per_message(), 2),
                (r.rate() / base_rate - 1.0) * 100.0,
                fixed(r.extractor_us_per_event(), 2),
                r.peak_rss_mb,
                thousands(lost as f64),
                thousands(r.stats.as_ref().map_or(0, |s| s.events_read) as f64),
                if r.duplicates > 0 {
                    format!(" ({} duplicates)", thousands(r.duplicates as f64))
                } else {
                    String::new()
                }
            );
        }
        let first_base = result.runs.iter().find(|r| !r.extractor);
        let attached = result.runs.iter().find(|r| r.extractor);
        for (what, r) in [("no extractor", first_base), ("attached", attached)] {
            if let Some(r) = r {
                println!(
                    "    bitcoind's CPU, {what}: {} in the kernel; by thread {}",
                    percent(r.bitcoind_system_s / r.bitcoind_cpu_s),
                    by_thread(r)
                );
            }
        }
        if let Some(reason) = &result.first_close {
            println!("    the node closed raw peers (first: {reason}); they reconnected");
        }
    }
}
