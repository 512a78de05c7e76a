//! The rate steps: the simulator firing at fixed rates, then flat out, first with the
//! count-only drain (the baseline), then with the extractor.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nodescope_proto::ExtractorStats;

use crate::processes::{load_args, run_load, Counting, Extractor, LoadRun, Memory};
use crate::subscriber::Subscriber;
use crate::Paths;

#[derive(Debug, Clone, Default)]
pub(super) struct Step {
    /// Requested rate (0 = flat out).
    pub(super) rate: f64,
    pub(super) run: LoadRun,
    pub(super) delivered: u64,
    duplicates: u64,
    pub(super) truncated: u64,
    pub(super) kernel_drops: u64,
    pub(super) payload_cuts: u64,
    pub(super) queue_drops: u64,
    pub(super) cpu_us_per_event: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) max_ms: f64,
    /// First probe → last event received.
    pub(super) span_s: f64,
}

impl Step {
    /// The rate this step proves: the requested one when the simulator kept it (within 2 %:
    /// its pacing loop runs a hair slow), else the achieved one.
    pub(super) fn proven_rate(&self) -> f64 {
        if self.rate > 0.0 && self.run.rate >= 0.98 * self.rate {
            self.rate
        } else {
            self.run.rate
        }
    }

    pub(super) fn lossless(&self) -> bool {
        self.delivered == self.run.fired
            && self.run.fired == self.run.attempted
            && self.kernel_drops + self.payload_cuts + self.queue_drops + self.truncated == 0
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1000.0
}

fn drops(stats: &ExtractorStats) -> (u64, u64, u64) {
    (
        stats.kernel_drops.values().sum(),
        stats.kernel_payload_drops.values().sum(),
        stats.dropped_queue_full + stats.dropped_too_large,
    )
}
/// Runs `sim <load>` (which fires at `rate`, 0 = flat out) and measures what arrives.
pub(super) async fn step(
    sim: &Path,
    extractor: &Extractor,
    subscriber: &mut Subscriber,
    rate: f64,
    load: Vec<String>,
) -> Result<Step> {
    let pid = extractor.pid as u32;
    let before = subscriber
        .stats_after(pid, None)
        .await
        .context("no extractor stats")?;
    let unique0 = subscriber.unique();
    let _ = subscriber.take().await;
    let cpu0 = extractor.cpu_seconds();
    let start = Instant::now();
    let run = run_load(sim, &load).await?;
    let (settled, after) = match extractor.counting {
        Counting::Subscriber => {
            subscriber
                .settle(unique0 + run.fired, Duration::from_secs(3))
                .await;
            (Instant::now(), None)
        }
        Counting::ExtractorStats => {
            let read = subscriber
                .settle_read(pid, before.events_read + run.fired)
                .await;
            (Instant::now(), read)
        }
    };
    let cpu1 = extractor.cpu_seconds();
    let mut received = subscriber.take().await;
    let after = match after {
        Some(after) => after,
        None => subscriber
            .stats_after(pid, Some(settled))
            .await
            .context("no extractor stats after the step")?,
    };
    if extractor.counting == Counting::ExtractorStats {
        received.delivered = after.events_read - before.events_read;
    }
    let (k0, p0, q0) = drops(&before);
    let (k1, p1, q1) = drops(&after);
    received.latencies_us.sort_unstable();
    let lat = &received.latencies_us;
    Ok(Step {
        rate,
        run,
        delivered: received.delivered,
        duplicates: received.duplicates,
        truncated: received.truncated,
        kernel_drops: k1.saturating_sub(k0),
        payload_cuts: p1.saturating_sub(p0),
        queue_drops: q1.saturating_sub(q0),
        cpu_us_per_event: (cpu1 - cpu0) * 1e6 / received.delivered.max(1) as f64,
        p50_ms: percentile(lat, 0.50),
        p99_ms: percentile(lat, 0.99),
        max_ms: percentile(lat, 1.0),
        span_s: received
            .last
            .map_or(f64::NAN, |last| (last - start).as_secs_f64()),
    })
}

pub(super) struct RateSection {
    pub(super) name: &'static str,
    pub(super) steps: Vec<Step>,
    /// The same steps with the count-only drain (`extractor ebpf --drain-only`): the same
    /// kernel program and ring, read and counted only.
    baseline: Vec<Step>,
    pub(super) memory: Memory,
    pub(super) kernel_memory_bytes: u64,
}

impl RateSection {
    pub(super) fn highest_lossless(&self) -> Option<&Step> {
        self.steps
            .iter()
            .filter(|s| s.lossless())
            .max_by(|a, b| a.proven_rate().total_cmp(&b.proven_rate()))
    }

    pub(super) fn flat_out(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.rate == 0.0)
    }

    /// The count-only drain's step at the rate `step` was run at.
    pub(super) fn baseline_of(&self, step: &Step) -> Option<&Step> {
        self.baseline.iter().find(|b| b.rate == step.rate)
    }
}

/// The rate steps of a load of `name` messages only, first with the count-only drain (the
/// baseline), then with the extractor.
pub(super) async fn rate_section(
    name: &'static str,
    rates: &[f64],
    seconds_per_step: f64,
    flat_out_count: u64,
    paths: &Paths,
    nats_url: &str,
    subscriber: &mut Subscriber,
) -> Result<RateSection> {
    let run = async |subscriber: &mut Subscriber, drain_only: bool| {
        let mode = if drain_only { "baseline" } else { "extractor" };
        let log = paths.dir.join(format!("extractor-{name}-{mode}.log"));
        let extra: &[&str] = if drain_only { &["--drain-only"] } else { &[] };
        let extractor = Extractor::start(
            &paths.extractor,
            &paths.sim_traced,
            nats_url,
            &log,
            subscriber,
            extra,
        )
        .await?;
        let mix = format!("{name}=1");
        let mut steps = Vec::new();
        for &rate in rates {
            let count = (rate * seconds_per_step) as u64;
            let load = load_args(&mix, rate, count, true);
            let s = step(&paths.sim_traced, &extractor, subscriber, rate, load).await?;
            eprintln!("bench: {name} {mode} {}", step_line(&s));
            // Higher rates will not do better once events are lost or the simulator no longer
            // keeps up: go to flat out.
            let last = !s.lossless() || s.run.rate < 0.9 * rate;
            steps.push(s);
            if last {
                break;
            }
        }
        let load = load_args(&mix, 0.0, flat_out_count, true);
        let s = step(&paths.sim_traced, &extractor, subscriber, 0.0, load).await?;
        eprintln!("bench: {name} {mode} {}", step_line(&s));
        steps.push(s);
        let (memory, kernel_memory_bytes) = extractor.finish(subscriber).await;
        Ok::<_, anyhow::Error>((steps, memory, kernel_memory_bytes))
    };
    let (baseline, _, _) = run(subscriber, true).await?;
    let (steps, memory, kernel_memory_bytes) = run(subscriber, false).await?;
    Ok(RateSection {
        name,
        steps,
        baseline,
        memory,
        kernel_memory_bytes,
    })
}

pub(super) fn step_line(s: &Step) -> String {
    format!(
        "rate={} achieved={:.0}/s fired={} delivered={} drops(k/cut/q)={}/{}/{} cpu={:.2}µs/ev p50={:.2}ms p99={:.2}ms duplicates={} lossless={}",
        s.rate, s.run.rate, s.run.fired, s.delivered, s.kernel_drops, s.payload_cuts,
        s.queue_drops, s.cpu_us_per_event, s.p50_ms, s.p99_ms, s.duplicates, s.lossless()
    )
}
