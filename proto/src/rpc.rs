//! bitcoind's RPC answers as `rpc.proto` payloads: which methods `extractor rpc` calls, with
//! which parameters, and how each answer's JSON becomes its typed payload.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::rpc_call::Result as Answer;
use crate::{
    AddrmanInfo, BlockchainInfo, ChainTxStats, IndexInfo, MemoryInfo, MempoolInfo, NetTotals,
    NetworkInfo, OrphanTxList, PeerInfoList, RawAddrmanEntry, RawAddrmanPart, TxOutSetInfo, Uptime,
};

/// The RPC methods `extractor rpc` polls, in the order it calls them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    GetPeerInfo,
    GetMempoolInfo,
    GetNetTotals,
    GetMemoryInfo,
    Uptime,
    GetBlockchainInfo,
    GetNetworkInfo,
    GetAddrmanInfo,
    GetChainTxStats,
    GetOrphanTxs,
    GetRawAddrman,
    GetIndexInfo,
    GetTxOutSetInfo,
}

/// How often a method is called: `Fast` every `--interval`, `Slow` every `--slow-interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Fast,
    Slow,
}

impl Method {
    pub const ALL: &'static [Method] = &[
        Method::GetPeerInfo,
        Method::GetMempoolInfo,
        Method::GetNetTotals,
        Method::GetMemoryInfo,
        Method::Uptime,
        Method::GetBlockchainInfo,
        Method::GetNetworkInfo,
        Method::GetAddrmanInfo,
        Method::GetChainTxStats,
        Method::GetOrphanTxs,
        Method::GetRawAddrman,
        Method::GetIndexInfo,
        Method::GetTxOutSetInfo,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Method::GetPeerInfo => "getpeerinfo",
            Method::GetMempoolInfo => "getmempoolinfo",
            Method::GetNetTotals => "getnettotals",
            Method::GetMemoryInfo => "getmemoryinfo",
            Method::Uptime => "uptime",
            Method::GetBlockchainInfo => "getblockchaininfo",
            Method::GetNetworkInfo => "getnetworkinfo",
            Method::GetAddrmanInfo => "getaddrmaninfo",
            Method::GetChainTxStats => "getchaintxstats",
            Method::GetOrphanTxs => "getorphantxs",
            Method::GetRawAddrman => "getrawaddrman",
            Method::GetIndexInfo => "getindexinfo",
            Method::GetTxOutSetInfo => "gettxoutsetinfo",
        }
    }

    /// The expensive ones go at the slow pace: getrawaddrman walks the whole address manager,
    /// getchaintxstats reads a month of block index, getorphantxs and getindexinfo change slowly,
    /// gettxoutsetinfo reads the coinstatsindex (or, without it, scans the whole UTXO set).
    pub const fn pace(self) -> Pace {
        match self {
            Method::GetChainTxStats
            | Method::GetOrphanTxs
            | Method::GetRawAddrman
            | Method::GetIndexInfo
            | Method::GetTxOutSetInfo
            | Method::GetAddrmanInfo => Pace::Slow,
            _ => Pace::Fast,
        }
    }

    /// The JSON-RPC `params`.
    pub fn params(self) -> Value {
        match self {
            // Verbosity 1: ids, sizes and the peers each came from, without the raw hex.
            Method::GetOrphanTxs => serde_json::json!([1]),
            Method::GetMemoryInfo => serde_json::json!(["stats"]),
            // No hash (computing one reads every coin), at the tip, from the coinstatsindex
            // when there is one.
            Method::GetTxOutSetInfo => serde_json::json!(["none", null, true]),
            _ => serde_json::json!([]),
        }
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// Reads the `result` of this method's answer. Keys the schema has no field for are
    /// returned, not an error: a newer bitcoind adds fields.
    pub fn decode(self, result: Value) -> Result<Decoded, BadAnswer> {
        let mut unknown = Vec::new();
        let answer = match self {
            Method::GetPeerInfo => {
                Answer::PeerInfo(read::<PeerInfoList>(self, result, &mut unknown)?)
            }
            Method::GetMempoolInfo => {
                Answer::MempoolInfo(read::<MempoolInfo>(self, result, &mut unknown)?)
            }
            Method::GetNetTotals => {
                Answer::NetTotals(read::<NetTotals>(self, result, &mut unknown)?)
            }
            Method::GetMemoryInfo => {
                Answer::MemoryInfo(read::<MemoryInfo>(self, result, &mut unknown)?)
            }
            Method::Uptime => Answer::Uptime(read::<Uptime>(self, result, &mut unknown)?),
            Method::GetBlockchainInfo => {
                Answer::BlockchainInfo(read::<BlockchainInfo>(self, result, &mut unknown)?)
            }
            Method::GetNetworkInfo => {
                Answer::NetworkInfo(read::<NetworkInfo>(self, result, &mut unknown)?)
            }
            Method::GetAddrmanInfo => {
                Answer::AddrmanInfo(read::<AddrmanInfo>(self, result, &mut unknown)?)
            }
            Method::GetChainTxStats => {
                Answer::ChainTxStats(read::<ChainTxStats>(self, result, &mut unknown)?)
            }
            Method::GetOrphanTxs => {
                Answer::OrphanTxs(read::<OrphanTxList>(self, result, &mut unknown)?)
            }
            Method::GetIndexInfo => {
                Answer::IndexInfo(read::<IndexInfo>(self, result, &mut unknown)?)
            }
            Method::GetTxOutSetInfo => {
                Answer::TxOutSetInfo(read::<TxOutSetInfo>(self, result, &mut unknown)?)
            }
            Method::GetRawAddrman => {
                return raw_addrman(result, &mut unknown).map(|entries| Decoded {
                    answer: DecodedAnswer::RawAddrman(entries),
                    unknown_fields: unknown,
                })
            }
        };
        Ok(Decoded {
            answer: DecodedAnswer::One(answer),
            unknown_fields: unknown,
        })
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded answer and the keys it had that the schema lacks.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub answer: DecodedAnswer,
    pub unknown_fields: Vec<String>,
}

// Made and taken apart once per call: the size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum DecodedAnswer {
    One(Answer),
    /// getrawaddrman's entries, new table first: published in parts ([`raw_addrman_parts`]).
    RawAddrman(Vec<RawAddrmanEntry>),
}

