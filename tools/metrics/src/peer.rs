//! What `extractor p2p` publishes, as metrics: the node seen as one of its own peers sees it.
//! Its pings' round trips (the node's message-handling backlog as a peer feels it), what the
//! node announces (addresses per network, inventory per type and how often, headers and
//! compact blocks, the fee filter it sets, transactions announced against those received), the
//! state of the extractor's connections to it and why they end, messages that were not what
//! they claimed, and the extractor's own totals.
//!
//! Labels are the node and closed sets only: never the connection number, an address, a nonce
//! or a user agent. The connections open are those this exporter saw connect (+1 at
//! `connected`, −1 at `disconnected` of the same connection number, all of them at a new
//! extractor run, whose numbers start over), so the gauge never goes negative.

use std::collections::HashMap;

use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{
    Event, ExtractorStats, InventoryType, P2pInventory, PeerConnection, PeerMessage, PeerPing,
    PeerState as ConnectionState,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::labels;
use crate::metrics::{
    histograms, label_sets, Counters, ExtractorLabels, FloatGauges, Gauges, Histograms, Node,
    NodeLabels, ReasonLabels,
};

label_sets! {
    PeerMessageLabels { msg_type }
    PeerAddressLabels { msg_type, family }
    PeerInvLabels { inv_type }
    StageLabels { stage }
    TransportLabels { transport }
    OutcomeLabels { outcome }
}

/// Connections tracked per node: `extractor p2p` keeps a handful; this only bounds a stream
/// that connects without ever disconnecting.
pub const MAX_CONNECTIONS: usize = 1024;

/// 0.1 ms (a node on the same host, idle) to 10 s (a node busy for seconds).
fn rtt_buckets() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ])
}

/// Core trickles inventory to each peer at random intervals averaging 2 s (outbound peers) or
/// 5 s (inbound ones): 50 ms to 10 minutes.
fn interval_buckets() -> Histogram {
    Histogram::new([
        0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ])
}

/// Declares [`PeerMetrics`]: each family with its type, name (after `nodescope_`), unit, how it
/// is made, and help.
macro_rules! families {
    ($($field:ident: $type:ty = $name:literal, $unit:expr, $new:expr, $help:literal;)*) => {
        /// The families of `extractor p2p`'s events and counts.
        pub struct PeerMetrics {
            $(pub $field: $type,)*
        }

        impl PeerMetrics {
            pub fn new() -> PeerMetrics {
                PeerMetrics {
                    $($field: $new,)*
                }
            }

            pub fn register(&self, r: &mut Registry) {
                $(register(r, $name, $help, $unit, self.$field.clone());)*
            }
        }
    };
}

fn register(r: &mut Registry, name: &str, help: &str, unit: Option<Unit>, metric: impl Metric) {
    match unit {
        Some(unit) => r.register_with_unit(name, help, unit, metric),
        None => r.register(name, help, metric),
    }
}

const S: Option<Unit> = Some(Unit::Seconds);

