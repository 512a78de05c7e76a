//! The extractor really attached to the simulated bitcoind: kernel object loaded, uprobes placed
//! by file path with semaphores raised through the kernel's reference counter (no PID), and every
//! event compared with the simulator's ground truth — P2P payloads byte for byte. Needs root, as
//! tracing does.

mod common;

use std::path::Path;
use std::time::Duration;

use extractor::event::{PayloadCut, ReassemblyCounts};
use extractor::{ArgValue, TraceEvent, Tracer, TracerConfig};
use extractor_common::Tracepoint;
use simulator::truth::{read_truth, TruthArg, TruthRecord};
use tokio::process::{Child, Command};

use common::{assert_root, fired_from_summary, private_binary};

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

/// Largest payload of bitcoind (MAX_PROTOCOL_MESSAGE_LENGTH): the scenario's biggest block.
const MAX_MESSAGE: usize = 4_000_000;

/// Checks every event against the ground truth; payloads must be the first `capture_limit` bytes
/// of what was fired, and marked cut exactly when that is less than all of it.
fn assert_same(truth: &[TruthRecord], events: &[TraceEvent], capture_limit: usize) {
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
                (TruthArg::Bytes(fired), ArgValue::Bytes(got)) => {
                    let expected = &fired[..fired.len().min(capture_limit)];
                    // Not assert_eq!: a 4 MB difference would flood the output.
                    assert!(
                        got.as_slice() == expected,
                        "{at}: {} payload bytes received, {} expected, first difference at {:?}",
                        got.len(),
                        expected.len(),
                        got.iter().zip(expected).position(|(g, e)| g != e)
                    );
                    let cut = (fired.len() > capture_limit).then_some(PayloadCut::CaptureLimit);
                    assert_eq!(event.payload_cut, cut, "{at}");
                }
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
    attach_with(&TracerConfig::new(binary))
}

fn attach_with(config: &TracerConfig) -> Tracer {
    assert_root();
    match Tracer::attach(config) {
        Ok(tracer) => tracer,
        // The full error: a verifier rejection carries the verifier's log.
        Err(e) => panic!("attach: {e}\n{e:?}"),
    }
}

/// The net messages of a ground truth whose payload is `size` bytes long.
fn messages_of_size(truth: &[TruthRecord], size: usize) -> usize {
    truth
        .iter()
        .filter(|r| r.args.len() == 6 && r.args[5].as_bytes().is_some_and(|b| b.len() == size))
        .count()
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
    assert_eq!(tracer.attached().count(), 20, "one location per tracepoint");
    let memory = tracer.kernel_memory_bytes();
    assert!(
        (60 << 20..=64 << 20).contains(&memory),
        "kernel memory {memory} bytes: the 32 MiB events ring and 28 MiB of payload rings, within 64 MiB in all"
    );
    assert!(tracer.newest().missing.is_empty() && tracer.newest().unreadable.is_empty());
    assert!(tracer.attached().all(|a| a.semaphore_offset.is_some()));
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
        assert!(
            messages_of_size(truth, MAX_MESSAGE) >= 1,
            "the scenario sends a {MAX_MESSAGE}-byte block"
        );
        let mine: Vec<TraceEvent> = events.iter().filter(|e| e.pid == pid).cloned().collect();
        assert_same(truth, &mine, usize::MAX);
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
    assert!(
        tracer.kernel_payload_drops().unwrap().is_empty(),
        "kernel cut payloads"
    );
    assert_eq!(
        tracer.reassembly_counts(),
        ReassemblyCounts::default(),
        "no stray chunk, no payload closed incomplete"
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
    assert_eq!(tracer.attached().count(), 20);
    assert!(tracer.attached().all(|a| a.semaphore_offset.is_none()));

    let mut children = [start_simulator(&binary, &truth, &[])];
    let events = collect(&mut tracer, &mut children, || {
        read_truth(&truth).map(|r| r.len()).unwrap_or(0)
    })
    .await;
    assert_same(&read_truth(&truth).unwrap(), &events, usize::MAX);
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
    assert_eq!(tracer.attached().count(), 2);

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
    assert_same(&truth, &events, usize::MAX);
}

#[tokio::test]
async fn payloads_are_cut_at_the_capture_limit_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let truth = dir.path().join("truth.jsonl");
    let config = TracerConfig {
        capture_limit: 1000,
        ..TracerConfig::new(&binary)
    };
    let mut tracer = attach_with(&config);
    let mut children = [start_simulator(
        &binary,
        &truth,
        &["--wait-for-tracer", "all"],
    )];
    let events = collect(&mut tracer, &mut children, || {
        read_truth(&truth).map(|r| r.len()).unwrap_or(0)
    })
    .await;
    let truth = read_truth(&truth).unwrap();
    assert!(messages_of_size(&truth, MAX_MESSAGE) >= 1);
    assert_same(&truth, &events, 1000);

    let block = events
        .iter()
        .find(|e| e.args.get(4) == Some(&ArgValue::Unsigned(MAX_MESSAGE as u64)))
        .expect("the 4 MB block arrived");
    assert!(matches!(&block.args[5], ArgValue::Bytes(b) if b.len() == 1000));
    assert_eq!(block.payload_cut, Some(PayloadCut::CaptureLimit));
    assert!(tracer.kernel_drops().unwrap().is_empty());
    assert!(tracer.kernel_payload_drops().unwrap().is_empty());
}

