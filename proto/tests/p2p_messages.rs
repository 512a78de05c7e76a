//! Every decoded message type, from a real payload serialized by rust-bitcoin, to the exact
//! protobuf fields (hashes in display order, compared with rust-bitcoin's `to_string()`), and the
//! JSON of representative messages.

use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::Hash;
use bitcoin::p2p::address::AddrV2;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{Block, Transaction};
use nodescope_proto::json::to_json;
use nodescope_proto::p2p::samples::{payload, sample, sample_block, sample_payloads};
use nodescope_proto::p2p::{body_type, decode_p2p, DecodeOptions, MESSAGE_TYPES};
use nodescope_proto::p2p_message::Body;
use nodescope_proto::*;
use serde_json::json;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(msg_type: &str, payload: &[u8]) -> P2pMessage {
    decode_p2p(
        msg_type,
        payload,
        payload.len() as u64,
        DecodeOptions::default(),
    )
}

fn decode_ok(msg_type: &str, payload: &[u8]) -> Body {
    let m = decode(msg_type, payload);
    assert_eq!(m.decode_error, "", "{msg_type}");
    assert!(
        !m.truncated && !m.unknown_type && m.raw.is_empty(),
        "{msg_type}"
    );
    assert_eq!(m.msg_type, msg_type);
    assert_eq!(m.size, payload.len() as u64);
    let body = m.body.expect("decoded body");
    assert_eq!(body_type(&body), msg_type);
    body
}

fn check_tx(s: &TxSummary, tx: &Transaction) {
    assert_eq!(hex(&s.txid), tx.compute_txid().to_string());
    assert_eq!(hex(&s.wtxid), tx.compute_wtxid().to_string());
    assert_eq!(s.version, tx.version.0 as u32);
    assert_eq!(s.lock_time, tx.lock_time.to_consensus_u32());
    assert_eq!(s.size, serialize(tx).len() as u64);
    assert_eq!(s.weight, tx.weight().to_wu());
    assert_eq!(s.vsize, tx.vsize() as u64);
    assert_eq!(s.input_count as usize, tx.input.len());
    assert_eq!(s.output_count as usize, tx.output.len());
    let total: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    assert_eq!(s.total_output_value, total as i64);
    assert_eq!(s.is_coinbase, tx.is_coinbase());
    assert_eq!(
        s.has_witness,
        tx.input.iter().any(|i| !i.witness.is_empty())
    );
    assert_eq!(s.inputs.len(), tx.input.len());
    for (si, i) in s.inputs.iter().zip(&tx.input) {
        assert_eq!(hex(&si.prev_txid), i.previous_output.txid.to_string());
        assert_eq!(si.prev_vout, i.previous_output.vout);
        assert_eq!(si.sequence, i.sequence.0);
        assert_eq!(si.script_sig_size as usize, i.script_sig.len());
        assert_eq!(si.witness_items as usize, i.witness.len());
    }
    for (so, o) in s.outputs.iter().zip(&tx.output) {
        assert_eq!(so.value, o.value.to_sat() as i64);
        assert_eq!(so.script_pubkey, o.script_pubkey.to_bytes());
    }
}

fn check_header(s: &BlockHeaderSummary, h: &bitcoin::block::Header) {
    assert_eq!(hex(&s.hash), h.block_hash().to_string());
    assert_eq!(s.version, h.version.to_consensus());
    assert_eq!(hex(&s.prev_block), h.prev_blockhash.to_string());
    assert_eq!(hex(&s.merkle_root), h.merkle_root.to_string());
    assert_eq!(s.time, h.time);
    assert_eq!(s.bits, h.bits.to_consensus());
    assert_eq!(s.nonce, h.nonce);
}

fn check_block(b: &P2pBlock, block: &Block) {
    check_header(b.header.as_ref().unwrap(), &block.header);
    assert_eq!(b.size, serialize(block).len() as u64);
    assert_eq!(b.weight, block.weight().to_wu());
    assert_eq!(b.tx_count as usize, block.txdata.len());
    assert_eq!(b.txs.len(), block.txdata.len());
    for (s, tx) in b.txs.iter().zip(&block.txdata) {
        check_tx(s, tx);
    }
}

