//! P2P message decoding: a payload (the bytes after the 24-byte header) and its message type
//! become a [`P2pMessage`] with a typed body, decoded with rust-bitcoin.
//!
//! [`decode_p2p`] never panics and never loses a message: a message it cannot decode keeps its
//! bytes in `raw` with a `decode_error` saying what failed at which byte; an unknown message type
//! keeps its bytes with `unknown_type` set.

mod addr;
mod decode;
mod reader;
#[doc(hidden)]
pub mod samples;
mod transcode;
pub mod wire;

use crate::p2p_message::Body;
use crate::P2pMessage;

pub use addr::{base32, service_names, sha3_256, torv3};

/// What [`decode_p2p`] keeps besides the decoded body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Also keep the payload bytes in `raw` when decoding succeeds (they are always kept when it
    /// fails or the type is unknown).
    pub keep_raw: bool,
}

/// The 36 message types nodescope decodes (Bitcoin Core v30 sends or receives them).
pub const MESSAGE_TYPES: &[&str] = &[
    "version",
    "verack",
    "ping",
    "pong",
    "addr",
    "addrv2",
    "sendaddrv2",
    "getaddr",
    "inv",
    "getdata",
    "notfound",
    "tx",
    "block",
    "headers",
    "getheaders",
    "getblocks",
    "cmpctblock",
    "sendcmpct",
    "getblocktxn",
    "blocktxn",
    "feefilter",
    "sendheaders",
    "wtxidrelay",
    "mempool",
    "merkleblock",
    "filterload",
    "filteradd",
    "filterclear",
    "getcfilters",
    "cfilter",
    "getcfheaders",
    "cfheaders",
    "getcfcheckpt",
    "cfcheckpt",
    "alert",
    "reject",
];

/// Whether `msg_type` is one of [`MESSAGE_TYPES`].
pub fn is_known_type(msg_type: &str) -> bool {
    MESSAGE_TYPES.contains(&msg_type)
}

/// Decodes the payload of a P2P message of type `msg_type`. `size` is the payload size bitcoind
/// reported; `payload` may be shorter when the capture was cut (then nothing is decoded).
///
/// Never panics, for any input: should a decoder bug panic, the panic is caught and reported as
/// a decode error.
pub fn decode_p2p(msg_type: &str, payload: &[u8], size: u64, options: DecodeOptions) -> P2pMessage {
    decode_p2p_owned(msg_type.to_string(), payload, size, options)
}

/// [`decode_p2p`] taking the message type as an owned string, which becomes the message's
/// `msg_type` without a copy (the extractor decodes every message it traces).
pub fn decode_p2p_owned(
    msg_type: String,
    payload: &[u8],
    size: u64,
    options: DecodeOptions,
) -> P2pMessage {
    let mut message = P2pMessage::default();
    decode_p2p_into(&mut message, msg_type, payload, size, options);
    message
}

/// [`decode_p2p_owned`] into `message` (a default one), where the caller keeps it: a message is
/// large, and the extractor fills it in its place in the event rather than move it there.
pub fn decode_p2p_into(
    message: &mut P2pMessage,
    msg_type: String,
    payload: &[u8],
    size: u64,
    options: DecodeOptions,
) {
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_unnamed(&mut *message, &msg_type, payload, size, options)
    }));
    if decoded.is_err() {
        *message = header(payload, size);
        message.decode_error = format!("{msg_type}: internal decoder error (panic), please report");
        message.raw = payload.to_vec();
    }
    message.msg_type = msg_type;
}

/// [`decode_p2p_into`], except that the body of an inv, getdata or notfound is not built: its
/// encoding (`P2pMessage`'s `body` field, as prost writes it) is appended to `encoded_body`
/// instead, straight from the wire bytes, and `message.body` stays unset. For a publisher that
/// only encodes the message: for these types, the most frequent, building the items cost as much
/// as everything else. Any other type, and any payload that is not exactly a well-formed
/// inventory, is decoded as [`decode_p2p_into`] does (`encoded_body` untouched).
pub fn decode_p2p_encoding_inventory(
    message: &mut P2pMessage,
    msg_type: String,
    payload: &[u8],
    size: u64,
    options: DecodeOptions,
    encoded_body: &mut Vec<u8>,
) {
    if payload.len() as u64 == size && transcode::inventory_body(&msg_type, payload, encoded_body) {
        message.size = size;
        if options.keep_raw {
            message.raw = payload.to_vec();
        }
        message.msg_type = msg_type;
        return;
    }
    decode_p2p_into(message, msg_type, payload, size, options);
}

