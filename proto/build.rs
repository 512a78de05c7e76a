//! Generates the prost types from `proto/*.proto` with protox (pure Rust: no protoc needed), and
//! keeps the descriptor set so the JSON renderer can walk any event by reflection.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const SCHEMA: &[&str] = &["proto/nodescope.proto", "proto/p2p.proto"];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(SCHEMA, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR not set")?);
    std::fs::write(out_dir.join("descriptors.bin"), descriptors.encode_to_vec())?;
    prost_build::Config::new()
        .enable_type_names()
        .compile_fds(descriptors)?;
    Ok(())
}
