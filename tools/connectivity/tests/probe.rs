//! The probe against real sockets on loopback: every fake behaviour, the SOCKS5 paths, BIP324,
//! and a real Bitcoin Core regtest node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitcoin::p2p::Magic;
use nodescope_connectivity::fake::{
    loopback, Behaviour, FakePeers, ProxyMode, Refusing, Socks5Proxy, SocksTarget,
};
use nodescope_connectivity::probe::{probe, Dial, ProbeConfig, ProbeOutcome};
use nodescope_proto::{ConnectivityResult, V2Support};

const ONION: &str = "vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion";
const I2P: &str = "ukeu3k5oycgaauneqgtnvselmt4yemvoilkln7jpvamvfx7dnkdq.b32.i2p";

fn config() -> ProbeConfig {
    ProbeConfig {
        magic: Magic::REGTEST,
        connect_timeout: Duration::from_secs(5),
        proxy_connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        try_v2: false,
        user_agent: "/nodescope-connectivity-check:0.1.0/".to_string(),
    }
}

/// One fake of each behaviour given, on 127.10.0.1, 127.10.0.2, ...
fn fakes(behaviours: impl IntoIterator<Item = Behaviour>) -> FakePeers {
    let numbered = behaviours
        .into_iter()
        .enumerate()
        .map(|(i, b)| (loopback(i as u32), b));
    FakePeers::spawn(numbered, 0).unwrap()
}

async fn check_one(behaviour: Behaviour, config: &ProbeConfig) -> ProbeOutcome {
    let peers = fakes([behaviour]);
    probe(&Dial::Direct(peers.addrs()[0]), config).await
}

fn assert_result(outcome: &ProbeOutcome, result: ConnectivityResult, detail: &str) {
    assert_eq!(outcome.result, result, "{outcome:?}");
    assert!(
        outcome.detail.contains(detail),
        "detail {:?} lacks {detail:?}",
        outcome.detail
    );
}

fn socks(proxy: SocketAddr, host: &str) -> Dial {
    Dial::Socks5 {
        proxy,
        host: host.to_string(),
        port: 8333,
    }
}

#[tokio::test]
async fn a_bitcoin_node_is_reachable_with_its_version() {
    let behaviour = Behaviour::Bitcoin {
        magic: Magic::REGTEST,
        version: 70015,
        services: 0x409,
        user_agent: "/Satoshi:29.1.0/".to_string(),
        start_height: 123,
        send_verack: true,
    };
    let outcome = check_one(behaviour, &config()).await;
    assert_result(&outcome, ConnectivityResult::Reachable, "/Satoshi:29.1.0/");
    let version = outcome.version.as_ref().unwrap();
    assert_eq!(
        (version.version, version.services, version.start_height),
        (70015, 0x409, 123)
    );
    assert_eq!(version.user_agent, "/Satoshi:29.1.0/");
    assert!(outcome.verack);
    assert!(outcome.connect.is_some() && outcome.handshake.is_some());
    assert_eq!(outcome.v2, V2Support::NotTried);
}

#[tokio::test]
async fn a_node_without_verack_is_reachable_without_verack() {
    let mut behaviour = Behaviour::bitcoin(Magic::REGTEST);
    if let Behaviour::Bitcoin { send_verack, .. } = &mut behaviour {
        *send_verack = false;
    }
    let config = ProbeConfig {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    };
    let outcome = check_one(behaviour, &config).await;
    assert_result(
        &outcome,
        ConnectivityResult::Reachable,
        "no verack within 0.3 s",
    );
    assert!(!outcome.verack);
}

#[tokio::test]
async fn nothing_listening_is_refused() {
    let refusing = Refusing::new().unwrap();
    let outcome = probe(&Dial::Direct(refusing.addr()), &config()).await;
    assert_result(&outcome, ConnectivityResult::Refused, "connection refused");
    assert_eq!(outcome.connect, None);
}