/// An answer that does not have the shape v30.0 gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method} answered something v30.0 does not: {reason}")]
pub struct BadAnswer {
    pub method: &'static str,
    pub reason: String,
}

fn read<T: DeserializeOwned>(
    method: Method,
    result: Value,
    unknown: &mut Vec<String>,
) -> Result<T, BadAnswer> {
    serde_ignored::deserialize(result, |path| unknown.push(path.to_string())).map_err(
        |e: serde_json::Error| BadAnswer {
            method: method.name(),
            reason: e.to_string(),
        },
    )
}

/// The fields of one getrawaddrman entry, as bitcoind prints them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    address: String,
    #[serde(default)]
    mapped_as: Option<u32>,
    port: u32,
    network: String,
    services: u64,
    time: i64,
    source: String,
    source_network: String,
    #[serde(default)]
    source_mapped_as: Option<u32>,
}

fn raw_addrman(
    result: Value,
    unknown: &mut Vec<String>,
) -> Result<Vec<RawAddrmanEntry>, BadAnswer> {
    let bad = |reason: String| BadAnswer {
        method: Method::GetRawAddrman.name(),
        reason,
    };
    let Value::Object(tables) = result else {
        return Err(bad(format!("not an object: {}", kind_of(&result))));
    };
    let mut entries = Vec::new();
    for (table, positions) in tables {
        if table != "new" && table != "tried" {
            unknown.push(table);
            continue;
        }
        let Value::Object(positions) = positions else {
            return Err(bad(format!("table {table:?} is not an object")));
        };
        for (bucket_position, entry) in positions {
            let raw: RawEntry = serde_json::from_value(entry)
                .map_err(|e| bad(format!("entry {table}/{bucket_position}: {e}")))?;
            entries.push(RawAddrmanEntry {
                table: table.clone(),
                bucket_position,
                address: raw.address,
                mapped_as: raw.mapped_as,
                port: raw.port,
                network: raw.network,
                services: raw.services,
                time: raw.time,
                source: raw.source,
                source_network: raw.source_network,
                source_mapped_as: raw.source_mapped_as,
            });
        }
    }
    // New before tried, as bitcoind prints them.
    entries.sort_by(|a, b| b.table.cmp(&a.table));
    Ok(entries)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// getrawaddrman's entries split in parts of at most `max_part_bytes` encoded, all numbered
/// with `answer_id`; an empty address manager is one empty part.
pub fn raw_addrman_parts(
    entries: Vec<RawAddrmanEntry>,
    answer_id: u64,
    max_part_bytes: usize,
) -> Vec<RawAddrmanPart> {
    use prost::Message;
    let new_total = entries.iter().filter(|e| e.table == "new").count() as u64;
    let tried_total = entries.len() as u64 - new_total;
    let mut parts: Vec<Vec<RawAddrmanEntry>> = vec![Vec::new()];
    let mut bytes = 0;
    for entry in entries {
        // Field tag, length prefix and the entry.
        let size = entry.encoded_len() + 4;
        if bytes + size > max_part_bytes && !parts.last().is_some_and(Vec::is_empty) {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        parts.last_mut().expect("one part at least").push(entry);
    }
    let count = parts.len() as u32;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, entries)| RawAddrmanPart {
            part: i as u32,
            parts: count,
            answer_id,
            new_total,
            tried_total,
            entries,
        })
        .collect()
}

