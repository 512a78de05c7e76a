//! nodescope's event schema (`proto/*.proto`), generated with prost, and what every producer
//! and consumer shares about it: P2P payload decoding, tracepoint payloads, subjects, JSON.

#[allow(clippy::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/nodescope.v1.rs"));
}

pub use generated::*;

pub mod json;
mod names;
pub mod p2p;
pub mod rpc;
pub mod subjects;
pub mod tracepoint;

pub use subjects::Category;
pub use tracepoint::{tracepoint_payload, tracepoint_payload_for_encoding, TracepointPayload};
