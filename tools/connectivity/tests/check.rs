//! The whole tool on loopback: announcements in over a real nats-server, checks against fake
//! peers on many distinct loopback addresses, a SOCKS5 proxy and a real bitcoind; results
//! out as events, metrics and CSV.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::p2p::Magic;
use common::{at, named, peer, value, Tool};
use nodescope_connectivity::fake::{loopback, Behaviour, FakePeers, Socks5Proxy, SocksTarget};
use nodescope_consumer::testing::assert_promtool_clean;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{
    AddrNetwork, ConnectionType, ConnectivityResult, NetAddress, P2pEmpty, V2Support,
};

const FAST: &[&str] = &[
    "--allow-private",
    "--handshake-timeout",
    "500ms",
    "--connect-timeout",
    "2s",
    "--max-checks-per-minute",
    "60000",
];

fn label(result: i32) -> &'static str {
    ConnectivityResult::try_from(result).unwrap().label()
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = FAST.to_vec();
    all.extend_from_slice(extra);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_peer_is_classified_exactly_within_the_concurrency_limit() {
    // 12 of each kind on distinct loopback addresses (127.10.0.x).
    let kinds = [
        ("reachable", Behaviour::bitcoin(Magic::REGTEST)),
        ("refused", Behaviour::Refuse),
        ("timeout", Behaviour::BlackHole),
        (
            "wrong_magic",
            Behaviour::WrongMagic {
                magic: Magic::BITCOIN,
            },
        ),
        (
            "not_bitcoin",
            Behaviour::Garbage(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
        ),
        ("reset", Behaviour::CloseAtOnce),
    ];
    let mut behaviours = Vec::new();
    let mut expected = HashMap::new();
    for (k, (name, behaviour)) in kinds.iter().enumerate() {
        for i in 0..12 {
            let ip = loopback((k * 12 + i) as u32);
            behaviours.push((ip, behaviour.clone()));
            expected.insert(ip.to_string(), *name);
        }
    }
    let fakes = FakePeers::spawn(behaviours, 0).unwrap();
    let csv = tempfile::NamedTempFile::new().unwrap();
    let csv_path = csv.path().to_str().unwrap().to_string();
    let mut tool = Tool::start(&args(&["--concurrency", "4", "--csv", &csv_path])).await;
    let addresses: Vec<NetAddress> = fakes.addrs().into_iter().map(at).collect();
    tool.announce_all(addresses.clone()).await;

    let results = tool.wait_results(72, Duration::from_secs(30)).await;
    let mut got = BTreeMap::new();
    for check in &results {
        let address = check.address.as_ref().unwrap();
        let want = expected[&address.address];
        assert_eq!(label(check.result), want, "{address:?}: {}", check.detail);
        *got.entry(want).or_insert(0) += 1;
        if want == "reachable" {
            let version = check.version.as_ref().expect("the peer's version");
            assert_eq!(version.user_agent, "/Satoshi:30.0.0/");
            assert_eq!((version.version, version.start_height), (70016, 100));
            assert!(check.verack && check.handshake_ns > 0 && check.connect_ns > 0);
            assert_eq!(check.checked_chain, "regtest");
        } else {
            assert!(check.version.is_none());
        }
        assert_eq!(check.addr_version, "addrv2");
        assert!(
            (3590..3700).contains(&check.timestamp_age_s),
            "{}",
            check.timestamp_age_s
        );
        assert_eq!(check.announced_by.as_ref().unwrap().id, 7);
    }
    assert!(got.values().all(|n| *n == 12), "{got:?}");
    // Measured at the peers, which see a close a scheduling delay after the tool moved on to
    // its next check: one more than the limit can overlap that way, never more.
    let max_open = fakes.tally().max_open();
    assert!(
        (2..=4 + 1).contains(&max_open),
        "at most 4 checks at once, measured {max_open} at the peers"
    );

    // Announced again: cached, nothing dialled.
    let accepted = fakes.tally().accepted();
    tool.announce_all(addresses).await;
    let scrape = tool
        .wait_metric(
            r#"nodescope_connectivity_cached_total{node="node-a",network="ipv4"}"#,
            72.0,
        )
        .await;
    assert_eq!(fakes.tally().accepted(), accepted);
    for (name, _) in kinds {
        let series = format!(
            r#"nodescope_connectivity_checks_total{{node="node-a",network="ipv4",result="{name}"}}"#
        );
        assert_eq!(value(&scrape, &series), Some(12.0), "{series}");
    }
    assert_eq!(
        value(
            &scrape,
            r#"nodescope_connectivity_addresses_seen_total{node="node-a",network="ipv4",addr_version="addrv2",announcer="inbound"}"#
        ),
        Some(144.0)
    );
    assert_eq!(
        value(
            &scrape,
            r#"nodescope_connectivity_private_announced_total{node="node-a",network="ipv4"}"#
        ),
        Some(144.0),
        "loopback is private, checked only because of --allow-private"
    );
    assert_eq!(
        value(
            &scrape,
            r#"nodescope_connectivity_address_age_seconds_count{node="node-a",direction="past"}"#
        ),
        Some(144.0)
    );
    assert_promtool_clean(&scrape);
    for forbidden in ["127.10.", "Satoshi", "18444"] {
        assert!(!scrape.contains(forbidden), "{forbidden} in a label");
    }

    // One CSV row per result.
    let rows = std::fs::read_to_string(csv.path()).unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines.len(), 73, "{rows}");
    assert!(lines[0].starts_with("time_ns,node,network,address,port,"));
    assert!(rows.contains(",reachable,") && rows.contains("/Satoshi:30.0.0/"));
    tool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_measured_at_the_peers() {
    let fakes = FakePeers::spawn(
        (0..8).map(|i| (loopback(200 + i), Behaviour::bitcoin(Magic::REGTEST))),
        0,
    )
    .unwrap();
    // 120 a minute: starts 500 ms apart, whatever the concurrency.
    let mut tool = Tool::start(&[
        "--allow-private",
        "--max-checks-per-minute",
        "120",
        "--concurrency",
        "32",
    ])
    .await;
    tool.announce_all(fakes.addrs().into_iter().map(at).collect())
        .await;
    tool.wait_results(8, Duration::from_secs(20)).await;
    let accepts = fakes.tally().accepts();
    assert_eq!(accepts.len(), 8);
    let span = *accepts.last().unwrap() - accepts[0];
    assert!(
        span >= Duration::from_millis(3300),
        "8 starts 500 ms apart took {span:?}"
    );
    let in_a_second = fakes.tally().max_accepts_in(Duration::from_secs(1));
    assert!(
        in_a_second <= 3,
        "{in_a_second} connections within one second at 2/s"
    );
    tool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tor_and_i2p_names_go_through_the_proxy_unresolved() {
    let fakes = FakePeers::spawn(
        [
            (loopback(300), Behaviour::bitcoin(Magic::REGTEST)),
            (loopback(301), Behaviour::bitcoin(Magic::REGTEST)),
        ],
        0,
    )
    .unwrap();
    let onion = format!(
        "{}.onion",
        &"abcdefghijklmnopqrstuvwxyz234567".repeat(2)[..56]
    );
    let i2p = format!(
        "{}.b32.i2p",
        "ukeu3k5oycgaauneqgtnvselmt4yemvoilkln7jpvamvfx7dnkdq"
    );
    let addrs = fakes.addrs();
    let proxy = Socks5Proxy::spawn(HashMap::from([
        (onion.clone(), addrs[0]),
        (i2p.clone(), addrs[1]),
    ]))
    .unwrap();
    let proxy_addr = proxy.addr().to_string();
    let mut tool = Tool::start(&args(&[
        "--tor-proxy",
        &proxy_addr,
        "--i2p-proxy",
        &proxy_addr,
    ]))
    .await;
    tool.announce_all(vec![
        named(AddrNetwork::Torv3, &onion, 8333),
        named(AddrNetwork::I2p, &i2p, 0),
    ])
    .await;
    let results = tool.wait_results(2, Duration::from_secs(10)).await;
    for check in &results {
        assert_eq!(label(check.result), "reachable", "{}", check.detail);
        assert_eq!(check.proxy, proxy_addr);
    }
    let mut requests = proxy.requests();
    requests.sort_by_key(|r| format!("{r:?}"));
    let mut want = vec![
        SocksTarget::Domain(onion, 8333),
        SocksTarget::Domain(i2p, 0),
    ];
    want.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(requests, want, "names sent unresolved (ATYP 3)");
    tool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_without_a_way_are_unreachable_never_dropped() {
    let mut tool = Tool::start(FAST).await;
    let onion = format!("{}.onion", "a".repeat(56));
    let i2p = format!("{}.b32.i2p", "b".repeat(52));
    let torv2 = format!("{}.onion", "c".repeat(16));
    tool.announce_all(vec![
        named(AddrNetwork::Torv3, &onion, 8333),
        named(AddrNetwork::I2p, &i2p, 0),
        named(AddrNetwork::Torv2, &torv2, 8333),
    ])
    .await;
    let results = tool.wait_results(3, Duration::from_secs(10)).await;
    for check in &results {
        assert_eq!(label(check.result), "unreachable_network");
        assert!(check.connect_ns == 0 && check.proxy.is_empty());
    }
    let details: Vec<&str> = results.iter().map(|c| c.detail.as_str()).collect();
    assert!(
        details.iter().any(|d| d.contains("--tor-proxy")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("--i2p-proxy")),
        "{details:?}"
    );
    tool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_never_dialled_without_allow_private() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let v6 = tokio::net::TcpListener::bind("[::1]:0").await.ok();
    let mut tool = Tool::start(&["--max-checks-per-minute", "60000"]).await;
    let mut announced = vec![at(SocketAddr::from(([127, 0, 0, 1], port)))];
    if let Some(v6) = &v6 {
        announced.push(at(v6.local_addr().unwrap()));
    }
    for private in [
        "10.1.2.3",
        "192.168.1.1",
        "169.254.0.9",
        "224.0.0.1",
        "198.51.100.7",
    ] {
        announced.push(at(SocketAddr::new(private.parse().unwrap(), 8333)));
    }
    let count = announced.len() as f64;
    tool.announce_all(announced).await;
    let scrape = tool
        .wait_metric(
            r#"nodescope_connectivity_addresses_skipped_total{node="node-a",network="ipv4",reason="private"}"#,
            6.0,
        )
        .await;
    let private_v4 = value(
        &scrape,
        r#"nodescope_connectivity_private_announced_total{node="node-a",network="ipv4"}"#,
    );
    let private_v6 = value(
        &scrape,
        r#"nodescope_connectivity_private_announced_total{node="node-a",network="ipv6"}"#,
    );
    assert_eq!(private_v4.unwrap_or(0.0) + private_v6.unwrap_or(0.0), count);
    // Nothing connected, and nothing is waiting to.
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(accepted.is_err(), "a private address was dialled");
    assert_eq!(
        value(&scrape, "nodescope_connectivity_queue_depth"),
        Some(0.0)
    );
    assert_eq!(
        value(&scrape, "nodescope_connectivity_in_flight"),
        Some(0.0)
    );
    assert!(tool.results().is_empty());
    tool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_kills_the_tool() {
    let fakes = FakePeers::spawn([(loopback(400), Behaviour::bitcoin(Magic::REGTEST))], 0).unwrap();
    let mut tool = Tool::start(&args(&["--queue-size", "100", "--skip-low-ports"])).await;
    let from = peer(3, ConnectionType::OutboundFullRelay);

    // Not an event at all, on one of our subjects.
    tool.publisher
        .publish(
            "nodescope.node-a.net.message",
            b"\xff\xfe garbage".to_vec().into(),
        )
        .await
        .unwrap();
    // An addrv2 the extractor could not decode (unknown network id with a bad length): raw
    // bytes and a decode error, no body.
    let raw = nodescope_proto::p2p::decode_p2p(
        "addrv2",
        &[1, 0, 0, 0, 0, 0, 7, 200, 1, 2, 3],
        11,
        Default::default(),
    );
    assert!(!raw.decode_error.is_empty());
    tool.publish(
        nodescope_proto::event::Payload::InboundMessage(nodescope_proto::NetMessage {
            peer: Some(from.clone()),
            message: Some(raw),
        }),
        "regtest",
    )
    .await;
    // Unknown networks, oversized names, bad ports and CJDNS outside fc00::/8.
    let unknown = NetAddress {
        network: 0,
        network_id: 42,
        address_bytes: vec![9; 512],
        port: 8333,
        ..at(SocketAddr::from(([1, 1, 1, 1], 1)))
    };
    let huge = named(
        AddrNetwork::Torv3,
        &format!("{}.onion", "a".repeat(100_000)),
        8333,
    );
    let zero = at(SocketAddr::from(([8, 8, 8, 8], 0)));
    let low = at(SocketAddr::from(([8, 8, 4, 4], 25)));
    let big_port = NetAddress {
        port: 1 << 20,
        ..at(SocketAddr::from(([8, 8, 4, 4], 1)))
    };
    let cjdns = NetAddress {
        network: AddrNetwork::Cjdns as i32,
        network_id: 6,
        address: "2001:db8::1".into(),
        ..at(SocketAddr::from(([1, 1, 1, 1], 8333)))
    };
    tool.announce(
        from.clone(),
        vec![unknown, huge, zero, low, big_port, cjdns],
    )
    .await;
    // A duplicate flood: one address 5,000 times, in gossip-sized messages.
    let target = at(fakes.addrs()[0]);
    tool.announce_all(vec![target; 5_000]).await;
    // A getaddr answer (11 entries) is skipped without --getaddr-responses.
    tool.announce(
        from,
        (0..11)
            .map(|i| at(SocketAddr::from(([1, 0, 0, i], 8333))))
            .collect(),
    )
    .await;

    let scrape = tool
        .wait_metric(
            r#"nodescope_connectivity_addresses_skipped_total{node="node-a",network="ipv4",reason="getaddr_response"}"#,
            11.0,
        )
        .await;
    assert!(tool.running());
    assert_eq!(tool.get("/healthz").await.0, 200);
    let skipped = |network: &str, reason: &str| {
        value(
            &scrape,
            &format!(
                r#"nodescope_connectivity_addresses_skipped_total{{node="node-a",network="{network}",reason="{reason}"}}"#
            ),
        )
    };
    assert_eq!(skipped("unknown", "unknown_network"), Some(1.0));
    assert_eq!(skipped("torv3", "bad_address"), Some(1.0));
    assert_eq!(skipped("ipv4", "port_zero"), Some(1.0));
    assert_eq!(skipped("ipv4", "low_port"), Some(1.0));
    assert_eq!(skipped("ipv4", "bad_address"), Some(1.0));
    assert_eq!(skipped("cjdns", "bad_address"), Some(1.0));
    assert_eq!(
        value(
            &scrape,
            r#"nodescope_connectivity_undecodable_total{node="node-a"}"#
        ),
        Some(2.0),
        "the garbage message and the undecodable addrv2"
    );
    // The flood: one check; every repeat counted as a duplicate (while pending) or cached.
    let results = tool.wait_results(1, Duration::from_secs(10)).await;
    let scrape = tool
        .wait_metric(r#"nodescope_connectivity_checks_total{node="node-a",network="ipv4",result="reachable"}"#, 1.0)
        .await;
    let repeats = ["duplicates", "cached"]
        .iter()
        .map(|f| {
            value(
                &scrape,
                &format!(r#"nodescope_connectivity_{f}_total{{node="node-a",network="ipv4"}}"#),
            )
            .unwrap_or(0.0)
        })
        .sum::<f64>();
    assert_eq!(repeats, 4_999.0);
    assert_eq!(results.len(), 1);
    assert_eq!(fakes.tally().accepted(), 1);
    tool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getaddr_answers_count_with_the_flag() {
    let fakes = FakePeers::spawn(
        (0..11).map(|i| (loopback(500 + i), Behaviour::bitcoin(Magic::REGTEST))),
        0,
    )
    .unwrap();
    let mut tool = Tool::start(&args(&["--getaddr-responses"])).await;
    let from = peer(4, ConnectionType::OutboundFullRelay);
    let getaddr = common::message(
        false,
        "getaddr",
        Some(Body::Getaddr(P2pEmpty {})),
        from.clone(),
    );
    tool.publish(getaddr, "regtest").await;
    tool.announce(from, fakes.addrs().into_iter().map(at).collect())
        .await;
    let results = tool.wait_results(11, Duration::from_secs(10)).await;
    assert!(results
        .iter()
        .all(|c| c.getaddr_response && label(c.result) == "reachable"));
    let scrape = tool.scrape().await;
    assert_eq!(
        value(
            &scrape,
            r#"nodescope_connectivity_addresses_seen_total{node="node-a",network="ipv4",addr_version="addrv2",announcer="outbound_full_relay"}"#
        ),
        Some(11.0)
    );
    tool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_bitcoind_is_reachable_with_its_user_agent_and_height() {
    use nodescope_regtest::{Node, NodeConfig};
    let node = tokio::task::spawn_blocking(|| {
        let node = Node::start(NodeConfig::new().v2transport(true)).expect("bitcoind starts");
        node.generate(7).expect("mine");
        node
    })
    .await
    .unwrap();
    let p2p = node.p2p_addr();
    let mut tool = Tool::start(&[
        "--allow-private",
        "--try-v2",
        "--max-checks-per-minute",
        "60000",
    ])
    .await;
    tool.announce_all(vec![at(p2p)]).await;
    let results = tool.wait_results(1, Duration::from_secs(20)).await;
    let check = &results[0];
    assert_eq!(label(check.result), "reachable", "{}", check.detail);
    let version = check.version.as_ref().unwrap();
    assert_eq!(version.user_agent, "/Satoshi:30.0.0/");
    assert_eq!(version.start_height, 7);
    assert_eq!(version.version, 70016);
    assert!(
        version.service_names.contains(&"p2p_v2".to_string()),
        "{:?}",
        version.service_names
    );
    assert!(check.verack);
    assert_eq!(
        V2Support::try_from(check.v2).unwrap(),
        V2Support::Supported,
        "{}",
        check.detail
    );
    tool.stop().await;
    drop(node);
}
