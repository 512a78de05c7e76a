//! The v1 wire format: `magic | command[12] | length u32 LE | checksum[4] | payload`, the
//! checksum being the first 4 bytes of the payload's double SHA-256. Pure functions, no IO, so
//! every reader and writer of frames (the regtest harness, the connectivity check) agrees.

use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::consensus::serialize;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::Network;

/// Bitcoin Core v30's `PROTOCOL_VERSION`, which nodescope's own peers announce.
pub const PROTOCOL_VERSION: u32 = 70016;

/// Bytes in a v1 header.
pub const HEADER_LEN: usize = 24;
/// Bitcoin Core's `MAX_PROTOCOL_MESSAGE_LENGTH`: larger length headers get the peer dropped.
pub const MAX_PAYLOAD: u32 = 4_000_000;

/// Bitcoin Core v30's `ALL_NET_MESSAGE_TYPES` (src/protocol.h): the keys getpeerinfo's
/// `bytessent_per_msg` / `bytesrecv_per_msg` name; the bytes of any other type are counted under
/// [`CORE_OTHER`].
pub const CORE_MESSAGE_TYPES: [&str; 35] = [
    "version",
    "verack",
    "addr",
    "addrv2",
    "sendaddrv2",
    "inv",
    "getdata",
    "merkleblock",
    "getblocks",
    "getheaders",
    "tx",
    "headers",
    "block",
    "getaddr",
    "mempool",
    "ping",
    "pong",
    "notfound",
    "filterload",
    "filteradd",
    "filterclear",
    "sendheaders",
    "feefilter",
    "sendcmpct",
    "cmpctblock",
    "getblocktxn",
    "blocktxn",
    "getcfilters",
    "cfilter",
    "getcfheaders",
    "cfheaders",
    "getcfcheckpt",
    "cfcheckpt",
    "wtxidrelay",
    "sendtxrcncl",
];

/// Core's `NET_MESSAGE_TYPE_OTHER`.
pub const CORE_OTHER: &str = "*other*";

/// BIP324's short message ids, indexed by id (0 means "12-byte type follows"); Core's
/// `V2_MESSAGE_IDS` (ids 29-32 are assigned but unused).
pub const V2_SHORT_IDS: [&str; 29] = [
    "",
    "addr",
    "block",
    "blocktxn",
    "cmpctblock",
    "feefilter",
    "filteradd",
    "filterclear",
    "filterload",
    "getblocks",
    "getblocktxn",
    "getdata",
    "getheaders",
    "headers",
    "inv",
    "mempool",
    "merkleblock",
    "notfound",
    "ping",
    "pong",
    "sendcmpct",
    "tx",
    "getcfilters",
    "cfilter",
    "getcfheaders",
    "cfheaders",
    "getcfcheckpt",
    "cfcheckpt",
    "addrv2",
];

/// The BIP324 short id of `command`, if it has one.
pub fn v2_short_id(command: &str) -> Option<u8> {
    V2_SHORT_IDS
        .iter()
        .skip(1)
        .position(|&c| c == command)
        .map(|i| i as u8 + 1)
}

/// The contents of a v2 packet carrying `command` and `payload`: the short id, or `0x00` and the
/// 12-byte command as in v1; `None` if the command is not 1-12 ASCII bytes.
pub fn v2_contents(command: &str, payload: &[u8]) -> Option<Vec<u8>> {
    let mut contents = Vec::with_capacity(13 + payload.len());
    match v2_short_id(command) {
        Some(id) => contents.push(id),
        None => {
            contents.push(0);
            contents.extend_from_slice(&command_bytes(command)?);
        }
    }
    contents.extend_from_slice(payload);
    Some(contents)
}

/// The command and payload in a v2 packet's contents.
pub fn parse_v2_contents(contents: &[u8]) -> Result<(String, Vec<u8>), String> {
    match contents.split_first() {
        None => Err("an empty v2 packet".to_string()),
        Some((0, rest)) if rest.len() >= 12 => {
            let command = parse_command(&rest[..12])?;
            Ok((command, rest[12..].to_vec()))
        }
        Some((0, _)) => Err("a v2 packet with a truncated command".to_string()),
        Some((&id, rest)) => match V2_SHORT_IDS.get(usize::from(id)) {
            Some(command) => Ok((command.to_string(), rest.to_vec())),
            None => Err(format!("unknown v2 short id {id}")),
        },
    }
}

/// BIP324: 3 bytes of encrypted length, 1 header byte, 16 bytes of tag.
pub const V2_EXPANSION: u64 = 3 + 1 + 16;

/// What Core counts in `bytes{sent,recv}_per_msg` for one message besides its payload: v1's
/// 24-byte header; v2's expansion and the type, 1 byte with a short id, 13 without.
pub const fn core_framing_bytes(v2: bool, short_id: bool) -> u64 {
    match (v2, short_id) {
        (false, _) => HEADER_LEN as u64,
        (true, true) => V2_EXPANSION + 1,
        (true, false) => V2_EXPANSION + 13,
    }
}

/// A parsed v1 header. Every field is kept as sent, so a caller can tell "another network's
/// P2P" (well-formed command, other magic) from "not P2P at all".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub magic: [u8; 4],
    /// The command, or why the 12-byte field is not a NUL-padded ASCII command.
    pub command: Result<String, String>,
    pub length: u32,
    pub checksum: [u8; 4],
}

