//! `cargo xtask bench metrics`: how many events per second the metrics exporter ingests on one
//! core, with a realistic mix (P2P messages of several types — inv, tx, getdata, ping/pong… —,
//! connections, mempool, blocks, UTXO cache).
//!
//! 1. In-process: protobuf decoding + metric updates (what the exporter does per event, without
//!    NATS), on this thread: with the exporter's decoding (`decode_event`, which skips what it
//!    never reads, and which the exporter's consumer uses), and with `Event::decode` (all of
//!    the event, as other tools decode).
//! 2. End to end: a private nats-server, the exporter on its own thread with a current-thread
//!    runtime (so it uses one core at most), a publisher on another thread sending as fast as it
//!    can. Throughput is what arrived per wall second, and per CPU second of the exporter's
//!    thread (its capacity, should the publisher be the slower side).
//!
//! Then the figures against the targets. A measurement, not a test: nothing fails on a slow
//! machine. `--in-process` runs the first part alone (e.g. under a profiler).

use std::time::{Duration, Instant};

use clap::Parser;
use nodescope_consumer::testing::{client, http_get, publish, EventSource, NatsServer};
use nodescope_consumer::{Continuity, Item, Received};
use nodescope_metrics::{decode_event, serve, Args, Metrics, Recorder};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p::{decode_p2p, samples, DecodeOptions};
use nodescope_proto::*;
use prost::Message;

/// One cycle of the mix: 100 payloads, interleaved.
fn mix() -> Vec<Payload> {
    let p2p: std::collections::HashMap<&str, Vec<u8>> =
        samples::sample_payloads().into_iter().collect();
    let peer = |id: i64, conn_type: ConnectionType| Peer {
        id,
        addr: format!("203.0.113.{id}:8333"),
        conn_type: conn_type as i32,
        conn_type_other: String::new(),
    };
    let message = |inbound: bool, id: i64, msg_type: &str| {
        let payload = &p2p[msg_type];
        let net = NetMessage {
            peer: Some(peer(id, ConnectionType::OutboundFullRelay)),
            message: Some(decode_p2p(
                msg_type,
                payload,
                payload.len() as u64,
                DecodeOptions::default(),
            )),
        };
        if inbound {
            Payload::InboundMessage(net)
        } else {
            Payload::OutboundMessage(net)
        }
    };
    let mut weighted: Vec<(usize, Payload)> = vec![
        (25, message(true, 1, "inv")),
        (15, message(true, 2, "tx")),
        (8, message(false, 1, "getdata")),
        (4, message(false, 3, "ping")),
        (4, message(true, 3, "pong")),
        (2, message(true, 4, "headers")),
        (2, message(true, 4, "addrv2")),
        (1, message(true, 5, "cmpctblock")),
        (1, message(true, 5, "feefilter")),
        (1, message(true, 6, "version")),
        (1, message(true, 6, "verack")),
        (
            12,
            Payload::MempoolAdded(MempoolAdded {
                txid: vec![1; 32],
                vsize: 141,
                fee: 1410,
            }),
        ),
        (
            8,
            Payload::MempoolRemoved(MempoolRemoved {
                txid: vec![1; 32],
                reason: RemovalReason::Block as i32,
                vsize: 141,
                fee: 1410,
                entry_time: 1_760_000_000,
                ..Default::default()
            }),
        ),
        (
            2,
            Payload::MempoolRejected(MempoolRejected {
                txid: vec![2; 32],
                reason: "min relay fee not met".into(),
            }),
        ),
        (
            1,
            Payload::MempoolReplaced(MempoolReplaced {
                replaced_by_transaction: true,
                ..Default::default()
            }),
        ),
        (
            1,
            Payload::InboundConnection(InboundConnection {
                peer: Some(peer(7, ConnectionType::Inbound)),
                network: Network::Ipv4 as i32,
                inbound_count: 1,
            }),
        ),
        (
            1,
            Payload::ClosedConnection(ClosedConnection {
                peer: Some(peer(7, ConnectionType::Inbound)),
                network: Network::Ipv4 as i32,
                connected_since: 1_760_000_000,
            }),
        ),
        (
            1,
            Payload::BlockConnected(BlockConnected {
                hash: vec![3; 32],
                height: 900_000,
                transactions: 3000,
                inputs: 7000,
                sigop_cost: 12_000,
                duration_ns: 150_000_000,
            }),
        ),
        (
            5,
            Payload::UtxocacheAdd(UtxoCacheCoin {
                txid: vec![4; 32],
                vout: 1,
                height: 900_000,
                value: 50_000,
                coinbase: false,
            }),
        ),
        (
            5,
            Payload::UtxocacheSpent(UtxoCacheCoin {
                txid: vec![5; 32],
                vout: 0,
                height: 899_000,
                value: 70_000,
                coinbase: false,
            }),
        ),
    ];
    assert_eq!(weighted.iter().map(|(w, _)| w).sum::<usize>(), 100);
    // Round-robin over the kinds so that the cycle interleaves them.
    let mut cycle = Vec::with_capacity(100);
    while cycle.len() < 100 {
        for (weight, payload) in weighted.iter_mut() {
            if *weight > 0 {
                *weight -= 1;
                cycle.push(payload.clone());
            }
        }
    }
    cycle
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for the calling thread's CPU clock.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of thread `tid` of this process (ns on CPU, from the scheduler's statistics).
fn task_cpu(tid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
}

