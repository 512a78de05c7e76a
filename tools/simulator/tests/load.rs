//! The `load` scenario's summary line, counts and pacing.

mod common;

use common::*;

fn summary(stdout: &[u8]) -> (u64, u64, f64) {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("load: ")).collect();
    assert_eq!(lines.len(), 1, "exactly one summary line in {text:?}");
    let field = |k: &str| {
        lines[0]
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {}", lines[0]))
            .to_string()
    };
    let _rate: f64 = field("rate_per_s").parse().unwrap();
    (
        field("fired").parse().unwrap(),
        field("attempted").parse().unwrap(),
        field("elapsed_s").parse().unwrap(),
    )
}

#[test]
fn legacy_load_fires_every_event() {
    let out = run(&bin("bitcoind-sim-legacy"), &["load", "--count", "10000"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let (fired, attempted, _) = summary(&out.stdout);
    assert_eq!((fired, attempted), (10_000, 10_000));
}

#[test]
fn v30_load_without_tracer_fires_nothing() {
    let out = run(
        &bin("bitcoind-sim"),
        &["load", "--count", "5000", "--mix", "ping=1,inv=1"],
    );
    assert_eq!(summary(&out.stdout), (0, 5000, summary(&out.stdout).2));
}

#[test]
fn load_truth_mix_and_direction() {
    let truth = temp_path("load-truth");
    let out = run(
        &bin("bitcoind-sim-legacy"),
        &[
            "--truth",
            truth.to_str().unwrap(),
            "load",
            "--count",
            "100",
            "--mix",
            "ping=1,inv=3",
            "--direction",
            "both",
        ],
    );
    assert_eq!(summary(&out.stdout).0, 100);
    let records = simulator::read_truth(&truth).unwrap();
    assert_eq!(records.len(), 100);
    let count = |tp: &str, ty: &str| {
        records
            .iter()
            .filter(|r| r.tracepoint == tp && r.args[3].as_str() == Some(ty))
            .count()
    };
    assert_eq!(
        records
            .iter()
            .filter(|r| r.tracepoint == "net:inbound_message")
            .count(),
        50
    );
    assert_eq!(
        count("net:inbound_message", "inv") + count("net:outbound_message", "inv"),
        75
    );
    let inv = records
        .iter()
        .find(|r| r.args[3].as_str() == Some("inv"))
        .unwrap();
    assert_eq!(inv.args[5].as_bytes().unwrap().len(), 1009);
    for r in &records {
        simulator::payloads::decode_payload(
            r.args[3].as_str().unwrap(),
            r.args[5].as_bytes().unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn rate_and_duration_are_honoured() {
    let out = run(
        &bin("bitcoind-sim-legacy"),
        &["load", "--rate", "2000", "--count", "600"],
    );
    let (fired, _, elapsed) = summary(&out.stdout);
    assert_eq!(fired, 600);
    assert!(
        (0.28..1.5).contains(&elapsed),
        "600 events at 2000/s took {elapsed}s"
    );

    let out = run(&bin("bitcoind-sim-legacy"), &["load", "--duration", "0.3"]);
    let (fired, _, elapsed) = summary(&out.stdout);
    assert!(
        fired > 1000 && (0.29..1.0).contains(&elapsed),
        "fired={fired} elapsed={elapsed}"
    );
}

#[test]
fn env_vars_configure_the_cli() {
    let out = std::process::Command::new(bin("bitcoind-sim-legacy"))
        .args(["load"])
        .env("NODESCOPE_SIM_COUNT", "77")
        .env("NODESCOPE_SIM_MIX", "tx=1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(summary(&out.stdout).0, 77);
}

#[test]
// The child is reaped by `wait4`, which also gives its own CPU time.
#[allow(clippy::zombie_processes)]
fn a_high_rate_sleeps_between_slots_instead_of_spinning() {
    // 100,000 events/s for half a second: paced per event, the thread spun between events
    // (CPU time = wall time); paced per slot, it sleeps most of the time. The CPU time is the
    // child's own (wait4), so a busy machine can only lower the ratio.
    let child = std::process::Command::new(bin("bitcoind-sim"))
        .args(["load", "--rate", "100000", "--count", "50000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as libc::pid_t);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    assert!(wall >= 0.45, "50,000 events at 100,000/s took {wall:.3} s");
    assert!(
        cpu < 0.5 * wall,
        "the load thread used {cpu:.3} s of CPU in {wall:.3} s"
    );
}
