//! A finished check as the published event and as a CSV row.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use nodescope_proto::{ConnectivityCheck, ConnectivityResult, V2Support};

use crate::intake::Announced;
use crate::probe::{Dial, ProbeOutcome};

/// The event payload of one check.
pub fn payload(
    announced: &Announced,
    dial: Option<&Dial>,
    outcome: &ProbeOutcome,
    chain: &str,
) -> ConnectivityCheck {
    ConnectivityCheck {
        address: Some(announced.address.clone()),
        addr_version: announced.addr_version.label().to_string(),
        announced_by: Some(announced.announced_by.clone()),
        getaddr_response: announced.getaddr_response,
        timestamp_age_s: announced.age_s().unwrap_or_default(),
        result: outcome.result as i32,
        detail: outcome.detail.clone(),
        proxy: match dial {
            Some(Dial::Socks5 { proxy, .. }) => proxy.to_string(),
            _ => String::new(),
        },
        checked_chain: chain.to_string(),
        connect_ns: outcome.connect.map_or(0, |d| d.as_nanos() as u64),
        handshake_ns: outcome.handshake.map_or(0, |d| d.as_nanos() as u64),
        version: outcome.version.clone(),
        verack: outcome.verack,
        v2: outcome.v2 as i32,
    }
}

/// The outcome of a target no check can reach.
pub fn unreachable(detail: &str) -> ProbeOutcome {
    ProbeOutcome {
        result: ConnectivityResult::UnreachableNetwork,
        detail: detail.to_string(),
        connect: None,
        handshake: None,
        version: None,
        verack: false,
        v2: V2Support::NotTried,
    }
}

const HEADER: [&str; 23] = [
    "time_ns",
    "node",
    "network",
    "address",
    "port",
    "addr_version",
    "announced_by_peer",
    "announced_by_conn_type",
    "getaddr_response",
    "timestamp_age_s",
    "result",
    "detail",
    "proxy",
    "chain",
    "connect_ms",
    "handshake_ms",
    "version",
    "services",
    "user_agent",
    "start_height",
    "relay",
    "verack",
    "v2",
];

/// `--csv`: one row per result, flushed as it is written so that a reader sees it at once.
pub struct Csv {
    writer: csv::Writer<BufWriter<File>>,
}

impl Csv {
    /// Creates (or truncates) `path` and writes the header.
    pub fn create(path: &Path) -> std::io::Result<Csv> {
        let file = File::create(path)?;
        let mut writer = csv::Writer::from_writer(BufWriter::new(file));
        writer.write_record(HEADER)?;
        writer.flush()?;
        Ok(Csv { writer })
    }

    pub fn write(
        &mut self,
        node: &str,
        time_ns: u64,
        check: &ConnectivityCheck,
    ) -> std::io::Result<()> {
        let address = check.address.clone().unwrap_or_default();
        let peer = check.announced_by.clone().unwrap_or_default();
        let version = check.version.clone().unwrap_or_default();
        let has_version = check.version.is_some();
        let ms = |ns: u64| {
            if ns == 0 {
                String::new()
            } else {
                format!("{:.3}", ns as f64 / 1e6)
            }
        };
        let when = |text: String| if has_version { text } else { String::new() };
        let network = nodescope_proto::AddrNetwork::try_from(address.network)
            .unwrap_or_default()
            .label();
        let result = ConnectivityResult::try_from(check.result)
            .unwrap_or_default()
            .label();
        let v2 = V2Support::try_from(check.v2).unwrap_or_default().label();
        self.writer.write_record([
            time_ns.to_string(),
            node.to_string(),
            network.to_string(),
            address.address,
            address.port.to_string(),
            check.addr_version.clone(),
            peer.id.to_string(),
            peer.conn_type_name().to_string(),
            check.getaddr_response.to_string(),
            check.timestamp_age_s.to_string(),
            result.to_string(),
            check.detail.clone(),
            check.proxy.clone(),
            check.checked_chain.clone(),
            ms(check.connect_ns),
            ms(check.handshake_ns),
            when(version.version.to_string()),
            when(version.services.to_string()),
            when(version.user_agent.clone()),
            when(version.start_height.to_string()),
            when(version.relay.to_string()),
            check.verack.to_string(),
            v2.to_string(),
        ])?;
        self.writer.flush()
    }
}
