//! Builds the kernel object (`extractor-ebpf`, target bpfel-unknown-none) with Debian's rustc,
//! which ships the matching core source that `-Z build-std=core` needs (see TOOLCHAIN.md).
use std::process::{Command, Stdio};

/// The rustup toolchain name `xtask/setup.sh` links Debian's compiler under.
const EBPF_TOOLCHAIN: &str = "debian-ebpf";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../extractor-common/src");
    for tool in [
        vec!["rustup", "run", EBPF_TOOLCHAIN, "rustc", "-V"],
        vec!["bpf-linker", "--version"],
    ] {
        let ok = Command::new(tool[0])
            .args(&tool[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !ok {
            eprintln!(
                "error: the eBPF toolchain is not set up (`{}` failed): run `cargo xtask setup` once, then build again",
                tool.join(" ")
            );
            std::process::exit(1);
        }
    }
    // aya-build passes -Z build-std=core only when RUSTC_BOOTSTRAP=1 (Debian's rustc is stable).
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    let ebpf = aya_build::Package {
        name: "extractor-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../extractor-ebpf"),
        no_default_features: false,
        features: &[],
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::Custom(EBPF_TOOLCHAIN))
}
