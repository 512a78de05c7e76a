//! `load`: net:inbound_message / net:outbound_message as fast as possible (or at a fixed rate),
//! with payloads built once so the loop measures the tracepoint, not the payload builder.

use std::ffi::CString;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_compact_blocks::{CmpctBlock, SendCmpct};
use bitcoin::p2p::message_filter::{CFCheckpt, GetCFCheckpt};
use bitcoin::{bip152, BlockHash, OutPoint, Txid};
use extractor_common::Tracepoint;

use crate::payloads::{self as p, Rng};
use crate::probes::Arg;
use crate::sim::{stop_requested, Sim};

#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    Inbound,
    Outbound,
    Both,
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// `(message type, weight)`.
    pub mix: Vec<(String, u32)>,
    pub direction: Direction,
    /// Events per second; 0 = flat out.
    pub rate: f64,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
}

#[derive(Copy, Clone, Debug, Default)]
pub struct LoadStats {
    pub fired: u64,
    pub attempted: u64,
    pub elapsed: Duration,
}

impl LoadStats {
    /// The one summary line `load` prints.
    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.attempted as f64 / secs
        } else {
            0.0
        };
        format!(
            "load: fired={} attempted={} elapsed_s={:.6} rate_per_s={:.1}",
            self.fired, self.attempted, secs, rate
        )
    }
}

/// Parses `ping=1,inv=3`.
pub fn parse_mix(s: &str) -> anyhow::Result<Vec<(String, u32)>> {
    let mut mix = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let weight: u32 = weight
            .trim()
            .parse()
            .with_context(|| format!("bad weight in {part:?}"))?;
        if weight > 0 {
            mix.push((name.trim().to_string(), weight));
        }
    }
    if mix.is_empty() {
        bail!("--mix {s:?} selects no message type");
    }
    if mix.iter().map(|(_, w)| *w as u64).sum::<u64>() > 100_000 {
        bail!("--mix weights must add up to at most 100000");
    }
    Ok(mix)
}

/// A valid payload for each message type the load mode offers.
pub fn sample_message(msg_type: &str, rng: &mut Rng) -> anyhow::Result<NetworkMessage> {
    let hash = |rng: &mut Rng| BlockHash::from_byte_array(rng.array());
    let localhost = "127.0.0.1:18444".parse().expect("literal address");
    let funding = |rng: &mut Rng| OutPoint {
        txid: Txid::from_byte_array(rng.array()),
        vout: 0,
    };
    let small_block = |rng: &mut Rng| {
        let txs = (0..4)
            .map(|_| {
                let prev = funding(rng);
                p::spend(rng, &[prev], &[90_000, 5_000])
            })
            .collect();
        let prev = hash(rng);
        p::block(rng, prev, 201, 1_760_000_000, txs)
    };
    Ok(match msg_type {
        "version" => p::version_message(rng, localhost, localhost, 1_760_000_000, 200),
        "verack" => NetworkMessage::Verack,
        "wtxidrelay" => NetworkMessage::WtxidRelay,
        "sendaddrv2" => NetworkMessage::SendAddrV2,
        "sendheaders" => NetworkMessage::SendHeaders,
        "getaddr" => NetworkMessage::GetAddr,
        "mempool" => NetworkMessage::MemPool,
        "sendcmpct" => NetworkMessage::SendCmpct(SendCmpct {
            send_compact: true,
            version: 2,
        }),
        "feefilter" => NetworkMessage::FeeFilter(1_000),
        "ping" => NetworkMessage::Ping(rng.next_u64()),
        "pong" => NetworkMessage::Pong(rng.next_u64()),
        "getheaders" => p::getheaders(vec![hash(rng)]),
        "headers" => NetworkMessage::Headers(vec![small_block(rng).header]),
        "inv" => p::inv_wtx(rng, 28),
        "getdata" => NetworkMessage::GetData(vec![Inventory::WitnessBlock(hash(rng))]),
        "tx" => {
            let prev = funding(rng);
            NetworkMessage::Tx(p::spend(rng, &[prev], &[90_000, 5_000]))
        }
        "block" => NetworkMessage::Block(small_block(rng)),
        "cmpctblock" => {
            let b = small_block(rng);
            let compact_block = bip152::HeaderAndShortIds::from_block(&b, rng.next_u64(), 2, &[])
                .expect("version 2 compact block");
            NetworkMessage::CmpctBlock(CmpctBlock { compact_block })
        }
        "addr" => p::addr(rng, 10, 1_760_000_000),
        "addrv2" => p::addrv2(rng, 10, 1_760_000_000),
        "getcfcheckpt" => NetworkMessage::GetCFCheckpt(GetCFCheckpt {
            filter_type: 0,
            stop_hash: hash(rng),
        }),
        "cfcheckpt" => NetworkMessage::CFCheckpt(CFCheckpt {
            filter_type: 0,
            stop_hash: hash(rng),
            filter_headers: vec![],
        }),
        other => bail!("load: unsupported message type {other:?}"),
    })
}

