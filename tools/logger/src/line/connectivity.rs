//! The `connectivity_check` line: the check of an address a peer announced to the node, the
//! address itself, and what the check saw.

use std::fmt::Write as _;

use nodescope_proto::json::hex;
use nodescope_proto::{AddrNetwork, ConnectivityCheck, ConnectivityResult, NetAddress, V2Support};

use super::{human_seconds, peer, Token};

/// `result=… address=… network=…`, who announced it and how, then what the check saw. The
/// address, user agent and detail come from peers or a peer's answer: quoted (escaped) whenever
/// they could break the line or fake a field.
pub(super) fn connectivity_check(line: &mut String, c: &ConnectivityCheck) {
    let result =
        ConnectivityResult::try_from(c.result).map_or("unknown", ConnectivityResult::label);
    let _ = write!(line, " result={result}");
    if let Some(address) = &c.address {
        net_address(line, address);
    }
    if !c.addr_version.is_empty() {
        let _ = write!(line, " msg={}", Token(&c.addr_version));
    }
    peer(line, c.announced_by.as_ref());
    if c.getaddr_response {
        line.push_str(" getaddr_response");
    }
    if c.address.as_ref().is_some_and(|a| a.time != 0) {
        let _ = write!(line, " age={}", human_seconds(c.timestamp_age_s));
    }
    if !c.proxy.is_empty() {
        let _ = write!(line, " proxy={}", Token(&c.proxy));
    }
    if !c.checked_chain.is_empty() {
        let _ = write!(line, " chain={}", Token(&c.checked_chain));
    }
    if c.connect_ns > 0 {
        let _ = write!(line, " connect={:.3}ms", c.connect_ns as f64 / 1e6);
    }
    if c.handshake_ns > 0 {
        let _ = write!(line, " handshake={:.3}ms", c.handshake_ns as f64 / 1e6);
    }
    if let Some(v) = &c.version {
        let _ = write!(
            line,
            " version={} user_agent={:?} start_height={} services={}",
            v.version,
            v.user_agent,
            v.start_height,
            v.service_names.join(",")
        );
    }
    if c.verack {
        line.push_str(" verack");
    }
    match V2Support::try_from(c.v2) {
        Ok(V2Support::NotTried) => {}
        v2 => {
            let _ = write!(line, " v2={}", v2.map_or("unknown", V2Support::label));
        }
    }
    if !c.detail.is_empty() {
        let _ = write!(line, " detail={:?}", c.detail);
    }
}

