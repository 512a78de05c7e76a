//! Payload builders and decoders for [`super::RawPeer::send`] / [`super::RawPeer::recv`],
//! encoded with the `bitcoin` crate so they are exactly what Bitcoin Core expects.

use std::net::SocketAddr;

use bitcoin::consensus::encode::{self, deserialize, serialize};
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::{Magic, ServiceFlags};
use nodescope_proto::p2p::wire;

/// The user agent of our raw peers, to tell them apart in `getpeerinfo` (`subver`).
pub const USER_AGENT: &str = "/nodescope-regtest:0.1/";
pub use nodescope_proto::p2p::wire::{random_nonce, PROTOCOL_VERSION};

/// Any message as `(command, payload)`, e.g. `encode(&NetworkMessage::GetAddr)`.
pub fn encode(message: &NetworkMessage) -> (String, Vec<u8>) {
    let raw = RawNetworkMessage::new(Magic::REGTEST, message.clone());
    let bytes = serialize(&raw);
    (
        message.command().to_string(),
        bytes[super::v1::HEADER_LEN..].to_vec(),
    )
}

/// Parses a received `(command, payload)`; unknown commands give `NetworkMessage::Unknown`.
pub fn decode(command: &str, payload: &[u8]) -> Result<NetworkMessage, encode::Error> {
    let frame = super::v1::frame(Magic::REGTEST, command, payload);
    deserialize::<RawNetworkMessage>(&frame).map(RawNetworkMessage::into_payload)
}

/// A `ping` payload.
pub fn ping(nonce: u64) -> Vec<u8> {
    nonce.to_le_bytes().to_vec()
}

/// A `pong` payload.
pub fn pong(nonce: u64) -> Vec<u8> {
    nonce.to_le_bytes().to_vec()
}

/// The nonce of a `ping` or `pong` payload.
pub fn nonce(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.try_into().ok()?))
}

/// An `inv` payload.
pub fn inv(entries: &[Inventory]) -> Vec<u8> {
    serialize(&entries.to_vec())
}

/// A `getdata` payload (same encoding as `inv`).
pub fn getdata(entries: &[Inventory]) -> Vec<u8> {
    inv(entries)
}

/// Our `version` payload: no services, relay on, [`USER_AGENT`], [`PROTOCOL_VERSION`].
pub fn version(receiver: SocketAddr, sender: SocketAddr, nonce: u64, start_height: i32) -> Vec<u8> {
    wire::version_payload(
        bitcoin::p2p::ServiceFlags::NONE,
        Address::new(&receiver, ServiceFlags::NONE),
        Address::new(&sender, ServiceFlags::NONE),
        nonce,
        USER_AGENT,
        start_height,
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_matches_the_builders_and_decodes_back() {
        assert_eq!(
            encode(&NetworkMessage::Ping(42)),
            ("ping".to_string(), ping(42))
        );
        assert_eq!(decode("pong", &pong(7)).unwrap(), NetworkMessage::Pong(7));
        let (command, payload) = encode(&NetworkMessage::Inv(vec![]));
        assert_eq!((command.as_str(), payload), ("inv", inv(&[])));
        let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
        match decode("version", &version(local, local, 9, 0)).unwrap() {
            NetworkMessage::Version(v) => {
                assert_eq!((v.nonce, v.user_agent.as_str()), (9, USER_AGENT));
                assert!(v.relay);
            }
            other => panic!("not a version: {other:?}"),
        }
    }
}
