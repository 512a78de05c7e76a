//! Every label value the exporter writes, each from a closed set: whatever a peer, a node or a
//! publisher sends, the number of series stays bounded. Free-form strings (message types,
//! reasons, algorithms) map to their known values or to `other`. The README lists these sets.

use std::sync::LazyLock;

use extractor_common::tracepoint::Tracepoint;
use nodescope_proto::{AddrNetwork, ConnectionType, InventoryType, Network, RemovalReason};

pub const OTHER: &str = "other";

pub const INBOUND: &str = "inbound";
pub const OUTBOUND: &str = "outbound";

/// Slots for the values of a schema enum whose 0 means "not known" (labelled `other` or
/// `unknown`): more than any such enum has values, so that each value the schema knows gets a
/// slot of its own, and every value it does not know shares 0's slot, whose label is theirs.
pub const ENUM_SLOTS: usize = 16;

/// The slot among [`ENUM_SLOTS`] of a value of such an enum.
pub fn enum_slot(value: i32) -> usize {
    usize::try_from(value)
        .ok()
        .filter(|slot| *slot < ENUM_SLOTS)
        .unwrap_or(0)
}

/// The `msg_type` label values: the 36 message types nodescope decodes, then `other`.
pub static MSG_TYPE_LABELS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut labels = nodescope_proto::p2p::MESSAGE_TYPES.to_vec();
    labels.push(OTHER);
    labels
});

/// The index in [`MSG_TYPE_LABELS`] of a P2P message type (unknown ones are `other`).
pub fn msg_type_index(msg_type: &str) -> usize {
    let known = nodescope_proto::p2p::MESSAGE_TYPES;
    known
        .iter()
        .position(|k| *k == msg_type)
        .unwrap_or(known.len())
}

/// Bitcoin Core v30's `ALL_NET_MESSAGE_TYPES`: the keys of getpeerinfo's
/// `bytessent_per_msg` / `bytesrecv_per_msg`, then [`CORE_OTHER`].
pub const CORE_MSG_TYPES: [&str; 36] = {
    let mut all = [CORE_OTHER; 36];
    let mut i = 0;
    while i < wire::CORE_MESSAGE_TYPES.len() {
        all[i] = wire::CORE_MESSAGE_TYPES[i];
        i += 1;
    }
    all
};

use nodescope_proto::p2p::wire;
pub use nodescope_proto::p2p::wire::CORE_OTHER;

/// The index in [`CORE_MSG_TYPES`] of a message type; unknown ones are [`CORE_OTHER`]'s.
pub fn core_msg_type_index(msg_type: &str) -> usize {
    CORE_MSG_TYPES[..CORE_MSG_TYPES.len() - 1]
        .iter()
        .position(|k| *k == msg_type)
        .unwrap_or(CORE_MSG_TYPES.len() - 1)
}

/// A getpeerinfo `network`: bitcoind's strings, `other` for one this version does not know.
pub fn rpc_network(network: &str) -> &'static str {
    const NETWORKS: [&str; 6] = [
        "ipv4",
        "ipv6",
        "onion",
        "i2p",
        "cjdns",
        "not_publicly_routable",
    ];
    known(&NETWORKS, network)
}

/// A getaddrmaninfo / getnetworkinfo network name (`all_networks`: getaddrmaninfo's total).
pub fn rpc_addrman_network(network: &str) -> &'static str {
    const NETWORKS: [&str; 6] = ["ipv4", "ipv6", "onion", "i2p", "cjdns", "all_networks"];
    known(&NETWORKS, network)
}

/// A getpeerinfo `connection_type` (bitcoind's strings, with their hyphens).
pub fn rpc_connection_type(connection_type: &str) -> &'static str {
    const TYPES: [&str; 6] = [
        "outbound-full-relay",
        "block-relay-only",
        "inbound",
        "manual",
        "addr-fetch",
        "feeler",
    ];
    known(&TYPES, connection_type)
}

/// A getpeerinfo `transport_protocol_type`.
pub fn rpc_transport(transport: &str) -> &'static str {
    known(&["detecting", "v1", "v2"], transport)
}

/// An index of getindexinfo: the names of Bitcoin Core v30's indexes.
pub fn rpc_index(index: &str) -> &'static str {
    known(
        &["txindex", "coinstatsindex", "basic block filter index"],
        index,
    )
}

