//! `cargo xtask bench websocket`: fan-out of the websocket tool to 100 clients at given event
//! rates — delivered events/s, how many each client got, latency publish → client (p50, p99,
//! max), and what the tool counted as lagged. A measurement, not a test.
//!
//! Everything shares the machine: a private nats-server, the tool (its own 2-thread runtime,
//! as the binary), a publisher stamping each event with its publish time, and 100 websocket
//! clients (one runtime) that read the time back out of each frame.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures::StreamExt;
use nodescope_consumer::testing::{client, http_get, publish, EventSource, NatsServer};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p::{decode_p2p, samples::sample_payloads, DecodeOptions};
use nodescope_proto::{ConnectionType, Event, MempoolAdded, NetMessage, Peer};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Options {
    /// Short steps (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Websocket clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Event rates to try, per second.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,20000")]
    rates: Vec<u64>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A mix like a busy node's: P2P messages of several types (decoded as the extractor decodes
/// them) and mempool additions.
fn payloads() -> Vec<Payload> {
    let mut mix: Vec<Payload> = sample_payloads()
        .into_iter()
        .filter(|(t, _)| ["inv", "tx", "ping", "pong", "getdata", "headers", "addrv2"].contains(t))
        .map(|(msg_type, payload)| {
            Payload::InboundMessage(NetMessage {
                peer: Some(Peer {
                    id: 7,
                    addr: "203.0.113.7:8333".into(),
                    conn_type: ConnectionType::OutboundFullRelay as i32,
                    conn_type_other: String::new(),
                }),
                message: Some(decode_p2p(
                    msg_type,
                    &payload,
                    payload.len() as u64,
                    DecodeOptions::default(),
                )),
            })
        })
        .collect();
    mix.push(Payload::MempoolAdded(MempoolAdded {
        txid: vec![0x5a; 32],
        vsize: 141,
        fee: 2820,
    }));
    mix
}

/// The `timestamp_ns` of an event frame, found without parsing the whole JSON (100 clients
/// parsing every frame would measure the clients, not the tool).
fn timestamp(frame: &str) -> Option<u64> {
    let start = frame.find("\"timestamp_ns\":")? + "\"timestamp_ns\":".len();
    let digits = frame[start..].split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

#[derive(Default)]
struct Tally {
    frames: u64,
    latencies_us: Vec<u32>,
    last_frame_at: Option<Instant>,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let step = Duration::from_secs(if options.quick { 2 } else { 5 });
    let server = NatsServer::start();
    let url = server.url();

    // The tool, on its own runtime.
    let tool_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tool")
        .enable_all()
        .build()?;
    let listener = tool_runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address = listener.local_addr()?;
    let args = nodescope_websocket::Args::parse_from(["websocket", "--nats-url", &url]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tool = tool_runtime.spawn(nodescope_websocket::run_on(listener, args, async move {
        let _ = stopped.await;
    }));

    // The clients, on theirs.
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("clients")
        .enable_all()
        .build()?;
    let recording = Arc::new(AtomicBool::new(false));
    let tallies: Vec<Arc<Mutex<Tally>>> = (0..options.clients)
        .map(|_| Arc::new(Mutex::new(Tally::default())))
        .collect();
    for tally in &tallies {
        let (mut socket, _) = client_runtime.block_on(tokio_tungstenite::connect_async(
            format!("ws://{address}/ws"),
        ))?;
        let tally = tally.clone();
        let recording = recording.clone();
        client_runtime.spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    let Some(sent) = timestamp(&text) else {
                        continue;
                    };
                    if recording.load(Ordering::Relaxed) {
                        let latency = now_ns().saturating_sub(sent) / 1000;
                        let mut tally = tally.lock().unwrap();
                        tally.frames += 1;
                        tally.last_frame_at = Some(Instant::now());
                        tally.latencies_us.push(latency.min(u32::MAX as u64) as u32);
                    }
                }
            }
        });
    }

    let publisher_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let publisher = publisher_runtime.block_on(client(&server));
    let mix = payloads();
    let mut source = EventSource::new("bench", 1);
    let lagged = |runtime: &tokio::runtime::Runtime| -> u64 {
        let (_, body) = runtime.block_on(http_get(&format!("http://{address}/healthz")));
        let health: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        health["counters"]["lagged_events"].as_u64().unwrap_or(0)
    };

    // Warm up until every client hears events (the tool has subscribed).
    publisher_runtime.block_on(async {
        for n in 0..200 {
            publish(&publisher, &source.stamp(mix[n % mix.len()].clone())).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        publisher.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    });

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "nodescope websocket fan-out benchmark ({} clients, {} s per step)",
        options.clients,
        step.as_secs()
    );
    println!(
        "2 CPUs shared by nats-server, the publisher, the tool and the clients; load average at start {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("event mix: inv, tx, ping, pong, getdata, headers, addrv2 messages and mempool additions, rendered to JSON once per event\n");
    println!(
        "{:>8} {:>12} {:>16} {:>14} {:>14} {:>8} {:>8} {:>8}",
        "rate/s",
        "published/s",
        "delivered/s",
        "per client",
        "lagged",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    for &rate in &options.rates {
        for tally in &tallies {
            *tally.lock().unwrap() = Tally::default();
        }
        let lagged_before = lagged(&publisher_runtime);
        recording.store(true, Ordering::Relaxed);
        let events = (rate * step.as_secs()) as usize;
        let started = Instant::now();
        publisher_runtime.block_on(async {
            // Batches every millisecond: the rate is kept without a timer per event.
            let mut sent = 0;
            while sent < events {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as usize;
                while sent < due.min(events) {
                    let mut event: Event = source.stamp(mix[sent % mix.len()].clone());
                    event.timestamp_ns = now_ns();
                    publish(&publisher, &event).await;
                    sent += 1;
                }
                publisher.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let published_in = started.elapsed();
        // Let the last frames arrive: until nothing came for half a second (or 20 s).
        let total = || {
            tallies
                .iter()
                .map(|t| t.lock().unwrap().frames)
                .sum::<u64>()
        };
        let drain_deadline = Instant::now() + Duration::from_secs(20);
        let mut last = total();
        while Instant::now() < drain_deadline {
            std::thread::sleep(Duration::from_millis(500));
            let now = total();
            if now == last {
                break;
            }
            last = now;
        }
        recording.store(false, Ordering::Relaxed);
        let lagged_events = lagged(&publisher_runtime) - lagged_before;
        let mut frames = 0;
        let mut latencies = Vec::new();
        let mut least = u64::MAX;
        let mut delivered_in = published_in;
        for tally in &tallies {
            let tally = tally.lock().unwrap();
            if let Some(at) = tally.last_frame_at {
                delivered_in = delivered_in.max(at - started);
            }
            frames += tally.frames;
            least = least.min(tally.frames);
            latencies.extend_from_slice(&tally.latencies_us);
        }
        latencies.sort_unstable();
        let percentile = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .map_or(0.0, |us| *us as f64 / 1000.0)
        };
        println!(
            "{:>8} {:>12.0} {:>16.0} {:>14} {:>14} {:>8.2} {:>8.2} {:>8.1}",
            rate,
            events as f64 / published_in.as_secs_f64(),
            frames as f64 / delivered_in.as_secs_f64(),
            format!("{:.1}%", 100.0 * least as f64 / events as f64),
            lagged_events,
            percentile(0.5),
            percentile(0.99),
            percentile(1.0),
        );
    }
    println!("\ndelivered/s: frames received by all clients together, over the time from the step's first publish to its last frame received");
    println!("per client: the share of the events published that the least served client received; lagged: events clients lost by falling a whole queue (8,192) behind, as the tool counted them");
    let _ = stop.send(());
    tool_runtime.block_on(tool)??;
    Ok(())
}
