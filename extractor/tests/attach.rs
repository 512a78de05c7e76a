//! The extractor really attached to the simulated bitcoind: kernel object loaded, uprobes placed
//! by file path with semaphores raised through the kernel's reference counter (no PID), and every
//! event compared with the simulator's ground truth. Needs root, as tracing does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use extractor::{ArgValue, TraceEvent, Tracer, TracerConfig};
use extractor_common::Tracepoint;
use simulator::truth::{read_truth, TruthArg, TruthRecord};
use tokio::process::{Child, Command};

/// A private copy of a simulator binary: tracing is by path, so tests running in parallel
/// must not share one.
fn private_binary(dir: &Path, name: &str) -> PathBuf {
    let source = simulator::binary_path(name).expect("simulator binary");
    let copy = dir.join(name);
    std::fs::copy(&source, &copy).expect("copy simulator");
    copy
}

fn start_simulator(binary: &Path, truth: &Path, extra: &[&str]) -> Child {
    Command::new(binary)
        .arg("--truth")
        .arg(truth)
        .args(extra)
        .arg("regtest-like")
        .kill_on_drop(true)
        .spawn()
        .expect("start simulator")
}

/// Reads events until `children` have exited and `expected` events have arrived (or 10 s pass
/// after the last child exited).
async fn collect(
    tracer: &mut Tracer,
    children: &mut [Child],
    expected: impl Fn() -> usize,
) -> Vec<TraceEvent> {
    let mut events = Vec::new();
    for child in children.iter_mut() {
        loop {
            tokio::select! {
                status = child.wait() => {
                    assert!(status.unwrap().success(), "simulator failed");
                    break;
                }
                read = tracer.read_events(&mut events) => read.unwrap(),
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < expected() {
        match tokio::time::timeout_at(deadline, tracer.read_events(&mut events)).await {
            Ok(read) => read.unwrap(),
            Err(_) => break,
        }
    }
    events
}

fn assert_same(truth: &[TruthRecord], events: &[TraceEvent]) {
    assert_eq!(events.len(), truth.len(), "events received vs fired");
    for (i, (fired, event)) in truth.iter().zip(events).enumerate() {
        let at = format!("event {i} ({})", fired.tracepoint);
        assert_eq!(event.tracepoint.to_string(), fired.tracepoint, "{at}");
        assert_eq!((event.pid, event.tid), (fired.pid, fired.tid), "{at}");
        assert!(!event.read_failed, "{at}: an argument could not be read");
        assert_eq!(event.args.len(), fired.args.len(), "{at}: argument count");
        for (n, (expected, got)) in fired.args.iter().zip(&event.args).enumerate() {
            let at = format!("{at} argument {n} ({})", event.tracepoint.arg_names()[n]);
            match (expected, got) {
                (TruthArg::Int(v), ArgValue::Signed(g)) => assert_eq!(*v, *g as i128, "{at}"),
                (TruthArg::Int(v), ArgValue::Unsigned(g)) => assert_eq!(*v, *g as i128, "{at}"),
                (TruthArg::Int(v), ArgValue::Bool(g)) => assert_eq!(*v, *g as i128, "{at}"),
                (TruthArg::Str(s), ArgValue::Str { bytes, truncated }) => {
                    assert_eq!(String::from_utf8_lossy(bytes), *s, "{at}");
                    assert!(!truncated, "{at}: marked truncated");
                }
                (TruthArg::Bytes(b), ArgValue::Hash(h)) => assert_eq!(b.as_slice(), h, "{at}"),
                // Payload contents are not captured by the kernel yet; their size argument is
                // compared above as an integer.
                (TruthArg::Bytes(_), ArgValue::Pointer(_)) => {}
                (expected, got) => panic!("{at}: fired {expected:?}, received {got:?}"),
            }
        }
        let skew_ms = (event.time_ns as i128 - fired.ts_ns as i128).abs() / 1_000_000;
        assert!(
            skew_ms < 200,
            "{at}: timestamp {skew_ms} ms away from the firing"
        );
    }
}

fn attach(binary: &Path) -> Tracer {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests load eBPF programs: run them as root"
    );
    Tracer::attach(&TracerConfig::new(binary)).expect("attach")
}

#[tokio::test]
async fn regtest_like_scenario_arrives_exactly_as_fired_in_running_and_later_processes() {
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let (truth_a, truth_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let wait = ["--wait-for-tracer", "all", "--wait-timeout", "30"];

    // A runs before the extractor attaches, B starts after: neither is named by PID.
    let before = start_simulator(&binary, &truth_a, &wait);
    let mut tracer = attach(&binary);
    assert_eq!(tracer.attached.len(), 20, "one location per tracepoint");
    assert!(tracer.missing.is_empty() && tracer.unreadable.is_empty());
    assert!(tracer.attached.iter().all(|a| a.semaphore_offset.is_some()));
    let after = start_simulator(&binary, &truth_b, &wait);

    let mut children = [before, after];
    let expected = || {
        [&truth_a, &truth_b]
            .iter()
            .map(|t| read_truth(t).map(|r| r.len()).unwrap_or(0))
            .sum()
    };
    let events = collect(&mut tracer, &mut children, expected).await;
    let (truth_a, truth_b) = (read_truth(&truth_a).unwrap(), read_truth(&truth_b).unwrap());
    assert!(
        truth_a.len() > 100,
        "scenario fired {} events",
        truth_a.len()
    );

    for truth in [&truth_a, &truth_b] {
        let pid = truth[0].pid;
        let fired: Vec<Tracepoint> = truth.iter().filter_map(|r| r.tracepoint()).collect();
        assert!(
            Tracepoint::ALL.iter().all(|tp| fired.contains(tp)),
            "all 20 tracepoints fired"
        );
        let mine: Vec<TraceEvent> = events.iter().filter(|e| e.pid == pid).cloned().collect();
        assert_same(truth, &mine);
    }
    assert_eq!(
        events.len(),
        truth_a.len() + truth_b.len(),
        "no events from elsewhere"
    );
    assert!(
        tracer.kernel_drops().unwrap().is_empty(),
        "kernel dropped events"
    );

    // Detaching lowers the semaphores again: a new process sees no tracer.
    drop(tracer);
    let status = Command::new(&binary)
        .args([
            "--wait-for-tracer",
            "all",
            "--wait-timeout",
            "1",
            "regtest-like",
        ])
        .status()
        .await
        .unwrap();
    assert!(!status.success(), "semaphores still raised after detach");
}

#[tokio::test]
async fn binary_without_semaphores_is_traced_like_bitcoind_v23_to_v28() {
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim-legacy");
    let truth = dir.path().join("truth.jsonl");
    let mut tracer = attach(&binary);
    assert_eq!(tracer.attached.len(), 20);
    assert!(tracer.attached.iter().all(|a| a.semaphore_offset.is_none()));

    let mut children = [start_simulator(&binary, &truth, &[])];
    let events = collect(&mut tracer, &mut children, || {
        read_truth(&truth).map(|r| r.len()).unwrap_or(0)
    })
    .await;
    assert_same(&read_truth(&truth).unwrap(), &events);
}

#[tokio::test]
async fn selected_tracepoints_only() {
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let truth = dir.path().join("truth.jsonl");
    let config = TracerConfig {
        tracepoints: [
            Tracepoint::MempoolReplaced,
            Tracepoint::NetMisbehavingConnection,
        ]
        .into(),
        ..TracerConfig::new(&binary)
    };
    let mut tracer = Tracer::attach(&config).expect("attach");
    assert_eq!(tracer.attached.len(), 2);

    let wait = [
        "--wait-for-tracer",
        "mempool:replaced,net:misbehaving_connection",
    ];
    let mut children = [start_simulator(&binary, &truth, &wait)];
    let events = collect(&mut tracer, &mut children, || {
        read_truth(&truth).map(|r| r.len()).unwrap_or(0)
    })
    .await;
    let truth = read_truth(&truth).unwrap();
    // Unselected tracepoints' semaphores stay 0, so the simulator fires only these two.
    assert!(truth.iter().all(|r| matches!(
        r.tracepoint(),
        Some(Tracepoint::MempoolReplaced | Tracepoint::NetMisbehavingConnection)
    )));
    assert!(truth.len() >= 3);
    assert_same(&truth, &events);
}