/// A method `extractor rpc` calls.
pub fn rpc_method(method: &str) -> &'static str {
    nodescope_proto::rpc::Method::from_name(method).map_or(OTHER, |m| m.name())
}

/// The RPC methods, then `other`.
pub fn rpc_methods() -> impl Iterator<Item = &'static str> {
    nodescope_proto::rpc::Method::ALL
        .iter()
        .map(|m| m.name())
        .chain([OTHER])
}

/// bitcoind's ZMQ topics.
pub const ZMQ_TOPICS: [&str; 5] = ["hashblock", "hashtx", "rawblock", "rawtx", "sequence"];

pub fn zmq_topic(topic: &str) -> &'static str {
    known(&ZMQ_TOPICS, topic)
}

/// The transport of an `extractor p2p` connection.
pub fn peer_transport(transport: &str) -> &'static str {
    known(&["v1", "v2"], transport)
}

/// The classes of why an `extractor p2p` connection ended or failed.
pub const PEER_END_REASONS: [&str; 7] = [
    "closed_by_node",
    "reset",
    "unreachable",
    "idle_timeout",
    "handshake",
    "malformed",
    OTHER,
];

/// The class of the free-text reason an `extractor p2p` connection ended or failed with (its
/// `reason`: "closed by the node", "Connection reset by peer (os error 104)", "malformed: bad
/// checksum", "nothing from the node for 1200s", "BIP324: …", "no version and verack within
/// 30s", "dialling host:port: Connection refused (os error 111)"). A silence or a handshake that
/// did not finish is its own class even when the extractor words it as malformed; a dial that
/// found nobody (refused, no connection in time, a name that does not resolve) is
/// `unreachable`.
pub fn peer_end_reason(reason: &str) -> &'static str {
    let reason = reason.to_ascii_lowercase();
    let has = |parts: &[&str]| parts.iter().any(|p| reason.contains(p));
    if has(&["nothing from the node", "no message for", "idle"]) {
        "idle_timeout"
    } else if has(&[
        "handshake",
        "bip324",
        "no version",
        "verack",
        "of connecting",
        "unreadable version",
    ]) {
        "handshake"
    } else if has(&[
        "reset",
        "broken pipe",
        "aborted",
        "os error 104",
        "os error 32",
    ]) {
        "reset"
    } else if reason.starts_with("dialling ") || has(&["refused", "os error 111"]) {
        "unreachable"
    } else if has(&["closed by the node", "closed"]) {
        "closed_by_node"
    } else if reason.starts_with("malformed") {
        "malformed"
    } else {
        OTHER
    }
}

fn known(set: &[&'static str], value: &str) -> &'static str {
    set.iter().find(|k| **k == value).copied().unwrap_or(OTHER)
}

/// A connection type (`Peer::conn_type`); a string the schema does not know is `other`.
pub fn conn_type(conn_type: i32) -> &'static str {
    match ConnectionType::try_from(conn_type) {
        Ok(ConnectionType::Inbound) => "inbound",
        Ok(ConnectionType::OutboundFullRelay) => "outbound_full_relay",
        Ok(ConnectionType::Manual) => "manual",
        Ok(ConnectionType::Feeler) => "feeler",
        Ok(ConnectionType::BlockRelayOnly) => "block_relay_only",
        Ok(ConnectionType::AddrFetch) => "addr_fetch",
        Ok(ConnectionType::Unknown) | Err(_) => OTHER,
    }
}

/// The direction a connection type implies: only `inbound` connections are inbound.
pub fn conn_direction(conn_type: i32) -> &'static str {
    if conn_type == ConnectionType::Inbound as i32 {
        INBOUND
    } else {
        OUTBOUND
    }
}

/// bitcoind's `Network` of a connection.
pub fn network(network: i32) -> &'static str {
    match Network::try_from(network) {
        Ok(Network::Unroutable) => "unroutable",
        Ok(Network::Ipv4) => "ipv4",
        Ok(Network::Ipv6) => "ipv6",
        Ok(Network::Onion) => "onion",
        Ok(Network::I2p) => "i2p",
        Ok(Network::Cjdns) => "cjdns",
        Ok(Network::Internal) => "internal",
        Err(_) => OTHER,
    }
}

