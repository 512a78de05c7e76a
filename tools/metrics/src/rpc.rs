//! What `extractor rpc` publishes, as metrics: each answer of bitcoind's RPC sets the gauges of
//! what it reports (the node's own view: peers, traffic, mempool, address manager, chain,
//! network, indexes, UTXO set), each call counts as answered or failed with its duration, and each ZMQ
//! notification counts per topic.
//!
//! Answers that list things (peers by kind, address manager networks, indexes) replace the
//! whole set: a kind of peer that is gone goes to 0; an index that is gone loses its series.
//! Ping times are min/median/max across the peers of the last getpeerinfo (a histogram fed at
//! every poll would count each peer once per poll, at the poll's pace, not the peers'); a
//! statistic no peer has a value for has no series.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use nodescope_proto::rpc_call::Result as Answer;
use nodescope_proto::{
    AddrmanInfo, BlockchainInfo, ChainTxStats, Event, IndexInfo, MempoolInfo, NetTotals,
    NetworkInfo, PeerInfoList, RpcCall, TxOutSetInfo, ZmqNotification,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::labels::{self, INBOUND, OTHER, OUTBOUND};
use crate::metrics::{
    histograms, label_sets, Counters, DirectionLabels, FloatGauges, Gauges, Histograms, Metrics,
    NetworkLabels, Node, NodeLabels,
};
use crate::wire::WireBytes;

label_sets! {
    PeerLabels { network, connection_type, transport }
    StatLabels { stat }
    MemoryLabels { memory }
    AddrmanLabels { network, table }
    IndexLabels { index }
    MethodLabels { method }
    FailureLabels { method, kind }
    ExtractorMethodLabels { extractor, method }
    ExtractorTopicLabels { extractor, topic }
    TopicLabels { topic }
}

fn duration_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Declares [`RpcMetrics`]: each family with its type, name (after `nodescope_`), unit and help.
macro_rules! families {
    ($($field:ident: $type:ty = $name:literal, $unit:expr, $help:literal;)*) => {
        /// The families of RPC answers, ZMQ notifications, and `extractor rpc`'s own counts.
        pub struct RpcMetrics {
            $(pub $field: $type,)*
            pub call_duration: Histograms<MethodLabels>,
        }

        impl RpcMetrics {
            pub fn new() -> RpcMetrics {
                RpcMetrics {
                    $($field: Family::default(),)*
                    call_duration: histograms(duration_buckets),
                }
            }

            pub fn register(&self, r: &mut Registry) {
                $(register(r, $name, $help, $unit, self.$field.clone());)*
                r.register_with_unit(
                    "rpc_call_duration",
                    "Duration of the answered RPC calls of extractor rpc, request to whole answer",
                    Unit::Seconds,
                    self.call_duration.clone(),
                );
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
const B: Option<Unit> = Some(Unit::Bytes);

families! {
    // getpeerinfo
    peers: Gauges<PeerLabels> = "rpc_peers", None,
        "Peers by network, connection type and transport, as the last getpeerinfo lists them";
    pingtime: FloatGauges<StatLabels> = "rpc_peer_pingtime", S,
        "Last ping time (getpeerinfo pingtime) across the peers that have one: min, median, max";
    minping: FloatGauges<StatLabels> = "rpc_peer_minping", S,
        "Lowest ping time of each peer (getpeerinfo minping) across the peers that have one: min, median, max";
    // getnettotals
    net_bytes: Counters<DirectionLabels> = "rpc_net", B,
        "Bytes received (inbound) and sent (outbound) by bitcoind since it started (getnettotals)";
    upload_target: Gauges<NodeLabels> = "rpc_upload_target", B,
        "The -maxuploadtarget per cycle, 0 for none (getnettotals)";
    upload_target_left: Gauges<NodeLabels> = "rpc_upload_target_left", B,
        "Bytes left to upload in the current cycle (getnettotals bytes_left_in_cycle)";
    upload_target_reached: Gauges<NodeLabels> = "rpc_upload_target_reached", None,
        "1 when the upload target is reached (getnettotals)";
    // getmempoolinfo
    mempool_transactions: Gauges<NodeLabels> = "rpc_mempool_transactions", None,
        "Transactions in the mempool (getmempoolinfo size)";
    mempool_vsize: Gauges<NodeLabels> = "rpc_mempool_vsize_vbytes", None,
        "Sum of the mempool's transaction virtual sizes (getmempoolinfo bytes)";
    mempool_usage: Gauges<NodeLabels> = "rpc_mempool_usage", B,
        "Memory the mempool uses (getmempoolinfo usage)";
    mempool_max: Gauges<NodeLabels> = "rpc_mempool_max", B,
        "Most memory the mempool may use (getmempoolinfo maxmempool)";
    mempool_min_fee: FloatGauges<NodeLabels> = "rpc_mempool_min_fee_sat_per_vbyte", None,
        "Lowest fee rate the mempool accepts now (getmempoolinfo mempoolminfee, sat/vB)";
    mempool_min_relay_fee: FloatGauges<NodeLabels> = "rpc_mempool_min_relay_fee_sat_per_vbyte", None,
        "The minimum relay fee rate (getmempoolinfo minrelaytxfee, sat/vB)";
    mempool_total_fee: Gauges<NodeLabels> = "rpc_mempool_total_fee_satoshis", None,
        "Fees of all mempool transactions (getmempoolinfo total_fee, sat)";
    mempool_full_rbf: Gauges<NodeLabels> = "rpc_mempool_full_rbf", None,
        "1 when the mempool accepts every replacement (getmempoolinfo fullrbf)";
    mempool_loaded: Gauges<NodeLabels> = "rpc_mempool_loaded", None,
        "1 once the mempool is loaded from disk (getmempoolinfo loaded)";
    mempool_unbroadcast: Gauges<NodeLabels> = "rpc_mempool_unbroadcast_transactions", None,
        "Mempool transactions no peer has asked for yet (getmempoolinfo unbroadcastcount)";
    // getmemoryinfo, uptime
    memory_locked: Gauges<MemoryLabels> = "rpc_memory_locked", B,
        "Locked memory pool (getmemoryinfo locked): used, free, total, locked";
    uptime: Gauges<NodeLabels> = "rpc_uptime", S,
        "Time since bitcoind started (uptime)";
    // getaddrmaninfo
    addrman: Gauges<AddrmanLabels> = "rpc_addrman_addresses", None,
        "Addresses in the address manager per network and table (getaddrmaninfo; all_networks is the total)";
    // getblockchaininfo
    chain_blocks: Gauges<NodeLabels> = "rpc_chain_blocks", None,
        "Height of the active chain's tip (getblockchaininfo blocks)";
    chain_headers: Gauges<NodeLabels> = "rpc_chain_headers", None,
        "Height of the best validated header (getblockchaininfo headers)";
    chain_verification_progress: FloatGauges<NodeLabels> = "rpc_chain_verification_progress", None,
        "Estimated verification progress, 0 to 1 (getblockchaininfo)";
    chain_ibd: Gauges<NodeLabels> = "rpc_chain_initial_block_download", None,
        "1 while in initial block download (getblockchaininfo)";
    chain_size_on_disk: Gauges<NodeLabels> = "rpc_chain_size_on_disk", B,
        "Size of the block and undo files (getblockchaininfo size_on_disk)";
    chain_pruned: Gauges<NodeLabels> = "rpc_chain_pruned", None,
        "1 when the node prunes blocks (getblockchaininfo pruned)";
    chain_difficulty: FloatGauges<NodeLabels> = "rpc_chain_difficulty", None,
        "Difficulty of the tip (getblockchaininfo)";
    chain_warnings: Gauges<NodeLabels> = "rpc_chain_warnings", None,
        "Warnings getblockchaininfo reports";
    // getnetworkinfo
    network_reachable: Gauges<NetworkLabels> = "rpc_network_reachable", None,
        "1 when bitcoind can reach the network (getnetworkinfo networks)";
    network_limited: Gauges<NetworkLabels> = "rpc_network_limited", None,
        "1 when bitcoind is limited to other networks than this one (getnetworkinfo networks, -onlynet)";
    connections: Gauges<DirectionLabels> = "rpc_connections", None,
        "Connections in (inbound) and out (outbound), as getnetworkinfo counts them";
    network_active: Gauges<NodeLabels> = "rpc_network_active", None,
        "1 when P2P networking is enabled (getnetworkinfo networkactive)";
    network_warnings: Gauges<NodeLabels> = "rpc_network_warnings", None,
        "Warnings getnetworkinfo reports";
    // getchaintxstats, getorphantxs, getindexinfo
    chain_tx_rate: FloatGauges<NodeLabels> = "rpc_chain_tx_rate", None,
        "Transactions per second over the last month of blocks (getchaintxstats txrate); no series while bitcoind gives none";
    chain_transactions: Gauges<NodeLabels> = "rpc_chain_transactions", None,
        "Transactions in the chain up to the tip (getchaintxstats txcount); no series while bitcoind gives none";
    orphans: Gauges<NodeLabels> = "rpc_orphan_transactions", None,
        "Transactions in the orphanage (getorphantxs)";
    index_synced: Gauges<IndexLabels> = "rpc_index_synced", None,
        "1 when the index is synced (getindexinfo)";
    index_height: Gauges<IndexLabels> = "rpc_index_best_block_height", None,
        "Height the index has reached (getindexinfo)";
    // gettxoutsetinfo
    coin_supply: FloatGauges<NodeLabels> = "rpc_coin_supply_btc", None,
        "Coins in the UTXO set at rpc_utxo_height (gettxoutsetinfo total_amount, BTC)";
    coin_supply_limit: FloatGauges<NodeLabels> = "rpc_coin_supply_limit_btc", None,
        "Most coins the subsidy schedule of the node's chain allows at rpc_utxo_height: the subsidies of blocks 0 to it (BTC); no series for an unknown chain";
    utxo_height: Gauges<NodeLabels> = "rpc_utxo_height", None,
        "Height of the block the UTXO set was read at (gettxoutsetinfo height)";
    utxo_txouts: Gauges<NodeLabels> = "rpc_utxo_txouts", None,
        "Unspent transaction outputs (gettxoutsetinfo txouts)";
    // The calls, as this exporter received them
    calls: Counters<MethodLabels> = "rpc_calls", None,
        "RPC calls of extractor rpc answered, per method (a getrawaddrman answer in parts counts once)";
    call_failures: Counters<FailureLabels> = "rpc_call_failures", None,
        "RPC calls of extractor rpc that failed, per method and kind";
    // The calls and ZMQ messages as `extractor rpc` counts them (its ExtractorStats)
    extractor_calls: Counters<ExtractorMethodLabels> = "extractor_rpc_calls", None,
        "RPC answers per method, as extractor rpc counts them (its current run)";
    extractor_failures: Counters<ExtractorMethodLabels> = "extractor_rpc_failures", None,
        "Failed RPC calls per method, as extractor rpc counts them (its current run)";
    extractor_zmq_received: Counters<ExtractorTopicLabels> = "extractor_zmq_received", None,
        "ZMQ messages received per topic, as extractor rpc counts them (its current run)";
    extractor_zmq_missed: Counters<ExtractorTopicLabels> = "extractor_zmq_missed", None,
        "ZMQ messages lost per topic (the publisher's sequence jumped), as extractor rpc counts them (its current run)";
    // ZMQ notifications
    zmq_notifications: Counters<TopicLabels> = "zmq_notifications", None,
        "ZMQ notifications received, per topic";
    zmq_missed: Counters<TopicLabels> = "zmq_missed", None,
        "ZMQ notifications lost before the ones received (their sequence jumped), per topic";
    zmq_last: FloatGauges<TopicLabels> = "zmq_last_notification_timestamp", S,
        "UNIX time of the last ZMQ notification, per topic";
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics::new()
    }
}

/// What a node's last answers listed, so that the next ones can replace it.
#[derive(Default)]
pub struct RpcState {
    peers: HashSet<PeerLabels>,
    addrman: HashSet<AddrmanLabels>,
    indexes: HashSet<IndexLabels>,
}

/// An RPC call's answer or failure (`event`'s payload is `call`).
pub fn call(
    m: &Metrics,
    state: &mut RpcState,
    wire: &mut WireBytes,
    node: &Node,
    event: &Event,
    call: &RpcCall,
) {
    let r = &m.rpc;
    let method = labels::rpc_method(&call.method);
    let Some(answer) = &call.result else {
        return;
    };
    if let Answer::Failure(failure) = answer {
        r.call_failures
            .get_or_create(&FailureLabels {
                node: node.clone(),
                method,
                kind: failure.kind_name(),
            })
            .inc();
        return;
    }
    // getrawaddrman's answer comes in parts, all with the call's duration: the first counts.
    if !matches!(answer, Answer::RawAddrman(part) if part.part != 0) {
        let labels = MethodLabels {
            node: node.clone(),
            method,
        };
        r.calls.get_or_create(&labels).inc();
        r.call_duration
            .get_or_create(&labels)
            .observe(call.duration_ns as f64 / 1e9);
    }
    let n = || NodeLabels { node: node.clone() };
    match answer {
        Answer::PeerInfo(list) => {
            peers(r, state, node, list);
            wire.peer_info(&m.wire, node, event.timestamp_ns, &list.peers);
        }
        Answer::MempoolInfo(info) => mempool(r, node, info),
        Answer::NetTotals(totals) => net_totals(r, node, totals),
        Answer::MemoryInfo(info) => {
            let locked = info.locked.unwrap_or_default();
            for (memory, value) in [
                ("used", locked.used),
                ("free", locked.free),
                ("total", locked.total),
                ("locked", locked.locked),
            ] {
                let labels = MemoryLabels {
                    node: node.clone(),
                    memory,
                };
                r.memory_locked.get_or_create(&labels).set(int(value));
            }
        }
        Answer::AddrmanInfo(info) => addrman(r, state, node, info),
        Answer::Uptime(uptime) => {
            r.uptime.get_or_create(&n()).set(int(uptime.seconds));
        }
        Answer::BlockchainInfo(info) => blockchain(r, node, info),
        Answer::NetworkInfo(info) => network(r, node, info),
        Answer::ChainTxStats(stats) => chain_tx_stats(r, node, stats),
        Answer::OrphanTxs(list) => {
            r.orphans.get_or_create(&n()).set(int(list.orphans.len()));
        }
        Answer::IndexInfo(info) => indexes(r, state, node, info),
        Answer::TxOutSetInfo(info) => utxo_set(r, node, &event.chain, info),
        // Counted as a call; its addresses are the address manager's, counted per network by
        // getaddrmaninfo.
        Answer::RawAddrman(_) | Answer::Failure(_) => {}
    }
}

/// A ZMQ notification (`event`'s payload is `notification`).
pub fn zmq(m: &Metrics, node: &Node, event: &Event, notification: &ZmqNotification) {
    let labels = TopicLabels {
        node: node.clone(),
        topic: labels::zmq_topic(&notification.topic),
    };
    m.rpc.zmq_notifications.get_or_create(&labels).inc();
    m.rpc
        .zmq_missed
        .get_or_create(&labels)
        .inc_by(u64::from(notification.missed_before));
    m.rpc
        .zmq_last
        .get_or_create(&labels)
        .set(event.timestamp_ns as f64 / 1e9);
}

fn int(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

fn flag(value: bool) -> i64 {
    i64::from(value)
}

/// BTC → sat.
fn sats(btc: f64) -> i64 {
    (btc * 1e8).round() as i64
}

/// BTC/kvB → sat/vB, through whole sat/kvB (bitcoind prints amounts to the satoshi), so that
/// 0.00000100 is 0.1, not 0.09999999999999999.
fn sat_per_vbyte(btc_per_kvb: f64) -> f64 {
    (btc_per_kvb * 1e8).round() / 1000.0
}

/// Sets `now` in `family`; of the label sets `last` had, those `now` lacks go to 0 (`zero`) or
/// lose their series; `last` becomes `now`'s.
fn replace<L: Clone + Hash + Eq>(
    family: &Gauges<L>,
    last: &mut HashSet<L>,
    now: HashMap<L, i64>,
    zero: bool,
) {
    for gone in last.iter().filter(|l| !now.contains_key(*l)) {
        if zero {
            family.get_or_create(gone).set(0);
        } else {
            family.remove(gone);
        }
    }
    last.clear();
    for (labels, value) in now {
        family.get_or_create(&labels).set(value);
        last.insert(labels);
    }
}

fn peers(r: &RpcMetrics, state: &mut RpcState, node: &Node, list: &PeerInfoList) {
    let mut counts: HashMap<PeerLabels, i64> = HashMap::new();
    for peer in &list.peers {
        let labels = PeerLabels {
            node: node.clone(),
            network: labels::rpc_network(&peer.network),
            connection_type: labels::rpc_connection_type(&peer.connection_type),
            transport: labels::rpc_transport(&peer.transport_protocol_type),
        };
        *counts.entry(labels).or_default() += 1;
    }
    replace(&r.peers, &mut state.peers, counts, true);
    for (family, times) in [
        (
            &r.pingtime,
            list.peers.iter().map(|p| p.pingtime).collect::<Vec<_>>(),
        ),
        (&r.minping, list.peers.iter().map(|p| p.minping).collect()),
    ] {
        let mut times: Vec<f64> = times
            .into_iter()
            .flatten()
            .filter(|t| t.is_finite())
            .collect();
        times.sort_by(f64::total_cmp);
        let median = match times.len() {
            0 => None,
            n if n % 2 == 1 => Some(times[n / 2]),
            n => Some((times[n / 2 - 1] + times[n / 2]) / 2.0),
        };
        for (stat, value) in [
            ("min", times.first().copied()),
            ("median", median),
            ("max", times.last().copied()),
        ] {
            let labels = StatLabels {
                node: node.clone(),
                stat,
            };
            match value {
                Some(value) => {
                    family.get_or_create(&labels).set(value);
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
    }
}

fn net_totals(r: &RpcMetrics, node: &Node, totals: &NetTotals) {
    // bitcoind's totals since it started: a restart is a counter reset.
    for (direction, value) in [
        (INBOUND, totals.totalbytesrecv),
        (OUTBOUND, totals.totalbytessent),
    ] {
        let labels = DirectionLabels {
            node: node.clone(),
            direction,
        };
        crate::stats::store(&r.net_bytes.get_or_create(&labels), value);
    }
    let n = NodeLabels { node: node.clone() };
    let target = totals.uploadtarget.unwrap_or_default();
    r.upload_target.get_or_create(&n).set(int(target.target));
    r.upload_target_left
        .get_or_create(&n)
        .set(int(target.bytes_left_in_cycle));
    r.upload_target_reached
        .get_or_create(&n)
        .set(flag(target.target_reached));
}

fn mempool(r: &RpcMetrics, node: &Node, info: &MempoolInfo) {
    let n = NodeLabels { node: node.clone() };
    r.mempool_transactions.get_or_create(&n).set(int(info.size));
    r.mempool_vsize.get_or_create(&n).set(int(info.bytes));
    r.mempool_usage.get_or_create(&n).set(int(info.usage));
    r.mempool_max.get_or_create(&n).set(int(info.maxmempool));
    r.mempool_min_fee
        .get_or_create(&n)
        .set(sat_per_vbyte(info.mempoolminfee));
    r.mempool_min_relay_fee
        .get_or_create(&n)
        .set(sat_per_vbyte(info.minrelaytxfee));
    r.mempool_total_fee
        .get_or_create(&n)
        .set(sats(info.total_fee));
    r.mempool_full_rbf.get_or_create(&n).set(flag(info.fullrbf));
    r.mempool_loaded.get_or_create(&n).set(flag(info.loaded));
    r.mempool_unbroadcast
        .get_or_create(&n)
        .set(int(info.unbroadcastcount));
}

fn addrman(r: &RpcMetrics, state: &mut RpcState, node: &Node, info: &AddrmanInfo) {
    let mut counts: HashMap<AddrmanLabels, i64> = HashMap::new();
    for (network, addresses) in &info.networks {
        let network = labels::rpc_addrman_network(network);
        for (table, count) in [("new", addresses.new), ("tried", addresses.tried)] {
            let labels = AddrmanLabels {
                node: node.clone(),
                network,
                table,
            };
            *counts.entry(labels).or_default() += int(count);
        }
    }
    replace(&r.addrman, &mut state.addrman, counts, true);
}

fn blockchain(r: &RpcMetrics, node: &Node, info: &BlockchainInfo) {
    let n = NodeLabels { node: node.clone() };
    r.chain_blocks.get_or_create(&n).set(int(info.blocks));
    r.chain_headers.get_or_create(&n).set(int(info.headers));
    r.chain_verification_progress
        .get_or_create(&n)
        .set(info.verificationprogress);
    r.chain_ibd
        .get_or_create(&n)
        .set(flag(info.initialblockdownload));
    r.chain_size_on_disk
        .get_or_create(&n)
        .set(int(info.size_on_disk));
    r.chain_pruned.get_or_create(&n).set(flag(info.pruned));
    r.chain_difficulty.get_or_create(&n).set(info.difficulty);
    r.chain_warnings
        .get_or_create(&n)
        .set(int(info.warnings.len()));
}

fn network(r: &RpcMetrics, node: &Node, info: &NetworkInfo) {
    // Networks this version does not know share `other`: reachable or limited if any is.
    let mut flags: HashMap<&'static str, (bool, bool)> = HashMap::new();
    for network in &info.networks {
        let entry = flags.entry(labels::rpc_network(&network.name)).or_default();
        entry.0 |= network.reachable;
        entry.1 |= network.limited;
    }
    for (network, (reachable, limited)) in flags {
        let labels = NetworkLabels {
            node: node.clone(),
            network,
        };
        r.network_reachable
            .get_or_create(&labels)
            .set(flag(reachable));
        r.network_limited.get_or_create(&labels).set(flag(limited));
    }
    for (direction, count) in [
        (INBOUND, info.connections_in),
        (OUTBOUND, info.connections_out),
    ] {
        let labels = DirectionLabels {
            node: node.clone(),
            direction,
        };
        r.connections.get_or_create(&labels).set(i64::from(count));
    }
    let n = NodeLabels { node: node.clone() };
    r.network_active
        .get_or_create(&n)
        .set(flag(info.networkactive));
    r.network_warnings
        .get_or_create(&n)
        .set(int(info.warnings.len()));
}

fn chain_tx_stats(r: &RpcMetrics, node: &Node, stats: &ChainTxStats) {
    let n = NodeLabels { node: node.clone() };
    match stats.txrate {
        Some(rate) => {
            r.chain_tx_rate.get_or_create(&n).set(rate);
        }
        None => {
            r.chain_tx_rate.remove(&n);
        }
    }
    match stats.txcount {
        Some(count) => {
            r.chain_transactions.get_or_create(&n).set(int(count));
        }
        None => {
            r.chain_transactions.remove(&n);
        }
    }
}

fn indexes(r: &RpcMetrics, state: &mut RpcState, node: &Node, info: &IndexInfo) {
    // Indexes this version does not know share `other`: synced if all are, at the lowest height.
    let mut now: HashMap<IndexLabels, (bool, u64)> = HashMap::new();
    for (name, index) in &info.indexes {
        let labels = IndexLabels {
            node: node.clone(),
            index: labels::rpc_index(name),
        };
        let entry = now.entry(labels).or_insert((true, index.best_block_height));
        entry.0 &= index.synced;
        entry.1 = entry.1.min(index.best_block_height);
    }
    let synced = now.iter().map(|(l, v)| (l.clone(), flag(v.0))).collect();
    let heights = now.iter().map(|(l, v)| (l.clone(), int(v.1))).collect();
    let mut last = state.indexes.clone();
    replace(&r.index_synced, &mut last, synced, false);
    replace(&r.index_height, &mut state.indexes, heights, false);
}

/// The supply and the schedule's limit at the same height, for the inflation alert
/// (`rpc_coin_supply_btc > rpc_coin_supply_limit_btc`). Both hold whole satoshis: equal amounts
/// are equal floats.
fn utxo_set(r: &RpcMetrics, node: &Node, chain: &str, info: &TxOutSetInfo) {
    let n = NodeLabels { node: node.clone() };
    r.coin_supply.get_or_create(&n).set(info.total_amount);
    match crate::supply::halving_interval(chain) {
        Some(interval) => {
            let limit = crate::supply::supply_limit(info.height, interval);
            r.coin_supply_limit
                .get_or_create(&n)
                .set(limit as f64 / crate::supply::COIN as f64);
        }
        None => {
            r.coin_supply_limit.remove(&n);
        }
    }
    r.utxo_height.get_or_create(&n).set(int(info.height));
    r.utxo_txouts.get_or_create(&n).set(int(info.txouts));
}

/// `extractor rpc`'s counts per method and topic (totals of its current run): every method
/// and topic gets a value at each stats event (0 when absent), so no series keeps a stale total
/// of an earlier run. Other extractors' stats carry none of them, and get no series.
pub(crate) fn extractor_counts(
    m: &Metrics,
    node: &Node,
    extractor: &'static str,
    s: &nodescope_proto::ExtractorStats,
) {
    let maps = [
        &s.rpc_calls,
        &s.rpc_failures,
        &s.zmq_received,
        &s.zmq_missed,
    ];
    if extractor != "rpc" && maps.iter().all(|m| m.is_empty()) {
        return;
    }
    let r = &m.rpc;
    for (family, counts) in [
        (&r.extractor_calls, &s.rpc_calls),
        (&r.extractor_failures, &s.rpc_failures),
    ] {
        let totals = by_label(counts, labels::rpc_method);
        for method in labels::rpc_methods() {
            let labels = ExtractorMethodLabels {
                node: node.clone(),
                extractor,
                method,
            };
            let total = totals.get(method).copied().unwrap_or(0);
            crate::stats::store(&family.get_or_create(&labels), total);
        }
    }
    for (family, counts) in [
        (&r.extractor_zmq_received, &s.zmq_received),
        (&r.extractor_zmq_missed, &s.zmq_missed),
    ] {
        let totals = by_label(counts, labels::zmq_topic);
        for topic in labels::ZMQ_TOPICS.into_iter().chain([OTHER]) {
            let labels = ExtractorTopicLabels {
                node: node.clone(),
                extractor,
                topic,
            };
            let total = totals.get(topic).copied().unwrap_or(0);
            crate::stats::store(&family.get_or_create(&labels), total);
        }
    }
}

fn by_label(
    counts: &HashMap<String, u64>,
    label: fn(&str) -> &'static str,
) -> HashMap<&'static str, u64> {
    let mut totals = HashMap::new();
    for (key, count) in counts {
        *totals.entry(label(key)).or_default() += count;
    }
    totals
}

#[cfg(test)]
mod tests {
    use nodescope_consumer::testing::{sample, EventSource};
    use nodescope_consumer::{Continuity, Item, Received};
    use nodescope_proto::event::Payload;
    use nodescope_proto::*;
    use prometheus_client::encoding::text::encode;

    use super::Answer;
    use crate::{Config, FlushModes, Metrics, Recorder};

    fn answer(recorder: &mut Recorder, source: &mut EventSource, method: &str, result: Answer) {
        let event = source.stamp(Payload::RpcCall(RpcCall {
            method: method.into(),
            duration_ns: 2_000_000,
            result: Some(result),
            ..RpcCall::default()
        }));
        let received = Received {
            category: Category::Rpc,
            event,
            continuity: Continuity::First,
        };
        recorder.record(&Item::Event(Box::new(received)));
    }

    fn peer(network: &str, connection_type: &str, pingtime: Option<f64>) -> PeerInfo {
        PeerInfo {
            network: network.into(),
            connection_type: connection_type.into(),
            transport_protocol_type: "v2".into(),
            pingtime,
            ..PeerInfo::default()
        }
    }

    #[test]
    fn each_answer_replaces_the_sets_of_the_last() {
        let (metrics, registry) = Metrics::new();
        let config = Config {
            user_agents: 10,
            max_nodes: 10,
            flush_modes: FlushModes::V30,
        };
        let mut recorder = Recorder::new(metrics, config);
        let mut rpc = EventSource::of(ExtractorKind::Rpc, "n", 1);
        let scrape = || {
            let mut scrape = String::new();
            encode(&mut scrape, &registry).unwrap();
            scrape
        };
        let peers = |peers| Answer::PeerInfo(PeerInfoList { peers });
        let index = |synced, best_block_height| IndexState {
            synced,
            best_block_height,
        };
        let indexes = |list: &[(&str, IndexState)]| {
            Answer::IndexInfo(IndexInfo {
                indexes: list.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
            })
        };
        let (tx, filters) = ("txindex", "basic block filter index");
        let series = |name: &str, labels: &str| format!(r#"nodescope_{name}{{node="n",{labels}}}"#);
        let onion_in = series(
            "rpc_peers",
            r#"network="onion",connection_type="inbound",transport="v2""#,
        );
        let other_in = series(
            "rpc_peers",
            r#"network="other",connection_type="other",transport="v2""#,
        );
        let ping = |stat: &str| series("rpc_peer_pingtime_seconds", &format!(r#"stat="{stat}""#));
        let synced = |index: &str| series("rpc_index_synced", &format!(r#"index="{index}""#));

        let list = vec![
            peer("onion", "inbound", Some(0.3)),
            peer("onion", "inbound", Some(0.1)),
            peer("internal", "v31-type", None),
            peer("ipv4", "manual", Some(0.2)),
            peer("ipv4", "manual", Some(0.6)),
        ];
        answer(&mut recorder, &mut rpc, "getpeerinfo", peers(list));
        let both = [(tx, index(true, 10)), (filters, index(false, 7))];
        answer(&mut recorder, &mut rpc, "getindexinfo", indexes(&both));
        let s = scrape();
        assert_eq!(sample(&s, &onion_in), Some(2.0));
        assert_eq!(sample(&s, &other_in), Some(1.0));
        assert_eq!(sample(&s, &ping("min")), Some(0.1));
        assert_eq!(sample(&s, &ping("median")), Some(0.25));
        assert_eq!(sample(&s, &ping("max")), Some(0.6));
        assert_eq!(sample(&s, &synced(filters)), Some(0.0));
        assert_eq!(
            sample(&s, &series("rpc_calls_total", r#"method="getpeerinfo""#)),
            Some(1.0)
        );

        // The onion peers and the filter index are gone; the pings are odd in number.
        let list = vec![
            peer("ipv4", "manual", Some(0.2)),
            peer("ipv4", "manual", Some(0.6)),
            peer("ipv4", "manual", Some(0.5)),
        ];
        answer(&mut recorder, &mut rpc, "getpeerinfo", peers(list));
        answer(&mut recorder, &mut rpc, "getindexinfo", indexes(&both[..1]));
        let s = scrape();
        assert_eq!(sample(&s, &onion_in), Some(0.0));
        assert_eq!(sample(&s, &other_in), Some(0.0));
        assert_eq!(sample(&s, &ping("median")), Some(0.5));
        assert_eq!(sample(&s, &synced(tx)), Some(1.0));
        assert_eq!(sample(&s, &synced(filters)), None);

        // No peer has a ping time: no statistics rather than stale ones.
        let list = vec![peer("ipv4", "manual", None)];
        answer(&mut recorder, &mut rpc, "getpeerinfo", peers(list));
        let s = scrape();
        assert_eq!(sample(&s, &ping("min")), None);
        assert_eq!(
            sample(&s, &series("rpc_calls_total", r#"method="getpeerinfo""#)),
            Some(3.0)
        );
    }

    #[test]
    fn the_coin_supply_is_set_beside_the_schedule_of_the_nodes_chain() {
        let (metrics, registry) = Metrics::new();
        let config = Config {
            user_agents: 10,
            max_nodes: 10,
            flush_modes: FlushModes::V30,
        };
        let mut recorder = Recorder::new(metrics, config);
        let mut rpc = EventSource::of(ExtractorKind::Rpc, "n", 1);
        let mut utxo_set = |chain: &str, height, total_amount| {
            let mut event = rpc.stamp(Payload::RpcCall(RpcCall {
                method: "gettxoutsetinfo".into(),
                duration_ns: 2_000_000,
                result: Some(Answer::TxOutSetInfo(TxOutSetInfo {
                    height,
                    txouts: height + 1,
                    total_amount,
                    ..TxOutSetInfo::default()
                })),
                ..RpcCall::default()
            }));
            event.chain = chain.into();
            let received = Received {
                category: Category::Rpc,
                event,
                continuity: Continuity::First,
            };
            recorder.record(&Item::Event(Box::new(received)));
            let mut scrape = String::new();
            encode(&mut scrape, &registry).unwrap();
            let value = |name: &str| sample(&scrape, &format!(r#"nodescope_{name}{{node="n"}}"#));
            (
                value("rpc_coin_supply_btc"),
                value("rpc_coin_supply_limit_btc"),
                value("rpc_utxo_height"),
                value("rpc_utxo_txouts"),
            )
        };
        // Regtest at 200, past its first halving at 150: 150 × 50 + 51 × 25; the genesis
        // block's 50 are not in the set.
        assert_eq!(
            utxo_set("regtest", 200, 8725.0),
            (Some(8725.0), Some(8775.0), Some(200.0), Some(201.0))
        );
        // Mainnet one block past the fourth halving, with more coins than the schedule allows:
        // shown as they are (the inflation alert compares the two).
        assert_eq!(
            utxo_set("main", 840_000, 19_687_504.0),
            (
                Some(19_687_504.0),
                Some(19_687_503.125),
                Some(840_000.0),
                Some(840_001.0)
            )
        );
        // A chain without a known schedule: no limit rather than a wrong one.
        let (supply, limit, _, _) = utxo_set("", 10, 500.0);
        assert_eq!((supply, limit), (Some(500.0), None));
    }
}
