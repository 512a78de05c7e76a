//! Connections (net:inbound_connection, net:outbound_connection, net:closed_connection,
//! net:evicted_inbound_connection, net:misbehaving_connection) as metrics: opened and closed by
//! direction, type and network, evictions, misbehaviour by reason class, connections open, and
//! their age when they close. Rare events next to messages: their series are looked up in the
//! families each time.

use nodescope_proto::{ClosedConnection, Event, EvictedInboundConnection, MisbehavingConnection};

use crate::labels;
use crate::metrics::*;
use crate::tracked_peers::{TrackedPeer, TrackedPeers};

/// (id, connection type) of an event's peer; an event without one is of peer 0, type unknown.
fn id_and_type(peer: Option<&nodescope_proto::Peer>) -> (i64, i32) {
    peer.map_or((0, 0), |peer| (peer.id, peer.conn_type))
}

/// An inbound or outbound connection opened.
pub fn opened(
    m: &Metrics,
    node: &Node,
    peers: &mut TrackedPeers,
    peer: Option<&nodescope_proto::Peer>,
    network: i32,
) {
    let (id, raw_type) = id_and_type(peer);
    let direction = labels::conn_direction(raw_type);
    let conn_type = labels::conn_type(raw_type);
    m.connections_opened
        .get_or_create(&ConnectionLabels {
            node: node.clone(),
            direction,
            conn_type,
            network: labels::network(network),
        })
        .inc();
    let open = |direction, conn_type| OpenLabels {
        node: node.clone(),
        direction,
        conn_type,
    };
    let Some(tracked) = peers.track(id) else {
        return;
    };
    // A peer id seen open already: bitcoind restarted without closing it (ids start over).
    if let Some((direction, conn_type)) = tracked.open.take() {
        m.connections_open
            .get_or_create(&open(direction, conn_type))
            .dec();
    }
    tracked.open = Some((direction, conn_type));
    m.connections_open
        .get_or_create(&open(direction, conn_type))
        .inc();
}

pub fn closed(
    m: &Metrics,
    node: &Node,
    peers: &mut TrackedPeers,
    event: &Event,
    c: &ClosedConnection,
) {
    let (id, raw_type) = id_and_type(c.peer.as_ref());
    let conn_type = labels::conn_type(raw_type);
    m.connections_closed
        .get_or_create(&ConnectionLabels {
            node: node.clone(),
            direction: labels::conn_direction(raw_type),
            conn_type,
            network: labels::network(c.network),
        })
        .inc();
    let closed_at = event.timestamp_ns as f64 / 1e9;
    let age = (closed_at - c.connected_since as f64).max(0.0);
    m.connection_age_at_close
        .get_or_create(&ConnTypeLabels {
            node: node.clone(),
            conn_type,
        })
        .observe(age);
    if let Some(TrackedPeer {
        open: Some((direction, conn_type)),
        ..
    }) = peers.forget(id)
    {
        m.connections_open
            .get_or_create(&OpenLabels {
                node: node.clone(),
                direction,
                conn_type,
            })
            .dec();
    }
}

pub fn evicted(m: &Metrics, node: &Node, c: &EvictedInboundConnection) {
    m.connections_evicted
        .get_or_create(&NetworkLabels {
            node: node.clone(),
            network: labels::network(c.network),
        })
        .inc();
}

pub fn misbehaving(m: &Metrics, node: &Node, c: &MisbehavingConnection) {
    m.connections_misbehaving
        .get_or_create(&ReasonLabels {
            node: node.clone(),
            reason: labels::misbehaving_class(&c.message),
        })
        .inc();
}
