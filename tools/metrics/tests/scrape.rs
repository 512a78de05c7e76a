//! Crafted events, published as the extractor publishes them to a real nats-server, then a
//! scrape of /metrics: every family with its exact values.

mod common;

use std::collections::BTreeSet;

use common::{message, net, peer, value, Tool};
use nodescope_consumer::testing::{assert_promtool_clean, publish, EventSource};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p::{decode_p2p, samples, DecodeOptions};
use nodescope_proto::p2p_message::Body;
use nodescope_proto::*;

const T0: u64 = 1_700_000_100_000_000_000;

fn inventory(types: &[InventoryType]) -> P2pInventory {
    P2pInventory {
        items: types
            .iter()
            .map(|t| InventoryItem {
                r#type: *t as i32,
                type_raw: 0,
                hash: vec![1; 32],
            })
            .collect(),
        ..P2pInventory::default()
    }
}

fn addresses(networks: &[AddrNetwork]) -> P2pAddr {
    P2pAddr {
        addresses: networks
            .iter()
            .map(|n| NetAddress {
                network: *n as i32,
                ..NetAddress::default()
            })
            .collect(),
    }
}

fn version(user_agent: &str) -> Body {
    Body::Version(P2pVersion {
        user_agent: user_agent.into(),
        ..P2pVersion::default()
    })
}

/// Every payload kind, with values whose metrics are worked out by hand below. Events are
/// timestamped T0 + `at` ms where time matters.
fn node_a_events() -> (Vec<Event>, Event) {
    use ConnectionType::{BlockRelayOnly, Inbound, Manual, OutboundFullRelay};
    let mut run = EventSource::new("node-a", 1);
    let mut events = Vec::new();
    // `error`: the event's error mark (empty: a whole event).
    let mut marked = |run: &mut EventSource, ms: u64, payload: Payload, error: &str| {
        let mut event = run.stamp(payload);
        event.timestamp_ns = T0 + ms * 1_000_000;
        // A mainnet node: its subsidy schedule gives the coin supply's limit.
        event.chain = "main".into();
        event.error = error.into();
        events.push(event);
    };
    let mut at = |run: &mut EventSource, ms: u64, payload: Payload| marked(run, ms, payload, "");
    let (p1, p2, p3) = (
        peer(1, Inbound),
        peer(2, OutboundFullRelay),
        peer(3, BlockRelayOnly),
    );

    // Connections: 3 opened; peer 1 evicted and closed after 100 s; peer 9 (opened before the
    // exporter started) closed.
    at(
        &mut run,
        0,
        Payload::InboundConnection(InboundConnection {
            peer: Some(p1.clone()),
            network: Network::Ipv4 as i32,
            inbound_count: 1,
        }),
    );
    at(
        &mut run,
        0,
        Payload::OutboundConnection(OutboundConnection {
            peer: Some(p2.clone()),
            network: Network::Onion as i32,
            outbound_count: 1,
        }),
    );
    at(
        &mut run,
        0,
        Payload::OutboundConnection(OutboundConnection {
            peer: Some(p3.clone()),
            network: Network::Ipv6 as i32,
            outbound_count: 2,
        }),
    );

    // Messages.
    at(
        &mut run,
        0,
        message(
            true,
            p1.clone(),
            "version",
            102,
            version("/Satoshi:30.0.0/"),
        ),
    );
    at(
        &mut run,
        0,
        message(
            false,
            p2.clone(),
            "version",
            102,
            version("/Satoshi:30.0.0/"),
        ),
    );
    at(
        &mut run,
        0,
        message(
            true,
            p3.clone(),
            "version",
            103,
            version("/Satoshi:29.0.0/"),
        ),
    );
    // A third user agent: beyond --user-agents 2.
    at(
        &mut run,
        0,
        message(true, p2.clone(), "version", 98, version("/btcd:0.24.2/")),
    );
    // Our ping answered 50 ms later; a pong with a wrong nonce matches nothing; the peer's ping
    // answered by the node in 2 ms.
    at(
        &mut run,
        1000,
        message(
            false,
            p2.clone(),
            "ping",
            8,
            Body::Ping(P2pPing { nonce: 7 }),
        ),
    );
    at(
        &mut run,
        1040,
        message(
            true,
            p2.clone(),
            "pong",
            8,
            Body::Pong(P2pPing { nonce: 8 }),
        ),
    );
    at(
        &mut run,
        1050,
        message(
            true,
            p2.clone(),
            "pong",
            8,
            Body::Pong(P2pPing { nonce: 7 }),
        ),
    );
    at(
        &mut run,
        2000,
        message(
            true,
            p3.clone(),
            "ping",
            8,
            Body::Ping(P2pPing { nonce: 9 }),
        ),
    );
    at(
        &mut run,
        2002,
        message(
            false,
            p3.clone(),
            "pong",
            8,
            Body::Pong(P2pPing { nonce: 9 }),
        ),
    );
    use InventoryType::{Block, Tx, Wtx};
    at(
        &mut run,
        0,
        message(
            true,
            p2.clone(),
            "inv",
            109,
            Body::Inv(inventory(&[Wtx, Wtx, Block])),
        ),
    );
    at(
        &mut run,
        0,
        message(
            false,
            p2.clone(),
            "getdata",
            37,
            Body::Getdata(inventory(&[Wtx])),
        ),
    );
    at(
        &mut run,
        0,
        message(
            true,
            p2.clone(),
            "notfound",
            37,
            Body::Notfound(inventory(&[Tx])),
        ),
    );
    use AddrNetwork::{I2p, Ipv4, Ipv6, Torv3, Unknown};
    at(
        &mut run,
        0,
        message(
            true,
            p2.clone(),
            "addr",
            91,
            Body::Addr(addresses(&[Ipv4, Ipv4, Ipv6])),
        ),
    );
    at(
        &mut run,
        0,
        message(
            true,
            p2.clone(),
            "addrv2",
            120,
            Body::Addrv2(addresses(&[Torv3, I2p, Unknown])),
        ),
    );
    at(
        &mut run,
        0,
        message(
            true,
            p2.clone(),
            "feefilter",
            8,
            Body::Feefilter(P2pFeeFilter { fee_rate: 1000 }),
        ),
    );
    at(
        &mut run,
        0,
        message(
            false,
            p2.clone(),
            "feefilter",
            8,
            Body::Feefilter(P2pFeeFilter { fee_rate: 2500 }),
        ),
    );
    // A real transaction as the extractor decodes it.
    let tx = samples::sample_payloads()
        .into_iter()
        .find(|(t, _)| *t == "tx")
        .unwrap()
        .1;
    let decoded = decode_p2p("tx", &tx, tx.len() as u64, DecodeOptions::default());
    assert!(decoded.body.is_some());
    at(&mut run, 0, net(true, p2.clone(), decoded));
    // An unknown message type, and an inv that does not decode.
    at(
        &mut run,
        0,
        net(
            true,
            p1.clone(),
            decode_p2p("sendtxrcncl", &[0; 12], 12, DecodeOptions::default()),
        ),
    );
    let bad = decode_p2p("inv", &[0xfd], 1, DecodeOptions::default());
    assert!(!bad.decode_error.is_empty());
    at(&mut run, 0, net(true, p1.clone(), bad));

    at(
        &mut run,
        0,
        Payload::EvictedInboundConnection(EvictedInboundConnection {
            peer: Some(p1.clone()),
            network: Network::Ipv4 as i32,
            connected_since: 1_700_000_000,
        }),
    );
    for reason in ["addr message size = 1001", "", "a reason of v31"] {
        at(
            &mut run,
            0,
            Payload::MisbehavingConnection(MisbehavingConnection {
                peer_id: 1,
                message: reason.into(),
            }),
        );
    }
    at(
        &mut run,
        0,
        Payload::ClosedConnection(ClosedConnection {
            peer: Some(p1.clone()),
            network: Network::Ipv4 as i32,
            connected_since: 1_700_000_000,
        }),
    );
    at(
        &mut run,
        0,
        Payload::ClosedConnection(ClosedConnection {
            peer: Some(peer(9, Manual)),
            network: Network::Ipv4 as i32,
            connected_since: 1_700_000_095,
        }),
    );

    // Mempool: 5 sat/vB and 1.5 sat/vB; then 3 events lost.
    at(
        &mut run,
        0,
        Payload::MempoolAdded(MempoolAdded {
            txid: vec![1; 32],
            vsize: 200,
            fee: 1000,
        }),
    );
    at(
        &mut run,
        0,
        Payload::MempoolAdded(MempoolAdded {
            txid: vec![2; 32],
            vsize: 100,
            fee: 150,
        }),
    );
    for reason in [RemovalReason::Block, RemovalReason::Unknown] {
        at(
            &mut run,
            0,
            Payload::MempoolRemoved(MempoolRemoved {
                txid: vec![1; 32],
                reason: reason as i32,
                reason_other: "new-reason".into(),
                vsize: 200,
                fee: 1000,
                entry_time: 1_700_000_000,
            }),
        );
    }
    for by_tx in [true, false] {
        at(
            &mut run,
            0,
            Payload::MempoolReplaced(MempoolReplaced {
                replaced_by_transaction: by_tx,
                ..MempoolReplaced::default()
            }),
        );
    }
    run.lose(Category::Mempool, 3);
    for reason in [
        "min relay fee not met",
        "txn-mempool-conflict",
        "something else",
    ] {
        at(
            &mut run,
            0,
            Payload::MempoolRejected(MempoolRejected {
                txid: vec![3; 32],
                reason: reason.into(),
            }),
        );
    }

    // Blocks.
    at(
        &mut run,
        0,
        Payload::BlockConnected(BlockConnected {
            hash: vec![4; 32],
            height: 100,
            transactions: 3,
            inputs: 4,
            sigop_cost: 8,
            duration_ns: 2_000_000,
        }),
    );
    at(
        &mut run,
        0,
        Payload::BlockConnected(BlockConnected {
            hash: vec![5; 32],
            height: 101,
            transactions: 1,
            inputs: 1,
            sigop_cost: 4,
            duration_ns: 500_000_000,
        }),
    );

    // UTXO cache.
    at(
        &mut run,
        0,
        Payload::UtxocacheFlush(UtxoCacheFlush {
            duration_us: 1500,
            mode: 1,
            coins_count: 1000,
            coins_mem_usage: 65536,
            for_prune: false,
            ..UtxoCacheFlush::default()
        }),
    );
    at(
        &mut run,
        0,
        Payload::UtxocacheFlush(UtxoCacheFlush {
            duration_us: 250_000,
            mode: 3,
            coins_count: 10,
            coins_mem_usage: 4096,
            for_prune: true,
            ..UtxoCacheFlush::default()
        }),
    );
    let coin = |value| UtxoCacheCoin {
        txid: vec![6; 32],
        vout: 0,
        height: 100,
        value,
        coinbase: false,
    };
    at(&mut run, 0, Payload::UtxocacheAdd(coin(5000)));
    at(&mut run, 0, Payload::UtxocacheAdd(coin(5000)));
    at(&mut run, 0, Payload::UtxocacheSpent(coin(5000)));
    at(&mut run, 0, Payload::UtxocacheUncache(coin(100)));

    // Coin selection.
    for (algorithm, value) in [("bnb", 10_000), ("knapsack", 20_000), ("future-algo", 5)] {
        at(
            &mut run,
            0,
            Payload::SelectedCoins(SelectedCoins {
                wallet: "w".into(),
                algorithm: algorithm.into(),
                target: 1,
                waste: -3,
                selected_value: value,
            }),
        );
    }
    at(
        &mut run,
        0,
        Payload::NormalCreateTxInternal(NormalCreateTx {
            wallet: "w".into(),
            success: true,
            fee: 300,
            change_pos: 1,
        }),
    );
    at(
        &mut run,
        0,
        Payload::AttemptingApsCreateTx(AttemptingApsCreateTx { wallet: "w".into() }),
    );
    at(
        &mut run,
        0,
        Payload::ApsCreateTxInternal(ApsCreateTx {
            wallet: "w".into(),
            use_aps: true,
            success: true,
            fee: 310,
            change_pos: -1,
        }),
    );

    // The extractor's stats of run 1, then it restarts: run 2's totals replace them.
    at(
        &mut run,
        0,
        Payload::ExtractorStats(ExtractorStats {
            events_read: 100,
            kernel_drops: [
                ("net:inbound_message".to_string(), 5),
                ("bogus:tracepoint".to_string(), 2),
            ]
            .into(),
            published: 90,
            dropped_queue_full: 3,
            dropped_too_large: 1,
            resent: 4,
            queued: 2,
            queued_bytes: 300,
            decode_errors: 6,
            read_errors: 7,
            attached_locations: 20,
            kernel_payload_drops: [("net:inbound_message".to_string(), 1)].into(),
            kernel_memory_bytes: 33_800_000,
            stray_chunks: 8,
            expired_incomplete: 1,
            closed_at_shutdown: 2,
            malformed_records: 3,
            ..ExtractorStats::default()
        }),
    );
    rpc_events(&mut at);
    p2p_events(&mut marked);
    let mut restarted = EventSource::new("node-a", 2);
    marked(
        &mut restarted,
        0,
        Payload::ExtractorStats(ExtractorStats {
            events_read: 10,
            published: 9,
            attached_locations: 20,
            kernel_memory_bytes: 33_800_000,
            ..ExtractorStats::default()
        }),
        "",
    );
    let replayed = events
        .iter()
        .find(|e| matches!(e.payload, Some(Payload::MempoolAdded(_))))
        .unwrap()
        .clone();
    (events, replayed)
}