/// Starts `bitcoind-sim load` (it waits for the tracer), its summary line on the returned stdout.
fn run_load(binary: &Path, args: &[&str]) -> (Child, tokio::process::ChildStdout) {
    let mut child = Command::new(binary)
        .args([
            "--wait-for-tracer",
            "net:inbound_message,net:outbound_message",
        ])
        .arg("load")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start simulator load");
    let stdout = child.stdout.take().expect("piped stdout");
    (child, stdout)
}

fn total(counts: &[(Tracepoint, u64)]) -> u64 {
    counts.iter().map(|(_, n)| n).sum()
}

#[tokio::test]
async fn an_overloaded_tiny_ring_counts_every_loss() {
    use tokio::io::AsyncReadExt;

    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let config = TracerConfig {
        ring_bytes: 64 * 1024,
        ..TracerConfig::new(&binary)
    };
    let mut tracer = attach_with(&config);
    // Flat out, small and medium payloads interleaved with ~1-2 KB blocks: a 64 KiB ring
    // overflows both between records and in the middle of payloads.
    let (mut child, mut stdout) = run_load(
        &binary,
        &[
            "--mix",
            "ping=4,inv=2,block=1",
            "--direction",
            "both",
            "--count",
            "300000",
        ],
    );
    let mut events = Vec::new();
    loop {
        tokio::select! {
            status = child.wait() => {
                assert!(status.unwrap().success(), "simulator failed");
                break;
            }
            read = tracer.read_events(&mut events) => read.unwrap(),
        }
    }
    let mut output = String::new();
    stdout.read_to_string(&mut output).await.unwrap();
    let fired = fired_from_summary(&output);
    assert_eq!(fired, 300_000);

    // Everything still in the ring arrives; events whose chunks were lost are closed by the
    // reassembly's timeout, not waited for forever.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() as u64 + total(&tracer.kernel_drops().unwrap()) < fired {
        match tokio::time::timeout_at(deadline, tracer.read_events(&mut events)).await {
            Ok(read) => read.unwrap(),
            Err(_) => break,
        }
    }
    let drops = total(&tracer.kernel_drops().unwrap());
    let payload_drops = total(&tracer.kernel_payload_drops().unwrap());
    eprintln!(
        "fired {fired}, received {}, dropped {drops}, payloads cut by the full ring {payload_drops}",
        events.len()
    );
    assert!(drops > 0, "a 64 KiB ring must overflow under this load");
    assert_eq!(
        events.len() as u64 + drops,
        fired,
        "received + dropped == fired"
    );

    let cut_by_ring = events
        .iter()
        .filter(|e| e.payload_cut == Some(PayloadCut::RingFull))
        .count() as u64;
    assert_eq!(cut_by_ring, payload_drops, "every cut payload is counted");
    // The kernel sends no chunk of an event whose record found the ring full: nothing is
    // stray. Events closed by the timeout are among the cut ones, the rest were closed by
    // their thread's next record.
    let reassembly = tracer.reassembly_counts();
    eprintln!("reassembly: {reassembly:?}");
    assert_eq!(reassembly.stray_chunks, 0, "stray chunks");
    assert!(
        reassembly.expired_incomplete <= cut_by_ring,
        "{reassembly:?}"
    );
    assert_eq!(reassembly.closed_at_shutdown, 0);
    for (i, event) in events.iter().enumerate() {
        let (ArgValue::Unsigned(size), ArgValue::Bytes(payload)) = (&event.args[4], &event.args[5])
        else {
            panic!("event {i}: not a net message: {event}");
        };
        match event.payload_cut {
            None => assert_eq!(payload.len() as u64, *size, "event {i}: whole payload"),
            Some(PayloadCut::RingFull) => assert!((payload.len() as u64) < *size, "event {i}"),
            Some(cut) => panic!("event {i}: payload cut by {cut:?}"),
        }
    }
}

