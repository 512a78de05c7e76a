//! `cargo xtask bench connectivity-check`: 50,000 announced addresses against 5,000 fake peers
//! on distinct loopback addresses, through a private nats-server, checked by the release
//! `connectivity-check` binary in its own process.
//!
//! 1. Flat out (`--max-checks-per-minute` far above what the machine does): checks per
//!    second, handshake p50/p99, the tool's peak RSS and CPU, and the measured concurrency.
//! 2. Rate-limited (3,000 a minute) on fresh addresses: the most connections the peers saw in
//!    any one second against the 50 allowed.
//!
//! A measurement, not a test: nothing fails on a slow machine; a broken limit is printed.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::p2p::Magic;
use clap::Parser;
use futures::StreamExt;
use nodescope_connectivity::fake::{loopback, Behaviour, FakePeers};
use nodescope_consumer::testing::{
    client, cpu_seconds, free_port, http_get, peak_rss_kib, publish, EventSource, NatsServer,
};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::*;
use prost::Message;

#[derive(Parser)]
struct Options {
    /// Smaller numbers: a smoke run.
    #[arg(long)]
    quick: bool,
}

const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let (peers, repeats, limited) = if options.quick {
        (1_000, 10, 200)
    } else {
        (5_000, 10, 1_000)
    };
    let binary = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|release| release.join("connectivity-check"))
        .filter(|path| path.exists())
        .ok_or_else(|| {
            anyhow::anyhow!("build the tool first: cargo build --release -p nodescope-connectivity")
        })?;
    let nats = NatsServer::start();

    println!("connectivity-check benchmark: {peers} fake peers x {repeats} announcements each, concurrency {CONCURRENCY}");
    // The mix of a real address set, roughly: most answer, some refuse, a few say nothing.
    let behaviour = |i: usize| match i % 20 {
        0..=11 => Behaviour::bitcoin(Magic::REGTEST),
        12..=14 => Behaviour::Refuse,
        15 => Behaviour::BlackHole,
        16 => Behaviour::WrongMagic {
            magic: Magic::BITCOIN,
        },
        17 => Behaviour::Garbage(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
        _ => Behaviour::CloseAtOnce,
    };
    let fakes = FakePeers::spawn(
        (0..peers).map(|i| (loopback(i as u32), behaviour(i))),
        18444,
    )?;
    let flat = run_phase(&binary, &nats, &fakes, 0..peers, repeats, "6000000").await?;
    let seconds = flat.elapsed.as_secs_f64();
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| addresses announced | {} ({} distinct) |",
        peers * repeats,
        peers
    );
    println!(
        "| checks made | {} in {:.2} s: **{:.0} checks/s** |",
        flat.checks,
        seconds,
        flat.checks as f64 / seconds
    );
    println!("| results by class | {} |", flat.classes);
    println!(
        "| handshake p50 / p99 (reachable) | {:.2} ms / {:.2} ms |",
        flat.p50_ms, flat.p99_ms
    );
    println!(
        "| repeats answered from cache or pending | {} |",
        flat.repeats
    );
    println!("| dropped (queue full) | {:.0} |", flat.dropped);
    println!(
        "| most connections open at once, seen by the peers | {} (limit {CONCURRENCY}; a peer sees a close a scheduling delay after the tool moved on, so one more can overlap) {} |",
        flat.max_open,
        verdict(flat.max_open <= CONCURRENCY + 1)
    );
    println!(
        "| tool peak RSS (VmHWM) | {:.1} MB |",
        flat.rss_kib as f64 / 1024.0
    );
    println!(
        "| tool CPU | {:.2} s ({:.0} us per announced address) |",
        flat.cpu_s,
        flat.cpu_s * 1e6 / (peers * repeats) as f64
    );

    // Phase 2: 3,000 a minute on addresses not checked yet.
    let per_minute = 3_000;
    let fresh = FakePeers::spawn(
        (0..limited).map(|i| {
            (
                loopback((peers + i) as u32),
                Behaviour::bitcoin(Magic::REGTEST),
            )
        }),
        18444,
    )?;
    let slow = run_phase(
        &binary,
        &nats,
        &fresh,
        0..limited,
        1,
        &per_minute.to_string(),
    )
    .await?;
    let allowed = per_minute / 60;
    let busiest = fresh.tally().max_accepts_in(Duration::from_secs(1));
    println!(
        "| rate-limited to {per_minute}/min: {} checks in {:.1} s | {:.1} checks/s; busiest second at the peers {} (allowed {}) {} |",
        slow.checks,
        slow.elapsed.as_secs_f64(),
        slow.checks as f64 / slow.elapsed.as_secs_f64(),
        busiest,
        allowed,
        verdict(busiest <= allowed + 1)
    );
    Ok(())
}

fn verdict(held: bool) -> &'static str {
    if held {
        "held"
    } else {
        "**BROKEN**"
    }
}

struct Phase {
    elapsed: Duration,
    checks: usize,
    classes: String,
    p50_ms: f64,
    p99_ms: f64,
    repeats: f64,
    dropped: f64,
    max_open: usize,
    rss_kib: u64,
    cpu_s: f64,
}

