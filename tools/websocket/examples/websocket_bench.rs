//! `cargo xtask bench websocket`: fan-out of the websocket tool to 100 clients at given event
//! rates — delivered events/s, how many each client got, latency publish → client (p50, p99,
//! max), what the tool counted as lagged and the CPU it used — then the targets against
//! what was measured. A measurement, not a test: a slow machine prints slow figures.
//!
//! Everything shares the machine: a private nats-server, the tool (its own 2-thread runtime,
//! as the binary), a publisher stamping each event with its publish time, and 100 websocket
//! clients (one runtime) that read the time back out of each frame. The clients are as cheap as
//! a client can be, so that what is measured is the tool: each opens the websocket by hand and
//! reads frames straight off its socket, looking into each only for its timestamp.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use nodescope_consumer::testing::{client, http_get, publish, EventSource, NatsServer};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p::{decode_p2p, samples::sample_payloads, DecodeOptions};
use nodescope_proto::{ConnectionType, Event, MempoolAdded, NetMessage, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Issue 16's targets for 100 clients.
const TARGET_RATE: u64 = 20_000;
const TARGET_P99_MS: f64 = 50.0;

/// Each client's socket reads: large, so that one read takes many frames.
const READ_BUFFER: usize = 256 * 1024;

#[derive(Parser)]
struct Options {
    /// Short steps (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Websocket clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Event rates to try, per second. The targets are read at 20,000/s; the events/s every
    /// client gets, at the highest rate (above the target, to show what is left over).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,5000,10000,20000,30000"
    )]
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

/// Opens `/ws` by hand; returns the socket and what arrived after the handshake's reply.
async fn connect(address: SocketAddr) -> anyhow::Result<(TcpStream, Vec<u8>)> {
    let mut socket = TcpStream::connect(address).await?;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await?;
    let mut received = Vec::with_capacity(READ_BUFFER);
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            anyhow::ensure!(
                received.starts_with(b"HTTP/1.1 101"),
                "the tool refused the websocket: {}",
                String::from_utf8_lossy(&received[..end])
            );
            received.drain(..end + 4);
            return Ok((socket, received));
        }
        anyhow::ensure!(
            socket.read_buf(&mut received).await? > 0,
            "the tool closed the connection during the handshake"
        );
    }
}

