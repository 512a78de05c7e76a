//! The page's node summary: what bitcoind says about itself, from `extractor rpc`'s events —
//! the latest answer of each RPC method the page shows (chain, network, mempool, traffic
//! totals, uptime, peers), the failure of every method whose latest call failed, and counts of
//! the ZMQ notifications with the latest block announced. Only the latest answer per method is
//! kept, peers only as counts and text cut to [`MAX_TEXT`], so the memory stays the same
//! whatever the node answers.

use std::collections::BTreeMap;

use nodescope_proto::json::hex;
use nodescope_proto::rpc::Method;
use nodescope_proto::rpc_call::Result as Answer;
use nodescope_proto::zmq_notification::Body as ZmqBody;
use nodescope_proto::{
    BlockchainInfo, Event, MempoolInfo, NetworkInfo, PeerInfoList, RpcCall, RpcFailure,
    ZmqNotification,
};
use serde::Serialize;

/// Characters kept of a text from the node (chain name, user agent, warnings, error messages).
pub const MAX_TEXT: usize = 256;
/// Items kept of a list from the node (warnings, reachable networks).
pub const MAX_LIST: usize = 8;

/// The latest answers, by method. `None` until the method first answered.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RpcSummary {
    pub blockchain: Option<Chain>,
    pub network: Option<NetworkState>,
    pub mempool: Option<MempoolState>,
    pub net_totals: Option<NetTotalsState>,
    pub uptime: Option<UptimeState>,
    pub peers: Option<PeersState>,
    /// The methods whose latest call failed, by name (`other` for a method `extractor rpc`
    /// does not call), with that failure; a method leaves when it answers again.
    pub failures: BTreeMap<&'static str, Failure>,
    /// Answers and failures received, all methods.
    pub answers: u64,
    pub failed: u64,
    /// Time of the newest rpc_call event, ns since the epoch (0: none yet).
    pub last_call_ns: u64,
}

/// getblockchaininfo.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Chain {
    pub time_ns: u64,
    pub chain: String,
    pub blocks: u64,
    pub headers: u64,
    pub bestblockhash: String,
    pub verification_progress: f64,
    pub initial_block_download: bool,
    pub size_on_disk: u64,
    pub pruned: bool,
    pub pruneheight: Option<u64>,
    pub warnings: Vec<String>,
}

/// getnetworkinfo.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct NetworkState {
    pub time_ns: u64,
    pub version: i64,
    pub subversion: String,
    pub protocolversion: i64,
    pub connections: u32,
    pub connections_in: u32,
    pub connections_out: u32,
    pub network_active: bool,
    /// Names of the networks bitcoind can reach (ipv4, ipv6, onion, i2p, cjdns).
    pub reachable: Vec<String>,
}

/// getmempoolinfo; fee rates in BTC/kvB, as bitcoind gives them.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct MempoolState {
    pub time_ns: u64,
    pub loaded: bool,
    pub size: u64,
    pub bytes: u64,
    pub usage: u64,
    pub maxmempool: u64,
    pub total_fee: f64,
    pub mempoolminfee: f64,
    pub minrelaytxfee: f64,
}

/// getnettotals.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct NetTotalsState {
    pub time_ns: u64,
    pub bytes_recv: u64,
    pub bytes_sent: u64,
}

/// uptime.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct UptimeState {
    pub time_ns: u64,
    pub seconds: u64,
}

/// getpeerinfo, as counts.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct PeersState {
    pub time_ns: u64,
    pub peers: u64,
    pub inbound: u64,
    pub outbound: u64,
    /// By bitcoind's connection type ([`CONNECTION_TYPES`], else `other`).
    pub by_connection_type: BTreeMap<&'static str, u64>,
    /// By transport ([`TRANSPORTS`], else `other`).
    pub by_transport: BTreeMap<&'static str, u64>,
    /// The median of the peers' last ping, ms; `None` when no peer has answered a ping yet.
    pub median_ping_ms: Option<f64>,
}

/// getpeerinfo's connection types.
pub const CONNECTION_TYPES: [&str; 6] = [
    "outbound-full-relay",
    "block-relay-only",
    "inbound",
    "manual",
    "addr-fetch",
    "feeler",
];
/// getpeerinfo's transports.
pub const TRANSPORTS: [&str; 3] = ["v1", "v2", "detecting"];
/// bitcoind's ZMQ topics.
pub const ZMQ_TOPICS: [&str; 5] = ["hashblock", "hashtx", "rawblock", "rawtx", "sequence"];

