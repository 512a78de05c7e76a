//! Real payloads of all 36 decoded message types, built with rust-bitcoin: the fixtures of the
//! tests, the seeds of the fuzzers.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use bitcoin::absolute::LockTime;
use bitcoin::bip152::{BlockTransactions, BlockTransactionsRequest, HeaderAndShortIds};
use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::merkle_tree::MerkleBlock;
use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_blockdata::{GetBlocksMessage, GetHeadersMessage, Inventory};
use bitcoin::p2p::message_bloom::{BloomFlags, FilterAdd, FilterLoad};
use bitcoin::p2p::message_compact_blocks::{BlockTxn, CmpctBlock, GetBlockTxn, SendCmpct};
use bitcoin::p2p::message_filter::{
    CFCheckpt, CFHeaders, CFilter, GetCFCheckpt, GetCFHeaders, GetCFilters,
};
use bitcoin::p2p::message_network::{Reject, RejectReason, VersionMessage};
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::script::Builder;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, Block, BlockHash, CompactTarget, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxMerkleNode, TxOut, Txid, Witness, Wtxid,
};

/// The payload of `msg` exactly as on the wire: the serialized message minus its 24-byte header.
pub fn payload(msg: &NetworkMessage) -> Vec<u8> {
    let mut bytes = serialize(&RawNetworkMessage::new(Magic::BITCOIN, msg.clone()));
    bytes.drain(..24);
    bytes
}

fn hash(seed: u8) -> [u8; 32] {
    sha256d::Hash::hash(&[seed]).to_byte_array()
}

/// A transaction with a P2PKH-style input, a segwit input and one output of each common type.
pub fn sample_tx(seed: u8) -> Transaction {
    let outputs: Vec<ScriptBuf> = vec![
        ScriptBuf::from_bytes([&[0x76, 0xa9, 0x14][..], &[seed; 20], &[0x88, 0xac]].concat()),
        ScriptBuf::from_bytes([&[0xa9, 0x14][..], &[seed; 20], &[0x87]].concat()),
        ScriptBuf::from_bytes([&[0x00, 0x14][..], &[seed; 20]].concat()),
        ScriptBuf::from_bytes([&[0x00, 0x20][..], &[seed; 32]].concat()),
        ScriptBuf::from_bytes([&[0x51, 0x20][..], &[seed; 32]].concat()),
        ScriptBuf::from_bytes(vec![0x51, 0x02, 0x4e, 0x73]),
        ScriptBuf::from_bytes(vec![0x6a, 0x04, b'n', b'o', b'd', b'e']),
        ScriptBuf::from_bytes(vec![0x52, 0x53]),
    ];
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(840_000),
        input: vec![
            TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array(hash(seed)),
                    vout: 1,
                },
                script_sig: Builder::new()
                    .push_slice([seed; 71])
                    .push_slice([2u8; 33])
                    .into_script(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            },
            TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array(hash(seed.wrapping_add(1))),
                    vout: 7,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[vec![0x30; 72], vec![0x02; 33]]),
            },
        ],
        output: outputs
            .into_iter()
            .enumerate()
            .map(|(i, script_pubkey)| TxOut {
                value: Amount::from_sat(if i == 6 { 0 } else { 10_000 * (i as u64 + 1) }),
                script_pubkey,
            })
            .collect(),
    }
}

pub fn sample_coinbase(height: i64) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: Builder::new()
                .push_int(height)
                .push_opcode(bitcoin::opcodes::OP_0)
                .into_script(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0u8; 32]]),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(312_500_000),
            script_pubkey: ScriptBuf::from_bytes([&[0x00, 0x14][..], &[9; 20]].concat()),
        }],
    }
}

/// A block with a coinbase and `n` transactions (merkle root computed; no proof of work).
pub fn sample_block(n: u8) -> Block {
    let mut txdata = vec![sample_coinbase(900_000)];
    txdata.extend((0..n).map(|i| sample_tx(i.wrapping_mul(3))));
    let mut block = Block {
        header: Header {
            version: BlockVersion::from_consensus(0x2000_0000),
            prev_blockhash: BlockHash::from_byte_array(hash(200)),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 1_750_000_000,
            bits: CompactTarget::from_consensus(0x1702_7726),
            nonce: 0x1234_5678,
        },
        txdata,
    };
    block.header.merkle_root = block
        .compute_merkle_root()
        .unwrap_or_else(TxMerkleNode::all_zeros);
    block
}

