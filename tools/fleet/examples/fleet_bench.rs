//! `cargo xtask bench fleet`: the fleet tool (the release binary, a process of its own) follows
//! 10 simulated nodes on a private nats-server while this process publishes, as their eBPF
//! extractors would, inbound `inv` messages announcing 100,000 transactions a second in total:
//! every transaction reaches every node, node i about i ms after node 0, 10 wtxids per message.
//! It reports what the tool consumed per second, its CPU per event, its peak memory, and the
//! latency of a sampled transaction's propagation event: from the publication of the last
//! node's announcement to the event's arrival here.
//!
//! A measurement, not a test: nothing fails on a slow machine.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use nodescope_consumer::testing::{
    client, cpu_seconds, free_port, http_get, peak_rss_kib, publish, EventSource, NatsServer,
};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::*;
use prost::Message;

#[derive(Parser)]
struct Args {
    /// A shorter run (3 s instead of 10 s).
    #[arg(long)]
    quick: bool,
}

const NODES: usize = 10;
const ANNOUNCEMENTS_PER_SECOND: usize = 100_000;
const PER_INV: usize = 10;
const TX_SAMPLE: f64 = 0.01;

fn wtxid(n: u64) -> Vec<u8> {
    // Spread over the id space as real ids are, so the sample is the share asked for.
    let mut id = [0u8; 32];
    let spread = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    id[..8].copy_from_slice(&spread.to_be_bytes());
    id[8..16].copy_from_slice(&n.to_be_bytes());
    id.to_vec()
}

fn sampled(id: &[u8]) -> bool {
    let head = u64::from_be_bytes(id[..8].try_into().unwrap());
    head < (TX_SAMPLE * u64::MAX as f64) as u64
}

fn inv(node: usize, first: u64) -> Payload {
    Payload::InboundMessage(NetMessage {
        peer: Some(Peer {
            id: 1,
            addr: format!("203.0.113.{node}:8333"),
            conn_type: ConnectionType::OutboundFullRelay as i32,
            conn_type_other: String::new(),
        }),
        message: Some(P2pMessage {
            msg_type: "inv".into(),
            size: 1 + 36 * PER_INV as u64,
            body: Some(Body::Inv(P2pInventory {
                items: (first..first + PER_INV as u64)
                    .map(|n| InventoryItem {
                        r#type: InventoryType::WitnessTx as i32,
                        type_raw: 5,
                        hash: wtxid(n),
                    })
                    .collect(),
                count_by_type: [("wtx".to_string(), PER_INV as u32)].into(),
            })),
            ..P2pMessage::default()
        }),
    })
}