#[tokio::test]
async fn a_black_hole_times_out_within_the_handshake_timeout() {
    let config = ProbeConfig {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    };
    let start = Instant::now();
    let outcome = check_one(Behaviour::BlackHole, &config).await;
    assert_result(
        &outcome,
        ConnectivityResult::Timeout,
        "no version within 0.3 s",
    );
    assert!(outcome.connect.is_some());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_peer_that_stalls_mid_header_times_out_and_says_so() {
    let config = ProbeConfig {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    };
    let outcome = check_one(Behaviour::Stall(vec![0xfa, 0xbf, 0xb5]), &config).await;
    assert_result(
        &outcome,
        ConnectivityResult::Timeout,
        "sent 3 bytes then stalled",
    );
}

#[tokio::test]
async fn closing_at_once_is_a_reset() {
    let outcome = check_one(Behaviour::CloseAtOnce, &config()).await;
    assert_result(
        &outcome,
        ConnectivityResult::Reset,
        "closed by the peer before sending version",
    );
}

#[tokio::test]
async fn another_networks_node_is_wrong_magic() {
    let behaviour = Behaviour::WrongMagic {
        magic: Magic::BITCOIN,
    };
    let outcome = check_one(behaviour, &config()).await;
    assert_result(
        &outcome,
        ConnectivityResult::WrongMagic,
        "magic f9beb4d9 (main), expected fabfb5da (regtest)",
    );
    let unknown = Behaviour::WrongMagic {
        magic: Magic::from_bytes([1, 2, 3, 4]),
    };
    let outcome = check_one(unknown, &config()).await;
    assert_result(
        &outcome,
        ConnectivityResult::WrongMagic,
        "01020304 (unknown network)",
    );
}

#[tokio::test]
async fn garbage_is_not_bitcoin() {
    let http = Behaviour::Garbage(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec());
    let outcome = check_one(http, &config()).await;
    assert_result(&outcome, ConnectivityResult::NotBitcoin, "485454502f312e31");

    let burst = Behaviour::Garbage(vec![1, 2, 3, 4, 5]);
    let outcome = check_one(burst, &config()).await;
    assert_result(&outcome, ConnectivityResult::NotBitcoin, "sent 5 bytes");
    assert!(outcome.detail.contains("0102030405"), "{}", outcome.detail);

    let ping = nodescope_proto::p2p::wire::frame(Magic::REGTEST, "ping", &[0; 8]);
    let outcome = check_one(Behaviour::Garbage(ping), &config()).await;
    assert_result(
        &outcome,
        ConnectivityResult::NotBitcoin,
        "first message was `ping`, not version",
    );
}

#[tokio::test]
async fn onion_and_i2p_names_go_through_the_proxy_unresolved() {
    let peers = fakes([
        Behaviour::bitcoin(Magic::REGTEST),
        Behaviour::bitcoin(Magic::REGTEST),
    ]);
    let map = HashMap::from([
        (ONION.to_string(), peers.addrs()[0]),
        (I2P.to_string(), peers.addrs()[1]),
    ]);
    let proxy = Socks5Proxy::spawn(map).unwrap();
    for name in [ONION, I2P] {
        let outcome = probe(&socks(proxy.addr(), name), &config()).await;
        assert_result(&outcome, ConnectivityResult::Reachable, "/Satoshi:30.0.0/");
        assert!(outcome.verack);
    }
    assert_eq!(
        proxy.requests(),
        vec![
            SocksTarget::Domain(ONION.to_string(), 8333),
            SocksTarget::Domain(I2P.to_string(), 8333),
        ]
    );
    assert!(peers.peers().iter().all(|p| p.accepted() == 1));
}

#[tokio::test]
async fn socks5_replies_are_mapped() {
    use ConnectivityResult::*;
    let cases = [
        (5, Refused, "SOCKS5 reply 5 (connection refused)"),
        (4, Timeout, "SOCKS5 reply 4 (host unreachable)"),
        (6, Timeout, "SOCKS5 reply 6 (TTL expired)"),
        (
            3,
            UnreachableNetwork,
            "SOCKS5 reply 3 (network unreachable)",
        ),
        (1, ProxyError, "SOCKS5 reply 1 (general failure)"),
        (2, ProxyError, "SOCKS5 reply 2"),
        (0xf0, Timeout, "SOCKS5 reply 0xf0"),
        (0xf6, ProxyError, "SOCKS5 reply 0xf6"),
        (0xf4, Refused, "SOCKS5 reply 0xf4"),
    ];
    for (code, result, detail) in cases {
        let proxy = Socks5Proxy::spawn_mode(HashMap::new(), ProxyMode::Reply(code)).unwrap();
        let outcome = probe(&socks(proxy.addr(), ONION), &config()).await;
        assert_result(&outcome, result, detail);
        assert!(outcome.detail.ends_with(&format!("from {}", proxy.addr())));
    }
    // An unknown name gets the splicing proxy's "host unreachable".
    let proxy = Socks5Proxy::spawn(HashMap::new()).unwrap();
    let outcome = probe(&socks(proxy.addr(), ONION), &config()).await;
    assert_result(&outcome, Timeout, "SOCKS5 reply 4 (host unreachable)");
}

#[tokio::test]
async fn broken_proxies_are_proxy_errors() {
    let nothing = Refusing::new().unwrap();
    let outcome = probe(&socks(nothing.addr(), ONION), &config()).await;
    assert_result(
        &outcome,
        ConnectivityResult::ProxyError,
        &nothing.addr().to_string(),
    );
    for (mode, detail) in [
        (ProxyMode::NotSocks, "is not a SOCKS5 proxy"),
        (ProxyMode::RequireAuth, "requires authentication"),
    ] {
        let proxy = Socks5Proxy::spawn_mode(HashMap::new(), mode).unwrap();
        let outcome = probe(&socks(proxy.addr(), ONION), &config()).await;
        assert_result(&outcome, ConnectivityResult::ProxyError, detail);
        assert!(outcome.detail.contains(&proxy.addr().to_string()));
    }
}

#[tokio::test]
async fn a_v1_only_node_does_not_support_v2() {
    let config = ProbeConfig {
        try_v2: true,
        ..config()
    };
    let peers = fakes([Behaviour::bitcoin(Magic::REGTEST)]);
    let outcome = probe(&Dial::Direct(peers.addrs()[0]), &config).await;
    assert_eq!(outcome.result, ConnectivityResult::Reachable, "{outcome:?}");
    assert_eq!(outcome.v2, V2Support::NotSupported, "{outcome:?}");
    assert_eq!(peers.peers()[0].accepted(), 2);
}

/// Many fakes probed at once: each is classified, connected to once, and every connection is
/// closed by the probe afterwards (the tally goes back to zero open).
#[tokio::test]
async fn many_fakes_at_once_are_each_probed_once_and_left_closed() {
    let behaviours = (0..60).map(|i| match i % 3 {
        0 => Behaviour::bitcoin(Magic::REGTEST),
        1 => Behaviour::Refuse,
        _ => Behaviour::CloseAtOnce,
    });
    let peers = fakes(behaviours);
    let config = config();
    let probes = peers.addrs().into_iter().map(|addr| {
        let config = config.clone();
        tokio::spawn(async move { probe(&Dial::Direct(addr), &config).await })
    });
    let mut outcomes = Vec::new();
    for handle in probes.collect::<Vec<_>>() {
        outcomes.push(handle.await.unwrap());
    }
    for (i, (peer, outcome)) in peers.peers().iter().zip(&outcomes).enumerate() {
        let expected = [
            ConnectivityResult::Reachable,
            ConnectivityResult::Refused,
            ConnectivityResult::Reset,
        ][i % 3];
        assert_eq!(outcome.result, expected, "{}: {outcome:?}", peer.addr);
        let accepts = u64::from(expected != ConnectivityResult::Refused);
        assert_eq!(peer.accepted(), accepts, "{}", peer.addr);
    }
    let tally = peers.tally();
    assert_eq!(tally.accepted(), 40);
    assert!((1..=40).contains(&tally.max_open()), "{}", tally.max_open());
    assert_eq!(tally.max_accepts_in(Duration::from_secs(60)), 40);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tally.open() > 0 {
        assert!(Instant::now() < deadline, "{} still open", tally.open());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Bitcoin Core 30 with v2transport: reachable over v1 and BIP324 supported.
#[test]
fn a_real_node_is_reachable_and_speaks_v2() {
    let node =
        nodescope_regtest::Node::start(nodescope_regtest::NodeConfig::new().v2transport(true))
            .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = ProbeConfig {
        try_v2: true,
        ..config()
    };
    let outcome = runtime.block_on(probe(&Dial::Direct(node.p2p_addr()), &config));
    assert_result(&outcome, ConnectivityResult::Reachable, "/Satoshi:30.0.0/");
    assert!(outcome.verack, "{outcome:?}");
    assert_eq!(outcome.v2, V2Support::Supported, "{outcome:?}");
}
