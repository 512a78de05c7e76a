//! The extractor benchmark (`cargo xtask bench extractor [--quick]`): a measurement, not a test.
//! It never fails because a machine is slow; it prints what it measured beside the targets.
//!
//! Everything runs on this machine, sharing its cores: a private `nats-server`, the release
//! `extractor` binary as a child process (so its CPU time and memory are its own, read from
//! `/proc`), release `bitcoind-sim load` runs firing `net:inbound_message`, and a subscriber (this
//! program) counting every event's sequence number and its latency from the probe to here.
//!
//! * Rate steps for `ping` (8-byte payload) and `inv` (1009 bytes): the simulator fires at a
//!   fixed rate, then flat out; a step is lossless when every event fired reached the
//!   subscriber and the extractor counted no drop.
//! * A burst of 4 MB blocks, flat out.
//! * The cost charged to the traced thread: the simulator flat out with no tracer, with a
//!   count-only uprobe (the bare trap) and with the extractor attached.
//! * A real Bitcoin Core regtest node flooded by raw P2P peers, without and with the extractor
//!   (all tracepoints): bitcoind's CPU per message, the extractor's per event, losses
//!   (`bench_bitcoind/mod.rs`).

mod bench_bitcoind;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use extractor::tracer::{Tracer, TracerConfig};
use extractor_common::Tracepoint;
use futures::StreamExt as _;
use nodescope_bus::test_server::NatsServer;
use nodescope_proto::event::Payload;
use nodescope_proto::ExtractorStats;
use prost::Message as _;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, watch};

#[derive(Parser, Debug)]
#[command(about = "nodescope extractor benchmark: prints a table")]
struct Args {
    /// Short steps: a smoke run of a minute or so (figures are rougher).
    #[arg(long)]
    quick: bool,
    /// Directory holding the release `extractor`, `bitcoind-sim` and `bitcoind-sim-legacy`
    /// (default: the one this example was built into).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Sections to run (comma-separated): cost, ping, inv, block, bitcoind.
    #[arg(
        long,
        default_value = "cost,ping,inv,block,bitcoind",
        value_delimiter = ','
    )]
    sections: Vec<String>,
}

const NODE: &str = "bench";
const TARGET_PING_RATE: f64 = 600_000.0;
const TARGET_INV_RATE: f64 = 300_000.0;
const TARGET_PING_CPU_US: f64 = 1.0;
const TARGET_INV_CPU_US: f64 = 3.0;
const TARGET_RSS_MB: f64 = 64.0;
const TARGET_P99_MS: f64 = 1.0;
const TARGET_KERNEL_MIB: f64 = 64.0;

// ---------------------------------------------------------------------------------------------
// The subscriber

/// The envelope fields the subscriber needs; prost skips the rest (the payload) unread.
#[derive(Clone, PartialEq, prost::Message)]
struct Envelope {
    #[prost(uint64, tag = "4")]
    sequence: u64,
    #[prost(uint64, tag = "5")]
    run_id: u64,
    #[prost(uint64, tag = "6")]
    timestamp_ns: u64,
    #[prost(string, repeated, tag = "7")]
    truncated_fields: Vec<String>,
}

/// What reached the subscriber since the previous [`Subscriber::take`].
#[derive(Debug, Default)]
struct Received {
    delivered: u64,
    duplicates: u64,
    truncated: u64,
    latencies_us: Vec<u32>,
    first: Option<Instant>,
    last: Option<Instant>,
}

