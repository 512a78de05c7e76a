//! The burst of 4 MB blocks, flat out, and the `fire-blocks` mode of this binary that fires
//! them.

use std::time::Instant;

use anyhow::Result;
use extractor_common::Tracepoint;

use crate::bench_report::thousands;
use crate::processes::{Extractor, Memory};
use crate::rates::{step, step_line, Step};
use crate::subscriber::Subscriber;
use crate::Paths;

pub(super) struct BlockBurst {
    pub(super) step: Step,
    pub(super) memory: Memory,
    pub(super) kernel_memory_bytes: u64,
}

pub(super) async fn block_section(
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

/// The block burst's traced process: this very binary, run (as a private copy) with
/// `fire-blocks N`. `bitcoind-sim load` has no 4 MB block, so the burst fires the simulator's
/// exactly-4,000,000-byte block through its legacy (semaphore-free) `net:inbound_message`
/// probe, linked here, and prints a `load:` line like `bitcoind-sim load`.
pub(super) fn fire_blocks(count: u64) -> Result<()> {
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

impl BlockBurst {
    /// The burst's line.
    pub(super) fn print(&self) {
        let s = &self.step;
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
            self.memory.peak_rss
        );
    }
}
