//! Semaphore gating: nothing fires without a tracer; a raised semaphore makes exactly its
//! tracepoint fire; legacy probes always fire.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use common::*;
use extractor_common::Tracepoint;
use simulator::TruthRecord;

/// What a tracer can compare between runs: everything but pid, tid, timestamp and seq.
fn content(records: &[TruthRecord]) -> Vec<(String, Vec<simulator::TruthArg>)> {
    records
        .iter()
        .map(|r| (r.tracepoint.clone(), r.args.clone()))
        .collect()
}

/// Starts bitcoind-sim waiting for `wait_list`, raises the semaphores of `raise`, returns the truth.
fn run_with_semaphores(tag: &str, wait_list: &str, raise: &[Tracepoint]) -> Vec<TruthRecord> {
    let binary = bin("bitcoind-sim");
    let notes = readelf_notes(&binary);
    let truth = temp_path(tag);
    let child = Command::new(&binary)
        .args([
            "--truth",
            truth.to_str().unwrap(),
            "--wait-for-tracer",
            wait_list,
            "--wait-timeout",
            "20",
        ])
        .arg("regtest-like")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for tp in raise {
        let note = notes
            .iter()
            .find(|n| n.full_name() == tp.to_string())
            .unwrap();
        set_semaphore(child.id(), &binary, note.semaphore, 1);
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    simulator::read_truth(&truth).unwrap()
}

#[test]
fn without_a_tracer_nothing_fires() {
    let truth = temp_path("no-tracer");
    run(
        &bin("bitcoind-sim"),
        &["--truth", truth.to_str().unwrap(), "regtest-like"],
    );
    let records = simulator::read_truth(&truth).unwrap();
    assert!(
        records.is_empty(),
        "{} records fired with every semaphore at 0",
        records.len()
    );
}

#[test]
fn one_raised_semaphore_fires_exactly_that_tracepoint() {
    let reference = legacy_truth("gating-reference", &[]);
    let expected: Vec<_> = reference
        .iter()
        .filter(|r| r.tracepoint == "net:inbound_message")
        .cloned()
        .collect();
    assert!(
        expected.len() > 50,
        "the scenario has many inbound messages"
    );

    let records = run_with_semaphores(
        "gating-inbound",
        "net:inbound_message",
        &[Tracepoint::NetInboundMessage],
    );
    let names: BTreeSet<&str> = records.iter().map(|r| r.tracepoint.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["net:inbound_message"]));
    assert_eq!(records.len(), expected.len(), "inbound message count");
    assert_eq!(
        content(&records),
        content(&expected),
        "same content whatever is traced"
    );
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
    }
}

#[test]
fn every_semaphore_maps_to_its_own_tracepoint() {
    let reference = legacy_truth("gating-all-reference", &[]);
    let records = run_with_semaphores("gating-all", "all", Tracepoint::ALL);
    assert_eq!(content(&records), content(&reference));

    // Two tracepoints from different providers only.
    let pick = [Tracepoint::MempoolReplaced, Tracepoint::UtxocacheFlush];
    let records = run_with_semaphores("gating-two", "mempool:replaced,utxocache:flush", &pick);
    let want: Vec<_> = reference
        .iter()
        .filter(|r| pick.iter().any(|tp| tp.to_string() == r.tracepoint))
        .cloned()
        .collect();
    assert_eq!(content(&records), content(&want));
}

#[test]
fn legacy_fires_all_twenty_without_a_tracer() {
    let records = legacy_truth("legacy-all", &[]);
    let names: BTreeSet<&str> = records.iter().map(|r| r.tracepoint.as_str()).collect();
    for tp in Tracepoint::ALL {
        assert!(names.contains(tp.to_string().as_str()), "{tp} never fired");
    }
    assert_eq!(names.len(), 20);
}

#[test]
fn waiting_times_out_with_a_clear_error() {
    let out = Command::new(bin("bitcoind-sim"))
        .args([
            "--wait-for-tracer",
            "net:inbound_message,mempool:added",
            "--wait-timeout",
            "0.2",
            "regtest-like",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("net:inbound_message") && err.contains("mempool:added"),
        "{err}"
    );

    let out = Command::new(bin("bitcoind-sim"))
        .args(["--wait-for-tracer", "net:nope", "regtest-like"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn legacy_ignores_wait_for_tracer_with_a_warning() {
    let out = run(
        &bin("bitcoind-sim-legacy"),
        &[
            "--wait-for-tracer",
            "all",
            "--wait-timeout",
            "0.1",
            "--truth",
            "-",
            "regtest-like",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() > 200);
}

#[test]
fn concurrent_processes_and_sigterm() {
    // Two at once, no shared files or ports.
    let a = temp_path("concurrent-a");
    let b = temp_path("concurrent-b");
    let legacy = bin("bitcoind-sim-legacy");
    let children: Vec<_> = [&a, &b]
        .iter()
        .map(|p| {
            Command::new(&legacy)
                .args([
                    "--truth",
                    p.to_str().unwrap(),
                    "--repeat",
                    "3",
                    "regtest-like",
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let (ra, rb) = (
        simulator::read_truth(&a).unwrap(),
        simulator::read_truth(&b).unwrap(),
    );
    assert_eq!(content(&ra), content(&rb));
    assert!(ra.len() > 600);

    // --loop until SIGTERM: exit 0 with a complete, flushed truth file.
    let t = temp_path("sigterm");
    let mut child = Command::new(&legacy)
        .args([
            "--truth",
            t.to_str().unwrap(),
            "--loop",
            "--pace",
            "1",
            "regtest-like",
        ])
        .spawn()
        .unwrap();
    // Signalled once it has written records (not after a fixed time: a loaded machine may take
    // longer to start it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::metadata(&t).map_or(0, |m| m.len()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the simulator wrote no record within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    unsafe { libc_kill(child.id() as i32, 15) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let records = simulator::read_truth(&t).unwrap();
    assert!(!records.is_empty(), "records before SIGTERM were flushed");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