struct Subscriber {
    /// Unique net.message events received since the start (sequence numbers per extractor run).
    unique: Arc<AtomicU64>,
    take: mpsc::Sender<oneshot::Sender<Received>>,
    /// The latest extractor stats: when received, the extractor's pid, the stats.
    stats: watch::Receiver<Option<(Instant, u32, ExtractorStats)>>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

impl Subscriber {
    async fn start(url: &str) -> Result<Subscriber> {
        let client = async_nats::ConnectOptions::new()
            .subscription_capacity(1 << 22)
            .connect(url)
            .await
            .context("connecting the subscriber")?;
        let mut events = client
            .subscribe(format!("nodescope.{NODE}.net.message"))
            .await?;
        let mut stats_sub = client
            .subscribe(format!("nodescope.{NODE}.extractor"))
            .await?;
        client.flush().await?;
        let unique = Arc::new(AtomicU64::new(0));
        let (take, mut takes) = mpsc::channel::<oneshot::Sender<Received>>(4);
        let (stats_tx, stats) = watch::channel(None);
        let counter = unique.clone();
        tokio::spawn(async move {
            let _client = client;
            let mut run_id = None;
            let mut seen: Vec<u64> = Vec::new();
            let mut received = Received::default();
            loop {
                tokio::select! {
                    Some(message) = events.next() => {
                        let now = Instant::now();
                        let wall = now_ns();
                        let Ok(event) = Envelope::decode(message.payload) else { continue };
                        if run_id != Some(event.run_id) {
                            run_id = Some(event.run_id);
                            seen.clear();
                        }
                        let (word, bit) = ((event.sequence / 64) as usize, event.sequence % 64);
                        if seen.len() <= word {
                            seen.resize((word + 1).max(seen.len() * 2), 0);
                        }
                        if seen[word] & (1 << bit) != 0 {
                            received.duplicates += 1;
                            continue;
                        }
                        seen[word] |= 1 << bit;
                        received.delivered += 1;
                        received.truncated += !event.truncated_fields.is_empty() as u64;
                        let latency_us = wall.saturating_sub(event.timestamp_ns) / 1000;
                        received.latencies_us.push(latency_us.min(u32::MAX as u64) as u32);
                        received.first.get_or_insert(now);
                        received.last = Some(now);
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(message) = stats_sub.next() => {
                        if let Ok(event) = nodescope_proto::Event::decode(message.payload) {
                            if let Some(Payload::ExtractorStats(s)) = event.payload {
                                stats_tx.send_replace(Some((Instant::now(), event.pid, s)));
                            }
                        }
                    }
                    reply = takes.recv() => match reply {
                        Some(reply) => { let _ = reply.send(std::mem::take(&mut received)); }
                        None => break,
                    },
                }
            }
        });
        Ok(Subscriber {
            unique,
            take,
            stats,
        })
    }

    fn unique(&self) -> u64 {
        self.unique.load(Ordering::Relaxed)
    }

    async fn take(&self) -> Received {
        let (reply, answer) = oneshot::channel();
        self.take.send(reply).await.expect("subscriber task runs");
        answer.await.expect("subscriber task answers")
    }

    /// The first stats of extractor `pid` received after `after` (or any time, with `None`);
    /// they come every second.
    async fn stats_after(&mut self, pid: u32, after: Option<Instant>) -> Option<ExtractorStats> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some((at, from, stats)) = self.stats.borrow_and_update().as_ref() {
                if *from == pid && after.is_none_or(|after| *at > after) {
                    return Some(stats.clone());
                }
            }
            match tokio::time::timeout_at(deadline, self.stats.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// The stats of extractor `pid` once they count `target` events read, or the last ones
    /// when the count stopped growing for 3 s.
    async fn settle_read(&mut self, pid: u32, target: u64) -> Option<ExtractorStats> {
        let mut last: Option<ExtractorStats> = None;
        let mut last_change = Instant::now();
        while last_change.elapsed() < Duration::from_secs(3) {
            let stats = self.stats_after(pid, Some(Instant::now())).await?;
            if stats.events_read >= target {
                return Some(stats);
            }
            if last
                .as_ref()
                .is_none_or(|l| l.events_read != stats.events_read)
            {
                last_change = Instant::now();
            }
            last = Some(stats);
        }
        last
    }

    /// Waits until `target` unique events have arrived, or nothing arrived for `quiet`.
    async fn settle(&self, target: u64, quiet: Duration) {
        let mut last = self.unique();
        let mut last_change = Instant::now();
        while last < target && last_change.elapsed() < quiet {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = self.unique();
            if now != last {
                last = now;
                last_change = Instant::now();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// One `bitcoind-sim load` run, as its summary line says.
#[derive(Debug, Clone, Copy, Default)]
struct LoadRun {
    fired: u64,
    attempted: u64,
    elapsed_s: f64,
    rate: f64,
    /// CPU time (user + system, which includes the uprobe and the eBPF program) of the run.
    cpu_s: f64,
}

impl LoadRun {
    /// Wall-clock time per tracepoint call.
    fn ns_per_attempt(&self) -> f64 {
        self.elapsed_s * 1e9 / self.attempted.max(1) as f64
    }

    /// What the traced thread pays per tracepoint call, whatever else runs: the run's CPU time
    /// (user + system: the uprobe and the eBPF program are charged to it), or its wall time if
    /// shorter (CPU time includes the process start-up, which matters for very short runs).
    fn cpu_ns_per_attempt(&self) -> f64 {
        self.cpu_s.min(self.elapsed_s) * 1e9 / self.attempted.max(1) as f64
    }
}

/// CPU seconds of this process's terminated and reaped children.
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Runs `binary <args>` and reads its `load:` summary line.
async fn run_load(binary: &Path, args: &[String]) -> Result<LoadRun> {
    // Only this child terminates meanwhile (the extractor and nats-server live on).
    let cpu0 = children_cpu_seconds();
    let output = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", binary.display()))?;
    let cpu_s = children_cpu_seconds() - cpu0;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{} load {} failed ({}): {}{}",
            binary.display(),
            args.join(" "),
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("load:"))
        .with_context(|| format!("no summary line in {stdout:?}"))?;
    let fields: BTreeMap<&str, &str> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let get = |k: &str| -> Result<f64> {
        fields
            .get(k)
            .with_context(|| format!("{k} missing in {line:?}"))?
            .parse::<f64>()
            .with_context(|| format!("{k} in {line:?}"))
    };
    Ok(LoadRun {
        fired: get("fired")? as u64,
        attempted: get("attempted")? as u64,
        elapsed_s: get("elapsed_s")?,
        rate: get("rate_per_s")?,
        cpu_s,
    })
}

fn load_args(mix: &str, rate: f64, count: u64, wait: bool) -> Vec<String> {
    let mut args = vec![
        "load".to_string(),
        "--mix".into(),
        mix.to_string(),
        "--direction".into(),
        "inbound".into(),
        "--rate".into(),
        format!("{rate}"),
        "--count".into(),
        count.to_string(),
    ];
    if wait {
        args.extend(
            [
                "--wait-for-tracer",
                "net:inbound_message",
                "--wait-timeout",
                "20",
            ]
            .map(String::from),
        );
    }
    args
}

/// Memory of the extractor in MB (10^6 bytes): the kernel's peak RSS, and the peaks of its parts
/// sampled every 20 ms.
#[derive(Debug, Default, Clone, Copy)]
struct Memory {
    /// VmHWM.
    peak_rss: f64,
    /// RssAnon: heap and stacks.
    anon: f64,
    /// RssFile: the binary, libraries and the mmapped ring buffer.
    file: f64,
    rss_now: f64,
}

impl Memory {
    fn read(pid: i32) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let mb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb * 1024.0 / 1e6)
        };
        Some(Memory {
            peak_rss: mb("VmHWM:"),
            anon: mb("RssAnon:"),
            file: mb("RssFile:"),
            rss_now: mb("VmRSS:"),
        })
    }

    fn max(self, other: Memory) -> Memory {
        Memory {
            peak_rss: self.peak_rss.max(other.peak_rss),
            anon: self.anon.max(other.anon),
            file: self.file.max(other.file),
            rss_now: other.rss_now,
        }
    }
}

/// User + system CPU seconds of process `pid` so far (all its threads), from /proc.
fn process_cpu_seconds(pid: i32) -> f64 {
    let (user, system) = stat_cpu_seconds(&format!("/proc/{pid}/stat"));
    user + system
}

/// User and system CPU seconds in a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` file
/// (NaN if it cannot be read).
fn stat_cpu_seconds(path: &str) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return (f64::NAN, f64::NAN);
    };
    let after_name = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // Fields 14 and 15 of proc(5); `after_name` starts at field 3.
    let seconds = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map_or(f64::NAN, |ticks| ticks as f64 / hz)
    };
    (seconds(11), seconds(12))
}

