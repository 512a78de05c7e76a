//! The `extractor_stats` line: an extractor's own counters (what it read, published and
//! dropped, and its RPC and ZMQ counts).

use std::fmt::Write as _;

use nodescope_proto::ExtractorStats;

use super::Token;

pub(super) fn extractor_stats(line: &mut String, s: &ExtractorStats) {
    let kernel_drops: u64 = s.kernel_drops.values().sum();
    let payload_drops: u64 = s.kernel_payload_drops.values().sum();
    let _ = write!(
        line,
        " read={} published={} kernel_drops={} payload_drops={} expired_incomplete={} closed_at_shutdown={} stray_chunks={} queue_drops={} too_large={} decode_errors={} queued={} resent={}",
        s.events_read,
        s.published,
        kernel_drops,
        payload_drops,
        s.expired_incomplete,
        s.closed_at_shutdown,
        s.stray_chunks,
        s.dropped_queue_full,
        s.dropped_too_large,
        s.decode_errors,
        s.queued,
        s.resent
    );
    for (name, counts) in [
        ("rpc_calls", &s.rpc_calls),
        ("rpc_failures", &s.rpc_failures),
        ("zmq_received", &s.zmq_received),
        ("zmq_missed", &s.zmq_missed),
    ] {
        if counts.is_empty() {
            continue;
        }
        let mut counts: Vec<_> = counts.iter().collect();
        counts.sort();
        let joined: Vec<String> = counts
            .into_iter()
            .map(|(key, count)| format!("{key}:{count}"))
            .collect();
        let _ = write!(line, " {name}={}", Token(&joined.join(",")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::test_support::event;
    use crate::line::text;
    use nodescope_proto::event::Payload;
    use nodescope_proto::Category;

    #[test]
    fn stats_lines_show_rpc_and_zmq_counts_when_there_are_some() {
        let ebpf = text(
            &event(Payload::ExtractorStats(ExtractorStats::default())),
            Category::Extractor,
        );
        assert!(ebpf.ends_with(" queued=0 resent=0"), "{ebpf}");
        let rpc = event(Payload::ExtractorStats(ExtractorStats {
            published: 30,
            rpc_calls: [("uptime".to_string(), 10), ("getpeerinfo".to_string(), 9)].into(),
            rpc_failures: [("getpeerinfo".to_string(), 1)].into(),
            zmq_received: [("hashtx".to_string(), 120), ("hashblock".to_string(), 2)].into(),
            ..Default::default()
        }));
        assert!(text(&rpc, Category::Extractor).ends_with(
            " queued=0 resent=0 rpc_calls=getpeerinfo:9,uptime:10 rpc_failures=getpeerinfo:1 zmq_received=hashblock:2,hashtx:120"
        ));
    }
}
