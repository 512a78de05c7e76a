//! Every metric family the exporter serves, registered in one place: names, help texts, label
//! sets, histogram buckets. Families are created once at start-up; series appear as events
//! arrive. Every label set starts with `node`, a cached `Arc<str>`; every other label is a
//! `&'static str` from a closed set (see `labels`), except the top-N user agents.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `node` label value, shared by all of a node's series (cloning is a reference count).
pub type Node = Arc<str>;

macro_rules! label_sets {
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
pub(crate) use label_sets;

label_sets! {
    NodeLabels {}
    MessageLabels { direction, msg_type, conn_type }
    MessageTypeLabels { direction, msg_type }
    AddressLabels { direction, msg_type, family }
    InvLabels { direction, msg_type, inv_type }
    DirectionLabels { direction }
    ConnectionLabels { direction, conn_type, network }
    OpenLabels { direction, conn_type }
    ConnTypeLabels { conn_type }
    NetworkLabels { network }
    ReasonLabels { reason }
    ReplacementLabels { replaced_by }
    FlushLabels { mode, for_prune }
    ModeLabels { mode }
    OperationLabels { operation }
    AlgorithmLabels { algorithm }
    CreateTxLabels { attempt, result }
    ExtractorLabels { extractor }
    StreamLabels { extractor, category }
    DropLabels { extractor, cause }
    TracepointLabels { extractor, tracepoint }
    ErrorLabels { extractor, kind }
}

/// The one label set with a value that is not from a fixed list: a user agent among the node's
/// top N (see `user_agents`), or `other`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UserAgentLabels {
    pub node: Node,
    pub direction: &'static str,
    pub user_agent: Arc<str>,
}

pub type Counters<L> = Family<L, Counter>;
pub type Gauges<L> = Family<L, Gauge>;
pub type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
/// Gauges of values that are not whole numbers (seconds, ratios, fee rates).
pub type FloatGauges<L> = Family<L, Gauge<f64, std::sync::atomic::AtomicU64>>;

macro_rules! buckets {
    ($($name:ident = [$($bound:expr),*];)*) => {
        $(
            fn $name() -> Histogram {
                Histogram::new([$($bound as f64),*])
            }
        )*
    };
}

buckets! {
    feerate_buckets = [0.1, 0.5, 1, 2, 3, 5, 10, 20, 50, 100, 300, 1000];
    vsize_buckets = [100, 150, 200, 300, 500, 1000, 2000, 5000, 10_000, 100_000];
    fee_buckets = [100, 300, 1000, 3000, 10_000, 30_000, 100_000, 1_000_000, 10_000_000];
    rtt_buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
    age_buckets = [1, 10, 60, 300, 1800, 3600, 21_600, 86_400, 604_800];
    block_buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
    flush_buckets = [0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300];
}

pub(crate) fn histograms<L: EncodeLabelSet + Clone + std::hash::Hash + Eq>(
    buckets: fn() -> Histogram,
) -> Histograms<L> {
    Family::new_with_constructor(buckets)
}

