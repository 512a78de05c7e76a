//! P2P messages (net:inbound_message, net:outbound_message) as metrics: messages and payload
//! bytes by type and connection type, decode errors, addresses by family, inventory entries by
//! type, fee filters, the user agents of version messages, and ping round trips. Messages are
//! most of the events: their series are kept per node in slots (see `series_slots`), but the
//! user agents' (which come and go, see `user_agents`) and the decode errors' (rare).

use std::time::Instant;

use nodescope_proto::p2p_message::Body;
use nodescope_proto::{Event, NetMessage, P2pInventory};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::labels::{self, enum_slot, ENUM_SLOTS, INBOUND, OUTBOUND};
use crate::metrics::*;
use crate::series_slots::SeriesSlots;
use crate::tracked_peers::{TrackedPeers, PING_IN, PING_OUT};
use crate::user_agents::UserAgents;

const MSG_TYPES: usize = nodescope_proto::p2p::MESSAGE_TYPES.len() + 1;

/// A node's series of message families, and its user-agent ranking.
pub struct MessageState {
    /// (messages, payload bytes) by direction, message type and connection type.
    messages: SeriesSlots<(Counter, Counter)>,
    /// Addresses by direction, message type and address family.
    addresses: SeriesSlots<Counter>,
    /// Inventory entries by direction, message type and entry type.
    inv_entries: SeriesSlots<Counter>,
    /// By direction.
    feefilter: SeriesSlots<Histogram>,
    /// By the direction of the ping.
    ping_rtt: SeriesSlots<Histogram>,
    user_agents: UserAgents,
}

impl MessageState {
    pub fn new(user_agents: usize) -> MessageState {
        MessageState {
            messages: SeriesSlots::new(SLOTS),
            addresses: SeriesSlots::new(SLOTS),
            inv_entries: SeriesSlots::new(SLOTS),
            feefilter: SeriesSlots::new(2),
            ping_rtt: SeriesSlots::new(2),
            user_agents: UserAgents::new(user_agents, Instant::now()),
        }
    }
}

fn direction(outbound: bool) -> &'static str {
    if outbound {
        OUTBOUND
    } else {
        INBOUND
    }
}

/// Slots of the families by direction, message type and an enum.
const SLOTS: usize = 2 * MSG_TYPES * ENUM_SLOTS;

/// The slot of (direction, message type, an enum value) in a family by those labels.
fn slot(outbound: bool, msg_type: usize, value: i32) -> usize {
    (usize::from(outbound) * MSG_TYPES + msg_type) * ENUM_SLOTS + enum_slot(value)
}

/// A message received (inbound) or queued to send (`outbound`) by the node.
pub fn record(
    m: &Metrics,
    node: &Node,
    state: &mut MessageState,
    peers: &mut TrackedPeers,
    outbound: bool,
    net: &NetMessage,
    event: &Event,
) {
    let Some(message) = &net.message else {
        return;
    };
    let (peer_id, conn_type) = net
        .peer
        .as_ref()
        .map_or((-1, 0), |peer| (peer.id, peer.conn_type));
    let t = labels::msg_type_index(&message.msg_type);
    let msg_type = labels::MSG_TYPE_LABELS[t];
    let (messages, bytes) = state.messages.get(slot(outbound, t, conn_type), || {
        let labels = MessageLabels {
            node: node.clone(),
            direction: direction(outbound),
            msg_type,
            conn_type: labels::conn_type(conn_type),
        };
        (
            m.p2p_messages.get_or_create_owned(&labels),
            m.p2p_message_bytes.get_or_create_owned(&labels),
        )
    });
    messages.inc();
    bytes.inc_by(message.size);
    if !message.decode_error.is_empty() {
        m.p2p_message_decode_errors
            .get_or_create(&MessageTypeLabels {
                node: node.clone(),
                direction: direction(outbound),
                msg_type,
            })
            .inc();
    }
    let Some(body) = &message.body else {
        return;
    };
    match body {
        Body::Addr(addr) | Body::Addrv2(addr) => {
            for address in &addr.addresses {
                let family = address.network;
                state
                    .addresses
                    .get(slot(outbound, t, family), || {
                        m.p2p_addresses.get_or_create_owned(&AddressLabels {
                            node: node.clone(),
                            direction: direction(outbound),
                            msg_type,
                            family: labels::address_family(family),
                        })
                    })
                    .inc();
            }
        }
        Body::Inv(inv) | Body::Getdata(inv) | Body::Notfound(inv) => {
            inventory(m, node, state, outbound, t, inv)
        }
        Body::Feefilter(filter) => {
            state
                .feefilter
                .get(usize::from(outbound), || {
                    m.p2p_feefilter.get_or_create_owned(&DirectionLabels {
                        node: node.clone(),
                        direction: direction(outbound),
                    })
                })
                .observe(filter.fee_rate as f64 / 1000.0);
        }
        Body::Version(version) => {
            let label = state.user_agents.label(&version.user_agent, Instant::now());
            for gone in label.dropped {
                for direction in [INBOUND, OUTBOUND] {
                    m.p2p_user_agents.remove(&UserAgentLabels {
                        node: node.clone(),
                        direction,
                        user_agent: gone.clone(),
                    });
                }
            }
            m.p2p_user_agents
                .get_or_create(&UserAgentLabels {
                    node: node.clone(),
                    direction: direction(outbound),
                    user_agent: label.user_agent,
                })
                .inc();
        }
        Body::Ping(ping) => {
            // Our ping goes out, the peer's comes in; either waits for the pong coming back.
            let slot = if outbound { PING_OUT } else { PING_IN };
            if let Some(peer) = peers.track(peer_id) {
                peer.pings[slot] = Some((ping.nonce, event.timestamp_ns));
            }
        }
        Body::Pong(pong) => {
            // A pong coming in answers our ping, one going out the peer's.
            let ping_outbound = !outbound;
            let slot = if ping_outbound { PING_OUT } else { PING_IN };
            let Some(peer) = peers.get(peer_id) else {
                return;
            };
            if let Some((nonce, sent_ns)) = peer.pings[slot] {
                if nonce == pong.nonce {
                    peer.pings[slot] = None;
                    let rtt = event.timestamp_ns.saturating_sub(sent_ns) as f64 / 1e9;
                    state
                        .ping_rtt
                        .get(usize::from(ping_outbound), || {
                            m.p2p_ping_rtt.get_or_create_owned(&DirectionLabels {
                                node: node.clone(),
                                direction: direction(ping_outbound),
                            })
                        })
                        .observe(rtt);
                }
            }
        }
        _ => {}
    }
}

fn inventory(
    m: &Metrics,
    node: &Node,
    state: &mut MessageState,
    outbound: bool,
    t: usize,
    inv: &P2pInventory,
) {
    // Entries come in runs of one type: count a run with one update.
    let mut items = inv.items.iter().map(|item| item.r#type).peekable();
    while let Some(inv_type) = items.next() {
        let mut count = 1;
        while items.next_if_eq(&inv_type).is_some() {
            count += 1;
        }
        state
            .inv_entries
            .get(slot(outbound, t, inv_type), || {
                m.p2p_inv_entries.get_or_create_owned(&InvLabels {
                    node: node.clone(),
                    direction: direction(outbound),
                    msg_type: labels::MSG_TYPE_LABELS[t],
                    inv_type: labels::inv_type(inv_type),
                })
            })
            .inc_by(count);
    }
}
