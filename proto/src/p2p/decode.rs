//! One decoder per message type. Each reads the whole payload with [`Reader`] (rust-bitcoin's
//! `Decodable` for every field) and fails on trailing bytes, except where Bitcoin Core is
//! lenient (`version`'s optional tail).

use std::collections::HashMap;

use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use bitcoin::p2p::address::Address;
use bitcoin::{Script, Transaction, TxMerkleNode, Txid};

use super::addr;
use super::reader::{Fail, Reader};
use crate::p2p_message::Body;
use crate::*;

/// Core's `MAX_SUBVERSION_LENGTH`.
const MAX_SUBVERSION_LENGTH: usize = 256;
/// BIP155 `MAX_ADDRV2_SIZE`.
const MAX_ADDRV2_SIZE: usize = 512;

pub(crate) fn body(msg_type: &str, payload: &[u8]) -> Result<Body, Fail> {
    let mut r = Reader::new(payload);
    let body = match msg_type {
        "version" => return version(&mut r).map(Body::Version),
        "verack" => Body::Verack(empty(&r)?),
        "sendaddrv2" => Body::Sendaddrv2(empty(&r)?),
        "getaddr" => Body::Getaddr(empty(&r)?),
        "sendheaders" => Body::Sendheaders(empty(&r)?),
        "wtxidrelay" => Body::Wtxidrelay(empty(&r)?),
        "mempool" => Body::Mempool(empty(&r)?),
        "filterclear" => Body::Filterclear(empty(&r)?),
        "ping" => Body::Ping(P2pPing {
            nonce: r.read("nonce")?,
        }),
        "pong" => Body::Pong(P2pPing {
            nonce: r.read("nonce")?,
        }),
        "addr" => Body::Addr(addr_v1(&mut r)?),
        "addrv2" => Body::Addrv2(addr_v2(&mut r)?),
        "inv" => Body::Inv(inventory(&mut r)?),
        "getdata" => Body::Getdata(inventory(&mut r)?),
        "notfound" => Body::Notfound(inventory(&mut r)?),
        "tx" => {
            let (tx, _) = r.read_spanned::<Transaction>("transaction")?;
            Body::Tx(tx_summary(&tx))
        }
        "block" => Body::Block(block(&mut r)?),
        "headers" => Body::Headers(headers(&mut r)?),
        "getheaders" => Body::Getheaders(locator(&mut r)?),
        "getblocks" => Body::Getblocks(locator(&mut r)?),
        "cmpctblock" => Body::Cmpctblock(cmpctblock(&mut r)?),
        "sendcmpct" => Body::Sendcmpct(P2pSendCmpct {
            announce: r.read::<u8>("announce")? != 0,
            version: r.read("version")?,
        }),
        "getblocktxn" => Body::Getblocktxn(getblocktxn(&mut r)?),
        "blocktxn" => Body::Blocktxn(blocktxn(&mut r)?),
        "feefilter" => Body::Feefilter(P2pFeeFilter {
            fee_rate: r.read("fee rate")?,
        }),
        "merkleblock" => Body::Merkleblock(merkleblock(&mut r)?),
        "filterload" => Body::Filterload(filterload(&mut r)?),
        "filteradd" => {
            let data = r.var_bytes("data", None)?;
            Body::Filteradd(P2pFilterAdd {
                data_size: data.len() as u32,
                data: data.to_vec(),
            })
        }
        "getcfilters" => Body::Getcfilters(getcfilters(&mut r)?),
        "getcfheaders" => Body::Getcfheaders(getcfilters(&mut r)?),
        "cfilter" => Body::Cfilter(cfilter(&mut r)?),
        "cfheaders" => Body::Cfheaders(cfheaders(&mut r)?),
        "getcfcheckpt" => Body::Getcfcheckpt(P2pGetCfcheckpt {
            filter_type: r.read::<u8>("filter type")? as u32,
            stop_hash: hash32(&mut r, "stop hash")?,
        }),
        "cfcheckpt" => Body::Cfcheckpt(cfcheckpt(&mut r)?),
        "alert" => {
            let payload = r.bytes(r.remaining(), "payload")?;
            Body::Alert(P2pAlert {
                payload: payload.to_vec(),
            })
        }
        "reject" => Body::Reject(reject(&mut r)?),
        other => {
            return Err(Fail::new(
                0,
                format!("no decoder for message type {other:?}"),
            ))
        }
    };
    r.finish()?;
    Ok(body)
}