/// The address family of an address announced in addr/addrv2 (BIP155 networks).
pub fn address_family(network: i32) -> &'static str {
    match AddrNetwork::try_from(network) {
        Ok(AddrNetwork::Ipv4) => "ipv4",
        Ok(AddrNetwork::Ipv6) => "ipv6",
        Ok(AddrNetwork::Torv2) => "torv2",
        Ok(AddrNetwork::Torv3) => "torv3",
        Ok(AddrNetwork::I2p) => "i2p",
        Ok(AddrNetwork::Cjdns) => "cjdns",
        Ok(AddrNetwork::Unknown) | Err(_) => OTHER,
    }
}

/// The type of an inventory entry.
pub fn inv_type(inv_type: i32) -> &'static str {
    match InventoryType::try_from(inv_type) {
        Ok(InventoryType::Error) => "error",
        Ok(InventoryType::Tx) => "tx",
        Ok(InventoryType::Block) => "block",
        Ok(InventoryType::FilteredBlock) => "filtered_block",
        Ok(InventoryType::CompactBlock) => "compact_block",
        Ok(InventoryType::Wtx) => "wtx",
        Ok(InventoryType::WitnessTx) => "witness_tx",
        Ok(InventoryType::WitnessBlock) => "witness_block",
        Ok(InventoryType::FilteredWitnessBlock) => "filtered_witness_block",
        Ok(InventoryType::Unknown) | Err(_) => OTHER,
    }
}

/// Why a transaction left the mempool.
pub fn removal_reason(reason: i32) -> &'static str {
    match RemovalReason::try_from(reason) {
        Ok(RemovalReason::Expiry) => "expiry",
        Ok(RemovalReason::Sizelimit) => "sizelimit",
        Ok(RemovalReason::Reorg) => "reorg",
        Ok(RemovalReason::Block) => "block",
        Ok(RemovalReason::Conflict) => "conflict",
        Ok(RemovalReason::Replaced) => "replaced",
        Ok(RemovalReason::Unknown) | Err(_) => OTHER,
    }
}

/// The class of a mempool reject reason (`TxValidationState::GetRejectReason()` of Bitcoin Core
/// v30, e.g. `min relay fee not met`, `txn-mempool-conflict`). Reasons may carry a debug suffix
/// (`mandatory-script-verify-flag-failed (…)`), hence prefixes.
pub fn reject_class(reason: &str) -> &'static str {
    const CLASSES: &[(&str, &[&str])] = &[
        (
            "fee",
            &[
                "min relay fee not met",
                "mempool min fee not met",
                "insufficient fee",
                "min-fee-not-met",
                "max-fee-exceeded",
                "absurdly-high-fee",
            ],
        ),
        (
            "duplicate",
            &[
                "txn-already-in-mempool",
                "txn-already-known",
                "txn-same-nonwitness-data-in-mempool",
            ],
        ),
        (
            "missing_inputs",
            &["bad-txns-inputs-missingorspent", "missing-inputs"],
        ),
        (
            "conflict",
            &[
                "txn-mempool-conflict",
                "bip125-replacement-disallowed",
                "too many potential replacements",
                "replacement-adds-unconfirmed",
                "bad-txns-spends-conflicting-tx",
            ],
        ),
        ("non_final", &["non-final", "non-BIP68-final"]),
        (
            "mempool_limits",
            &[
                "too-long-mempool-chain",
                "too-large-cluster",
                "mempool full",
                "package-mempool-limits",
            ],
        ),
        (
            "nonstandard",
            &[
                "version",
                "tx-size",
                "scriptsig-size",
                "scriptsig-not-pushonly",
                "scriptpubkey",
                "bare-multisig",
                "dust",
                "multi-op-return",
                "datacarrier",
                "bad-txns-nonstandard-inputs",
                "bad-witness-nonstandard",
                "bad-txns-too-many-sigops",
                "non-mandatory-script-verify-flag",
                "tx-size-small",
                "unexpected-witness",
                "non-witness-inputs",
            ],
        ),
        (
            "consensus",
            &[
                "mandatory-script-verify-flag-failed",
                "bad-txns-",
                "bad-tx",
                "coinbase",
            ],
        ),
    ];
    CLASSES
        .iter()
        .find(|(_, prefixes)| prefixes.iter().any(|p| reason.starts_with(p)))
        .map_or(OTHER, |(class, _)| class)
}

