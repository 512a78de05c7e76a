//! The page's peer's-eye view: the node as one of its own peers sees it, from `extractor p2p`'s
//! events — the extractor's connections with the node (open now, with transport, user agent and
//! since when; how the latest ended; the failed dials before the latest), its pings' round
//! trips (the last, and the median of the recent ones), what the node announces (inventory by
//! type, transactions announced against received, addresses by network, the latest block
//! announced with headers or cmpctblock, its fee filter) and the messages that were not what
//! they claimed. Counts and the latest of each, never a list that grows: open connections are
//! at most [`MAX_CONNECTIONS`], recent round trips [`RECENT_PINGS`], texts cut to
//! [`MAX_TEXT`](crate::summary::MAX_TEXT).

use std::collections::{BTreeMap, VecDeque};

use nodescope_proto::event::Payload;
use nodescope_proto::json::hex;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{
    AddrNetwork, Event, InventoryType, PeerConnection, PeerMessage, PeerState as ConnectionState,
};
use serde::Serialize;

use crate::summary::clip;

/// Open connections listed. `extractor p2p` keeps one or two per node; this bounds a stream
/// that connects without disconnecting.
pub const MAX_CONNECTIONS: usize = 16;
/// Round trips the median is taken over.
pub const RECENT_PINGS: usize = 32;

/// The networks addresses are counted under (BIP155's; ids nodescope does not know: `other`).
pub const ADDRESS_NETWORKS: [&str; 7] = ["ipv4", "ipv6", "torv2", "torv3", "i2p", "cjdns", "other"];

