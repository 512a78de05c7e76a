//! Every family connectivity-check serves on `/metrics`, registered in one place. Labels come
//! from closed sets only: `node` (bounded by `--max-nodes`, the rest is `other`), network,
//! result, reason, message kind, connection type. No address, port or user agent is a label.

use std::collections::HashSet;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub type Node = Arc<str>;

macro_rules! label_sets {
    ($($name:ident { $($field:ident),* })*) => {
        $(
            #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
            pub struct $name {
                $(pub $field: &'static str,)*
            }
        )*
    };
}

label_sets! {
    NetworkLabels { network }
    DirectionLabels { direction }
    PublisherLabels { outcome }
}

macro_rules! node_label_sets {
    ($($name:ident { $($field:ident),* })*) => {
        $(
            #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
            pub struct $name {
                pub node: Node,
                $(pub $field: &'static str,)*
            }
        )*
    };
}

node_label_sets! {
    NodeLabels {}
    SeenLabels { network, addr_version, announcer }
    NodeNetworkLabels { network }
    SkipLabels { network, reason }
    CheckLabels { network, result }
    V2Labels { network, support }
    AgeLabels { direction }
}

type Counters<L> = Family<L, Counter>;

pub struct Metrics {
    pub seen: Counters<SeenLabels>,
    pub skipped: Counters<SkipLabels>,
    pub private_announced: Counters<NodeNetworkLabels>,
    pub queued: Counters<NodeNetworkLabels>,
    pub cached: Counters<NodeNetworkLabels>,
    pub duplicates: Counters<NodeNetworkLabels>,
    pub dropped_queue_full: Counters<NodeNetworkLabels>,
    pub checks: Counters<CheckLabels>,
    pub v2: Counters<V2Labels>,
    pub undecodable: Counters<NodeLabels>,
    pub connect_seconds: Family<NetworkLabels, Histogram>,
    pub handshake_seconds: Family<NetworkLabels, Histogram>,
    pub address_age_seconds: Family<AgeLabels, Histogram>,
    pub queue_depth: Gauge,
    pub in_flight: Gauge,
    pub cache_entries: Gauge,
    pub cache_evicted: Counter,
    pub published: Family<PublisherLabels, Gauge>,
    pub csv_errors: Counter,
    nodes: NodeLabelSet,
}

fn latency_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Address timestamps: a minute to a year either side of the message time.
fn age_buckets() -> Histogram {
    Histogram::new([
        60.0,
        600.0,
        3600.0,
        3.0 * 3600.0,
        86_400.0,
        3.0 * 86_400.0,
        7.0 * 86_400.0,
        30.0 * 86_400.0,
        365.0 * 86_400.0,
    ])
}

impl Metrics {
    pub fn new(max_nodes: usize) -> (Metrics, Registry) {
        let mut registry = Registry::with_prefix("nodescope_connectivity");
        let metrics = Metrics {
            seen: Family::default(),
            skipped: Family::default(),
            private_announced: Family::default(),
            queued: Family::default(),
            cached: Family::default(),
            duplicates: Family::default(),
            dropped_queue_full: Family::default(),
            checks: Family::default(),
            v2: Family::default(),
            undecodable: Family::default(),
            connect_seconds: Family::new_with_constructor(latency_buckets),
            handshake_seconds: Family::new_with_constructor(latency_buckets),
            address_age_seconds: Family::new_with_constructor(age_buckets),
            queue_depth: Gauge::default(),
            in_flight: Gauge::default(),
            cache_entries: Gauge::default(),
            cache_evicted: Counter::default(),
            published: Family::default(),
            csv_errors: Counter::default(),
            nodes: NodeLabelSet::new(max_nodes),
        };
        let r = &mut registry;
        r.register(
            "addresses_seen",
            "Addresses announced to the node in inbound addr/addrv2, by network, message (addr_version) and the announcing peer's connection type",
            metrics.seen.clone(),
        );
        r.register(
            "addresses_skipped",
            "Announced addresses not checked, by reason (unknown_network, bad_address, port_zero, private, low_port, getaddr_response)",
            metrics.skipped.clone(),
        );
        r.register(
            "private_announced",
            "Announced addresses in loopback, private, link-local, multicast, documentation or reserved ranges (dialled only with --allow-private)",
            metrics.private_announced.clone(),
        );
        r.register(
            "addresses_queued",
            "Announced addresses queued for a check",
            metrics.queued.clone(),
        );
        r.register(
            "cached",
            "Announced addresses checked less than --recheck-after ago: the cached result stands, nothing is dialled",
            metrics.cached.clone(),
        );
        r.register(
            "duplicates",
            "Announced addresses already waiting in the queue or being checked",
            metrics.duplicates.clone(),
        );
        r.register(
            "dropped_queue_full",
            "Announced addresses dropped because the queue (--queue-size) was full",
            metrics.dropped_queue_full.clone(),
        );
        r.register(
            "checks",
            "Checks made, by network and result (reachable, refused, timeout, reset, wrong_magic, not_bitcoin, proxy_error, unreachable_network)",
            metrics.checks.clone(),
        );
        r.register(
            "v2",
            "BIP324 v2 handshakes tried on reachable peers (--try-v2), by outcome (supported, not_supported, unknown)",
            metrics.v2.clone(),
        );
        r.register(
            "undecodable",
            "Messages that were not nodescope events, or addr/addrv2 messages the extractor could not decode",
            metrics.undecodable.clone(),
        );
        r.register_with_unit(
            "connect",
            "Time to a TCP connection (through the proxy for Tor and I2P), by network",
            Unit::Seconds,
            metrics.connect_seconds.clone(),
        );
        r.register_with_unit(
            "handshake",
            "Time from the TCP connection to the peer's version, for reachable peers, by network",
            Unit::Seconds,
            metrics.handshake_seconds.clone(),
        );
        r.register_with_unit(
            "address_age",
            "How far an announced address's timestamp lies from the message's time: past (stale) or future",
            Unit::Seconds,
            metrics.address_age_seconds.clone(),
        );
        r.register(
            "queue_depth",
            "Addresses waiting to be checked",
            metrics.queue_depth.clone(),
        );
        r.register(
            "in_flight",
            "Checks under way (at most --concurrency)",
            metrics.in_flight.clone(),
        );
        r.register(
            "cache_entries",
            "Results kept to answer repeats within --recheck-after (at most --cache-size)",
            metrics.cache_entries.clone(),
        );
        r.register(
            "cache_evicted",
            "Results evicted from a full cache before --recheck-after passed",
            metrics.cache_evicted.clone(),
        );
        r.register(
            "result_events",
            "Result events handed to the publisher, by outcome (published, dropped_queue_full, dropped_too_large, queued)",
            metrics.published.clone(),
        );
        r.register(
            "csv_errors",
            "Rows that could not be written to --csv",
            metrics.csv_errors.clone(),
        );
        (metrics, registry)
    }

    /// The `node` label of a node: its id for the first `--max-nodes` nodes, `other` after.
    pub fn node(&mut self, node: &str) -> Node {
        self.nodes.label(node)
    }
}

/// The node ids with series of their own.
struct NodeLabelSet {
    known: HashSet<Node>,
    max: usize,
    other: Node,
}

impl NodeLabelSet {
    fn new(max: usize) -> NodeLabelSet {
        NodeLabelSet {
            known: HashSet::new(),
            max,
            other: Node::from("other"),
        }
    }

    fn label(&mut self, node: &str) -> Node {
        if let Some(known) = self.known.get(node) {
            return known.clone();
        }
        if self.known.len() >= self.max {
            return self.other.clone();
        }
        let label = Node::from(node);
        self.known.insert(label.clone());
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_past_the_limit_share_other() {
        let (mut metrics, _) = Metrics::new(2);
        assert_eq!(&*metrics.node("a"), "a");
        assert_eq!(&*metrics.node("b"), "b");
        assert_eq!(&*metrics.node("c"), "other");
        assert_eq!(&*metrics.node("a"), "a");
    }
}
