//! A fast, dependency-free fuzz harness for `decode_p2p`: seeded mutations of real payloads
//! (built with rust-bitcoin) and random inputs, across all message types, on every core.
//!
//! `cargo run --release -p nodescope-proto --example fuzz_p2p -- <iterations> [seed]`
//!
//! `... --example fuzz_p2p -- --write-corpus <dir>` writes the real payloads as seeds for the
//! cargo-fuzz target in proto/fuzz (first byte = index in `MESSAGE_TYPES`, then the payload).
//!
//! Prints `inputs=<N> panics=<P> elapsed_s=<f> rate_per_s=<f>`; each panic is reported with its
//! message type and payload hex, and the process exits non-zero.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use nodescope_proto::p2p::samples::sample_payloads;
use nodescope_proto::p2p::{decode_p2p_unguarded, DecodeOptions, MESSAGE_TYPES};

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Values that make decoders take unusual paths: CompactSize prefixes, limits, zero, all ones.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x20, 0x40, 0x7f, 0x80, 0xfc, 0xfd, 0xfe, 0xff,
];

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, samples: &[(&'static str, Vec<u8>)]) {
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                bytes[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                bytes[i] = rng.next() as u8;
            }
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let insert = rng.bytes(n);
                bytes.splice(at..at, insert);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below(16);
                bytes.drain(at..(at + n).min(len));
            }
            5 => {
                let cut = rng.below(len + 1);
                bytes.truncate(cut);
            }
            6 if len > 0 => {
                // duplicate a chunk somewhere else
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(64));
                let chunk = bytes[from..from + n].to_vec();
                let at = rng.below(len + 1);
                bytes.splice(at..at, chunk);
            }
            7 => {
                // splice in part of another real payload
                let other = &samples[rng.below(samples.len())].1;
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - from);
                    let at = rng.below(len + 1);
                    bytes.splice(at..at, other[from..from + n].iter().copied());
                }
            }
            _ if len > 0 => {
                // overwrite 2/4/8 bytes with a little-endian extreme
                let width = [2, 4, 8][rng.below(3)];
                let at = rng.below(len);
                let value: u64 = [
                    0,
                    1,
                    u64::MAX,
                    0x7fff_ffff_ffff_ffff,
                    0xffff,
                    0x1_0000,
                    4_000_001,
                ][rng.below(7)];
                for (k, b) in value.to_le_bytes().iter().take(width).enumerate() {
                    if at + k < bytes.len() {
                        bytes[at + k] = *b;
                    }
                }
            }
            _ => {}
        }
    }
}

fn input(rng: &mut Rng, samples: &[(&'static str, Vec<u8>)]) -> (&'static str, Vec<u8>, u64) {
    let pick = rng.below(100);
    let (msg_type, payload) = if pick < 65 {
        let (msg_type, original) = &samples[rng.below(samples.len())];
        let mut bytes = original.clone();
        mutate(rng, &mut bytes, samples);
        (*msg_type, bytes)
    } else if pick < 85 {
        let n = rng.below(300);
        let msg_type = if rng.below(50) == 0 {
            "foo"
        } else {
            MESSAGE_TYPES[rng.below(MESSAGE_TYPES.len())]
        };
        (msg_type, rng.bytes(n))
    } else {
        let n = rng.below(300);
        let mut bytes = vec![rng.below(6) as u8];
        bytes.extend(rng.bytes(n));
        (MESSAGE_TYPES[rng.below(MESSAGE_TYPES.len())], bytes)
    };
    // Mostly complete captures; sometimes a reported size larger than the capture.
    let size = if rng.below(20) == 0 {
        payload.len() as u64 + 1 + rng.below(4_000_000) as u64
    } else {
        payload.len() as u64
    };
    (msg_type, payload, size)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_corpus(dir: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (msg_type, payload) in sample_payloads() {
        let index = MESSAGE_TYPES
            .iter()
            .position(|t| *t == msg_type)
            .unwrap_or(0);
        let mut seed = vec![index as u8];
        seed.extend(payload);
        std::fs::write(format!("{dir}/{msg_type}"), seed)?;
    }
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--write-corpus") {
        let dir = args
            .nth(1)
            .unwrap_or_else(|| "proto/fuzz/corpus/decode_p2p".to_string());
        if let Err(e) = write_corpus(&dir) {
            eprintln!("writing {dir}: {e}");
            std::process::exit(1);
        }
        println!("wrote {} seeds to {dir}", MESSAGE_TYPES.len());
        return;
    }
    let iterations: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(0x6e6f_6465);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let samples = sample_payloads();
    std::panic::set_hook(Box::new(|_| {}));

    let done = AtomicU64::new(0);
    let panics = AtomicU64::new(0);
    let reports: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads as u64 {
            let (samples, done, panics, reports) = (&samples, &done, &panics, &reports);
            let share = iterations / threads as u64 + u64::from(t < iterations % threads as u64);
            scope.spawn(move || {
                let mut rng = Rng(seed ^ (t.wrapping_mul(0xa076_1d64_78bd_642f)));
                for _ in 0..share {
                    let (msg_type, payload, size) = input(&mut rng, samples);
                    let result = catch_unwind(AssertUnwindSafe(|| {
                        let m = decode_p2p_unguarded(
                            msg_type,
                            &payload,
                            size,
                            DecodeOptions::default(),
                        );
                        // the invariants, as in tests/p2p_fuzz.rs
                        assert!(m.body.is_some() || m.unknown_type || !m.decode_error.is_empty());
                        assert!(m.body.is_some() || m.raw == payload);
                    }));
                    if result.is_err() {
                        panics.fetch_add(1, Ordering::Relaxed);
                        let mut reports = reports.lock().unwrap_or_else(|e| e.into_inner());
                        if reports.len() < 20 {
                            reports.push(format!(
                                "panic: msg_type={msg_type} size={size} payload={}",
                                hex(&payload)
                            ));
                        }
                    }
                }
                done.fetch_add(share, Ordering::Relaxed);
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    for report in reports.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        eprintln!("{report}");
    }
    let inputs = done.load(Ordering::Relaxed);
    let panics = panics.load(Ordering::Relaxed);
    println!(
        "inputs={inputs} panics={panics} elapsed_s={elapsed:.3} rate_per_s={:.0}",
        inputs as f64 / elapsed
    );
    if panics > 0 {
        std::process::exit(1);
    }
}
