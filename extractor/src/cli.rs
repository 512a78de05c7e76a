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

use nodescope_proto::event::Payload;
use nodescope_proto::ExtractorStats;
use prost::Message;

use crate::nodes::Nodes;
use crate::tracer::{Attachment, Tracer, TracerConfig};
use crate::watch::{Watch, WATCH_INTERVAL};
use nodescope_proto::p2p::DecodeOptions;
use nodescope_publish::{host_name, new_run_id, EventBuffer, Publisher};

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
    /// Poll bitcoind's RPC (peers, mempool, traffic, chain...) and follow its ZMQ publishers.
    Rpc(crate::rpc::RpcArgs),
    /// Be one of the node's peers: listen for it (-addnode) or dial it, and report what it says.
    P2p(crate::p2p::P2pArgs),
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
    /// Size of the kernel's events ring in MiB (a power of two), beside which the payload
    /// rings take an eighth, a quarter and a half of it: all kernel maps together stay within
    /// 64 MiB up to 32. Kernel memory: the extractor maps only the part it is reading; 32 holds
    /// fifteen 4 MB blocks, or about 150 ms of 300,000 small messages/s.
    #[arg(
        long,
        env = "NODESCOPE_RING_MIB",
        default_value_t = crate::tracer::DEFAULT_RING_BYTES / (1024 * 1024),
        value_parser = parse_ring_mib
    )]
    pub ring_mib: u32,
    /// Most bytes of each P2P payload copied from bitcoind (default: whole messages, up to
    /// 4,000,000 bytes); a message cut by it is published marked truncated with its real size.
    #[arg(long, env = "NODESCOPE_CAPTURE_LIMIT", default_value_t = extractor_common::usdt::DEFAULT_CAPTURE_LIMIT)]
    pub capture_limit: u32,
    /// Memory in MB kept resident for blocks: a burst of 4 MB blocks (a node catching up) is
    /// copied out of the kernel's rings into it several times faster than into fresh memory,
    /// which leaves the rings room for more of the burst. 20 holds five blocks, beside the
    /// rings' fifteen; 0 keeps none.
    #[arg(long, env = "NODESCOPE_BLOCK_BUFFER_MB", default_value_t = crate::event::DEFAULT_WARM_BYTES / 1_000_000)]
    pub block_buffer_mb: usize,
    /// The node these events are about, in every event and subject. Default: one node per
    /// traced process, named `<host>-<chain>` and, when it has a -datadir, `-<hash of it>`
    /// (stable across restarts), so that mainnet and signet of one install never mix. Set it
    /// only when the binary runs one node (or with --pid).
    #[arg(long, env = "NODESCOPE_NODE_ID")]
    pub node_id: Option<String>,
    /// Also publish each P2P message's raw payload bytes (decoded fields are always published).
    #[arg(long, env = "NODESCOPE_KEEP_RAW_PAYLOADS")]
    pub keep_raw_payloads: bool,
    /// Most MiB of memory for events waiting for NATS (unreachable, or slower than bitcoind);
    /// beyond it the oldest are dropped (and counted). 16 MiB is about 13,000 1-KiB messages.
    #[arg(long, env = "NODESCOPE_NATS_BUFFER_MIB", default_value_t = 16)]
    pub nats_buffer_mib: usize,
    /// Seconds between `extractor` stats events (and log lines).
    #[arg(long, env = "NODESCOPE_STATS_INTERVAL", default_value_t = 10)]
    pub stats_interval: u64,
    /// A perf link per probe even where the kernel offers one multi-uprobe link for all (Linux
    /// 6.6+), as older kernels attach; detaching then takes about 0.1 s per probe.
    #[arg(long, env = "NODESCOPE_PERF_LINKS")]
    pub perf_links: bool,
    /// Also print every event as a line on stdout.
    #[arg(long, env = "NODESCOPE_PRINT")]
    pub print: bool,
    /// Benchmarks only: read the ring and count its events, decoding and publishing nothing but
    /// the stats (`events_read`): the floor under the extractor's cost per event.
    #[arg(long, env = "NODESCOPE_DRAIN_ONLY", hide = true)]
    pub drain_only: bool,
    /// Write this file once attached (the number of locations in it) and remove it at the stop:
    /// a readiness signal for a container's health check or a supervisor.
    #[arg(long, env = "NODESCOPE_READY_FILE")]
    pub ready_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub nats: nodescope_bus::NatsArgs,
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
        Command::Rpc(args) => crate::rpc::run(args, shutdown).await,
        Command::P2p(args) => crate::p2p::run(args, shutdown).await,
    }
}