/// What `extractor rpc` publishes about node-a: one answer of every method (getrawaddrman's
/// in two parts), a failed call, ZMQ notifications and its stats. Peers 2 and 3 of the P2P
/// messages are v2 and v1; peer 1, closed, is in no answer.
fn rpc_events(at: &mut impl FnMut(&mut EventSource, u64, Payload)) {
    use rpc_call::Result as Answer;
    let mut rpc = EventSource::of(ExtractorKind::Rpc, "node-a", 5);
    let mut answer = |rpc: &mut EventSource, method: &str, result: Answer| {
        let call = RpcCall {
            method: method.into(),
            duration_ns: 2_000_000,
            reply_bytes: 100,
            result: Some(result),
            ..RpcCall::default()
        };
        at(rpc, 3000, Payload::RpcCall(call));
    };
    let peer = |id, network: &str, connection_type: &str, transport: &str, pings| {
        let (pingtime, minping) = match pings {
            Some((last, min)) => (Some(last), Some(min)),
            None => (None, None),
        };
        PeerInfo {
            id,
            network: network.into(),
            connection_type: connection_type.into(),
            transport_protocol_type: transport.into(),
            pingtime,
            minping,
            ..PeerInfo::default()
        }
    };
    let peers = vec![
        peer(2, "onion", "outbound-full-relay", "v2", Some((0.5, 0.25))),
        peer(3, "ipv6", "block-relay-only", "v1", Some((0.25, 0.125))),
        peer(4, "not_publicly_routable", "inbound", "detecting", None),
    ];
    answer(
        &mut rpc,
        "getpeerinfo",
        Answer::PeerInfo(PeerInfoList { peers }),
    );
    let mempool = MempoolInfo {
        loaded: true,
        size: 3,
        bytes: 600,
        usage: 4000,
        total_fee: 0.0001,
        maxmempool: 300_000_000,
        mempoolminfee: 0.00001,
        minrelaytxfee: 0.000001,
        unbroadcastcount: 1,
        fullrbf: true,
        ..MempoolInfo::default()
    };
    answer(&mut rpc, "getmempoolinfo", Answer::MempoolInfo(mempool));
    let totals = NetTotals {
        totalbytesrecv: 5000,
        totalbytessent: 7000,
        timemillis: 1_700_000_103_000,
        uploadtarget: Some(UploadTarget {
            target: 5_000_000,
            bytes_left_in_cycle: 4_000_000,
            ..UploadTarget::default()
        }),
    };
    answer(&mut rpc, "getnettotals", Answer::NetTotals(totals));
    let locked = LockedPool {
        used: 1000,
        free: 2000,
        total: 3000,
        locked: 3000,
        ..LockedPool::default()
    };
    let memory = MemoryInfo {
        locked: Some(locked),
    };
    answer(&mut rpc, "getmemoryinfo", Answer::MemoryInfo(memory));
    let counts = |new, tried| AddrmanCounts {
        new,
        tried,
        total: new + tried,
    };
    let networks = [
        ("ipv4", counts(10, 2)),
        ("onion", counts(3, 0)),
        ("all_networks", counts(14, 3)),
        ("a network of v31", counts(1, 1)),
    ];
    let addrman = AddrmanInfo {
        networks: networks.map(|(n, c)| (n.to_string(), c)).into(),
    };
    answer(&mut rpc, "getaddrmaninfo", Answer::AddrmanInfo(addrman));
    answer(&mut rpc, "uptime", Answer::Uptime(Uptime { seconds: 3600 }));
    let chain = BlockchainInfo {
        chain: "regtest".into(),
        blocks: 101,
        headers: 102,
        verificationprogress: 1.0,
        size_on_disk: 30_000,
        difficulty: 2.5,
        warnings: vec!["one".into(), "two".into()],
        ..BlockchainInfo::default()
    };
    answer(&mut rpc, "getblockchaininfo", Answer::BlockchainInfo(chain));
    let reachability = |name: &str, reachable, limited| NetworkReachability {
        name: name.into(),
        reachable,
        limited,
        ..NetworkReachability::default()
    };
    let network = NetworkInfo {
        connections: 3,
        connections_in: 1,
        connections_out: 2,
        networkactive: true,
        networks: vec![
            reachability("ipv4", true, false),
            reachability("onion", false, true),
        ],
        ..NetworkInfo::default()
    };
    answer(&mut rpc, "getnetworkinfo", Answer::NetworkInfo(network));
    let stats = ChainTxStats {
        txcount: Some(150),
        txrate: Some(0.5),
        ..ChainTxStats::default()
    };
    answer(&mut rpc, "getchaintxstats", Answer::ChainTxStats(stats));
    let orphans = OrphanTxList {
        orphans: vec![OrphanTx::default(), OrphanTx::default()],
    };
    answer(&mut rpc, "getorphantxs", Answer::OrphanTxs(orphans));
    for part in 0..2 {
        let part = RawAddrmanPart {
            part,
            parts: 2,
            answer_id: 1,
            new_total: 14,
            tried_total: 3,
            ..RawAddrmanPart::default()
        };
        answer(&mut rpc, "getrawaddrman", Answer::RawAddrman(part));
    }
    let index = |synced, best_block_height| IndexState {
        synced,
        best_block_height,
    };
    let indexes = [
        ("txindex", index(true, 101)),
        ("basic block filter index", index(false, 50)),
        ("an index of v31", index(true, 101)),
    ];
    let indexes = IndexInfo {
        indexes: indexes.map(|(n, i)| (n.to_string(), i)).into(),
    };
    answer(&mut rpc, "getindexinfo", Answer::IndexInfo(indexes));
    // The UTXO set one block past the fourth halving: 210,000 × (50 + 25 + 12.5 + 6.25) + 3.125
    // BTC allowed.
    let utxo_set = TxOutSetInfo {
        height: 840_000,
        txouts: 179_000_000,
        total_amount: 19_687_420.5,
        ..TxOutSetInfo::default()
    };
    answer(&mut rpc, "gettxoutsetinfo", Answer::TxOutSetInfo(utxo_set));
    let timeout = RpcFailure {
        kind: RpcFailureKind::Timeout as i32,
        code: 0,
        message: "no answer within 30 s".into(),
    };
    answer(&mut rpc, "getnetworkinfo", Answer::Failure(timeout));

    // ZMQ: the last hashblock 5 s after T0, after 3 lost ones.
    let zmq = |topic: &str, missed_before| {
        Payload::ZmqNotification(ZmqNotification {
            topic: topic.into(),
            missed_before,
            endpoint: "tcp://127.0.0.1:28332".into(),
            ..ZmqNotification::default()
        })
    };
    at(&mut rpc, 4000, zmq("hashblock", 0));
    at(&mut rpc, 5000, zmq("hashblock", 3));
    at(&mut rpc, 4500, zmq("sequence", 0));
    at(&mut rpc, 4600, zmq("a topic of v31", 0));

    let map = |entries: &[(&str, u64)]| entries.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let stats = ExtractorStats {
        published: 19,
        rpc_calls: map(&[("getpeerinfo", 5), ("uptime", 4), ("help", 1)]),
        rpc_failures: map(&[("getnetworkinfo", 1)]),
        zmq_received: map(&[("hashblock", 2), ("sequence", 1), ("a topic of v31", 1)]),
        zmq_missed: map(&[("hashblock", 3)]),
        ..ExtractorStats::default()
    };
    at(&mut rpc, 6000, Payload::ExtractorStats(stats));
}

