//! Deterministic Bitcoin content built with rust-bitcoin: transactions, blocks (including one of
//! exactly 4,000,000 serialized bytes) and P2P message payloads as they appear on the wire after
//! the 24-byte header.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::{bail, Context as _};
use bitcoin::absolute::LockTime;
use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::{sha256, sha256d, Hash};
use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_blockdata::{GetHeadersMessage, Inventory};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::script::Builder;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxMerkleNode, TxOut, Txid, WPubkeyHash, Witness, Wtxid,
};

/// Core v30.0's `PROTOCOL_VERSION`.
pub const PROTOCOL_VERSION: u32 = 70016;
/// `CMessageHeader::MESSAGE_TYPE_SIZE`... plus magic, length and checksum: 24 bytes.
pub const P2P_HEADER_LEN: usize = 24;
/// `MAX_PROTOCOL_MESSAGE_LENGTH` (src/net.h), also the largest block message.
pub const MAX_PROTOCOL_MESSAGE_LENGTH: usize = 4_000_000;
/// Regtest's `nBits`.
const REGTEST_BITS: u32 = 0x207f_ffff;

/// SplitMix64: tiny, fast and deterministic for a given seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }

    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        self.fill(&mut a);
        a
    }
}

fn p2wpkh(rng: &mut Rng) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(rng.array()))
}

/// A plausible (unsigned-but-well-formed) P2WPKH witness: DER-shaped signature + compressed key.
fn p2wpkh_witness(rng: &mut Rng) -> Witness {
    let mut sig = vec![0x30, 0x44, 0x02, 0x20];
    sig.extend(rng.array::<32>());
    sig.extend([0x02, 0x20]);
    sig.extend(rng.array::<32>());
    sig.push(0x01); // SIGHASH_ALL
    let mut key = vec![0x02];
    key.extend(rng.array::<32>());
    Witness::from_slice(&[sig, key])
}

/// A version-2, RBF-signalling P2WPKH spend.
pub fn spend(rng: &mut Rng, inputs: &[OutPoint], outputs_sat: &[u64]) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: inputs
            .iter()
            .map(|prev| TxIn {
                previous_output: *prev,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: p2wpkh_witness(rng),
            })
            .collect(),
        output: outputs_sat
            .iter()
            .map(|v| TxOut {
                value: Amount::from_sat(*v),
                script_pubkey: p2wpkh(rng),
            })
            .collect(),
    }
}

/// Witness commitment output of BIP141: OP_RETURN OP_PUSHBYTES_36 aa21a9ed <32 bytes>.
fn commitment_script(commitment: [u8; 32]) -> ScriptBuf {
    let mut s = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
    s.extend(commitment);
    ScriptBuf::from_bytes(s)
}

pub fn coinbase(rng: &mut Rng, height: u32, value_sat: u64) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: Builder::new()
                .push_int(height as i64)
                .push_opcode(bitcoin::opcodes::OP_0)
                .into_script(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0u8; 32]]),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(value_sat),
                script_pubkey: p2wpkh(rng),
            },
            TxOut {
                value: Amount::ZERO,
                script_pubkey: commitment_script([0; 32]),
            },
        ],
    }
}

/// A consensus-shaped regtest block: BIP34 height, witness commitment, merkle root, and a nonce
/// that meets regtest's (trivial) proof of work.
pub fn block(
    rng: &mut Rng,
    prev: BlockHash,
    height: u32,
    time: u32,
    txs: Vec<Transaction>,
) -> Block {
    let fees: u64 = 1_000 * txs.len() as u64;
    let mut txdata = vec![coinbase(
        rng,
        height,
        5_000_000_000 / (1 << (height / 150)) + fees,
    )];
    txdata.extend(txs);
    let mut block = Block {
        header: Header {
            version: BlockVersion::from_consensus(0x2000_0000),
            prev_blockhash: prev,
            merkle_root: TxMerkleNode::all_zeros(),
            time,
            bits: CompactTarget::from_consensus(REGTEST_BITS),
            nonce: rng.next_u64() as u32,
        },
        txdata,
    };
    seal(&mut block);
    block
}

