//! Short lowercase names of payloads and enum values, the same as the JSON rendering uses, as
//! `&'static str` for log lines and metric labels (closed sets: no allocation, bounded
//! cardinality).

use crate::event::Payload;
use crate::{
    AddrNetwork, ConnectionType, ConnectivityResult, MempoolRemoved, Network, Peer, RemovalReason,
    V2Support,
};

impl Payload {
    /// The payload's field name in `Event`, which is also the tracepoint's name
    /// (`inbound_message`, `mempool_added`, …).
    pub fn name(&self) -> &'static str {
        use Payload as P;
        match self {
            P::InboundMessage(_) => "inbound_message",
            P::OutboundMessage(_) => "outbound_message",
            P::InboundConnection(_) => "inbound_connection",
            P::OutboundConnection(_) => "outbound_connection",
            P::EvictedInboundConnection(_) => "evicted_inbound_connection",
            P::MisbehavingConnection(_) => "misbehaving_connection",
            P::ClosedConnection(_) => "closed_connection",
            P::BlockConnected(_) => "block_connected",
            P::UtxocacheFlush(_) => "utxocache_flush",
            P::UtxocacheAdd(_) => "utxocache_add",
            P::UtxocacheSpent(_) => "utxocache_spent",
            P::UtxocacheUncache(_) => "utxocache_uncache",
            P::SelectedCoins(_) => "selected_coins",
            P::NormalCreateTxInternal(_) => "normal_create_tx_internal",
            P::AttemptingApsCreateTx(_) => "attempting_aps_create_tx",
            P::ApsCreateTxInternal(_) => "aps_create_tx_internal",
            P::MempoolAdded(_) => "mempool_added",
            P::MempoolRemoved(_) => "mempool_removed",
            P::MempoolReplaced(_) => "mempool_replaced",
            P::MempoolRejected(_) => "mempool_rejected",
            P::ConnectivityCheck(_) => "connectivity_check",
            P::RpcCall(_) => "rpc_call",
            P::ZmqNotification(_) => "zmq_notification",
            P::PeerConnection(_) => "peer_connection",
            P::PeerMessage(_) => "peer_message",
            P::PeerPing(_) => "peer_ping",
            P::BlockPropagation(_) => "block_propagation",
            P::TxPropagation(_) => "tx_propagation",
            P::Reorg(_) => "reorg",
            P::FleetState(_) => "fleet_state",
            P::ExtractorStats(_) => "extractor_stats",
        }
    }
}

impl crate::RpcFailure {
    /// The kind as a short name ("unreachable", "timeout", "auth", "rpc_error", "bad_answer",
    /// "too_large"); "unknown" for a kind this schema does not know.
    pub fn kind_name(&self) -> &'static str {
        use crate::RpcFailureKind as K;
        match K::try_from(self.kind) {
            Ok(K::Unreachable) => "unreachable",
            Ok(K::Timeout) => "timeout",
            Ok(K::Auth) => "auth",
            Ok(K::RpcError) => "rpc_error",
            Ok(K::BadAnswer) => "bad_answer",
            Ok(K::TooLarge) => "too_large",
            Ok(K::Unspecified) | Err(_) => "unknown",
        }
    }
}

impl ConnectionType {
    pub fn label(self) -> &'static str {
        match self {
            ConnectionType::Unknown => "unknown",
            ConnectionType::Inbound => "inbound",
            ConnectionType::OutboundFullRelay => "outbound_full_relay",
            ConnectionType::Manual => "manual",
            ConnectionType::Feeler => "feeler",
            ConnectionType::BlockRelayOnly => "block_relay_only",
            ConnectionType::AddrFetch => "addr_fetch",
        }
    }
}

impl Network {
    pub fn label(self) -> &'static str {
        match self {
            Network::Unroutable => "unroutable",
            Network::Ipv4 => "ipv4",
            Network::Ipv6 => "ipv6",
            Network::Onion => "onion",
            Network::I2p => "i2p",
            Network::Cjdns => "cjdns",
            Network::Internal => "internal",
        }
    }
}

impl AddrNetwork {
    pub fn label(self) -> &'static str {
        match self {
            AddrNetwork::Unknown => "unknown",
            AddrNetwork::Ipv4 => "ipv4",
            AddrNetwork::Ipv6 => "ipv6",
            AddrNetwork::Torv2 => "torv2",
            AddrNetwork::Torv3 => "torv3",
            AddrNetwork::I2p => "i2p",
            AddrNetwork::Cjdns => "cjdns",
        }
    }
}

impl ConnectivityResult {
    pub fn label(self) -> &'static str {
        match self {
            ConnectivityResult::Unspecified => "unspecified",
            ConnectivityResult::Reachable => "reachable",
            ConnectivityResult::Refused => "refused",
            ConnectivityResult::Timeout => "timeout",
            ConnectivityResult::Reset => "reset",
            ConnectivityResult::WrongMagic => "wrong_magic",
            ConnectivityResult::NotBitcoin => "not_bitcoin",
            ConnectivityResult::ProxyError => "proxy_error",
            ConnectivityResult::UnreachableNetwork => "unreachable_network",
        }
    }
}

