//! The rate-step tables and the targets table.

use crate::bench_report::{fixed, print_table, thousands};
use crate::block::BlockBurst;
use crate::cost::CostSection;
use crate::rates::{RateSection, Step};
use crate::{
    TARGET_INV_CPU_US, TARGET_INV_RATE, TARGET_KERNEL_MIB, TARGET_P99_MS, TARGET_PING_CPU_US,
    TARGET_PING_RATE, TARGET_RSS_MB,
};

pub(super) fn mark(ok: Option<bool>) -> String {
    match ok {
        Some(true) => "✓".into(),
        Some(false) => "✗".into(),
        None => "?".into(),
    }
}

pub(super) fn rate_rows(section: &RateSection) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "rate/s",
        "achieved/s",
        "fired",
        "delivered",
        "kernel drops",
        "cut",
        "queue drops",
        "lossless",
        "CPU µs/event",
        "baseline µs",
        "× baseline",
        "p50 ms",
        "p99 ms",
        "max ms",
    ]
    .map(String::from)
    .to_vec()];
    for s in &section.steps {
        let baseline = section.baseline_of(s).map(|b| b.cpu_us_per_event);
        rows.push(vec![
            if s.rate == 0.0 {
                "flat out".into()
            } else {
                thousands(s.rate)
            },
            thousands(s.run.rate),
            thousands(s.run.fired as f64),
            thousands(s.delivered as f64),
            thousands(s.kernel_drops as f64),
            thousands(s.payload_cuts as f64),
            thousands(s.queue_drops as f64),
            if s.lossless() { "yes" } else { "no" }.into(),
            fixed(s.cpu_us_per_event, 2),
            baseline.map_or("—".into(), |b| fixed(b, 2)),
            baseline.map_or("—".into(), |b| format!("{:.1}×", s.cpu_us_per_event / b)),
            fixed(s.p50_ms, 2),
            fixed(s.p99_ms, 2),
            fixed(s.max_ms, 1),
        ]);
    }
    rows
}

/// The table of one rate section, then the extractor's memory in it.
pub(super) fn print_rate_section(section: &RateSection, quick: bool, flat_count: u64) {
    println!();
    let what = if section.name == "ping" {
        "ping (8-byte payload)"
    } else {
        "inv (28 entries, 1009-byte payload)"
    };
    println!(
        "Rate steps — {what}, {} per rated step, flat out {} events:",
        if quick { "0.5 s" } else { "4 s" },
        thousands(flat_count as f64)
    );
    print_table("  ", &rate_rows(section));
    let m = section.memory;
    println!(
        "  extractor memory: peak RSS (VmHWM) {:.1} MB; sampled peaks RssAnon {:.1} MB, RssFile \
         {:.1} MB (binary + the mmapped ring); RSS at the end {:.1} MB; kernel maps {:.1} MiB",
        m.peak_rss,
        m.anon,
        m.file,
        m.rss_now,
        section.kernel_memory_bytes as f64 / (1024.0 * 1024.0)
    );
}