/// Block and transaction hashes as the hex people read, in `bytes` fields of the answers.
pub mod hex_bytes {
    use bitcoin::hex::{DisplayHex, FromHex};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&bytes.to_lower_hex_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        Vec::<u8>::from_hex(&text).map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
    }

    /// The same for an `optional bytes` field (absent when bitcoind leaves the key out).
    pub mod optional {
        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            bytes: &Option<Vec<u8>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(bytes) => super::serialize(bytes, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            super::deserialize(deserializer).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_peer_reads_field_for_field_and_new_keys_are_named() {
        let answer = json!([{
            "id": 3, "addr": "127.0.0.1:1", "network": "not_publicly_routable",
            "services": "0000000000000c09", "servicesnames": ["NETWORK"], "relaytxes": true,
            "pingtime": 0.000399, "minfeefilter": 0.00000100,
            "bytessent_per_msg": {"ping": 29}, "transport_protocol_type": "v2",
            "from_the_future": 1
        }]);
        let decoded = Method::GetPeerInfo.decode(answer).unwrap();
        assert_eq!(
            decoded.unknown_fields,
            vec!["0.from_the_future".to_string()]
        );
        let DecodedAnswer::One(Answer::PeerInfo(list)) = decoded.answer else {
            panic!("not a peer list")
        };
        let peer = &list.peers[0];
        assert_eq!(
            (peer.id, peer.pingtime, peer.minping),
            (3, Some(0.000399), None)
        );
        assert_eq!(peer.minfeefilter, 0.000001);
        assert_eq!(peer.bytessent_per_msg["ping"], 29);
        let back = serde_json::to_value(peer).unwrap();
        assert!(back.get("minping").is_none(), "absent stays absent: {back}");
    }

    #[test]
    fn a_wrong_type_is_a_bad_answer_naming_the_method() {
        let error = Method::GetMempoolInfo
            .decode(json!({"size": "many"}))
            .unwrap_err();
        assert_eq!(error.method, "getmempoolinfo");
        assert!(error.reason.contains("invalid type"), "{error}");
    }

    #[test]
    fn hashes_are_bytes_in_display_order() {
        let hash = "4e0e1a334a77ea2cb0e5b52e441cce8fa78be585b72a889516aa724c29e708da";
        let decoded = Method::GetBlockchainInfo
            .decode(json!({"chain": "regtest", "bestblockhash": hash}))
            .unwrap();
        let DecodedAnswer::One(Answer::BlockchainInfo(info)) = decoded.answer else {
            panic!()
        };
        assert_eq!(info.bestblockhash[0], 0x4e);
        assert_eq!(serde_json::to_value(&info).unwrap()["bestblockhash"], hash);
    }

    #[test]
    fn txoutsetinfo_reads_with_and_without_the_index() {
        let indexed = json!({
            "height": 200, "bestblock": "22241db3cb040b388a15f1fe539c71982d3669945443e13490411afe4420cdb1",
            "txouts": 200, "bogosize": 14400, "total_amount": 8725.00000000,
            "total_unspendable_amount": 50.00000000,
            "block_info": {"prevout_spent": 0.0, "coinbase": 25.0, "new_outputs_ex_coinbase": 0.0,
                "unspendable": 0.0, "unspendables": {"genesis_block": 0.0, "bip30": 0.0,
                "scripts": 0.0, "unclaimed_rewards": 0.0}}
        });
        let decoded = Method::GetTxOutSetInfo.decode(indexed.clone()).unwrap();
        assert!(
            decoded.unknown_fields.is_empty(),
            "{:?}",
            decoded.unknown_fields
        );
        let DecodedAnswer::One(Answer::TxOutSetInfo(info)) = decoded.answer else {
            panic!()
        };
        assert_eq!((info.height, info.total_amount), (200, 8725.0));
        assert_eq!(info.total_unspendable_amount, Some(50.0));
        assert_eq!(info.block_info.unwrap().coinbase, 25.0);
        assert_eq!((info.transactions, info.muhash.as_ref()), (None, None));
        assert_eq!(serde_json::to_value(&info).unwrap(), indexed);

        let scanned = json!({
            "height": 3, "bestblock": "490fb63e44ec67f2c279de6e40de327d85a62fd6f894115704e2e060e50410d9",
            "txouts": 3, "bogosize": 216, "total_amount": 150.0,
            "muhash": "59b14ff7fc24a8d883578c1226cb25fda75e17d840ce0ff80d75829ce7c7188a",
            "transactions": 3, "disk_size": 0
        });
        let DecodedAnswer::One(Answer::TxOutSetInfo(info)) = Method::GetTxOutSetInfo
            .decode(scanned.clone())
            .unwrap()
            .answer
        else {
            panic!()
        };
        assert_eq!((info.transactions, info.disk_size), (Some(3), Some(0)));
        assert_eq!(info.muhash.as_ref().unwrap()[0], 0x59);
        assert!(info.block_info.is_none());
        assert_eq!(serde_json::to_value(&info).unwrap(), scanned);
    }

    #[test]
    fn raw_addrman_splits_within_the_part_size() {
        let mut new = serde_json::Map::new();
        for i in 0..3000 {
            new.insert(
                format!("{}/{}", i / 64, i % 64),
                json!({"address": format!("10.0.{}.{}", i / 256, i % 256), "port": 8333,
                       "network": "ipv4", "services": 1033, "time": 1_700_000_000 + i,
                       "source": "1.2.3.4", "source_network": "ipv4"}),
            );
        }
        let decoded = Method::GetRawAddrman
            .decode(json!({"new": new, "tried": {}}))
            .unwrap();
        let DecodedAnswer::RawAddrman(entries) = decoded.answer else {
            panic!()
        };
        let parts = raw_addrman_parts(entries, 7, 64 * 1024);
        assert!(parts.len() > 1, "3000 entries fit one 64 KiB part?");
        use prost::Message;
        for part in &parts {
            assert!(
                part.encoded_len() <= 64 * 1024 + 64,
                "{}",
                part.encoded_len()
            );
            assert_eq!(
                (part.parts, part.answer_id, part.new_total),
                (parts.len() as u32, 7, 3000)
            );
        }
        let total: usize = parts.iter().map(|p| p.entries.len()).sum();
        assert_eq!(total, 3000);
        assert!(raw_addrman_parts(Vec::new(), 1, 1024).len() == 1);
    }
}