fn check_inventory(inv: &P2pInventory, items: &[Inventory]) {
    assert_eq!(inv.items.len(), items.len());
    for (item, expected) in inv.items.iter().zip(items) {
        let (kind, raw, hash) = match expected {
            Inventory::Error => (InventoryType::Error, 0, "00".repeat(32)),
            Inventory::Transaction(t) => (InventoryType::Tx, 1, t.to_string()),
            Inventory::Block(b) => (InventoryType::Block, 2, b.to_string()),
            Inventory::CompactBlock(b) => (InventoryType::CompactBlock, 4, b.to_string()),
            Inventory::WTx(w) => (InventoryType::Wtx, 5, w.to_string()),
            Inventory::WitnessTransaction(t) => {
                (InventoryType::WitnessTx, 0x4000_0001, t.to_string())
            }
            Inventory::WitnessBlock(b) => (InventoryType::WitnessBlock, 0x4000_0002, b.to_string()),
            Inventory::Unknown { inv_type, hash } => {
                let kind = match inv_type {
                    0 => InventoryType::Error,
                    3 => InventoryType::FilteredBlock,
                    0x4000_0003 => InventoryType::FilteredWitnessBlock,
                    _ => InventoryType::Unknown,
                };
                (
                    kind,
                    *inv_type,
                    bitcoin::hashes::sha256d::Hash::from_byte_array(*hash).to_string(),
                )
            }
        };
        assert_eq!(item.r#type(), kind);
        assert_eq!(item.type_raw, raw);
        assert_eq!(hex(&item.hash), hash);
    }
    assert_eq!(
        inv.count_by_type.values().sum::<u32>() as usize,
        items.len()
    );
}

/// Checks a decoded body against the rust-bitcoin message it was serialized from.
fn check(msg: &NetworkMessage, body: &Body) {
    match (msg, body) {
        (NetworkMessage::Version(v), Body::Version(b)) => {
            assert_eq!(b.version, v.version as i32);
            assert_eq!(b.services, v.services.to_u64());
            assert_eq!(
                b.service_names,
                ["network", "witness", "network_limited", "p2p_v2"]
            );
            assert_eq!(b.timestamp, v.timestamp);
            let receiver = b.receiver.as_ref().unwrap();
            assert_eq!(receiver.address, "203.0.113.7");
            assert_eq!(receiver.port, 8333);
            assert_eq!(receiver.network(), AddrNetwork::Ipv4);
            let sender = b.sender.as_ref().unwrap();
            assert_eq!(sender.address, "2001:db8::1");
            assert_eq!(sender.port, 18444);
            assert_eq!(sender.services, v.sender.services.to_u64());
            assert_eq!(b.nonce, v.nonce);
            assert_eq!(b.user_agent, v.user_agent);
            assert_eq!(b.start_height, v.start_height);
            assert_eq!(b.relay, v.relay);
        }
        (NetworkMessage::Verack, Body::Verack(_))
        | (NetworkMessage::SendAddrV2, Body::Sendaddrv2(_))
        | (NetworkMessage::GetAddr, Body::Getaddr(_))
        | (NetworkMessage::SendHeaders, Body::Sendheaders(_))
        | (NetworkMessage::WtxidRelay, Body::Wtxidrelay(_))
        | (NetworkMessage::MemPool, Body::Mempool(_))
        | (NetworkMessage::FilterClear, Body::Filterclear(_)) => {}
        (NetworkMessage::Ping(n), Body::Ping(b)) | (NetworkMessage::Pong(n), Body::Pong(b)) => {
            assert_eq!(b.nonce, *n)
        }
        (NetworkMessage::Addr(list), Body::Addr(b)) => {
            assert_eq!(b.addresses.len(), list.len());
            for (a, (time, addr)) in b.addresses.iter().zip(list) {
                assert_eq!(a.time, *time);
                assert_eq!(a.services, addr.services.to_u64());
                assert_eq!(a.port, addr.port as u32);
                let sock = addr.socket_addr().unwrap();
                assert_eq!(a.address, sock.ip().to_string());
            }
            assert_eq!(b.addresses[0].network(), AddrNetwork::Ipv4);
            assert_eq!(b.addresses[1].network(), AddrNetwork::Ipv6);
            assert_eq!(b.addresses[1].service_names, ["network", "witness"]);
        }
        (NetworkMessage::AddrV2(list), Body::Addrv2(b)) => {
            assert_eq!(b.addresses.len(), list.len());
            for (a, e) in b.addresses.iter().zip(list) {
                assert_eq!(a.time, e.time);
                assert_eq!(a.services, e.services.to_u64());
                assert_eq!(a.port, e.port as u32);
                let (network, id, text) = match &e.addr {
                    AddrV2::Ipv4(ip) => (AddrNetwork::Ipv4, 1, ip.to_string()),
                    AddrV2::Ipv6(ip) => (AddrNetwork::Ipv6, 2, ip.to_string()),
                    AddrV2::TorV3(_) => (AddrNetwork::Torv3, 4, a.address.clone()),
                    AddrV2::I2p(_) => (AddrNetwork::I2p, 5, a.address.clone()),
                    AddrV2::Cjdns(ip) => (AddrNetwork::Cjdns, 6, ip.to_string()),
                    AddrV2::Unknown(id, bytes) => {
                        assert_eq!(&a.address_bytes, bytes);
                        (AddrNetwork::Unknown, *id as u32, String::new())
                    }
                    AddrV2::TorV2(_) => unreachable!(),
                };
                assert_eq!(a.network(), network);
                assert_eq!(a.network_id, id);
                assert_eq!(a.address, text);
            }
            assert!(
                b.addresses[2].address.ends_with(".onion") && b.addresses[2].address.len() == 62
            );
            assert!(
                b.addresses[3].address.ends_with(".b32.i2p") && b.addresses[3].address.len() == 60
            );
        }
        (NetworkMessage::Inv(items), Body::Inv(b))
        | (NetworkMessage::GetData(items), Body::Getdata(b))
        | (NetworkMessage::NotFound(items), Body::Notfound(b)) => check_inventory(b, items),
        (NetworkMessage::Tx(tx), Body::Tx(s)) => check_tx(s, tx),
        (NetworkMessage::Block(block), Body::Block(b)) => check_block(b, block),
        (NetworkMessage::Headers(headers), Body::Headers(b)) => {
            assert_eq!(b.count as usize, headers.len());
            for (s, h) in b.headers.iter().zip(headers) {
                check_header(s, h);
            }
        }
        (NetworkMessage::GetHeaders(g), Body::Getheaders(b)) => {
            assert_eq!(b.version, g.version);
            let hashes: Vec<String> = g.locator_hashes.iter().map(|h| h.to_string()).collect();
            assert_eq!(
                b.locator_hashes.iter().map(|h| hex(h)).collect::<Vec<_>>(),
                hashes
            );
            assert_eq!(hex(&b.stop_hash), g.stop_hash.to_string());
        }
        (NetworkMessage::GetBlocks(g), Body::Getblocks(b)) => {
            assert_eq!(b.version, g.version);
            let hashes: Vec<String> = g.locator_hashes.iter().map(|h| h.to_string()).collect();
            assert_eq!(
                b.locator_hashes.iter().map(|h| hex(h)).collect::<Vec<_>>(),
                hashes
            );
            assert_eq!(hex(&b.stop_hash), g.stop_hash.to_string());
        }
        (NetworkMessage::CmpctBlock(c), Body::Cmpctblock(b)) => {
            let c = &c.compact_block;
            check_header(b.header.as_ref().unwrap(), &c.header);
            assert_eq!(b.nonce, c.nonce);
            assert_eq!(b.short_id_count as usize, c.short_ids.len());
            assert_eq!(b.prefilled_txs.len(), c.prefilled_txs.len());
            assert_eq!(
                b.prefilled_txs.iter().map(|p| p.index).collect::<Vec<_>>(),
                [0, 2]
            );
            for (p, e) in b.prefilled_txs.iter().zip(&c.prefilled_txs) {
                check_tx(p.tx.as_ref().unwrap(), &e.tx);
            }
        }
        (NetworkMessage::SendCmpct(s), Body::Sendcmpct(b)) => {
            assert_eq!(b.announce, s.send_compact);
            assert_eq!(b.version, s.version);
        }
        (NetworkMessage::GetBlockTxn(g), Body::Getblocktxn(b)) => {
            assert_eq!(hex(&b.block_hash), g.txs_request.block_hash.to_string());
            let expected: Vec<u32> = g.txs_request.indexes.iter().map(|i| *i as u32).collect();
            assert_eq!(b.indexes, expected);
        }
        (NetworkMessage::BlockTxn(t), Body::Blocktxn(b)) => {
            assert_eq!(hex(&b.block_hash), t.transactions.block_hash.to_string());
            assert_eq!(b.txs.len(), t.transactions.transactions.len());
            for (s, tx) in b.txs.iter().zip(&t.transactions.transactions) {
                check_tx(s, tx);
            }
        }
        (NetworkMessage::FeeFilter(f), Body::Feefilter(b)) => assert_eq!(b.fee_rate, *f),
        (NetworkMessage::MerkleBlock(m), Body::Merkleblock(b)) => {
            check_header(b.header.as_ref().unwrap(), &m.header);
            assert_eq!(b.total_transactions, m.txn.num_transactions());
            assert_eq!(b.hash_count as usize, m.txn.hashes().len());
            let hashes: Vec<String> = m.txn.hashes().iter().map(|h| h.to_string()).collect();
            assert_eq!(b.hashes.iter().map(|h| hex(h)).collect::<Vec<_>>(), hashes);
            let mut matches = Vec::new();
            let mut indexes = Vec::new();
            m.extract_matches(&mut matches, &mut indexes).unwrap();
            let matches: Vec<String> = matches.iter().map(|t| t.to_string()).collect();
            assert_eq!(
                b.matched_txids.iter().map(|h| hex(h)).collect::<Vec<_>>(),
                matches
            );
            assert_eq!(matches.len(), 1);
            assert_eq!(b.proof_error, "");
            assert_eq!(b.flags, vec![0x0d]);
        }
        (NetworkMessage::FilterLoad(f), Body::Filterload(b)) => {
            assert_eq!(b.filter, f.filter);
            assert_eq!(b.filter_size as usize, f.filter.len());
            assert_eq!(b.hash_funcs, f.hash_funcs);
            assert_eq!(b.tweak, f.tweak);
            assert_eq!(b.flags(), BloomFlag::All);
            assert_eq!(b.flags_raw, 1);
        }
        (NetworkMessage::FilterAdd(f), Body::Filteradd(b)) => {
            assert_eq!(b.data, f.data);
            assert_eq!(b.data_size as usize, f.data.len());
        }
        (NetworkMessage::GetCFilters(g), Body::Getcfilters(b)) => {
            assert_eq!(b.filter_type, g.filter_type as u32);
            assert_eq!(b.start_height, g.start_height);
            assert_eq!(hex(&b.stop_hash), g.stop_hash.to_string());
        }
        (NetworkMessage::GetCFHeaders(g), Body::Getcfheaders(b)) => {
            assert_eq!(b.filter_type, g.filter_type as u32);
            assert_eq!(b.start_height, g.start_height);
            assert_eq!(hex(&b.stop_hash), g.stop_hash.to_string());
        }
        (NetworkMessage::CFilter(c), Body::Cfilter(b)) => {
            assert_eq!(b.filter_type, c.filter_type as u32);
            assert_eq!(hex(&b.block_hash), c.block_hash.to_string());
            assert_eq!(b.filter, c.filter);
            assert_eq!(b.filter_size as usize, c.filter.len());
        }
        (NetworkMessage::CFHeaders(c), Body::Cfheaders(b)) => {
            assert_eq!(b.filter_type, c.filter_type as u32);
            assert_eq!(hex(&b.stop_hash), c.stop_hash.to_string());
            assert_eq!(
                hex(&b.previous_filter_header),
                c.previous_filter_header.to_string()
            );
            let hashes: Vec<String> = c.filter_hashes.iter().map(|h| h.to_string()).collect();
            assert_eq!(
                b.filter_hashes.iter().map(|h| hex(h)).collect::<Vec<_>>(),
                hashes
            );
            assert_eq!(b.filter_hash_count, 2);
        }
        (NetworkMessage::GetCFCheckpt(g), Body::Getcfcheckpt(b)) => {
            assert_eq!(b.filter_type, g.filter_type as u32);
            assert_eq!(hex(&b.stop_hash), g.stop_hash.to_string());
        }
        (NetworkMessage::CFCheckpt(c), Body::Cfcheckpt(b)) => {
            assert_eq!(b.filter_type, c.filter_type as u32);
            assert_eq!(hex(&b.stop_hash), c.stop_hash.to_string());
            let hashes: Vec<String> = c.filter_headers.iter().map(|h| h.to_string()).collect();
            assert_eq!(
                b.filter_headers.iter().map(|h| hex(h)).collect::<Vec<_>>(),
                hashes
            );
            assert_eq!(b.filter_header_count, 2);
        }
        (NetworkMessage::Alert(a), Body::Alert(b)) => assert_eq!(b.payload, serialize(a)),
        (NetworkMessage::Reject(r), Body::Reject(b)) => {
            assert_eq!(b.message, r.message);
            assert_eq!(b.ccode(), RejectCode::InsufficientFee);
            assert_eq!(b.ccode_raw, 0x42);
            assert_eq!(b.reason, r.reason);
            assert_eq!(hex(&b.hash), r.hash.to_string());
        }
        (msg, body) => panic!("{} decoded as {}", msg.cmd(), body_type(body)),
    }
}

#[test]
fn every_message_type_round_trips() {
    assert_eq!(MESSAGE_TYPES.len(), 36);
    let payloads = sample_payloads();
    assert_eq!(payloads.len(), 36);
    for msg_type in MESSAGE_TYPES {
        let msg = sample(msg_type).unwrap();
        assert_eq!(msg.cmd(), *msg_type);
        let bytes = payload(&msg);
        let body = decode_ok(msg_type, &bytes);
        check(&msg, &body);
        // and the JSON names the body after the message type
        let rendered = to_json(&decode(msg_type, &bytes));
        assert!(rendered.get(*msg_type).is_some(), "{msg_type}: {rendered}");
        assert_eq!(rendered["decode_error"], "");
    }
}

#[test]
fn json_version() {
    let bytes = payload(&sample("version").unwrap());
    let j = to_json(&decode("version", &bytes));
    assert_eq!(j["msg_type"], "version");
    assert_eq!(j["size"], 102);
    assert_eq!(j["truncated"], false);
    assert_eq!(j["raw"], "");
    assert_eq!(
        j["version"],
        json!({
            "version": 70016,
            "services": 3081,
            "service_names": ["network", "witness", "network_limited", "p2p_v2"],
            "timestamp": 1_750_000_000,
            "receiver": {"time": 0, "services": 0, "service_names": [], "network": "ipv4",
                         "network_id": 1, "address": "203.0.113.7", "port": 8333, "address_bytes": ""},
            "sender": {"time": 0, "services": 3081,
                       "service_names": ["network", "witness", "network_limited", "p2p_v2"],
                       "network": "ipv6", "network_id": 2, "address": "2001:db8::1", "port": 18444,
                       "address_bytes": ""},
            "nonce": 0x0123_4567_89ab_cdef_u64,
            "user_agent": "/Satoshi:30.0.0/",
            "start_height": 905_000,
            "relay": true,
        })
    );
}

#[test]
fn json_inv() {
    let msg = sample("inv").unwrap();
    let NetworkMessage::Inv(items) = &msg else {
        unreachable!()
    };
    let j = to_json(&decode("inv", &payload(&msg)));
    let first = &j["inv"]["items"][0];
    assert_eq!(first["type"], "tx");
    assert_eq!(first["type_raw"], 1);
    let Inventory::Transaction(txid) = items[0] else {
        unreachable!()
    };
    assert_eq!(first["hash"], txid.to_string());
    assert_eq!(j["inv"]["items"][2]["type"], "wtx");
    assert_eq!(j["inv"]["items"][4]["type"], "witness_tx");
    assert_eq!(j["inv"]["items"][4]["type_raw"], 0x4000_0001);
    assert_eq!(j["inv"]["items"][7]["type"], "filtered_block");
    assert_eq!(j["inv"]["items"][9]["type"], "error");
    assert_eq!(
        j["inv"]["items"][10],
        json!({"type": "unknown", "type_raw": 77,
        "hash": j["inv"]["items"][10]["hash"].clone()})
    );
    assert_eq!(
        j["inv"]["count_by_type"],
        json!({"tx": 1, "block": 1, "wtx": 2, "witness_tx": 1, "witness_block": 1, "compact_block": 1,
               "filtered_block": 1, "filtered_witness_block": 1, "error": 1, "unknown": 1})
    );
}

#[test]
fn json_tx() {
    let msg = sample("tx").unwrap();
    let NetworkMessage::Tx(tx) = &msg else {
        unreachable!()
    };
    let j = to_json(&decode("tx", &payload(&msg)));
    let t = &j["tx"];
    assert_eq!(t["txid"], tx.compute_txid().to_string());
    assert_eq!(t["wtxid"], tx.compute_wtxid().to_string());
    assert_eq!(t["version"], 2);
    assert_eq!(t["lock_time"], 840_000);
    assert_eq!(t["size"], 531);
    assert_eq!(t["weight"], 1791);
    assert_eq!(t["vsize"], 448);
    assert_eq!(t["input_count"], 2);
    assert_eq!(t["output_count"], 8);
    assert_eq!(t["total_output_value"], 290_000);
    assert_eq!(t["is_coinbase"], false);
    assert_eq!(t["has_witness"], true);
    assert_eq!(
        t["inputs"][1],
        json!({"prev_txid": tx.input[1].previous_output.txid.to_string(), "prev_vout": 7,
               "sequence": 0xffff_ffff_u32, "script_sig_size": 0, "witness_items": 2, "witness_size": 105})
    );
    let types: Vec<&str> = t["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["script_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "p2pkh",
            "p2sh",
            "p2wpkh",
            "p2wsh",
            "p2tr",
            "p2a",
            "op_return",
            "other"
        ]
    );
    assert_eq!(
        t["outputs"][6],
        json!({"value": 0, "script_type": "op_return", "script_pubkey": "6a046e6f6465"})
    );
}

