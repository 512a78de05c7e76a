//! Which capabilities the extractor needs, measured: as root with a bounding set of exactly
//! the capabilities under test (what a container's `cap_add` gives).
//!
//! - CAP_BPF + CAP_PERFMON attach with multi-uprobe links (the default on Linux 6.6+);
//! - the same refuse perf-event uprobes (`--perf-links`): Linux ba677dbe77af (6.16, in the 6.6
//!   and 6.12 stable kernels since July 2025) requires CAP_SYS_ADMIN for them, and the error
//!   says so;
//! - CAP_SYS_ADMIN alone attaches either way (the fallback for kernels without multi-uprobe
//!   links).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs the extractor with only `caps` until it says it attached (`Ok(log)`) or exits
/// (`Err(log)`), within 30 s.
fn attach_with(caps: &str, extra: &[&str]) -> Result<String, String> {
    common::assert_root();
    let simulator = simulator::binary_path("bitcoind-sim").unwrap();
    let set = format!("-all,{caps}");
    let mut child = Command::new("setpriv")
        .args([
            &format!("--bounding-set={set}"),
            &format!("--inh-caps={set}"),
            &format!("--ambient-caps={set}"),
        ])
        .arg(env!("CARGO_BIN_EXE_extractor"))
        .args(["ebpf", "--bitcoind-path"])
        .arg(&simulator)
        .args(extra)
        // No NATS: the extractor starts anyway and retries in the background.
        .args(["--nats-url", "nats://127.0.0.1:1"])
        .env("RUST_LOG", "info,async_nats=off")
        .env("RUST_BACKTRACE", "0")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux) runs the extractor");
    let (lines, received) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    let outcome = loop {
        match received.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains(" attached") {
                    break Ok(());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    Instant::now() < deadline,
                    "neither attached nor exited:\n{log}"
                );
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome.map(|()| log.clone()).map_err(|()| log)
}

#[test]
fn cap_bpf_and_cap_perfmon_attach_with_multi_uprobe_links() {
    let log = attach_with("+bpf,+perfmon", &[]).unwrap_or_else(|log| panic!("{log}"));
    assert!(log.contains("one multi-uprobe link"), "{log}");
}

#[test]
fn perf_event_uprobes_need_cap_sys_admin_and_the_error_says_so() {
    let log = attach_with("+bpf,+perfmon", &["--perf-links"])
        .expect_err("perf-event uprobes refused without CAP_SYS_ADMIN");
    assert!(log.contains("need CAP_SYS_ADMIN"), "{log}");
    assert!(log.contains("multi-uprobe links"), "{log}");
}

#[test]
fn cap_sys_admin_alone_is_the_fallback() {
    for extra in [&[][..], &["--perf-links"][..]] {
        attach_with("+sys_admin", extra).unwrap_or_else(|log| panic!("{extra:?}: {log}"));
    }
}