/// What one thread does per event, in ns: the best of [`ROUNDS`] rounds (the machine may be
/// shared: the best round is the one least disturbed).
struct InProcess {
    /// `Event::decode`, all of the event, as other tools decode.
    full_decode: f64,
    /// [`decode_event`], the exporter's decoding.
    decode: f64,
    /// [`decode_event`] and the recorder's updates: what the exporter does per event.
    decode_and_record: f64,
    /// `Event::decode` and the recorder's updates.
    full_decode_and_record: f64,
}

const ROUNDS: usize = 5;

fn in_process(cycle: &[Payload], count: usize) -> InProcess {
    let mut source = EventSource::new("bench", 1);
    let encoded: Vec<Vec<u8>> = cycle
        .iter()
        .map(|p| source.stamp(p.clone()).encode_to_vec())
        .collect();
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    println!(
        "mix per 100 events: inv 25, tx 15, getdata 8, ping 4, pong 4, headers/addrv2 2 each, \
         cmpctblock/feefilter/version/verack 1 each; mempool added 12, removed 8, rejected 2, \
         replaced 1; connection opened/closed 1 each; block 1; utxocache add/spent 5 each \
         ({} bytes per event on average)",
        bytes / encoded.len()
    );

    let per_round = count / ROUNDS;
    let event = |i: usize| encoded[i % encoded.len()].as_slice();
    // ns per event of `work` over the events of a round, at its best round.
    let best = |work: &mut dyn FnMut(&[u8])| {
        (0..ROUNDS)
            .map(|_| {
                let start = thread_cpu();
                for i in 0..per_round {
                    work(event(i));
                }
                start.elapsed_cpu().as_nanos() as f64 / per_round as f64
            })
            .fold(f64::INFINITY, f64::min)
    };
    let args = Args::parse_from(["metrics"]);
    let recording = |decode: fn(&[u8]) -> Event| {
        let (metrics, _registry) = Metrics::new();
        let mut recorder = Recorder::new(metrics, args.config());
        move |bytes: &[u8]| {
            let event = decode(bytes);
            let category = event.category().unwrap();
            recorder.record(&Item::Event(Box::new(Received {
                event,
                category,
                continuity: Continuity::Next,
            })));
        }
    };
    let full: fn(&[u8]) -> Event = |bytes| Event::decode(bytes).unwrap();
    let lean: fn(&[u8]) -> Event = |bytes| decode_event(bytes).unwrap();
    let figures = InProcess {
        full_decode: best(&mut |bytes| drop(std::hint::black_box(full(bytes)))),
        decode: best(&mut |bytes| drop(std::hint::black_box(lean(bytes)))),
        decode_and_record: best(&mut recording(lean)),
        full_decode_and_record: best(&mut recording(full)),
    };
    println!(
        "in-process, one thread, best of {ROUNDS} rounds of {per_round} events: decoding + metrics \
         {:.0} ns/event = {} events/s (decoding {:.0} ns, metric updates {:.0} ns); with \
         Event::decode (all of the event: {:.0} ns) {:.0} ns/event = {} events/s",
        figures.decode_and_record,
        thousands(1e9 / figures.decode_and_record),
        figures.decode,
        figures.decode_and_record - figures.decode,
        figures.full_decode,
        figures.full_decode_and_record,
        thousands(1e9 / figures.full_decode_and_record),
    );
    figures
}

trait ElapsedCpu {
    fn elapsed_cpu(&self) -> Duration;
}

impl ElapsedCpu for Duration {
    fn elapsed_cpu(&self) -> Duration {
        thread_cpu() - *self
    }
}