#[test]
fn json_block() {
    let block = sample_block(3);
    let j = to_json(&decode("block", &serialize(&block)));
    let b = &j["block"];
    assert_eq!(
        b["header"],
        json!({"hash": block.block_hash().to_string(), "version": 0x2000_0000,
               "prev_block": block.header.prev_blockhash.to_string(),
               "merkle_root": block.header.merkle_root.to_string(),
               "time": 1_750_000_000, "bits": 0x1702_7726, "nonce": 0x1234_5678})
    );
    assert_eq!(b["size"], serialize(&block).len());
    assert_eq!(b["weight"], block.weight().to_wu());
    assert_eq!(b["tx_count"], 4);
    assert_eq!(b["txs"][0]["is_coinbase"], true);
    assert_eq!(
        b["txs"][0]["txid"],
        block.txdata[0].compute_txid().to_string()
    );
    assert_eq!(
        b["txs"][3]["txid"],
        block.txdata[3].compute_txid().to_string()
    );
}

#[test]
fn json_addrv2() {
    let msg = sample("addrv2").unwrap();
    let j = to_json(&decode("addrv2", &payload(&msg)));
    let a = &j["addrv2"]["addresses"];
    assert_eq!(
        a[0],
        json!({"time": 1_750_000_000, "services": 9, "service_names": ["network", "witness"],
               "network": "ipv4", "network_id": 1, "address": "1.2.3.4", "port": 8333, "address_bytes": ""})
    );
    assert_eq!(a[1]["address"], "2001:db8::1");
    assert_eq!(a[1]["network"], "ipv6");
    assert_eq!(a[2]["network"], "torv3");
    assert_eq!(
        a[2]["address"],
        "efhghp2bjehgpu2eoz3y6zyhvjwi2lenztpxrlqr4qhot6i6rgtyr4qd.onion"
    );
    assert_eq!(a[3]["network"], "i2p");
    assert_eq!(
        a[3]["address"],
        "rdsehi2a4i2wqexxfycclbts4wzipilxwztdn2lbzpenm2y6tolq.b32.i2p"
    );
    assert_eq!(a[4]["network"], "cjdns");
    assert_eq!(a[4]["address"], "fc00::1");
    assert_eq!(a[5]["network"], "unknown");
    assert_eq!(a[5]["network_id"], 42);
    assert_eq!(a[5]["address"], "");
    assert_eq!(a[5]["address_bytes"], "010203");
}

