//! What a person sees when the extractor is pointed at the wrong thing: one specific sentence
//! and a non-zero exit, never a panic or a wall of text.

use std::process::Command;

fn extractor(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_extractor"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn missing_binary_is_named() {
    let (ok, stderr) = extractor(&["ebpf", "--bitcoind-path", "/nonexistent/bitcoind"]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot read /nonexistent/bitcoind: No such file or directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn binary_without_usdt_is_explained() {
    let (ok, stderr) = extractor(&["ebpf", "--bitcoind-path", "/bin/true"]);
    assert!(!ok);
    assert!(stderr.contains("has no USDT tracepoints"), "{stderr}");
    assert!(stderr.contains("-DWITH_USDT=ON"), "{stderr}");
}

#[test]
fn text_file_is_not_an_executable() {
    let (ok, stderr) = extractor(&["ebpf", "--bitcoind-path", "/etc/hostname"]);
    assert!(!ok);
    assert!(
        stderr.contains("is not a 64-bit ELF executable"),
        "{stderr}"
    );
}

#[test]
fn unknown_tracepoint_lists_the_choices() {
    let (ok, stderr) = extractor(&[
        "ebpf",
        "--bitcoind-path",
        "/bin/true",
        "--tracepoints",
        "net,mempol",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("unknown tracepoint or provider \"mempol\""),
        "{stderr}"
    );
    assert!(stderr.contains("coin_selection"), "{stderr}");
}

#[test]
fn without_privileges_says_what_is_needed() {
    // As user nobody, with no capabilities: the kernel refuses the eBPF maps.
    let simulator = simulator::binary_path("bitcoind-sim").unwrap();
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_extractor"))
        .args(["ebpf", "--bitcoind-path"])
        .arg(&simulator)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("loading needs CAP_BPF + CAP_PERFMON, or root"),
        "{stderr}"
    );
}
