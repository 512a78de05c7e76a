//! The `rpc_call` line: which RPC method, how long it took, and a summary of bitcoind's answer
//! (or of how the call failed).

use std::fmt::Write as _;

use nodescope_proto::json::hex;
use nodescope_proto::rpc_call::Result as Answer;
use nodescope_proto::{PeerInfoList, RpcCall, RpcFailure};

use super::{human_seconds, Token};

/// `method=… duration=… reply_bytes=…`, then a summary of the answer (or of the failure), then
/// the answer's keys the schema lacks. What bitcoind wrote (chain names, its user agent, error
/// messages, JSON keys) is quoted whenever it could break the line or fake a field.
pub(super) fn rpc_call(line: &mut String, c: &RpcCall) {
    let _ = write!(
        line,
        " method={} duration={:.3}ms reply_bytes={}",
        Token(&c.method),
        c.duration_ns as f64 / 1e6,
        c.reply_bytes
    );
    if let Some(answer) = &c.result {
        rpc_answer(line, answer);
    }
    if !c.unknown_fields.is_empty() {
        let _ = write!(
            line,
            " unknown_fields={}",
            Token(&c.unknown_fields.join(","))
        );
    }
}

fn rpc_answer(line: &mut String, answer: &Answer) {
    match answer {
        Answer::PeerInfo(list) => peer_info(line, list),
        Answer::MempoolInfo(m) => {
            let _ = write!(
                line,
                " size={} bytes={} usage={} max={} minfee={}sat/vB",
                m.size,
                m.bytes,
                m.usage,
                m.maxmempool,
                btc_per_kvb(m.mempoolminfee)
            );
            if !m.loaded {
                line.push_str(" not_loaded");
            }
        }
        Answer::NetTotals(t) => {
            let _ = write!(line, " recv={} sent={}", t.totalbytesrecv, t.totalbytessent);
            if t.uploadtarget.as_ref().is_some_and(|u| u.target_reached) {
                line.push_str(" upload_target_reached");
            }
        }
        Answer::MemoryInfo(m) => {
            let locked = m.locked.unwrap_or_default();
            let _ = write!(
                line,
                " locked_used={} locked_free={} locked_total={}",
                locked.used, locked.free, locked.total
            );
        }
        Answer::AddrmanInfo(a) => {
            // bitcoind sums every network under all_networks; a sum of the others otherwise.
            let all = a.networks.get("all_networks").copied().unwrap_or_else(|| {
                a.networks.values().fold(Default::default(), |sum, n| {
                    nodescope_proto::AddrmanCounts {
                        new: sum.new + n.new,
                        tried: sum.tried + n.tried,
                        total: sum.total + n.total,
                    }
                })
            });
            let _ = write!(
                line,
                " new={} tried={} total={}",
                all.new, all.tried, all.total
            );
        }
        Answer::Uptime(u) => {
            let seconds = i64::try_from(u.seconds).unwrap_or(i64::MAX);
            let _ = write!(
                line,
                " uptime={} seconds={}",
                human_seconds(seconds),
                u.seconds
            );
        }
        Answer::BlockchainInfo(b) => {
            let _ = write!(
                line,
                " chain={} blocks={} headers={} progress={:.4}% ibd={} best={}",
                Token(&b.chain),
                b.blocks,
                b.headers,
                b.verificationprogress * 100.0,
                b.initialblockdownload,
                hex(&b.bestblockhash)
            );
            if b.pruned {
                line.push_str(" pruned");
            }
            if !b.warnings.is_empty() {
                let _ = write!(line, " warnings={:?}", b.warnings.join("; "));
            }
        }
        Answer::NetworkInfo(n) => {
            let reachable: Vec<&str> = n
                .networks
                .iter()
                .filter(|r| r.reachable)
                .map(|r| r.name.as_str())
                .collect();
            let _ = write!(
                line,
                " version={} subversion={} connections={} in={} out={} reachable={}",
                n.version,
                Token(&n.subversion),
                n.connections,
                n.connections_in,
                n.connections_out,
                Token(&reachable.join(","))
            );
            if !n.networkactive {
                line.push_str(" network_inactive");
            }
        }
        Answer::ChainTxStats(s) => {
            if let Some(rate) = s.txrate {
                let _ = write!(line, " txrate={rate:.3}tx/s");
            }
            if let Some(count) = s.txcount {
                let _ = write!(line, " txcount={count}");
            }
            let _ = write!(
                line,
                " window_blocks={} window_end={}",
                s.window_block_count, s.window_final_block_height
            );
        }
        Answer::OrphanTxs(o) => {
            let bytes: u64 = o.orphans.iter().map(|t| t.bytes).sum();
            let _ = write!(line, " orphans={} bytes={bytes}", o.orphans.len());
        }
        Answer::RawAddrman(r) => {
            // Parts count from 1 here, as people count them (the payload's `part` from 0).
            let _ = write!(
                line,
                " part={}/{} answer={} entries={} new_total={} tried_total={}",
                u64::from(r.part) + 1,
                r.parts,
                r.answer_id,
                r.entries.len(),
                r.new_total,
                r.tried_total
            );
        }
        Answer::IndexInfo(i) => {
            let synced = i.indexes.values().filter(|s| s.synced).count();
            let _ = write!(line, " indexes={} synced={synced}", i.indexes.len());
            let mut behind: Vec<&str> = i
                .indexes
                .iter()
                .filter(|(_, s)| !s.synced)
                .map(|(name, _)| name.as_str())
                .collect();
            if !behind.is_empty() {
                behind.sort_unstable();
                let _ = write!(line, " syncing={}", Token(&behind.join(",")));
            }
        }
        Answer::TxOutSetInfo(t) => {
            let _ = write!(
                line,
                " height={} txouts={} total_amount={:.8}BTC",
                t.height, t.txouts, t.total_amount
            );
            if let Some(unspendable) = t.total_unspendable_amount {
                let _ = write!(line, " unspendable={unspendable:.8}BTC");
            }
            // Without the coinstatsindex bitcoind scanned the set, and says how much it read.
            if let Some(transactions) = t.transactions {
                let _ = write!(line, " transactions={transactions}");
            }
            if let Some(disk_size) = t.disk_size {
                let _ = write!(line, " disk_size={disk_size}");
            }
            let _ = write!(line, " best={}", hex(&t.bestblock));
        }
        Answer::Failure(f) => rpc_failure(line, f),
    }
}

