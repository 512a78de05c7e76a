//! End to end: the real extractor, attached to the simulated bitcoind, publishes the
//! `regtest-like` scenario to a real nats-server; the logger prints one line per firing, with
//! exactly the fields the ground truth gives (as root: eBPF).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use nodescope_consumer::testing::{client, publish, EventSource, NatsServer};
use nodescope_logger::{line, run_to, Args};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p::DecodeOptions;
use nodescope_proto::{tracepoint_payload, Category, Event, MempoolAdded};
use simulator::truth::read_truth;

mod common;
use common::Output;

const NODE: &str = "e2e";

/// A line without its time and a connection's age (the extractor's clock, not the ground
/// truth's).
fn untimed(line: &str) -> String {
    let rest = line.split_once(' ').unwrap().1;
    rest.split(' ')
        .filter(|field| !field.starts_with("age="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logger_prints_every_firing_of_the_real_extractor() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF programs: run it as root"
    );
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Tracing is by path: a private copy, so no other test's tracer sees these firings.
    let binary = dir.path().join("bitcoind-sim");
    std::fs::copy(simulator::binary_path("bitcoind-sim").unwrap(), &binary).unwrap();
    let truth_path = dir.path().join("truth.jsonl");

    // The logger, ready when it prints a probe event of another run.
    let output = Output::default();
    let (stop_logger, logger_stopped) = tokio::sync::oneshot::channel::<()>();
    let logger = tokio::spawn(run_to(
        Args::parse_from(["logger", "--nats-url", &server.url(), "--nodes", NODE]),
        async move {
            let _ = logger_stopped.await;
        },
        output.clone(),
    ));
    let publisher = client(&server).await;
    let mut probe = EventSource::new(NODE, u64::MAX);
    let deadline = Instant::now() + Duration::from_secs(10);
    while output.lines().is_empty() {
        assert!(Instant::now() < deadline, "the logger never printed");
        let payload = Payload::MempoolAdded(MempoolAdded::default());
        publish(&publisher, &probe.stamp(payload)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The probes' lines, however many arrive, are told apart by what they say.
    let probe_line = untimed(&output.lines()[0]);

    let extractor_cli = extractor::cli::Cli::parse_from([
        "extractor",
        "ebpf",
        "--bitcoind-path",
        binary.to_str().unwrap(),
        "--nats-url",
        &server.url(),
        "--node-id",
        NODE,
    ]);
    let (stop_extractor, extractor_stopped) = tokio::sync::oneshot::channel::<()>();
    let extractor = tokio::spawn(extractor::cli::run(extractor_cli, async move {
        let _ = extractor_stopped.await;
    }));
    let status = tokio::process::Command::new(&binary)
        .args([
            "--truth",
            truth_path.to_str().unwrap(),
            "--wait-for-tracer",
            "all",
            "regtest-like",
        ])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let truth = read_truth(&truth_path).unwrap();

    // What the logger must print for each firing, by category (NATS keeps the order within
    // a subject; the categories interleave as they arrive).
    let mut expected: BTreeMap<Category, Vec<String>> = BTreeMap::new();
    for record in &truth {
        let converted = tracepoint_payload(
            record.tracepoint().unwrap(),
            record.arg_values(),
            DecodeOptions::default(),
        );
        let event = Event {
            node_id: NODE.into(),
            payload: Some(converted.payload),
            truncated_fields: converted.truncated_fields,
            error: converted.error,
            ..Event::default()
        };
        let category = event.category().unwrap();
        expected
            .entry(category)
            .or_default()
            .push(untimed(&line::text(&event, category)));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let printed = loop {
        let printed: Vec<String> = output
            .lines()
            .iter()
            .filter(|l| !l.contains(" extractor extractor_stats ") && untimed(l) != probe_line)
            .cloned()
            .collect();
        if printed.len() >= truth.len() || Instant::now() > deadline {
            break printed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(printed.len(), truth.len(), "one line per firing");
    let mut by_category: BTreeMap<Category, Vec<String>> = BTreeMap::new();
    for line in &printed {
        let category: Category = line.split(' ').nth(2).unwrap().parse().unwrap();
        by_category.entry(category).or_default().push(untimed(line));
    }
    for (category, lines) in &expected {
        let printed = &by_category[category];
        assert_eq!(printed.len(), lines.len(), "{category}");
        for (printed, expected) in printed.iter().zip(lines) {
            assert_eq!(printed, expected, "{category}");
        }
    }
    assert_eq!(by_category.len(), expected.len());

    stop_extractor.send(()).unwrap();
    extractor.await.unwrap().unwrap();
    stop_logger.send(()).unwrap();
    logger.await.unwrap().unwrap();
}
