//! `unreadable`: tracepoints whose pointer arguments point at memory the tracer cannot read, as a
//! buggy or racing caller could produce, each between two normal firings of the same tracepoint
//! so that a test can check the tracer marks the bad one and goes on.
//!
//! The addresses are never dereferenced here nor by the C probe functions, which only hand them
//! to the probe; a tracer reads them with fault-tolerant reads (`bpf_probe_read_user`).

use extractor_common::Tracepoint as T;

use crate::scenario::conn_type;
use crate::sim::{bytes, int, string, unreadable, Sim};

/// An address in the never-mapped first page: every read of it faults.
pub const UNREADABLE_ADDRESS: usize = 0x10;

/// The size argument of the inbound message whose payload pointer is unreadable.
pub const UNREADABLE_PAYLOAD_SIZE: usize = 100;

const PEER_ID: i64 = 7;
const PEER_ADDR: &str = "127.0.0.1:52841";

/// Fires the scenario once (nine events, three of them with an unreadable argument when every
/// tracepoint is active). `run` (0-based repetition) varies the content.
pub fn unreadable_scenario(sim: &mut Sim<'_>, run: u64) {
    let peer_id = PEER_ID + run as i64;
    let txid = |n: u8| {
        let mut id = [0u8; 32];
        for (i, b) in id.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7) ^ n ^ run as u8;
        }
        id
    };
    let ping = |nonce: u64| {
        let payload = nonce.to_le_bytes();
        move || {
            vec![
                int(peer_id),
                string(PEER_ADDR),
                string(conn_type::INBOUND),
                string("ping"),
                int(payload.len() as u64),
                bytes(payload),
            ]
        }
    };

    // A misbehaving peer whose message string cannot be read.
    let misbehaving = |message: &str| {
        let message = string(message);
        move || vec![int(peer_id), message]
    };
    sim.emit(
        T::NetMisbehavingConnection,
        misbehaving("header with invalid proof of work"),
    );
    sim.emit(T::NetMisbehavingConnection, || {
        vec![int(peer_id), unreadable(UNREADABLE_ADDRESS)]
    });
    sim.emit(
        T::NetMisbehavingConnection,
        misbehaving("non-continuous headers sequence"),
    );

    // A mempool entry whose txid cannot be read.
    sim.emit(T::MempoolAdded, || {
        vec![bytes(txid(1)), int(141i32), int(1_410i64)]
    });
    sim.emit(T::MempoolAdded, || {
        vec![unreadable(UNREADABLE_ADDRESS), int(222i32), int(4_440i64)]
    });
    sim.emit(T::MempoolAdded, || {
        vec![bytes(txid(3)), int(110i32), int(2_200i64)]
    });

    // An inbound message whose payload cannot be read; its strings are fine.
    sim.emit(T::NetInboundMessage, ping(0x0123_4567_89ab_cdef ^ run));
    sim.emit(T::NetInboundMessage, || {
        vec![
            int(peer_id),
            string(PEER_ADDR),
            string(conn_type::INBOUND),
            string("tx"),
            int(UNREADABLE_PAYLOAD_SIZE as u64),
            unreadable(UNREADABLE_ADDRESS),
        ]
    });
    sim.emit(T::NetInboundMessage, ping(0xfedc_ba98_7654_3210 ^ run));
}