/// `peers=… inbound=… outbound=…`, then the peers per transport (`v1`, `v2`, `detecting`).
fn peer_info(line: &mut String, list: &PeerInfoList) {
    let inbound = list.peers.iter().filter(|p| p.inbound).count();
    let _ = write!(
        line,
        " peers={} inbound={inbound} outbound={}",
        list.peers.len(),
        list.peers.len() - inbound
    );
    let mut transports: Vec<(&str, usize)> = Vec::new();
    for peer in &list.peers {
        let transport = match peer.transport_protocol_type.as_str() {
            known @ ("v1" | "v2" | "detecting") => known,
            _ => "other_transport",
        };
        match transports.iter_mut().find(|(t, _)| *t == transport) {
            Some((_, count)) => *count += 1,
            None => transports.push((transport, 1)),
        }
    }
    transports.sort_unstable();
    for (transport, count) in transports {
        let _ = write!(line, " {transport}={count}");
    }
}

/// `failure=<kind>`, bitcoind's code when there is one, and its message.
fn rpc_failure(line: &mut String, f: &RpcFailure) {
    let kind = f.kind_name();
    let _ = write!(line, " failure={kind}");
    if f.code != 0 {
        let _ = write!(line, " code={}", f.code);
    }
    if !f.message.is_empty() {
        let _ = write!(line, " message={:?}", f.message);
    }
}