/// Recomputes the witness commitment and merkle root, then grinds the nonce.
fn seal(block: &mut Block) {
    let witness_root = block.witness_root().expect("block has a coinbase");
    let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
    block.txdata[0].output[1].script_pubkey = commitment_script(commitment.to_byte_array());
    block.header.merkle_root = block.compute_merkle_root().expect("block has a coinbase");
    while block.header.validate_pow(block.header.target()).is_err() {
        block.header.nonce = block.header.nonce.wrapping_add(1);
    }
}

/// A block whose serialization is exactly [`MAX_PROTOCOL_MESSAGE_LENGTH`] bytes: the padding is a
/// witness element of a second transaction (an inscription-style envelope).
pub fn max_size_block(
    rng: &mut Rng,
    prev: BlockHash,
    height: u32,
    time: u32,
    funding: OutPoint,
) -> Block {
    let mut pad_tx = spend(rng, &[funding], &[546]);
    pad_tx.input[0].witness =
        Witness::from_slice(&[vec![0u8; 64], vec![0x51; 3_990_000], vec![0xc0; 33]]);
    let mut blk = block(rng, prev, height, time, vec![pad_tx]);
    let size = serialize(&blk).len();
    // Witness element sizes 65536..2^32 all take a 5-byte CompactSize, so the fix-up is exact.
    let pad_len = 3_990_000 + MAX_PROTOCOL_MESSAGE_LENGTH - size;
    let mut padding = vec![0u8; pad_len];
    rng.fill(&mut padding);
    blk.txdata[1].input[0].witness = Witness::from_slice(&[vec![0u8; 64], padding, vec![0xc0; 33]]);
    seal(&mut blk);
    debug_assert_eq!(serialize(&blk).len(), MAX_PROTOCOL_MESSAGE_LENGTH);
    blk
}

/// The payload of `msg` exactly as on the wire (the serialized message minus its 24-byte header),
/// and its message type string.
pub fn payload(msg: NetworkMessage) -> (&'static str, Vec<u8>) {
    let cmd = msg.cmd();
    let mut bytes = serialize(&RawNetworkMessage::new(Magic::REGTEST, msg));
    bytes.drain(..P2P_HEADER_LEN);
    (cmd, bytes)
}

/// Decodes a payload as the message named `msg_type` (by rebuilding the 24-byte header), failing
/// if rust-bitcoin does not know the type or the payload does not decode completely.
pub fn decode_payload(msg_type: &str, data: &[u8]) -> anyhow::Result<NetworkMessage> {
    if msg_type.is_empty() || msg_type.len() > 12 || !msg_type.is_ascii() {
        bail!("{msg_type:?} is not a P2P message type");
    }
    let mut raw = Vec::with_capacity(P2P_HEADER_LEN + data.len());
    raw.extend(Magic::REGTEST.to_bytes());
    let mut command = [0u8; 12];
    command[..msg_type.len()].copy_from_slice(msg_type.as_bytes());
    raw.extend(command);
    raw.extend((data.len() as u32).to_le_bytes());
    raw.extend(&sha256d::Hash::hash(data).to_byte_array()[..4]);
    raw.extend(data);
    let msg: RawNetworkMessage =
        deserialize(&raw).with_context(|| format!("{msg_type} payload does not decode"))?;
    let msg = msg.into_payload();
    if let NetworkMessage::Unknown { .. } = msg {
        bail!("rust-bitcoin does not know message type {msg_type}");
    }
    if msg.cmd() != msg_type {
        bail!("{msg_type} payload decoded as {}", msg.cmd());
    }
    Ok(msg)
}

pub fn version_message(
    rng: &mut Rng,
    to: SocketAddr,
    from: SocketAddr,
    time: i64,
    height: i32,
) -> NetworkMessage {
    let services = ServiceFlags::NETWORK
        | ServiceFlags::WITNESS
        | ServiceFlags::NETWORK_LIMITED
        | ServiceFlags::P2P_V2;
    let mut v = VersionMessage::new(
        services,
        time,
        Address::new(&to, ServiceFlags::NONE),
        Address::new(&from, services),
        rng.next_u64(),
        "/Satoshi:30.0.0/".to_string(),
        height,
    );
    v.version = PROTOCOL_VERSION;
    v.relay = true;
    NetworkMessage::Version(v)
}