#[test]
fn json_headers() {
    let msg = sample("headers").unwrap();
    let NetworkMessage::Headers(headers) = &msg else {
        unreachable!()
    };
    let j = to_json(&decode("headers", &payload(&msg)));
    assert_eq!(j["headers"]["count"], 2);
    assert_eq!(
        j["headers"]["headers"][1],
        json!({"hash": headers[1].block_hash().to_string(), "version": 0x2000_0002,
               "prev_block": headers[1].prev_blockhash.to_string(),
               "merkle_root": headers[1].merkle_root.to_string(),
               "time": 1_700_000_002, "bits": 0x1703_0ecd, "nonce": 0xdead_0002_u32})
    );
}

#[test]
fn json_getcfcheckpt() {
    let msg = sample("getcfcheckpt").unwrap();
    let NetworkMessage::GetCFCheckpt(g) = &msg else {
        unreachable!()
    };
    let j = to_json(&decode("getcfcheckpt", &payload(&msg)));
    assert_eq!(
        j,
        json!({"msg_type": "getcfcheckpt", "size": 33, "truncated": false, "raw": "", "decode_error": "",
               "unknown_type": false,
               "getcfcheckpt": {"filter_type": 0, "stop_hash": g.stop_hash.to_string()}})
    );
}

fn max_block() -> Block {
    use simulator::payloads::{max_size_block, Rng};
    let mut rng = Rng::new(7);
    let funding = bitcoin::OutPoint {
        txid: bitcoin::Txid::from_byte_array([7; 32]),
        vout: 0,
    };
    max_size_block(
        &mut rng,
        bitcoin::BlockHash::all_zeros(),
        1,
        1_750_000_000,
        funding,
    )
}