families! {
    // Pings
    ping_rtt: Histograms<NodeLabels> = "peer_ping_rtt", S, histograms(rtt_buckets),
        "Round trips of extractor p2p's pings: its ping to the node's pong";
    // What the node announces
    messages: Counters<PeerMessageLabels> = "peer_messages", None, Family::default(),
        "Messages the node sent to extractor p2p, by type";
    malformed: Counters<PeerMessageLabels> = "peer_malformed_messages", None, Family::default(),
        "Messages the node sent that were not what they claimed (bad checksum, unreadable type), by type";
    addresses: Counters<PeerAddressLabels> = "peer_addresses", None, Family::default(),
        "Addresses the node announced in addr and addrv2, by address family";
    inv_entries: Counters<PeerInvLabels> = "peer_inv_entries", None, Family::default(),
        "Inventory entries the node announced in inv messages, by type";
    inv_interval: Histograms<NodeLabels> = "peer_inv_interval", S, histograms(interval_buckets),
        "Time between two inv messages of the node on one connection";
    transactions: Counters<StageLabels> = "peer_transactions", None, Family::default(),
        "Transactions the node announced (inv tx and wtx entries) and sent (tx messages)";
    feefilter: Gauges<NodeLabels> = "peer_feefilter_sat_per_kvbyte", None, Family::default(),
        "The fee filter the node last sent (feefilter, sat per 1000 vbytes)";
    block_announcements: Counters<PeerMessageLabels> = "peer_block_announcements", None, Family::default(),
        "Blocks the node announced: headers messages with headers, cmpctblock messages";
    last_block_announcement: FloatGauges<PeerMessageLabels> = "peer_last_block_announcement_timestamp", S, Family::default(),
        "UNIX time of the node's latest headers (with headers) and cmpctblock message";
    // Connections
    connected: Gauges<TransportLabels> = "peer_connected", None, Family::default(),
        "Connections of extractor p2p with the node open now, of those this exporter saw connect, by transport";
    connections: Counters<OutcomeLabels> = "peer_connections", None, Family::default(),
        "Connections of extractor p2p with the node: handshake completed (connected) or not (failed)";
    disconnects: Counters<ReasonLabels> = "peer_disconnects", None, Family::default(),
        "Connections of extractor p2p with the node that ended after their handshake, by reason class";
    failures: Counters<ReasonLabels> = "peer_connection_failures", None, Family::default(),
        "Connections of extractor p2p with the node that failed before their handshake completed, by reason class";
    retries: Gauges<NodeLabels> = "peer_connect_retries", None, Family::default(),
        "Attempts to dial the node that had failed in a row before extractor p2p's latest one (0 when the node dialled)";
    // extractor p2p's own totals (its ExtractorStats)
    extractor_connections: Counters<ExtractorLabels> = "extractor_p2p_connections", None, Family::default(),
        "Connections whose handshake completed, as extractor p2p counts them (its current run)";
    extractor_failed: Counters<ExtractorLabels> = "extractor_p2p_failed_connections", None, Family::default(),
        "Connections that failed before their handshake or could not be made, as extractor p2p counts them (its current run)";
    extractor_messages: Counters<ExtractorLabels> = "extractor_p2p_messages", None, Family::default(),
        "Messages received from the node, as extractor p2p counts them (its current run)";
    extractor_malformed: Counters<ExtractorLabels> = "extractor_p2p_malformed", None, Family::default(),
        "Messages that were not what they claimed, as extractor p2p counts them (its current run)";
}

impl Default for PeerMetrics {
    fn default() -> Self {
        PeerMetrics::new()
    }
}

/// The connections of a node's `extractor p2p` open now, as this exporter saw them connect.
#[derive(Default)]
pub struct PeerState {
    /// The extractor run the connection numbers belong to.
    run_id: Option<u64>,
    /// Connection number → its transport label.
    open: HashMap<u64, &'static str>,
}

/// Any of `extractor p2p`'s payloads (`event`'s).
pub fn record(m: &crate::Metrics, state: &mut PeerState, node: &Node, event: &Event) {
    let p = &m.peer;
    match &event.payload {
        Some(Payload::PeerConnection(c)) => connection(p, state, node, event.run_id, c),
        Some(Payload::PeerMessage(message)) => self::message(p, node, event, message),
        Some(Payload::PeerPing(ping)) => self::ping(p, node, ping),
        _ => {}
    }
}

fn ping(p: &PeerMetrics, node: &Node, ping: &PeerPing) {
    p.ping_rtt
        .get_or_create(&NodeLabels { node: node.clone() })
        .observe(ping.rtt_ns as f64 / 1e9);
}

