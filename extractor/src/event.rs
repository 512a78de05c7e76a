//! A tracepoint firing as userspace sees it: the kernel's record decoded by the catalogue.

use extractor_common::usdt::{flags, TraceRecord};
pub use extractor_common::ArgValue;
use extractor_common::Tracepoint;

use crate::tracer::{arg_value, capture_slots};
use extractor_common::usdt::capture;

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
    /// Decodes one ring-buffer record. A record of an unknown tracepoint or a short record
    /// cannot come from our kernel program; it would be a bug, so it panics loudly in debug.
    pub fn decode(bytes: &[u8], clock: &WallClock) -> TraceEvent {
        assert!(
            bytes.len() >= std::mem::size_of::<TraceRecord>(),
            "short ring record"
        );
        // SAFETY: TraceRecord is plain data valid for any bit pattern; read_unaligned copes
        // with the ring's 8-byte alignment not being guaranteed to the compiler.
        let record: TraceRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let tracepoint = Tracepoint::from_index(record.tracepoint)
            .expect("kernel sent a tracepoint we never attached");
        let slots = capture_slots(tracepoint);
        let args = (0..record.arg_count as usize)
            .map(|i| match slots.get(i) {
                Some(&(capture::CSTRING, slot)) => ArgValue::Str {
                    bytes: record.string(slot as usize).to_vec(),
                    truncated: record.string_truncated(slot as usize),
                },
                Some(&(capture::HASH, slot)) => ArgValue::Hash(record.hashes[slot as usize]),
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
        if self.read_failed {
            write!(f, " (some arguments unreadable)")?;
        }
        Ok(())
    }
}