async fn run_ebpf(args: EbpfArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut nodes = Nodes::new(
        &args.nats.subject_prefix,
        args.node_id.clone(),
        host_name(),
        new_run_id(),
    )?;
    let config = TracerConfig {
        pid: args.pid,
        tracepoints: args.tracepoints.clone(),
        ring_bytes: args.ring_mib * 1024 * 1024,
        capture_limit: args.capture_limit,
        warm_payload_bytes: args.block_buffer_mb * 1_000_000,
        perf_links: args.perf_links,
        ..TracerConfig::new(&args.bitcoind_path)
    };
    let mut tracer = Tracer::attach(&config)
        .with_context(|| format!("cannot trace {}", config.binary.display()))?;
    tracing::info!(
        binary = %config.binary.display(),
        locations = tracer.attached().count(),
        links = if tracer.newest().multi_link() { "one multi-uprobe link" } else { "a perf link per probe" },
        pid = ?config.pid,
        node = args.node_id.as_deref().unwrap_or("one per process (<host>-<chain>[-<datadir hash>])"),
        run_id = nodes.run_id(),
        kernel_memory_mib = format!("{:.1}", tracer.kernel_memory_bytes() as f64 / (1024.0 * 1024.0)),
        "attached"
    );
    report_attach_problems(tracer.newest());
    let _ready = args
        .ready_file
        .as_deref()
        .map(|path| ReadyFile::create(path, tracer.attached().count()))
        .transpose()?;

    let connection = args.nats.connect("nodescope-extractor").await?;
    let publisher = Publisher::start(connection, args.nats_buffer_mib * 1024 * 1024);
    let mut pipeline = Pipeline {
        counts: Counts::default(),
        printing: args.print,
        decode: DecodeOptions {
            keep_raw: args.keep_raw_payloads,
        },
        buffer: EventBuffer::default(),
        outgoing: Vec::new(),
    };
    let mut events = Vec::new();
    let mut stats = tokio::time::interval(Duration::from_secs(args.stats_interval.max(1)));
    stats.tick().await;
    let mut watch = Watch::new(&config);
    let mut watch_tick = tokio::time::interval(WATCH_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = stats.tick() => {
                publish_stats(&tracer, &publisher, &mut nodes, &pipeline.counts)?;
                if let Some(failure) = publisher.failure() {
                    anyhow::bail!("{failure}");
                }
            }
            _ = watch_tick.tick() => watch.check(&mut tracer, &config),
            read = read_ring(&mut tracer, &mut events, args.drain_only) => {
                pipeline.counts.read += read?;
                pipeline.forward(&mut events, &mut nodes, &publisher);
                // One thread reads the ring and publishes: the publisher's turn, before the
                // next drain (whose timer has likely fired meanwhile). Should NATS take events
                // slower than they come, the ring holds them (and the kernel counts what it
                // cannot), rather than the queue dropping events already decoded.
                publisher.room(PUBLISH_HIGH_WATER).await;
                tokio::task::yield_now().await;
            }
        }
    }
    stop(tracer, pipeline, nodes, publisher).await
}

/// The next events from the ring into `events`; with `drain_only`, none: how many were only
/// counted.
async fn read_ring(
    tracer: &mut Tracer,
    events: &mut Vec<crate::event::TraceEvent>,
    drain_only: bool,
) -> Result<u64, crate::tracer::TracerError> {
    if drain_only {
        tracer.count_events().await
    } else {
        tracer.read_events(events).await.map(|()| 0)
    }
}

