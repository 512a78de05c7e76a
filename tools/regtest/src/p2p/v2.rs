//! BIP324 v2 transport: the encrypted handshake and packet ciphers come from the `bip324`
//! crate; this file maps messages to packet contents — a 1-byte short id for the 28 message
//! types BIP324 assigns one, else `0x00` and the 12-byte command as in v1.

use std::io::BufReader;
use std::net::TcpStream;

use bip324::io::{Protocol, ProtocolReader, ProtocolWriter};
use bip324::Role;
use bitcoin::p2p::Magic;

/// BIP324's short message ids, defined once with the rest of the wire format.
pub use nodescope_proto::p2p::wire::{
    parse_v2_contents as decode_contents, v2_contents as encode_contents, v2_short_id as short_id,
    V2_SHORT_IDS as SHORT_IDS,
};

/// The two halves of an established v2 session.
pub(crate) type Session = (
    ProtocolReader<BufReader<TcpStream>>,
    ProtocolWriter<TcpStream>,
);

/// Runs the BIP324 handshake as initiator (no garbage, no decoys) on `stream`, which must have
/// a read timeout set so a node that never answers does not hang us.
pub(crate) fn handshake(stream: &TcpStream, magic: Magic) -> Result<Session, String> {
    let clone = |s: &TcpStream| {
        s.try_clone()
            .map_err(|e| format!("cloning the socket: {e}"))
    };
    let protocol = Protocol::new(
        magic.to_bytes(),
        Role::Initiator,
        None,
        None,
        BufReader::new(clone(stream)?),
        clone(stream)?,
    )
    .map_err(|e| {
        format!("BIP324 handshake failed: {e} (was the node started with -v2transport=1?)")
    })?;
    Ok(protocol.into_split())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_follow_bip324() {
        assert_eq!(short_id("addr"), Some(1));
        assert_eq!(short_id("ping"), Some(18));
        assert_eq!(short_id("pong"), Some(19));
        assert_eq!(short_id("addrv2"), Some(28));
        assert_eq!(short_id("version"), None);
        assert_eq!(short_id(""), None);
    }

    #[test]
    fn contents_round_trip() {
        let ping = encode_contents("ping", &[1, 2]).unwrap();
        assert_eq!(ping, vec![18, 1, 2]);
        assert_eq!(
            decode_contents(&ping).unwrap(),
            ("ping".to_string(), vec![1, 2])
        );
        let verack = encode_contents("verack", &[]).unwrap();
        assert_eq!(verack.len(), 13);
        assert_eq!(
            decode_contents(&verack).unwrap(),
            ("verack".to_string(), vec![])
        );
        assert!(decode_contents(&[200]).is_err());
    }
}
