//! The kernel side, loaded and attached: every selected tracepoint of a binary, read through one
//! ring buffer and decoded into [`TraceEvent`]s.

mod drain_timer;
mod kernel_log;
mod memory;
mod ring;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::{ProgramFd, UProbe};
use aya::{Ebpf, EbpfLoader};

use extractor_common::usdt::{
    payload_ring, record_kind, UsdtSpec, DEFAULT_CAPTURE_LIMIT, MAX_ATTACH_POINTS,
};
use extractor_common::Tracepoint;
use tokio::io::unix::AsyncFd;

use crate::attachment::Cookies;
use crate::event::{Reassembler, ReassemblyCounts, TraceEvent, WallClock};
use crate::kernel;
use crate::usdt::{self, UprobePmu};
use drain_timer::DrainTimer;
use kernel_log::KernelLog;
use ring::{Drained, Ring};

/// The kernel object built by build.rs from `extractor-ebpf`.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/extractor-ebpf"));

#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    #[error(transparent)]
    Kernel(#[from] kernel::MissingFeatures),
    #[error(transparent)]
    Notes(#[from] usdt::NotesError),
    #[error(transparent)]
    Attach(#[from] usdt::AttachError),
    #[error("loading the eBPF object failed: {0} (loading needs CAP_BPF + CAP_PERFMON, or root)")]
    Load(#[from] aya::EbpfError),
    #[error("the kernel rejected the USDT program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("eBPF map error: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("{binary} has none of the selected tracepoints ({selected}); it has: {found}")]
    NothingToAttach {
        binary: String,
        selected: String,
        found: String,
    },
    #[error("{binary}: none of its selected tracepoints can be attached:\n  {reasons}")]
    NoneUsable { binary: String, reasons: String },
    #[error("{0} tracepoint locations exceed the limit of {MAX_ATTACH_POINTS}")]
    TooManyLocations(usize),
    #[error("reading the ring buffer: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct TracerConfig {
    pub binary: PathBuf,
    /// Trace only this process; otherwise every process of the binary, present and future.
    pub pid: Option<u32>,
    pub tracepoints: BTreeSet<Tracepoint>,
    /// The events ring's size in bytes (a power of two, at least one page). The payload rings
    /// beside it take an eighth, a quarter and a half of it (at least a page each).
    pub ring_bytes: u32,
    /// Most payload bytes captured per P2P message; a longer payload arrives cut to this many
    /// bytes (its size argument still says how long it was).
    pub capture_limit: u32,
    /// Attach the count-only program instead: it reads and sends nothing, only counts firings
    /// ([`Tracer::count_only_firings`]). For benchmarks: the cost of the bare uprobe trap.
    pub count_only: bool,
    /// Memory kept resident for large payloads (blocks), in buffers of `capture_limit` bytes:
    /// a burst of blocks copied out of the rings into them leaves the kernel room for more.
    pub warm_payload_bytes: usize,
    /// A perf link per probe even where the kernel has multi-uprobe links (6.6+), as older
    /// kernels attach. Detaching then waits for a grace period per probe (about 0.1 s each).
    pub perf_links: bool,
}

/// Default ring size: room for about 8 whole 4 MB blocks, or about 50,000 small messages (about
/// 150 ms at 300,000 pings/s), while all maps stay within 64 MiB of kernel memory. It costs
/// kernel memory only: the process maps the window it reads (`ring.rs`), at most 2 MiB.
pub const DEFAULT_RING_BYTES: u32 = 32 * 1024 * 1024;

/// While records keep coming, the reader drains the ring this long after its last drain, and
/// the kernel does not wake it for each record (a wakeup costs the traced thread several µs and
/// the reader a round of thread switches): what the latency costs for the batching. Once a
/// drain finds the ring empty, the reader asks the kernel to wake it on the next record.
const BATCH_DELAY: Duration = Duration::from_micros(250);

/// Waiting for the kernel's wakeup, the reader still looks this often: to expire payloads whose
/// chunks stopped coming, and should a wakeup have been missed.
const IDLE_CHECK: Duration = Duration::from_millis(50);

/// How long the ring must stay empty after a detach before the reader stops. The kernel waits
/// for running programs before a detach returns, so nothing should come; this is for a record
/// still being committed (not yet readable, it hides the ones behind it), microseconds away.
const DETACHED_QUIET: Duration = Duration::from_millis(5);

/// Most records decoded per drain: the extractor reads and publishes on one thread, so that a
/// flood of records still lets events out every few milliseconds, and the events decoded and
/// waiting to be published stay around 2 MB (2,000 1-KiB messages).
const DRAIN_BATCH: usize = 2048;

/// Most record bytes taken per drain: payloads are copied out of the rings and decoded before
/// the next drain, so that a burst of 4 MB blocks holds about two in memory at a time and waits
/// in the rings for the rest (where the kernel counts what does not fit), instead of in the
/// heap. Taking more per drain does not save more of a burst: the kernel writes twenty blocks in
/// about 5 ms, and copying them into fresh heap pages goes at about a quarter of that pace.
const DRAIN_BYTES: usize = 8 * 1024 * 1024;

/// Most bytes of the events ring per pass of a drain: about 3,200 pings, so that DRAIN_BATCH
/// stops them first, or 1,350 1-KiB invs (then the next drain follows at once). In a burst of
/// blocks the events ring holds the chunks of those that found the payload rings full, and
/// taking them all first (into fresh pages, slowly) would leave the earlier blocks' chunks, into
/// warm buffers, no room in the drain.
const EVENTS_PASS_BYTES: usize = 2 * 1024 * 1024;

/// How long a drain keeps looking for more of a payload that is still arriving before it
/// decodes what it has: the kernel copies a 32 KiB chunk in a few µs.
const FOLLOW_IDLE: Duration = Duration::from_micros(200);

/// The kernel wakes the reader once this much is unread (or an eighth of a smaller ring). The
/// drain timer does most of the work: at 300,000 pings/s it collects a few hundred events per
/// millisecond, and each wakeup costs the reader, the publisher and NATS a round of thread
/// switches whatever the number of events, so a batch that small (64 KiB, about 110 events)
/// cost a third more CPU per event. The wakeup is for a burst that would otherwise wait for the
/// timer with a lot unread: 512 KiB is about 900 events, 3 ms at 300,000/s.
const WAKEUP_BYTES: u32 = 512 * 1024;

impl TracerConfig {
    pub fn new(binary: impl Into<PathBuf>) -> TracerConfig {
        TracerConfig {
            binary: binary.into(),
            pid: None,
            tracepoints: Tracepoint::ALL.iter().copied().collect(),
            ring_bytes: DEFAULT_RING_BYTES,
            capture_limit: DEFAULT_CAPTURE_LIMIT,
            count_only: false,
            warm_payload_bytes: crate::event::DEFAULT_WARM_BYTES,
            perf_links: false,
        }
    }
}

pub use crate::attachment::{AttachedProbe, Attachment};

/// The loaded program, as the attach paths take it: for a perf link per probe (any kernel with
/// perf links), and, where the kernel has them (6.6+), for one multi-uprobe link per file.
pub(crate) struct Programs {
    pub(crate) perf: ProgramFd,
    pub(crate) multi: Option<std::os::fd::OwnedFd>,
    pub(crate) pmu: UprobePmu,
}

pub struct Tracer {
    // Field order matters on drop: links detach before the object is unloaded.
    attachments: Vec<Attachment>,
    programs: Programs,
    specs: Array<MapData, UsdtSpec>,
    cookies: Cookies,
    ring: AsyncFd<Ring>,
    /// Read after the events ring: the chunks of events it has announced (the kernel wakes the
    /// reader for the events ring only).
    payload_rings: Vec<PayloadRing>,
    /// Set to ask the kernel for a wakeup on the next record.
    reader_waiting: Array<MapData, u32>,
    /// Whether `reader_waiting` was set since the last drain that took records.
    waiting: bool,
    drops: PerCpuArray<MapData, u64>,
    payload_drops: PerCpuArray<MapData, u64>,
    count_only: PerCpuArray<MapData, u64>,
    _ebpf: Ebpf,
    _kernel_log: KernelLog,
    reassembler: Reassembler,
    drain_timer: DrainTimer,
    kernel_memory_bytes: u64,
}

impl Tracer {
    /// Loads the kernel object and attaches every selected tracepoint `config.binary` has.
    /// Must be called within a tokio runtime.
    pub fn attach(config: &TracerConfig) -> Result<Tracer, TracerError> {
        kernel::require(&kernel::probe())?;
        let wakeup_bytes = WAKEUP_BYTES.min(config.ring_bytes / 8) as u64;
        let payload_ring_bytes = payload_ring_bytes(config.ring_bytes);
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries("EVENTS", config.ring_bytes)
            .override_global("CAPTURE_LIMIT", &config.capture_limit, true)
            .override_global("WAKEUP_BYTES", &wakeup_bytes, true);
        for (name, bytes) in PAYLOAD_RINGS.iter().zip(payload_ring_bytes) {
            loader.map_max_entries(name, bytes);
        }
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        let kernel_memory_bytes = memory::kernel_memory(&ebpf)?;
        let program_name = if config.count_only {
            "usdt_count"
        } else {
            "usdt"
        };
        let program: &mut UProbe = ebpf
            .program_mut(program_name)
            .expect("the object defines both programs")
            .try_into()?;
        program.load()?;
        let program = program.fd()?.try_clone()?;
        // Loaded before any map is taken out of `ebpf`: its relocation needs them all.
        let multi_program = (!config.perf_links)
            .then(|| usdt::multi::load_program(&ebpf, EBPF_OBJECT, program_name))
            .flatten();
        let kernel_log = KernelLog::forward(&mut ebpf);
        let pmu = UprobePmu::detect()?;
        let mut specs = Array::try_from(ebpf.take_map("USDT_SPECS").expect("USDT_SPECS"))?;
        let cookies = Cookies::new();
        let programs = Programs {
            perf: program,
            multi: multi_program,
            pmu,
        };
        let first = Attachment::new(config, &programs, &mut specs, &cookies)?;
        let ring = Ring::new(take_ring(&mut ebpf, "EVENTS"), config.ring_bytes as usize)?;
        let payload_rings = PAYLOAD_RINGS
            .iter()
            .zip(payload_ring_bytes)
            .map(|(name, bytes)| {
                Ring::new(take_ring(&mut ebpf, name), bytes as usize).map(|ring| PayloadRing {
                    ring,
                    early_chunk_since: None,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let drops = PerCpuArray::try_from(ebpf.take_map("DROPS").expect("DROPS"))?;
        let payload_drops =
            PerCpuArray::try_from(ebpf.take_map("PAYLOAD_DROPS").expect("PAYLOAD_DROPS"))?;
        let count_only = PerCpuArray::try_from(ebpf.take_map("COUNT_ONLY").expect("COUNT_ONLY"))?;
        let reader_waiting =
            Array::try_from(ebpf.take_map("READER_WAITING").expect("READER_WAITING"))?;
        // SAFETY: the AsyncFd owns the ring and its map, so the descriptor outlives the
        // registration.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|e| e.into_parts().1)?;
        Ok(Tracer {
            attachments: vec![first],
            programs,
            specs,
            cookies,
            ring,
            payload_rings,
            reader_waiting,
            waiting: false,
            drops,
            payload_drops,
            count_only,
            _ebpf: ebpf,
            _kernel_log: kernel_log,
            reassembler: {
                let mut reassembler = Reassembler::new(WallClock::now(), config.capture_limit)
                    .with_warm_buffers(config.warm_payload_bytes);
                while reassembler.refill_warm_buffer() {}
                reassembler
            },
            drain_timer: {
                let timer = DrainTimer::new()?;
                timer.arm(BATCH_DELAY);
                timer
            },
            kernel_memory_bytes,
        })
    }

    /// Attaches the file at `config.binary` (or, with `config.pid`, one process of it) as
    /// well, into the same ring: nothing falls between it and what is attached already.
    pub fn attach_also(&mut self, config: &TracerConfig) -> Result<&Attachment, TracerError> {
        let attachment = Attachment::new(config, &self.programs, &mut self.specs, &self.cookies)?;
        self.attachments.push(attachment);
        Ok(self.attachments.last().expect("just pushed"))
    }

    /// What is attached, oldest first.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Every probe attached, of every attachment.
    pub fn attached(&self) -> impl Iterator<Item = &AttachedProbe> {
        self.attachments.iter().flat_map(|a| a.attached.iter())
    }

    /// The newest attachment: what the file at the path now offers.
    pub fn newest(&self) -> &Attachment {
        self.attachments.last().expect("a tracer has an attachment")
    }

    /// Detaches the attachments `which` picks, off the runtime's threads (see
    /// [`Tracer::detach`]); what they sent stays in the ring and is read as usual.
    pub fn detach_where(
        &mut self,
        which: impl Fn(&Attachment) -> bool,
    ) -> impl std::future::Future<Output = ()> + 'static {
        let (going, staying) = std::mem::take(&mut self.attachments)
            .into_iter()
            .partition(|a| which(a));
        self.attachments = staying;
        close(going)
    }

    /// Waits until at least one event is complete and appends all complete events, decoded
    /// and with their payloads, to `out`. Cancel-safe: records are only taken from the ring
    /// between awaits.
    pub async fn read_events(&mut self, out: &mut Vec<TraceEvent>) -> Result<(), TracerError> {
        let before = out.len();
        loop {
            self.wait_for_records().await?;
            let taken = self.drain()?;
            // Also closes an event at the queue's head whose chunks stopped coming.
            self.reassembler.pop_ready(out, Instant::now());
            let caught_up = self.pace(taken)?;
            if caught_up && self.reassembler.open_events() == 0 {
                // Caught up: time to make a warm buffer used by the last burst again.
                self.reassembler.refill_warm_buffer();
            }
            if out.len() > before {
                return Ok(());
            }
        }
    }

    /// For benchmarks, the floor under [`Tracer::read_events`]: waits and drains the same way,
    /// but only counts the event records it takes, decoding nothing. Returns how many (at
    /// least one).
    pub async fn count_events(&mut self) -> Result<u64, TracerError> {
        loop {
            self.wait_for_records().await?;
            let mut events = 0;
            let mut taken = self
                .ring
                .get_mut()
                .drain(DRAIN_BATCH, DRAIN_BYTES, |record| {
                    events += (record.first() == Some(&record_kind::EVENT)) as u64;
                    true
                })?;
            for payload in &mut self.payload_rings {
                taken += payload.ring.drain(
                    usize::MAX,
                    DRAIN_BYTES.saturating_sub(taken.bytes),
                    |_| true,
                )?;
            }
            self.pace(taken.records)?;
            if events > 0 {
                return Ok(events);
            }
        }
    }

    /// Until the kernel wakes the reader (the ring passed a fill threshold, or the reader asked
    /// for the next record) or the drain timer fires.
    async fn wait_for_records(&mut self) -> Result<(), TracerError> {
        tokio::select! {
            ready = self.ring.readable_mut() => {
                // Cleared before draining: records submitted meanwhile wake us again.
                ready?.clear_ready();
            }
            fired = self.drain_timer.fired() => fired?,
        }
        Ok(())
    }

    /// Sets when the ring is drained next, after a drain that took `taken` records: soon while
    /// records come (or payloads are being reassembled); once the ring is found empty, on the
    /// kernel's wakeup. Setting the wakeup request races a record submitted just before it,
    /// which would not wake us: the first empty drain is therefore followed by one more look.
    /// Returns whether the drain caught up with the kernel (did not stop at its limits).
    fn pace(&mut self, taken: usize) -> Result<bool, TracerError> {
        let stopped_at_limit = self.ring.get_ref().stopped_at_limit()
            || self.payload_rings.iter().any(|p| p.ring.stopped_at_limit());
        if stopped_at_limit {
            // The drain stopped at its limits: the rest as soon as the events are out.
            self.waiting = false;
            self.drain_timer.arm(Duration::ZERO);
        } else if taken > 0 || self.reassembler.open_events() > 0 {
            self.waiting = false;
            self.drain_timer.arm(BATCH_DELAY);
        } else if !self.waiting {
            self.reader_waiting.set(0, 1, 0)?;
            self.waiting = true;
            self.drain_timer.arm(BATCH_DELAY);
        } else {
            self.drain_timer.arm(IDLE_CHECK);
        }
        Ok(!stopped_at_limit)
    }

    /// Feeds what the rings hold to the reassembler, up to [`DRAIN_BATCH`] records of the
    /// events ring and [`DRAIN_BYTES`] in all; returns how many records it took. While a payload
    /// is still arriving, it follows the kernel's copy ([`FOLLOW_IDLE`]).
    fn drain(&mut self) -> Result<usize, TracerError> {
        self.reassembler.take_warm_bytes();
        let (mut taken, mut warm) = (Drained::default(), 0);
        let mut last_progress = Instant::now();
        loop {
            let pass = self.drain_once(DRAIN_BYTES + warm - taken.bytes)?;
            taken += pass;
            // Bytes into warm buffers are memory resident already: not counted.
            let pass_warm = self.reassembler.take_warm_bytes();
            warm += pass_warm;
            // A burst of large payloads lasts milliseconds: taking its bytes as they come
            // leaves the rings room for the rest, where decoding the first payload would leave
            // them none. Followed while a payload is open or the pass filled warm buffers.
            let following = self.reassembler.open_events() > 0 || pass_warm > 0;
            if !following || taken.bytes >= DRAIN_BYTES + warm {
                break;
            }
            if pass.records > 0 {
                last_progress = Instant::now();
            } else if last_progress.elapsed() >= FOLLOW_IDLE {
                break;
            } else {
                std::hint::spin_loop();
            }
        }
        Ok(taken.records)
    }

    /// One pass of [`Tracer::drain`], up to `max_bytes` in all: the payload rings, the events
    /// ring, then the payload rings again for the events just read. The chunks of events read
    /// already come first: a burst of blocks whose chunks are in the events ring (the payload
    /// rings were full) would otherwise take all the room, while the oldest event, whose
    /// chunks are in a payload ring, holds them all back in the heap.
    fn drain_once(&mut self, max_bytes: usize) -> Result<Drained, TracerError> {
        let now = Instant::now();
        let mut taken = self.drain_payload_rings(max_bytes, now)?;
        let reassembler = &mut self.reassembler;
        taken += self.ring.get_mut().drain(
            DRAIN_BATCH,
            max_bytes.saturating_sub(taken.bytes).min(EVENTS_PASS_BYTES),
            |record| {
                reassembler.push_bytes(record, now);
                true
            },
        )?;
        taken += self.drain_payload_rings(max_bytes.saturating_sub(taken.bytes), now)?;
        Ok(taken)
    }

    /// The chunks the payload rings hold for the events read, up to `max_bytes` in all.
    fn drain_payload_rings(
        &mut self,
        max_bytes: usize,
        now: Instant,
    ) -> Result<Drained, TracerError> {
        let mut taken = Drained::default();
        let reassembler = &mut self.reassembler;
        let events = self.ring.get_ref();
        for payload in &mut self.payload_rings {
            let left = max_bytes.saturating_sub(taken.bytes);
            taken += payload.ring.drain(usize::MAX, left, |record| {
                // The kernel sends an event's record before its chunks: a chunk of an event not
                // read yet waits in its ring until the events ring is read past every record
                // reserved when the chunk was first seen. Then it is stray.
                let taken = reassembler.push_payload_bytes(record, now, || {
                    let before = *payload
                        .early_chunk_since
                        .get_or_insert_with(|| events.producer_pos());
                    events.consumer_pos() < before
                });
                if taken {
                    payload.early_chunk_since = None;
                }
                taken
            })?;
        }
        Ok(taken)
    }

    /// Detaches every probe: the kernel removes the breakpoints and lowers the semaphores. The
    /// returned future resolves once it is done: from then on no program runs any more and
    /// nothing new enters the ring. The maps stay: what the ring holds can still be read
    /// ([`Tracer::drain_detached`]), and the drop counters too.
    ///
    /// The kernel waits for an RCU grace period for each probe, one probe at a time (about
    /// 0.1 s each here: 2 s for Bitcoin Core's 20), so the future does not borrow the tracer:
    /// the ring can be read meanwhile.
    pub fn detach(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        close(std::mem::take(&mut self.attachments))
    }

    /// After [`Tracer::detach`]: appends every event left in the ring to `out`, reading until
    /// the ring has stayed empty for [`DETACHED_QUIET`] or `deadline` comes. Events whose
    /// payload chunks have not all arrived by then never will: they are closed as cut, as
    /// their timeout would close them; returns how many.
    pub async fn drain_detached(
        &mut self,
        out: &mut Vec<TraceEvent>,
        deadline: tokio::time::Instant,
    ) -> usize {
        let mut last_record = Instant::now();
        loop {
            let taken = match self.drain() {
                Ok(taken) => taken,
                Err(error) => {
                    tracing::warn!(%error, "stopped reading the ring after the detach");
                    break;
                }
            };
            let now = Instant::now();
            self.reassembler.pop_ready(out, now);
            if taken > 0 {
                last_record = now;
            }
            if now.duration_since(last_record) >= DETACHED_QUIET {
                break;
            }
            if now >= deadline.into_std() {
                tracing::warn!(
                    "the ring still delivered records after the detach; stopped reading it"
                );
                break;
            }
            if taken < DRAIN_BATCH {
                self.drain_timer.arm(BATCH_DELAY);
                if let Err(error) = self.drain_timer.fired().await {
                    tracing::warn!(%error, "the drain timer failed; stopped reading the ring");
                    break;
                }
            }
        }
        let cut = self.reassembler.close_open();
        self.reassembler.pop_ready(out, Instant::now());
        cut
    }

    /// Records the kernel could not send (ring full), per tracepoint, since attach.
    pub fn kernel_drops(&self) -> Result<Vec<(Tracepoint, u64)>, TracerError> {
        per_tracepoint(&self.drops)
    }

    /// Events whose payload the kernel cut because the ring filled while it copied it, per
    /// tracepoint, since attach. These events are delivered, with
    /// `payload_cut == Some(PayloadCut::RingFull)`.
    pub fn kernel_payload_drops(&self) -> Result<Vec<(Tracepoint, u64)>, TracerError> {
        per_tracepoint(&self.payload_drops)
    }

    /// Payload chunks of no waiting event, and events released with their payload cut because
    /// their chunks stopped coming (timeout) or reading stopped (shutdown), since attach.
    pub fn reassembly_counts(&self) -> ReassemblyCounts {
        self.reassembler.counts()
    }

    /// Firings counted by the count-only program ([`TracerConfig::count_only`]) since attach.
    pub fn count_only_firings(&self) -> Result<u64, TracerError> {
        Ok(self.count_only.get(&0, 0)?.iter().sum())
    }

    /// Kernel memory held by the object's maps: the ring, the spec array, the counters and
    /// per-CPU state on every possible CPU, and the configuration globals.
    pub fn kernel_memory_bytes(&self) -> u64 {
        self.kernel_memory_bytes
    }
}

/// A payload ring, and the events ring's producer position when the chunk at its head was first
/// found to belong to no event read yet.
struct PayloadRing {
    ring: Ring,
    early_chunk_since: Option<u64>,
}

/// The payload rings' maps, in the order the kernel tries them.
const PAYLOAD_RINGS: [&str; payload_ring::COUNT as usize] =
    ["PAYLOAD_RING_1", "PAYLOAD_RING_2", "PAYLOAD_RING_3"];

/// The payload rings' sizes for an events ring of `ring_bytes`: a page at least.
fn payload_ring_bytes(ring_bytes: u32) -> [u32; payload_ring::COUNT as usize] {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
    payload_ring::SIZE_SHIFT.map(|shift| (ring_bytes >> shift).max(page))
}

fn take_ring(ebpf: &mut Ebpf, name: &str) -> MapData {
    match ebpf.take_map(name) {
        Some(aya::maps::Map::RingBuf(data)) => data,
        _ => unreachable!("the object defines the ring buffer {name}"),
    }
}

/// Closes `attachments` on a blocking thread; resolves once the kernel has detached them.
fn close(attachments: Vec<Attachment>) -> impl std::future::Future<Output = ()> + 'static {
    let closing = tokio::task::spawn_blocking(move || drop(attachments));
    async move {
        if let Err(error) = closing.await {
            tracing::warn!(%error, "detaching failed");
        }
    }
}

fn per_tracepoint(
    counters: &PerCpuArray<MapData, u64>,
) -> Result<Vec<(Tracepoint, u64)>, TracerError> {
    let mut counts = Vec::new();
    for tp in Tracepoint::ALL {
        let per_cpu = counters.get(&(*tp as u32), 0)?;
        let total: u64 = per_cpu.iter().sum();
        if total > 0 {
            counts.push((*tp, total));
        }
    }
    Ok(counts)
}