pub fn sample_header(seed: u8) -> Header {
    Header {
        version: BlockVersion::from_consensus(0x2000_0000 | seed as i32),
        prev_blockhash: BlockHash::from_byte_array(hash(seed)),
        merkle_root: TxMerkleNode::from_byte_array(hash(seed.wrapping_add(100))),
        time: 1_700_000_000 + seed as u32,
        bits: CompactTarget::from_consensus(0x1703_0ecd),
        nonce: 0xdead_0000 + seed as u32,
    }
}

/// The sample message of type `msg_type` (one of [`super::MESSAGE_TYPES`]).
pub fn sample(msg_type: &str) -> Option<NetworkMessage> {
    let block = sample_block(3);
    Some(match msg_type {
        "version" => {
            let services = ServiceFlags::NETWORK
                | ServiceFlags::WITNESS
                | ServiceFlags::NETWORK_LIMITED
                | ServiceFlags::P2P_V2;
            let mut v = VersionMessage::new(
                services,
                1_750_000_000,
                Address::new(
                    &SocketAddr::from((Ipv4Addr::new(203, 0, 113, 7), 8333)),
                    ServiceFlags::NONE,
                ),
                Address::new(
                    &SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 18444)),
                    services,
                ),
                0x0123_4567_89ab_cdef,
                "/Satoshi:30.0.0/".to_string(),
                905_000,
            );
            v.version = 70016;
            v.relay = true;
            NetworkMessage::Version(v)
        }
        "verack" => NetworkMessage::Verack,
        "sendaddrv2" => NetworkMessage::SendAddrV2,
        "getaddr" => NetworkMessage::GetAddr,
        "sendheaders" => NetworkMessage::SendHeaders,
        "wtxidrelay" => NetworkMessage::WtxidRelay,
        "mempool" => NetworkMessage::MemPool,
        "filterclear" => NetworkMessage::FilterClear,
        "ping" => NetworkMessage::Ping(0x1122_3344_5566_7788),
        "pong" => NetworkMessage::Pong(0x1122_3344_5566_7788),
        "addr" => NetworkMessage::Addr(vec![
            (
                1_750_000_000,
                Address::new(
                    &SocketAddr::from((Ipv4Addr::new(1, 2, 3, 4), 8333)),
                    ServiceFlags::NETWORK,
                ),
            ),
            (
                1_750_000_100,
                Address::new(
                    &SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 8333)),
                    ServiceFlags::NETWORK | ServiceFlags::WITNESS,
                ),
            ),
        ]),
        "addrv2" => {
            let entry = |i: u32, addr: AddrV2| AddrV2Message {
                time: 1_750_000_000 + i,
                services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
                addr,
                port: if i == 2 || i == 3 { 0 } else { 8333 },
            };
            NetworkMessage::AddrV2(vec![
                entry(0, AddrV2::Ipv4(Ipv4Addr::new(1, 2, 3, 4))),
                entry(
                    1,
                    AddrV2::Ipv6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                ),
                entry(2, AddrV2::TorV3(hash(4))),
                entry(3, AddrV2::I2p(hash(5))),
                entry(4, AddrV2::Cjdns(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 1))),
                entry(5, AddrV2::Unknown(42, vec![1, 2, 3])),
            ])
        }
        "inv" => NetworkMessage::Inv(vec![
            Inventory::Transaction(Txid::from_byte_array(hash(1))),
            Inventory::Block(BlockHash::from_byte_array(hash(2))),
            Inventory::WTx(Wtxid::from_byte_array(hash(3))),
            Inventory::WTx(Wtxid::from_byte_array(hash(4))),
            Inventory::WitnessTransaction(Txid::from_byte_array(hash(5))),
            Inventory::WitnessBlock(BlockHash::from_byte_array(hash(6))),
            Inventory::CompactBlock(BlockHash::from_byte_array(hash(7))),
            Inventory::Unknown {
                inv_type: 3,
                hash: hash(8),
            },
            Inventory::Unknown {
                inv_type: 0x4000_0003,
                hash: hash(9),
            },
            Inventory::Error,
            Inventory::Unknown {
                inv_type: 77,
                hash: hash(10),
            },
        ]),
        "getdata" => NetworkMessage::GetData(vec![Inventory::WitnessTransaction(
            Txid::from_byte_array(hash(11)),
        )]),
        "notfound" => NetworkMessage::NotFound(vec![Inventory::Transaction(
            Txid::from_byte_array(hash(12)),
        )]),
        "tx" => NetworkMessage::Tx(sample_tx(1)),
        "block" => NetworkMessage::Block(block),
        "headers" => NetworkMessage::Headers(vec![sample_header(1), sample_header(2)]),
        "getheaders" => NetworkMessage::GetHeaders(GetHeadersMessage {
            version: 70016,
            locator_hashes: vec![
                BlockHash::from_byte_array(hash(20)),
                BlockHash::from_byte_array(hash(21)),
            ],
            stop_hash: BlockHash::all_zeros(),
        }),
        "getblocks" => NetworkMessage::GetBlocks(GetBlocksMessage {
            version: 70016,
            locator_hashes: vec![BlockHash::from_byte_array(hash(22))],
            stop_hash: BlockHash::from_byte_array(hash(23)),
        }),
        "cmpctblock" => NetworkMessage::CmpctBlock(CmpctBlock {
            compact_block: HeaderAndShortIds::from_block(&block, 0xfeed, 2, &[2]).ok()?,
        }),
        "sendcmpct" => NetworkMessage::SendCmpct(SendCmpct {
            send_compact: true,
            version: 2,
        }),
        "getblocktxn" => NetworkMessage::GetBlockTxn(GetBlockTxn {
            txs_request: BlockTransactionsRequest {
                block_hash: block.block_hash(),
                indexes: vec![1, 3, 300],
            },
        }),
        "blocktxn" => NetworkMessage::BlockTxn(BlockTxn {
            transactions: BlockTransactions {
                block_hash: block.block_hash(),
                transactions: vec![block.txdata[1].clone(), block.txdata[3].clone()],
            },
        }),
        "feefilter" => NetworkMessage::FeeFilter(1_000),
        "merkleblock" => {
            let wanted = block.txdata[2].compute_txid();
            NetworkMessage::MerkleBlock(MerkleBlock::from_block_with_predicate(&block, |t| {
                *t == wanted
            }))
        }
        "filterload" => NetworkMessage::FilterLoad(FilterLoad {
            filter: vec![0xa5; 64],
            hash_funcs: 11,
            tweak: 0xcafe,
            flags: BloomFlags::All,
        }),
        "filteradd" => NetworkMessage::FilterAdd(FilterAdd {
            data: vec![0x42; 33],
        }),
        "getcfilters" => NetworkMessage::GetCFilters(GetCFilters {
            filter_type: 0,
            start_height: 900_000,
            stop_hash: BlockHash::from_byte_array(hash(30)),
        }),
        "cfilter" => NetworkMessage::CFilter(CFilter {
            filter_type: 0,
            block_hash: BlockHash::from_byte_array(hash(31)),
            filter: vec![0x01, 0x9d, 0xfc, 0xa8],
        }),
        "getcfheaders" => NetworkMessage::GetCFHeaders(GetCFHeaders {
            filter_type: 0,
            start_height: 899_001,
            stop_hash: BlockHash::from_byte_array(hash(32)),
        }),
        "cfheaders" => NetworkMessage::CFHeaders(CFHeaders {
            filter_type: 0,
            stop_hash: BlockHash::from_byte_array(hash(33)),
            previous_filter_header: bitcoin::bip158::FilterHeader::from_byte_array(hash(34)),
            filter_hashes: vec![
                bitcoin::bip158::FilterHash::from_byte_array(hash(35)),
                bitcoin::bip158::FilterHash::from_byte_array(hash(36)),
            ],
        }),
        "getcfcheckpt" => NetworkMessage::GetCFCheckpt(GetCFCheckpt {
            filter_type: 0,
            stop_hash: BlockHash::from_byte_array(hash(37)),
        }),
        "cfcheckpt" => NetworkMessage::CFCheckpt(CFCheckpt {
            filter_type: 0,
            stop_hash: BlockHash::from_byte_array(hash(38)),
            filter_headers: vec![
                bitcoin::bip158::FilterHeader::from_byte_array(hash(39)),
                bitcoin::bip158::FilterHeader::from_byte_array(hash(40)),
            ],
        }),
        "alert" => NetworkMessage::Alert(vec![0x01, 0x02, 0x03, 0x04]),
        "reject" => NetworkMessage::Reject(Reject {
            message: "tx".into(),
            ccode: RejectReason::Fee,
            reason: "mempool min fee not met".into(),
            hash: sha256d::Hash::from_byte_array(hash(41)),
        }),
        _ => return None,
    })
}

/// `(msg_type, payload)` for every type in [`super::MESSAGE_TYPES`].
pub fn sample_payloads() -> Vec<(&'static str, Vec<u8>)> {
    super::MESSAGE_TYPES
        .iter()
        .filter_map(|t| sample(t).map(|m| (*t, payload(&m))))
        .collect()
}