/// What `extractor p2p` publishes about node-a: two failed dials, then two connections (v1,
/// the node dialling; v2 after 2 failed attempts), what the node sent on the v2 one (inv with
/// its intervals, addresses, a transaction, fee filters, block announcements, a malformed
/// message), two pings, the v1 connection reset, and the extractor's stats.
fn p2p_events(at: &mut impl FnMut(&mut EventSource, u64, Payload, &str)) {
    use AddrNetwork::{I2p, Ipv4, Ipv6, Torv3, Unknown};
    use InventoryType::{Block, Tx, Wtx};
    use PeerState::{Connected, Disconnected, Failed};
    let mut p2p = EventSource::of(ExtractorKind::P2p, "node-a", 9);
    let connection = |state: PeerState, connection, transport: &str, retries, reason: &str| {
        Payload::PeerConnection(PeerConnection {
            state: state as i32,
            connection,
            transport: transport.into(),
            node_dialled: retries == 0,
            remote: "127.0.0.1:18444".into(),
            local: "127.0.0.1:8555".into(),
            version: (state != Failed).then(|| P2pVersion {
                user_agent: "/Satoshi:30.0.0/".into(),
                ..P2pVersion::default()
            }),
            reason: reason.into(),
            connected_ns: 0,
            retries,
        })
    };
    let refused = "dialling 127.0.0.1:18444: Connection refused (os error 111)";
    at(&mut p2p, 0, connection(Failed, 1, "", 0, refused), "");
    let handshake = "malformed: no version and verack within 30s";
    at(
        &mut p2p,
        1000,
        connection(Failed, 2, "v2", 1, handshake),
        "",
    );
    at(&mut p2p, 2000, connection(Connected, 3, "v1", 0, ""), "");
    at(&mut p2p, 3000, connection(Connected, 4, "v2", 2, ""), "");
    let message = |msg_type: &str, body, since_previous_ns| {
        Payload::PeerMessage(PeerMessage {
            connection: 4,
            message: Some(P2pMessage {
                msg_type: msg_type.into(),
                size: 100,
                body: Some(body),
                ..P2pMessage::default()
            }),
            since_previous_ns,
        })
    };
    // 4 transactions announced in 3 inv messages, 2 s and 0.5 s apart; one received.
    let inv = |types: &[InventoryType], since| message("inv", Body::Inv(inventory(types)), since);
    at(&mut p2p, 4000, inv(&[Wtx, Wtx, Block], 0), "");
    at(&mut p2p, 6000, inv(&[Tx], 2_000_000_000), "");
    at(&mut p2p, 6500, inv(&[Wtx], 500_000_000), "");
    let tx = samples::sample_payloads()
        .into_iter()
        .find(|(t, _)| *t == "tx")
        .unwrap()
        .1;
    let decoded = decode_p2p("tx", &tx, tx.len() as u64, DecodeOptions::default());
    let tx = Payload::PeerMessage(PeerMessage {
        connection: 4,
        message: Some(decoded),
        since_previous_ns: 0,
    });
    at(&mut p2p, 6600, tx, "");
    let addr = Body::Addr(addresses(&[Ipv4, Ipv4, Ipv6]));
    at(&mut p2p, 6700, message("addr", addr, 0), "");
    let addrv2 = Body::Addrv2(addresses(&[Torv3, I2p, Unknown, Torv3]));
    at(&mut p2p, 6800, message("addrv2", addrv2, 0), "");
    for (ms, fee_rate) in [(6900, 1000), (6950, 2500)] {
        let filter = Body::Feefilter(P2pFeeFilter { fee_rate });
        at(&mut p2p, ms, message("feefilter", filter, 0), "");
    }
    let header = BlockHeaderSummary {
        hash: vec![0x0b; 32],
        ..BlockHeaderSummary::default()
    };
    let headers = |count: u32| {
        Body::Headers(P2pHeaders {
            count,
            headers: vec![header.clone(); count as usize],
        })
    };
    at(&mut p2p, 7000, message("headers", headers(1), 0), "");
    // An empty headers message announces nothing.
    at(&mut p2p, 7500, message("headers", headers(0), 0), "");
    let cmpct = Body::Cmpctblock(P2pCmpctBlock {
        header: Some(header.clone()),
        ..P2pCmpctBlock::default()
    });
    at(&mut p2p, 8000, message("cmpctblock", cmpct, 0), "");
    // A bad checksum: counted, its entries not.
    let bad = inv(&[Wtx, Wtx], 100_000_000);
    at(&mut p2p, 8100, bad, "bad checksum");
    let ping = Body::Ping(P2pPing { nonce: 5 });
    at(&mut p2p, 8200, message("ping", ping, 0), "");
    for rtt_ns in [1_500_000, 40_000_000] {
        let ping = Payload::PeerPing(PeerPing {
            connection: 4,
            nonce: rtt_ns,
            rtt_ns,
        });
        at(&mut p2p, 8300, ping, "");
    }
    let reset = "Connection reset by peer (os error 104)";
    at(
        &mut p2p,
        9000,
        connection(Disconnected, 3, "v1", 0, reset),
        "",
    );
    let stats = ExtractorStats {
        published: 21,
        p2p_connections: 2,
        p2p_failed_connections: 2,
        p2p_messages: 14,
        p2p_malformed: 1,
        ..ExtractorStats::default()
    };
    at(&mut p2p, 10_000, Payload::ExtractorStats(stats), "");
}

