//! What an announced address is, and how (whether) to reach it: its network, the host and
//! port to dial directly or through a proxy, or why it is not dialled.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use nodescope_proto::{AddrNetwork, NetAddress};

use crate::probe::Dial;

/// The networks the tool reports on: a closed set, used as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Net {
    Ipv4,
    Ipv6,
    Torv2,
    Torv3,
    I2p,
    Cjdns,
    Unknown,
}

impl Net {
    pub const ALL: [Net; 7] = [
        Net::Ipv4,
        Net::Ipv6,
        Net::Torv2,
        Net::Torv3,
        Net::I2p,
        Net::Cjdns,
        Net::Unknown,
    ];

    pub fn of(address: &NetAddress) -> Net {
        match AddrNetwork::try_from(address.network) {
            Ok(AddrNetwork::Ipv4) => Net::Ipv4,
            Ok(AddrNetwork::Ipv6) => Net::Ipv6,
            Ok(AddrNetwork::Torv2) => Net::Torv2,
            Ok(AddrNetwork::Torv3) => Net::Torv3,
            Ok(AddrNetwork::I2p) => Net::I2p,
            Ok(AddrNetwork::Cjdns) => Net::Cjdns,
            Ok(AddrNetwork::Unknown) | Err(_) => Net::Unknown,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Net::Ipv4 => "ipv4",
            Net::Ipv6 => "ipv6",
            Net::Torv2 => "torv2",
            Net::Torv3 => "torv3",
            Net::I2p => "i2p",
            Net::Cjdns => "cjdns",
            Net::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// An address to check, keyed for the cache and the queue: the same host and port announced
/// again (by any peer, to any node) is the same target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub net: Net,
    pub host: Host,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    /// A Tor or I2P name, passed to the proxy unresolved.
    Name(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(ip) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// Why an announced address is not checked at all (counted, never silent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// A network id nodescope does not know (BIP155 allows new ones).
    UnknownNetwork,
    /// The address does not fit its network (a CJDNS address outside fc00::/8, a name of the
    /// wrong length, an unparsable address).
    BadAddress,
    /// Port 0 outside I2P (where it is the rule).
    PortZero,
    /// Loopback, private, link-local, multicast, documentation or reserved, without
    /// `--allow-private`.
    Private,
    /// A port below 1024 other than 8333, with `--skip-low-ports`.
    LowPort,
}

impl Skip {
    pub const ALL: [Skip; 5] = [
        Skip::UnknownNetwork,
        Skip::BadAddress,
        Skip::PortZero,
        Skip::Private,
        Skip::LowPort,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Skip::UnknownNetwork => "unknown_network",
            Skip::BadAddress => "bad_address",
            Skip::PortZero => "port_zero",
            Skip::Private => "private",
            Skip::LowPort => "low_port",
        }
    }
}

/// What the operator allows and provides.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow_private: bool,
    pub skip_low_ports: bool,
    pub tor_proxy: Option<SocketAddr>,
    pub i2p_proxy: Option<SocketAddr>,
}

/// The outcome of looking at one announced address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The address lies in a private or reserved range (counted as `private_announced` even
    /// when `--allow-private` lets it be checked).
    pub private: bool,
    pub verdict: Result<Target, Skip>,
}

/// The announced address as a target, or why it is not one.
pub fn classify(address: &NetAddress, policy: &Policy) -> Classified {
    let net = Net::of(address);
    let Ok(port) = u16::try_from(address.port) else {
        return skipped(false, Skip::BadAddress);
    };
    let host = match net {
        Net::Unknown => return skipped(false, Skip::UnknownNetwork),
        Net::Ipv4 | Net::Ipv6 | Net::Cjdns => match address.address.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => return skipped(false, Skip::BadAddress),
        },
        Net::Torv2 | Net::Torv3 | Net::I2p => {
            if !valid_name(net, &address.address) {
                return skipped(false, Skip::BadAddress);
            }
            Host::Name(address.address.clone())
        }
    };
    if net == Net::Cjdns && !matches!(host, Host::Ip(IpAddr::V6(ip)) if ip.octets()[0] == 0xfc) {
        return skipped(false, Skip::BadAddress);
    }
    let private = match &host {
        Host::Ip(ip) if net != Net::Cjdns => is_private(ip),
        _ => false,
    };
    if private && !policy.allow_private {
        return skipped(true, Skip::Private);
    }
    // I2P has no ports: Bitcoin Core announces 0 for every I2P address.
    if port == 0 && net != Net::I2p {
        return skipped(private, Skip::PortZero);
    }
    if policy.skip_low_ports && port < 1024 && port != 8333 && net != Net::I2p {
        return skipped(private, Skip::LowPort);
    }
    Classified {
        private,
        verdict: Ok(Target { net, host, port }),
    }
}