impl V2Support {
    pub fn label(self) -> &'static str {
        match self {
            V2Support::NotTried => "not_tried",
            V2Support::Supported => "supported",
            V2Support::NotSupported => "not_supported",
            V2Support::Unknown => "unknown",
        }
    }
}

impl RemovalReason {
    pub fn label(self) -> &'static str {
        match self {
            RemovalReason::Unknown => "unknown",
            RemovalReason::Expiry => "expiry",
            RemovalReason::Sizelimit => "sizelimit",
            RemovalReason::Reorg => "reorg",
            RemovalReason::Block => "block",
            RemovalReason::Conflict => "conflict",
            RemovalReason::Replaced => "replaced",
        }
    }
}

impl Peer {
    /// The connection type's name; one bitcoind sent that the schema does not know is kept
    /// as it came.
    pub fn conn_type_name(&self) -> &str {
        match ConnectionType::try_from(self.conn_type) {
            Ok(ConnectionType::Unknown) | Err(_) if !self.conn_type_other.is_empty() => {
                &self.conn_type_other
            }
            Ok(known) => known.label(),
            Err(_) => "unknown",
        }
    }
}

impl MempoolRemoved {
    /// The removal reason's name; an unknown one is kept as bitcoind sent it.
    pub fn reason_name(&self) -> &str {
        match RemovalReason::try_from(self.reason) {
            Ok(RemovalReason::Unknown) | Err(_) if !self.reason_other.is_empty() => {
                &self.reason_other
            }
            Ok(known) => known.label(),
            Err(_) => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::json::to_json;
    use crate::{
        ConnectionType, ConnectivityResult, Event, Network, Peer, RemovalReason, V2Support,
    };

    /// The names here and the JSON rendering's cannot drift apart.
    #[test]
    fn labels_are_the_json_names() {
        for value in 0..=6 {
            let conn_type = ConnectionType::try_from(value).unwrap();
            let peer = Peer {
                conn_type: value,
                ..Peer::default()
            };
            assert_eq!(to_json(&peer)["conn_type"], conn_type.label());
            let network = Network::try_from(value).unwrap();
            let reason = RemovalReason::try_from(value).unwrap();
            let connection = crate::InboundConnection {
                network: value,
                ..Default::default()
            };
            assert_eq!(to_json(&connection)["network"], network.label());
            let removed = crate::MempoolRemoved {
                reason: value,
                ..Default::default()
            };
            assert_eq!(to_json(&removed)["reason"], reason.label());
            let network = crate::AddrNetwork::try_from(value).unwrap();
            let address = crate::NetAddress {
                network: value,
                ..Default::default()
            };
            assert_eq!(to_json(&address)["network"], network.label());
        }
        for value in 0..=8 {
            let result = ConnectivityResult::try_from(value).unwrap();
            let v2 = V2Support::try_from(value.min(3)).unwrap();
            let check = crate::ConnectivityCheck {
                result: value,
                v2: v2 as i32,
                ..Default::default()
            };
            assert_eq!(to_json(&check)["result"], result.label());
            assert_eq!(to_json(&check)["v2"], v2.label());
        }
        use crate::event::Payload as P;
        let payloads = [
            P::InboundMessage(Default::default()),
            P::OutboundMessage(Default::default()),
            P::InboundConnection(Default::default()),
            P::OutboundConnection(Default::default()),
            P::EvictedInboundConnection(Default::default()),
            P::MisbehavingConnection(Default::default()),
            P::ClosedConnection(Default::default()),
            P::BlockConnected(Default::default()),
            P::UtxocacheFlush(Default::default()),
            P::UtxocacheAdd(Default::default()),
            P::UtxocacheSpent(Default::default()),
            P::UtxocacheUncache(Default::default()),
            P::SelectedCoins(Default::default()),
            P::NormalCreateTxInternal(Default::default()),
            P::AttemptingApsCreateTx(Default::default()),
            P::ApsCreateTxInternal(Default::default()),
            P::MempoolAdded(Default::default()),
            P::MempoolRemoved(Default::default()),
            P::MempoolReplaced(Default::default()),
            P::MempoolRejected(Default::default()),
            P::ConnectivityCheck(Default::default()),
            P::RpcCall(Default::default()),
            P::ZmqNotification(Default::default()),
            P::PeerConnection(Default::default()),
            P::PeerMessage(Default::default()),
            P::PeerPing(Default::default()),
            P::BlockPropagation(Default::default()),
            P::TxPropagation(Default::default()),
            P::Reorg(Default::default()),
            P::FleetState(Default::default()),
            P::ExtractorStats(Default::default()),
        ];
        let other = Peer {
            conn_type_other: "private-broadcast".into(),
            ..Peer::default()
        };
        assert_eq!(other.conn_type_name(), "private-broadcast");
        let known = crate::MempoolRemoved {
            reason: RemovalReason::Expiry as i32,
            ..Default::default()
        };
        assert_eq!(known.reason_name(), "expiry");
        for payload in payloads {
            let name = payload.name();
            let event = Event {
                payload: Some(payload),
                ..Event::default()
            };
            assert!(to_json(&event).get(name).is_some(), "{name}");
        }
    }
}