/// SIGINT/SIGTERM: detaches, publishes what was read and the final stats, within
/// [`SHUTDOWN_BUDGET`] when the kernel and NATS allow.
async fn stop(
    mut tracer: Tracer,
    mut pipeline: Pipeline,
    mut nodes: Nodes,
    publisher: Publisher,
) -> anyhow::Result<()> {
    let stopping = tokio::time::Instant::now();
    let mut events = Vec::new();
    // The probes go first: while they are attached, a node that keeps firing keeps the ring
    // filling, and reading it would never end. The ring is read while the kernel detaches.
    let mut detaching = std::pin::pin!(tracer.detach());
    loop {
        tokio::select! {
            _ = &mut detaching => break,
            read = tracer.read_events(&mut events) => {
                read?;
                pipeline.forward(&mut events, &mut nodes, &publisher);
                tokio::task::yield_now().await;
            }
        }
    }
    let detached = stopping.elapsed();
    let cut = tracer
        .drain_detached(&mut events, tokio::time::Instant::now() + RING_DRAIN_LIMIT)
        .await;
    pipeline.forward(&mut events, &mut nodes, &publisher);
    if cut > 0 {
        tracing::warn!(
            cut,
            "events still missing payload chunks at the stop: published with what arrived"
        );
    }
    // Should the kernel have been slow to detach, NATS still gets its minimum.
    let deadline = (stopping + SHUTDOWN_BUDGET).max(tokio::time::Instant::now() + PUBLISH_TIME_MIN);
    // The final stats are taken once NATS has confirmed what was read, so that they add up.
    if !publisher.flush(deadline - FINAL_STATS_TIME).await {
        tracing::warn!(
            "NATS has not confirmed every event in time: the final stats count them as queued"
        );
    }
    publish_stats(&tracer, &publisher, &mut nodes, &pipeline.counts)?;
    drop(tracer);
    let last = publisher
        .close(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await;
    // Still queued now means lost with the process: said here, as the stats event is gone.
    let message = format!(
        "stopped: read {} events, published {}; dropped: queue full {}, too large {}, unpublished at exit {}",
        pipeline.counts.read,
        last.published,
        last.dropped_queue_full,
        last.dropped_too_large,
        last.queued
    );
    let (detach_ms, took_ms) = (
        detached.as_millis() as u64,
        stopping.elapsed().as_millis() as u64,
    );
    if last.queued > 0 {
        tracing::warn!(detach_ms, took_ms, "{message}");
    } else {
        tracing::info!(detach_ms, took_ms, "{message}");
    }
    Ok(())
}

/// From SIGINT/SIGTERM to the end of `run`: detaching, reading the ring to its end, publishing
/// and the final stats. The extractor promises to exit within 2 s (`docker stop` waits 10 s
/// before SIGKILL); the rest is for the process to exit.
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(1500);

/// Most time spent reading the ring once the probes are detached: a 32 MiB ring of small
/// messages (about 30,000) decodes in far less.
const RING_DRAIN_LIMIT: Duration = Duration::from_millis(500);

/// The least time NATS gets to confirm what was read and the final stats, even when detaching
/// took the whole budget.
const PUBLISH_TIME_MIN: Duration = Duration::from_millis(600);

/// The end of the budget kept for the final stats event: one round trip to NATS.
const FINAL_STATS_TIME: Duration = Duration::from_millis(300);

/// Queued bytes above which reading the ring waits for the publisher (see `Publisher::room`).
const PUBLISH_HIGH_WATER: usize = 2 * 1024 * 1024;

/// Most encoded events handed to the publisher at once: when NATS lags, its queue drops the
/// oldest as they come rather than after a whole drain was encoded.
const SEND_BATCH: usize = 1024;

/// `--ready-file`: present while the extractor is ready (attached; for `rpc`, answered).
pub(crate) struct ReadyFile(std::path::PathBuf);

impl ReadyFile {
    fn create(path: &std::path::Path, locations: usize) -> anyhow::Result<ReadyFile> {
        Self::saying(path, &format!("attached {locations} locations"))
    }

    pub(crate) fn saying(path: &std::path::Path, what: &str) -> anyhow::Result<ReadyFile> {
        std::fs::write(path, format!("{what}\n"))
            .with_context(|| format!("cannot write --ready-file {}", path.display()))?;
        Ok(ReadyFile(path.to_path_buf()))
    }
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Events from the kernel to NATS (and stdout with `--print`), counted.
struct Pipeline {
    counts: Counts,
    printing: bool,
    decode: DecodeOptions,
    buffer: EventBuffer,
    /// Encoded events on their way to the publisher (kept to reuse its allocation).
    outgoing: Vec<(async_nats::Subject, bytes::Bytes)>,
}

impl Pipeline {
    fn forward(
        &mut self,
        events: &mut Vec<crate::event::TraceEvent>,
        nodes: &mut Nodes,
        publisher: &Publisher,
    ) {
        if events.is_empty() {
            return;
        }
        // Encoded before taking the publisher's lock, so that its task can hand the previous
        // batch to NATS meanwhile.
        for trace in events.drain(..) {
            self.counts.read += 1;
            self.counts.read_errors += trace.read_failed as u64;
            if self.printing && writeln!(std::io::stdout().lock(), "{trace}").is_err() {
                // Reader went away (closed pipe): stop printing, keep publishing.
                self.printing = false;
            }
            let (subject, encoded, decode_failed) = crate::envelope::trace_encoded(
                nodes.for_pid(trace.pid),
                trace,
                self.decode,
                &mut self.buffer,
            );
            self.counts.decode_errors += decode_failed as u64;
            self.outgoing.push((subject, encoded));
            if self.outgoing.len() == SEND_BATCH {
                publisher.send(self.outgoing.drain(..));
            }
        }
        publisher.send(self.outgoing.drain(..));
    }
}

#[derive(Debug, Default)]
struct Counts {
    read: u64,
    read_errors: u64,
    decode_errors: u64,
}

pub(crate) fn report_attach_problems(attachment: &Attachment) {
    if !attachment.missing.is_empty() {
        let missing: Vec<String> = attachment.missing.iter().map(|tp| tp.to_string()).collect();
        tracing::warn!(
            missing = %missing.join(","),
            "the binary lacks {} selected tracepoints (older bitcoind, or built without the wallet)",
            missing.len()
        );
    }
    if attachment.attached.iter().any(|a| a.semaphore_page_shared) {
        tracing::warn!(
            "this binary's semaphores share a file page between two writable segments (an lld \
             layout): processes started from now on may not fire; restart the extractor after \
             restarting bitcoind, or link bitcoind with GNU ld"
        );
    }
    for (tp, reason) in &attachment.unreadable {
        tracing::warn!(tracepoint = %tp, "not attached: {reason}");
    }
}

/// Publishes (and logs) an `extractor_stats` event with every counter of the pipeline.
fn publish_stats(
    tracer: &Tracer,
    publisher: &Publisher,
    nodes: &mut Nodes,
    counts: &Counts,
) -> anyhow::Result<()> {
    let kernel_drops = tracer.kernel_drops()?;
    let payload_drops = tracer.kernel_payload_drops()?;
    let published = publisher.stats();
    let dropped_kernel: u64 = kernel_drops.iter().map(|(_, n)| n).sum();
    let cut_payloads: u64 = payload_drops.iter().map(|(_, n)| n).sum();
    let reassembly = tracer.reassembly_counts();
    let log = if dropped_kernel
        + cut_payloads
        + published.dropped_queue_full
        + published.dropped_too_large
        + reassembly.stray_chunks
        + reassembly.expired_incomplete
        + reassembly.closed_at_shutdown
        + reassembly.malformed_records
        > 0
    {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    };
    let message = format!(
        "read {} events, published {}, queued {}; dropped: kernel {}, payloads cut by a full ring {}, queue full {}, too large {}; payloads closed incomplete: expired {}, at shutdown {}; stray chunks {}; malformed ring records {}; resent {}; decode errors {}, read errors {}",
        counts.read,
        published.published,
        published.queued,
        dropped_kernel,
        cut_payloads,
        published.dropped_queue_full,
        published.dropped_too_large,
        reassembly.expired_incomplete,
        reassembly.closed_at_shutdown,
        reassembly.stray_chunks,
        reassembly.malformed_records,
        published.resent,
        counts.decode_errors,
        counts.read_errors
    );
    if log == tracing::Level::WARN {
        tracing::warn!("{message}");
    } else {
        tracing::info!("{message}");
    }
    let stats = ExtractorStats {
        events_read: counts.read,
        kernel_drops: kernel_drops
            .into_iter()
            .map(|(tp, n)| (tp.to_string(), n))
            .collect(),
        published: published.published,
        dropped_queue_full: published.dropped_queue_full,
        dropped_too_large: published.dropped_too_large,
        resent: published.resent,
        queued: published.queued,
        queued_bytes: published.queued_bytes,
        decode_errors: counts.decode_errors,
        read_errors: counts.read_errors,
        attached_locations: tracer.attached().count() as u32,
        kernel_payload_drops: payload_drops
            .into_iter()
            .map(|(tp, n)| (tp.to_string(), n))
            .collect(),
        kernel_memory_bytes: tracer.kernel_memory_bytes(),
        stray_chunks: reassembly.stray_chunks,
        expired_incomplete: reassembly.expired_incomplete,
        closed_at_shutdown: reassembly.closed_at_shutdown,
        malformed_records: reassembly.malformed_records,
        ..ExtractorStats::default()
    };
    // Every node's consumers see the pipeline's health on their own subjects.
    let time = now_ns();
    for envelope in nodes.stats_targets() {
        let (subject, event) = envelope.wrap(
            std::process::id(),
            time,
            Payload::ExtractorStats(stats.clone()),
        );
        publisher.send_report(subject, event.encode_to_vec().into());
    }
    nodes.forget_exited();
    Ok(())
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}