#[test]
fn max_size_block_and_truncated_capture() {
    let block = max_block();
    let bytes = serialize(&block);
    assert_eq!(bytes.len(), 4_000_000);
    let body = decode_ok("block", &bytes);
    let Body::Block(b) = &body else {
        unreachable!()
    };
    check_block(b, &block);
    assert_eq!(b.size, 4_000_000);
    assert_eq!(b.tx_count, 2);

    // A capture cut at 1000 bytes of 4,000,000.
    let m = decode_p2p(
        "block",
        &bytes[..1000],
        4_000_000,
        DecodeOptions { keep_raw: false },
    );
    assert!(m.truncated);
    assert_eq!(m.size, 4_000_000);
    assert_eq!(m.decode_error, "truncated: captured 1000 of 4000000 bytes");
    assert_eq!(m.raw, &bytes[..1000]);
    assert!(m.body.is_none());
    let j = to_json(&m);
    assert_eq!(j["truncated"], true);
    assert_eq!(j["raw"].as_str().unwrap().len(), 2000);
    assert!(j.get("block").is_none());
}

#[test]
fn unknown_type_keeps_bytes_without_error() {
    let m = decode_p2p("foo", b"\x01\x02\x03", 3, DecodeOptions::default());
    assert!(m.unknown_type);
    assert_eq!(m.decode_error, "");
    assert_eq!(m.raw, b"\x01\x02\x03");
    assert!(m.body.is_none());
    assert_eq!(m.msg_type, "foo");
    assert_eq!(m.size, 3);
    let j = to_json(&m);
    assert_eq!(j["unknown_type"], true);
    assert_eq!(j["raw"], "010203");
    // v2 short ids and the empty type are just unknown
    assert!(decode_p2p("", b"", 0, DecodeOptions::default()).unknown_type);
}