/// The opcode and payload of the first whole frame in `bytes`; the payload's end is the frame's
/// (a server never masks its frames).
fn next_frame(bytes: &[u8]) -> Option<(u8, Range<usize>)> {
    let [first, second, ..] = *bytes else {
        return None;
    };
    let (length, header) = match second & 0x7f {
        126 => (
            u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        short => (short as usize, 2),
    };
    let end = header + length;
    (bytes.len() >= end).then_some((first & 0x0f, header..end))
}

const TEXT: u8 = 1;
const TIMESTAMP: &[u8] = b"\"timestamp_ns\":";

/// Finds the `timestamp_ns` of event frames without parsing their JSON. It comes among an
/// event's first fields, before its payload, at a place that moves only with the lengths of the
/// category and of the numbers before it: where it was in the last frame is looked at first.
#[derive(Default)]
struct TimestampReader {
    last_at: usize,
}

impl TimestampReader {
    fn read(&mut self, frame: &[u8]) -> Option<u64> {
        if !frame[self.last_at.min(frame.len())..].starts_with(TIMESTAMP) {
            let head = &frame[..frame.len().min(256)];
            self.last_at =
                (0..head.len()).find(|&i| head[i] == b'"' && head[i..].starts_with(TIMESTAMP))?;
        }
        let digits = frame[self.last_at + TIMESTAMP.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit());
        Some(digits.fold(0, |n, d| n * 10 + u64::from(d - b'0')))
    }
}

#[derive(Default)]
struct Tally {
    frames: u64,
    bytes: u64,
    latencies_us: Vec<u32>,
    last_frame_at: Option<Instant>,
}

/// Reads frames until the connection ends, adding each event frame's latency to `tally` (once
/// per read, and timed once per read: the frames of one read arrived together).
async fn read_frames(mut socket: TcpStream, mut received: Vec<u8>, tally: Arc<Mutex<Tally>>) {
    let mut latencies = Vec::new();
    let mut timestamps = TimestampReader::default();
    loop {
        let now = now_ns();
        let mut bytes = 0;
        let mut start = 0;
        while let Some((opcode, payload)) = next_frame(&received[start..]) {
            let frame = &received[start..][payload.clone()];
            if let (TEXT, Some(sent)) = (opcode, timestamps.read(frame)) {
                let latency = now.saturating_sub(sent) / 1000;
                latencies.push(latency.min(u32::MAX as u64) as u32);
                bytes += frame.len() as u64;
            }
            start += payload.end;
        }
        received.drain(..start);
        if !latencies.is_empty() {
            let mut tally = tally.lock().unwrap();
            tally.frames += latencies.len() as u64;
            tally.bytes += bytes;
            tally.latencies_us.append(&mut latencies);
            tally.last_frame_at = Some(Instant::now());
        }
        if received.capacity() - received.len() < READ_BUFFER / 2 {
            received.reserve(READ_BUFFER);
        }
        match socket.read_buf(&mut received).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The events the tool never received (sequence gaps: NATS dropped them, the tool being too
/// slow a consumer), from the bench node's state as the tool sends it to pages.
async fn missed_by_the_tool(address: SocketAddr) -> anyhow::Result<u64> {
    use futures::StreamExt;
    let (mut page, _) =
        tokio_tungstenite::connect_async(format!("ws://{address}/ws?events=0&state=1&nodes=bench"))
            .await?;
    while let Some(message) = page.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message? {
            let frame: serde_json::Value = serde_json::from_str(&text)?;
            if frame["type"] == "state" {
                return Ok(frame["state"]["pipeline"]["missed"].as_u64().unwrap_or(0));
            }
        }
    }
    anyhow::bail!("the tool closed the page's websocket before sending the state")
}

/// CPU seconds so far of this process's threads whose name starts with `name` (the runtimes
/// name theirs), from /proc (user + system, in ticks of 1/100 s).
fn cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head
            .split_once('(')
            .is_some_and(|(_, comm)| comm.starts_with(name))
        {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    ticks as f64 / 100.0
}

/// Mean µs to render one event of `mix` to JSON as the tool does, once per event.
fn render_us(mix: &[Payload]) -> f64 {
    let mut source = EventSource::new("bench", 1);
    let events: Vec<Event> = (0..10_000)
        .map(|n| source.stamp(mix[n % mix.len()].clone()))
        .collect();
    let started = Instant::now();
    let bytes: usize = events
        .iter()
        .map(|event| nodescope_proto::json::to_json_string(event).len())
        .sum();
    std::hint::black_box(bytes);
    started.elapsed().as_secs_f64() * 1e6 / events.len() as f64
}

/// What one rate step measured.
struct Step {
    rate: u64,
    published: u64,
    published_per_s: f64,
    /// Frames received by all clients together per second.
    delivered_per_s: f64,
    /// Events per second received by the client that received them slowest.
    least_client_per_s: f64,
    /// The share of the events published that the least served client received.
    least_share: f64,
    lagged: u64,
    /// Events the tool never received.
    missed: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_frame_bytes: f64,
    tool_cores: f64,
    client_cores: f64,
    /// The tool's CPU per frame delivered, µs: what it costs whatever CPU it was given.
    tool_us_per_frame: f64,
}

/// One row of the targets table: a measured figure against its target, with the ratio the
/// right way round (above 1× is met), truncated so that a missed target never shows 1.00×.
fn target_row(figure: &str, target: &str, measured: &str, ratio: f64) {
    let ratio = (ratio * 100.0).floor() / 100.0;
    let mark = if ratio >= 1.0 { "✓" } else { "✗" };
    println!(
        "{figure:<52} {target:>12} {measured:>12} {:>8} {mark}",
        format!("{ratio:.2}×")
    );
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    anyhow::ensure!(!options.rates.is_empty(), "--rates: at least one rate");
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
    let client_queue = args.client_queue;
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
    let tallies: Vec<Arc<Mutex<Tally>>> = (0..options.clients)
        .map(|_| Arc::new(Mutex::new(Tally::default())))
        .collect();
    for tally in &tallies {
        let (socket, received) = client_runtime.block_on(connect(address))?;
        client_runtime.spawn(read_frames(socket, received, tally.clone()));
    }
    let frames = |tallies: &[Arc<Mutex<Tally>>]| -> Vec<u64> {
        tallies.iter().map(|t| t.lock().unwrap().frames).collect()
    };

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
    let missed = |runtime: &tokio::runtime::Runtime| -> anyhow::Result<u64> {
        runtime.block_on(missed_by_the_tool(address))
    };
    // Until nothing arrived for half a second (or 20 s): the last frames of a step are in.
    let drain = |tallies: &[Arc<Mutex<Tally>>]| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = frames(tallies);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            let now = frames(tallies);
            if now == last {
                break;
            }
            last = now;
        }
    };

    // Warm up until every client hears events (the tool has subscribed).
    let warm_deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while frames(&tallies).contains(&0) {
        anyhow::ensure!(
            Instant::now() < warm_deadline,
            "not every client received an event within 30 s of publishing"
        );
        publisher_runtime.block_on(async {
            publish(&publisher, &source.stamp(mix[n % mix.len()].clone())).await;
            publisher.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        });
        n += 1;
    }
    drain(&tallies);

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "nodescope websocket fan-out benchmark ({} clients, {} s per step)",
        options.clients,
        step.as_secs()
    );
    println!(
        "{cores} CPUs shared by nats-server, the publisher, the tool and the clients; load average at start {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "event mix: inv, tx, ping, pong, getdata, headers, addrv2 messages and mempool additions, rendered to JSON once per event ({:.1} µs each here, nodescope_proto::json::to_json_string)",
        render_us(&mix)
    );
    println!("clients: read frames straight off the socket and look only for each one's timestamp (the cheapest client there is, so that the tool is what is measured)\n");
    println!(
        "{:>7} {:>11} {:>12} {:>12} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>10}",
        "rate/s",
        "published/s",
        "delivered/s",
        "least/s",
        "least got",
        "lagged",
        "missed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "frame B",
        "tool CPU",
        "clients",
        "tool µs/fr"
    );
    let mut steps = Vec::new();
    for &rate in &options.rates {
        for tally in &tallies {
            *tally.lock().unwrap() = Tally::default();
        }
        let lagged_before = lagged(&publisher_runtime);
        let missed_before = missed(&publisher_runtime)?;
        let (tool_before, clients_before) = (cpu_seconds("tool"), cpu_seconds("clients"));
        let events = rate * step.as_secs();
        let started = Instant::now();
        publisher_runtime.block_on(async {
            // Batches every millisecond: the rate is kept without a timer per event.
            let mut sent = 0;
            while sent < events {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due.min(events) {
                    let mut event: Event = source.stamp(mix[sent as usize % mix.len()].clone());
                    event.timestamp_ns = now_ns();
                    publish(&publisher, &event).await;
                    sent += 1;
                }
                publisher.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let published_in = started.elapsed();
        drain(&tallies);
        let busy = started.elapsed().as_secs_f64();
        let tool_seconds = cpu_seconds("tool") - tool_before;
        let tool_cores = tool_seconds / busy;
        let client_cores = (cpu_seconds("clients") - clients_before) / busy;
        let lagged_events = lagged(&publisher_runtime) - lagged_before;
        let missed_events = missed(&publisher_runtime)? - missed_before;

        let mut frames = 0;
        let mut bytes = 0;
        let mut latencies = Vec::new();
        let mut least = u64::MAX;
        let mut least_client_per_s = f64::MAX;
        let mut delivered_in = published_in;
        for tally in &tallies {
            let tally = tally.lock().unwrap();
            let received_in = tally.last_frame_at.map_or(published_in, |at| at - started);
            delivered_in = delivered_in.max(received_in);
            least_client_per_s =
                least_client_per_s.min(tally.frames as f64 / received_in.as_secs_f64());
            frames += tally.frames;
            bytes += tally.bytes;
            least = least.min(tally.frames);
            latencies.extend_from_slice(&tally.latencies_us);
        }
        latencies.sort_unstable();
        let percentile = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .map_or(0.0, |us| *us as f64 / 1000.0)
        };
        let measured = Step {
            rate,
            published: events,
            published_per_s: events as f64 / published_in.as_secs_f64(),
            delivered_per_s: frames as f64 / delivered_in.as_secs_f64(),
            least_client_per_s,
            least_share: least as f64 / events as f64,
            lagged: lagged_events,
            missed: missed_events,
            p50_ms: percentile(0.5),
            p99_ms: percentile(0.99),
            max_ms: percentile(1.0),
            mean_frame_bytes: bytes as f64 / frames.max(1) as f64,
            tool_cores,
            client_cores,
            tool_us_per_frame: tool_seconds * 1e6 / frames.max(1) as f64,
        };
        println!(
            "{:>7} {:>11.0} {:>12.0} {:>12.0} {:>10} {:>8} {:>8} {:>8.2} {:>8.2} {:>8.1} {:>7.0} {:>8.2} {:>8.2} {:>10.2}",
            measured.rate,
            measured.published_per_s,
            measured.delivered_per_s,
            measured.least_client_per_s,
            format!("{:.2}%", 100.0 * measured.least_share),
            measured.lagged,
            measured.missed,
            measured.p50_ms,
            measured.p99_ms,
            measured.max_ms,
            measured.mean_frame_bytes,
            measured.tool_cores,
            measured.client_cores,
            measured.tool_us_per_frame,
        );
        steps.push(measured);
    }
    println!("\ndelivered/s: frames received by all clients together, over the time from the step's first publish to its last frame received");
    println!("least/s: the events per second of the client that received them slowest, over the time from the step's first publish to its last frame");
    println!("least got: the share of the events published that the least served client received; lagged: events clients lost by falling a whole queue ({client_queue}) behind, as the tool counted them; missed: events the tool never received (NATS dropped them: the tool was too slow a consumer)");
    println!("frame B: mean bytes of an event frame's JSON; tool CPU, clients: cores used by the tool's and the clients' threads over the step (publishing and draining); tool µs/fr: the tool's CPU per frame delivered (its rendering included)");

    // The targets: latency and completeness at the target rate, events/s at the highest rate.
    let at_target = steps
        .iter()
        .find(|s| s.rate == TARGET_RATE)
        .unwrap_or_else(|| steps.iter().max_by_key(|s| s.rate).unwrap());
    let highest = steps.iter().max_by_key(|s| s.rate).unwrap();
    println!("\ntargets (issue 16), {} clients", options.clients);
    println!(
        "{:<52} {:>12} {:>12} {:>8}",
        "figure", "target", "measured", "ratio"
    );
    target_row(
        &format!("events/s delivered to every client (at {}/s)", highest.rate),
        &format!("≥ {TARGET_RATE}/s"),
        &format!("{:.0}/s", highest.least_client_per_s),
        highest.least_client_per_s / TARGET_RATE as f64,
    );
    target_row(
        &format!("least served client's share (at {}/s)", at_target.rate),
        "100%",
        &format!("{:.2}%", 100.0 * at_target.least_share),
        at_target.least_share,
    );
    target_row(
        &format!("p99 latency publish → client (at {}/s)", at_target.rate),
        &format!("≤ {TARGET_P99_MS} ms"),
        &format!("{:.1} ms", at_target.p99_ms),
        TARGET_P99_MS / at_target.p99_ms.max(0.001),
    );
    println!(
        "at {}/s the tool spent {:.2} µs of CPU per frame delivered: {} events/s to {} clients takes {:.2} of the machine's {} cores for the tool alone",
        at_target.rate,
        at_target.tool_us_per_frame,
        TARGET_RATE,
        options.clients,
        at_target.tool_us_per_frame * (TARGET_RATE * options.clients as u64) as f64 / 1e6,
        cores,
    );
    println!(
        "events/s can be no more than the highest rate offered ({}/s, {} events); a share below 100% is events lost (lagged or missed above)",
        highest.rate, highest.published
    );
    let _ = stop.send(());
    tool_runtime.block_on(tool)??;
    Ok(())
}