/// 32 bytes of a hash, returned in display order (reversed).
fn hash32(r: &mut Reader, field: &str) -> Result<Vec<u8>, Fail> {
    let mut bytes = r.array::<32>(field)?.to_vec();
    bytes.reverse();
    Ok(bytes)
}

/// A hash's bytes in display order.
fn display<H: Hash + AsRef<[u8]>>(hash: &H) -> Vec<u8> {
    let mut bytes = AsRef::<[u8]>::as_ref(hash).to_vec();
    bytes.reverse();
    bytes
}

fn empty(r: &Reader) -> Result<P2pEmpty, Fail> {
    if r.is_empty() {
        Ok(P2pEmpty {})
    } else {
        Err(Fail::new(
            0,
            format!("expected an empty payload, got {} bytes", r.remaining()),
        ))
    }
}

fn legacy_address(r: &mut Reader, time: u32, field: &str) -> Result<NetAddress, Fail> {
    let a: Address = r.read(field)?;
    let mut octets = [0u8; 16];
    for (i, segment) in a.address.iter().enumerate() {
        octets[2 * i..2 * i + 2].copy_from_slice(&segment.to_be_bytes());
    }
    Ok(addr::legacy(time, a.services.to_u64(), octets, a.port))
}

/// Mirrors Core's `ProcessMessage(VERSION)`: the fields after the receiver's address are each
/// optional, and bytes after `relay` are ignored.
fn version(r: &mut Reader) -> Result<P2pVersion, Fail> {
    let version = r.read::<u32>("version")? as i32;
    let services: u64 = r.read("services")?;
    let timestamp: i64 = r.read("timestamp")?;
    let receiver = legacy_address(r, 0, "receiver address")?;
    let mut message = P2pVersion {
        version,
        services,
        service_names: addr::service_names(services),
        timestamp,
        receiver: Some(receiver),
        relay: true,
        ..Default::default()
    };
    if !r.is_empty() {
        message.sender = Some(legacy_address(r, 0, "sender address")?);
        message.nonce = r.read("nonce")?;
    }
    if !r.is_empty() {
        let agent = r.var_bytes("user agent", Some(MAX_SUBVERSION_LENGTH))?;
        message.user_agent = String::from_utf8_lossy(agent).into_owned();
    }
    if !r.is_empty() {
        message.start_height = r.read("start height")?;
    }
    if !r.is_empty() {
        message.relay = r.read::<u8>("relay")? != 0;
    }
    Ok(message)
}

fn item_context(i: u64, count: u64) -> String {
    format!("item {i} of {count}")
}

fn addr_v1(r: &mut Reader) -> Result<P2pAddr, Fail> {
    let count = r.compact_size("count")?;
    let mut addresses = Vec::with_capacity(r.capacity(count, 30));
    for i in 0..count {
        let entry = (|| {
            let time: u32 = r.read("time")?;
            legacy_address(r, time, "address")
        })()
        .map_err(|f: Fail| f.context(item_context(i, count)))?;
        addresses.push(entry);
    }
    Ok(P2pAddr { addresses })
}

/// BIP155 entries decoded as Core does: a known network with the wrong length fails the message,
/// an unknown network id is kept (with its bytes), an address longer than 512 bytes fails.
fn addr_v2(r: &mut Reader) -> Result<P2pAddr, Fail> {
    let count = r.compact_size("count")?;
    let mut addresses = Vec::with_capacity(r.capacity(count, 9));
    for i in 0..count {
        let entry = (|| {
            let time: u32 = r.read("time")?;
            let services = r.compact_size("services")?;
            let start = r.pos();
            let network_id: u8 = r.read("network id")?;
            let bytes = r.var_bytes("address", Some(MAX_ADDRV2_SIZE))?;
            let (network, address, address_bytes) = match addr::bip155_len(network_id) {
                Some((network, len)) if bytes.len() == len => {
                    (network, addr::bip155_text(network, bytes), Vec::new())
                }
                Some((network, len)) => {
                    return Err(Fail::new(
                        start,
                        format!(
                            "{} address with length {} (should be {len})",
                            network.as_str_name(),
                            bytes.len()
                        ),
                    ))
                }
                None => (AddrNetwork::Unknown, String::new(), bytes.to_vec()),
            };
            let port = u16::from_be_bytes(r.array::<2>("port")?);
            Ok(NetAddress {
                time,
                services,
                service_names: addr::service_names(services),
                network: network as i32,
                network_id: network_id as u32,
                address,
                port: port as u32,
                address_bytes,
            })
        })()
        .map_err(|f: Fail| f.context(item_context(i, count)))?;
        addresses.push(entry);
    }
    Ok(P2pAddr { addresses })
}