fn skipped(private: bool, skip: Skip) -> Classified {
    Classified {
        private,
        verdict: Err(skip),
    }
}

/// A Tor or I2P name as the decoder writes them: base32 of the right length and suffix.
fn valid_name(net: Net, name: &str) -> bool {
    let (stem, len) = match net {
        Net::Torv2 => (name.strip_suffix(".onion"), 16),
        Net::Torv3 => (name.strip_suffix(".onion"), 56),
        Net::I2p => (name.strip_suffix(".b32.i2p"), 52),
        _ => (None, 0),
    };
    stem.is_some_and(|stem| {
        stem.len() == len
            && stem
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

impl Target {
    /// How to reach the target, or `None` when this host has no way to (no proxy for its
    /// network, or Tor v2, which Tor no longer serves).
    pub fn dial(&self, policy: &Policy) -> Option<Dial> {
        let proxy = match (self.net, &self.host) {
            (_, Host::Ip(ip)) => return Some(Dial::Direct(SocketAddr::new(*ip, self.port))),
            (Net::Torv3, Host::Name(_)) => policy.tor_proxy?,
            (Net::I2p, Host::Name(_)) => policy.i2p_proxy?,
            _ => return None,
        };
        let Host::Name(name) = &self.host else {
            return None;
        };
        Some(Dial::Socks5 {
            proxy,
            host: name.clone(),
            port: self.port,
        })
    }

    /// Why [`Target::dial`] found no way, for the published detail.
    pub fn unreachable_reason(&self) -> &'static str {
        match self.net {
            Net::Torv2 => "Tor v2 onion services no longer exist",
            Net::Torv3 => "no Tor proxy configured (--tor-proxy)",
            Net::I2p => "no I2P proxy configured (--i2p-proxy)",
            _ => "no way to reach this network",
        }
    }
}

/// Whether an address must not be dialled without `--allow-private`: loopback, private,
/// shared (CGNAT), link-local, multicast, documentation, benchmarking and reserved ranges
/// (RFC 6890 and its successors).
pub fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => private_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => private_v4(&v4),
            None => private_v6(ip),
        },
    }
}

const PRIVATE_V4: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10.0.0.0/8
    (0x6440_0000, 10), // 100.64.0.0/10 shared (CGNAT)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link-local
    (0xac10_0000, 12), // 172.16.0.0/12
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 documentation
    (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast (deprecated)
    (0xc0a8_0000, 16), // 192.168.0.0/16
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 documentation
    (0xcb00_7100, 24), // 203.0.113.0/24 documentation
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, and the broadcast address
];

const PRIVATE_V6: &[(u128, u8)] = &[
    (0, 96),                      // ::, ::1 and IPv4-compatible ::/96
    (0x0064_ff9b_0001 << 80, 48), // 64:ff9b:1::/48 local NAT64
    (0x0100 << 112, 64),          // 100::/64 discard
    (0x2001_0db8 << 96, 32),      // 2001:db8::/32 documentation
    (0x2001_0002 << 96, 48),      // 2001:2::/48 benchmarking
    (0x2001_0010 << 96, 28),      // 2001:10::/28 ORCHID
    (0x2001_0020 << 96, 28),      // 2001:20::/28 ORCHIDv2
    (0x3fff << 112, 20),          // 3fff::/20 documentation
    (0xfc00 << 112, 7),           // fc00::/7 unique local
    (0xfe80 << 112, 10),          // fe80::/10 link-local
    (0xfec0 << 112, 10),          // fec0::/10 site-local (deprecated)
    (0xff00 << 112, 8),           // ff00::/8 multicast
];

fn private_v4(ip: &Ipv4Addr) -> bool {
    let bits = u32::from(*ip);
    PRIVATE_V4
        .iter()
        .any(|&(net, len)| bits >> (32 - len) == net >> (32 - len))
}