/// The class of a `Misbehaving()` message of Bitcoin Core v30 (net_processing.cpp). Since v28
/// every misbehaviour discourages the peer; the message says why.
pub fn misbehaving_class(message: &str) -> &'static str {
    match message {
        // MaybePunishNodeForBlock/-Tx on a consensus failure pass no message.
        "" => "consensus",
        "header with invalid proof of work"
        | "non-continuous headers sequence"
        | "invalid header received" => "invalid_header",
        "mutated block" => "invalid_block",
        _ if message.starts_with("invalid compact block") => "invalid_block",
        "getblocktxn with out-of-bounds tx indices" => "invalid_request",
        "too-large bloom filter" | "bad filteradd message" => "bloom_filter",
        // "addr message size = 1001", "inv message size = …", "headers message size = …"
        _ if message.contains(" message size = ") => "oversized_message",
        _ => OTHER,
    }
}

/// A coin selection algorithm (`SelectionAlgorithm` names).
pub fn algorithm(algorithm: &str) -> &'static str {
    match algorithm {
        "bnb" => "bnb",
        "knapsack" => "knapsack",
        "srd" => "srd",
        "cg" => "cg",
        "manual" => "manual",
        _ => OTHER,
    }
}

/// Which Bitcoin Core numbering of `FlushStateMode` names the flush modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlushModes {
    V30,
    V31,
}

pub fn flush_mode(mode: u32, modes: FlushModes) -> &'static str {
    const V30: &[&str] = &["none", "if_needed", "periodic", "always"];
    const V31: &[&str] = &["none", "if_needed", "periodic", "force_flush", "force_sync"];
    let names = match modes {
        FlushModes::V30 => V30,
        FlushModes::V31 => V31,
    };
    names.get(mode as usize).copied().unwrap_or(OTHER)
}

pub fn bool_label(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

/// `provider:name` of every tracepoint the extractor reports drops for, made once.
static TRACEPOINTS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    Tracepoint::ALL
        .iter()
        .map(|tp| &*Box::leak(tp.to_string().into_boxed_str()))
        .collect()
});

/// The tracepoints of Bitcoin Core v30 (`provider:name`), then `other`.
pub fn tracepoints() -> impl Iterator<Item = &'static str> {
    TRACEPOINTS.iter().copied().chain([OTHER])
}

