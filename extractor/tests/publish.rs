//! The extractor end to end: attached to the simulated bitcoind, publishing to a real
//! nats-server, read back by a subscriber and compared with the simulator's ground truth.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use nodescope_bus::test_server::{free_port, NatsServer};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p::DecodeOptions;
use nodescope_proto::{tracepoint_payload, Category, Event, ExtractorKind, ExtractorStats};
use prost::Message;
use simulator::truth::{read_truth, TruthRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use common::{fired_from_summary, private_binary, start_extractor};

const NODE: &str = "test-node";

async fn subscribe(url: &str) -> async_nats::Subscriber {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .reconnect_delay_callback(|_| Duration::from_millis(10))
        .connect(url)
        .await
        .unwrap();
    let subscriber = client
        .subscribe(format!("nodescope.{NODE}.>"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    subscriber
}

/// Receives events until `done` says so or `timeout` passes without a message.
async fn receive(
    subscriber: &mut async_nats::Subscriber,
    mut done: impl FnMut(&[Event]) -> bool,
    timeout: Duration,
) -> Vec<Event> {
    let mut events = Vec::new();
    while !done(&events) {
        match tokio::time::timeout(timeout, subscriber.next()).await {
            Ok(Some(message)) => {
                let event = Event::decode(message.payload).expect("a protobuf Event");
                let (node, category) =
                    nodescope_proto::subjects::parse("nodescope", &message.subject)
                        .expect("our subject");
                assert_eq!(node, NODE);
                assert_eq!(
                    Some(category),
                    event.category(),
                    "published on its category's subject"
                );
                events.push(event);
            }
            _ => break,
        }
    }
    events
}

/// Receives until an `extractor_stats` event arrives (the final one, after a stop); returns
/// everything received and those stats.
async fn until_stats(
    subscriber: &mut async_nats::Subscriber,
    timeout: Duration,
) -> (Vec<Event>, ExtractorStats) {
    let events = receive(
        subscriber,
        |e| {
            matches!(
                e.last().and_then(|e| e.payload.as_ref()),
                Some(Payload::ExtractorStats(_))
            )
        },
        timeout,
    )
    .await;
    let Some(Payload::ExtractorStats(stats)) = events.last().and_then(|e| e.payload.clone()) else {
        panic!("no stats event among {} received", events.len());
    };
    (events, stats)
}

/// `ebpf` arguments of an extractor tracing `binary` (a `&str` path) for node [`NODE`] through
/// NATS at `url`, stats only at exit, plus `extra`.
fn extractor_args(binary: &str, url: &str, extra: &[&str]) -> Vec<String> {
    [
        "ebpf",
        "--bitcoind-path",
        binary,
        "--nats-url",
        url,
        "--node-id",
        NODE,
        "--stats-interval",
        "3600",
    ]
    .iter()
    .chain(extra)
    .map(|arg| arg.to_string())
    .collect()
}

/// Makes NATS appear on `port` only now: forwards connections on it to `server`. A test starts
/// it once its subscriber is subscribed, so the extractor cannot deliver before anyone listens.
async fn open_port_to(port: u16, server: &NatsServer) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind forwarder");
    let target = server.port;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

fn tracepoint_events(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| !matches!(e.payload, Some(Payload::ExtractorStats(_))))
        .collect()
}

async fn run_simulator(binary: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(binary).args(args).output().await.unwrap();
    assert!(
        output.status.success(),
        "simulator: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every published event equals what the ground truth implies, in order per category, with
/// consecutive sequence numbers per category and one run id.
fn assert_published_as_fired(truth: &[TruthRecord], events: &[&Event]) {
    assert_eq!(events.len(), truth.len(), "published vs fired");
    let run_id = events[0].run_id;
    let mut by_category: BTreeMap<Category, Vec<&Event>> = BTreeMap::new();
    for event in events {
        assert_eq!((event.node_id.as_str(), event.run_id), (NODE, run_id));
        assert_eq!(event.extractor, ExtractorKind::Ebpf as i32);
        by_category
            .entry(event.category().unwrap())
            .or_default()
            .push(event);
    }
    let mut fired: BTreeMap<Category, Vec<&TruthRecord>> = BTreeMap::new();
    for record in truth {
        let expected = tracepoint_payload(
            record.tracepoint().unwrap(),
            record.arg_values(),
            DecodeOptions::default(),
        );
        fired
            .entry(Category::of(&expected.payload))
            .or_default()
            .push(record);
    }
    assert_eq!(
        by_category.keys().collect::<Vec<_>>(),
        fired.keys().collect::<Vec<_>>()
    );
    for (category, events) in &by_category {
        let records = &fired[category];
        assert_eq!(events.len(), records.len(), "{category}");
        for (n, (event, record)) in events.iter().zip(records.iter()).enumerate() {
            assert_eq!(
                event.sequence, n as u64,
                "{category}: sequence numbers run without gaps"
            );
            assert_eq!(event.pid, record.pid);
            let expected = tracepoint_payload(
                record.tracepoint().unwrap(),
                record.arg_values(),
                DecodeOptions::default(),
            );
            assert_eq!(
                event.payload.as_ref(),
                Some(&expected.payload),
                "{category} event {n} ({})",
                record.tracepoint
            );
            assert!(event.error.is_empty(), "{}", event.error);
            assert!(event.truncated_fields.is_empty());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regtest_like_scenario_is_published_exactly_as_fired() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let truth_path = dir.path().join("truth.jsonl");
    let mut subscriber = subscribe(&server.url()).await;
    let mut extractor = start_extractor(&extractor_args(
        binary.to_str().unwrap(),
        &server.url(),
        &[],
    ));

    extractor
        .alongside(run_simulator(
            &binary,
            &[
                "--truth",
                truth_path.to_str().unwrap(),
                "--wait-for-tracer",
                "all",
                "regtest-like",
            ],
        ))
        .await;
    let truth = read_truth(&truth_path).unwrap();
    let events = receive(
        &mut subscriber,
        |e| tracepoint_events(e).len() >= truth.len(),
        Duration::from_secs(20),
    )
    .await;
    assert_published_as_fired(&truth, &tracepoint_events(&events));

    // Shutting down publishes the final stats: everything read was published, nothing dropped.
    extractor.stop().await.unwrap();
    let (_, stats) = until_stats(&mut subscriber, Duration::from_secs(10)).await;
    assert_eq!(stats.events_read, truth.len() as u64);
    assert!(stats.published >= truth.len() as u64);
    assert_eq!(
        (
            stats.dropped_queue_full,
            stats.dropped_too_large,
            stats.decode_errors,
            stats.read_errors
        ),
        (0, 0, 0, 0)
    );
    assert!(stats.kernel_drops.is_empty());
    // The final stats are taken once the probes are detached.
    assert_eq!(stats.attached_locations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_nats_started_after_the_extractor() {
    let server = NatsServer::start();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let truth_path = dir.path().join("truth.jsonl");
    let mut extractor = start_extractor(&extractor_args(binary.to_str().unwrap(), &url, &[]));

    // Everything fires while NATS is down; the extractor neither hangs nor loses it.
    extractor
        .alongside(run_simulator(
            &binary,
            &[
                "--truth",
                truth_path.to_str().unwrap(),
                "--wait-for-tracer",
                "all",
                "regtest-like",
            ],
        ))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut subscriber = subscribe(&server.url()).await;
    let _nats_reachable = open_port_to(port, &server).await;
    let truth = read_truth(&truth_path).unwrap();
    let events = receive(
        &mut subscriber,
        |e| tracepoint_events(e).len() >= truth.len(),
        Duration::from_secs(20),
    )
    .await;
    assert_published_as_fired(&truth, &tracepoint_events(&events));
    extractor.stop().await.unwrap();
}

/// 20,000 pings at 4,000/s through the extractor (publishing to `extractor_url`), read by a
/// subscriber on `subscriber_url`; once 3,000 have arrived, `disrupt` runs. Every event must
/// then be delivered or counted as dropped, and some must have been sent again.
async fn delivered_or_counted_across(
    subscriber_url: &str,
    extractor_url: &str,
    disrupt: impl AsyncFnOnce(),
) {
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let mut subscriber = subscribe(subscriber_url).await;
    let mut extractor = start_extractor(&extractor_args(
        binary.to_str().unwrap(),
        extractor_url,
        &["--tracepoints", "net:inbound_message"],
    ));

    let load = tokio::spawn({
        let binary = binary.clone();
        async move {
            run_simulator(
                &binary,
                &[
                    "--wait-for-tracer",
                    "net:inbound_message",
                    "load",
                    "--mix",
                    "ping=1",
                    "--rate",
                    "4000",
                    "--count",
                    "20000",
                ],
            )
            .await
        }
    });
    let mut events = receive(
        &mut subscriber,
        |e| e.len() >= 3000,
        Duration::from_secs(20),
    )
    .await;
    let first_received = events.len();
    disrupt().await;
    let summary = extractor.alongside(load).await.unwrap();
    let fired = fired_from_summary(&summary);
    assert_eq!(fired, 20_000);
    extractor.stop().await.unwrap();
    let (rest, stats) = until_stats(&mut subscriber, Duration::from_secs(20)).await;
    events.extend(rest);
    let delivered: std::collections::BTreeSet<u64> = tracepoint_events(&events)
        .iter()
        .map(|e| e.sequence)
        .collect();
    let kernel_drops: u64 = stats.kernel_drops.values().sum();
    let counted_drops = kernel_drops + stats.dropped_queue_full + stats.dropped_too_large;
    assert_eq!(
        stats.events_read + kernel_drops,
        fired,
        "the kernel side accounts for every firing"
    );
    let missing: Vec<u64> = (0..fired)
        .filter(|sequence| !delivered.contains(sequence))
        .collect();
    assert_eq!(
        delivered.len() as u64 + counted_drops,
        fired,
        "delivered (unique) + counted drops = fired; missing {missing:?}; the first \
         {first_received} received before the disruption; stats {stats:?}"
    );
    assert!(
        stats.resent > 0,
        "the disruption came mid-stream, so something was sent again: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_mid_stream_every_event_is_delivered_or_counted() {
    let mut server = NatsServer::start();
    let url = server.url();
    delivered_or_counted_across(&url, &url, async || {
        server.kill();
        // Back after 1 s: the test's subscriber retries every 10 ms, the extractor backs off
        // (its attempts fall at 0, 0.1, 0.3, 0.7 and 1.5 s), so the subscriber listens again
        // ~0.5 s before the extractor sends anything — what it misses is then the extractor's
        // to account for.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        server.resume();
    })
    .await;
}

/// A way to a server that can fail silently: it goes on reading what clients send but passes
/// nothing on (so their writes and flushes succeed), until it is cut.
struct SilentPath {
    address: std::net::SocketAddr,
    swallowing: Arc<AtomicBool>,
    cuts: tokio::sync::watch::Sender<u64>,
}

impl SilentPath {
    async fn to(server: &NatsServer) -> SilentPath {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let target = server.url().trim_start_matches("nats://").to_string();
        let swallowing = Arc::new(AtomicBool::new(false));
        let (cuts, _) = tokio::sync::watch::channel(0);
        let path = SilentPath {
            address,
            swallowing: swallowing.clone(),
            cuts: cuts.clone(),
        };
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let swallowing = swallowing.clone();
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_server, mut to_server) = outbound.into_split();
                    let upstream = async {
                        let mut chunk = vec![0; 64 * 1024];
                        while let Ok(read @ 1..) = from_client.read(&mut chunk).await {
                            if !swallowing.load(Ordering::SeqCst)
                                && to_server.write_all(&chunk[..read]).await.is_err()
                            {
                                break;
                            }
                        }
                    };
                    // Either direction ending, or a cut, closes both.
                    tokio::select! {
                        _ = upstream => {}
                        _ = tokio::io::copy(&mut from_server, &mut to_client) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        path
    }

    fn url(&self) -> String {
        format!("nats://{}", self.address)
    }

    fn swallow(&self) {
        self.swallowing.store(true, Ordering::SeqCst);
    }

    /// Closes every connection; new ones pass everything again.
    fn cut(&self) {
        self.swallowing.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|count| *count += 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_fails_silently_loses_nothing() {
    // For 2 s — twice the replay window — the extractor's writes and flushes succeed but
    // nothing reaches the server; then the connection drops and the extractor reconnects.
    // Only the server's own answers may confirm events.
    let server = NatsServer::start();
    let path = SilentPath::to(&server).await;
    delivered_or_counted_across(&server.url(), &path.url(), async || {
        path.swallow();
        tokio::time::sleep(Duration::from_secs(2)).await;
        path.cut();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_binary_is_re_attached_without_a_restart() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let mut subscriber = subscribe(&server.url()).await;
    let mut extractor = start_extractor(&extractor_args(
        binary.to_str().unwrap(),
        &server.url(),
        &["--tracepoints", "mempool"],
    ));
    let run = |truth: &'static str| {
        let (binary, truth) = (binary.clone(), dir.path().join(truth));
        async move {
            run_simulator(
                &binary,
                &[
                    "--truth",
                    truth.to_str().unwrap(),
                    "--wait-for-tracer",
                    "mempool:added",
                    "regtest-like",
                ],
            )
            .await;
            read_truth(&truth).unwrap()
        }
    };
    let before = extractor.alongside(run("before.jsonl")).await;

    // An upgrade: a new file (new inode) takes the path. Its probes only fire once the
    // extractor has noticed and attached to it; the simulator waits for that.
    let staged = dir.path().join("staged");
    std::fs::copy(simulator::binary_path("bitcoind-sim").unwrap(), &staged).unwrap();
    std::fs::rename(&staged, &binary).unwrap();
    let after = extractor.alongside(run("after.jsonl")).await;

    let fired = before.len() + after.len();
    let events = receive(
        &mut subscriber,
        |e| tracepoint_events(e).len() >= fired,
        Duration::from_secs(20),
    )
    .await;
    let events = tracepoint_events(&events);
    assert_eq!(events.len(), fired);
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(
        sequences,
        (0..fired as u64).collect::<Vec<_>>(),
        "one run, numbered on across the re-attach"
    );
    extractor.stop().await.unwrap();
}

/// Runs the regtest-like scenario with only the mempool tracepoints through `server`, and checks
/// every fired event arrives at a subscriber connected with `options`.
async fn delivers_through(
    server: &NatsServer,
    extractor_flags: &[&str],
    options: async_nats::ConnectOptions,
) {
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let truth_path = dir.path().join("truth.jsonl");
    let client = options
        .connect(server.url())
        .await
        .expect("subscriber connects");
    let mut subscriber = client
        .subscribe(format!("nodescope.{NODE}.>"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut args = extractor_args(
        binary.to_str().unwrap(),
        &server.url(),
        &["--tracepoints", "mempool"],
    );
    args.extend(extractor_flags.iter().map(|flag| flag.to_string()));
    let mut extractor = start_extractor(&args);
    extractor
        .alongside(run_simulator(
            &binary,
            &[
                "--truth",
                truth_path.to_str().unwrap(),
                "--wait-for-tracer",
                "mempool:added",
                "regtest-like",
            ],
        ))
        .await;
    let truth = read_truth(&truth_path).unwrap();
    let events = receive(
        &mut subscriber,
        |e| tracepoint_events(e).len() >= truth.len(),
        Duration::from_secs(20),
    )
    .await;
    assert_published_as_fired(&truth, &tracepoint_events(&events));
    extractor.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_authentication() {
    let server = NatsServer::start_with("authorization { token: \"s3cret-token\" }");
    delivers_through(
        &server,
        &["--nats-token", "s3cret-token"],
        async_nats::ConnectOptions::with_token("s3cret-token".into()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_authentication() {
    let server =
        NatsServer::start_with("authorization { user: \"scope\", password: \"pa55word\" }");
    delivers_through(
        &server,
        &["--nats-user", "scope", "--nats-password", "pa55word"],
        async_nats::ConnectOptions::with_user_and_password("scope".into(), "pa55word".into()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_certificate_authority() {
    let certs = tempfile::tempdir().unwrap();
    let path = |name: &str| certs.path().join(name).to_str().unwrap().to_string();
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &path("ca.key"),
        "-out",
        &path("ca.pem"),
        "-days",
        "1",
        "-subj",
        "/CN=nodescope test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &path("server.key"),
        "-out",
        &path("server.csr"),
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        path("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-out",
        &path("server.pem"),
        "-days",
        "1",
        "-extfile",
        &path("san.ext"),
    ]);

    let server = NatsServer::start_with(&format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\" }}",
        path("server.pem"),
        path("server.key")
    ));
    let subscriber = async_nats::ConnectOptions::new()
        .add_root_certificates(path("ca.pem").into())
        .require_tls(true);
    delivers_through(
        &server,
        &["--nats-tls-ca", &path("ca.pem"), "--nats-tls-required"],
        subscriber,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_drops_the_oldest_events_and_counts_them() {
    let server = NatsServer::start();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let mut extractor = start_extractor(&extractor_args(
        binary.to_str().unwrap(),
        &url,
        &[
            "--tracepoints",
            "net:inbound_message",
            "--nats-buffer-mib",
            "1",
        ],
    ));
    // ~1 KiB inv events while NATS is down: several MiB, four times what the queue holds.
    let summary = extractor
        .alongside(run_simulator(
            &binary,
            &[
                "--wait-for-tracer",
                "net:inbound_message",
                "load",
                "--mix",
                "inv=1",
                "--count",
                "5000",
            ],
        ))
        .await;
    let fired = fired_from_summary(&summary);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut subscriber = subscribe(&server.url()).await;
    let _nats_reachable = open_port_to(port, &server).await;
    // Stop only once delivery has begun: the extractor's next retry may be seconds away.
    let mut events = receive(&mut subscriber, |e| !e.is_empty(), Duration::from_secs(20)).await;
    extractor.stop().await.unwrap();
    let (rest, stats) = until_stats(&mut subscriber, Duration::from_secs(20)).await;
    events.extend(rest);
    let delivered: Vec<u64> = tracepoint_events(&events)
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert!(stats.dropped_queue_full > 0, "{stats:?}");
    assert_eq!(
        delivered.len() as u64 + stats.dropped_queue_full,
        fired,
        "delivered + dropped = fired; {stats:?}"
    );
    let newest: Vec<u64> = (fired - delivered.len() as u64..fired).collect();
    assert_eq!(
        delivered, newest,
        "the oldest were dropped, the newest kept, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_larger_than_the_server_allows_are_dropped_and_counted() {
    let server = NatsServer::start_with("max_payload: 1MB");
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let truth_path = dir.path().join("truth.jsonl");
    let mut subscriber = subscribe(&server.url()).await;
    // With raw payloads kept, the scenario's 4,000,000-byte block cannot fit a 1 MB
    // max_payload; every other message does.
    let mut extractor = start_extractor(&extractor_args(
        binary.to_str().unwrap(),
        &server.url(),
        &["--tracepoints", "net", "--keep-raw-payloads"],
    ));
    extractor
        .alongside(run_simulator(
            &binary,
            &[
                "--truth",
                truth_path.to_str().unwrap(),
                "--wait-for-tracer",
                "net:inbound_message",
                "regtest-like",
            ],
        ))
        .await;
    let fired = read_truth(&truth_path).unwrap().len() as u64;
    tokio::time::sleep(Duration::from_millis(500)).await;
    extractor.stop().await.unwrap();
    let (events, stats) = until_stats(&mut subscriber, Duration::from_secs(20)).await;
    let delivered = tracepoint_events(&events).len() as u64;
    assert!(stats.dropped_too_large > 0, "{stats:?}");
    assert_eq!(delivered + stats.dropped_too_large, fired, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_detaches_flushes_and_exits_0() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let truth_path = dir.path().join("truth.jsonl");
    let mut subscriber = subscribe(&server.url()).await;
    let mut extractor = Command::new(env!("CARGO_BIN_EXE_extractor"))
        .args(extractor_args(binary.to_str().unwrap(), &server.url(), &[]))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    run_simulator(
        &binary,
        &[
            "--truth",
            truth_path.to_str().unwrap(),
            "--wait-for-tracer",
            "all",
            "regtest-like",
        ],
    )
    .await;
    let fired = read_truth(&truth_path).unwrap().len() as u64;

    // SAFETY: signalling our own child.
    unsafe { libc::kill(extractor.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), extractor.wait())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let (events, stats) = until_stats(&mut subscriber, Duration::from_secs(10)).await;
    assert_eq!(stats.events_read, fired);
    assert_eq!(
        tracepoint_events(&events).len() as u64,
        fired,
        "everything read was flushed before exiting"
    );
    // Detached: the semaphores are down again, a new process sees no tracer.
    let untraced = Command::new(&binary)
        .args([
            "--wait-for-tracer",
            "all",
            "--wait-timeout",
            "1",
            "regtest-like",
        ])
        .output()
        .await
        .unwrap();
    assert!(!untraced.status.success());
}

/// `text` without ANSI colour sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_arguments_are_logged_by_the_kernel_published_with_an_error_and_counted() {
    use extractor_common::Tracepoint;
    use tokio::io::AsyncReadExt;

    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let truth_path = dir.path().join("truth.jsonl");
    let mut subscriber = subscribe(&server.url()).await;
    let mut extractor = Command::new(env!("CARGO_BIN_EXE_extractor"))
        .args(extractor_args(binary.to_str().unwrap(), &server.url(), &[]))
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read stderr as it comes, so that the extractor never blocks on a full pipe.
    let mut stderr_pipe = extractor.stderr.take().expect("piped stderr");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        stderr_pipe.read_to_string(&mut text).await.unwrap();
        text
    });
    run_simulator(
        &binary,
        &[
            "--truth",
            truth_path.to_str().unwrap(),
            "--wait-for-tracer",
            "all",
            "unreadable",
        ],
    )
    .await;
    let truth = read_truth(&truth_path).unwrap();
    assert_eq!(truth.len(), 9, "the scenario fires nine events");
    let events = receive(
        &mut subscriber,
        |e| tracepoint_events(e).len() >= truth.len(),
        Duration::from_secs(20),
    )
    .await;
    // Stopped at once: the kernel's log lines of the last firings are forwarded at the stop.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(extractor.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), extractor.wait())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let stderr = strip_ansi(&stderr.await.unwrap());
    let (rest, stats) = until_stats(&mut subscriber, Duration::from_secs(10)).await;
    assert!(
        tracepoint_events(&rest).is_empty(),
        "everything was published before the stop"
    );

    // Published in firing order per category: the unreadable ones carry an error, the normal
    // ones around them are exact.
    let events = tracepoint_events(&events);
    assert_eq!(events.len(), truth.len(), "published vs fired");
    let mut by_category: BTreeMap<Category, Vec<&Event>> = BTreeMap::new();
    for event in &events {
        by_category
            .entry(event.category().unwrap())
            .or_default()
            .push(event);
    }
    let mut unreadable_values = 0u64;
    let mut position: BTreeMap<Category, usize> = BTreeMap::new();
    for (i, record) in truth.iter().enumerate() {
        let expected = tracepoint_payload(
            record.tracepoint().unwrap(),
            record.arg_values(),
            DecodeOptions::default(),
        );
        let category = Category::of(&expected.payload);
        let n = position.entry(category).or_default();
        let event = by_category[&category][*n];
        *n += 1;
        let at = format!("event {i} ({})", record.tracepoint);
        assert_eq!(event.pid, record.pid, "{at}");
        assert_eq!(event.category(), Some(category), "{at}");
        let unreadable: Vec<&simulator::TruthArg> = record
            .args
            .iter()
            .filter(|a| a.as_unreadable().is_some())
            .collect();
        if unreadable.is_empty() {
            assert_eq!(event.payload.as_ref(), Some(&expected.payload), "{at}");
            assert!(event.error.is_empty(), "{at}: {}", event.error);
            continue;
        }
        assert!(
            event
                .error
                .contains("could not be read from the traced process"),
            "{at}: error {:?}",
            event.error
        );
        // Strings and hashes (not payloads) are what the kernel marks as read errors.
        let kinds = record.tracepoint().unwrap().args();
        unreadable_values += record
            .args
            .iter()
            .zip(kinds)
            .filter(|(a, kind)| {
                a.as_unreadable().is_some() && **kind != extractor_common::ArgKind::Bytes
            })
            .count() as u64;
    }
    assert_eq!(unreadable_values, 2, "one string, one hash");

    assert_eq!(stats.events_read, truth.len() as u64, "{stats:?}");
    assert!(
        stats.read_errors >= unreadable_values,
        "read_errors counts the unreadable strings and hashes: {stats:?}"
    );
    assert!(stats.kernel_drops.is_empty(), "{stats:?}");

    // The kernel program said so through aya-log, under its own target, with the pid.
    let pid = truth[0].pid;
    let kernel_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("could not be read from the traced process"))
        .collect();
    for tracepoint in [
        Tracepoint::NetMisbehavingConnection,
        Tracepoint::MempoolAdded,
    ] {
        let wanted = format!(
            "tracepoint #{}: an argument could not be read from the traced process (pid {pid})",
            tracepoint as u16
        );
        assert!(
            kernel_lines
                .iter()
                .any(|l| l.contains("extractor_ebpf") && l.contains(&wanted)),
            "no kernel log line {wanted:?} (target extractor_ebpf) in the extractor's stderr:\n{stderr}"
        );
    }
}