#[test]
fn keep_raw() {
    let bytes = payload(&sample("ping").unwrap());
    let without = decode_p2p("ping", &bytes, 8, DecodeOptions { keep_raw: false });
    assert!(without.raw.is_empty() && without.body.is_some());
    let with = decode_p2p("ping", &bytes, 8, DecodeOptions { keep_raw: true });
    assert_eq!(with.raw, bytes);
    assert!(with.body.is_some());
    assert_eq!(with.decode_error, "");
}

#[test]
fn trailing_garbage_is_an_error() {
    for msg_type in [
        "tx",
        "inv",
        "ping",
        "block",
        "headers",
        "getcfcheckpt",
        "reject",
        "addrv2",
        "cmpctblock",
    ] {
        let mut bytes = payload(&sample(msg_type).unwrap());
        let len = bytes.len();
        bytes.extend([0xde, 0xad, 0xbe]);
        let m = decode(msg_type, &bytes);
        assert!(m.body.is_none(), "{msg_type}");
        assert_eq!(m.raw, bytes);
        if msg_type != "reject" {
            assert_eq!(
                m.decode_error,
                format!("{msg_type}: 3 unexpected trailing bytes at byte {len}")
            );
        } else {
            assert!(!m.decode_error.is_empty());
        }
    }
    // Empty messages must be empty.
    let m = decode("verack", b"\x00");
    assert_eq!(
        m.decode_error,
        "verack: expected an empty payload, got 1 bytes at byte 0"
    );
    assert_eq!(m.raw, b"\x00");
}