/// A tracepoint name from an `ExtractorStats` map key.
pub fn tracepoint(key: &str) -> &'static str {
    TRACEPOINTS
        .iter()
        .find(|tp| **tp == key)
        .copied()
        .unwrap_or(OTHER)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every enum whose values index series by [`enum_slot`] has fewer values than
    /// [`ENUM_SLOTS`], and its 0 has the label of the values it does not know.
    #[test]
    fn enum_slots_hold_every_known_value() {
        use nodescope_proto::ExtractorKind;
        fn check<E: TryFrom<i32>>(label: impl Fn(i32) -> &'static str) {
            for value in ENUM_SLOTS as i32..1000 {
                assert!(E::try_from(value).is_err(), "{value} is known");
            }
            for unknown in [-1, ENUM_SLOTS as i32, i32::MAX, i32::MIN] {
                assert_eq!(enum_slot(unknown), 0);
                assert_eq!(label(unknown), label(0));
            }
        }
        check::<ExtractorKind>(nodescope_consumer::extractor_name);
        check::<ConnectionType>(conn_type);
        check::<InventoryType>(inv_type);
        check::<AddrNetwork>(address_family);
        check::<RemovalReason>(removal_reason);
    }

    #[test]
    fn free_form_strings_fall_into_closed_sets() {
        assert_eq!(MSG_TYPE_LABELS[msg_type_index("inv")], "inv");
        assert_eq!(MSG_TYPE_LABELS[msg_type_index("nonsense")], OTHER);
        assert_eq!(reject_class("min relay fee not met"), "fee");
        assert_eq!(reject_class("insufficient fee"), "fee");
        assert_eq!(reject_class("txn-mempool-conflict"), "conflict");
        assert_eq!(
            reject_class("bad-txns-inputs-missingorspent"),
            "missing_inputs"
        );
        assert_eq!(
            reject_class("mandatory-script-verify-flag-failed (Script evaluated without error but finished with a false/empty top stack element)"),
            "consensus"
        );
        assert_eq!(reject_class("bad-txns-vout-negative"), "consensus");
        assert_eq!(reject_class("dust"), "nonstandard");
        assert_eq!(reject_class("too-long-mempool-chain"), "mempool_limits");
        assert_eq!(reject_class("something new"), OTHER);
        assert_eq!(
            misbehaving_class("addr message size = 1001"),
            "oversized_message"
        );
        assert_eq!(
            misbehaving_class("header with invalid proof of work"),
            "invalid_header"
        );
        assert_eq!(
            misbehaving_class("invalid compact block/non-matching block transactions"),
            "invalid_block"
        );
        assert_eq!(misbehaving_class(""), "consensus");
        assert_eq!(misbehaving_class("who knows"), OTHER);
        assert_eq!(flush_mode(3, FlushModes::V30), "always");
        assert_eq!(flush_mode(3, FlushModes::V31), "force_flush");
        assert_eq!(flush_mode(9, FlushModes::V31), OTHER);
        assert_eq!(tracepoint("net:inbound_message"), "net:inbound_message");
        assert_eq!(tracepoint("net:nope"), OTHER);
        assert_eq!(tracepoints().count(), 21);
        assert_eq!(
            CORE_MSG_TYPES[core_msg_type_index("sendtxrcncl")],
            "sendtxrcncl"
        );
        assert_eq!(CORE_MSG_TYPES[core_msg_type_index("reject")], CORE_OTHER);
        assert_eq!(CORE_MSG_TYPES[core_msg_type_index("")], CORE_OTHER);
        assert_eq!(CORE_MSG_TYPES[core_msg_type_index("*other*")], CORE_OTHER);
        assert_eq!(
            rpc_network("not_publicly_routable"),
            "not_publicly_routable"
        );
        assert_eq!(rpc_network("internal"), OTHER);
        assert_eq!(rpc_connection_type("block-relay-only"), "block-relay-only");
        assert_eq!(rpc_connection_type("block_relay_only"), OTHER);
        assert_eq!(rpc_transport("v3"), OTHER);
        assert_eq!(
            rpc_index("basic block filter index"),
            "basic block filter index"
        );
        assert_eq!(rpc_index("txospenderindex"), OTHER);
        assert_eq!(rpc_method("getpeerinfo"), "getpeerinfo");
        assert_eq!(rpc_method("stop"), OTHER);
        assert_eq!(rpc_methods().count(), 14);
        assert_eq!(zmq_topic("rawtx"), "rawtx");
        assert_eq!(zmq_topic("pubhashblock"), OTHER);
        for (reason, class) in [
            ("closed by the node", "closed_by_node"),
            ("connection reset", "reset"),
            ("Connection reset by peer (os error 104)", "reset"),
            ("Broken pipe (os error 32)", "reset"),
            ("no message for 1200 s", "idle_timeout"),
            ("malformed: nothing from the node for 1200s", "idle_timeout"),
            ("malformed: bad checksum", "malformed"),
            ("malformed: a frame of 40000000 bytes", "malformed"),
            ("BIP324 handshake failed: garbage terminator", "handshake"),
            ("BIP324: decryption failed", "handshake"),
            ("malformed: no version and verack within 30s", "handshake"),
            ("malformed: nothing within 30s of connecting", "handshake"),
            ("malformed: an unreadable version", "handshake"),
            (
                "dialling 127.0.0.1:8555: Connection refused (os error 111)",
                "unreachable",
            ),
            (
                "dialling node:8333: failed to lookup address",
                "unreachable",
            ),
            (
                "dialling 10.0.0.1:8333: malformed: no connection to 10.0.0.1:8333 within 30s",
                "unreachable",
            ),
            (
                "dialling 10.0.0.1:8333: BIP324: handshake failed: bad magic",
                "handshake",
            ),
            ("something new", OTHER),
            ("", OTHER),
        ] {
            assert_eq!(peer_end_reason(reason), class, "{reason}");
            assert!(PEER_END_REASONS.contains(&class));
        }
        assert_eq!(peer_transport("v2"), "v2");
        assert_eq!(peer_transport(""), OTHER);
    }
}
