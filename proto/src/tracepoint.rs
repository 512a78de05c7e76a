//! Tracepoint arguments → protobuf payload, for every tracepoint of the catalogue.
//!
//! The arguments come from whoever read them (the eBPF extractor, a test's ground truth) as
//! [`ArgValue`]s in the tracepoint's order. Nothing here fails: an argument that is missing (an
//! older bitcoind passes fewer) or of an unexpected kind becomes the field's zero value plus a
//! note in the event's `error`; a string or payload cut at a capture limit is listed in
//! `truncated_fields`.

use extractor_common::{ArgValue, Tracepoint};

use crate::event::Payload;
use crate::p2p::{decode_p2p_encoding_inventory, decode_p2p_into, DecodeOptions};
use crate::{
    ApsCreateTx, AttemptingApsCreateTx, BlockConnected, ClosedConnection, ConnectionType,
    EvictedInboundConnection, FlushModeV30, FlushModeV31, InboundConnection, MempoolAdded,
    MempoolRejected, MempoolRemoved, MempoolReplaced, MisbehavingConnection, NetMessage,
    NormalCreateTx, OutboundConnection, P2pMessage, Peer, RemovalReason, SelectedCoins,
    UtxoCacheCoin, UtxoCacheFlush,
};

/// A payload with what the conversion noticed.
#[derive(Debug, Clone, PartialEq)]
pub struct TracepointPayload {
    pub payload: Payload,
    /// Payload fields cut at a capture limit (`peer.addr`, `message.raw`).
    pub truncated_fields: Vec<String>,
    /// Problems with the arguments, `; `-separated; empty when all were as expected.
    pub error: String,
    /// From [`tracepoint_payload_for_encoding`]: the P2P message's `body` field, encoded (its
    /// `body` is unset then). Empty otherwise.
    pub encoded_body: Vec<u8>,
}

/// Reads arguments by position, noting what is missing, mistyped or truncated. Strings and
/// payloads are moved out, not copied: this runs for every event.
struct Args {
    tracepoint: Tracepoint,
    values: Vec<ArgValue>,
    truncated: Vec<String>,
    problems: Vec<String>,
}

impl Args {
    /// Takes argument `index` out (noting it if missing).
    fn take(&mut self, index: usize) -> Option<ArgValue> {
        match self.values.get_mut(index) {
            Some(value) => Some(std::mem::replace(value, ArgValue::Pointer(0))),
            None => {
                self.problem(index, "missing");
                None
            }
        }
    }

    fn problem(&mut self, index: usize, what: &str) {
        let name = self
            .tracepoint
            .arg_names()
            .get(index)
            .copied()
            .unwrap_or("?");
        self.problems
            .push(format!("argument {} ({name}) {what}", index + 1));
    }

    fn int(&mut self, index: usize) -> i128 {
        match self.values.get(index).map(ArgValue::as_i128) {
            Some(Some(value)) => value,
            Some(None) => {
                self.problem(index, "is not an integer");
                0
            }
            None => {
                self.problem(index, "missing");
                0
            }
        }
    }

    fn i64(&mut self, index: usize) -> i64 {
        self.int(index) as i64
    }

    fn u64(&mut self, index: usize) -> u64 {
        self.int(index) as u64
    }

    fn i32(&mut self, index: usize) -> i32 {
        self.int(index) as i32
    }

    fn u32(&mut self, index: usize) -> u32 {
        self.int(index) as u32
    }

    fn bool(&mut self, index: usize) -> bool {
        self.int(index) != 0
    }

    /// A string argument; `field` names it in `truncated_fields` if it was cut.
    fn string(&mut self, index: usize, field: &str) -> String {
        match self.take(index) {
            Some(ArgValue::Str { bytes, truncated }) => {
                if truncated {
                    self.truncated.push(field.to_string());
                }
                String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
            }
            Some(_) => {
                self.problem(index, "is not a string");
                String::new()
            }
            None => String::new(),
        }
    }