fn private_v6(ip: &Ipv6Addr) -> bool {
    let bits = u128::from(*ip);
    PRIVATE_V6
        .iter()
        .any(|&(net, len)| bits >> (128 - len) == net >> (128 - len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(network: AddrNetwork, text: &str, port: u32) -> NetAddress {
        NetAddress {
            network: network as i32,
            address: text.to_string(),
            port,
            ..NetAddress::default()
        }
    }

    #[test]
    fn private_and_reserved_ranges_are_recognised() {
        for private in [
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "127.10.3.4",
            "169.254.1.1",
            "172.31.255.255",
            "192.0.2.7",
            "192.168.1.1",
            "198.19.0.1",
            "198.51.100.1",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "3fff::1",
        ] {
            assert!(is_private(&private.parse().unwrap()), "{private}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "172.32.0.1",
            "192.0.3.1",
            "2a01:4f8::1",
            "2001:4860::8888",
            "::ffff:1.2.3.4",
        ] {
            assert!(!is_private(&public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn addresses_are_classified_with_the_reason() {
        let policy = Policy::default();
        let verdict = |a: NetAddress| classify(&a, &policy).verdict;
        assert_eq!(
            verdict(address(AddrNetwork::Ipv4, "1.2.3.4", 8333)),
            Ok(Target {
                net: Net::Ipv4,
                host: Host::Ip("1.2.3.4".parse().unwrap()),
                port: 8333
            })
        );
        assert_eq!(
            classify(&address(AddrNetwork::Ipv4, "127.0.0.1", 8333), &policy),
            Classified {
                private: true,
                verdict: Err(Skip::Private)
            }
        );
        assert_eq!(
            verdict(address(AddrNetwork::Ipv4, "1.2.3.4", 0)),
            Err(Skip::PortZero)
        );
        assert_eq!(
            verdict(address(AddrNetwork::Ipv4, "1.2.3.4", 70_000)),
            Err(Skip::BadAddress)
        );
        assert_eq!(
            verdict(address(AddrNetwork::Unknown, "", 8333)),
            Err(Skip::UnknownNetwork)
        );
        assert_eq!(
            verdict(address(AddrNetwork::Cjdns, "2001:4860::1", 8333)),
            Err(Skip::BadAddress)
        );
        assert!(verdict(address(AddrNetwork::Cjdns, "fc00::1", 8333)).is_ok());
        let onion = format!("{}.onion", "a".repeat(56));
        assert!(verdict(address(AddrNetwork::Torv3, &onion, 8333)).is_ok());
        let long = format!("{}.onion", "a".repeat(5000));
        assert_eq!(
            verdict(address(AddrNetwork::Torv3, &long, 8333)),
            Err(Skip::BadAddress)
        );
        let i2p = format!("{}.b32.i2p", "b".repeat(52));
        assert!(verdict(address(AddrNetwork::I2p, &i2p, 0)).is_ok());

        let low = Policy {
            skip_low_ports: true,
            ..Policy::default()
        };
        let at = |port| classify(&address(AddrNetwork::Ipv4, "1.2.3.4", port), &low).verdict;
        assert_eq!(at(80), Err(Skip::LowPort));
        assert!(at(8333).is_ok() && at(1024).is_ok());
        let allow = Policy {
            allow_private: true,
            ..Policy::default()
        };
        let loopback = classify(&address(AddrNetwork::Ipv4, "127.0.0.1", 18444), &allow);
        assert!(loopback.private && loopback.verdict.is_ok());
    }

    #[test]
    fn names_go_to_their_proxy_and_unreachable_networks_have_no_dial() {
        let onion = Target {
            net: Net::Torv3,
            host: Host::Name(format!("{}.onion", "a".repeat(56))),
            port: 8333,
        };
        assert!(onion.dial(&Policy::default()).is_none());
        let tor: SocketAddr = "127.0.0.1:9050".parse().unwrap();
        let policy = Policy {
            tor_proxy: Some(tor),
            ..Policy::default()
        };
        assert!(matches!(onion.dial(&policy), Some(Dial::Socks5 { proxy, .. }) if proxy == tor));
        let v2 = Target {
            net: Net::Torv2,
            host: Host::Name(format!("{}.onion", "a".repeat(16))),
            port: 8333,
        };
        assert!(v2.dial(&policy).is_none());
    }
}
