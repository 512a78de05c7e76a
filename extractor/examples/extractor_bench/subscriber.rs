//! The subscriber: counts every `net.message` event's unique sequence number and its latency
//! from the probe to here, and keeps the extractor's latest stats.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use nodescope_proto::event::Payload;
use nodescope_proto::ExtractorStats;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot, watch};

use crate::NODE;

/// The envelope fields the subscriber needs; prost skips the rest (the payload) unread.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Envelope {
    #[prost(uint64, tag = "4")]
    pub(super) sequence: u64,
    #[prost(uint64, tag = "5")]
    pub(super) run_id: u64,
    #[prost(uint64, tag = "6")]
    timestamp_ns: u64,
    #[prost(string, repeated, tag = "7")]
    truncated_fields: Vec<String>,
}

/// What reached the subscriber since the previous [`Subscriber::take`].
#[derive(Debug, Default)]
pub(super) struct Received {
    pub(super) delivered: u64,
    pub(super) duplicates: u64,
    pub(super) truncated: u64,
    pub(super) latencies_us: Vec<u32>,
    pub(super) first: Option<Instant>,
    pub(super) last: Option<Instant>,
}

pub(super) struct Subscriber {
    /// Unique net.message events received since the start (sequence numbers per extractor run).
    unique: Arc<AtomicU64>,
    take: mpsc::Sender<oneshot::Sender<Received>>,
    /// The latest extractor stats: when received, the extractor's pid, the stats.
    stats: watch::Receiver<Option<(Instant, u32, ExtractorStats)>>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

impl Subscriber {
    pub(super) async fn start(url: &str) -> Result<Subscriber> {
        let client = async_nats::ConnectOptions::new()
            .subscription_capacity(1 << 22)
            .connect(url)
            .await
            .context("connecting the subscriber")?;
        let mut events = client
            .subscribe(format!("nodescope.{NODE}.net.message"))
            .await?;
        let mut stats_sub = client
            .subscribe(format!("nodescope.{NODE}.extractor"))
            .await?;
        client.flush().await?;
        let unique = Arc::new(AtomicU64::new(0));
        let (take, mut takes) = mpsc::channel::<oneshot::Sender<Received>>(4);
        let (stats_tx, stats) = watch::channel(None);
        let counter = unique.clone();
        tokio::spawn(async move {
            let _client = client;
            let mut run_id = None;
            let mut seen: Vec<u64> = Vec::new();
            let mut received = Received::default();
            loop {
                tokio::select! {
                    Some(message) = events.next() => {
                        let now = Instant::now();
                        let wall = now_ns();
                        let Ok(event) = Envelope::decode(message.payload) else { continue };
                        if run_id != Some(event.run_id) {
                            run_id = Some(event.run_id);
                            seen.clear();
                        }
                        let (word, bit) = ((event.sequence / 64) as usize, event.sequence % 64);
                        if seen.len() <= word {
                            seen.resize((word + 1).max(seen.len() * 2), 0);
                        }
                        if seen[word] & (1 << bit) != 0 {
                            received.duplicates += 1;
                            continue;
                        }
                        seen[word] |= 1 << bit;
                        received.delivered += 1;
                        received.truncated += !event.truncated_fields.is_empty() as u64;
                        let latency_us = wall.saturating_sub(event.timestamp_ns) / 1000;
                        received.latencies_us.push(latency_us.min(u32::MAX as u64) as u32);
                        received.first.get_or_insert(now);
                        received.last = Some(now);
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(message) = stats_sub.next() => {
                        if let Ok(event) = nodescope_proto::Event::decode(message.payload) {
                            if let Some(Payload::ExtractorStats(s)) = event.payload {
                                stats_tx.send_replace(Some((Instant::now(), event.pid, s)));
                            }
                        }
                    }
                    reply = takes.recv() => match reply {
                        Some(reply) => { let _ = reply.send(std::mem::take(&mut received)); }
                        None => break,
                    },
                }
            }
        });
        Ok(Subscriber {
            unique,
            take,
            stats,
        })
    }

    pub(super) fn unique(&self) -> u64 {
        self.unique.load(Ordering::Relaxed)
    }

    pub(super) async fn take(&self) -> Received {
        let (reply, answer) = oneshot::channel();
        self.take.send(reply).await.expect("subscriber task runs");
        answer.await.expect("subscriber task answers")
    }

    /// The first stats of extractor `pid` received after `after` (or any time, with `None`);
    /// they come every second.
    pub(super) async fn stats_after(
        &mut self,
        pid: u32,
        after: Option<Instant>,
    ) -> Option<ExtractorStats> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some((at, from, stats)) = self.stats.borrow_and_update().as_ref() {
                if *from == pid && after.is_none_or(|after| *at > after) {
                    return Some(stats.clone());
                }
            }
            match tokio::time::timeout_at(deadline, self.stats.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// The stats of extractor `pid` once they count `target` events read, or the last ones
    /// when the count stopped growing for 3 s.
    pub(super) async fn settle_read(&mut self, pid: u32, target: u64) -> Option<ExtractorStats> {
        let mut last: Option<ExtractorStats> = None;
        let mut last_change = Instant::now();
        while last_change.elapsed() < Duration::from_secs(3) {
            let stats = self.stats_after(pid, Some(Instant::now())).await?;
            if stats.events_read >= target {
                return Some(stats);
            }
            if last
                .as_ref()
                .is_none_or(|l| l.events_read != stats.events_read)
            {
                last_change = Instant::now();
            }
            last = Some(stats);
        }
        last
    }

    /// Waits until `target` unique events have arrived, or nothing arrived for `quiet`.
    pub(super) async fn settle(&self, target: u64, quiet: Duration) {
        let mut last = self.unique();
        let mut last_change = Instant::now();
        while last < target && last_change.elapsed() < quiet {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = self.unique();
            if now != last {
                last = now;
                last_change = Instant::now();
            }
        }
    }
}