/// Sum of the samples of `family` for node "bench" in a scrape.
fn bench_sum(scrape: &str, family: &str) -> u64 {
    let prefix = format!("{family}{{node=\"bench\"");
    scrape
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// What arrived at the exporter through nats-server, per wall second and per CPU second of its
/// thread.
struct EndToEnd {
    per_second: f64,
    per_cpu_second: f64,
    missed: u64,
}

fn end_to_end(cycle: &[Payload], count: usize) -> EndToEnd {
    let nats = NatsServer::start();
    let url = nats.url();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let args = Args::parse_from(["metrics", "--nats-url", &url]);
    let exporter = std::thread::spawn(move || {
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve(listener, args, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    let tid = tid_rx.recv().unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scrape = |runtime: &tokio::runtime::Runtime| {
        runtime.block_on(http_get(&format!("{base}/metrics"))).1
    };
    // Ready once an event arrives (the exporter's subscriptions are live).
    let publisher = runtime.block_on(client(&nats));
    let mut probe = EventSource::new("probe", 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let event = probe.stamp(cycle[0].clone());
        runtime.block_on(publish(&publisher, &event));
        std::thread::sleep(Duration::from_millis(50));
        if std::net::TcpStream::connect(base.trim_start_matches("http://")).is_ok()
            && scrape(&runtime).contains("node=\"probe\"")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the exporter hears nothing");
    }

    let cycle = cycle.to_vec();
    let nats_url = url.clone();
    let started = Instant::now();
    let cpu_before = task_cpu(tid);
    let sender = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = async_nats::connect(nats_url).await.unwrap();
            let mut source = EventSource::new("bench", 1);
            for i in 0..count {
                publish(&client, &source.stamp(cycle[i % cycle.len()].clone())).await;
            }
            client.flush().await.unwrap();
        });
        started.elapsed()
    });

    let (mut received, mut missed, mut last_change) = (0, 0, Instant::now());
    while received + missed < count as u64 && last_change.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        let text = scrape(&runtime);
        let now = (
            bench_sum(&text, "nodescope_events_received_total"),
            bench_sum(&text, "nodescope_events_missed_total"),
        );
        if now != (received, missed) {
            (received, missed) = now;
            last_change = Instant::now();
        }
    }
    let elapsed = last_change.duration_since(started);
    let cpu = task_cpu(tid) - cpu_before;
    let published_in = sender.join().unwrap();
    let _ = stop.send(());
    exporter.join().unwrap();
    println!(
        "end to end through nats-server, {count} events published in {:.2} s ({:.0}/s): \
         {received} ingested in {:.2} s = {:.0} events/s; exporter thread CPU {:.2} s = \
         {:.0} events per CPU second; {missed} lost on the way (NATS slow consumer)",
        published_in.as_secs_f64(),
        count as f64 / published_in.as_secs_f64(),
        elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64(),
        received as f64 / cpu.as_secs_f64(),
    );
    EndToEnd {
        per_second: received as f64 / elapsed.as_secs_f64(),
        per_cpu_second: received as f64 / cpu.as_secs_f64(),
        missed,
    }
}

/// The exporter's target (issue 16): events per second on one core, in process.
const TARGET_EVENTS_PER_CORE: f64 = 1_000_000.0;

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The figures against their targets: `figure | target | measured | ratio` (measured / target,
/// ✓ when it is reached); rows without a target are for information.
fn print_targets(in_process: &InProcess, end_to_end: Option<&EndToEnd>) {
    let mut rows = vec![["figure", "target", "measured", "ratio"].map(String::from)];
    let mut row = |figure: &str, target: Option<f64>, measured: f64, note: &str| {
        let (target, ratio) = match target {
            Some(target) => {
                let ratio = measured / target;
                let mark = if ratio >= 1.0 { "✓" } else { "✗" };
                (
                    format!("≥ {}", thousands(target)),
                    format!("{ratio:.2}× {mark}"),
                )
            }
            None => ("—".to_string(), "(information)".to_string()),
        };
        rows.push([
            figure.into(),
            target,
            format!("{}{note}", thousands(measured)),
            ratio,
        ]);
    };
    row(
        "in-process events/s per core",
        Some(TARGET_EVENTS_PER_CORE),
        1e9 / in_process.decode_and_record,
        "",
    );
    row(
        "  with Event::decode (all of the event, as other tools decode)",
        None,
        1e9 / in_process.full_decode_and_record,
        "",
    );
    if let Some(e) = end_to_end {
        row(
            "end to end events/s per exporter CPU second",
            None,
            e.per_cpu_second,
            &format!(
                " ({}/s wall, {} lost)",
                thousands(e.per_second),
                thousands(e.missed as f64)
            ),
        );
    }
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..4).map(width).collect();
    println!();
    println!("Targets:");
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
            .collect();
        println!("  {}", cells.join(" | ").trim_end());
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // The in-process part alone, e.g. under a profiler.
    let in_process_only = std::env::args().any(|a| a == "--in-process");
    let (in_process_count, e2e_count) = if quick {
        (200_000, 200_000)
    } else {
        (2_000_000, 1_000_000)
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split(':')
                    .nth(1)
                    .map(|m| m.trim().to_string())
            })
        })
        .unwrap_or_default();
    println!(
        "nodescope metrics exporter benchmark ({}), {cpus} CPUs ({model})",
        if quick { "quick" } else { "full" }
    );
    let cycle = mix();
    let in_process = in_process(&cycle, in_process_count);
    let end_to_end = (!in_process_only).then(|| end_to_end(&cycle, e2e_count));
    print_targets(&in_process, end_to_end.as_ref());
}
