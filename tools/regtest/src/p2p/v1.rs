//! The v1 wire format: `magic | command[12] | length u32 LE | checksum[4] | payload`. The pure
//! pieces live in [`nodescope_proto::p2p::wire`] and are re-exported here so tests can build
//! malformed frames (wrong checksum, oversized length, bad magic) for
//! [`super::RawPeer::send_raw`]; this file adds reading frames from a socket.

use std::io::Read;

use bitcoin::p2p::Magic;

pub use nodescope_proto::p2p::wire::{
    checksum, command_bytes, frame, frame_with, parse_header, Header, HEADER_LEN, MAX_PAYLOAD,
};

/// Reads one frame from the node; the error says why the stream cannot go on.
pub(crate) fn read_frame(
    reader: &mut impl Read,
    magic: Magic,
) -> Result<(String, Vec<u8>), String> {
    let mut header = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut header)
        .map_err(super::describe_read_error)?;
    let header = parse_header(&header);
    if header.magic != magic.to_bytes() {
        return Err(format!(
            "the node sent a frame with magic {:02x?}",
            header.magic
        ));
    }
    let command = header.command.map_err(|e| format!("the node sent a {e}"))?;
    if header.length > MAX_PAYLOAD {
        return Err(format!(
            "the node announced a {}-byte `{command}`",
            header.length
        ));
    }
    let mut payload = vec![0u8; header.length as usize];
    reader
        .read_exact(&mut payload)
        .map_err(super::describe_read_error)?;
    if checksum(&payload) != header.checksum {
        return Err(format!("the node sent `{command}` with a wrong checksum"));
    }
    Ok((command, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_checksums_are_caught() {
        let good = frame(Magic::REGTEST, "ping", &7u64.to_le_bytes());
        let (command, payload) = read_frame(&mut &good[..], Magic::REGTEST).unwrap();
        assert_eq!(
            (command.as_str(), payload),
            ("ping", 7u64.to_le_bytes().to_vec())
        );

        let mut bad = good.clone();
        bad[20] ^= 1;
        let err = read_frame(&mut &bad[..], Magic::REGTEST).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        let err = read_frame(&mut &good[..], Magic::BITCOIN).unwrap_err();
        assert!(err.contains("magic"), "{err}");
    }
}