#[test]
fn version_is_as_lenient_as_core() {
    let full = payload(&sample("version").unwrap());
    // Without relay (old peers): relay defaults to true.
    let Body::Version(v) = decode_ok("version", &full[..full.len() - 1]) else {
        unreachable!()
    };
    assert!(v.relay);
    assert_eq!(v.start_height, 905_000);
    // Only up to the receiver's address (pre-106 peers).
    let Body::Version(v) = decode_ok("version", &full[..46]) else {
        unreachable!()
    };
    assert!(v.sender.is_none());
    assert_eq!(v.user_agent, "");
    // Bytes after relay are ignored, as Core does.
    let mut longer = full.clone();
    longer.extend([1, 2, 3]);
    decode_ok("version", &longer);
    // Relay false.
    let mut no_relay = full.clone();
    *no_relay.last_mut().unwrap() = 0;
    let Body::Version(v) = decode_ok("version", &no_relay) else {
        unreachable!()
    };
    assert!(!v.relay);
    // Cut inside the sender's address: an error.
    let m = decode("version", &full[..50]);
    assert_eq!(
        m.decode_error,
        "version: unexpected end of data at byte 46 (sender address)"
    );
}

#[test]
fn errors_say_what_and_where() {
    let inv = payload(&NetworkMessage::Inv(vec![
        Inventory::WTx(bitcoin::Wtxid::all_zeros()),
        Inventory::WTx(bitcoin::Wtxid::all_zeros()),
    ]));
    let m = decode("inv", &inv[..50]);
    assert_eq!(
        m.decode_error,
        "inv: unexpected end of data at byte 37 (item 1 of 2)"
    );
    assert_eq!(m.raw, &inv[..50]);

    let m = decode("ping", b"\x01\x02");
    assert_eq!(
        m.decode_error,
        "ping: unexpected end of data at byte 0 (nonce)"
    );

    let block = serialize(&sample_block(3));
    let m = decode("block", &block[..500]);
    assert!(
        m.decode_error
            .starts_with("block: unexpected end of data at byte "),
        "{}",
        m.decode_error
    );
    assert!(
        m.decode_error.ends_with("(tx 1 of 4)"),
        "{}",
        m.decode_error
    );

    // Non-canonical CompactSize, as Core rejects.
    let m = decode("inv", b"\xfd\x01\x00");
    assert!(m.decode_error.starts_with("inv: "), "{}", m.decode_error);
    assert!(
        m.decode_error.contains("at byte 0 (count)"),
        "{}",
        m.decode_error
    );

    // A known BIP155 network with the wrong length fails, as in Core.
    let mut addrv2 = vec![1u8];
    addrv2.extend(1_750_000_000u32.to_le_bytes());
    addrv2.extend([1, 1, 3, 1, 2, 3, 0x20, 0x8d]);
    let m = decode("addrv2", &addrv2);
    assert_eq!(
        m.decode_error,
        "addrv2: ADDR_NETWORK_IPV4 address with length 3 (should be 4) at byte 6 (item 0 of 1)"
    );

    // getblocktxn indexes are 16-bit, as in Core.
    let mut gbt = vec![0u8; 32];
    gbt.extend([2, 0xfd, 0xff, 0xff, 0x00]);
    let m = decode("getblocktxn", &gbt);
    assert_eq!(
        m.decode_error,
        "getblocktxn: index overflowed 16 bits at byte 36 (index 1 of 2)"
    );
}

