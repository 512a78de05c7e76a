//! Builds the kernel object (`extractor-ebpf`, target bpfel-unknown-none) with Debian's rustc,
//! which ships the matching core source that `-Z build-std=core` needs
//! (rustup's toolchains here have no rust-src).
//!
//! This does what aya-build's `build_ebpf` does, but quietly: aya-build turns every line the
//! inner cargo prints ("Compiling core …", about 300 of them on a first build) into a
//! `cargo:warning`, which a newcomer reads as 300 warnings. Here the inner build's output goes to
//! a log file; only real compiler warnings are passed on, and the whole log is printed when the
//! build fails. Cargo's own progress line shows `extractor(build)` meanwhile.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// The rustup toolchain name `xtask/setup.sh` links Debian's compiler under.
const EBPF_TOOLCHAIN: &str = "debian-ebpf";
const EBPF_PACKAGE: &str = "extractor-ebpf";

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ebpf_dir = manifest_dir.join("../extractor-ebpf");
    println!("cargo:rerun-if-changed=../extractor-common/src");
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
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
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let target = match std::env::var("CARGO_CFG_TARGET_ENDIAN")?.as_str() {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        other => bail!("unsupported endianness {other}"),
    };
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH")?;
    // The same directory aya-build used, so that an existing build is reused.
    let target_dir = out_dir.join("aya-build/target").join(EBPF_PACKAGE);
    let log_path = out_dir.join("ebpf-build.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let output = Command::new("rustup")
        .args(["run", EBPF_TOOLCHAIN, "cargo", "build"])
        .args(["--package", EBPF_PACKAGE, "--bins", "--release"])
        .args(["--target", target, "-Z", "build-std=core"])
        .arg("--message-format=json-render-diagnostics")
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&manifest_dir)
        // Debian's rustc is stable: RUSTC_BOOTSTRAP admits -Z build-std.
        .env("RUSTC_BOOTSTRAP", "1")
        // CPU v3: BPF_ATOMIC fetch-add for the event ids (kernel 5.12+; ring buffers, bpf_loop
        // and attach cookies already need 5.17).
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!(
                "--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf\x1f-Ctarget-cpu=v3"
            ),
        )
        // The outer build's compiler must not leak into the inner one.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(log)
        .output()
        .context("running the eBPF build (rustup run debian-ebpf cargo build)")?;
    let warnings = compiler_warnings(&output.stdout);
    if !output.status.success() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        eprintln!("{log}");
        bail!(
            "building the eBPF program ({EBPF_PACKAGE}) failed ({}); its full log is above and in {}",
            output.status,
            log_path.display()
        );
    }
    for line in warnings.iter().flat_map(|w| w.lines()) {
        println!("cargo:warning={line}");
    }
    copy_object(
        &target_dir.join(target).join("release").join(EBPF_PACKAGE),
        &out_dir,
    )
}

/// The rendered compiler warnings in cargo's JSON messages (the rest is progress).
fn compiler_warnings(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-message")
        .filter(|message| message["message"]["level"] == "warning")
        .filter_map(|message| message["message"]["rendered"].as_str().map(String::from))
        .collect()
}

fn copy_object(object: &Path, out_dir: &Path) -> anyhow::Result<()> {
    std::fs::copy(object, out_dir.join(EBPF_PACKAGE))
        .with_context(|| format!("copying the eBPF object {}", object.display()))?;
    Ok(())
}