#[derive(Debug, Default, Clone, Serialize)]
pub struct PeerView {
    /// Connections open now, by the extractor's number.
    pub open: BTreeMap<u64, OpenConnection>,
    /// Open connections left out of `open` because there were more than [`MAX_CONNECTIONS`].
    pub open_dropped: u64,
    /// The state of the latest connection event: `connected`, `disconnected` or `failed`.
    pub state: Option<&'static str>,
    /// Handshakes completed, connections failed, connections ended after their handshake.
    pub connections: u64,
    pub failed: u64,
    pub disconnects: u64,
    /// The latest connection attempt's `retries`: dials that had failed in a row before it.
    pub retries: u32,
    /// The latest connection that ended after its handshake, and the latest that failed.
    pub last_disconnect: Option<ConnectionEnd>,
    pub last_failure: Option<ConnectionEnd>,
    /// Round trips of the extractor's pings.
    pub pings: u64,
    pub last_rtt_ms: Option<f64>,
    /// The median of the last [`RECENT_PINGS`] round trips.
    pub median_rtt_ms: Option<f64>,
    #[serde(skip)]
    recent_rtt: VecDeque<f64>,
    /// Messages the node sent, and those among them that were not what they claimed.
    pub messages: u64,
    pub malformed: u64,
    pub last_malformed: Option<Malformed>,
    /// inv messages, and their entries by type (the page's announcement rate).
    pub inv_messages: u64,
    pub inv_entries: BTreeMap<&'static str, u64>,
    /// Transactions announced (inv tx and wtx entries) and received (tx messages).
    pub tx_announced: u64,
    pub tx_received: u64,
    /// Addresses announced in addr and addrv2, by network ([`ADDRESS_NETWORKS`]).
    pub addresses: BTreeMap<&'static str, u64>,
    /// The latest feefilter.
    pub feefilter: Option<FeeFilter>,
    /// Block announcements by message type (`headers` with headers, `cmpctblock`), and the
    /// latest.
    pub block_announcements: BTreeMap<&'static str, u64>,
    pub last_block: Option<BlockAnnouncement>,
    /// Time of the newest event of `extractor p2p`, ns since the epoch (0: none yet).
    pub last_event_ns: u64,
    /// The extractor run the connection numbers belong to.
    #[serde(skip)]
    run_id: Option<u64>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct OpenConnection {
    pub connection: u64,
    pub transport: String,
    /// The node dialled the extractor (false: the extractor dialled the node).
    pub node_dialled: bool,
    pub remote: String,
    pub user_agent: String,
    pub version: i32,
    pub start_height: i32,
    /// When the handshake completed, ns since the epoch.
    pub since_ns: u64,
    pub retries: u32,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ConnectionEnd {
    pub connection: u64,
    pub reason: String,
    pub time_ns: u64,
    /// How long it had been connected (0 for a failure).
    pub connected_ns: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Malformed {
    pub msg_type: String,
    pub error: String,
    pub time_ns: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct FeeFilter {
    /// sat per 1000 vbytes, as sent.
    pub sat_per_kvb: i64,
    pub time_ns: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct BlockAnnouncement {
    /// `headers` or `cmpctblock`.
    pub msg_type: &'static str,
    /// The announced block (the first header's), display order.
    pub hash: String,
    pub time_ns: u64,
}

fn inv_type(inv_type: i32) -> &'static str {
    match InventoryType::try_from(inv_type) {
        Ok(InventoryType::Tx) => "tx",
        Ok(InventoryType::Wtx) => "wtx",
        Ok(InventoryType::Block) => "block",
        Ok(InventoryType::CompactBlock) => "compact_block",
        Ok(InventoryType::FilteredBlock) => "filtered_block",
        Ok(InventoryType::WitnessTx) => "witness_tx",
        Ok(InventoryType::WitnessBlock) => "witness_block",
        Ok(InventoryType::FilteredWitnessBlock) => "filtered_witness_block",
        Ok(InventoryType::Error | InventoryType::Unknown) | Err(_) => "other",
    }
}

fn address_network(network: i32) -> &'static str {
    match AddrNetwork::try_from(network) {
        Ok(AddrNetwork::Unknown) | Err(_) => "other",
        Ok(known) => known.label(),
    }
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[n / 2]),
        n => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

impl PeerView {
    /// Any of `extractor p2p`'s events.
    pub fn apply(&mut self, event: &Event) {
        // A new run numbers its connections from 1 again, and the old run's are gone.
        if self.run_id != Some(event.run_id) {
            self.open.clear();
            self.run_id = Some(event.run_id);
        }
        self.last_event_ns = self.last_event_ns.max(event.timestamp_ns);
        match &event.payload {
            Some(Payload::PeerConnection(c)) => self.connection(event, c),
            Some(Payload::PeerMessage(m)) => self.message(event, m),
            Some(Payload::PeerPing(ping)) => {
                let rtt_ms = ping.rtt_ns as f64 / 1e6;
                self.pings += 1;
                self.last_rtt_ms = Some(rtt_ms);
                if self.recent_rtt.len() == RECENT_PINGS {
                    self.recent_rtt.pop_front();
                }
                self.recent_rtt.push_back(rtt_ms);
                self.median_rtt_ms = median(self.recent_rtt.iter().copied());
            }
            _ => {}
        }
    }

    fn connection(&mut self, event: &Event, c: &PeerConnection) {
        let time_ns = event.timestamp_ns;
        let end = || {
            Some(ConnectionEnd {
                connection: c.connection,
                reason: clip(&c.reason),
                time_ns,
                connected_ns: c.connected_ns,
            })
        };
        match ConnectionState::try_from(c.state) {
            Ok(ConnectionState::Connected) => {
                self.state = Some("connected");
                self.connections += 1;
                self.retries = c.retries;
                if !self.open.contains_key(&c.connection) && self.open.len() >= MAX_CONNECTIONS {
                    // The oldest goes: the extractor numbers connections in order.
                    self.open.pop_first();
                    self.open_dropped += 1;
                }
                let version = c.version.clone().unwrap_or_default();
                self.open.insert(
                    c.connection,
                    OpenConnection {
                        connection: c.connection,
                        transport: clip(&c.transport),
                        node_dialled: c.node_dialled,
                        remote: clip(&c.remote),
                        user_agent: clip(&version.user_agent),
                        version: version.version,
                        start_height: version.start_height,
                        since_ns: time_ns,
                        retries: c.retries,
                    },
                );
            }
            Ok(ConnectionState::Disconnected) => {
                self.state = Some("disconnected");
                self.disconnects += 1;
                self.open.remove(&c.connection);
                self.last_disconnect = end();
            }
            Ok(ConnectionState::Failed) => {
                self.state = Some("failed");
                self.failed += 1;
                self.retries = c.retries;
                self.last_failure = end();
            }
            Ok(ConnectionState::Unspecified) | Err(_) => {}
        }
    }

    fn message(&mut self, event: &Event, m: &PeerMessage) {
        let Some(message) = &m.message else {
            return;
        };
        self.messages += 1;
        let time_ns = event.timestamp_ns;
        // Not what it claimed: Core drops it unread, so it announces nothing.
        if !event.error.is_empty() {
            self.malformed += 1;
            self.last_malformed = Some(Malformed {
                msg_type: clip(&message.msg_type),
                error: clip(&event.error),
                time_ns,
            });
            return;
        }
        let block = |view: &mut PeerView, msg_type: &'static str, hash: &[u8]| {
            *view.block_announcements.entry(msg_type).or_default() += 1;
            view.last_block = Some(BlockAnnouncement {
                msg_type,
                hash: hex(hash),
                time_ns,
            });
        };
        match &message.body {
            Some(Body::Inv(inv)) => {
                self.inv_messages += 1;
                for item in &inv.items {
                    let name = inv_type(item.r#type);
                    *self.inv_entries.entry(name).or_default() += 1;
                    if matches!(name, "tx" | "wtx") {
                        self.tx_announced += 1;
                    }
                }
            }
            Some(Body::Tx(_)) => self.tx_received += 1,
            Some(Body::Addr(addr) | Body::Addrv2(addr)) => {
                for address in &addr.addresses {
                    *self
                        .addresses
                        .entry(address_network(address.network))
                        .or_default() += 1;
                }
            }
            Some(Body::Feefilter(filter)) => {
                self.feefilter = Some(FeeFilter {
                    sat_per_kvb: filter.fee_rate,
                    time_ns,
                })
            }
            Some(Body::Headers(headers)) => {
                if let Some(first) = headers.headers.first() {
                    block(self, "headers", &first.hash);
                }
            }
            Some(Body::Cmpctblock(cmpct)) => {
                let hash = cmpct.header.as_ref().map_or(&[][..], |h| &h.hash[..]);
                block(self, "cmpctblock", hash);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::MAX_TEXT;
    use nodescope_proto::{
        BlockHeaderSummary, InventoryItem, NetAddress, P2pAddr, P2pCmpctBlock, P2pFeeFilter,
        P2pHeaders, P2pInventory, P2pMessage, P2pVersion, PeerPing, TxSummary,
    };

    fn event(run_id: u64, time_ns: u64, payload: Payload) -> Event {
        Event {
            run_id,
            timestamp_ns: time_ns,
            payload: Some(payload),
            ..Event::default()
        }
    }

    fn connection(state: ConnectionState, number: u64, retries: u32, reason: &str) -> Payload {
        Payload::PeerConnection(PeerConnection {
            state: state as i32,
            connection: number,
            transport: "v2".into(),
            remote: "127.0.0.1:18444".into(),
            version: Some(P2pVersion {
                user_agent: "/Satoshi:30.0.0/".into(),
                version: 70016,
                start_height: 101,
                ..P2pVersion::default()
            }),
            reason: reason.into(),
            connected_ns: 5_000_000_000,
            retries,
            ..PeerConnection::default()
        })
    }

    fn sent(body: Body, msg_type: &str) -> Payload {
        Payload::PeerMessage(PeerMessage {
            connection: 1,
            message: Some(P2pMessage {
                msg_type: msg_type.into(),
                body: Some(body),
                ..P2pMessage::default()
            }),
            since_previous_ns: 0,
        })
    }

    fn ping(rtt_ms: u64) -> Payload {
        Payload::PeerPing(PeerPing {
            connection: 1,
            nonce: rtt_ms,
            rtt_ns: rtt_ms * 1_000_000,
        })
    }

    #[test]
    fn connections_follow_connects_ends_and_restarts() {
        use ConnectionState::{Connected, Disconnected, Failed};
        let mut view = PeerView::default();
        view.apply(&event(
            1,
            10,
            connection(Failed, 1, 0, "connection refused"),
        ));
        view.apply(&event(
            1,
            20,
            connection(Failed, 2, 1, "connection refused"),
        ));
        view.apply(&event(1, 30, connection(Connected, 3, 2, "")));
        assert_eq!(view.state, Some("connected"));
        assert_eq!((view.connections, view.failed, view.retries), (1, 2, 2));
        assert_eq!(
            view.open[&3],
            OpenConnection {
                connection: 3,
                transport: "v2".into(),
                node_dialled: false,
                remote: "127.0.0.1:18444".into(),
                user_agent: "/Satoshi:30.0.0/".into(),
                version: 70016,
                start_height: 101,
                since_ns: 30,
                retries: 2,
            }
        );
        view.apply(&event(
            1,
            40,
            connection(Disconnected, 3, 2, "closed by the node"),
        ));
        assert!(view.open.is_empty());
        assert_eq!(view.state, Some("disconnected"));
        assert_eq!(
            view.last_failure
                .as_ref()
                .map(|f| (f.connection, f.time_ns)),
            Some((2, 20))
        );
        assert_eq!(
            view.last_disconnect,
            Some(ConnectionEnd {
                connection: 3,
                reason: "closed by the node".into(),
                time_ns: 40,
                connected_ns: 5_000_000_000,
            })
        );
        view.apply(&event(1, 50, connection(Connected, 4, 0, "")));
        // The extractor restarted: its connection 4 is gone, its new 1 is open.
        view.apply(&event(2, 60, connection(Connected, 1, 0, "")));
        assert_eq!(view.open.keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!((view.connections, view.disconnects), (3, 1));
        assert_eq!(view.last_event_ns, 60);
    }

    #[test]
    fn announcements_pings_and_malformed_messages_are_counted() {
        let mut view = PeerView::default();
        let item = |t: InventoryType| InventoryItem {
            r#type: t as i32,
            type_raw: 0,
            hash: vec![1; 32],
        };
        let inv = |items| {
            Body::Inv(P2pInventory {
                items,
                ..P2pInventory::default()
            })
        };
        use InventoryType::{Block, Tx, Unknown, Wtx};
        let mut apply = |time_ns, payload| view.apply(&event(1, time_ns, payload));
        apply(1, sent(inv(vec![item(Wtx), item(Wtx), item(Block)]), "inv"));
        apply(2, sent(inv(vec![item(Tx), item(Unknown)]), "inv"));
        apply(3, sent(Body::Tx(TxSummary::default()), "tx"));
        let address = |network: AddrNetwork| NetAddress {
            network: network as i32,
            ..NetAddress::default()
        };
        let addresses = P2pAddr {
            addresses: vec![
                address(AddrNetwork::Ipv4),
                address(AddrNetwork::Torv3),
                address(AddrNetwork::Torv3),
                address(AddrNetwork::Unknown),
            ],
        };
        apply(4, sent(Body::Addrv2(addresses), "addrv2"));
        apply(
            5,
            sent(
                Body::Feefilter(P2pFeeFilter { fee_rate: 1000 }),
                "feefilter",
            ),
        );
        let header = |byte| BlockHeaderSummary {
            hash: vec![byte; 32],
            ..BlockHeaderSummary::default()
        };
        apply(
            6,
            sent(
                Body::Headers(P2pHeaders {
                    count: 1,
                    headers: vec![header(0xaa)],
                }),
                "headers",
            ),
        );
        apply(
            7,
            sent(
                Body::Cmpctblock(P2pCmpctBlock {
                    header: Some(header(0xbb)),
                    ..P2pCmpctBlock::default()
                }),
                "cmpctblock",
            ),
        );
        // An empty headers message announces nothing.
        apply(8, sent(Body::Headers(P2pHeaders::default()), "headers"));
        for rtt in [10, 30, 20, 1000] {
            apply(9, ping(rtt));
        }
        let mut bad = event(1, 10, sent(inv(vec![item(Wtx)]), "inv"));
        bad.error = "bad checksum".into();
        view.apply(&bad);

        assert_eq!(view.inv_messages, 2);
        assert_eq!(
            view.inv_entries,
            [("wtx", 2), ("block", 1), ("tx", 1), ("other", 1)].into()
        );
        assert_eq!((view.tx_announced, view.tx_received), (3, 1));
        assert_eq!(
            view.addresses,
            [("ipv4", 1), ("torv3", 2), ("other", 1)].into()
        );
        assert_eq!(
            view.feefilter,
            Some(FeeFilter {
                sat_per_kvb: 1000,
                time_ns: 5
            })
        );
        assert_eq!(
            view.block_announcements,
            [("headers", 1), ("cmpctblock", 1)].into()
        );
        assert_eq!(
            view.last_block,
            Some(BlockAnnouncement {
                msg_type: "cmpctblock",
                hash: "bb".repeat(32),
                time_ns: 7
            })
        );
        assert_eq!(view.pings, 4);
        assert_eq!(view.last_rtt_ms, Some(1000.0));
        assert_eq!(view.median_rtt_ms, Some(25.0));
        assert_eq!((view.messages, view.malformed), (9, 1));
        assert_eq!(
            view.last_malformed,
            Some(Malformed {
                msg_type: "inv".into(),
                error: "bad checksum".into(),
                time_ns: 10
            })
        );
    }

    /// Whatever the node and the stream say, the view keeps bounded lists and short texts.
    #[test]
    fn the_view_is_bounded() {
        let mut view = PeerView::default();
        for n in 0..100u64 {
            let mut c = connection(ConnectionState::Connected, n, 0, "");
            if let Payload::PeerConnection(c) = &mut c {
                c.version.as_mut().unwrap().user_agent = "/".repeat(10_000);
            }
            view.apply(&event(1, n, c));
        }
        assert_eq!(view.open.len(), MAX_CONNECTIONS);
        assert_eq!(view.open_dropped, 100 - MAX_CONNECTIONS as u64);
        assert!(view.open.contains_key(&99) && !view.open.contains_key(&0));
        assert!(view.open.values().all(|c| c.user_agent.len() == MAX_TEXT));
        for n in 0..1000 {
            view.apply(&event(1, 1, ping(n)));
        }
        assert_eq!(view.recent_rtt.len(), RECENT_PINGS);
        // The last 32 round trips: 968 … 999 ms.
        assert_eq!(view.median_rtt_ms, Some(983.5));
        let reason = "x".repeat(10_000);
        view.apply(&event(
            1,
            2,
            connection(ConnectionState::Failed, 1, 0, &reason),
        ));
        assert_eq!(view.last_failure.as_ref().unwrap().reason.len(), MAX_TEXT);
        assert!(view.addresses.keys().all(|n| ADDRESS_NETWORKS.contains(n)));
    }
}
