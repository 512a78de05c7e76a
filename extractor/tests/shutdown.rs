//! Stopping the extractor while bitcoind keeps firing (`docker stop` on a busy node): it must
//! detach, publish what it read and its final stats, and exit 0 within 2 s of the signal, with
//! every event it read either published or counted as dropped.

mod common;

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nodescope_bus::test_server::NatsServer;
use nodescope_proto::event::Payload;
use nodescope_proto::{Category, Event, ExtractorStats};
use prost::Message;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use common::{assert_root, fired_from_summary, private_binary};

const NODE: &str = "busy-node";
/// Published by the test once the extractor is gone: the server delivers a subscription's
/// messages in order, so when the receiver sees it, it has seen everything the extractor sent.
const END_OF_TEST: &str = "nodescope.end-of-test";
/// `docker stop` sends SIGKILL 10 s after SIGTERM by default; the extractor promises 2 s.
const EXIT_BUDGET: Duration = Duration::from_secs(2);

/// Both variants fire 20,000 events/s: run one at a time on a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Default)]
struct Received {
    /// Sequence numbers of the net.message events (a re-sent event counts once).
    messages: HashSet<u64>,
    stats: Vec<ExtractorStats>,
}

/// Subscribes to everything under `nodescope.` and collects it in the background until
/// [`END_OF_TEST`] arrives.
async fn receive_all(
    url: &str,
) -> (
    async_nats::Client,
    Arc<Mutex<Received>>,
    tokio::task::JoinHandle<()>,
) {
    let client = async_nats::connect(url).await.unwrap();
    let mut subscriber = client.subscribe("nodescope.>").await.unwrap();
    client.flush().await.unwrap();
    let received = Arc::new(Mutex::new(Received::default()));
    let task = tokio::spawn({
        let received = received.clone();
        async move {
            while let Some(message) = subscriber.next().await {
                if message.subject.as_str() == END_OF_TEST {
                    return;
                }
                let event = Event::decode(message.payload).expect("a protobuf Event");
                assert_eq!(event.node_id, NODE);
                let mut received = received.lock().unwrap();
                match event.payload {
                    Some(Payload::ExtractorStats(stats)) => received.stats.push(stats),
                    _ if event.category() == Some(Category::NetMessage) => {
                        received.messages.insert(event.sequence);
                    }
                    other => panic!("unexpected event {other:?}"),
                }
            }
        }
    });
    (client, received, task)
}

/// Polls `condition` until it holds; fails after `within`.
async fn wait_for(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: signalling our own child, which has not been reaped yet.
    let done = unsafe { libc::kill(child.id().expect("running") as i32, signal) };
    assert_eq!(done, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Reads a child's pipe to its end in the background, so that the child never blocks on it.
fn read_to_end(
    mut pipe: impl AsyncReadExt + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut text = String::new();
        pipe.read_to_string(&mut text).await.unwrap();
        text
    })
}

/// Stops an extractor attached to `tracepoints` of a simulated node firing 20,000
/// net:inbound_message/s, with `stop_signal`.
async fn stops_promptly_under_load(stop_signal: libc::c_int, tracepoints: &str, extra: &[&str]) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    assert_root();
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let (client, received, receiver) = receive_all(&server.url()).await;

    let mut extractor = Command::new(env!("CARGO_BIN_EXE_extractor"))
        .args(["ebpf", "--bitcoind-path"])
        .arg(&binary)
        .args(["--nats-url", &server.url(), "--node-id", NODE])
        .args(["--tracepoints", tracepoints])
        .args(extra)
        // Stats events during the run too: they must not upset the final accounting.
        .args(["--stats-interval", "1"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = read_to_end(extractor.stderr.take().unwrap());
    // A node that never stops firing (the duration only bounds a test that died badly).
    let mut load = Command::new(&binary)
        .args([
            "--wait-for-tracer",
            "net:inbound_message",
            "--wait-timeout",
            "30",
        ])
        .args([
            "load",
            "--mix",
            "ping=1",
            "--rate",
            "20000",
            "--duration",
            "120",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let load_output = read_to_end(load.stdout.take().unwrap());

    wait_for(
        "events flowing through NATS",
        Duration::from_secs(30),
        || {
            let received = received.lock().unwrap();
            received.messages.len() >= 5_000 && !received.stats.is_empty()
        },
    )
    .await;
    assert!(
        extractor.try_wait().unwrap().is_none(),
        "the extractor exited early:\n{}",
        log.await.unwrap()
    );

    signal(&extractor, stop_signal);
    let signalled = Instant::now();
    let status = tokio::time::timeout(EXIT_BUDGET, extractor.wait()).await;
    let took = signalled.elapsed();
    let Ok(status) = status else {
        extractor.kill().await.unwrap();
        panic!(
            "still running {EXIT_BUDGET:?} after signal {stop_signal}:\n{}",
            log.await.unwrap()
        );
    };
    let log = log.await.unwrap();
    eprintln!("signal {stop_signal}: exited after {took:?}");
    assert_eq!(status.unwrap().code(), Some(0), "{log}");
    assert!(
        load.try_wait().unwrap().is_none(),
        "the node stopped firing before the extractor stopped"
    );

    client.publish(END_OF_TEST, "".into()).await.unwrap();
    client.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), receiver)
        .await
        .expect("the end-of-test marker arrives")
        .unwrap();
    let received = std::mem::take(&mut *received.lock().unwrap());
    let stats = received.stats.last().expect("final stats").clone();
    assert!(received.stats.len() >= 2, "periodic and final stats");

    // Everything read was confirmed by the server before the final stats were taken...
    assert_eq!(stats.queued, 0, "{stats:?}\n{log}");
    assert_eq!(
        stats.events_read,
        stats.published + stats.dropped_queue_full + stats.dropped_too_large,
        "every event read is published or counted as dropped: {stats:?}\n{log}"
    );
    // ...and `published` counts exactly the tracepoint events that reached NATS.
    assert_eq!(
        received.messages.len() as u64,
        stats.published,
        "{stats:?}\n{log}"
    );

    // It fired on till the end, untraced since the detach.
    signal(&load, libc::SIGTERM);
    assert!(load.wait().await.unwrap().success());
    let summary = load_output.await.unwrap();
    assert!(
        fired_from_summary(&summary) >= stats.events_read,
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_detaches_drains_and_exits_within_2s() {
    stops_promptly_under_load(libc::SIGTERM, "net:inbound_message", &[]).await;
}

/// The attach of kernels before 6.6 (a perf link per probe), one tracepoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_perf_links_sigterm_under_load_exits_within_2s() {
    stops_promptly_under_load(libc::SIGTERM, "net:inbound_message", &["--perf-links"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_under_load_detaches_drains_and_exits_within_2s() {
    stops_promptly_under_load(libc::SIGINT, "net:inbound_message", &[]).await;
}

/// As in production, every tracepoint attached: one multi-uprobe link, detached with one wait
/// for the kernel (with a perf link per probe, the kernel waits a grace period for each, one
/// after the other: 2.1–2.4 s for 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_every_tracepoint_attached_exits_within_2s() {
    stops_promptly_under_load(libc::SIGTERM, "all", &[]).await;
}