#[test]
fn addresses_in_all_networks() {
    // IPv4-mapped IPv6 inside addrv2's IPv6 network: shown as IPv4, still network ipv6 (Core
    // accepts the entry).
    let mut addrv2 = vec![2u8];
    for (id, addr) in [
        (2u8, {
            let mut a = [0u8; 16];
            a[10] = 0xff;
            a[11] = 0xff;
            a[12..].copy_from_slice(&[10, 0, 0, 1]);
            a.to_vec()
        }),
        (3u8, vec![0xaa; 10]),
    ] {
        addrv2.extend(7u32.to_le_bytes());
        addrv2.push(1);
        addrv2.push(id);
        addrv2.push(addr.len() as u8);
        addrv2.extend(&addr);
        addrv2.extend(8333u16.to_be_bytes());
    }
    let Body::Addrv2(a) = decode_ok("addrv2", &addrv2) else {
        unreachable!()
    };
    assert_eq!(a.addresses[0].address, "10.0.0.1");
    assert_eq!(a.addresses[0].network(), AddrNetwork::Ipv6);
    assert_eq!(a.addresses[1].network(), AddrNetwork::Torv2);
    assert_eq!(a.addresses[1].address, "vkvkvkvkvkvkvkvk.onion");
}

#[test]
fn sha3_and_onion_addresses() {
    assert_eq!(
        hex(&nodescope_proto::p2p::sha3_256(b"")),
        "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
    );
    assert_eq!(
        hex(&nodescope_proto::p2p::sha3_256(&[0x61; 200])),
        hex(&nodescope_proto::p2p::sha3_256(&[0x61; 200]))
    );
    assert_eq!(
        hex(&nodescope_proto::p2p::sha3_256(b"abc")),
        "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
    );
    // A real Tor v3 address: decode it, rebuild it from its key.
    let onion = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad";
    let mut bits = 0u64;
    let mut n = 0;
    let mut bytes = Vec::new();
    for c in onion.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => unreachable!(),
        };
        bits = (bits << 5) | v as u64;
        n += 5;
        if n >= 8 {
            n -= 8;
            bytes.push((bits >> n) as u8);
        }
    }
    let key: [u8; 32] = bytes[..32].try_into().unwrap();
    assert_eq!(nodescope_proto::p2p::torv3(&key), format!("{onion}.onion"));
}

#[test]
fn reject_without_hash() {
    let mut bytes = vec![5];
    bytes.extend(b"block");
    bytes.push(0x10);
    bytes.push(3);
    bytes.extend(b"bad");
    let Body::Reject(r) = decode_ok("reject", &bytes) else {
        unreachable!()
    };
    assert_eq!(r.message, "block");
    assert_eq!(r.ccode(), RejectCode::Invalid);
    assert_eq!(r.reason, "bad");
    assert!(r.hash.is_empty());
}

#[test]
fn every_type_truncated_by_one_byte_is_an_error() {
    for (msg_type, bytes) in sample_payloads() {
        if bytes.is_empty() || msg_type == "alert" {
            continue;
        }
        let m = decode(msg_type, &bytes[..bytes.len() - 1]);
        if msg_type == "version" || msg_type == "reject" {
            continue; // optional tails, as in Core
        }
        assert!(!m.decode_error.is_empty(), "{msg_type}");
        assert!(m.body.is_none());
        assert_eq!(m.raw, &bytes[..bytes.len() - 1]);
    }
}