/// Runs `bitcoind-sim unreadable` under `tracer`; returns the ground truth and the events.
async fn run_unreadable_scenario(
    tracer: &mut Tracer,
    binary: &Path,
    truth: &Path,
) -> (Vec<TruthRecord>, Vec<TraceEvent>) {
    let child = Command::new(binary)
        .arg("--truth")
        .arg(truth)
        .args(["--wait-for-tracer", "all", "unreadable"])
        .kill_on_drop(true)
        .spawn()
        .expect("start simulator");
    let events = collect(tracer, &mut [child], || {
        read_truth(truth).map(|r| r.len()).unwrap_or(0)
    })
    .await;
    (read_truth(truth).unwrap(), events)
}

#[tokio::test]
async fn unreadable_arguments_are_marked_and_the_events_around_them_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let truth_path = dir.path().join("truth.jsonl");
    let mut tracer = attach(&binary);
    let (truth, events) = run_unreadable_scenario(&mut tracer, &binary, &truth_path).await;

    // A string, a hash and a payload, each between two normal firings of its tracepoint.
    assert_eq!(truth.len(), 9, "the scenario fires nine events");
    assert_eq!(events.len(), truth.len(), "every event arrives, none more");
    let mut marked = (0, 0);
    for (i, (fired, event)) in truth.iter().zip(&events).enumerate() {
        let at = format!("event {i} ({})", fired.tracepoint);
        let unreadable: Vec<usize> = (0..fired.args.len())
            .filter(|&n| fired.args[n].as_unreadable().is_some())
            .collect();
        if unreadable.is_empty() {
            // The normal ones are exact, including those right after an unreadable one.
            assert_same(
                std::slice::from_ref(fired),
                std::slice::from_ref(event),
                usize::MAX,
            );
            continue;
        }
        assert_eq!(event.tracepoint.to_string(), fired.tracepoint, "{at}");
        assert_eq!((event.pid, event.tid), (fired.pid, fired.tid), "{at}");
        assert_eq!(event.args.len(), fired.args.len(), "{at}: argument count");
        let expected = fired.arg_values();
        for (n, got) in event.args.iter().enumerate() {
            let at = format!("{at} argument {n} ({})", event.tracepoint.arg_names()[n]);
            if !unreadable.contains(&n) {
                assert_eq!(
                    *got, expected[n],
                    "{at}: a readable argument of the same event"
                );
                continue;
            }
            match got {
                // Unreadable strings and hashes show as "" and zeros, and mark the event.
                ArgValue::Str { bytes, truncated } => {
                    assert!(bytes.is_empty() && !truncated, "{at}: {got:?}");
                    assert!(event.read_failed, "{at}: not marked read_failed");
                    assert_eq!(event.payload_cut, None, "{at}");
                    marked.0 += 1;
                }
                ArgValue::Hash(hash) => {
                    assert_eq!(*hash, [0; 32], "{at}");
                    assert!(event.read_failed, "{at}: not marked read_failed");
                    assert_eq!(event.payload_cut, None, "{at}");
                    marked.0 += 1;
                }
                // An unreadable payload is cut to nothing and says why; the pointer itself and
                // every other argument were read.
                ArgValue::Bytes(bytes) => {
                    assert!(bytes.is_empty(), "{at}: {} bytes", bytes.len());
                    assert_eq!(event.payload_cut, Some(PayloadCut::ReadFailed), "{at}");
                    assert!(
                        !event.read_failed,
                        "{at}: the arguments themselves were read"
                    );
                    marked.1 += 1;
                }
                other => panic!("{at}: fired an unreadable pointer, received {other:?}"),
            }
        }
    }
    assert_eq!(
        marked,
        (2, 1),
        "(unreadable strings and hashes, unreadable payloads)"
    );
    assert!(
        tracer.kernel_drops().unwrap().is_empty(),
        "kernel dropped events"
    );
    assert!(
        tracer.kernel_payload_drops().unwrap().is_empty(),
        "an unreadable payload is not a ring-full drop"
    );

    // The tracer keeps working afterwards: a second run arrives just as well.
    let again = dir.path().join("again.jsonl");
    let (truth, events) = run_unreadable_scenario(&mut tracer, &binary, &again).await;
    assert_eq!(events.len(), truth.len());
    let flags: Vec<(bool, Option<PayloadCut>)> = events
        .iter()
        .map(|e| (e.read_failed, e.payload_cut))
        .collect();
    let read_failed = (true, None);
    let payload = (false, Some(PayloadCut::ReadFailed));
    let fine = (false, None);
    assert_eq!(
        flags,
        [
            fine,
            read_failed,
            fine,
            fine,
            read_failed,
            fine,
            fine,
            payload,
            fine
        ]
    );
}
