//! Generates the prost types from `proto/*.proto` with protox (pure Rust: no protoc needed).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    const SCHEMA: &str = "proto/nodescope.proto";
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile([SCHEMA], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
