//! The processes a section runs and reads: `bitcoind-sim load` runs, CPU and memory from
//! `/proc`, and the release `extractor` as a child process.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tokio::process::Command;

use crate::subscriber::Subscriber;
use crate::NODE;

/// One `bitcoind-sim load` run, as its summary line says.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LoadRun {
    pub(super) fired: u64,
    pub(super) attempted: u64,
    elapsed_s: f64,
    pub(super) rate: f64,
    /// CPU time (user + system, which includes the uprobe and the eBPF program) of the run.
    cpu_s: f64,
}

impl LoadRun {
    /// Wall-clock time per tracepoint call.
    pub(super) fn ns_per_attempt(&self) -> f64 {
        self.elapsed_s * 1e9 / self.attempted.max(1) as f64
    }

    /// What the traced thread pays per tracepoint call, whatever else runs: the run's CPU time
    /// (user + system: the uprobe and the eBPF program are charged to it), or its wall time if
    /// shorter (CPU time includes the process start-up, which matters for very short runs).
    pub(super) fn cpu_ns_per_attempt(&self) -> f64 {
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
pub(super) async fn run_load(binary: &Path, args: &[String]) -> Result<LoadRun> {
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

pub(super) fn load_args(mix: &str, rate: f64, count: u64, wait: bool) -> Vec<String> {
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
pub(super) struct Memory {
    /// VmHWM.
    pub(super) peak_rss: f64,
    /// RssAnon: heap and stacks.
    pub(super) anon: f64,
    /// RssFile: the binary, libraries and the mmapped ring buffer.
    pub(super) file: f64,
    pub(super) rss_now: f64,
}

impl Memory {
    pub(super) fn read(pid: i32) -> Option<Memory> {
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
pub(super) fn process_cpu_seconds(pid: i32) -> f64 {
    let (user, system) = stat_cpu_seconds(&format!("/proc/{pid}/stat"));
    user + system
}

/// User and system CPU seconds in a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` file
/// (NaN if it cannot be read).
pub(super) fn stat_cpu_seconds(path: &str) -> (f64, f64) {
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
pub(super) fn spawn_extractor(
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
pub(super) struct Extractor {
    child: tokio::process::Child,
    pub(super) pid: i32,
    pub(super) counting: Counting,
    memory: Arc<std::sync::Mutex<Memory>>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Extractor {
    pub(super) async fn start(
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
    pub(super) fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(self.pid)
    }

    fn memory(&self) -> Memory {
        let peak = *self.memory.lock().expect("not poisoned");
        Memory::read(self.pid).map_or(peak, |now| peak.max(now))
    }

    /// Its memory and kernel map memory (from its stats), then stops it.
    pub(super) async fn finish(self, subscriber: &mut Subscriber) -> (Memory, u64) {
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

/// How a step counts the events that came through: as the subscriber received them, or, for the
/// count-only drain (which publishes nothing but its stats), as the extractor's stats count
/// them read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counting {
    Subscriber,
    ExtractorStats,
}