/// The families every extractor's stats set, with `extractor="…"`: all 0 but `published`.
fn common_stats_samples(extractor: &str, published: u64) -> BTreeSet<String> {
    let mut expected = BTreeSet::new();
    let labels = format!(r#"node="node-a",extractor="{extractor}""#);
    for tracepoint in nodescope_metrics::labels::tracepoints() {
        for family in ["kernel_drops", "kernel_payload_drops"] {
            expected.insert(format!(
                r#"nodescope_extractor_{family}_total{{{labels},tracepoint="{tracepoint}"}} 0"#
            ));
        }
    }
    for (family, value) in [
        ("extractor_events_read_total", 0),
        ("extractor_events_published_total", published),
        ("extractor_events_resent_total", 0),
        ("extractor_stray_chunks_total", 0),
        ("extractor_queued_events", 0),
        ("extractor_queued_bytes", 0),
        ("extractor_attached_locations", 0),
        ("extractor_kernel_memory_bytes", 0),
    ] {
        expected.insert(format!("nodescope_{family}{{{labels}}} {value}"));
    }
    for (family, label, values) in [
        (
            "extractor_events_dropped_total",
            "cause",
            &["queue_full", "too_large"][..],
        ),
        (
            "extractor_payloads_incomplete_total",
            "cause",
            &["expired", "shutdown"],
        ),
        (
            "extractor_errors_total",
            "kind",
            &["decode", "read", "ring_record"],
        ),
    ] {
        for value in values {
            expected.insert(format!(
                r#"nodescope_{family}{{{labels},{label}="{value}"}} 0"#
            ));
        }
    }
    expected
}

/// The expected samples of `extractor p2p`'s stats.
fn p2p_stats_samples() -> BTreeSet<String> {
    let mut expected = common_stats_samples("p2p", 21);
    let labels = r#"node="node-a",extractor="p2p""#;
    for (family, value) in [
        ("connections", 2),
        ("failed_connections", 2),
        ("messages", 14),
        ("malformed", 1),
    ] {
        expected.insert(format!(
            "nodescope_extractor_p2p_{family}_total{{{labels}}} {value}"
        ));
    }
    expected
}

/// The expected samples of `extractor rpc`'s stats: every method and topic, and the families
/// of every extractor.
fn rpc_stats_samples() -> BTreeSet<String> {
    let mut expected = common_stats_samples("rpc", 19);
    let labels = r#"node="node-a",extractor="rpc""#;
    for method in nodescope_metrics::labels::rpc_methods() {
        let (calls, failures) = match method {
            "getpeerinfo" => (5, 0),
            "uptime" => (4, 0),
            "other" => (1, 0),
            "getnetworkinfo" => (0, 1),
            _ => (0, 0),
        };
        expected.insert(format!(
            r#"nodescope_extractor_rpc_calls_total{{{labels},method="{method}"}} {calls}"#
        ));
        expected.insert(format!(
            r#"nodescope_extractor_rpc_failures_total{{{labels},method="{method}"}} {failures}"#
        ));
    }
    for topic in [
        "hashblock",
        "hashtx",
        "rawblock",
        "rawtx",
        "sequence",
        "other",
    ] {
        let (received, missed) = match topic {
            "hashblock" => (2, 3),
            "sequence" | "other" => (1, 0),
            _ => (0, 0),
        };
        expected.insert(format!(
            r#"nodescope_extractor_zmq_received_total{{{labels},topic="{topic}"}} {received}"#
        ));
        expected.insert(format!(
            r#"nodescope_extractor_zmq_missed_total{{{labels},topic="{topic}"}} {missed}"#
        ));
    }
    expected
}

/// The expected samples: every series of every family, `_bucket` lines excepted (only those
/// listed are checked).
const EXPECTED: &str = r#"
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="version",conn_type="inbound"} 1
nodescope_p2p_messages_total{node="node-a",direction="outbound",msg_type="version",conn_type="outbound_full_relay"} 1
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="version",conn_type="block_relay_only"} 1
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="version",conn_type="outbound_full_relay"} 1
nodescope_p2p_messages_total{node="node-a",direction="outbound",msg_type="ping",conn_type="outbound_full_relay"} 1
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="pong",conn_type="outbound_full_relay"} 2
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="ping",conn_type="block_relay_only"} 1
nodescope_p2p_messages_total{node="node-a",direction="outbound",msg_type="pong",conn_type="block_relay_only"} 1
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="inv",conn_type="outbound_full_relay"} 1
nodescope_p2p_messages_total{node="node-a",direction="outbound",msg_type="getdata",conn_type="outbound_full_relay"} 1
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="notfound",conn_type="outbound_full_relay"} 1
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="addr",conn_type="outbound_full_relay"} 1
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="addrv2",conn_type="outbound_full_relay"} 1
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="feefilter",conn_type="outbound_full_relay"} 1
nodescope_p2p_messages_total{node="node-a",direction="outbound",msg_type="feefilter",conn_type="outbound_full_relay"} 1
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="tx",conn_type="outbound_full_relay"} 1
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="other",conn_type="inbound"} 1
nodescope_p2p_messages_total{node="node-a",direction="inbound",msg_type="inv",conn_type="inbound"} 1
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="version",conn_type="inbound"} 102
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="outbound",msg_type="version",conn_type="outbound_full_relay"} 102
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="version",conn_type="block_relay_only"} 103
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="version",conn_type="outbound_full_relay"} 98
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="outbound",msg_type="ping",conn_type="outbound_full_relay"} 8
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="pong",conn_type="outbound_full_relay"} 16
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="ping",conn_type="block_relay_only"} 8
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="outbound",msg_type="pong",conn_type="block_relay_only"} 8
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="inv",conn_type="outbound_full_relay"} 109
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="outbound",msg_type="getdata",conn_type="outbound_full_relay"} 37
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="notfound",conn_type="outbound_full_relay"} 37
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="addr",conn_type="outbound_full_relay"} 91
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="addrv2",conn_type="outbound_full_relay"} 120
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="feefilter",conn_type="outbound_full_relay"} 8
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="outbound",msg_type="feefilter",conn_type="outbound_full_relay"} 8
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="tx",conn_type="outbound_full_relay"} TX_SIZE
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="other",conn_type="inbound"} 12
nodescope_p2p_message_payload_bytes_total{node="node-a",direction="inbound",msg_type="inv",conn_type="inbound"} 1
nodescope_p2p_message_decode_errors_total{node="node-a",direction="inbound",msg_type="inv"} 1
nodescope_p2p_addresses_total{node="node-a",direction="inbound",msg_type="addr",family="ipv4"} 2
nodescope_p2p_addresses_total{node="node-a",direction="inbound",msg_type="addr",family="ipv6"} 1
nodescope_p2p_addresses_total{node="node-a",direction="inbound",msg_type="addrv2",family="torv3"} 1
nodescope_p2p_addresses_total{node="node-a",direction="inbound",msg_type="addrv2",family="i2p"} 1
nodescope_p2p_addresses_total{node="node-a",direction="inbound",msg_type="addrv2",family="other"} 1
nodescope_p2p_inv_entries_total{node="node-a",direction="inbound",msg_type="inv",inv_type="wtx"} 2
nodescope_p2p_inv_entries_total{node="node-a",direction="inbound",msg_type="inv",inv_type="block"} 1
nodescope_p2p_inv_entries_total{node="node-a",direction="outbound",msg_type="getdata",inv_type="wtx"} 1
nodescope_p2p_inv_entries_total{node="node-a",direction="inbound",msg_type="notfound",inv_type="tx"} 1
nodescope_p2p_feefilter_sat_per_vbyte_sum{node="node-a",direction="inbound"} 1.0
nodescope_p2p_feefilter_sat_per_vbyte_count{node="node-a",direction="inbound"} 1
nodescope_p2p_feefilter_sat_per_vbyte_bucket{le="1.0",node="node-a",direction="inbound"} 1
nodescope_p2p_feefilter_sat_per_vbyte_bucket{le="0.5",node="node-a",direction="inbound"} 0
nodescope_p2p_feefilter_sat_per_vbyte_sum{node="node-a",direction="outbound"} 2.5
nodescope_p2p_feefilter_sat_per_vbyte_count{node="node-a",direction="outbound"} 1
nodescope_p2p_feefilter_sat_per_vbyte_bucket{le="2.0",node="node-a",direction="outbound"} 0
nodescope_p2p_feefilter_sat_per_vbyte_bucket{le="3.0",node="node-a",direction="outbound"} 1
nodescope_p2p_version_user_agents_total{node="node-a",direction="inbound",user_agent="/Satoshi:30.0.0/"} 1
nodescope_p2p_version_user_agents_total{node="node-a",direction="outbound",user_agent="/Satoshi:30.0.0/"} 1
nodescope_p2p_version_user_agents_total{node="node-a",direction="inbound",user_agent="/Satoshi:29.0.0/"} 1
nodescope_p2p_version_user_agents_total{node="node-a",direction="inbound",user_agent="other"} 1
nodescope_p2p_ping_rtt_seconds_sum{node="node-a",direction="outbound"} 0.05
nodescope_p2p_ping_rtt_seconds_count{node="node-a",direction="outbound"} 1
nodescope_p2p_ping_rtt_seconds_bucket{le="0.025",node="node-a",direction="outbound"} 0
nodescope_p2p_ping_rtt_seconds_bucket{le="0.05",node="node-a",direction="outbound"} 1
nodescope_p2p_ping_rtt_seconds_sum{node="node-a",direction="inbound"} 0.002
nodescope_p2p_ping_rtt_seconds_count{node="node-a",direction="inbound"} 1
nodescope_p2p_ping_rtt_seconds_bucket{le="0.001",node="node-a",direction="inbound"} 0
nodescope_p2p_ping_rtt_seconds_bucket{le="0.005",node="node-a",direction="inbound"} 1
nodescope_connections_opened_total{node="node-a",direction="inbound",conn_type="inbound",network="ipv4"} 1
nodescope_connections_opened_total{node="node-a",direction="outbound",conn_type="outbound_full_relay",network="onion"} 1
nodescope_connections_opened_total{node="node-a",direction="outbound",conn_type="block_relay_only",network="ipv6"} 1
nodescope_connections_closed_total{node="node-a",direction="inbound",conn_type="inbound",network="ipv4"} 1
nodescope_connections_closed_total{node="node-a",direction="outbound",conn_type="manual",network="ipv4"} 1
nodescope_connections_evicted_total{node="node-a",network="ipv4"} 1
nodescope_connections_misbehaving_total{node="node-a",reason="oversized_message"} 1
nodescope_connections_misbehaving_total{node="node-a",reason="consensus"} 1
nodescope_connections_misbehaving_total{node="node-a",reason="other"} 1
nodescope_connections_open{node="node-a",direction="inbound",conn_type="inbound"} 0
nodescope_connections_open{node="node-a",direction="outbound",conn_type="outbound_full_relay"} 1
nodescope_connections_open{node="node-a",direction="outbound",conn_type="block_relay_only"} 1
nodescope_connection_age_at_close_seconds_sum{node="node-a",conn_type="inbound"} 100.0
nodescope_connection_age_at_close_seconds_count{node="node-a",conn_type="inbound"} 1
nodescope_connection_age_at_close_seconds_bucket{le="60.0",node="node-a",conn_type="inbound"} 0
nodescope_connection_age_at_close_seconds_bucket{le="300.0",node="node-a",conn_type="inbound"} 1
nodescope_connection_age_at_close_seconds_sum{node="node-a",conn_type="manual"} 5.0
nodescope_connection_age_at_close_seconds_count{node="node-a",conn_type="manual"} 1
nodescope_mempool_added_total{node="node-a"} 2
nodescope_mempool_removed_total{node="node-a",reason="block"} 1
nodescope_mempool_removed_total{node="node-a",reason="other"} 1
nodescope_mempool_replaced_total{node="node-a",replaced_by="transaction"} 1
nodescope_mempool_replaced_total{node="node-a",replaced_by="package"} 1
nodescope_mempool_rejected_total{node="node-a",reason="fee"} 1
nodescope_mempool_rejected_total{node="node-a",reason="conflict"} 1
nodescope_mempool_rejected_total{node="node-a",reason="other"} 1
nodescope_mempool_added_vsize_vbytes_sum{node="node-a"} 300.0
nodescope_mempool_added_vsize_vbytes_count{node="node-a"} 2
nodescope_mempool_added_vsize_vbytes_bucket{le="100.0",node="node-a"} 1
nodescope_mempool_added_vsize_vbytes_bucket{le="200.0",node="node-a"} 2
nodescope_mempool_added_fee_satoshis_sum{node="node-a"} 1150.0
nodescope_mempool_added_fee_satoshis_count{node="node-a"} 2
nodescope_mempool_added_fee_satoshis_bucket{le="300.0",node="node-a"} 1
nodescope_mempool_added_feerate_sat_per_vbyte_sum{node="node-a"} 6.5
nodescope_mempool_added_feerate_sat_per_vbyte_count{node="node-a"} 2
nodescope_mempool_added_feerate_sat_per_vbyte_bucket{le="2.0",node="node-a"} 1
nodescope_mempool_added_feerate_sat_per_vbyte_bucket{le="5.0",node="node-a"} 2
nodescope_block_height{node="node-a"} 101
nodescope_blocks_connected_total{node="node-a"} 2
nodescope_block_connect_duration_seconds_sum{node="node-a"} 0.502
nodescope_block_connect_duration_seconds_count{node="node-a"} 2
nodescope_block_connect_duration_seconds_bucket{le="0.005",node="node-a"} 1
nodescope_block_connect_duration_seconds_bucket{le="0.5",node="node-a"} 2
nodescope_block_transactions_total{node="node-a"} 4
nodescope_block_inputs_total{node="node-a"} 5
nodescope_block_sigop_cost_total{node="node-a"} 12
nodescope_utxocache_flushes_total{node="node-a",mode="if_needed",for_prune="false"} 1
nodescope_utxocache_flushes_total{node="node-a",mode="always",for_prune="true"} 1
nodescope_utxocache_flush_duration_seconds_sum{node="node-a",mode="if_needed"} 0.0015
nodescope_utxocache_flush_duration_seconds_count{node="node-a",mode="if_needed"} 1
nodescope_utxocache_flush_duration_seconds_sum{node="node-a",mode="always"} 0.25
nodescope_utxocache_flush_duration_seconds_count{node="node-a",mode="always"} 1
nodescope_utxocache_flush_duration_seconds_bucket{le="0.1",node="node-a",mode="always"} 0
nodescope_utxocache_flush_duration_seconds_bucket{le="0.5",node="node-a",mode="always"} 1
nodescope_utxocache_flush_coins{node="node-a"} 10
nodescope_utxocache_flush_memory_bytes{node="node-a"} 4096
nodescope_utxocache_coins_total{node="node-a",operation="add"} 2
nodescope_utxocache_coins_total{node="node-a",operation="spent"} 1
nodescope_utxocache_coins_total{node="node-a",operation="uncache"} 1
nodescope_utxocache_coin_value_satoshis_total{node="node-a",operation="add"} 10000
nodescope_utxocache_coin_value_satoshis_total{node="node-a",operation="spent"} 5000
nodescope_utxocache_coin_value_satoshis_total{node="node-a",operation="uncache"} 100
nodescope_coin_selection_selections_total{node="node-a",algorithm="bnb"} 1
nodescope_coin_selection_selections_total{node="node-a",algorithm="knapsack"} 1
nodescope_coin_selection_selections_total{node="node-a",algorithm="other"} 1
nodescope_coin_selection_selected_value_satoshis_total{node="node-a",algorithm="bnb"} 10000
nodescope_coin_selection_selected_value_satoshis_total{node="node-a",algorithm="knapsack"} 20000
nodescope_coin_selection_selected_value_satoshis_total{node="node-a",algorithm="other"} 5
nodescope_coin_selection_create_tx_total{node="node-a",attempt="normal",result="success"} 1
nodescope_coin_selection_create_tx_total{node="node-a",attempt="aps",result="success"} 1
nodescope_coin_selection_aps_used_total{node="node-a"} 1
nodescope_events_received_total{node="node-a",extractor="ebpf",category="net.connection"} 9
nodescope_events_received_total{node="node-a",extractor="ebpf",category="net.message"} 19
nodescope_events_received_total{node="node-a",extractor="ebpf",category="mempool"} 9
nodescope_events_received_total{node="node-a",extractor="ebpf",category="validation"} 2
nodescope_events_received_total{node="node-a",extractor="ebpf",category="utxocache"} 6
nodescope_events_received_total{node="node-a",extractor="ebpf",category="coin_selection"} 6
nodescope_events_received_total{node="node-a",extractor="ebpf",category="extractor"} 2
nodescope_events_received_total{node="node-b",extractor="ebpf",category="mempool"} 1
nodescope_events_missed_total{node="node-a",extractor="ebpf",category="mempool"} 3
nodescope_events_replayed_total{node="node-a",extractor="ebpf",category="mempool"} 1
nodescope_extractor_restarts_total{node="node-a",extractor="ebpf"} 1
nodescope_undecodable_messages_total{node="node-a"} 1
nodescope_mempool_added_total{node="node-b"} 1
nodescope_mempool_added_vsize_vbytes_sum{node="node-b"} 141.0
nodescope_mempool_added_vsize_vbytes_count{node="node-b"} 1
nodescope_mempool_added_fee_satoshis_sum{node="node-b"} 1410.0
nodescope_mempool_added_fee_satoshis_count{node="node-b"} 1
nodescope_mempool_added_feerate_sat_per_vbyte_sum{node="node-b"} 10.0
nodescope_mempool_added_feerate_sat_per_vbyte_count{node="node-b"} 1
nodescope_extractor_events_read_total{node="node-a",extractor="ebpf"} 10
nodescope_extractor_events_published_total{node="node-a",extractor="ebpf"} 9
nodescope_extractor_events_resent_total{node="node-a",extractor="ebpf"} 0
nodescope_extractor_events_dropped_total{node="node-a",extractor="ebpf",cause="queue_full"} 0
nodescope_extractor_events_dropped_total{node="node-a",extractor="ebpf",cause="too_large"} 0
nodescope_extractor_errors_total{node="node-a",extractor="ebpf",kind="decode"} 0
nodescope_extractor_errors_total{node="node-a",extractor="ebpf",kind="read"} 0
nodescope_extractor_errors_total{node="node-a",extractor="ebpf",kind="ring_record"} 0
nodescope_extractor_payloads_incomplete_total{node="node-a",extractor="ebpf",cause="expired"} 0
nodescope_extractor_payloads_incomplete_total{node="node-a",extractor="ebpf",cause="shutdown"} 0
nodescope_extractor_stray_chunks_total{node="node-a",extractor="ebpf"} 0
nodescope_extractor_queued_events{node="node-a",extractor="ebpf"} 0
nodescope_extractor_queued_bytes{node="node-a",extractor="ebpf"} 0
nodescope_extractor_attached_locations{node="node-a",extractor="ebpf"} 20
nodescope_extractor_kernel_memory_bytes{node="node-a",extractor="ebpf"} 33800000
nodescope_events_received_total{node="node-a",extractor="rpc",category="rpc"} 15
nodescope_events_received_total{node="node-a",extractor="rpc",category="zmq"} 4
nodescope_events_received_total{node="node-a",extractor="rpc",category="extractor"} 1
nodescope_p2p_wire_bytes_total{node="node-a",direction="outbound",msg_type="version",transport="v2"} 135
nodescope_p2p_wire_bytes_total{node="node-a",direction="inbound",msg_type="version",transport="v2"} 131
nodescope_p2p_wire_bytes_total{node="node-a",direction="outbound",msg_type="ping",transport="v2"} 29
nodescope_p2p_wire_bytes_total{node="node-a",direction="inbound",msg_type="pong",transport="v2"} 58
nodescope_p2p_wire_bytes_total{node="node-a",direction="inbound",msg_type="inv",transport="v2"} 130
nodescope_p2p_wire_bytes_total{node="node-a",direction="outbound",msg_type="getdata",transport="v2"} 58
nodescope_p2p_wire_bytes_total{node="node-a",direction="inbound",msg_type="notfound",transport="v2"} 58
nodescope_p2p_wire_bytes_total{node="node-a",direction="inbound",msg_type="addr",transport="v2"} 112
nodescope_p2p_wire_bytes_total{node="node-a",direction="inbound",msg_type="addrv2",transport="v2"} 141
nodescope_p2p_wire_bytes_total{node="node-a",direction="inbound",msg_type="feefilter",transport="v2"} 29
nodescope_p2p_wire_bytes_total{node="node-a",direction="outbound",msg_type="feefilter",transport="v2"} 29
nodescope_p2p_wire_bytes_total{node="node-a",direction="inbound",msg_type="tx",transport="v2"} TX_V2_WIRE
nodescope_p2p_wire_bytes_total{node="node-a",direction="inbound",msg_type="version",transport="v1"} 127
nodescope_p2p_wire_bytes_total{node="node-a",direction="inbound",msg_type="ping",transport="v1"} 32
nodescope_p2p_wire_bytes_total{node="node-a",direction="outbound",msg_type="pong",transport="v1"} 32
nodescope_p2p_wire_unattributed_payload_bytes_total{node="node-a",direction="inbound",msg_type="version",reason="closed"} 102
nodescope_p2p_wire_unattributed_payload_bytes_total{node="node-a",direction="inbound",msg_type="sendtxrcncl",reason="closed"} 12
nodescope_p2p_wire_unattributed_payload_bytes_total{node="node-a",direction="inbound",msg_type="inv",reason="closed"} 1
nodescope_p2p_wire_unattributed_messages_total{node="node-a",direction="inbound",msg_type="version",reason="closed"} 1
nodescope_p2p_wire_unattributed_messages_total{node="node-a",direction="inbound",msg_type="sendtxrcncl",reason="closed"} 1
nodescope_p2p_wire_unattributed_messages_total{node="node-a",direction="inbound",msg_type="inv",reason="closed"} 1
nodescope_p2p_wire_pending_peers{node="node-a"} 0
nodescope_rpc_peers{node="node-a",network="onion",connection_type="outbound-full-relay",transport="v2"} 1
nodescope_rpc_peers{node="node-a",network="ipv6",connection_type="block-relay-only",transport="v1"} 1
nodescope_rpc_peers{node="node-a",network="not_publicly_routable",connection_type="inbound",transport="detecting"} 1
nodescope_rpc_peer_pingtime_seconds{node="node-a",stat="min"} 0.25
nodescope_rpc_peer_pingtime_seconds{node="node-a",stat="median"} 0.375
nodescope_rpc_peer_pingtime_seconds{node="node-a",stat="max"} 0.5
nodescope_rpc_peer_minping_seconds{node="node-a",stat="min"} 0.125
nodescope_rpc_peer_minping_seconds{node="node-a",stat="median"} 0.1875
nodescope_rpc_peer_minping_seconds{node="node-a",stat="max"} 0.25
nodescope_rpc_net_bytes_total{node="node-a",direction="inbound"} 5000
nodescope_rpc_net_bytes_total{node="node-a",direction="outbound"} 7000
nodescope_rpc_upload_target_bytes{node="node-a"} 5000000
nodescope_rpc_upload_target_left_bytes{node="node-a"} 4000000
nodescope_rpc_upload_target_reached{node="node-a"} 0
nodescope_rpc_mempool_transactions{node="node-a"} 3
nodescope_rpc_mempool_vsize_vbytes{node="node-a"} 600
nodescope_rpc_mempool_usage_bytes{node="node-a"} 4000
nodescope_rpc_mempool_max_bytes{node="node-a"} 300000000
nodescope_rpc_mempool_min_fee_sat_per_vbyte{node="node-a"} 1.0
nodescope_rpc_mempool_min_relay_fee_sat_per_vbyte{node="node-a"} 0.1
nodescope_rpc_mempool_total_fee_satoshis{node="node-a"} 10000
nodescope_rpc_mempool_full_rbf{node="node-a"} 1
nodescope_rpc_mempool_loaded{node="node-a"} 1
nodescope_rpc_mempool_unbroadcast_transactions{node="node-a"} 1
nodescope_rpc_memory_locked_bytes{node="node-a",memory="used"} 1000
nodescope_rpc_memory_locked_bytes{node="node-a",memory="free"} 2000
nodescope_rpc_memory_locked_bytes{node="node-a",memory="total"} 3000
nodescope_rpc_memory_locked_bytes{node="node-a",memory="locked"} 3000
nodescope_rpc_uptime_seconds{node="node-a"} 3600
nodescope_rpc_addrman_addresses{node="node-a",network="ipv4",table="new"} 10
nodescope_rpc_addrman_addresses{node="node-a",network="ipv4",table="tried"} 2
nodescope_rpc_addrman_addresses{node="node-a",network="onion",table="new"} 3
nodescope_rpc_addrman_addresses{node="node-a",network="onion",table="tried"} 0
nodescope_rpc_addrman_addresses{node="node-a",network="all_networks",table="new"} 14
nodescope_rpc_addrman_addresses{node="node-a",network="all_networks",table="tried"} 3
nodescope_rpc_addrman_addresses{node="node-a",network="other",table="new"} 1
nodescope_rpc_addrman_addresses{node="node-a",network="other",table="tried"} 1
nodescope_rpc_chain_blocks{node="node-a"} 101
nodescope_rpc_chain_headers{node="node-a"} 102
nodescope_rpc_chain_verification_progress{node="node-a"} 1.0
nodescope_rpc_chain_initial_block_download{node="node-a"} 0
nodescope_rpc_chain_size_on_disk_bytes{node="node-a"} 30000
nodescope_rpc_chain_pruned{node="node-a"} 0
nodescope_rpc_chain_difficulty{node="node-a"} 2.5
nodescope_rpc_chain_warnings{node="node-a"} 2
nodescope_rpc_network_reachable{node="node-a",network="ipv4"} 1
nodescope_rpc_network_reachable{node="node-a",network="onion"} 0
nodescope_rpc_network_limited{node="node-a",network="ipv4"} 0
nodescope_rpc_network_limited{node="node-a",network="onion"} 1
nodescope_rpc_connections{node="node-a",direction="inbound"} 1
nodescope_rpc_connections{node="node-a",direction="outbound"} 2
nodescope_rpc_network_active{node="node-a"} 1
nodescope_rpc_network_warnings{node="node-a"} 0
nodescope_rpc_chain_tx_rate{node="node-a"} 0.5
nodescope_rpc_chain_transactions{node="node-a"} 150
nodescope_rpc_orphan_transactions{node="node-a"} 2
nodescope_rpc_index_synced{node="node-a",index="txindex"} 1
nodescope_rpc_index_synced{node="node-a",index="basic block filter index"} 0
nodescope_rpc_index_synced{node="node-a",index="other"} 1
nodescope_rpc_index_best_block_height{node="node-a",index="txindex"} 101
nodescope_rpc_index_best_block_height{node="node-a",index="basic block filter index"} 50
nodescope_rpc_index_best_block_height{node="node-a",index="other"} 101
nodescope_rpc_coin_supply_btc{node="node-a"} 19687420.5
nodescope_rpc_coin_supply_limit_btc{node="node-a"} 19687503.125
nodescope_rpc_utxo_height{node="node-a"} 840000
nodescope_rpc_utxo_txouts{node="node-a"} 179000000
nodescope_rpc_calls_total{node="node-a",method="getpeerinfo"} 1
nodescope_rpc_calls_total{node="node-a",method="getmempoolinfo"} 1
nodescope_rpc_calls_total{node="node-a",method="getnettotals"} 1
nodescope_rpc_calls_total{node="node-a",method="getmemoryinfo"} 1
nodescope_rpc_calls_total{node="node-a",method="getaddrmaninfo"} 1
nodescope_rpc_calls_total{node="node-a",method="uptime"} 1
nodescope_rpc_calls_total{node="node-a",method="getblockchaininfo"} 1
nodescope_rpc_calls_total{node="node-a",method="getnetworkinfo"} 1
nodescope_rpc_calls_total{node="node-a",method="getchaintxstats"} 1
nodescope_rpc_calls_total{node="node-a",method="getorphantxs"} 1
nodescope_rpc_calls_total{node="node-a",method="getrawaddrman"} 1
nodescope_rpc_calls_total{node="node-a",method="getindexinfo"} 1
nodescope_rpc_calls_total{node="node-a",method="gettxoutsetinfo"} 1
nodescope_rpc_call_failures_total{node="node-a",method="getnetworkinfo",kind="timeout"} 1
nodescope_rpc_call_duration_seconds_sum{node="node-a",method="getpeerinfo"} 0.002
nodescope_rpc_call_duration_seconds_count{node="node-a",method="getpeerinfo"} 1
nodescope_rpc_call_duration_seconds_bucket{le="0.001",node="node-a",method="getpeerinfo"} 0
nodescope_rpc_call_duration_seconds_bucket{le="0.0025",node="node-a",method="getpeerinfo"} 1
nodescope_rpc_call_duration_seconds_sum{node="node-a",method="getrawaddrman"} 0.002
nodescope_rpc_call_duration_seconds_count{node="node-a",method="getrawaddrman"} 1
nodescope_zmq_notifications_total{node="node-a",topic="hashblock"} 2
nodescope_zmq_notifications_total{node="node-a",topic="sequence"} 1
nodescope_zmq_notifications_total{node="node-a",topic="other"} 1
nodescope_zmq_missed_total{node="node-a",topic="hashblock"} 3
nodescope_zmq_missed_total{node="node-a",topic="sequence"} 0
nodescope_zmq_missed_total{node="node-a",topic="other"} 0
nodescope_zmq_last_notification_timestamp_seconds{node="node-a",topic="hashblock"} 1700000105.0
nodescope_zmq_last_notification_timestamp_seconds{node="node-a",topic="sequence"} 1700000104.5
nodescope_zmq_last_notification_timestamp_seconds{node="node-a",topic="other"} 1700000104.6
nodescope_events_received_total{node="node-a",extractor="p2p",category="p2p"} 20
nodescope_events_received_total{node="node-a",extractor="p2p",category="extractor"} 1
nodescope_peer_ping_rtt_seconds_sum{node="node-a"} 0.0415
nodescope_peer_ping_rtt_seconds_count{node="node-a"} 2
nodescope_peer_ping_rtt_seconds_bucket{le="0.001",node="node-a"} 0
nodescope_peer_ping_rtt_seconds_bucket{le="0.0025",node="node-a"} 1
nodescope_peer_ping_rtt_seconds_bucket{le="0.025",node="node-a"} 1
nodescope_peer_ping_rtt_seconds_bucket{le="0.05",node="node-a"} 2
nodescope_peer_messages_total{node="node-a",msg_type="inv"} 4
nodescope_peer_messages_total{node="node-a",msg_type="tx"} 1
nodescope_peer_messages_total{node="node-a",msg_type="addr"} 1
nodescope_peer_messages_total{node="node-a",msg_type="addrv2"} 1
nodescope_peer_messages_total{node="node-a",msg_type="feefilter"} 2
nodescope_peer_messages_total{node="node-a",msg_type="headers"} 2
nodescope_peer_messages_total{node="node-a",msg_type="cmpctblock"} 1
nodescope_peer_messages_total{node="node-a",msg_type="ping"} 1
nodescope_peer_malformed_messages_total{node="node-a",msg_type="inv"} 1
nodescope_peer_addresses_total{node="node-a",msg_type="addr",family="ipv4"} 2
nodescope_peer_addresses_total{node="node-a",msg_type="addr",family="ipv6"} 1
nodescope_peer_addresses_total{node="node-a",msg_type="addrv2",family="torv3"} 2
nodescope_peer_addresses_total{node="node-a",msg_type="addrv2",family="i2p"} 1
nodescope_peer_addresses_total{node="node-a",msg_type="addrv2",family="other"} 1
nodescope_peer_inv_entries_total{node="node-a",inv_type="wtx"} 3
nodescope_peer_inv_entries_total{node="node-a",inv_type="block"} 1
nodescope_peer_inv_entries_total{node="node-a",inv_type="tx"} 1
nodescope_peer_inv_interval_seconds_sum{node="node-a"} 2.5
nodescope_peer_inv_interval_seconds_count{node="node-a"} 2
nodescope_peer_inv_interval_seconds_bucket{le="0.25",node="node-a"} 0
nodescope_peer_inv_interval_seconds_bucket{le="0.5",node="node-a"} 1
nodescope_peer_inv_interval_seconds_bucket{le="1.0",node="node-a"} 1
nodescope_peer_inv_interval_seconds_bucket{le="2.0",node="node-a"} 2
nodescope_peer_transactions_total{node="node-a",stage="announced"} 4
nodescope_peer_transactions_total{node="node-a",stage="received"} 1
nodescope_peer_feefilter_sat_per_kvbyte{node="node-a"} 2500
nodescope_peer_block_announcements_total{node="node-a",msg_type="headers"} 1
nodescope_peer_block_announcements_total{node="node-a",msg_type="cmpctblock"} 1
nodescope_peer_last_block_announcement_timestamp_seconds{node="node-a",msg_type="headers"} 1700000107.0
nodescope_peer_last_block_announcement_timestamp_seconds{node="node-a",msg_type="cmpctblock"} 1700000108.0
nodescope_peer_connected{node="node-a",transport="v1"} 0
nodescope_peer_connected{node="node-a",transport="v2"} 1
nodescope_peer_connections_total{node="node-a",outcome="failed"} 2
nodescope_peer_connections_total{node="node-a",outcome="connected"} 2
nodescope_peer_disconnects_total{node="node-a",reason="reset"} 1
nodescope_peer_connection_failures_total{node="node-a",reason="unreachable"} 1
nodescope_peer_connection_failures_total{node="node-a",reason="handshake"} 1
nodescope_peer_connect_retries{node="node-a"} 2
"#;

