//! The extractors' `extractor_stats` events: totals of the extractor's current run, which
//! become the counters' values.

use std::collections::HashMap;

use nodescope_proto::ExtractorStats;
use prometheus_client::metrics::counter::Counter;

use crate::labels::{self, OTHER};
use crate::metrics::*;

/// Sets a counter to a total (of an extractor's run, of bitcoind's process): a total that
/// starts again from 0 is what Prometheus takes for a counter reset.
pub(crate) fn store(counter: &Counter, value: u64) {
    counter
        .inner()
        .store(value, std::sync::atomic::Ordering::Relaxed);
}

/// The extractor's totals of its current run become the counters' values: a restarted
/// extractor starts again from 0, which Prometheus treats as a counter reset. Every tracepoint
/// gets a value each time (0 when absent), so no series keeps a stale total of an earlier run.
pub(crate) fn extractor_stats(
    m: &Metrics,
    node: Node,
    extractor: &'static str,
    s: &ExtractorStats,
) {
    let e = ExtractorLabels {
        node: node.clone(),
        extractor,
    };
    store(&m.extractor_events_read.get_or_create(&e), s.events_read);
    store(&m.extractor_events_published.get_or_create(&e), s.published);
    store(&m.extractor_events_resent.get_or_create(&e), s.resent);
    for (cause, value) in [
        ("queue_full", s.dropped_queue_full),
        ("too_large", s.dropped_too_large),
    ] {
        let labels = DropLabels {
            node: node.clone(),
            extractor,
            cause,
        };
        store(&m.extractor_events_dropped.get_or_create(&labels), value);
    }
    for (cause, value) in [
        ("expired", s.expired_incomplete),
        ("shutdown", s.closed_at_shutdown),
    ] {
        let labels = DropLabels {
            node: node.clone(),
            extractor,
            cause,
        };
        store(
            &m.extractor_payloads_incomplete.get_or_create(&labels),
            value,
        );
    }
    store(&m.extractor_stray_chunks.get_or_create(&e), s.stray_chunks);
    for (kind, value) in [
        ("decode", s.decode_errors),
        ("read", s.read_errors),
        ("ring_record", s.malformed_records),
    ] {
        let labels = ErrorLabels {
            node: node.clone(),
            extractor,
            kind,
        };
        store(&m.extractor_errors.get_or_create(&labels), value);
    }
    for (family, drops) in [
        (&m.extractor_kernel_drops, &s.kernel_drops),
        (&m.extractor_kernel_payload_drops, &s.kernel_payload_drops),
    ] {
        let mut other = 0;
        let mut by_tracepoint: HashMap<&'static str, u64> = HashMap::new();
        for (key, value) in drops {
            match labels::tracepoint(key) {
                OTHER => other += value,
                tracepoint => *by_tracepoint.entry(tracepoint).or_default() += value,
            }
        }
        for tracepoint in labels::tracepoints() {
            let value = if tracepoint == OTHER {
                other
            } else {
                by_tracepoint.get(tracepoint).copied().unwrap_or(0)
            };
            let labels = TracepointLabels {
                node: node.clone(),
                extractor,
                tracepoint,
            };
            store(&family.get_or_create(&labels), value);
        }
    }
    m.extractor_queued_events
        .get_or_create(&e)
        .set(s.queued as i64);
    m.extractor_queued_bytes
        .get_or_create(&e)
        .set(s.queued_bytes as i64);
    m.extractor_attached_locations
        .get_or_create(&e)
        .set(s.attached_locations as i64);
    m.extractor_kernel_memory
        .get_or_create(&e)
        .set(s.kernel_memory_bytes as i64);
    crate::rpc::extractor_counts(m, &node, extractor, s);
    crate::peer::extractor_counts(m, &node, extractor, s);
}