/// The summary against the targets; `flat_with_extractor` is the flat-out ping step.
pub(super) fn print_targets(
    ping: Option<&RateSection>,
    inv: Option<&RateSection>,
    block: Option<&BlockBurst>,
    cost: Option<&CostSection>,
    flat_with_extractor: Option<&Step>,
) {
    // Summary against the targets: each beside the limit it approaches, measured in this run —
    // the traced thread's trap ceiling for rates, the count-only drain for the extractor's CPU.
    let trap_ceiling =
        cost.map(|c| 1e9 / (c.count_only.cpu_ns_per_event - c.untraced.cpu_ns_per_event));
    println!();
    println!("Targets (limit: what this machine allows, measured in this run):");
    let mut rows = vec![["", "target", "measured", "limit", "of limit", ""]
        .map(String::from)
        .to_vec()];
    let mut summary =
        |what: &str, target: String, measured: String, limit: String, ratio: String, ok: bool| {
            rows.push(vec![
                what.into(),
                target,
                measured,
                limit,
                ratio,
                mark(Some(ok)),
            ]);
        };
    let ceiling_text = trap_ceiling.map_or("—".to_string(), |c| {
        format!("{}/s trap ceiling", thousands(c))
    });
    for (section, target_rate, target_cpu, what) in [
        (ping, TARGET_PING_RATE, TARGET_PING_CPU_US, "ping"),
        (inv, TARGET_INV_RATE, TARGET_INV_CPU_US, "1 KiB inv"),
    ] {
        let Some(section) = section else {
            continue;
        };
        let best = section.highest_lossless();
        let rate = best.map_or(0.0, Step::proven_rate);
        summary(
            &format!("lossless {what}s"),
            format!("≥ {}/s", thousands(target_rate)),
            format!("{}/s", thousands(rate)),
            ceiling_text.clone(),
            trap_ceiling.map_or("—".into(), |c| format!("{:.0} %", 100.0 * rate / c)),
            rate >= target_rate,
        );
        // CPU per event at the highest lossless rate (the least idle overhead).
        if let Some(s) = best {
            let baseline = section.baseline_of(s).map(|b| b.cpu_us_per_event);
            summary(
                &format!(
                    "extractor CPU per {what} at {}/s",
                    thousands(s.proven_rate())
                ),
                format!("≤ {target_cpu} µs"),
                format!("{:.2} µs", s.cpu_us_per_event),
                baseline.map_or("—".into(), |b| format!("{b:.2} µs count-only drain")),
                baseline.map_or("—".into(), |b| format!("{:.1}×", s.cpu_us_per_event / b)),
                s.cpu_us_per_event <= target_cpu,
            );
        }
    }
    if let Some(s) = ping.and_then(|p| p.steps.iter().find(|s| s.rate == 100_000.0)) {
        summary(
            "p99 latency probe → subscriber at 100,000 pings/s",
            format!("≤ {TARGET_P99_MS} ms"),
            format!("{:.2} ms (p50 {:.2} ms)", s.p99_ms, s.p50_ms),
            "—".into(),
            "—".into(),
            s.p99_ms <= TARGET_P99_MS,
        );
    }
    let kernel_mib = [
        ping.map(|s| s.kernel_memory_bytes),
        inv.map(|s| s.kernel_memory_bytes),
        block.map(|b| b.kernel_memory_bytes),
    ]
    .into_iter()
    .flatten()
    .max()
    .map(|bytes| bytes as f64 / (1024.0 * 1024.0));
    if let Some(b) = block {
        let whole = b.step.delivered.saturating_sub(b.step.truncated);
        let maps = kernel_mib.unwrap_or(f64::NAN);
        summary(
            &format!("{} back-to-back 4 MB blocks", b.step.run.attempted),
            format!("all whole, maps ≤ {TARGET_KERNEL_MIB} MiB"),
            format!("{whole}/{} whole, maps {maps:.1} MiB", b.step.run.attempted),
            "—".into(),
            format!(
                "{:.0} %",
                100.0 * whole as f64 / b.step.run.attempted.max(1) as f64
            ),
            whole == b.step.run.attempted && maps <= TARGET_KERNEL_MIB,
        );
    }
    let rss = [
        ping.map(|s| s.memory.peak_rss),
        inv.map(|s| s.memory.peak_rss),
        block.map(|b| b.memory.peak_rss),
    ]
    .into_iter()
    .flatten()
    .fold(f64::NAN, f64::max);
    if rss.is_finite() {
        summary(
            "extractor peak RSS (VmHWM, all sections)",
            format!("≤ {TARGET_RSS_MB} MB"),
            format!("{rss:.1} MB"),
            "—".into(),
            "—".into(),
            rss <= TARGET_RSS_MB,
        );
    }
    print_table("  ", &rows);
    if let (Some(c), Some(f)) = (cost, flat_with_extractor) {
        println!(
            "  (the eBPF program costs the traced thread {:.0} ns per event beyond the bare trap)",
            f.run.cpu_ns_per_attempt() - c.count_only.cpu_ns_per_event
        );
    }
    println!(
        "  The metrics and websocket targets are printed by `cargo xtask bench metrics` and \
         `cargo xtask bench websocket`."
    );
}