/// ` address=host:port network=… announced_services=…`; an address of a network nodescope does
/// not know is shown as its bytes in hex.
fn net_address(line: &mut String, a: &NetAddress) {
    let network = AddrNetwork::try_from(a.network).map_or("unknown", AddrNetwork::label);
    let host = match (a.address.is_empty(), a.address_bytes.is_empty()) {
        (false, _) => a.address.clone(),
        (true, false) => hex(&a.address_bytes),
        (true, true) => "?".to_string(),
    };
    // IPv6 and CJDNS addresses hold colons: bracketed, as in `[2001:db8::1]:8333`.
    let address = if host.contains(':') {
        format!("[{host}]:{}", a.port)
    } else {
        format!("{host}:{}", a.port)
    };
    let _ = write!(line, " address={} network={network}", Token(&address));
    if a.network == AddrNetwork::Unknown as i32 && a.network_id != 0 {
        let _ = write!(line, " network_id={}", a.network_id);
    }
    if !a.service_names.is_empty() {
        let _ = write!(line, " announced_services={}", a.service_names.join(","));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::test_support::event;
    use crate::line::text;
    use nodescope_proto::event::Payload;
    use nodescope_proto::{Category, ConnectionType, P2pVersion, Peer};

    #[test]
    fn connectivity_lines_say_what_was_checked_and_how_it_ended() {
        let reachable = event(Payload::ConnectivityCheck(ConnectivityCheck {
            address: Some(NetAddress {
                time: 1_763_790_000,
                service_names: vec!["network".into(), "witness".into()],
                network: AddrNetwork::Ipv4 as i32,
                network_id: 1,
                address: "1.2.3.4".into(),
                port: 8333,
                ..NetAddress::default()
            }),
            addr_version: "addrv2".into(),
            announced_by: Some(Peer {
                id: 7,
                addr: "203.0.113.7:8333".into(),
                conn_type: ConnectionType::Inbound as i32,
                conn_type_other: String::new(),
            }),
            timestamp_age_s: 3 * 3600 + 5 * 60,
            result: ConnectivityResult::Reachable as i32,
            checked_chain: "main".into(),
            connect_ns: 12_000_000,
            handshake_ns: 40_500_000,
            version: Some(P2pVersion {
                version: 70016,
                service_names: vec!["network".into(), "witness".into()],
                user_agent: "/Satoshi:30.0.0/".into(),
                start_height: 912_345,
                ..P2pVersion::default()
            }),
            verack: true,
            v2: V2Support::Supported as i32,
            ..ConnectivityCheck::default()
        }));
        assert_eq!(
            text(&reachable, Category::Connectivity),
            "2025-11-22T08:26:40.123456Z node-a connectivity connectivity_check result=reachable address=1.2.3.4:8333 network=ipv4 announced_services=network,witness msg=addrv2 peer=7 addr=203.0.113.7:8333 conn=inbound age=3h5m chain=main connect=12.000ms handshake=40.500ms version=70016 user_agent=\"/Satoshi:30.0.0/\" start_height=912345 services=network,witness verack v2=supported"
        );

        let onion = format!("{}.onion", "a".repeat(56));
        let refused = event(Payload::ConnectivityCheck(ConnectivityCheck {
            address: Some(NetAddress {
                network: AddrNetwork::Torv3 as i32,
                network_id: 4,
                address: onion.clone(),
                port: 8333,
                ..NetAddress::default()
            }),
            addr_version: "addrv2".into(),
            getaddr_response: true,
            result: ConnectivityResult::Refused as i32,
            detail: "connection refused".into(),
            proxy: "127.0.0.1:9050".into(),
            connect_ns: 0,
            ..ConnectivityCheck::default()
        }));
        assert!(text(&refused, Category::Connectivity).ends_with(&format!(
            "connectivity_check result=refused address={onion}:8333 network=torv3 msg=addrv2 getaddr_response proxy=127.0.0.1:9050 detail=\"connection refused\""
        )));

        let ipv6_future = event(Payload::ConnectivityCheck(ConnectivityCheck {
            address: Some(NetAddress {
                time: 1,
                network: AddrNetwork::Ipv6 as i32,
                address: "2001:db8::1".into(),
                port: 18444,
                ..NetAddress::default()
            }),
            timestamp_age_s: -90,
            result: ConnectivityResult::Timeout as i32,
            v2: V2Support::Unknown as i32,
            ..ConnectivityCheck::default()
        }));
        assert!(text(&ipv6_future, Category::Connectivity).ends_with(
            "result=timeout address=[2001:db8::1]:18444 network=ipv6 age=-1m30s v2=unknown"
        ));
    }

    /// What a peer sent (its user agent, an unknown network's address, the check's account of
    /// its answer) cannot break the line or forge fields.
    #[test]
    fn connectivity_lines_escape_what_peers_sent() {
        let hostile = event(Payload::ConnectivityCheck(ConnectivityCheck {
            address: Some(NetAddress {
                network: AddrNetwork::Unknown as i32,
                network_id: 42,
                address_bytes: vec![0xde, 0xad],
                port: 1,
                ..NetAddress::default()
            }),
            result: 99,
            detail: "bad\nmagic \"x\" result=reachable".into(),
            proxy: "evil proxy".into(),
            version: Some(P2pVersion {
                user_agent: "/x/\n2025 node-b fake\u{1b}[31m".into(),
                ..P2pVersion::default()
            }),
            v2: 17,
            ..ConnectivityCheck::default()
        }));
        let line = text(&hostile, Category::Connectivity);
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
        assert!(line.contains(" result=unknown address=dead:1"), "{line}");
        assert!(line.contains(" network=unknown network_id=42"), "{line}");
        assert!(line.contains(" proxy=\"evil proxy\""), "{line}");
        assert!(
            line.contains(r#" user_agent="/x/\n2025 node-b fake\u{1b}[31m""#),
            "{line}"
        );
        assert!(line.contains(" v2=unknown"), "{line}");
        assert!(
            line.ends_with(r#" detail="bad\nmagic \"x\" result=reachable""#),
            "{line}"
        );
    }
}