/// [`decode_p2p`] without the panic guard, for fuzzing (a panic here is a bug to fix).
#[doc(hidden)]
pub fn decode_p2p_unguarded(
    msg_type: &str,
    payload: &[u8],
    size: u64,
    options: DecodeOptions,
) -> P2pMessage {
    let mut message = P2pMessage::default();
    decode_unnamed(&mut message, msg_type, payload, size, options);
    message.msg_type = msg_type.to_string();
    message
}

/// Decodes everything but `msg_type`, which the caller fills in, into `message` (a default
/// one).
fn decode_unnamed(
    message: &mut P2pMessage,
    msg_type: &str,
    payload: &[u8],
    size: u64,
    options: DecodeOptions,
) {
    message.size = size;
    message.truncated = (payload.len() as u64) < size;
    if !is_known_type(msg_type) {
        message.unknown_type = true;
        message.raw = payload.to_vec();
        return;
    }
    if message.truncated {
        message.decode_error = format!("truncated: captured {} of {} bytes", payload.len(), size);
        message.raw = payload.to_vec();
        return;
    }
    match decode::body(msg_type, payload) {
        Ok(body) => {
            message.body = Some(body);
            if options.keep_raw {
                message.raw = payload.to_vec();
            }
        }
        Err(fail) => {
            message.decode_error = fail.render(msg_type);
            message.raw = payload.to_vec();
        }
    }
}

fn header(payload: &[u8], size: u64) -> P2pMessage {
    P2pMessage {
        size,
        truncated: (payload.len() as u64) < size,
        ..Default::default()
    }
}

/// The oneof member name of a body (= its message type).
pub fn body_type(body: &Body) -> &'static str {
    match body {
        Body::Version(_) => "version",
        Body::Verack(_) => "verack",
        Body::Ping(_) => "ping",
        Body::Pong(_) => "pong",
        Body::Addr(_) => "addr",
        Body::Addrv2(_) => "addrv2",
        Body::Sendaddrv2(_) => "sendaddrv2",
        Body::Getaddr(_) => "getaddr",
        Body::Inv(_) => "inv",
        Body::Getdata(_) => "getdata",
        Body::Notfound(_) => "notfound",
        Body::Tx(_) => "tx",
        Body::Block(_) => "block",
        Body::Headers(_) => "headers",
        Body::Getheaders(_) => "getheaders",
        Body::Getblocks(_) => "getblocks",
        Body::Cmpctblock(_) => "cmpctblock",
        Body::Sendcmpct(_) => "sendcmpct",
        Body::Getblocktxn(_) => "getblocktxn",
        Body::Blocktxn(_) => "blocktxn",
        Body::Feefilter(_) => "feefilter",
        Body::Sendheaders(_) => "sendheaders",
        Body::Wtxidrelay(_) => "wtxidrelay",
        Body::Mempool(_) => "mempool",
        Body::Merkleblock(_) => "merkleblock",
        Body::Filterload(_) => "filterload",
        Body::Filteradd(_) => "filteradd",
        Body::Filterclear(_) => "filterclear",
        Body::Getcfilters(_) => "getcfilters",
        Body::Cfilter(_) => "cfilter",
        Body::Getcfheaders(_) => "getcfheaders",
        Body::Cfheaders(_) => "cfheaders",
        Body::Getcfcheckpt(_) => "getcfcheckpt",
        Body::Cfcheckpt(_) => "cfcheckpt",
        Body::Alert(_) => "alert",
        Body::Reject(_) => "reject",
    }
}
