//! The `extractor` command line. `run(args, shutdown)` is the whole program, so tests can run it
//! in-process; `main.rs` only parses arguments, sets up logging and waits for signals.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use extractor_common::Tracepoint;

use crate::tracer::{Tracer, TracerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "extractor",
    version,
    about = "nodescope extractor: bitcoind's tracepoints as events"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to bitcoind's USDT tracepoints with eBPF (needs root).
    Ebpf(EbpfArgs),
}

#[derive(Debug, Args)]
pub struct EbpfArgs {
    /// The bitcoind binary whose tracepoints to attach; every process running it is traced,
    /// including ones started later.
    #[arg(long, env = "NODESCOPE_BITCOIND_PATH")]
    pub bitcoind_path: PathBuf,
    /// Trace only this process id.
    #[arg(long, env = "NODESCOPE_PID")]
    pub pid: Option<u32>,
    /// Tracepoints to attach: `all`, or a comma-separated list of providers (`net`,
    /// `validation`, `mempool`, `utxocache`, `coin_selection`) and `provider:name` pairs.
    #[arg(long, env = "NODESCOPE_TRACEPOINTS", default_value = "all", value_parser = parse_tracepoints)]
    pub tracepoints: BTreeSet<Tracepoint>,
    /// Size of the kernel ring buffer in MiB (a power of two).
    #[arg(long, env = "NODESCOPE_RING_MIB", default_value_t = 16, value_parser = parse_ring_mib)]
    pub ring_mib: u32,
}

pub fn parse_tracepoints(text: &str) -> Result<BTreeSet<Tracepoint>, String> {
    let mut selected = BTreeSet::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let matching: Vec<Tracepoint> = Tracepoint::ALL
            .iter()
            .copied()
            .filter(|tp| item == "all" || item == tp.provider() || item == tp.to_string())
            .collect();
        if matching.is_empty() {
            let providers: BTreeSet<_> = Tracepoint::ALL.iter().map(|tp| tp.provider()).collect();
            return Err(format!(
                "unknown tracepoint or provider {item:?}: use `all`, a provider ({}) or provider:name such as net:inbound_message",
                providers.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        selected.extend(matching);
    }
    if selected.is_empty() {
        return Err("no tracepoints selected: use `all` or name some".into());
    }
    Ok(selected)
}

fn parse_ring_mib(text: &str) -> Result<u32, String> {
    let mib: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of MiB"))?;
    if !mib.is_power_of_two() || mib > 1024 {
        return Err(format!(
            "ring size {mib} MiB must be a power of two up to 1024"
        ));
    }
    Ok(mib)
}

pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    match cli.command {
        Command::Ebpf(args) => run_ebpf(args, shutdown).await,
    }
}

async fn run_ebpf(args: EbpfArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = TracerConfig {
        pid: args.pid,
        tracepoints: args.tracepoints,
        ring_bytes: args.ring_mib * 1024 * 1024,
        ..TracerConfig::new(&args.bitcoind_path)
    };
    let mut tracer = Tracer::attach(&config)
        .with_context(|| format!("cannot trace {}", config.binary.display()))?;
    tracing::info!(
        binary = %config.binary.display(),
        locations = tracer.attached.len(),
        pid = ?config.pid,
        "attached"
    );
    if !tracer.missing.is_empty() {
        let missing: Vec<String> = tracer.missing.iter().map(|tp| tp.to_string()).collect();
        tracing::warn!(
            missing = %missing.join(","),
            "the binary lacks {} selected tracepoints (older bitcoind, or built without the wallet)",
            missing.len()
        );
    }
    if tracer.attached.iter().any(|a| a.semaphore_page_shared) {
        tracing::warn!(
            "this binary's semaphores share a file page between two writable segments (an lld \
             layout): processes started from now on may not fire; restart the extractor after \
             restarting bitcoind, or link bitcoind with GNU ld"
        );
    }
    for (tp, reason) in &tracer.unreadable {
        tracing::warn!(tracepoint = %tp, %reason, "not attached: its argument specs cannot be read");
    }

    let mut stdout = std::io::stdout().lock();
    let mut events = Vec::new();
    let mut stats = tokio::time::interval(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = stats.tick() => {
                for (tp, count) in tracer.kernel_drops()? {
                    tracing::warn!(tracepoint = %tp, dropped = count, "kernel ring buffer was full: events lost");
                }
            }
            read = tracer.read_events(&mut events) => {
                read?;
                for event in events.drain(..) {
                    if writeln!(stdout, "{event}").is_err() {
                        // Reader went away (closed pipe): nothing more to show.
                        return Ok(());
                    }
                }
            }
        }
    }
    tracing::info!("detached");
    Ok(())
}