/// Run 1's stats, scraped before the restart: the extractor's totals as the counters' values.
const EXPECTED_RUN_1: &str = r#"
nodescope_extractor_events_read_total{node="node-a",extractor="ebpf"} 100
nodescope_extractor_events_published_total{node="node-a",extractor="ebpf"} 90
nodescope_extractor_events_resent_total{node="node-a",extractor="ebpf"} 4
nodescope_extractor_events_dropped_total{node="node-a",extractor="ebpf",cause="queue_full"} 3
nodescope_extractor_events_dropped_total{node="node-a",extractor="ebpf",cause="too_large"} 1
nodescope_extractor_errors_total{node="node-a",extractor="ebpf",kind="decode"} 6
nodescope_extractor_errors_total{node="node-a",extractor="ebpf",kind="read"} 7
nodescope_extractor_errors_total{node="node-a",extractor="ebpf",kind="ring_record"} 3
nodescope_extractor_kernel_drops_total{node="node-a",extractor="ebpf",tracepoint="net:inbound_message"} 5
nodescope_extractor_kernel_drops_total{node="node-a",extractor="ebpf",tracepoint="net:outbound_message"} 0
nodescope_extractor_kernel_drops_total{node="node-a",extractor="ebpf",tracepoint="other"} 2
nodescope_extractor_kernel_payload_drops_total{node="node-a",extractor="ebpf",tracepoint="net:inbound_message"} 1
nodescope_extractor_payloads_incomplete_total{node="node-a",extractor="ebpf",cause="expired"} 1
nodescope_extractor_payloads_incomplete_total{node="node-a",extractor="ebpf",cause="shutdown"} 2
nodescope_extractor_stray_chunks_total{node="node-a",extractor="ebpf"} 8
nodescope_extractor_queued_events{node="node-a",extractor="ebpf"} 2
nodescope_extractor_queued_bytes{node="node-a",extractor="ebpf"} 300
"#;