fn connection(
    p: &PeerMetrics,
    state: &mut PeerState,
    node: &Node,
    run_id: u64,
    c: &PeerConnection,
) {
    let gauge = |transport| {
        p.connected.get_or_create(&TransportLabels {
            node: node.clone(),
            transport,
        })
    };
    // A new run numbers its connections from 1 again, and the old run's are gone.
    if state.run_id != Some(run_id) {
        for (_, transport) in state.open.drain() {
            gauge(transport).dec();
        }
        state.run_id = Some(run_id);
    }
    let n = || NodeLabels { node: node.clone() };
    let outcome = |outcome| OutcomeLabels {
        node: node.clone(),
        outcome,
    };
    let reason = || ReasonLabels {
        node: node.clone(),
        reason: labels::peer_end_reason(&c.reason),
    };
    match ConnectionState::try_from(c.state) {
        Ok(ConnectionState::Connected) => {
            p.connections.get_or_create(&outcome("connected")).inc();
            p.retries.get_or_create(&n()).set(i64::from(c.retries));
            let transport = labels::peer_transport(&c.transport);
            let room = state.open.len() < MAX_CONNECTIONS;
            if !state.open.contains_key(&c.connection) && room {
                state.open.insert(c.connection, transport);
                gauge(transport).inc();
            }
        }
        Ok(ConnectionState::Disconnected) => {
            p.disconnects.get_or_create(&reason()).inc();
            if let Some(transport) = state.open.remove(&c.connection) {
                gauge(transport).dec();
            }
        }
        Ok(ConnectionState::Failed) => {
            p.connections.get_or_create(&outcome("failed")).inc();
            p.failures.get_or_create(&reason()).inc();
            p.retries.get_or_create(&n()).set(i64::from(c.retries));
        }
        Ok(ConnectionState::Unspecified) | Err(_) => {}
    }
}

fn message(p: &PeerMetrics, node: &Node, event: &Event, peer_message: &PeerMessage) {
    let Some(message) = &peer_message.message else {
        return;
    };
    let msg_type = labels::MSG_TYPE_LABELS[labels::msg_type_index(&message.msg_type)];
    let labels = PeerMessageLabels {
        node: node.clone(),
        msg_type,
    };
    p.messages.get_or_create(&labels).inc();
    // Not what it claimed: Core drops it unread, so it announces nothing.
    if !event.error.is_empty() {
        p.malformed.get_or_create(&labels).inc();
        return;
    }
    let n = || NodeLabels { node: node.clone() };
    let Some(body) = &message.body else {
        return;
    };
    match body {
        Body::Addr(addr) | Body::Addrv2(addr) => {
            let mut counts: HashMap<&'static str, u64> = HashMap::new();
            for address in &addr.addresses {
                *counts
                    .entry(labels::address_family(address.network))
                    .or_default() += 1;
            }
            for (family, count) in counts {
                p.addresses
                    .get_or_create(&PeerAddressLabels {
                        node: node.clone(),
                        msg_type,
                        family,
                    })
                    .inc_by(count);
            }
        }
        Body::Inv(inv) => {
            inventory(p, node, inv);
            if peer_message.since_previous_ns > 0 {
                p.inv_interval
                    .get_or_create(&n())
                    .observe(peer_message.since_previous_ns as f64 / 1e9);
            }
        }
        Body::Tx(_) => {
            p.transactions
                .get_or_create(&StageLabels {
                    node: node.clone(),
                    stage: "received",
                })
                .inc();
        }
        Body::Feefilter(filter) => {
            p.feefilter.get_or_create(&n()).set(filter.fee_rate);
        }
        Body::Headers(headers) if headers.count > 0 || !headers.headers.is_empty() => {
            announced_block(p, &labels, event)
        }
        Body::Cmpctblock(_) => announced_block(p, &labels, event),
        _ => {}
    }
}

fn announced_block(p: &PeerMetrics, labels: &PeerMessageLabels, event: &Event) {
    p.block_announcements.get_or_create(labels).inc();
    p.last_block_announcement
        .get_or_create(labels)
        .set(event.timestamp_ns as f64 / 1e9);
}

