//! Generates the prost types from `proto/*.proto` with protox (pure Rust: no protoc needed), and
//! keeps the descriptor set so the JSON renderer can walk any event by reflection.
//!
//! The RPC answer messages of `rpc.proto` also get serde derives, so that bitcoind's JSON reads
//! straight into them (their fields are named like its keys): optional and message fields are
//! left out when absent, and `bytes` fields (optional ones too) are hashes written as hex.
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};

/// `rpc.proto` messages that are not a bitcoind answer: made by the extractor, not read.
const NOT_ANSWERS: &[&str] = &[
    "RpcCall",
    "RpcFailure",
    "RawAddrmanPart",
    "RawAddrmanEntry",
    "ZmqNotification",
    "ZmqSequence",
];

/// Answers that are one JSON value (an array, a map, a number), not an object of fields.
const TRANSPARENT: &[&str] = &[
    "PeerInfoList",
    "AddrmanInfo",
    "Uptime",
    "OrphanTxList",
    "IndexInfo",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const SCHEMA: &[&str] = &[
        "proto/nodescope.proto",
        "proto/p2p.proto",
        "proto/rpc.proto",
        "proto/peer.proto",
        "proto/fleet.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(SCHEMA, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR not set")?);
    std::fs::write(out_dir.join("descriptors.bin"), descriptors.encode_to_vec())?;
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    let rpc = descriptors
        .file
        .iter()
        .find(|file| file.name() == "rpc.proto")
        .ok_or("rpc.proto missing from the descriptors")?;
    for message in &rpc.message_type {
        let name = message.name();
        if NOT_ANSWERS.contains(&name) {
            continue;
        }
        let path = format!(".nodescope.v1.{name}");
        config.type_attribute(&path, "#[derive(serde::Serialize, serde::Deserialize)]");
        if TRANSPARENT.contains(&name) {
            config.type_attribute(&path, "#[serde(transparent)]");
            continue;
        }
        config.type_attribute(&path, "#[serde(default)]");
        for field in &message.field {
            let field_path = format!("{path}.{}", field.name());
            let repeated = field.label() == Label::Repeated;
            if field.proto3_optional() || (field.r#type() == Type::Message && !repeated) {
                config.field_attribute(
                    &field_path,
                    "#[serde(skip_serializing_if = \"Option::is_none\")]",
                );
            }
            if field.r#type() == Type::Bytes {
                let with = if field.proto3_optional() {
                    "#[serde(with = \"crate::rpc::hex_bytes::optional\")]"
                } else {
                    "#[serde(with = \"crate::rpc::hex_bytes\")]"
                };
                config.field_attribute(&field_path, with);
            }
        }
    }
    config.compile_fds(descriptors)?;
    Ok(())
}
