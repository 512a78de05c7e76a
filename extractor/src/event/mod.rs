//! A tracepoint firing as userspace sees it: the kernel's record decoded by the catalogue, with
//! its payload (if any) put back together from the chunk records that follow it
//! ([`Reassembler`]).

mod reassembler;
mod warm_buffers;

pub use reassembler::{Reassembler, ReassemblyCounts, PAYLOAD_TIMEOUT};
pub use warm_buffers::DEFAULT_WARM_BYTES;

use extractor_common::usdt::{capture, flags, record_kind, ChunkHeader, TraceRecord};
pub use extractor_common::ArgValue;
use extractor_common::{ArgKind, Tracepoint};

use crate::plan::{arg_value, capture_plan};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    pub tracepoint: Tracepoint,
    pub pid: u32,
    pub tid: u32,
    /// Wall-clock time of the probe, ns since the UNIX epoch.
    pub time_ns: u64,
    pub args: Vec<ArgValue>,
    /// An argument could not be read from the traced process; it shows as 0 or "".
    pub read_failed: bool,
    /// Why the payload argument (`ArgValue::Bytes`) holds fewer bytes than the size argument.
    pub payload_cut: Option<PayloadCut>,
}

/// Why an event's payload holds fewer bytes than its size argument says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadCut {
    /// The kernel copied only the first `TracerConfig::capture_limit` bytes.
    CaptureLimit,
    /// The payload (or the pointer to it) could not be read from the traced process.
    ReadFailed,
    /// The ring buffer filled while the kernel copied it: counted by
    /// `Tracer::kernel_payload_drops`.
    RingFull,
}

/// Converts the kernel's CLOCK_BOOTTIME stamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    realtime_minus_boottime_ns: i128,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl WallClock {
    pub fn now() -> WallClock {
        WallClock {
            realtime_minus_boottime_ns: clock_ns(libc::CLOCK_REALTIME)
                - clock_ns(libc::CLOCK_BOOTTIME),
        }
    }

    pub fn wall_ns(&self, boot_ns: u64) -> u64 {
        (boot_ns as i128 + self.realtime_minus_boottime_ns).max(0) as u64
    }
}

impl TraceEvent {
    /// Decodes one event record; a payload argument holds the bytes that came `inline` in the
    /// record, or starts empty, without room (its bytes come in chunks, into a buffer the
    /// [`Reassembler`] gives it). A record of an unknown tracepoint
    /// cannot come from our kernel program: it panics.
    pub fn decode(record: &TraceRecord, inline: Option<&[u8]>, clock: &WallClock) -> TraceEvent {
        let tracepoint = Tracepoint::from_index(record.tracepoint)
            .expect("kernel sent a tracepoint we never attached");
        let mut slots = capture_plan(tracepoint);
        let args = (0..record.arg_count as usize)
            .map(|i| match slots.next() {
                Some((capture::CSTRING, slot)) => ArgValue::Str {
                    bytes: record.string(slot as usize).to_vec(),
                    truncated: record.string_truncated(slot as usize),
                },
                Some((capture::HASH, slot)) => ArgValue::Hash(record.hashes[slot as usize]),
                Some((capture::PAYLOAD, _)) => ArgValue::Bytes(match inline {
                    Some(bytes) => bytes.to_vec(),
                    None => Vec::new(),
                }),
                _ => arg_value(tracepoint, i, record.args[i]),
            })
            .collect();
        TraceEvent {
            tracepoint,
            pid: record.pid,
            tid: record.tid,
            time_ns: clock.wall_ns(record.boot_time_ns),
            args,
            read_failed: record.flags & flags::READ_FAILED != 0,
            payload_cut: None,
        }
    }

    /// The index of the payload argument, if the tracepoint has one.
    fn payload_arg(&self) -> Option<usize> {
        let index = self
            .tracepoint
            .args()
            .iter()
            .position(|kind| *kind == ArgKind::Bytes)?;
        (index < self.args.len()).then_some(index)
    }
}

/// One record read from the ring buffer, borrowed from it (no copy: this runs for every event).
pub enum RingRecord<'a> {
    /// An event, with its payload when it came in the same record.
    Event {
        record: &'a TraceRecord,
        inline: Option<&'a [u8]>,
    },
    Chunk {
        header: ChunkHeader,
        data: &'a [u8],
    },
}

/// A ring record that is not what our kernel program sends: discarded and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedRecord {
    #[error("a ring record of unknown kind {kind} ({len} bytes)")]
    UnknownKind { kind: u8, len: usize },
    #[error("an empty ring record")]
    Empty,
    #[error("a {what} record of {len} bytes, shorter than the {needed} its header and data need")]
    Short {
        what: &'static str,
        len: usize,
        needed: usize,
    },
    #[error("an event record not aligned to 8 bytes")]
    Misaligned,
    #[error("an event record in a payload ring, which holds only payload chunks")]
    EventInPayloadRing,
}

impl<'a> RingRecord<'a> {
    /// Parses a ring record, which the kernel program laid out.
    pub fn parse(bytes: &'a [u8]) -> Result<RingRecord<'a>, MalformedRecord> {
        let short = |what, needed| MalformedRecord::Short {
            what,
            len: bytes.len(),
            needed,
        };
        match bytes.first() {
            Some(&record_kind::EVENT) => {
                let record_len = std::mem::size_of::<TraceRecord>();
                if bytes.len() < record_len {
                    return Err(short("event", record_len));
                }
                // The kernel aligns every ring record to 8 bytes, TraceRecord's alignment.
                if !bytes.as_ptr().cast::<TraceRecord>().is_aligned() {
                    return Err(MalformedRecord::Misaligned);
                }
                // SAFETY: TraceRecord is plain data valid for any bit pattern; the bytes are long
                // enough and aligned (checked above) and borrowed for the reference's lifetime.
                let record = unsafe { &*bytes.as_ptr().cast::<TraceRecord>() };
                let inline = if record.flags & flags::PAYLOAD_INLINE != 0 {
                    let data = &bytes[record_len..];
                    let Some(inline) = data.get(..record.payload_len as usize) else {
                        return Err(short("event", record_len + record.payload_len as usize));
                    };
                    Some(inline)
                } else {
                    None
                };
                Ok(RingRecord::Event { record, inline })
            }
            Some(&record_kind::PAYLOAD_CHUNK) => {
                let header_len = std::mem::size_of::<ChunkHeader>();
                if bytes.len() < header_len {
                    return Err(short("payload chunk", header_len));
                }
                // SAFETY: ChunkHeader is plain data valid for any bit pattern, and the bytes are
                // long enough (checked above); read unaligned, as a copy.
                let header: ChunkHeader =
                    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
                let Some(data) = bytes[header_len..].get(..header.len as usize) else {
                    return Err(short("payload chunk", header_len + header.len as usize));
                };
                Ok(RingRecord::Chunk { header, data })
            }
            Some(&kind) => Err(MalformedRecord::UnknownKind {
                kind,
                len: bytes.len(),
            }),
            None => Err(MalformedRecord::Empty),
        }
    }
}

impl std::fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} pid={}", self.tracepoint, self.pid)?;
        let names = self.tracepoint.arg_names();
        for (i, value) in self.args.iter().enumerate() {
            match names.get(i) {
                Some(name) => write!(f, " {name}={value}")?,
                None => write!(f, " arg{i}={value}")?,
            }
        }
        if let Some(cut) = self.payload_cut {
            write!(f, " (payload cut: {cut:?})")?;
        }
        if self.read_failed {
            write!(f, " (some arguments unreadable)")?;
        }
        Ok(())
    }
}