/// A fee rate bitcoind gives in BTC/kvB, in sat/vB (1 BTC/kvB = 100,000 sat/vB).
fn btc_per_kvb(rate: f64) -> String {
    format!("{:.3}", rate * 100_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::test_support::{peer_info, rpc};
    use crate::line::text;
    use nodescope_proto::event::Payload;
    use nodescope_proto::{Category, RpcFailureKind};

    #[test]
    fn rpc_lines_summarise_each_answer() {
        use nodescope_proto::{
            AddrmanCounts, AddrmanInfo, BlockchainInfo, ChainTxStats, IndexInfo, IndexState,
            MempoolInfo, NetTotals, NetworkInfo, NetworkReachability, OrphanTx, OrphanTxList,
            RawAddrmanEntry, RawAddrmanPart, TxOutSetInfo, Uptime,
        };
        let peers = rpc(
            "getpeerinfo",
            Answer::PeerInfo(PeerInfoList {
                peers: vec![
                    peer_info(true, "v2"),
                    peer_info(false, "v2"),
                    peer_info(false, "v1"),
                    peer_info(false, "detecting"),
                    peer_info(true, "v3"),
                ],
            }),
        );
        assert_eq!(
            text(&peers, Category::Rpc),
            "2025-11-22T08:26:40.123456Z node-a rpc rpc_call method=getpeerinfo duration=1.235ms reply_bytes=2048 peers=5 inbound=2 outbound=3 detecting=1 other_transport=1 v1=1 v2=2"
        );

        let mempool = rpc(
            "getmempoolinfo",
            Answer::MempoolInfo(MempoolInfo {
                loaded: true,
                size: 1500,
                bytes: 600_000,
                usage: 2_400_000,
                maxmempool: 300_000_000,
                mempoolminfee: 0.00001,
                ..Default::default()
            }),
        );
        assert!(text(&mempool, Category::Rpc).ends_with(
            "reply_bytes=2048 size=1500 bytes=600000 usage=2400000 max=300000000 minfee=1.000sat/vB"
        ));
        let not_loaded = rpc(
            "getmempoolinfo",
            Answer::MempoolInfo(MempoolInfo::default()),
        );
        assert!(text(&not_loaded, Category::Rpc).ends_with(" minfee=0.000sat/vB not_loaded"));

        let chain = rpc(
            "getblockchaininfo",
            Answer::BlockchainInfo(BlockchainInfo {
                chain: "main".into(),
                blocks: 912_000,
                headers: 912_003,
                bestblockhash: vec![0xab; 32],
                verificationprogress: 0.999_987_6,
                initialblockdownload: false,
                pruned: true,
                ..Default::default()
            }),
        );
        assert!(text(&chain, Category::Rpc).ends_with(&format!(
            "reply_bytes=2048 chain=main blocks=912000 headers=912003 progress=99.9988% ibd=false best={} pruned",
            "ab".repeat(32)
        )));

        let totals = rpc(
            "getnettotals",
            Answer::NetTotals(NetTotals {
                totalbytesrecv: 10_000,
                totalbytessent: 20_000,
                ..Default::default()
            }),
        );
        assert!(text(&totals, Category::Rpc).ends_with(" recv=10000 sent=20000"));

        let uptime = rpc(
            "uptime",
            Answer::Uptime(Uptime {
                seconds: 3 * 86_400 + 7_300,
            }),
        );
        assert!(text(&uptime, Category::Rpc).ends_with(" uptime=3d2h seconds=266500"));

        let reachability = |name: &str, reachable: bool| NetworkReachability {
            name: name.into(),
            reachable,
            ..Default::default()
        };
        let network = rpc(
            "getnetworkinfo",
            Answer::NetworkInfo(NetworkInfo {
                version: 300_000,
                subversion: "/Satoshi:30.0.0/".into(),
                connections: 11,
                connections_in: 1,
                connections_out: 10,
                networkactive: true,
                networks: vec![
                    reachability("ipv4", true),
                    reachability("ipv6", true),
                    reachability("onion", false),
                    reachability("i2p", true),
                ],
                ..Default::default()
            }),
        );
        assert!(text(&network, Category::Rpc).ends_with(
            " version=300000 subversion=/Satoshi:30.0.0/ connections=11 in=1 out=10 reachable=ipv4,ipv6,i2p"
        ));

        let counts = |new, tried| AddrmanCounts {
            new,
            tried,
            total: new + tried,
        };
        let addrman = rpc(
            "getaddrmaninfo",
            Answer::AddrmanInfo(AddrmanInfo {
                networks: [
                    ("ipv4".to_string(), counts(60, 5)),
                    ("all_networks".to_string(), counts(70, 6)),
                ]
                .into(),
            }),
        );
        assert!(text(&addrman, Category::Rpc).ends_with(" new=70 tried=6 total=76"));

        let stats = rpc(
            "getchaintxstats",
            Answer::ChainTxStats(ChainTxStats {
                txrate: Some(4.56789),
                txcount: Some(1_200_000_000),
                window_block_count: 4320,
                window_final_block_height: 912_000,
                ..Default::default()
            }),
        );
        assert!(text(&stats, Category::Rpc).ends_with(
            " txrate=4.568tx/s txcount=1200000000 window_blocks=4320 window_end=912000"
        ));

        let orphan = |bytes| OrphanTx {
            bytes,
            ..Default::default()
        };
        let orphans = rpc(
            "getorphantxs",
            Answer::OrphanTxs(OrphanTxList {
                orphans: vec![orphan(200), orphan(350)],
            }),
        );
        assert!(text(&orphans, Category::Rpc).ends_with(" orphans=2 bytes=550"));

        let raw = rpc(
            "getrawaddrman",
            Answer::RawAddrman(RawAddrmanPart {
                part: 1,
                parts: 3,
                answer_id: 42,
                new_total: 5000,
                tried_total: 900,
                entries: vec![RawAddrmanEntry::default(); 7],
            }),
        );
        assert!(text(&raw, Category::Rpc)
            .ends_with(" part=2/3 answer=42 entries=7 new_total=5000 tried_total=900"));

        let index = |synced| IndexState {
            synced,
            best_block_height: 10,
        };
        let indexes = rpc(
            "getindexinfo",
            Answer::IndexInfo(IndexInfo {
                indexes: [
                    ("txindex".to_string(), index(true)),
                    ("basic block filter index".to_string(), index(false)),
                    ("coinstatsindex".to_string(), index(true)),
                ]
                .into(),
            }),
        );
        assert!(text(&indexes, Category::Rpc)
            .ends_with(" indexes=3 synced=2 syncing=\"basic block filter index\""));

        let from_index = rpc(
            "gettxoutsetinfo",
            Answer::TxOutSetInfo(TxOutSetInfo {
                height: 200,
                bestblock: vec![0x22; 32],
                txouts: 200,
                total_amount: 8725.0,
                total_unspendable_amount: Some(50.0),
                ..Default::default()
            }),
        );
        assert!(text(&from_index, Category::Rpc).ends_with(&format!(
            "reply_bytes=2048 height=200 txouts=200 total_amount=8725.00000000BTC unspendable=50.00000000BTC best={}",
            "22".repeat(32)
        )));
        let scanned = rpc(
            "gettxoutsetinfo",
            Answer::TxOutSetInfo(TxOutSetInfo {
                height: 3,
                txouts: 3,
                total_amount: 149.99999859,
                transactions: Some(3),
                disk_size: Some(4096),
                ..Default::default()
            }),
        );
        assert!(text(&scanned, Category::Rpc).contains(
            " height=3 txouts=3 total_amount=149.99999859BTC transactions=3 disk_size=4096 best="
        ));
    }

    #[test]
    fn a_failed_call_says_how_it_failed_and_new_keys_are_named() {
        let mut failed = rpc(
            "getblockchaininfo",
            Answer::Failure(RpcFailure {
                kind: RpcFailureKind::RpcError as i32,
                code: -28,
                message: "Loading block index…".into(),
            }),
        );
        failed.error = "getblockchaininfo: RPC error -28".into();
        assert!(text(&failed, Category::Rpc).ends_with(
            " method=getblockchaininfo duration=1.235ms reply_bytes=2048 failure=rpc_error code=-28 message=\"Loading block index…\" error=\"getblockchaininfo: RPC error -28\""
        ));
        let timeout = rpc(
            "getpeerinfo",
            Answer::Failure(RpcFailure {
                kind: RpcFailureKind::Timeout as i32,
                ..Default::default()
            }),
        );
        assert!(text(&timeout, Category::Rpc).ends_with(" failure=timeout"));
        let future = rpc(
            "uptime",
            Answer::Failure(RpcFailure {
                kind: 99,
                ..Default::default()
            }),
        );
        assert!(text(&future, Category::Rpc).ends_with(" failure=unknown"));

        let mut newer = rpc(
            "uptime",
            Answer::Uptime(nodescope_proto::Uptime { seconds: 59 }),
        );
        if let Some(Payload::RpcCall(call)) = &mut newer.payload {
            call.unknown_fields = vec!["since".into(), "0.new field".into()];
        }
        assert!(text(&newer, Category::Rpc)
            .ends_with(" uptime=59s seconds=59 unknown_fields=\"since,0.new field\""));
    }

    /// What a node answers (its chain name, user agent, JSON keys) cannot break the line or
    /// fake a field either.
    #[test]
    fn rpc_lines_escape_what_the_node_sent() {
        let hostile = rpc(
            "getnetworkinfo",
            Answer::NetworkInfo(nodescope_proto::NetworkInfo {
                subversion: "/x/ connections=999\n".into(),
                networkactive: true,
                ..Default::default()
            }),
        );
        let line = text(&hostile, Category::Rpc);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains(r#" subversion="/x/ connections=999\n" connections=0"#),
            "{line}"
        );
        let chain = rpc(
            "getblockchaininfo",
            Answer::BlockchainInfo(nodescope_proto::BlockchainInfo {
                chain: "main ibd=true".into(),
                ..Default::default()
            }),
        );
        assert!(text(&chain, Category::Rpc).contains(" chain=\"main ibd=true\" blocks=0"));
    }
}