/// Starts the tool, announces `repeats` x every fake in `range` (shuffled, 10 per message),
/// and waits for one result per distinct address.
async fn run_phase(
    binary: &std::path::Path,
    nats: &NatsServer,
    fakes: &FakePeers,
    range: std::ops::Range<usize>,
    repeats: usize,
    per_minute: &str,
) -> anyhow::Result<Phase> {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let tool = Tool(
        Command::new(binary)
            .args([
                "--nats-url",
                &nats.url(),
                "--listen",
                &listen,
                "--allow-private",
                "--chain",
                "regtest",
                "--concurrency",
                &CONCURRENCY.to_string(),
                "--max-checks-per-minute",
                per_minute,
                "--handshake-timeout",
                "1s",
                "--queue-size",
                "100000",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://{listen}");
    let publisher = client(nats).await;
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut subscription = publisher.subscribe("nodescope.*.connectivity").await?;
    publisher.flush().await?;
    let collected = results.clone();
    let collector = tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            if let Ok(Event {
                payload: Some(Payload::ConnectivityCheck(check)),
                ..
            }) = Event::decode(message.payload)
            {
                collected.lock().unwrap().push(check);
            }
        }
    });
    // Ready: healthy and hearing (a skipped port-0 probe from node "probe" shows).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut probes = EventSource::new("probe", 1);
    loop {
        if http_get_ok(&format!("{base}/healthz")).await {
            publish(
                &publisher,
                &announcement(
                    &mut probes,
                    vec![address(std::net::SocketAddr::from(([1, 2, 3, 4], 0)))],
                ),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if http_get(&format!("{base}/metrics"))
                .await
                .1
                .contains(r#"node="probe""#)
            {
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::ensure!(Instant::now() < deadline, "the tool did not get ready");
    }

    let addrs = fakes.addrs();
    let mut order: Vec<usize> = range
        .clone()
        .flat_map(|i| std::iter::repeat_n(i - range.start, repeats))
        .collect();
    shuffle(&mut order);
    let mut source = EventSource::new("bench", 1);
    let start = Instant::now();
    for chunk in order.chunks(10) {
        let list = chunk.iter().map(|&i| address(addrs[i])).collect();
        publish(&publisher, &announcement(&mut source, list)).await;
    }
    let distinct = range.len();
    let deadline = Instant::now() + Duration::from_secs(600);
    while results.lock().unwrap().len() < distinct {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {distinct} results after 600 s",
            results.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed();
    let (rss_kib, cpu_s) = (peak_rss_kib(tool.0.id()), cpu_seconds(tool.0.id()));
    let scrape = http_get(&format!("{base}/metrics")).await.1;
    let sum = |prefix: &str| -> f64 {
        scrape
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(r#"node="bench""#))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .fold(0.0, |total, v| total + v)
    };
    let repeats_answered =
        sum("nodescope_connectivity_cached_total") + sum("nodescope_connectivity_duplicates_total");
    let dropped = sum("nodescope_connectivity_dropped_queue_full_total");
    drop(tool);
    collector.abort();

    let checks = results.lock().unwrap().clone();
    let mut classes: HashMap<&'static str, usize> = HashMap::new();
    let mut handshakes: Vec<u64> = Vec::new();
    for check in &checks {
        let class = ConnectivityResult::try_from(check.result)
            .unwrap_or_default()
            .label();
        *classes.entry(class).or_default() += 1;
        if check.result == ConnectivityResult::Reachable as i32 {
            handshakes.push(check.handshake_ns);
        }
    }
    handshakes.sort_unstable();
    let quantile = |q: f64| {
        handshakes
            .get(((handshakes.len() as f64 * q) as usize).min(handshakes.len().saturating_sub(1)))
            .map_or(0.0, |ns| *ns as f64 / 1e6)
    };
    let mut classes: Vec<_> = classes.into_iter().collect();
    classes.sort();
    Ok(Phase {
        elapsed,
        checks: checks.len(),
        classes: classes
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
        repeats: repeats_answered,
        dropped,
        max_open: fakes.tally().max_open(),
        rss_kib,
        cpu_s,
    })
}

/// The tool's process, killed when dropped.
struct Tool(Child);

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn http_get_ok(url: &str) -> bool {
    let Some(host) = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
    else {
        return false;
    };
    if tokio::net::TcpStream::connect(host).await.is_err() {
        return false;
    }
    http_get(url).await.0 == 200
}

fn announcement(source: &mut EventSource, addresses: Vec<NetAddress>) -> Event {
    let mut event = source.stamp(Payload::InboundMessage(NetMessage {
        peer: Some(Peer {
            id: 1,
            addr: "203.0.113.1:8333".into(),
            conn_type: ConnectionType::Inbound as i32,
            conn_type_other: String::new(),
        }),
        message: Some(P2pMessage {
            msg_type: "addrv2".into(),
            body: Some(Body::Addrv2(P2pAddr { addresses })),
            ..P2pMessage::default()
        }),
    }));
    event.chain = "regtest".into();
    event
}

fn address(addr: std::net::SocketAddr) -> NetAddress {
    NetAddress {
        time: 1_700_000_000,
        services: 1033,
        network: AddrNetwork::Ipv4 as i32,
        network_id: 1,
        address: addr.ip().to_string(),
        port: u32::from(addr.port()),
        ..NetAddress::default()
    }
}

/// A deterministic shuffle (xorshift): the same order every run.
fn shuffle(items: &mut [usize]) {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}