/// A failed call.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub time_ns: u64,
    /// unreachable, timeout, auth, rpc_error, bad_answer, too_large, or unknown.
    pub kind: &'static str,
    /// bitcoind's JSON-RPC error code or the HTTP status; 0 when there is none.
    pub code: i64,
    pub message: String,
}

/// `value` among `known`, else `other`: names from the node become a closed set.
fn known(value: &str, known: &[&'static str]) -> &'static str {
    known
        .iter()
        .copied()
        .find(|k| *k == value)
        .unwrap_or("other")
}

/// At most [`MAX_TEXT`] characters of `text`.
pub(crate) fn clip(text: &str) -> String {
    text.chars().take(MAX_TEXT).collect()
}

fn clip_list<'a>(items: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    items.into_iter().take(MAX_LIST).map(|s| clip(s)).collect()
}

impl RpcSummary {
    pub fn apply(&mut self, event: &Event, call: &RpcCall) {
        let time_ns = event.timestamp_ns;
        self.last_call_ns = self.last_call_ns.max(time_ns);
        let method = Method::from_name(&call.method).map_or("other", Method::name);
        let answer = match &call.result {
            Some(Answer::Failure(failure)) => return self.failed(method, time_ns, failure, event),
            // An error mark without the failure's details still says the call failed.
            None if !event.error.is_empty() => {
                return self.failed(method, time_ns, &RpcFailure::default(), event)
            }
            None => return,
            Some(answer) => answer,
        };
        self.answers += 1;
        self.failures.remove(method);
        match answer {
            Answer::BlockchainInfo(b) => self.blockchain = Some(chain(time_ns, b)),
            Answer::NetworkInfo(n) => self.network = Some(network(time_ns, n)),
            Answer::MempoolInfo(m) => self.mempool = Some(mempool(time_ns, m)),
            Answer::NetTotals(t) => {
                self.net_totals = Some(NetTotalsState {
                    time_ns,
                    bytes_recv: t.totalbytesrecv,
                    bytes_sent: t.totalbytessent,
                })
            }
            Answer::Uptime(u) => {
                self.uptime = Some(UptimeState {
                    time_ns,
                    seconds: u.seconds,
                })
            }
            Answer::PeerInfo(list) => self.peers = Some(peers(time_ns, list)),
            // Answered (so no longer failing), but not on the page.
            _ => {}
        }
    }

    fn failed(&mut self, method: &'static str, time_ns: u64, failure: &RpcFailure, event: &Event) {
        self.failed += 1;
        let message = if failure.message.is_empty() {
            &event.error
        } else {
            &failure.message
        };
        self.failures.insert(
            method,
            Failure {
                time_ns,
                kind: failure.kind_name(),
                code: failure.code,
                message: clip(message),
            },
        );
    }
}

fn chain(time_ns: u64, b: &BlockchainInfo) -> Chain {
    Chain {
        time_ns,
        chain: clip(&b.chain),
        blocks: b.blocks,
        headers: b.headers,
        bestblockhash: hex(&b.bestblockhash),
        verification_progress: b.verificationprogress,
        initial_block_download: b.initialblockdownload,
        size_on_disk: b.size_on_disk,
        pruned: b.pruned,
        pruneheight: b.pruneheight,
        warnings: clip_list(&b.warnings),
    }
}

fn network(time_ns: u64, n: &NetworkInfo) -> NetworkState {
    NetworkState {
        time_ns,
        version: n.version,
        subversion: clip(&n.subversion),
        protocolversion: n.protocolversion,
        connections: n.connections,
        connections_in: n.connections_in,
        connections_out: n.connections_out,
        network_active: n.networkactive,
        reachable: clip_list(n.networks.iter().filter(|r| r.reachable).map(|r| &r.name)),
    }
}

fn mempool(time_ns: u64, m: &MempoolInfo) -> MempoolState {
    MempoolState {
        time_ns,
        loaded: m.loaded,
        size: m.size,
        bytes: m.bytes,
        usage: m.usage,
        maxmempool: m.maxmempool,
        total_fee: m.total_fee,
        mempoolminfee: m.mempoolminfee,
        minrelaytxfee: m.minrelaytxfee,
    }
}

fn peers(time_ns: u64, list: &PeerInfoList) -> PeersState {
    let mut state = PeersState {
        time_ns,
        peers: list.peers.len() as u64,
        ..PeersState::default()
    };
    let mut pings = Vec::new();
    for peer in &list.peers {
        if peer.inbound {
            state.inbound += 1;
        } else {
            state.outbound += 1;
        }
        *state
            .by_connection_type
            .entry(known(&peer.connection_type, &CONNECTION_TYPES))
            .or_default() += 1;
        *state
            .by_transport
            .entry(known(&peer.transport_protocol_type, &TRANSPORTS))
            .or_default() += 1;
        if let Some(ping) = peer.pingtime.filter(|p| p.is_finite()) {
            pings.push(ping * 1e3);
        }
    }
    pings.sort_by(f64::total_cmp);
    state.median_ping_ms = match pings.len() {
        0 => None,
        n if n % 2 == 1 => Some(pings[n / 2]),
        n => Some((pings[n / 2 - 1] + pings[n / 2]) / 2.0),
    };
    state
}

/// The ZMQ notifications: counts per topic and the latest block announced.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ZmqSummary {
    /// By topic ([`ZMQ_TOPICS`], else `other`).
    pub topics: BTreeMap<&'static str, ZmqTopic>,
    /// Notifications lost before the ones received (the publisher's counter jumped), all
    /// topics.
    pub missed: u64,
    /// The latest hashblock.
    pub last_block: Option<ZmqBlock>,
    /// Time of the newest notification, ns since the epoch (0: none yet).
    pub last_ns: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ZmqTopic {
    pub received: u64,
    pub missed: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ZmqBlock {
    pub hash: String,
    /// When it was received here: the node's first-seen time of the block.
    pub time_ns: u64,
}

impl ZmqSummary {
    pub fn apply(&mut self, event: &Event, notification: &ZmqNotification) {
        let topic = known(&notification.topic, &ZMQ_TOPICS);
        let counts = self.topics.entry(topic).or_default();
        counts.received += 1;
        counts.missed += u64::from(notification.missed_before);
        self.missed += u64::from(notification.missed_before);
        self.last_ns = self.last_ns.max(event.timestamp_ns);
        if let (Some(ZmqBody::Hash(hash)), "hashblock") = (&notification.body, topic) {
            self.last_block = Some(ZmqBlock {
                hash: hex(hash),
                time_ns: event.timestamp_ns,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodescope_proto::{NetworkReachability, PeerInfo, RpcFailureKind};

    fn event(time_ns: u64, error: &str) -> Event {
        Event {
            timestamp_ns: time_ns,
            error: error.into(),
            ..Event::default()
        }
    }

    fn call(method: &str, result: Answer) -> RpcCall {
        RpcCall {
            method: method.into(),
            result: Some(result),
            ..RpcCall::default()
        }
    }

    fn peer(connection_type: &str, transport: &str, ping: Option<f64>) -> PeerInfo {
        PeerInfo {
            inbound: connection_type == "inbound",
            connection_type: connection_type.into(),
            transport_protocol_type: transport.into(),
            pingtime: ping,
            ..PeerInfo::default()
        }
    }

    #[test]
    fn peers_are_counted_by_type_and_transport_with_the_median_ping() {
        let mut summary = RpcSummary::default();
        let list = PeerInfoList {
            peers: vec![
                peer("outbound-full-relay", "v2", Some(0.010)),
                peer("outbound-full-relay", "v1", Some(0.030)),
                peer("block-relay-only", "v1", None),
                peer("inbound", "v2", Some(0.020)),
                peer("inbound", "detecting", Some(0.100)),
                peer("from-the-future", "v9", None),
            ],
        };
        summary.apply(&event(5, ""), &call("getpeerinfo", Answer::PeerInfo(list)));
        let peers = summary.peers.as_ref().unwrap();
        assert_eq!((peers.peers, peers.inbound, peers.outbound), (6, 2, 4));
        assert_eq!(
            peers.by_connection_type,
            [
                ("outbound-full-relay", 2),
                ("block-relay-only", 1),
                ("inbound", 2),
                ("other", 1)
            ]
            .into()
        );
        assert_eq!(
            peers.by_transport,
            [("v1", 2), ("v2", 2), ("detecting", 1), ("other", 1)].into()
        );
        // 10, 20, 30, 100 ms: between the middle two.
        assert_eq!(peers.median_ping_ms, Some(25.0));
        assert_eq!(peers.time_ns, 5);
        let none = PeerInfoList {
            peers: vec![peer("inbound", "v1", None)],
        };
        summary.apply(&event(6, ""), &call("getpeerinfo", Answer::PeerInfo(none)));
        assert_eq!(summary.peers.as_ref().unwrap().median_ping_ms, None);
    }

    #[test]
    fn a_failure_stays_until_the_method_answers_again() {
        let mut summary = RpcSummary::default();
        let info = BlockchainInfo {
            chain: "regtest".into(),
            blocks: 101,
            ..BlockchainInfo::default()
        };
        summary.apply(
            &event(1, ""),
            &call("getblockchaininfo", Answer::BlockchainInfo(info.clone())),
        );
        let failure = RpcFailure {
            kind: RpcFailureKind::Timeout as i32,
            code: 0,
            message: String::new(),
        };
        summary.apply(
            &event(2, "getblockchaininfo: no answer within 5 s"),
            &call("getblockchaininfo", Answer::Failure(failure)),
        );
        summary.apply(
            &event(3, "connection refused"),
            &RpcCall {
                method: "uptime".into(),
                ..RpcCall::default()
            },
        );
        assert_eq!(
            summary.failures["getblockchaininfo"],
            Failure {
                time_ns: 2,
                kind: "timeout",
                code: 0,
                message: "getblockchaininfo: no answer within 5 s".into()
            }
        );
        assert_eq!(summary.failures["uptime"].kind, "unknown");
        assert_eq!(
            summary.blockchain.as_ref().unwrap().blocks,
            101,
            "the last answer stays"
        );
        summary.apply(
            &event(4, ""),
            &call("getblockchaininfo", Answer::BlockchainInfo(info)),
        );
        assert!(!summary.failures.contains_key("getblockchaininfo"));
        assert!(summary.failures.contains_key("uptime"));
        assert_eq!(
            (summary.answers, summary.failed, summary.last_call_ns),
            (2, 2, 4)
        );
    }

    /// Whatever a node or a stream says, the summary keeps a closed set of keys and short
    /// texts.
    #[test]
    fn what_the_node_says_is_bounded() {
        let mut summary = RpcSummary::default();
        for n in 0..100 {
            let failure = RpcFailure {
                kind: 42,
                code: -1,
                message: "x".repeat(10_000),
            };
            summary.apply(
                &event(n, ""),
                &call(&format!("method{n}"), Answer::Failure(failure)),
            );
        }
        assert_eq!(summary.failures.len(), 1);
        assert_eq!(summary.failures["other"].message.len(), MAX_TEXT);
        let networks = (0..50)
            .map(|n| NetworkReachability {
                name: format!("net{n}"),
                reachable: true,
                ..NetworkReachability::default()
            })
            .collect();
        let info = NetworkInfo {
            subversion: "/".repeat(5000),
            networks,
            ..NetworkInfo::default()
        };
        summary.apply(
            &event(1, ""),
            &call("getnetworkinfo", Answer::NetworkInfo(info)),
        );
        let network = summary.network.as_ref().unwrap();
        assert_eq!(network.reachable.len(), MAX_LIST);
        assert_eq!(network.subversion.len(), MAX_TEXT);

        let mut zmq = ZmqSummary::default();
        for n in 0..100 {
            zmq.apply(
                &event(n, ""),
                &ZmqNotification {
                    topic: format!("topic{n}"),
                    missed_before: 1,
                    ..ZmqNotification::default()
                },
            );
        }
        assert_eq!(zmq.topics.len(), 1);
        assert_eq!(
            zmq.topics["other"],
            ZmqTopic {
                received: 100,
                missed: 100
            }
        );
    }

    #[test]
    fn zmq_counts_topics_and_keeps_the_latest_block() {
        let mut zmq = ZmqSummary::default();
        let hashblock = |byte| ZmqNotification {
            topic: "hashblock".into(),
            body: Some(ZmqBody::Hash(vec![byte; 32])),
            ..ZmqNotification::default()
        };
        zmq.apply(&event(10, ""), &hashblock(0xaa));
        zmq.apply(
            &event(11, ""),
            &ZmqNotification {
                topic: "hashtx".into(),
                missed_before: 4,
                body: Some(ZmqBody::Hash(vec![0x01; 32])),
                ..ZmqNotification::default()
            },
        );
        zmq.apply(&event(12, ""), &hashblock(0xbb));
        assert_eq!(
            zmq.last_block,
            Some(ZmqBlock {
                hash: "bb".repeat(32),
                time_ns: 12
            })
        );
        assert_eq!(zmq.topics["hashblock"].received, 2);
        assert_eq!(
            zmq.topics["hashtx"],
            ZmqTopic {
                received: 1,
                missed: 4
            }
        );
        assert_eq!((zmq.missed, zmq.last_ns), (4, 12));
    }
}