/// `extractor ebpf` attached to `tracepoints` of `binary`, publishing as `node` with stats every
/// second, its log in `log`: the child every section measures.
fn spawn_extractor(
    bin: &Path,
    binary: &Path,
    nats_url: &str,
    node: &str,
    tracepoints: &str,
    log: &Path,
    extra: &[&str],
) -> Result<tokio::process::Child> {
    Command::new(bin)
        .args(["ebpf", "--bitcoind-path"])
        .arg(binary)
        .args(["--nats-url", nats_url, "--node-id", node])
        .args(["--tracepoints", tracepoints, "--stats-interval", "1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// The release `extractor` as a child process, attached to `binary`.
struct Extractor {
    child: tokio::process::Child,
    pid: i32,
    counting: Counting,
    memory: Arc<std::sync::Mutex<Memory>>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Extractor {
    async fn start(
        bin: &Path,
        binary: &Path,
        nats_url: &str,
        log: &Path,
        subscriber: &mut Subscriber,
        extra: &[&str],
    ) -> Result<Extractor> {
        let started = Instant::now();
        let child = spawn_extractor(
            bin,
            binary,
            nats_url,
            NODE,
            "net:inbound_message",
            log,
            extra,
        )?;
        let pid = child.id().context("extractor pid")? as i32;
        let memory = Arc::new(std::sync::Mutex::new(Memory::default()));
        let sampled = memory.clone();
        let sampler = tokio::spawn(async move {
            while let Some(now) = Memory::read(pid) {
                {
                    let mut peak = sampled.lock().expect("not poisoned");
                    *peak = peak.max(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut extractor = Extractor {
            child,
            pid,
            counting: if extra.contains(&"--drain-only") {
                Counting::ExtractorStats
            } else {
                Counting::Subscriber
            },
            memory,
            sampler,
        };
        // The first stats event says it is attached and connected.
        if subscriber
            .stats_after(pid as u32, Some(started))
            .await
            .is_none()
        {
            let status = extractor.child.try_wait()?;
            bail!(
                "the extractor published no stats within 5 s (exit: {status:?}); its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        Ok(extractor)
    }

    /// User + system CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(self.pid)
    }

    fn memory(&self) -> Memory {
        let peak = *self.memory.lock().expect("not poisoned");
        Memory::read(self.pid).map_or(peak, |now| peak.max(now))
    }

    /// Its memory and kernel map memory (from its stats), then stops it.
    async fn finish(self, subscriber: &mut Subscriber) -> (Memory, u64) {
        let memory = self.memory();
        let kernel_memory_bytes = subscriber
            .stats_after(self.pid as u32, None)
            .await
            .map_or(0, |s| s.kernel_memory_bytes);
        self.stop().await;
        (memory, kernel_memory_bytes)
    }

    async fn stop(mut self) {
        self.sampler.abort();
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements

#[derive(Debug, Clone, Default)]
struct Step {
    /// Requested rate (0 = flat out).
    rate: f64,
    run: LoadRun,
    delivered: u64,
    duplicates: u64,
    truncated: u64,
    kernel_drops: u64,
    payload_cuts: u64,
    queue_drops: u64,
    cpu_us_per_event: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// First probe → last event received.
    span_s: f64,
}

impl Step {
    /// The rate this step proves: the requested one when the simulator kept it (within 2 %:
    /// its pacing loop runs a hair slow), else the achieved one.
    fn proven_rate(&self) -> f64 {
        if self.rate > 0.0 && self.run.rate >= 0.98 * self.rate {
            self.rate
        } else {
            self.run.rate
        }
    }

    fn lossless(&self) -> bool {
        self.delivered == self.run.fired
            && self.run.fired == self.run.attempted
            && self.kernel_drops + self.payload_cuts + self.queue_drops + self.truncated == 0
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1000.0
}

fn drops(stats: &ExtractorStats) -> (u64, u64, u64) {
    (
        stats.kernel_drops.values().sum(),
        stats.kernel_payload_drops.values().sum(),
        stats.dropped_queue_full + stats.dropped_too_large,
    )
}

/// How a step counts the events that came through: as the subscriber received them, or, for the
/// count-only drain (which publishes nothing but its stats), as the extractor's stats count
/// them read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counting {
    Subscriber,
    ExtractorStats,
}

/// Runs `sim <load>` (which fires at `rate`, 0 = flat out) and measures what arrives.
async fn step(
    sim: &Path,
    extractor: &Extractor,
    subscriber: &mut Subscriber,
    rate: f64,
    load: Vec<String>,
) -> Result<Step> {
    let pid = extractor.pid as u32;
    let before = subscriber
        .stats_after(pid, None)
        .await
        .context("no extractor stats")?;
    let unique0 = subscriber.unique();
    let _ = subscriber.take().await;
    let cpu0 = extractor.cpu_seconds();
    let start = Instant::now();
    let run = run_load(sim, &load).await?;
    let (settled, after) = match extractor.counting {
        Counting::Subscriber => {
            subscriber
                .settle(unique0 + run.fired, Duration::from_secs(3))
                .await;
            (Instant::now(), None)
        }
        Counting::ExtractorStats => {
            let read = subscriber
                .settle_read(pid, before.events_read + run.fired)
                .await;
            (Instant::now(), read)
        }
    };
    let cpu1 = extractor.cpu_seconds();
    let mut received = subscriber.take().await;
    let after = match after {
        Some(after) => after,
        None => subscriber
            .stats_after(pid, Some(settled))
            .await
            .context("no extractor stats after the step")?,
    };
    if extractor.counting == Counting::ExtractorStats {
        received.delivered = after.events_read - before.events_read;
    }
    let (k0, p0, q0) = drops(&before);
    let (k1, p1, q1) = drops(&after);
    received.latencies_us.sort_unstable();
    let lat = &received.latencies_us;
    Ok(Step {
        rate,
        run,
        delivered: received.delivered,
        duplicates: received.duplicates,
        truncated: received.truncated,
        kernel_drops: k1.saturating_sub(k0),
        payload_cuts: p1.saturating_sub(p0),
        queue_drops: q1.saturating_sub(q0),
        cpu_us_per_event: (cpu1 - cpu0) * 1e6 / received.delivered.max(1) as f64,
        p50_ms: percentile(lat, 0.50),
        p99_ms: percentile(lat, 0.99),
        max_ms: percentile(lat, 1.0),
        span_s: received
            .last
            .map_or(f64::NAN, |last| (last - start).as_secs_f64()),
    })
}

struct RateSection {
    name: &'static str,
    steps: Vec<Step>,
    /// The same steps with the count-only drain (`extractor ebpf --drain-only`): the same
    /// kernel program and ring, read and counted only.
    baseline: Vec<Step>,
    memory: Memory,
    kernel_memory_bytes: u64,
}

impl RateSection {
    fn highest_lossless(&self) -> Option<&Step> {
        self.steps
            .iter()
            .filter(|s| s.lossless())
            .max_by(|a, b| a.proven_rate().total_cmp(&b.proven_rate()))
    }

    fn flat_out(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.rate == 0.0)
    }

    /// The count-only drain's step at the rate `step` was run at.
    fn baseline_of(&self, step: &Step) -> Option<&Step> {
        self.baseline.iter().find(|b| b.rate == step.rate)
    }
}

/// The rate steps of a load of `name` messages only, first with the count-only drain (the
/// baseline), then with the extractor.
async fn rate_section(
    name: &'static str,
    rates: &[f64],
    seconds_per_step: f64,
    flat_out_count: u64,
    paths: &Paths,
    nats_url: &str,
    subscriber: &mut Subscriber,
) -> Result<RateSection> {
    let run = async |subscriber: &mut Subscriber, drain_only: bool| {
        let mode = if drain_only { "baseline" } else { "extractor" };
        let log = paths.dir.join(format!("extractor-{name}-{mode}.log"));
        let extra: &[&str] = if drain_only { &["--drain-only"] } else { &[] };
        let extractor = Extractor::start(
            &paths.extractor,
            &paths.sim_traced,
            nats_url,
            &log,
            subscriber,
            extra,
        )
        .await?;
        let mix = format!("{name}=1");
        let mut steps = Vec::new();
        for &rate in rates {
            let count = (rate * seconds_per_step) as u64;
            let load = load_args(&mix, rate, count, true);
            let s = step(&paths.sim_traced, &extractor, subscriber, rate, load).await?;
            eprintln!("bench: {name} {mode} {}", step_line(&s));
            // Higher rates will not do better once events are lost or the simulator no longer
            // keeps up: go to flat out.
            let last = !s.lossless() || s.run.rate < 0.9 * rate;
            steps.push(s);
            if last {
                break;
            }
        }
        let load = load_args(&mix, 0.0, flat_out_count, true);
        let s = step(&paths.sim_traced, &extractor, subscriber, 0.0, load).await?;
        eprintln!("bench: {name} {mode} {}", step_line(&s));
        steps.push(s);
        let (memory, kernel_memory_bytes) = extractor.finish(subscriber).await;
        Ok::<_, anyhow::Error>((steps, memory, kernel_memory_bytes))
    };
    let (baseline, _, _) = run(subscriber, true).await?;
    let (steps, memory, kernel_memory_bytes) = run(subscriber, false).await?;
    Ok(RateSection {
        name,
        steps,
        baseline,
        memory,
        kernel_memory_bytes,
    })
}

fn step_line(s: &Step) -> String {
    format!(
        "rate={} achieved={:.0}/s fired={} delivered={} drops(k/cut/q)={}/{}/{} cpu={:.2}µs/ev p50={:.2}ms p99={:.2}ms duplicates={} lossless={}",
        s.rate, s.run.rate, s.run.fired, s.delivered, s.kernel_drops, s.payload_cuts,
        s.queue_drops, s.cpu_us_per_event, s.p50_ms, s.p99_ms, s.duplicates, s.lossless()
    )
}

/// The traced thread's cost, flat out: best (lowest ns/event) of `repeats` runs.
#[derive(Debug, Default, Clone, Copy)]
struct Cost {
    ns_per_event: f64,
    cpu_ns_per_event: f64,
    fired: u64,
}

async fn best_of(binary: &Path, count: u64, repeats: usize, wait: bool) -> Result<Cost> {
    let mut best: Option<LoadRun> = None;
    for _ in 0..repeats {
        let run = run_load(binary, &load_args("ping=1", 0.0, count, wait)).await?;
        if best.is_none_or(|b| run.cpu_ns_per_attempt() < b.cpu_ns_per_attempt()) {
            best = Some(run);
        }
    }
    let best = best.unwrap_or_default();
    Ok(Cost {
        ns_per_event: best.ns_per_attempt(),
        cpu_ns_per_event: best.cpu_ns_per_attempt(),
        fired: best.fired,
    })
}

struct CostSection {
    count: u64,
    untraced: Cost,
    legacy: Cost,
    count_only: Cost,
    count_only_firings: u64,
}

async fn cost_section(paths: &Paths, count: u64, repeats: usize) -> Result<CostSection> {
    let untraced = best_of(&paths.sim_untraced, count, repeats, false).await?;
    let legacy = best_of(&paths.sim_legacy, count, repeats, false).await?;
    let config = TracerConfig {
        tracepoints: [Tracepoint::NetInboundMessage].into(),
        ring_bytes: 4096,
        count_only: true,
        ..TracerConfig::new(&paths.sim_count)
    };
    let tracer = Tracer::attach(&config).context("attaching the count-only probe")?;
    let count_only = best_of(&paths.sim_count, count, repeats, true).await?;
    let count_only_firings = tracer.count_only_firings()?;
    drop(tracer);
    Ok(CostSection {
        count,
        untraced,
        legacy,
        count_only,
        count_only_firings,
    })
}

struct BlockBurst {
    step: Step,
    memory: Memory,
    kernel_memory_bytes: u64,
}

async fn block_section(
    paths: &Paths,
    nats_url: &str,
    subscriber: &mut Subscriber,
    count: u64,
) -> Result<BlockBurst> {
    let log = paths.dir.join("extractor-block.log");
    let extractor = Extractor::start(
        &paths.extractor,
        &paths.block_firer,
        nats_url,
        &log,
        subscriber,
        &[],
    )
    .await?;
    let load = vec!["fire-blocks".to_string(), count.to_string()];
    let s = step(&paths.block_firer, &extractor, subscriber, 0.0, load).await?;
    eprintln!("bench: block {}", step_line(&s));
    let (memory, kernel_memory_bytes) = extractor.finish(subscriber).await;
    Ok(BlockBurst {
        step: s,
        memory,
        kernel_memory_bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// The table

fn thousands(n: f64) -> String {
    if !n.is_finite() {
        return "—".into();
    }
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn fixed(n: f64, decimals: usize) -> String {
    if n.is_finite() {
        format!("{n:.decimals$}")
    } else {
        "—".into()
    }
}

/// Prints rows with aligned columns: the first left-aligned, the others right-aligned.
fn print_table(indent: &str, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |c: usize| {
        rows.iter()
            .filter_map(|r| r.get(c))
            .map(|s| s.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns).map(width).collect();
    for row in rows {
        let mut line = indent.to_string();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str("  ");
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        println!("{}", line.trim_end());
    }
}

fn mark(ok: Option<bool>) -> String {
    match ok {
        Some(true) => "✓".into(),
        Some(false) => "✗".into(),
        None => "?".into(),
    }
}

fn rate_rows(section: &RateSection) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "rate/s",
        "achieved/s",
        "fired",
        "delivered",
        "kernel drops",
        "cut",
        "queue drops",
        "lossless",
        "CPU µs/event",
        "baseline µs",
        "× baseline",
        "p50 ms",
        "p99 ms",
        "max ms",
    ]
    .map(String::from)
    .to_vec()];
    for s in &section.steps {
        let baseline = section.baseline_of(s).map(|b| b.cpu_us_per_event);
        rows.push(vec![
            if s.rate == 0.0 {
                "flat out".into()
            } else {
                thousands(s.rate)
            },
            thousands(s.run.rate),
            thousands(s.run.fired as f64),
            thousands(s.delivered as f64),
            thousands(s.kernel_drops as f64),
            thousands(s.payload_cuts as f64),
            thousands(s.queue_drops as f64),
            if s.lossless() { "yes" } else { "no" }.into(),
            fixed(s.cpu_us_per_event, 2),
            baseline.map_or("—".into(), |b| fixed(b, 2)),
            baseline.map_or("—".into(), |b| format!("{:.1}×", s.cpu_us_per_event / b)),
            fixed(s.p50_ms, 2),
            fixed(s.p99_ms, 2),
            fixed(s.max_ms, 1),
        ]);
    }
    rows
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cpus} CPUs ({model}), kernel {}, load average at start {}",
        kernel.trim(),
        load.join(" ")
    )
}

// ---------------------------------------------------------------------------------------------

struct Paths {
    dir: PathBuf,
    extractor: PathBuf,
    /// Private copies of the release simulator: uprobes attach per file, so each measurement
    /// has its own and nothing else on the machine traces them.
    sim_traced: PathBuf,
    sim_count: PathBuf,
    sim_untraced: PathBuf,
    sim_legacy: PathBuf,
    /// This program, firing 4 MB blocks (`fire-blocks`).
    block_firer: PathBuf,
}

fn paths(args: &Args, dir: &Path) -> Result<Paths> {
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            let exe = std::env::current_exe()?;
            // <target>/release/examples/extractor_bench → <target>/release
            exe.parent()
                .and_then(Path::parent)
                .context("locating the target directory")?
                .to_path_buf()
        }
    };
    let bin = |name: &str| -> Result<PathBuf> {
        let path = bin_dir.join(name);
        if !path.exists() {
            bail!(
                "{} does not exist: build with `cargo build --release -p extractor -p simulator --bins`",
                path.display()
            );
        }
        Ok(path)
    };
    let copy = |from: &str, to: &str| -> Result<PathBuf> {
        let target = dir.join(to);
        std::fs::copy(bin(from)?, &target)?;
        Ok(target)
    };
    Ok(Paths {
        dir: dir.to_path_buf(),
        extractor: bin("extractor")?,
        sim_traced: copy("bitcoind-sim", "bitcoind")?,
        sim_count: copy("bitcoind-sim", "bitcoind-count")?,
        sim_untraced: copy("bitcoind-sim", "bitcoind-untraced")?,
        sim_legacy: copy("bitcoind-sim-legacy", "bitcoind-legacy")?,
        block_firer: {
            let target = dir.join("bitcoind-blocks");
            std::fs::copy(std::env::current_exe()?, &target)?;
            target
        },
    })
}

/// The block burst's traced process: this very binary, run (as a private copy) with
/// `fire-blocks N`. `bitcoind-sim load` has no 4 MB block, so the burst fires the simulator's
/// exactly-4,000,000-byte block through its legacy (semaphore-free) `net:inbound_message`
/// probe, linked here, and prints a `load:` line like `bitcoind-sim load`.
fn fire_blocks(count: u64) -> Result<()> {
    use bitcoin::hashes::Hash as _;
    use simulator::payloads::{self as p, Rng};
    use simulator::probes::Arg;
    use std::ffi::CString;

    let probes = simulator::probes!("tracepoints_legacy", simulator::Flavour::Legacy);
    let mut rng = Rng::new(0xb10c);
    let funding = bitcoin::OutPoint {
        txid: bitcoin::Txid::from_byte_array(rng.array()),
        vout: 0,
    };
    let prev = bitcoin::BlockHash::from_byte_array(rng.array());
    let block = p::max_size_block(&mut rng, prev, 150, 1_760_000_000, funding);
    let (cmd, data) = p::payload(bitcoin::p2p::message::NetworkMessage::Block(block));
    let (cmd, addr, conn) = (
        CString::new(cmd)?,
        CString::new("127.0.0.1:18444")?,
        CString::new("inbound")?,
    );
    let start = Instant::now();
    let mut fired = 0;
    for _ in 0..count {
        let args = [
            Arg::Int(0),
            Arg::Str(&addr),
            Arg::Str(&conn),
            Arg::Str(&cmd),
            Arg::Int(data.len() as i128),
            Arg::Bytes(&data),
        ];
        fired += probes.fire(Tracepoint::NetInboundMessage, &args) as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "load: fired={fired} attempted={count} elapsed_s={elapsed:.6} rate_per_s={:.1} size={}",
        fired as f64 / elapsed,
        data.len()
    );
    Ok(())
}

fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some("fire-blocks") {
        let count = argv.next().context("fire-blocks N")?.parse()?;
        return fire_blocks(count);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(bench(Args::parse()))
}

async fn bench(args: Args) -> Result<()> {
    let run = |s: &str| args.sections.iter().any(|x| x == s);
    let dir = tempfile::tempdir()?;
    let paths = paths(&args, dir.path())?;
    let started = Instant::now();
    let machine = machine();
    let quick = args.quick;
    let step_s = if quick { 0.5 } else { 4.0 };
    let flat_count: u64 = if quick { 300_000 } else { 2_000_000 };
    let cost_count: u64 = if quick { 500_000 } else { 2_000_000 };
    let block_count = 20;

    let cost = if run("cost") {
        eprintln!("bench: traced-thread cost (no tracer, count-only probe)…");
        Some(cost_section(&paths, cost_count, if quick { 1 } else { 3 }).await?)
    } else {
        None
    };

    let nats = tokio::task::spawn_blocking(NatsServer::start).await?;
    let nats_url = nats.url();
    let mut subscriber = Subscriber::start(&nats_url).await?;

    let ping_rates = [
        50_000.0, 100_000.0, 200_000.0, 300_000.0, 400_000.0, 500_000.0, 600_000.0, 700_000.0,
        800_000.0,
    ];
    let inv_rates = [
        50_000.0, 100_000.0, 200_000.0, 300_000.0, 400_000.0, 500_000.0,
    ];
    let mut rate_section_if_chosen = async |name: &'static str, rates: &[f64]| {
        if !run(name) {
            return Ok::<_, anyhow::Error>(None);
        }
        let section = rate_section(
            name,
            rates,
            step_s,
            flat_count,
            &paths,
            &nats_url,
            &mut subscriber,
        );
        Ok(Some(section.await?))
    };
    let ping = rate_section_if_chosen("ping", &ping_rates).await?;
    let inv = rate_section_if_chosen("inv", &inv_rates).await?;
    let block = if run("block") {
        Some(block_section(&paths, &nats_url, &mut subscriber, block_count).await?)
    } else {
        None
    };
    // Kept to print after the other sections, should it fail.
    let real = if run("bitcoind") {
        eprintln!("bench: real bitcoind flooded by raw peers…");
        Some(bench_bitcoind::measure(&paths.dir, &paths.extractor, &nats_url, quick).await)
    } else {
        None
    };
    drop(nats);

    // ------------------------------------------------------------------ print
    println!();
    println!(
        "nodescope extractor benchmark ({} mode, {:.0} s)",
        if quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64()
    );
    println!("{machine}");
    println!(
        "simulator, nats-server, subscriber and extractor share these CPUs; one tracepoint \
         (net:inbound_message) attached"
    );
    for section in [&ping, &inv].into_iter().flatten() {
        println!();
        let what = if section.name == "ping" {
            "ping (8-byte payload)"
        } else {
            "inv (28 entries, 1009-byte payload)"
        };
        println!(
            "Rate steps — {what}, {} per rated step, flat out {} events:",
            if quick { "0.5 s" } else { "4 s" },
            thousands(flat_count as f64)
        );
        print_table("  ", &rate_rows(section));
        let m = section.memory;
        println!(
            "  extractor memory: peak RSS (VmHWM) {:.1} MB; sampled peaks RssAnon {:.1} MB, RssFile \
             {:.1} MB (binary + the mmapped ring); RSS at the end {:.1} MB; kernel maps {:.1} MiB",
            m.peak_rss,
            m.anon,
            m.file,
            m.rss_now,
            section.kernel_memory_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    if let Some(b) = &block {
        let s = &b.step;
        println!();
        println!(
            "4 MB block burst ({} blocks flat out): {}/{} delivered whole, {} cut by a full ring, \
             {} dropped; {:.2} s from the first probe to the last event ({:.0} MB/s), latency p50 \
             {:.0} ms, p99 {:.0} ms; extractor {:.0} µs CPU per block, peak RSS {:.1} MB",
            s.run.attempted,
            thousands(s.delivered.saturating_sub(s.truncated) as f64),
            thousands(s.run.fired as f64),
            s.payload_cuts.max(s.truncated),
            s.kernel_drops + s.queue_drops,
            s.span_s,
            s.delivered as f64 * 4.0 / s.span_s,
            s.p50_ms,
            s.p99_ms,
            s.cpu_us_per_event,
            b.memory.peak_rss
        );
    }
    let flat_with_extractor = ping.as_ref().and_then(|p| p.flat_out()).cloned();
    if let Some(c) = &cost {
        println!();
        println!(
            "Traced-thread cost, flat out ({} pings; best of {}; ns per tracepoint call):",
            thousands(c.count as f64),
            if quick { 1 } else { 3 }
        );
        let mut rows = vec![["", "CPU ns/event", "wall ns/event", "events/s", "fired"]
            .map(String::from)
            .to_vec()];
        let row = |name: &str, cpu_ns: f64, wall_ns: f64, fired: u64| {
            vec![
                name.to_string(),
                fixed(cpu_ns, 1),
                fixed(wall_ns, 1),
                thousands(1e9 / wall_ns),
                thousands(fired as f64),
            ]
        };
        rows.push(row(
            "(a) bitcoind-sim, no tracer (semaphore 0: probe skipped)",
            c.untraced.cpu_ns_per_event,
            c.untraced.ns_per_event,
            c.untraced.fired,
        ));
        rows.push(row(
            "(a') bitcoind-sim-legacy, no tracer (nop probe runs)",
            c.legacy.cpu_ns_per_event,
            c.legacy.ns_per_event,
            c.legacy.fired,
        ));
        rows.push(row(
            "(b) bitcoind-sim + count-only uprobe",
            c.count_only.cpu_ns_per_event,
            c.count_only.ns_per_event,
            c.count_only.fired,
        ));
        if let Some(f) = &flat_with_extractor {
            rows.push(row(
                "(c) bitcoind-sim + extractor (the flat-out ping step)",
                f.run.cpu_ns_per_attempt(),
                f.run.ns_per_attempt(),
                f.run.fired,
            ));
        }
        print_table("  ", &rows);
        println!(
            "  uprobe trap (b − a): {:.0} ns/event",
            c.count_only.cpu_ns_per_event - c.untraced.cpu_ns_per_event
        );
        if let Some(f) = &flat_with_extractor {
            println!(
                "  extractor eBPF program beyond the trap (c − b): {:.0} ns/event ({} of {} \
                 events dropped by a full ring)",
                f.run.cpu_ns_per_attempt() - c.count_only.cpu_ns_per_event,
                thousands(f.kernel_drops as f64),
                thousands(f.run.fired as f64),
            );
        }
        if c.count_only_firings != c.count_only.fired * if quick { 1 } else { 3 } {
            println!(
                "  note: the count-only probe counted {} firings",
                thousands(c.count_only_firings as f64)
            );
        }
    }

    match &real {
        Some(Ok(section)) => bench_bitcoind::print(section),
        Some(Err(e)) => {
            println!();
            println!("Real bitcoind: failed: {e:#}");
        }
        None => {}
    }

    // Summary against the targets: each beside the limit it approaches, measured in this run —
    // the traced thread's trap ceiling for rates, the count-only drain for the extractor's CPU.
    let trap_ceiling = cost
        .as_ref()
        .map(|c| 1e9 / (c.count_only.cpu_ns_per_event - c.untraced.cpu_ns_per_event));
    println!();
    println!("Targets (limit: what this machine allows, measured in this run):");
    let mut rows = vec![["", "target", "measured", "limit", "of limit", ""]
        .map(String::from)
        .to_vec()];
    let mut summary =
        |what: &str, target: String, measured: String, limit: String, ratio: String, ok: bool| {
            rows.push(vec![
                what.into(),
                target,
                measured,
                limit,
                ratio,
                mark(Some(ok)),
            ]);
        };
    let ceiling_text = trap_ceiling.map_or("—".to_string(), |c| {
        format!("{}/s trap ceiling", thousands(c))
    });
    for (section, target_rate, target_cpu, what) in [
        (&ping, TARGET_PING_RATE, TARGET_PING_CPU_US, "ping"),
        (&inv, TARGET_INV_RATE, TARGET_INV_CPU_US, "1 KiB inv"),
    ] {
        let Some(section) = section else {
            continue;
        };
        let best = section.highest_lossless();
        let rate = best.map_or(0.0, Step::proven_rate);
        summary(
            &format!("lossless {what}s"),
            format!("≥ {}/s", thousands(target_rate)),
            format!("{}/s", thousands(rate)),
            ceiling_text.clone(),
            trap_ceiling.map_or("—".into(), |c| format!("{:.0} %", 100.0 * rate / c)),
            rate >= target_rate,
        );
        // CPU per event at the highest lossless rate (the least idle overhead).
        if let Some(s) = best {
            let baseline = section.baseline_of(s).map(|b| b.cpu_us_per_event);
            summary(
                &format!(
                    "extractor CPU per {what} at {}/s",
                    thousands(s.proven_rate())
                ),
                format!("≤ {target_cpu} µs"),
                format!("{:.2} µs", s.cpu_us_per_event),
                baseline.map_or("—".into(), |b| format!("{b:.2} µs count-only drain")),
                baseline.map_or("—".into(), |b| format!("{:.1}×", s.cpu_us_per_event / b)),
                s.cpu_us_per_event <= target_cpu,
            );
        }
    }
    if let Some(s) = ping
        .as_ref()
        .and_then(|p| p.steps.iter().find(|s| s.rate == 100_000.0))
    {
        summary(
            "p99 latency probe → subscriber at 100,000 pings/s",
            format!("≤ {TARGET_P99_MS} ms"),
            format!("{:.2} ms (p50 {:.2} ms)", s.p99_ms, s.p50_ms),
            "—".into(),
            "—".into(),
            s.p99_ms <= TARGET_P99_MS,
        );
    }
    let kernel_mib = [
        ping.as_ref().map(|s| s.kernel_memory_bytes),
        inv.as_ref().map(|s| s.kernel_memory_bytes),
        block.as_ref().map(|b| b.kernel_memory_bytes),
    ]
    .into_iter()
    .flatten()
    .max()
    .map(|bytes| bytes as f64 / (1024.0 * 1024.0));
    if let Some(b) = &block {
        let whole = b.step.delivered.saturating_sub(b.step.truncated);
        let maps = kernel_mib.unwrap_or(f64::NAN);
        summary(
            &format!("{} back-to-back 4 MB blocks", b.step.run.attempted),
            format!("all whole, maps ≤ {TARGET_KERNEL_MIB} MiB"),
            format!("{whole}/{} whole, maps {maps:.1} MiB", b.step.run.attempted),
            "—".into(),
            format!(
                "{:.0} %",
                100.0 * whole as f64 / b.step.run.attempted.max(1) as f64
            ),
            whole == b.step.run.attempted && maps <= TARGET_KERNEL_MIB,
        );
    }
    let rss = [
        ping.as_ref().map(|s| s.memory.peak_rss),
        inv.as_ref().map(|s| s.memory.peak_rss),
        block.as_ref().map(|b| b.memory.peak_rss),
    ]
    .into_iter()
    .flatten()
    .fold(f64::NAN, f64::max);
    if rss.is_finite() {
        summary(
            "extractor peak RSS (VmHWM, all sections)",
            format!("≤ {TARGET_RSS_MB} MB"),
            format!("{rss:.1} MB"),
            "—".into(),
            "—".into(),
            rss <= TARGET_RSS_MB,
        );
    }
    print_table("  ", &rows);
    if let (Some(c), Some(f)) = (&cost, &flat_with_extractor) {
        println!(
            "  (the eBPF program costs the traced thread {:.0} ns per event beyond the bare trap)",
            f.run.cpu_ns_per_attempt() - c.count_only.cpu_ns_per_event
        );
    }
    println!(
        "  The metrics and websocket targets are printed by `cargo xtask bench metrics` and \
         `cargo xtask bench websocket`."
    );
    match real {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}