/// Smooth weighted round-robin: the exact proportions, evenly interleaved, deterministic.
fn schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|w| *w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            for (c, w) in current.iter_mut().zip(weights) {
                *c += *w as i64;
            }
            let best = (0..weights.len())
                .max_by_key(|i| (current[*i], -(*i as i64)))
                .expect("non-empty");
            current[best] -= total;
            best
        })
        .collect()
}

/// Events are paced per slot of this many seconds: the events of a slot are fired at its start,
/// one after the other, and the thread sleeps until the next slot, as a node's thread handles
/// what came in and then waits for more. Pacing each event on its own spun the thread between
/// events at any rate above a few thousand a second: a core taken from the tracer, NATS and the
/// subscriber, which a node's thread would not take (p99 latency at 100,000 pings/s: about 4.5
/// ms paced per event, 1.6 ms per half-millisecond slot).
const PACE_SLOT: f64 = 0.0005;

/// Sleeps for long gaps and spins for short ones, so 300k events/s stay reachable.
fn wait_until(target: Instant) {
    loop {
        let now = Instant::now();
        if now >= target {
            return;
        }
        let left = target - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

pub fn run_load(sim: &mut Sim<'_>, cfg: &LoadConfig, seed: u64) -> anyhow::Result<LoadStats> {
    let mut rng = Rng::new(seed);
    let mut messages = Vec::new();
    for (name, _) in &cfg.mix {
        let (cmd, data) = p::payload(sample_message(name, &mut rng)?);
        messages.push((CString::new(cmd)?, data));
    }
    let order = schedule(&cfg.mix.iter().map(|(_, w)| *w).collect::<Vec<_>>());
    let addr = CString::new("127.0.0.1:18444")?;
    let inbound = CString::new("inbound")?;
    let outbound = CString::new("outbound-full-relay")?;

    let (fired0, attempted0) = (sim.fired(), sim.attempted);
    let interval = if cfg.rate > 0.0 { 1.0 / cfg.rate } else { 0.0 };
    let start = Instant::now();
    let deadline = cfg.duration.map(|d| start + d);
    let mut i: u64 = 0;
    loop {
        if cfg.count.is_some_and(|c| i >= c) || stop_requested() {
            break;
        }
        if interval > 0.0 {
            let at = i as f64 * interval;
            wait_until(start + Duration::from_secs_f64(at - at % PACE_SLOT));
        }
        // Reading the clock costs more than the probe; flat out, look only every 1024 events.
        if deadline
            .is_some_and(|d| (interval > 0.0 || i.is_multiple_of(1024)) && Instant::now() >= d)
        {
            break;
        }
        let (msg_type, data) = &messages[order[(i % order.len() as u64) as usize]];
        let (tp, conn_type) = match cfg.direction {
            Direction::Inbound => (Tracepoint::NetInboundMessage, &inbound),
            Direction::Outbound => (Tracepoint::NetOutboundMessage, &outbound),
            Direction::Both if i.is_multiple_of(2) => (Tracepoint::NetInboundMessage, &inbound),
            Direction::Both => (Tracepoint::NetOutboundMessage, &outbound),
        };
        sim.count_attempt();
        if sim.probes().active(tp) {
            let args = [
                Arg::Int(0),
                Arg::Str(&addr),
                Arg::Str(conn_type),
                Arg::Str(msg_type),
                Arg::Int(data.len() as i128),
                Arg::Bytes(data),
            ];
            sim.fire(tp, &args);
        }
        i += 1;
    }
    Ok(LoadStats {
        fired: sim.fired() - fired0,
        attempted: sim.attempted - attempted0,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_keeps_exact_proportions() {
        let s = schedule(&[1, 3]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|i| **i == 1).count(), 3);
        assert_eq!(schedule(&[1]), vec![0]);
    }

    #[test]
    fn mix_parsing() {
        assert_eq!(
            parse_mix("ping=1,inv=2").unwrap(),
            vec![("ping".into(), 1), ("inv".into(), 2)]
        );
        assert_eq!(parse_mix("tx").unwrap(), vec![("tx".into(), 1)]);
        assert!(parse_mix("ping=x").is_err());
        assert!(parse_mix("ping=0").is_err());
    }

    #[test]
    fn every_load_message_is_valid() {
        let mut rng = Rng::new(3);
        for name in [
            "version",
            "verack",
            "wtxidrelay",
            "sendaddrv2",
            "sendheaders",
            "getaddr",
            "mempool",
            "sendcmpct",
            "feefilter",
            "ping",
            "pong",
            "getheaders",
            "headers",
            "inv",
            "getdata",
            "tx",
            "block",
            "cmpctblock",
            "addr",
            "addrv2",
            "getcfcheckpt",
            "cfcheckpt",
        ] {
            let (cmd, data) = p::payload(sample_message(name, &mut rng).unwrap());
            assert_eq!(cmd, name);
            p::decode_payload(cmd, &data).unwrap();
        }
        assert!(sample_message("nope", &mut rng).is_err());
    }
}