/// The sample lines, but the readiness probes' (node "probe", see `Tool::start`).
fn samples(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains(r#"node="probe""#))
        .map(String::from)
        .collect()
}

fn families(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// The family a sample belongs to (its name without the type's suffixes).
fn family_of(sample: &str, families: &BTreeSet<String>) -> String {
    let name = &sample[..sample.find(['{', ' ']).unwrap()];
    families
        .iter()
        .filter(|f| name.starts_with(f.as_str()))
        .max_by_key(|f| f.len())
        .unwrap_or_else(|| panic!("no family for {name}"))
        .clone()
}

/// Publishes node-a's events up to the extractor's restart (returned, to publish later), a
/// replayed event, a message that is not an event and one event of node-b.
async fn publish_until_restart(tool: &Tool) -> Event {
    let (mut events, replayed) = node_a_events();
    let restart = events.pop().unwrap();
    for event in &events {
        publish(&tool.publisher, event).await;
    }
    publish(&tool.publisher, &replayed).await;
    tool.publisher
        .publish("nodescope.node-a.mempool", "not an event".into())
        .await
        .unwrap();
    let mut node_b = EventSource::new("node-b", 7);
    let added = Payload::MempoolAdded(MempoolAdded {
        txid: vec![9; 32],
        vsize: 141,
        fee: 1410,
    });
    publish(&tool.publisher, &node_b.stamp(added)).await;
    restart
}

#[tokio::test]
async fn every_family_has_exactly_the_expected_values() {
    let tool = Tool::start(&["--user-agents", "2"]).await;
    let restart = publish_until_restart(&tool).await;

    let before_restart = samples(EXPECTED_RUN_1);
    tool.wait_for(
        || async {
            let scrape = tool.scrape().await;
            samples(&scrape).is_superset(&before_restart)
                && value(&scrape, r#"nodescope_mempool_added_total{node="node-b"}"#) == Some(1.0)
        },
        "run 1's stats and node-b's event scraped",
    )
    .await;
    publish(&tool.publisher, &restart).await;
    tool.wait_for(
        || async {
            value(
                &tool.scrape().await,
                r#"nodescope_extractor_restarts_total{node="node-a",extractor="ebpf"}"#,
            ) == Some(1.0)
        },
        "the restart seen",
    )
    .await;

    let scrape = tool.scrape().await;
    let tx_size = samples::sample_payloads()
        .into_iter()
        .find(|(t, _)| *t == "tx")
        .unwrap()
        .1
        .len();
    let expected = EXPECTED
        .replace("TX_SIZE", &tx_size.to_string())
        .replace("TX_V2_WIRE", &(tx_size + 21).to_string());
    let mut expected = samples(&expected);
    expected.extend(rpc_stats_samples());
    expected.extend(p2p_stats_samples());
    // Every answered method's call duration (2 ms), getpeerinfo's and getrawaddrman's above.
    for method in nodescope_metrics::labels::rpc_methods().filter(|m| *m != "other") {
        let labels = format!(r#"{{node="node-a",method="{method}"}}"#);
        expected.insert(format!(
            "nodescope_rpc_call_duration_seconds_sum{labels} 0.002"
        ));
        expected.insert(format!(
            "nodescope_rpc_call_duration_seconds_count{labels} 1"
        ));
    }
    // After the restart every tracepoint's drops are run 2's: 0.
    for tracepoint in nodescope_metrics::labels::tracepoints() {
        for family in ["kernel_drops", "kernel_payload_drops"] {
            expected.insert(format!(
                r#"nodescope_extractor_{family}_total{{node="node-a",extractor="ebpf",tracepoint="{tracepoint}"}} 0"#
            ));
        }
    }
    let actual = samples(&scrape);
    let is_bucket = |s: &String| s.contains("_bucket{");
    let missing: Vec<_> = expected.difference(&actual).collect();
    let unexpected: Vec<_> = actual
        .difference(&expected)
        .filter(|s| !is_bucket(s))
        .collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "missing:\n{}\nunexpected:\n{}",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        unexpected
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    );

    // Every family registered is checked above, and their number is the README's.
    let registered = families(&scrape);
    let checked: BTreeSet<String> = expected
        .iter()
        .chain(&before_restart)
        .map(|s| family_of(s, &registered))
        .collect();
    assert_eq!(checked, registered);
    assert_eq!(registered.len(), 130);
    // The README lists every family (as the classic format names it: counters with `_total`).
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    for family in &registered {
        assert!(
            readme.contains(&format!("| `{family}` |")),
            "{family} is not in the README"
        );
    }
    tool.stop().await;
}

/// The exporter's decoding (`decode_event`, which skips what no metric reads) gives the same
/// metrics as `Event::decode`: for every event above, and every sample message type both
/// ways, whole, cut and kept raw.
#[test]
fn decode_event_makes_the_metrics_event_decode_makes() {
    use nodescope_consumer::{Continuity, Item, Received};
    use nodescope_metrics::{decode_event, FlushModes, Metrics, Recorder};
    use prost::Message;

    let (mut events, replayed) = node_a_events();
    events.push(replayed);
    let mut sampled = EventSource::new("node-s", 3);
    for (msg_type, payload) in samples::sample_payloads() {
        for (options, captured) in [
            (DecodeOptions::default(), payload.len()),
            (DecodeOptions { keep_raw: true }, payload.len()),
            (DecodeOptions::default(), payload.len() / 2),
        ] {
            let decoded = decode_p2p(
                msg_type,
                &payload[..captured],
                payload.len() as u64,
                options,
            );
            for inbound in [true, false] {
                let peer = peer(4, ConnectionType::Inbound);
                events.push(sampled.stamp(net(inbound, peer, decoded.clone())));
            }
        }
    }
    let scrape = |decode: &dyn Fn(&[u8]) -> Event| {
        let (metrics, registry) = Metrics::new();
        let config = nodescope_metrics::Config {
            user_agents: 2,
            max_nodes: 10,
            flush_modes: FlushModes::V30,
        };
        let mut recorder = Recorder::new(metrics, config);
        for event in &events {
            let event = decode(&event.encode_to_vec());
            let category = event.category().unwrap();
            recorder.record(&Item::Event(Box::new(Received {
                event,
                category,
                continuity: Continuity::Next,
            })));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    };
    let whole = scrape(&|bytes| Event::decode(bytes).unwrap());
    let lean = scrape(&|bytes| decode_event(bytes).unwrap());
    assert!(whole.contains(r#"nodescope_p2p_inv_entries_total{node="node-s""#));
    assert_eq!(samples(&lean), samples(&whole));
}

#[tokio::test]
async fn a_malformed_message_is_counted_and_the_exporter_goes_on() {
    let tool = Tool::start(&[]).await;
    for garbage in [&b"\xff\xff\xff"[..], b"\x08\x01", b"\x10"] {
        tool.publisher
            .publish("nodescope.node-a.mempool", garbage.to_vec().into())
            .await
            .unwrap();
    }
    let mut run = EventSource::new("node-a", 1);
    publish(
        &tool.publisher,
        &run.stamp(Payload::MempoolAdded(MempoolAdded {
            txid: vec![1; 32],
            vsize: 100,
            fee: 100,
        })),
    )
    .await;
    tool.wait_for(
        || async {
            let scrape = tool.scrape().await;
            value(&scrape, r#"nodescope_mempool_added_total{node="node-a"}"#) == Some(1.0)
        },
        "the valid event counted",
    )
    .await;
    let scrape = tool.scrape().await;
    assert_eq!(
        value(
            &scrape,
            r#"nodescope_undecodable_messages_total{node="node-a"}"#
        ),
        Some(3.0)
    );
    tool.stop().await;
}

#[tokio::test]
async fn http_endpoints_and_a_taken_port() {
    let tool = Tool::start(&[]).await;
    assert_eq!(tool.get("/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(tool.get("/nope").await.0, 404);
    let (status, body) = tool.get("/metrics").await;
    assert_eq!(status, 200);
    // Only the readiness probes so far (and, in the classic text format, no end marker).
    assert!(samples(&body).is_empty(), "{body}");

    // A second exporter on the same address says which and what to do.
    let listen = tool.base.trim_start_matches("http://").to_string();
    let url = tool.nats.url();
    let args = <nodescope_metrics::Args as clap::Parser>::parse_from([
        "metrics",
        "--nats-url",
        &url,
        "--listen",
        &listen,
    ]);
    let error = nodescope_metrics::run(args, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&listen) && error.contains("already in use") && error.contains("--listen"),
        "{error}"
    );

    // NATS gone: unhealthy with a reason.
    drop(tool.publisher);
    let mut nats = tool.nats;
    nats.kill();
    let base = tool.base.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) =
            nodescope_consumer::testing::http_get(&format!("{base}/healthz")).await;
        if status == 503 {
            assert!(body.contains("NATS"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still healthy without NATS"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `promtool check metrics` (the Debian package's) on a scrape holding every family.
#[tokio::test]
async fn promtool_finds_nothing_to_complain_about() {
    let tool = Tool::start(&["--user-agents", "2"]).await;
    let restart = publish_until_restart(&tool).await;
    publish(&tool.publisher, &restart).await;
    tool.wait_for(
        || async {
            value(
                &tool.scrape().await,
                r#"nodescope_extractor_restarts_total{node="node-a",extractor="ebpf"}"#,
            ) == Some(1.0)
        },
        "every event scraped",
    )
    .await;
    let scrape = tool.scrape().await;
    assert_eq!(families(&scrape).len(), 130);
    assert_promtool_clean(&scrape);
    tool.stop().await;
}