/// The tool's process, killed however the benchmark ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrape_value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seconds = if args.quick { 3 } else { 10 };
    let nats = NatsServer::start();
    let port = free_port();
    let binary = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|release| release.join("fleet"))
        .ok_or_else(|| anyhow::anyhow!("no target directory"))?;
    let fleet = Command::new(&binary)
        .args([
            "--nats-url",
            &nats.url(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tx-sample",
            &TX_SAMPLE.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "starting {} (cargo xtask bench fleet builds it): {e}",
                binary.display()
            )
        })?;
    let fleet = Killed(fleet);
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let ready = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
        || http_get(&format!("http://127.0.0.1:{port}/healthz"))
            .await
            .0
            != 200
    {
        anyhow::ensure!(
            Instant::now() < ready,
            "the fleet tool did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let publisher = client(&nats).await;
    let listener = client(&nats).await;
    let mut propagations = listener.subscribe("nodescope.fleet.fleet").await?;
    listener.flush().await?;
    // When the last node's announcement of each sampled transaction was published.
    let (last_sent_tx, mut last_sent_rx) =
        tokio::sync::mpsc::unbounded_channel::<(Vec<u8>, Instant)>();
    let (stop_receiving, mut stop) = tokio::sync::oneshot::channel::<()>();
    let receiving = tokio::spawn(async move {
        let mut sent: HashMap<Vec<u8>, Instant> = HashMap::new();
        let mut latencies = Vec::new();
        let mut complete = 0u64;
        let mut timed_out = 0u64;
        loop {
            let message = tokio::select! {
                message = propagations.next() => match message {
                    Some(message) => message,
                    None => break,
                },
                _ = &mut stop => break,
            };
            let arrived = Instant::now();
            while let Ok((id, at)) = last_sent_rx.try_recv() {
                sent.insert(id, at);
            }
            let Ok(event) = Event::decode(message.payload) else {
                continue;
            };
            let Some(Payload::TxPropagation(t)) = event.payload else {
                continue;
            };
            if t.missing.is_empty() {
                complete += 1;
            } else {
                timed_out += 1;
            }
            if let Some(at) = sent.remove(&t.wtxid) {
                latencies.push(arrived.duration_since(at).as_secs_f64() * 1e3);
            }
        }
        (latencies, complete, timed_out)
    });

    let scrape_before = http_get(&metrics).await.1;
    let cpu_before = cpu_seconds(fleet.0.id());
    let mut sources: Vec<EventSource> = (0..NODES)
        .map(|i| EventSource::new(&format!("bench-node-{i}"), 1))
        .collect();
    // Per 10 ms tick and node: 100 new ids (1,000 announcements a tick in all).
    let tick = Duration::from_millis(10);
    let txs_per_tick = ANNOUNCEMENTS_PER_SECOND / NODES / 100;
    let started = Instant::now();
    let mut sampled_sent = 0u64;
    let mut published = 0u64;
    // Node i announces what node 0 announced i ticks before (i × 10 ms later).
    let mut interval = tokio::time::interval(tick);
    let ticks = seconds * 100;
    for t in 0..ticks + NODES as u64 {
        interval.tick().await;
        // The last node is about to announce the ids of round t - (NODES - 1): the latency
        // counts from here (so it includes publishing this tick's messages).
        if let Some(round) = t.checked_sub(NODES as u64 - 1).filter(|&r| r < ticks) {
            let now = Instant::now();
            let first = round * txs_per_tick as u64;
            for n in first..first + txs_per_tick as u64 {
                let id = wtxid(n);
                if sampled(&id) {
                    sampled_sent += 1;
                    let _ = last_sent_tx.send((id, now));
                }
            }
        }
        for (node, source) in sources.iter_mut().enumerate() {
            let Some(round) = t.checked_sub(node as u64) else {
                continue;
            };
            if round >= ticks {
                continue;
            }
            let first = round * txs_per_tick as u64;
            for batch in (first..first + txs_per_tick as u64).step_by(PER_INV) {
                publish(&publisher, &source.stamp(inv(node, batch))).await;
                published += 1;
            }
        }
    }
    publisher.flush().await?;
    let wall = started.elapsed().as_secs_f64();
    // Wait until the tool consumed everything published.
    let expected = published as f64;
    let drain = Instant::now() + Duration::from_secs(60);
    let mut scrape_after;
    loop {
        scrape_after = http_get(&metrics).await.1;
        let consumed = scrape_value(&scrape_after, "nodescope_fleet_events_received_total")
            - scrape_value(&scrape_before, "nodescope_fleet_events_received_total");
        if consumed >= expected || Instant::now() > drain {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let consumed_wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(fleet.0.id()) - cpu_before;
    let consumed = scrape_value(&scrape_after, "nodescope_fleet_events_received_total")
        - scrape_value(&scrape_before, "nodescope_fleet_events_received_total");
    let missed = scrape_value(&scrape_after, "nodescope_fleet_events_missed_total");
    let evicted = scrape_value(&scrape_after, "nodescope_fleet_evicted_total");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = peak_rss_kib(fleet.0.id());
    drop(fleet);
    let _ = stop_receiving.send(());
    let (mut latencies, complete, timed_out) = receiving.await?;
    latencies.sort_by(f64::total_cmp);

    let announcements = consumed * PER_INV as f64;
    println!("fleet benchmark: {NODES} nodes, {ANNOUNCEMENTS_PER_SECOND} tx announcements/s in total ({PER_INV} per inv), {seconds} s, --tx-sample {TX_SAMPLE}");
    println!("| figure | value |");
    println!("|---|---|");
    println!("| inv events published | {published} in {wall:.1} s |");
    println!("| events consumed by the tool | {consumed:.0} ({:.0}/s, {:.0} announcements/s; all consumed {:.1} s after the start) |", consumed / wall, announcements / wall, consumed_wall);
    println!("| events missed (gaps) | {missed:.0} |");
    println!("| tool CPU | {cpu:.2} s ({:.1} us per event, {:.2} us per announcement; {:.0}% of a core) |", cpu * 1e6 / consumed.max(1.0), cpu * 1e6 / announcements.max(1.0), cpu * 100.0 / consumed_wall);
    println!("| tool peak RSS (VmHWM) | {:.1} MB |", rss as f64 / 1024.0);
    println!("| sampled transactions | {sampled_sent} sent, {} propagation events matched ({complete} complete, {timed_out} timed out), evicted {evicted:.0} |", latencies.len());
    println!("| propagation event latency (last announcement published -> event received) | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms |", percentile(&latencies, 0.5), percentile(&latencies, 0.99), latencies.last().copied().unwrap_or(f64::NAN));
    Ok(())
}