fn inventory(p: &PeerMetrics, node: &Node, inv: &P2pInventory) {
    let mut counts: HashMap<i32, u64> = HashMap::new();
    for item in &inv.items {
        *counts.entry(item.r#type).or_default() += 1;
    }
    let mut transactions = 0;
    for (inv_type, count) in counts {
        if matches!(
            InventoryType::try_from(inv_type),
            Ok(InventoryType::Tx | InventoryType::Wtx)
        ) {
            transactions += count;
        }
        p.inv_entries
            .get_or_create(&PeerInvLabels {
                node: node.clone(),
                inv_type: labels::inv_type(inv_type),
            })
            .inc_by(count);
    }
    if transactions > 0 {
        p.transactions
            .get_or_create(&StageLabels {
                node: node.clone(),
                stage: "announced",
            })
            .inc_by(transactions);
    }
}

/// `extractor p2p`'s totals of its current run become the counters' values (a restart is a
/// counter reset). Other extractors' stats carry none of them, and get no series.
pub(crate) fn extractor_counts(
    m: &crate::Metrics,
    node: &Node,
    extractor: &'static str,
    s: &ExtractorStats,
) {
    let totals = [
        (&m.peer.extractor_connections, s.p2p_connections),
        (&m.peer.extractor_failed, s.p2p_failed_connections),
        (&m.peer.extractor_messages, s.p2p_messages),
        (&m.peer.extractor_malformed, s.p2p_malformed),
    ];
    if extractor != "p2p" && totals.iter().all(|(_, total)| *total == 0) {
        return;
    }
    let labels = ExtractorLabels {
        node: node.clone(),
        extractor,
    };
    for (family, total) in totals {
        crate::stats::store(&family.get_or_create(&labels), total);
    }
}

#[cfg(test)]
mod tests {
    use nodescope_consumer::testing::{sample, EventSource};
    use nodescope_consumer::{Continuity, Item, Received};
    use nodescope_proto::event::Payload;
    use nodescope_proto::*;
    use prometheus_client::encoding::text::encode;

    use crate::{Config, FlushModes, Metrics, Recorder};

    fn connection(state: PeerState, connection: u64, transport: &str, reason: &str) -> Payload {
        Payload::PeerConnection(PeerConnection {
            state: state as i32,
            connection,
            transport: transport.into(),
            reason: reason.into(),
            ..PeerConnection::default()
        })
    }

    /// The open connections follow connect and disconnect of the same number; a disconnect of
    /// one never seen connecting changes nothing; a new extractor run closes the old run's.
    #[test]
    fn connections_open_follow_the_run_and_never_go_negative() {
        let (metrics, registry) = Metrics::new();
        let config = Config {
            user_agents: 10,
            max_nodes: 10,
            flush_modes: FlushModes::V30,
        };
        let mut recorder = Recorder::new(metrics, config);
        let mut record = |source: &mut EventSource, payload| {
            let event = source.stamp(payload);
            let received = Received {
                category: Category::P2p,
                event,
                continuity: Continuity::First,
            };
            recorder.record(&Item::Event(Box::new(received)));
        };
        let scrape = || {
            let mut scrape = String::new();
            encode(&mut scrape, &registry).unwrap();
            scrape
        };
        let open = |s: &str, transport: &str| {
            sample(
                s,
                &format!(r#"nodescope_peer_connected{{node="n",transport="{transport}"}}"#),
            )
        };
        let mut run = EventSource::of(ExtractorKind::P2p, "n", 1);
        use PeerState::{Connected, Disconnected};
        record(&mut run, connection(Connected, 1, "v2", ""));
        record(&mut run, connection(Connected, 2, "v1", ""));
        record(&mut run, connection(Connected, 2, "v1", "")); // the same one again
        record(
            &mut run,
            connection(Disconnected, 7, "v1", "closed by the node"),
        );
        let s = scrape();
        assert_eq!(open(&s, "v2"), Some(1.0));
        assert_eq!(open(&s, "v1"), Some(1.0));
        record(
            &mut run,
            connection(Disconnected, 2, "v1", "closed by the node"),
        );
        assert_eq!(open(&scrape(), "v1"), Some(0.0));

        let mut restarted = EventSource::of(ExtractorKind::P2p, "n", 2);
        record(&mut restarted, connection(Connected, 1, "v1", ""));
        let s = scrape();
        assert_eq!(open(&s, "v2"), Some(0.0), "run 1's connection is gone");
        assert_eq!(open(&s, "v1"), Some(1.0));
        assert_eq!(
            sample(
                &s,
                r#"nodescope_peer_disconnects_total{node="n",reason="closed_by_node"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &s,
                r#"nodescope_peer_connections_total{node="n",outcome="connected"}"#
            ),
            Some(4.0)
        );
    }
}