pub fn getheaders(locator: Vec<BlockHash>) -> NetworkMessage {
    let mut gh = GetHeadersMessage::new(locator, BlockHash::all_zeros());
    gh.version = PROTOCOL_VERSION;
    NetworkMessage::GetHeaders(gh)
}

/// An `inv` of `n` wtxid announcements: 28 entries make the ~1 KiB (1009-byte) payload.
pub fn inv_wtx(rng: &mut Rng, n: usize) -> NetworkMessage {
    NetworkMessage::Inv(
        (0..n)
            .map(|_| Inventory::WTx(Wtxid::from_byte_array(rng.array())))
            .collect(),
    )
}

/// An `addr` with `n` IPv4 entries (Core discourages a peer for more than 1000).
pub fn addr(rng: &mut Rng, n: usize, time: u32) -> NetworkMessage {
    NetworkMessage::Addr(
        (0..n)
            .map(|_| {
                let ip = Ipv4Addr::from((rng.next_u64() as u32) | 0x0100_0000);
                let sock = SocketAddr::V4(SocketAddrV4::new(ip, 8333));
                (
                    time - rng.range(0, 86_400) as u32,
                    Address::new(&sock, ServiceFlags::NETWORK | ServiceFlags::WITNESS),
                )
            })
            .collect(),
    )
}

/// An `addrv2` of Tor v3 and IPv4 addresses.
pub fn addrv2(rng: &mut Rng, n: usize, time: u32) -> NetworkMessage {
    NetworkMessage::AddrV2(
        (0..n)
            .map(|i| AddrV2Message {
                time: time - rng.range(0, 86_400) as u32,
                services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
                addr: if i % 2 == 0 {
                    AddrV2::TorV3(rng.array())
                } else {
                    AddrV2::Ipv4(Ipv4Addr::from((rng.next_u64() as u32) | 0x0100_0000))
                },
                port: 8333,
            })
            .collect(),
    )
}

/// Core's `GetPackageHash`: SHA256 of the wtxids sorted by their reversed (display) bytes.
pub fn package_hash(txs: &[&Transaction]) -> [u8; 32] {
    let mut wtxids: Vec<[u8; 32]> = txs
        .iter()
        .map(|tx| tx.compute_wtxid().to_byte_array())
        .collect();
    wtxids.sort_by(|a, b| a.iter().rev().cmp(b.iter().rev()));
    sha256::Hash::hash(&wtxids.concat()).to_byte_array()
}

pub fn txid_bytes(txid: Txid) -> [u8; 32] {
    txid.to_byte_array()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_size_block_is_exactly_4mb_and_valid() {
        let mut rng = Rng::new(7);
        let funding = OutPoint {
            txid: Txid::from_byte_array(rng.array()),
            vout: 0,
        };
        let blk = max_size_block(
            &mut rng,
            BlockHash::all_zeros(),
            150,
            1_760_000_000,
            funding,
        );
        let (cmd, bytes) = payload(NetworkMessage::Block(blk));
        assert_eq!((cmd, bytes.len()), ("block", MAX_PROTOCOL_MESSAGE_LENGTH));
        let NetworkMessage::Block(decoded) = decode_payload("block", &bytes).unwrap() else {
            panic!("not a block")
        };
        assert!(decoded.check_merkle_root());
        assert!(decoded.check_witness_commitment());
        assert!(decoded.header.validate_pow(decoded.header.target()).is_ok());
        assert_eq!(decoded.bip34_block_height().unwrap(), 150);
    }

    #[test]
    fn inv_of_28_is_1009_bytes() {
        let (cmd, bytes) = payload(inv_wtx(&mut Rng::new(1), 28));
        assert_eq!((cmd, bytes.len()), ("inv", 1009));
    }

    #[test]
    fn decode_rejects_wrong_types() {
        let (_, ping) = payload(NetworkMessage::Ping(5));
        assert!(decode_payload("ping", &ping).is_ok());
        assert!(decode_payload("version", &ping).is_err());
        assert!(decode_payload("frobnicate", &ping).is_err());
        assert!(decode_payload("ping", &ping[..7]).is_err());
    }
}
