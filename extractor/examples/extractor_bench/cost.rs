//! The cost charged to the traced thread, flat out: the simulator with no tracer, with a
//! count-only uprobe (the bare trap) and with the extractor attached.

use std::path::Path;

use anyhow::{Context as _, Result};
use extractor::tracer::{Tracer, TracerConfig};
use extractor_common::Tracepoint;

use crate::bench_report::{fixed, print_table, thousands};
use crate::processes::{load_args, run_load, LoadRun};
use crate::rates::Step;
use crate::Paths;

/// The traced thread's cost, flat out: best (lowest ns/event) of `repeats` runs.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Cost {
    ns_per_event: f64,
    pub(super) cpu_ns_per_event: f64,
    fired: u64,
}

async fn best_of(binary: &Path, count: u64, repeats: usize, wait: bool) -> Result<Cost> {
    let mut best: Option<LoadRun> = None;
    for _ in 0..repeats {
        let run = run_load(binary, &load_args("ping=1", 0.0, count, wait)).await?;
        if best.is_none_or(|b| run.cpu_ns_per_attempt() < b.cpu_ns_per_attempt()) {
            best = Some(run);
        }
    }
    let best = best.unwrap_or_default();
    Ok(Cost {
        ns_per_event: best.ns_per_attempt(),
        cpu_ns_per_event: best.cpu_ns_per_attempt(),
        fired: best.fired,
    })
}

pub(super) struct CostSection {
    count: u64,
    repeats: usize,
    pub(super) untraced: Cost,
    legacy: Cost,
    pub(super) count_only: Cost,
    count_only_firings: u64,
}

pub(super) async fn cost_section(paths: &Paths, count: u64, repeats: usize) -> Result<CostSection> {
    let untraced = best_of(&paths.sim_untraced, count, repeats, false).await?;
    let legacy = best_of(&paths.sim_legacy, count, repeats, false).await?;
    let config = TracerConfig {
        tracepoints: [Tracepoint::NetInboundMessage].into(),
        ring_bytes: 4096,
        count_only: true,
        ..TracerConfig::new(&paths.sim_count)
    };
    let tracer = Tracer::attach(&config).context("attaching the count-only probe")?;
    let count_only = best_of(&paths.sim_count, count, repeats, true).await?;
    let count_only_firings = tracer.count_only_firings()?;
    drop(tracer);
    Ok(CostSection {
        count,
        repeats,
        untraced,
        legacy,
        count_only,
        count_only_firings,
    })
}

impl CostSection {
    /// The cost table; `flat_with_extractor` is the flat-out ping step, row (c).
    pub(super) fn print(&self, flat_with_extractor: Option<&Step>) {
        println!();
        println!(
            "Traced-thread cost, flat out ({} pings; best of {}; ns per tracepoint call):",
            thousands(self.count as f64),
            self.repeats
        );
        let mut rows = vec![["", "CPU ns/event", "wall ns/event", "events/s", "fired"]
            .map(String::from)
            .to_vec()];
        let row = |name: &str, cpu_ns: f64, wall_ns: f64, fired: u64| {
            vec![
                name.to_string(),
                fixed(cpu_ns, 1),
                fixed(wall_ns, 1),
                thousands(1e9 / wall_ns),
                thousands(fired as f64),
            ]
        };
        rows.push(row(
            "(a) bitcoind-sim, no tracer (semaphore 0: probe skipped)",
            self.untraced.cpu_ns_per_event,
            self.untraced.ns_per_event,
            self.untraced.fired,
        ));
        rows.push(row(
            "(a') bitcoind-sim-legacy, no tracer (nop probe runs)",
            self.legacy.cpu_ns_per_event,
            self.legacy.ns_per_event,
            self.legacy.fired,
        ));
        rows.push(row(
            "(b) bitcoind-sim + count-only uprobe",
            self.count_only.cpu_ns_per_event,
            self.count_only.ns_per_event,
            self.count_only.fired,
        ));
        if let Some(f) = flat_with_extractor {
            rows.push(row(
                "(c) bitcoind-sim + extractor (the flat-out ping step)",
                f.run.cpu_ns_per_attempt(),
                f.run.ns_per_attempt(),
                f.run.fired,
            ));
        }
        print_table("  ", &rows);
        println!(
            "  uprobe trap (b − a): {:.0} ns/event",
            self.count_only.cpu_ns_per_event - self.untraced.cpu_ns_per_event
        );
        if let Some(f) = flat_with_extractor {
            println!(
                "  extractor eBPF program beyond the trap (c − b): {:.0} ns/event ({} of {} \
                 events dropped by a full ring)",
                f.run.cpu_ns_per_attempt() - self.count_only.cpu_ns_per_event,
                thousands(f.kernel_drops as f64),
                thousands(f.run.fired as f64),
            );
        }
        if self.count_only_firings != self.count_only.fired * self.repeats as u64 {
            println!(
                "  note: the count-only probe counted {} firings",
                thousands(self.count_only_firings as f64)
            );
        }
    }
}