pub struct Metrics {
    // P2P messages
    pub p2p_messages: Counters<MessageLabels>,
    pub p2p_message_bytes: Counters<MessageLabels>,
    pub p2p_message_decode_errors: Counters<MessageTypeLabels>,
    pub p2p_addresses: Counters<AddressLabels>,
    pub p2p_inv_entries: Counters<InvLabels>,
    pub p2p_feefilter: Histograms<DirectionLabels>,
    pub p2p_user_agents: Counters<UserAgentLabels>,
    pub p2p_ping_rtt: Histograms<DirectionLabels>,
    // Connections
    pub connections_opened: Counters<ConnectionLabels>,
    pub connections_closed: Counters<ConnectionLabels>,
    pub connections_evicted: Counters<NetworkLabels>,
    pub connections_misbehaving: Counters<ReasonLabels>,
    pub connections_open: Gauges<OpenLabels>,
    pub connection_age_at_close: Histograms<ConnTypeLabels>,
    // Mempool
    pub mempool_added: Counters<NodeLabels>,
    pub mempool_removed: Counters<ReasonLabels>,
    pub mempool_replaced: Counters<ReplacementLabels>,
    pub mempool_rejected: Counters<ReasonLabels>,
    pub mempool_added_vsize: Histograms<NodeLabels>,
    pub mempool_added_fee: Histograms<NodeLabels>,
    pub mempool_added_feerate: Histograms<NodeLabels>,
    // Blocks
    pub block_height: Gauges<NodeLabels>,
    pub blocks_connected: Counters<NodeLabels>,
    pub block_connect_duration: Histograms<NodeLabels>,
    pub block_transactions: Counters<NodeLabels>,
    pub block_inputs: Counters<NodeLabels>,
    pub block_sigop_cost: Counters<NodeLabels>,
    // UTXO cache
    pub utxocache_flushes: Counters<FlushLabels>,
    pub utxocache_flush_duration: Histograms<ModeLabels>,
    pub utxocache_flush_coins: Gauges<NodeLabels>,
    pub utxocache_flush_memory: Gauges<NodeLabels>,
    pub utxocache_coins: Counters<OperationLabels>,
    pub utxocache_coin_value: Counters<OperationLabels>,
    // Coin selection
    pub coin_selections: Counters<AlgorithmLabels>,
    pub coin_selection_value: Counters<AlgorithmLabels>,
    pub create_tx: Counters<CreateTxLabels>,
    pub aps_used: Counters<NodeLabels>,
    // Pipeline, as this tool sees it
    pub events_received: Counters<StreamLabels>,
    pub events_missed: Counters<StreamLabels>,
    pub events_replayed: Counters<StreamLabels>,
    pub extractor_restarts: Counters<ExtractorLabels>,
    pub undecodable_messages: Counters<NodeLabels>,
    // Pipeline, as the extractor reports it (its ExtractorStats: totals of its current run)
    pub extractor_events_read: Counters<ExtractorLabels>,
    pub extractor_events_published: Counters<ExtractorLabels>,
    pub extractor_events_resent: Counters<ExtractorLabels>,
    pub extractor_events_dropped: Counters<DropLabels>,
    pub extractor_kernel_drops: Counters<TracepointLabels>,
    pub extractor_kernel_payload_drops: Counters<TracepointLabels>,
    pub extractor_payloads_incomplete: Counters<DropLabels>,
    pub extractor_stray_chunks: Counters<ExtractorLabels>,
    pub extractor_errors: Counters<ErrorLabels>,
    pub extractor_queued_events: Gauges<ExtractorLabels>,
    pub extractor_queued_bytes: Gauges<ExtractorLabels>,
    pub extractor_attached_locations: Gauges<ExtractorLabels>,
    pub extractor_kernel_memory: Gauges<ExtractorLabels>,
    /// From `extractor rpc`'s answers and notifications (`rpc`).
    pub rpc: crate::rpc::RpcMetrics,
    /// From `extractor p2p`'s connections, messages and pings (`peer`).
    pub peer: crate::peer::PeerMetrics,
    /// Bytes on the wire as bitcoind counts them (`wire`).
    pub wire: crate::wire::WireMetrics,
}