/// Splits a 24-byte header into its fields.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> Header {
    let field = |range: std::ops::Range<usize>| -> [u8; 4] {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&header[range]);
        bytes
    };
    Header {
        magic: field(0..4),
        command: parse_command(&header[4..16]),
        length: u32::from_le_bytes(field(16..20)),
        checksum: field(20..24),
    }
}

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
/// If `command` is longer than 12 bytes or not ASCII (a bug in the caller; use
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

/// The command of a 12-byte NUL-padded field. Stricter than Bitcoin Core, which also takes
/// spaces and an empty command: no message type has them, and refusing them keeps text
/// protocols (`HTTP/1.1 400 Bad Request`) from passing for P2P.
pub fn parse_command(field: &[u8]) -> Result<String, String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let (name, padding) = field.split_at(end);
    let printable = name.iter().all(|b| b.is_ascii_graphic());
    if field.len() != 12 || name.is_empty() || !printable || padding.iter().any(|&b| b != 0) {
        return Err(format!("malformed command {}", hex(field)));
    }
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// The chain of a known magic, as Bitcoin Core names it (`-chain=`): "main", "test",
/// "testnet4", "signet" (the default signet), "regtest".
pub fn chain_of_magic(magic: [u8; 4]) -> Option<&'static str> {
    Network::from_magic(Magic::from_bytes(magic)).map(Network::to_core_arg)
}

/// The magic of a chain named as Bitcoin Core does, or "mainnet", "testnet", "testnet3".
pub fn magic_of_chain(chain: &str) -> Option<Magic> {
    let chain = match chain {
        "mainnet" => "main",
        "testnet" | "testnet3" => "test",
        other => other,
    };
    Network::from_core_arg(chain).ok().map(Magic::from)
}

/// `magic` in hex with its chain, e.g. "f9beb4d9 (main)", "01020304 (unknown network)".
pub fn describe_magic(magic: [u8; 4]) -> String {
    format!(
        "{} ({})",
        hex(&magic),
        chain_of_magic(magic).unwrap_or("unknown network")
    )
}

/// The `version` payload of a nodescope peer: protocol [`PROTOCOL_VERSION`], `services` (what it
/// really offers: nothing but BIP324 at most), the time now.
pub fn version_payload(
    services: ServiceFlags,
    receiver: Address,
    sender: Address,
    nonce: u64,
    user_agent: &str,
    start_height: i32,
    relay: bool,
) -> Vec<u8> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut message = VersionMessage::new(
        services,
        timestamp,
        receiver,
        sender,
        nonce,
        user_agent.to_string(),
        start_height,
    );
    message.version = PROTOCOL_VERSION;
    message.relay = relay;
    serialize(&message)
}

/// A random 64-bit value (version and ping nonces) without a random-number crate: std's hasher
/// keys are random per process, and the time differs per call.
pub fn random_nonce() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one(nanos)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    fn headers_parse_back() {
        let good = frame(Magic::REGTEST, "ping", &7u64.to_le_bytes());
        let header = parse_header(good[..HEADER_LEN].try_into().unwrap());
        assert_eq!(
            header,
            Header {
                magic: Magic::REGTEST.to_bytes(),
                command: Ok("ping".to_string()),
                length: 8,
                checksum: checksum(&7u64.to_le_bytes()),
            }
        );
        let http: &[u8; 24] = b"HTTP/1.1 400 Bad Request";
        assert!(parse_header(http).command.is_err());
    }

    #[test]
    fn malformed_commands_are_caught() {
        assert!(parse_command(b"version\0\0\0\0\0").is_ok());
        assert!(parse_command(b"verack\0x\0\0\0\0").is_err());
        assert!(parse_command(&[0; 12]).is_err());
        assert!(parse_command(b"ver sion\0\0\0\0").is_err());
        assert!(parse_command(b"\xffersion\0\0\0\0\0").is_err());
        assert!(parse_command(b"version").is_err());
    }

    #[test]
    fn commands_longer_than_12_bytes_are_refused() {
        assert!(command_bytes("sendaddrv2").is_some());
        assert!(command_bytes("thirteen_byte").is_none());
    }

    #[test]
    fn magics_name_their_chains_and_back() {
        let chains = [
            ([0xf9, 0xbe, 0xb4, 0xd9], "main"),
            ([0x0b, 0x11, 0x09, 0x07], "test"),
            ([0x1c, 0x16, 0x3f, 0x28], "testnet4"),
            ([0x0a, 0x03, 0xcf, 0x40], "signet"),
            ([0xfa, 0xbf, 0xb5, 0xda], "regtest"),
        ];
        for (magic, chain) in chains {
            assert_eq!(chain_of_magic(magic), Some(chain));
            assert_eq!(magic_of_chain(chain), Some(Magic::from_bytes(magic)));
        }
        assert_eq!(magic_of_chain("mainnet"), Some(Magic::BITCOIN));
        assert_eq!(magic_of_chain("testnet"), Some(Magic::TESTNET3));
        assert_eq!(magic_of_chain("testnet3"), Some(Magic::TESTNET3));
        assert_eq!(magic_of_chain("bitcoin"), None);
        assert_eq!(chain_of_magic([1, 2, 3, 4]), None);
        assert_eq!(describe_magic([1, 2, 3, 4]), "01020304 (unknown network)");
        assert_eq!(describe_magic(Magic::BITCOIN.to_bytes()), "f9beb4d9 (main)");
    }
}
