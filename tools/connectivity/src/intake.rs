//! From the node's P2P messages to the addresses to look at: every entry of an inbound `addr`
//! or `addrv2`, with who announced it and whether it answered the node's `getaddr`.

use std::collections::HashSet;

use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{Event, NetAddress, NetMessage, Peer};

/// Bitcoin Core relays unsolicited `addr` messages only with at most this many entries
/// (`MAX_ADDR_TO_SEND` gossip is bounded by it in `ProcessMessage`): more is a getaddr answer.
const MAX_UNSOLICITED: usize = 10;

/// Peers the node asked with `getaddr` and that have not answered yet, at most this many.
const MAX_AWAITING: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrVersion {
    Addr,
    Addrv2,
}

impl AddrVersion {
    pub fn label(self) -> &'static str {
        match self {
            AddrVersion::Addr => "addr",
            AddrVersion::Addrv2 => "addrv2",
        }
    }
}

/// One announced address and where it came from.
#[derive(Debug, Clone)]
pub struct Announced {
    pub node: String,
    /// The node's chain from the event (empty when the extractor did not know it).
    pub chain: String,
    pub address: NetAddress,
    pub addr_version: AddrVersion,
    pub announced_by: Peer,
    pub getaddr_response: bool,
    /// When the node received the message, ns since the UNIX epoch.
    pub message_time_ns: u64,
}

impl Announced {
    /// The message's time minus the address's timestamp, in seconds (negative: in the future);
    /// `None` for an address without a timestamp.
    pub fn age_s(&self) -> Option<i64> {
        (self.address.time != 0)
            .then(|| (self.message_time_ns / 1_000_000_000) as i64 - i64::from(self.address.time))
    }
}

/// What one event brings.
#[derive(Debug)]
pub enum Intaken {
    /// Not an inbound addr/addrv2 (nothing to do).
    Nothing,
    /// An addr/addrv2 the extractor could not decode (or cut): counted, nothing to check.
    Undecodable,
    /// The entries of one message, in order.
    Addresses(Vec<Announced>),
}

#[derive(Debug, Default)]
pub struct Intake {
    /// (node, peer id) the node sent `getaddr` to, until their first addr/addrv2.
    awaiting_getaddr: HashSet<(String, i64)>,
}

impl Intake {
    pub fn take(&mut self, event: &Event) -> Intaken {
        match &event.payload {
            Some(Payload::InboundMessage(message)) => self.inbound(event, message),
            Some(Payload::OutboundMessage(message)) => {
                self.outbound(event, message);
                Intaken::Nothing
            }
            _ => Intaken::Nothing,
        }
    }

    fn outbound(&mut self, event: &Event, message: &NetMessage) {
        let is_getaddr = message
            .message
            .as_ref()
            .is_some_and(|m| matches!(m.body, Some(Body::Getaddr(_))));
        if let (true, Some(peer)) = (is_getaddr, &message.peer) {
            if self.awaiting_getaddr.len() < MAX_AWAITING {
                self.awaiting_getaddr
                    .insert((event.node_id.clone(), peer.id));
            }
        }
    }

    fn inbound(&mut self, event: &Event, message: &NetMessage) -> Intaken {
        let Some(p2p) = &message.message else {
            return Intaken::Nothing;
        };
        let (list, addr_version) = match &p2p.body {
            Some(Body::Addr(list)) => (list, AddrVersion::Addr),
            Some(Body::Addrv2(list)) => (list, AddrVersion::Addrv2),
            None if matches!(p2p.msg_type.as_str(), "addr" | "addrv2") => {
                return Intaken::Undecodable
            }
            _ => return Intaken::Nothing,
        };
        let peer = message.peer.clone().unwrap_or_default();
        let asked = self
            .awaiting_getaddr
            .remove(&(event.node_id.clone(), peer.id));
        let getaddr_response = asked || list.addresses.len() > MAX_UNSOLICITED;
        Intaken::Addresses(
            list.addresses
                .iter()
                .map(|address| Announced {
                    node: event.node_id.clone(),
                    chain: event.chain.clone(),
                    address: address.clone(),
                    addr_version,
                    announced_by: peer.clone(),
                    getaddr_response,
                    message_time_ns: event.timestamp_ns,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodescope_proto::{P2pAddr, P2pEmpty, P2pMessage};

    fn event(inbound: bool, peer: i64, body: Option<Body>, msg_type: &str) -> Event {
        let message = NetMessage {
            peer: Some(Peer {
                id: peer,
                ..Peer::default()
            }),
            message: Some(P2pMessage {
                msg_type: msg_type.into(),
                body,
                ..P2pMessage::default()
            }),
        };
        Event {
            node_id: "n".into(),
            timestamp_ns: 1_000 * 1_000_000_000,
            payload: Some(if inbound {
                Payload::InboundMessage(message)
            } else {
                Payload::OutboundMessage(message)
            }),
            ..Event::default()
        }
    }

    fn addrs(n: usize) -> Option<Body> {
        Some(Body::Addrv2(P2pAddr {
            addresses: (0..n)
                .map(|i| NetAddress {
                    time: 400 + i as u32,
                    ..NetAddress::default()
                })
                .collect(),
        }))
    }

    fn taken(intake: &mut Intake, event: &Event) -> Vec<Announced> {
        match intake.take(event) {
            Intaken::Addresses(list) => list,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn getaddr_answers_are_marked_and_gossip_is_not() {
        let mut intake = Intake::default();
        let gossip = taken(&mut intake, &event(true, 1, addrs(2), "addrv2"));
        assert_eq!(gossip.len(), 2);
        assert!(!gossip[0].getaddr_response);
        assert_eq!(gossip[0].age_s(), Some(600));
        assert_eq!(gossip[1].addr_version, AddrVersion::Addrv2);

        assert!(matches!(
            intake.take(&event(
                false,
                1,
                Some(Body::Getaddr(P2pEmpty {})),
                "getaddr"
            )),
            Intaken::Nothing
        ));
        // The first answer after a getaddr is one, even when short; the next is gossip again.
        assert!(taken(&mut intake, &event(true, 1, addrs(3), "addrv2"))[0].getaddr_response);
        assert!(!taken(&mut intake, &event(true, 1, addrs(3), "addrv2"))[0].getaddr_response);
        assert!(taken(&mut intake, &event(true, 2, addrs(11), "addrv2"))[0].getaddr_response);
    }

    #[test]
    fn undecodable_announcements_are_told_apart() {
        let mut intake = Intake::default();
        assert!(matches!(
            intake.take(&event(true, 1, None, "addrv2")),
            Intaken::Undecodable
        ));
        assert!(matches!(
            intake.take(&event(true, 1, None, "ping")),
            Intaken::Nothing
        ));
        assert!(matches!(
            intake.take(&event(false, 1, addrs(1), "addrv2")),
            Intaken::Nothing
        ));
    }
}
