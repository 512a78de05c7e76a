//! `cargo +nightly fuzz run decode_p2p` (from proto/): the first byte picks the message type
//! (one of the 36, or an unknown one), the rest is the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodescope_proto::p2p::{decode_p2p_unguarded, DecodeOptions, MESSAGE_TYPES};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let msg_type = MESSAGE_TYPES
        .get(selector as usize % (MESSAGE_TYPES.len() + 1))
        .copied()
        .unwrap_or("foo");
    let m = decode_p2p_unguarded(
        msg_type,
        payload,
        payload.len() as u64,
        DecodeOptions::default(),
    );
    assert_eq!(m.msg_type, msg_type);
    assert!(m.body.is_some() || m.unknown_type || !m.decode_error.is_empty());
    assert!(m.body.is_some() || m.raw == payload);
    assert!(m.body.is_none() || m.decode_error.is_empty());
});