pub(crate) fn inventory_type(raw: u32) -> (InventoryType, &'static str) {
    match raw {
        0 => (InventoryType::Error, "error"),
        1 => (InventoryType::Tx, "tx"),
        2 => (InventoryType::Block, "block"),
        3 => (InventoryType::FilteredBlock, "filtered_block"),
        4 => (InventoryType::CompactBlock, "compact_block"),
        5 => (InventoryType::Wtx, "wtx"),
        0x4000_0001 => (InventoryType::WitnessTx, "witness_tx"),
        0x4000_0002 => (InventoryType::WitnessBlock, "witness_block"),
        0x4000_0003 => (
            InventoryType::FilteredWitnessBlock,
            "filtered_witness_block",
        ),
        _ => (InventoryType::Unknown, "unknown"),
    }
}

fn inventory(r: &mut Reader) -> Result<P2pInventory, Fail> {
    let count = r.compact_size("count")?;
    let mut items = Vec::with_capacity(r.capacity(count, 36));
    // Counted in a short list (a message has one or two types), the map built at the end:
    // hashing a fresh `String` key per entry was a tenth of the cost of an inv in the extractor.
    let mut counts: Vec<(&'static str, u32)> = Vec::new();
    for i in 0..count {
        let start = r.pos();
        let (type_raw, hash) =
            (|| Ok::<_, Fail>((r.read::<u32>("type")?, hash32(r, "hash")?)))()
                .map_err(|f| Fail::new(start, f.what).context(item_context(i, count)))?;
        let (kind, name) = inventory_type(type_raw);
        match counts.iter_mut().find(|(counted, _)| *counted == name) {
            Some((_, n)) => *n += 1,
            None => counts.push((name, 1)),
        }
        items.push(InventoryItem {
            r#type: kind as i32,
            type_raw,
            hash,
        });
    }
    let count_by_type: HashMap<String, u32> = counts
        .into_iter()
        .map(|(name, n)| (name.to_string(), n))
        .collect();
    Ok(P2pInventory {
        items,
        count_by_type,
    })
}

fn script_type(script: &Script) -> ScriptPubKeyType {
    let bytes = script.as_bytes();
    if script.is_p2pkh() {
        ScriptPubKeyType::P2pkh
    } else if script.is_p2sh() {
        ScriptPubKeyType::P2sh
    } else if script.is_p2wpkh() {
        ScriptPubKeyType::P2wpkh
    } else if script.is_p2wsh() {
        ScriptPubKeyType::P2wsh
    } else if script.is_p2tr() {
        ScriptPubKeyType::P2tr
    } else if bytes == [0x51, 0x02, 0x4e, 0x73] {
        ScriptPubKeyType::P2a
    } else if bytes.first() == Some(&0x6a) {
        ScriptPubKeyType::OpReturn
    } else if script.is_witness_program() {
        ScriptPubKeyType::WitnessUnknown
    } else if script.is_p2pk() {
        ScriptPubKeyType::P2pk
    } else if script.is_multisig() {
        ScriptPubKeyType::Multisig
    } else {
        ScriptPubKeyType::Other
    }
}

pub(crate) fn tx_summary(tx: &Transaction) -> TxSummary {
    let weight = tx.weight().to_wu();
    let total: i128 = tx
        .output
        .iter()
        .map(|o| o.value.to_sat() as i64 as i128)
        .sum();
    TxSummary {
        txid: display(&tx.compute_txid()),
        wtxid: display(&tx.compute_wtxid()),
        version: tx.version.0 as u32,
        lock_time: tx.lock_time.to_consensus_u32(),
        size: tx.total_size() as u64,
        weight,
        vsize: weight.div_ceil(4),
        input_count: tx.input.len() as u32,
        output_count: tx.output.len() as u32,
        total_output_value: total.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        is_coinbase: tx.is_coinbase(),
        has_witness: tx.input.iter().any(|i| !i.witness.is_empty()),
        inputs: tx
            .input
            .iter()
            .map(|i| TxInputSummary {
                prev_txid: display(&i.previous_output.txid),
                prev_vout: i.previous_output.vout,
                sequence: i.sequence.0,
                script_sig_size: i.script_sig.len() as u32,
                witness_items: i.witness.len() as u32,
                witness_size: i.witness.iter().map(|w| w.len() as u64).sum(),
            })
            .collect(),
        outputs: tx
            .output
            .iter()
            .map(|o| TxOutputSummary {
                value: o.value.to_sat() as i64,
                script_type: script_type(&o.script_pubkey) as i32,
                script_pubkey: o.script_pubkey.to_bytes(),
            })
            .collect(),
    }
}

pub(crate) fn header_summary(header: &Header) -> BlockHeaderSummary {
    BlockHeaderSummary {
        hash: display(&header.block_hash()),
        version: header.version.to_consensus(),
        prev_block: display(&header.prev_blockhash),
        merkle_root: display(&header.merkle_root),
        time: header.time,
        bits: header.bits.to_consensus(),
        nonce: header.nonce,
    }
}

/// `count` transactions, each with its index in the error context.
fn transactions(r: &mut Reader, count: u64, what: &str) -> Result<(Vec<TxSummary>, u64), Fail> {
    let mut txs = Vec::with_capacity(r.capacity(count, 60));
    let mut weight = 0u64;
    for i in 0..count {
        let tx: Transaction = r.read(&format!("{what} {i} of {count}"))?;
        let summary = tx_summary(&tx);
        weight += summary.weight;
        txs.push(summary);
    }
    Ok((txs, weight))
}

fn compact_size_len(n: u64) -> u64 {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

fn block(r: &mut Reader) -> Result<P2pBlock, Fail> {
    let header: Header = r.read("header")?;
    let count = r.compact_size("tx count")?;
    let (txs, tx_weight) = transactions(r, count, "tx")?;
    Ok(P2pBlock {
        header: Some(header_summary(&header)),
        size: r.pos() as u64,
        weight: tx_weight + 4 * (80 + compact_size_len(count)),
        tx_count: count as u32,
        txs,
    })
}

/// Like Core, the transaction count after each header is read and ignored.
fn headers(r: &mut Reader) -> Result<P2pHeaders, Fail> {
    let count = r.compact_size("count")?;
    let mut headers = Vec::with_capacity(r.capacity(count, 81));
    for i in 0..count {
        let header: Header = r.read(&item_context(i, count))?;
        r.compact_size(&format!("tx count of item {i} of {count}"))?;
        headers.push(header_summary(&header));
    }
    Ok(P2pHeaders {
        count: count as u32,
        headers,
    })
}

fn locator(r: &mut Reader) -> Result<P2pBlockLocator, Fail> {
    let version: u32 = r.read("version")?;
    let count = r.compact_size("locator count")?;
    let mut locator_hashes = Vec::with_capacity(r.capacity(count, 32));
    for i in 0..count {
        locator_hashes.push(hash32(r, &format!("locator hash {i} of {count}"))?);
    }
    Ok(P2pBlockLocator {
        version,
        locator_hashes,
        stop_hash: hash32(r, "stop hash")?,
    })
}

fn cmpctblock(r: &mut Reader) -> Result<P2pCmpctBlock, Fail> {
    let header: Header = r.read("header")?;
    let nonce: u64 = r.read("nonce")?;
    let short_ids = r.compact_size("short id count")?;
    let available = (r.remaining() / 6) as u64;
    if short_ids > available {
        r.bytes(available as usize * 6, "short ids")?;
        return Err(Fail::new(r.pos(), "unexpected end of data")
            .context(format!("short id {available} of {short_ids}")));
    }
    r.bytes(short_ids as usize * 6, "short ids")?;
    let count = r.compact_size("prefilled tx count")?;
    let mut prefilled_txs = Vec::with_capacity(r.capacity(count, 61));
    let mut next_index: u64 = 0;
    for i in 0..count {
        let start = r.pos();
        let context = format!("prefilled tx {i} of {count}");
        let differential = r.compact_size(&context)?;
        let index = next_index.saturating_add(differential);
        if index > u16::MAX as u64 {
            return Err(Fail::new(start, "prefilled index overflowed 16 bits").context(context));
        }
        let tx: Transaction = r.read(&context)?;
        prefilled_txs.push(PrefilledTx {
            index: index as u32,
            tx: Some(tx_summary(&tx)),
        });
        next_index = index + 1;
    }
    Ok(P2pCmpctBlock {
        header: Some(header_summary(&header)),
        nonce,
        short_id_count: short_ids as u32,
        prefilled_txs,
    })
}

/// Differentially encoded indexes, limited to 16 bits as in Core.
fn getblocktxn(r: &mut Reader) -> Result<P2pGetBlockTxn, Fail> {
    let block_hash = hash32(r, "block hash")?;
    let count = r.compact_size("index count")?;
    let mut indexes = Vec::with_capacity(r.capacity(count, 1));
    let mut next_index: u64 = 0;
    for i in 0..count {
        let start = r.pos();
        let context = format!("index {i} of {count}");
        let index = next_index.saturating_add(r.compact_size(&context)?);
        if index > u16::MAX as u64 {
            return Err(Fail::new(start, "index overflowed 16 bits").context(context));
        }
        indexes.push(index as u32);
        next_index = index + 1;
    }
    Ok(P2pGetBlockTxn {
        block_hash,
        indexes,
    })
}

fn blocktxn(r: &mut Reader) -> Result<P2pBlockTxn, Fail> {
    let block_hash = hash32(r, "block hash")?;
    let count = r.compact_size("tx count")?;
    let (txs, _) = transactions(r, count, "tx")?;
    Ok(P2pBlockTxn { block_hash, txs })
}

fn merkleblock(r: &mut Reader) -> Result<P2pMerkleBlock, Fail> {
    let header: Header = r.read("header")?;
    let total_transactions: u32 = r.read("total transactions")?;
    let count = r.compact_size("hash count")?;
    let mut nodes: Vec<TxMerkleNode> = Vec::with_capacity(r.capacity(count, 32));
    for i in 0..count {
        nodes.push(r.read(&format!("hash {i} of {count}"))?);
    }
    let flags = r.var_bytes("flags", None)?;
    let hashes = nodes.iter().map(display).collect();
    let (matched_txids, proof_error) =
        verify_partial_tree(&header, total_transactions, &nodes, flags);
    Ok(P2pMerkleBlock {
        header: Some(header_summary(&header)),
        total_transactions,
        hash_count: count as u32,
        hashes,
        flags: flags.to_vec(),
        matched_txids,
        proof_error,
    })
}

/// Re-serializes the partial merkle tree so rust-bitcoin can walk it.
fn verify_partial_tree(
    header: &Header,
    total: u32,
    nodes: &[TxMerkleNode],
    flags: &[u8],
) -> (Vec<Vec<u8>>, String) {
    use bitcoin::consensus::encode::{serialize, VarInt};
    use bitcoin::merkle_tree::PartialMerkleTree;
    let mut bytes = serialize(&total);
    bytes.extend(serialize(&VarInt(nodes.len() as u64)));
    for node in nodes {
        bytes.extend(node.as_ref() as &[u8]);
    }
    bytes.extend(serialize(&VarInt(flags.len() as u64)));
    bytes.extend(flags);
    let tree: PartialMerkleTree = match bitcoin::consensus::deserialize(&bytes) {
        Ok(tree) => tree,
        Err(e) => return (Vec::new(), super::reader::describe(&e)),
    };
    let mut matches: Vec<Txid> = Vec::new();
    let mut indexes = Vec::new();
    match tree.extract_matches(&mut matches, &mut indexes) {
        Ok(root) if root == header.merkle_root => {
            (matches.iter().map(display).collect(), String::new())
        }
        Ok(_) => (Vec::new(), "merkle root mismatch".to_string()),
        Err(e) => (Vec::new(), e.to_string()),
    }
}

fn filterload(r: &mut Reader) -> Result<P2pFilterLoad, Fail> {
    let filter = r.var_bytes("filter", None)?;
    let hash_funcs: u32 = r.read("hash funcs")?;
    let tweak: u32 = r.read("tweak")?;
    let flags_raw: u8 = r.read("flags")?;
    let flags = match flags_raw {
        0 => BloomFlag::None,
        1 => BloomFlag::All,
        2 => BloomFlag::P2pubkeyOnly,
        _ => BloomFlag::Unknown,
    };
    Ok(P2pFilterLoad {
        filter_size: filter.len() as u32,
        filter: filter.to_vec(),
        hash_funcs,
        tweak,
        flags: flags as i32,
        flags_raw: flags_raw as u32,
    })
}

fn getcfilters(r: &mut Reader) -> Result<P2pGetCfilters, Fail> {
    Ok(P2pGetCfilters {
        filter_type: r.read::<u8>("filter type")? as u32,
        start_height: r.read("start height")?,
        stop_hash: hash32(r, "stop hash")?,
    })
}

fn cfilter(r: &mut Reader) -> Result<P2pCfilter, Fail> {
    let filter_type = r.read::<u8>("filter type")? as u32;
    let block_hash = hash32(r, "block hash")?;
    let filter = r.var_bytes("filter", None)?;
    Ok(P2pCfilter {
        filter_type,
        block_hash,
        filter_size: filter.len() as u32,
        filter: filter.to_vec(),
    })
}

fn hash_list(r: &mut Reader, what: &str) -> Result<Vec<Vec<u8>>, Fail> {
    let count = r.compact_size(&format!("{what} count"))?;
    let mut hashes = Vec::with_capacity(r.capacity(count, 32));
    for i in 0..count {
        hashes.push(hash32(r, &format!("{what} {i} of {count}"))?);
    }
    Ok(hashes)
}

fn cfheaders(r: &mut Reader) -> Result<P2pCfheaders, Fail> {
    let filter_type = r.read::<u8>("filter type")? as u32;
    let stop_hash = hash32(r, "stop hash")?;
    let previous_filter_header = hash32(r, "previous filter header")?;
    let filter_hashes = hash_list(r, "filter hash")?;
    Ok(P2pCfheaders {
        filter_type,
        stop_hash,
        previous_filter_header,
        filter_hash_count: filter_hashes.len() as u32,
        filter_hashes,
    })
}

fn cfcheckpt(r: &mut Reader) -> Result<P2pCfcheckpt, Fail> {
    let filter_type = r.read::<u8>("filter type")? as u32;
    let stop_hash = hash32(r, "stop hash")?;
    let filter_headers = hash_list(r, "filter header")?;
    Ok(P2pCfcheckpt {
        filter_type,
        stop_hash,
        filter_header_count: filter_headers.len() as u32,
        filter_headers,
    })
}

/// BIP61: the hash is present for tx and block rejects only, so it is read when 32 bytes remain.
fn reject(r: &mut Reader) -> Result<P2pReject, Fail> {
    let message = String::from_utf8_lossy(r.var_bytes("message", None)?).into_owned();
    let ccode_raw: u8 = r.read("ccode")?;
    let reason = String::from_utf8_lossy(r.var_bytes("reason", None)?).into_owned();
    let hash = if r.remaining() >= 32 {
        hash32(r, "hash")?
    } else {
        Vec::new()
    };
    let ccode = match ccode_raw {
        0x01 => RejectCode::Malformed,
        0x10 => RejectCode::Invalid,
        0x11 => RejectCode::Obsolete,
        0x12 => RejectCode::Duplicate,
        0x40 => RejectCode::Nonstandard,
        0x41 => RejectCode::Dust,
        0x42 => RejectCode::InsufficientFee,
        0x43 => RejectCode::Checkpoint,
        _ => RejectCode::Unknown,
    };
    Ok(P2pReject {
        message,
        ccode: ccode as i32,
        ccode_raw: ccode_raw as u32,
        reason,
        hash,
    })
}
