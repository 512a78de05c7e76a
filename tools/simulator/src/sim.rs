//! The event engine: Core's "check the semaphore, then evaluate the arguments, then probe" order,
//! the ground-truth log, pacing, and the SIGINT/SIGTERM stop flag.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use extractor_common::Tracepoint;

use crate::probes::{check_args, Arg, Probes};
use crate::truth::TruthWriter;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM set a flag; the run loops end early and the caller flushes the truth file.
pub fn install_stop_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t);
        }
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// CLOCK_REALTIME in ns.
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An owned probe argument, built only once the tracepoint is known to be active.
#[derive(Clone, Debug)]
pub enum Value {
    Int(i128),
    Str(CString),
    Bytes(Vec<u8>),
    /// A pointer argument with this raw, unreadable address (see [`Arg::Unreadable`]).
    Unreadable(usize),
}

impl Value {
    pub fn as_arg(&self) -> Arg<'_> {
        match self {
            Value::Int(v) => Arg::Int(*v),
            Value::Str(s) => Arg::Str(s),
            Value::Bytes(b) => Arg::Bytes(b),
            Value::Unreadable(address) => Arg::Unreadable(*address),
        }
    }
}

pub fn int(v: impl Into<i128>) -> Value {
    Value::Int(v.into())
}

pub fn string(s: &str) -> Value {
    Value::Str(CString::new(s).expect("probe strings have no NUL"))
}

pub fn bytes(b: impl Into<Vec<u8>>) -> Value {
    Value::Bytes(b.into())
}

/// A pointer argument the tracer cannot read: `address` is handed to the probe as is.
pub fn unreadable(address: usize) -> Value {
    Value::Unreadable(address)
}

pub struct Sim<'p> {
    probes: &'p Probes,
    truth: Option<TruthWriter>,
    pace: Duration,
    seq: u64,
    pub attempted: u64,
}

impl<'p> Sim<'p> {
    pub fn new(probes: &'p Probes, truth: Option<TruthWriter>, pace: Duration) -> Sim<'p> {
        Sim {
            probes,
            truth,
            pace,
            seq: 0,
            attempted: 0,
        }
    }

    pub fn probes(&self) -> &'p Probes {
        self.probes
    }

    pub fn fired(&self) -> u64 {
        self.seq
    }

    /// One tracepoint site: `build` runs only if the tracepoint is active, like Core's argument
    /// evaluation. Returns whether the probe fired. Does nothing once a stop was requested.
    pub fn emit(&mut self, tp: Tracepoint, build: impl FnOnce() -> Vec<Value>) -> bool {
        if stop_requested() {
            return false;
        }
        if !self.pace.is_zero() && self.attempted > 0 {
            std::thread::sleep(self.pace);
        }
        self.attempted += 1;
        if !self.probes.active(tp) {
            return false;
        }
        let values = build();
        let args: Vec<Arg<'_>> = values.iter().map(Value::as_arg).collect();
        check_args(tp, &args);
        self.fire(tp, &args)
    }

    /// Calls the probe with ready-made arguments and logs it if it fired. The caller has already
    /// counted the attempt and checked the semaphore (the load loop's fast path).
    #[inline]
    pub fn fire(&mut self, tp: Tracepoint, args: &[Arg<'_>]) -> bool {
        let ts_ns = if self.truth.is_some() {
            realtime_ns()
        } else {
            0
        };
        if !self.probes.fire(tp, args) {
            return false;
        }
        if let Some(truth) = &mut self.truth {
            truth.record(self.seq, ts_ns, tp, args);
        }
        self.seq += 1;
        true
    }

    pub fn count_attempt(&mut self) {
        self.attempted += 1;
    }

    pub fn finish(&mut self) -> anyhow::Result<()> {
        match &mut self.truth {
            Some(truth) => truth.flush(),
            None => Ok(()),
        }
    }
}