impl Metrics {
    /// The families, and the registry (prefix `nodescope_`) that serves them.
    pub fn new() -> (Arc<Metrics>, Registry) {
        let m = Metrics {
            p2p_messages: Family::default(),
            p2p_message_bytes: Family::default(),
            p2p_message_decode_errors: Family::default(),
            p2p_addresses: Family::default(),
            p2p_inv_entries: Family::default(),
            p2p_feefilter: histograms(feerate_buckets),
            p2p_user_agents: Family::default(),
            p2p_ping_rtt: histograms(rtt_buckets),
            connections_opened: Family::default(),
            connections_closed: Family::default(),
            connections_evicted: Family::default(),
            connections_misbehaving: Family::default(),
            connections_open: Family::default(),
            connection_age_at_close: histograms(age_buckets),
            mempool_added: Family::default(),
            mempool_removed: Family::default(),
            mempool_replaced: Family::default(),
            mempool_rejected: Family::default(),
            mempool_added_vsize: histograms(vsize_buckets),
            mempool_added_fee: histograms(fee_buckets),
            mempool_added_feerate: histograms(feerate_buckets),
            block_height: Family::default(),
            blocks_connected: Family::default(),
            block_connect_duration: histograms(block_buckets),
            block_transactions: Family::default(),
            block_inputs: Family::default(),
            block_sigop_cost: Family::default(),
            utxocache_flushes: Family::default(),
            utxocache_flush_duration: histograms(flush_buckets),
            utxocache_flush_coins: Family::default(),
            utxocache_flush_memory: Family::default(),
            utxocache_coins: Family::default(),
            utxocache_coin_value: Family::default(),
            coin_selections: Family::default(),
            coin_selection_value: Family::default(),
            create_tx: Family::default(),
            aps_used: Family::default(),
            events_received: Family::default(),
            events_missed: Family::default(),
            events_replayed: Family::default(),
            extractor_restarts: Family::default(),
            undecodable_messages: Family::default(),
            extractor_events_read: Family::default(),
            extractor_events_published: Family::default(),
            extractor_events_resent: Family::default(),
            extractor_events_dropped: Family::default(),
            extractor_kernel_drops: Family::default(),
            extractor_kernel_payload_drops: Family::default(),
            extractor_payloads_incomplete: Family::default(),
            extractor_stray_chunks: Family::default(),
            extractor_errors: Family::default(),
            extractor_queued_events: Family::default(),
            extractor_queued_bytes: Family::default(),
            extractor_attached_locations: Family::default(),
            extractor_kernel_memory: Family::default(),
            rpc: crate::rpc::RpcMetrics::new(),
            peer: crate::peer::PeerMetrics::new(),
            wire: crate::wire::WireMetrics::default(),
        };
        let mut r = Registry::with_prefix("nodescope");
        let seconds = || Unit::Seconds;
        let bytes = || Unit::Bytes;

        r.register(
            "p2p_messages",
            "P2P messages received (inbound) or queued to send (outbound)",
            m.p2p_messages.clone(),
        );
        r.register_with_unit(
            "p2p_message_payload",
            "P2P message payload bytes (after the 24-byte header), as bitcoind reported them",
            bytes(),
            m.p2p_message_bytes.clone(),
        );
        r.register(
            "p2p_message_decode_errors",
            "P2P messages whose payload could not be decoded (truncated captures included)",
            m.p2p_message_decode_errors.clone(),
        );
        r.register(
            "p2p_addresses",
            "Addresses announced in addr and addrv2 messages, by address family",
            m.p2p_addresses.clone(),
        );
        r.register(
            "p2p_inv_entries",
            "Inventory entries in inv, getdata and notfound messages, by type",
            m.p2p_inv_entries.clone(),
        );
        r.register(
            "p2p_feefilter_sat_per_vbyte",
            "Fee rates announced in feefilter messages (sat/vB)",
            m.p2p_feefilter.clone(),
        );
        r.register(
            "p2p_version_user_agents",
            "version messages by user agent: the node's top N user agents, the rest as 'other'",
            m.p2p_user_agents.clone(),
        );
        r.register_with_unit("p2p_ping_rtt", "Ping round trips: outbound = the node's ping answered by the peer's pong, inbound = the peer's ping answered by the node", seconds(), m.p2p_ping_rtt.clone());

        r.register(
            "connections_opened",
            "Connections opened (net:inbound_connection, net:outbound_connection)",
            m.connections_opened.clone(),
        );
        r.register(
            "connections_closed",
            "Connections closed, for any reason (net:closed_connection)",
            m.connections_closed.clone(),
        );
        r.register(
            "connections_evicted",
            "Inbound connections evicted to make room (net:evicted_inbound_connection)",
            m.connections_evicted.clone(),
        );
        r.register(
            "connections_misbehaving",
            "Peers marked for discouragement, by reason class (net:misbehaving_connection)",
            m.connections_misbehaving.clone(),
        );
        r.register(
            "connections_open",
            "Connections open: opened minus closed, of the connections this exporter saw open",
            m.connections_open.clone(),
        );
        r.register_with_unit(
            "connection_age_at_close",
            "Age of connections when they closed",
            seconds(),
            m.connection_age_at_close.clone(),
        );

        r.register(
            "mempool_added",
            "Transactions added to the mempool",
            m.mempool_added.clone(),
        );
        r.register(
            "mempool_removed",
            "Transactions removed from the mempool, by reason",
            m.mempool_removed.clone(),
        );
        r.register(
            "mempool_replaced",
            "Mempool transactions replaced, by what replaced them (transaction or package)",
            m.mempool_replaced.clone(),
        );
        r.register(
            "mempool_rejected",
            "Transactions rejected from the mempool, by reason class",
            m.mempool_rejected.clone(),
        );
        r.register(
            "mempool_added_vsize_vbytes",
            "Virtual size of transactions added to the mempool (vB)",
            m.mempool_added_vsize.clone(),
        );
        r.register(
            "mempool_added_fee_satoshis",
            "Fee of transactions added to the mempool (sat)",
            m.mempool_added_fee.clone(),
        );
        r.register(
            "mempool_added_feerate_sat_per_vbyte",
            "Fee rate of transactions added to the mempool (sat/vB)",
            m.mempool_added_feerate.clone(),
        );

        r.register(
            "block_height",
            "Height of the last block connected",
            m.block_height.clone(),
        );
        r.register(
            "blocks_connected",
            "Blocks connected to the active chain",
            m.blocks_connected.clone(),
        );
        r.register_with_unit(
            "block_connect_duration",
            "Time bitcoind spent in ConnectBlock",
            seconds(),
            m.block_connect_duration.clone(),
        );
        r.register(
            "block_transactions",
            "Transactions in connected blocks (coinbase included)",
            m.block_transactions.clone(),
        );
        r.register(
            "block_inputs",
            "Transaction inputs in connected blocks",
            m.block_inputs.clone(),
        );
        r.register(
            "block_sigop_cost",
            "Sigop cost of connected blocks",
            m.block_sigop_cost.clone(),
        );

        r.register(
            "utxocache_flushes",
            "UTXO cache flushes to the coins database, by flush mode",
            m.utxocache_flushes.clone(),
        );
        r.register_with_unit(
            "utxocache_flush_duration",
            "Duration of UTXO cache flushes",
            seconds(),
            m.utxocache_flush_duration.clone(),
        );
        r.register(
            "utxocache_flush_coins",
            "Coins in the UTXO cache at the last flush",
            m.utxocache_flush_coins.clone(),
        );
        r.register_with_unit(
            "utxocache_flush_memory",
            "Memory usage of the UTXO cache at the last flush",
            bytes(),
            m.utxocache_flush_memory.clone(),
        );
        r.register(
            "utxocache_coins",
            "Coins added to, spent from or uncached from the UTXO cache",
            m.utxocache_coins.clone(),
        );
        r.register(
            "utxocache_coin_value_satoshis",
            "Value of the coins added, spent or uncached (sat)",
            m.utxocache_coin_value.clone(),
        );

        r.register(
            "coin_selection_selections",
            "Wallet coin selections, by algorithm",
            m.coin_selections.clone(),
        );
        r.register(
            "coin_selection_selected_value_satoshis",
            "Value selected by wallet coin selections (sat), by algorithm",
            m.coin_selection_value.clone(),
        );
        r.register("coin_selection_create_tx", "Wallet transaction creations: the normal attempt and the avoid-partial-spends one, by result", m.create_tx.clone());
        r.register(
            "coin_selection_aps_used",
            "Avoid-partial-spends transactions chosen over the normal one",
            m.aps_used.clone(),
        );

        r.register(
            "events_received",
            "Events this exporter received, per extractor and category",
            m.events_received.clone(),
        );
        r.register(
            "events_missed",
            "Events missing in the sequence (lost on the way), per extractor and category",
            m.events_missed.clone(),
        );
        r.register(
            "events_replayed",
            "Events received twice (re-sent by the extractor after a NATS reconnect) and skipped",
            m.events_replayed.clone(),
        );
        r.register(
            "extractor_restarts",
            "Extractor restarts seen (a new run id)",
            m.extractor_restarts.clone(),
        );
        r.register("undecodable_messages", "Messages on nodescope subjects that are not events (node 'unknown' when the subject names none)", m.undecodable_messages.clone());

        r.register(
            "extractor_events_read",
            "Tracepoint firings the extractor read (its current run)",
            m.extractor_events_read.clone(),
        );
        r.register(
            "extractor_events_published",
            "Events NATS confirmed to the extractor (its current run)",
            m.extractor_events_published.clone(),
        );
        r.register(
            "extractor_events_resent",
            "Events the extractor sent again after a connection failure (its current run)",
            m.extractor_events_resent.clone(),
        );
        r.register("extractor_events_dropped", "Events the extractor dropped: queue full while NATS was away, or larger than max_payload (its current run)", m.extractor_events_dropped.clone());
        r.register(
            "extractor_kernel_drops",
            "Records the kernel could not deliver, ring buffer full (the extractor's current run)",
            m.extractor_kernel_drops.clone(),
        );
        r.register(
            "extractor_kernel_payload_drops",
            "P2P payloads cut because the ring buffer filled (the extractor's current run)",
            m.extractor_kernel_payload_drops.clone(),
        );
        r.register("extractor_payloads_incomplete", "P2P payloads published cut because their chunks stopped coming: expired (none for 200 ms), or still missing at shutdown (the extractor's current run)", m.extractor_payloads_incomplete.clone());
        r.register(
            "extractor_stray_chunks",
            "Payload chunks of no event waiting for bytes, discarded (the extractor's current run)",
            m.extractor_stray_chunks.clone(),
        );
        r.register("extractor_errors", "Payloads the extractor could not decode, arguments it could not read (its current run)", m.extractor_errors.clone());
        r.register(
            "extractor_queued_events",
            "Events waiting in the extractor for NATS",
            m.extractor_queued_events.clone(),
        );
        r.register_with_unit(
            "extractor_queued",
            "Size of the events waiting in the extractor for NATS",
            bytes(),
            m.extractor_queued_bytes.clone(),
        );
        r.register(
            "extractor_attached_locations",
            "Tracepoint locations the extractor is attached to",
            m.extractor_attached_locations.clone(),
        );
        r.register_with_unit(
            "extractor_kernel_memory",
            "Kernel memory the extractor's eBPF maps reserve",
            bytes(),
            m.extractor_kernel_memory.clone(),
        );
        m.wire.register(&mut r);
        m.rpc.register(&mut r);
        m.peer.register(&mut r);
        (Arc::new(m), r)
    }
}
