//! The v1 wire format: `magic | command[12] | length u32 LE | checksum[4] | payload`, the
//! checksum being the first 4 bytes of the payload's double SHA-256. Public so tests can build
//! malformed frames (wrong checksum, oversized length, bad magic) for [`super::RawPeer::send_raw`].

use std::io::Read;

use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::Magic;

/// Bytes in a v1 header.
pub const HEADER_LEN: usize = 24;
/// Bitcoin Core's `MAX_PROTOCOL_MESSAGE_LENGTH`: larger length headers get the peer dropped.
pub const MAX_PAYLOAD: u32 = 4_000_000;

/// The v1 checksum of `payload`.
pub fn checksum(payload: &[u8]) -> [u8; 4] {
    let hash = sha256d::Hash::hash(payload).to_byte_array();
    [hash[0], hash[1], hash[2], hash[3]]
}

/// `command` NUL-padded to 12 bytes, or `None` if it is longer than 12 bytes or not ASCII.
pub fn command_bytes(command: &str) -> Option<[u8; 12]> {
    if command.len() > 12 || !command.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 12];
    bytes[..command.len()].copy_from_slice(command.as_bytes());
    Some(bytes)
}

/// A correct frame.
///
/// # Panics
/// If `command` is longer than 12 bytes or not ASCII (a bug in the test; use
/// [`frame_with`] to send such bytes on purpose).
pub fn frame(magic: Magic, command: &str, payload: &[u8]) -> Vec<u8> {
    let command = command_bytes(command)
        .unwrap_or_else(|| panic!("P2P command {command:?} is not 1-12 ASCII bytes"));
    frame_with(
        magic.to_bytes(),
        command,
        payload.len() as u32,
        checksum(payload),
        payload,
    )
}

/// A frame with every header field given, right or wrong.
pub fn frame_with(
    magic: [u8; 4],
    command: [u8; 12],
    length: u32,
    checksum: [u8; 4],
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&magic);
    frame.extend_from_slice(&command);
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(&checksum);
    frame.extend_from_slice(payload);
    frame
}

/// Reads one frame from the node; the error says why the stream cannot go on.
pub(crate) fn read_frame(
    reader: &mut impl Read,
    magic: Magic,
) -> Result<(String, Vec<u8>), String> {
    let mut header = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut header)
        .map_err(super::describe_read_error)?;
    if header[..4] != magic.to_bytes() {
        return Err(format!(
            "the node sent a frame with magic {:02x?}",
            &header[..4]
        ));
    }
    let command = parse_command(&header[4..16])?;
    let length = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
    if length > MAX_PAYLOAD {
        return Err(format!("the node announced a {length}-byte `{command}`"));
    }
    let mut payload = vec![0u8; length as usize];
    reader
        .read_exact(&mut payload)
        .map_err(super::describe_read_error)?;
    if checksum(&payload) != header[20..24] {
        return Err(format!("the node sent `{command}` with a wrong checksum"));
    }
    Ok((command, payload))
}

/// The command of a 12-byte NUL-padded field.
pub(crate) fn parse_command(field: &[u8]) -> Result<String, String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let (name, padding) = field.split_at(end);
    if !name.is_ascii() || padding.iter().any(|&b| b != 0) {
        return Err(format!("the node sent a malformed command {field:02x?}"));
    }
    Ok(String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verack_frame_is_the_well_known_bytes() {
        // The empty payload's checksum is 5df6e0e2.
        let frame = frame(Magic::REGTEST, "verack", &[]);
        assert_eq!(frame.len(), HEADER_LEN);
        assert_eq!(&frame[..4], &[0xfa, 0xbf, 0xb5, 0xda]);
        assert_eq!(&frame[4..16], b"verack\0\0\0\0\0\0");
        assert_eq!(&frame[20..], &[0x5d, 0xf6, 0xe0, 0xe2]);
    }

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

    #[test]
    fn commands_longer_than_12_bytes_are_refused() {
        assert!(command_bytes("sendaddrv2").is_some());
        assert!(command_bytes("thirteen_byte").is_none());
    }
}