    /// A 32-byte hash argument, in display order.
    fn hash(&mut self, index: usize) -> Vec<u8> {
        match self.take(index) {
            Some(ArgValue::Hash(bytes)) => bytes.iter().rev().copied().collect(),
            Some(_) => {
                self.problem(index, "is not a 32-byte hash");
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// The captured bytes of a payload argument (none when it was not captured).
    fn payload(&mut self, index: usize) -> Vec<u8> {
        match self.take(index) {
            Some(ArgValue::Bytes(bytes)) => bytes,
            _ => Vec::new(),
        }
    }

    fn peer(&mut self) -> Peer {
        let id = self.i64(0);
        let addr = self.string(1, "peer.addr");
        // A known type needs no string (this runs for every message).
        let known = match self.values.get(2) {
            Some(ArgValue::Str {
                bytes,
                truncated: false,
            }) => std::str::from_utf8(bytes).ok().map(connection_type),
            _ => None,
        };
        let (conn_type, conn_type_other) = match known {
            Some(conn_type) if conn_type != ConnectionType::Unknown => (conn_type, String::new()),
            _ => {
                let text = self.string(2, "peer.conn_type");
                (connection_type(&text), text)
            }
        };
        Peer {
            id,
            addr,
            conn_type: conn_type as i32,
            conn_type_other: if conn_type == ConnectionType::Unknown {
                conn_type_other
            } else {
                String::new()
            },
        }
    }
}

fn connection_type(text: &str) -> ConnectionType {
    match text {
        "inbound" => ConnectionType::Inbound,
        "outbound-full-relay" => ConnectionType::OutboundFullRelay,
        "manual" => ConnectionType::Manual,
        "feeler" => ConnectionType::Feeler,
        "block-relay-only" => ConnectionType::BlockRelayOnly,
        "addr-fetch" => ConnectionType::AddrFetch,
        _ => ConnectionType::Unknown,
    }
}

fn removal_reason(text: &str) -> RemovalReason {
    match text {
        "expiry" => RemovalReason::Expiry,
        "sizelimit" => RemovalReason::Sizelimit,
        "reorg" => RemovalReason::Reorg,
        "block" => RemovalReason::Block,
        "conflict" => RemovalReason::Conflict,
        "replaced" => RemovalReason::Replaced,
        _ => RemovalReason::Unknown,
    }
}

/// The payload of one firing of `tracepoint` with `args` in the tracepoint's order.
pub fn tracepoint_payload(
    tracepoint: Tracepoint,
    args: Vec<ArgValue>,
    options: DecodeOptions,
) -> TracepointPayload {
    payload_of(tracepoint, args, options, false)
}

/// [`tracepoint_payload`] for a publisher that only encodes it: an inv, getdata or notfound
/// message's body is left unset and comes encoded in `encoded_body` (see
/// [`decode_p2p_encoding_inventory`]).
pub fn tracepoint_payload_for_encoding(
    tracepoint: Tracepoint,
    args: Vec<ArgValue>,
    options: DecodeOptions,
) -> TracepointPayload {
    payload_of(tracepoint, args, options, true)
}

fn payload_of(
    tracepoint: Tracepoint,
    args: Vec<ArgValue>,
    options: DecodeOptions,
    encoding_inventory: bool,
) -> TracepointPayload {
    let mut encoded_body = Vec::new();
    let argument_count = args.len();
    let mut a = Args {
        tracepoint,
        values: args,
        truncated: Vec::new(),
        problems: Vec::new(),
    };
    use Tracepoint as T;
    let payload = match tracepoint {
        T::NetInboundMessage | T::NetOutboundMessage => {
            let peer = a.peer();
            let msg_type = a.string(3, "message.msg_type");
            let size = a.u64(4);
            let captured = a.payload(5);
            let net_message = NetMessage {
                peer: Some(peer),
                message: Some(P2pMessage::default()),
            };
            let mut payload = if tracepoint == T::NetInboundMessage {
                Payload::InboundMessage(net_message)
            } else {
                Payload::OutboundMessage(net_message)
            };
            // Decoded in its place in the payload: the message is large, and moving it into
            // each enclosing struct in turn was a visible share of the cost per event.
            if let Payload::InboundMessage(NetMessage {
                message: Some(message),
                ..
            })
            | Payload::OutboundMessage(NetMessage {
                message: Some(message),
                ..
            }) = &mut payload
            {
                if encoding_inventory {
                    decode_p2p_encoding_inventory(
                        message,
                        msg_type,
                        &captured,
                        size,
                        options,
                        &mut encoded_body,
                    );
                } else {
                    decode_p2p_into(message, msg_type, &captured, size, options);
                }
                if message.truncated {
                    a.truncated.push("message.raw".to_string());
                }
            }
            payload
        }
        T::NetInboundConnection => Payload::InboundConnection(InboundConnection {
            peer: Some(a.peer()),
            network: a.i32(3),
            inbound_count: a.u64(4),
        }),
        T::NetOutboundConnection => Payload::OutboundConnection(OutboundConnection {
            peer: Some(a.peer()),
            network: a.i32(3),
            outbound_count: a.u64(4),
        }),
        T::NetEvictedInboundConnection => {
            Payload::EvictedInboundConnection(EvictedInboundConnection {
                peer: Some(a.peer()),
                network: a.i32(3),
                connected_since: a.i64(4),
            })
        }
        T::NetMisbehavingConnection => Payload::MisbehavingConnection(MisbehavingConnection {
            peer_id: a.i64(0),
            message: a.string(1, "message"),
        }),
        T::NetClosedConnection => Payload::ClosedConnection(ClosedConnection {
            peer: Some(a.peer()),
            network: a.i32(3),
            connected_since: a.i64(4),
        }),
        T::ValidationBlockConnected => Payload::BlockConnected(BlockConnected {
            hash: a.hash(0),
            height: a.i32(1),
            transactions: a.u64(2),
            inputs: a.i32(3),
            sigop_cost: a.i64(4),
            duration_ns: a.i64(5),
        }),
        T::UtxocacheFlush => {
            let mode = a.u32(1);
            Payload::UtxocacheFlush(UtxoCacheFlush {
                duration_us: a.i64(0),
                mode,
                mode_v30: FlushModeV30::try_from(mode as i32).map_or(mode as i32, |m| m as i32),
                mode_v31: FlushModeV31::try_from(mode as i32).map_or(mode as i32, |m| m as i32),
                coins_count: a.u64(2),
                coins_mem_usage: a.u64(3),
                for_prune: a.bool(4),
            })
        }
        T::UtxocacheAdd | T::UtxocacheSpent | T::UtxocacheUncache => {
            let coin = UtxoCacheCoin {
                txid: a.hash(0),
                vout: a.u32(1),
                height: a.u32(2),
                value: a.i64(3),
                coinbase: a.bool(4),
            };
            match tracepoint {
                T::UtxocacheAdd => Payload::UtxocacheAdd(coin),
                T::UtxocacheSpent => Payload::UtxocacheSpent(coin),
                _ => Payload::UtxocacheUncache(coin),
            }
        }
        T::CoinSelectionSelectedCoins => Payload::SelectedCoins(SelectedCoins {
            wallet: a.string(0, "wallet"),
            algorithm: a.string(1, "algorithm"),
            target: a.i64(2),
            waste: a.i64(3),
            selected_value: a.i64(4),
        }),
        T::CoinSelectionNormalCreateTxInternal => Payload::NormalCreateTxInternal(NormalCreateTx {
            wallet: a.string(0, "wallet"),
            success: a.bool(1),
            fee: a.i64(2),
            change_pos: a.i32(3),
        }),
        T::CoinSelectionAttemptingApsCreateTx => {
            Payload::AttemptingApsCreateTx(AttemptingApsCreateTx {
                wallet: a.string(0, "wallet"),
            })
        }
        T::CoinSelectionApsCreateTxInternal => Payload::ApsCreateTxInternal(ApsCreateTx {
            wallet: a.string(0, "wallet"),
            use_aps: a.bool(1),
            success: a.bool(2),
            fee: a.i64(3),
            change_pos: a.i32(4),
        }),
        T::MempoolAdded => Payload::MempoolAdded(MempoolAdded {
            txid: a.hash(0),
            vsize: a.i32(1),
            fee: a.i64(2),
        }),
        T::MempoolRemoved => {
            let txid = a.hash(0);
            let reason_text = a.string(1, "reason");
            let reason = removal_reason(&reason_text);
            Payload::MempoolRemoved(MempoolRemoved {
                txid,
                reason: reason as i32,
                reason_other: if reason == RemovalReason::Unknown {
                    reason_text
                } else {
                    String::new()
                },
                vsize: a.i32(2),
                fee: a.i64(3),
                entry_time: a.u64(4),
            })
        }
        T::MempoolReplaced => Payload::MempoolReplaced(MempoolReplaced {
            replaced_txid: a.hash(0),
            replaced_vsize: a.i32(1),
            replaced_fee: a.i64(2),
            replaced_entry_time: a.u64(3),
            replacement_id: a.hash(4),
            replacement_vsize: a.i32(5),
            replacement_fee: a.i64(6),
            // v25-v28 pass 7 arguments; their replacement was always a transaction.
            replaced_by_transaction: if argument_count > 7 { a.bool(7) } else { true },
        }),
        T::MempoolRejected => Payload::MempoolRejected(MempoolRejected {
            txid: a.hash(0),
            reason: a.string(1, "reason"),
        }),
    };
    TracepointPayload {
        payload,
        truncated_fields: a.truncated,
        error: a.problems.join("; "),
        encoded_body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> ArgValue {
        ArgValue::Str {
            bytes: s.as_bytes().to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn missing_and_mistyped_arguments_are_noted_not_fatal() {
        let converted = tracepoint_payload(
            Tracepoint::MempoolAdded,
            vec![ArgValue::Unsigned(5), ArgValue::Signed(141)],
            DecodeOptions::default(),
        );
        let Payload::MempoolAdded(added) = converted.payload else {
            panic!()
        };
        assert_eq!((added.txid.len(), added.vsize, added.fee), (0, 141, 0));
        assert_eq!(
            converted.error,
            "argument 1 (txid) is not a 32-byte hash; argument 3 (fee) missing"
        );
    }

    #[test]
    fn truncated_strings_are_listed_and_unknown_names_kept() {
        let args = [
            ArgValue::Signed(7),
            ArgValue::Str {
                bytes: b"very-long-host".to_vec(),
                truncated: true,
            },
            text("private-broadcast"),
            ArgValue::Unsigned(1),
            ArgValue::Unsigned(3),
        ];
        let converted = tracepoint_payload(
            Tracepoint::NetOutboundConnection,
            args.to_vec(),
            DecodeOptions::default(),
        );
        assert_eq!(converted.truncated_fields, ["peer.addr"]);
        let Payload::OutboundConnection(connection) = converted.payload else {
            panic!()
        };
        let peer = connection.peer.unwrap();
        assert_eq!(peer.conn_type, ConnectionType::Unknown as i32);
        assert_eq!(peer.conn_type_other, "private-broadcast");
        assert!(converted.error.is_empty());
    }

    #[test]
    fn replaced_from_v25_to_v28_has_seven_arguments() {
        let hash = ArgValue::Hash([1; 32]);
        let args = [
            hash.clone(),
            ArgValue::Signed(1),
            ArgValue::Signed(2),
            ArgValue::Unsigned(3),
            hash,
            ArgValue::Signed(4),
            ArgValue::Signed(5),
        ];
        let converted = tracepoint_payload(
            Tracepoint::MempoolReplaced,
            args.to_vec(),
            DecodeOptions::default(),
        );
        let Payload::MempoolReplaced(replaced) = converted.payload else {
            panic!()
        };
        assert!(replaced.replaced_by_transaction);
        assert!(converted.error.is_empty());
    }

    #[test]
    fn flush_mode_has_both_meanings() {
        let flush = |mode: u64| {
            let args = [
                ArgValue::Signed(10),
                ArgValue::Unsigned(mode),
                ArgValue::Unsigned(1),
                ArgValue::Unsigned(2),
                ArgValue::Bool(false),
            ];
            match tracepoint_payload(
                Tracepoint::UtxocacheFlush,
                args.to_vec(),
                DecodeOptions::default(),
            )
            .payload
            {
                Payload::UtxocacheFlush(flush) => flush,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(flush(3).mode_v30, FlushModeV30::Always as i32);
        assert_eq!(flush(3).mode_v31, FlushModeV31::ForceFlush as i32);
        assert_eq!(flush(4).mode_v30, 4, "no v30 name: the number stays");
        assert_eq!(flush(4).mode_v31, FlushModeV31::ForceSync as i32);
    }
}
