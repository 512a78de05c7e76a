//! What every nodescope tool shares on the consuming side: the common flags (NATS connection,
//! authentication, TLS, which nodes), subscribing to the subjects a tool needs, decoding events
//! (a message that is not an event is logged, counted by the tool and skipped — never fatal),
//! and gap, restart and replay detection per node × extractor × category. A tool is
//! `run(args, shutdown)`: it loops over [`Consumer::next`] until its shutdown future resolves.

pub mod exposition;
pub mod http;
pub mod sequence;
#[cfg(feature = "test-support")]
pub mod testing;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{SelectAll, StreamExt};
use nodescope_bus::{Link, NatsArgs, RoundTrip};
use nodescope_proto::{subjects, Category, Event, ExtractorKind};
use prost::Message;

pub use nodescope_bus::process::{init_logging, shutdown_signal};
pub use sequence::Continuity;
use sequence::SequenceTracker;

#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Node ids to follow, comma-separated (default: every node on the bus).
    #[arg(long, env = "NODESCOPE_NODES", value_delimiter = ',')]
    pub nodes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Bus(#[from] nodescope_bus::BusError),
    #[error(transparent)]
    Subject(#[from] subjects::SubjectError),
    #[error("cannot subscribe to {subject}: {error}")]
    Subscribe { subject: String, error: String },
}

/// One stream of numbered events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub node: String,
    pub extractor: ExtractorKind,
    pub category: Category,
}

/// A new event, with how it follows the previous one of its stream.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: Event,
    pub category: Category,
    pub continuity: Continuity,
}

impl Received {
    /// The extractor kind, as a name for labels and log lines (`ebpf`, `rpc`, `p2p`).
    pub fn extractor_name(&self) -> &'static str {
        extractor_name(self.event.extractor)
    }
}

pub fn extractor_name(kind: i32) -> &'static str {
    match ExtractorKind::try_from(kind) {
        Ok(ExtractorKind::Ebpf) => "ebpf",
        Ok(ExtractorKind::Rpc) => "rpc",
        Ok(ExtractorKind::P2p) => "p2p",
        Ok(ExtractorKind::ConnectivityCheck) => "connectivity_check",
        Ok(ExtractorKind::Fleet) => "fleet",
        _ => "unknown",
    }
}

/// A message on one of our subjects that is not a nodescope event.
#[derive(Debug, Clone)]
pub struct Undecodable {
    /// The node its subject names, when the subject is one of ours.
    pub node: Option<String>,
    pub subject: String,
    pub error: String,
}

#[derive(Debug, Clone)]
pub enum Item {
    Event(Box<Received>),
    /// An event already delivered (replayed by its extractor after a NATS reconnect): skipped.
    Replayed(Stream),
    Undecodable(Undecodable),
}

pub struct Consumer {
    health: Health,
    /// Confirms the subscriptions after every (re)connection; stopped with the consumer.
    confirming: tokio::task::JoinHandle<()>,
    messages: SelectAll<async_nats::Subscriber>,
    prefix: String,
    sequences: SequenceTracker,
    gap_log: Throttle,
    undecodable_log: Throttle,
    replay_log: Throttle,
    decode: Decoder,
}

/// Decodes one message's bytes into an event: `Event::decode` by default, or a tool's own that
/// leaves out the fields it never reads ([`Consumer::with_decoder`]).
pub type Decoder = fn(&[u8]) -> Result<Event, prost::DecodeError>;

impl Consumer {
    /// Connects (in the background: no NATS yet is not an error, the client keeps retrying and
    /// says so) and subscribes to `categories` (all when empty) of the chosen nodes.
    pub async fn subscribe(
        args: &ConsumerArgs,
        client_name: &str,
        categories: &[Category],
    ) -> Result<Consumer, ConsumerError> {
        let filters = subjects::filters(&args.nats.subject_prefix, &args.nodes, categories)?;
        let connection = args.nats.connect(client_name).await?;
        let mut messages = SelectAll::new();
        for filter in &filters {
            let subscriber =
                connection
                    .client
                    .subscribe(filter.clone())
                    .await
                    .map_err(|error| ConsumerError::Subscribe {
                        subject: filter.clone(),
                        error: error.to_string(),
                    })?;
            messages.push(subscriber);
        }
        let health = Health {
            client: connection.client.clone(),
            link: connection.watch_link(),
            confirmed_connect: Arc::default(),
        };
        let confirming = tokio::spawn(confirm_subscriptions(
            connection,
            health.confirmed_connect.clone(),
        ));
        // When NATS is up, be subscribed on return; when it is not, don't wait for it.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !health.receiving() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::info!(subjects = %filters.join(" "), "subscribed");
        Ok(Consumer {
            health,
            confirming,
            messages,
            prefix: args.nats.subject_prefix.clone(),
            sequences: SequenceTracker::default(),
            gap_log: Throttle::default(),
            undecodable_log: Throttle::default(),
            replay_log: Throttle::default(),
            decode: |bytes| Event::decode(bytes),
        })
    }

    /// Decodes with `decode` instead of `Event::decode`: for a tool that reads only some fields
    /// and can skip the rest of each event.
    pub fn with_decoder(mut self, decode: Decoder) -> Consumer {
        self.decode = decode;
        self
    }

    /// A handle that tells whether events are coming in (for health checks), usable while the
    /// consumer is borrowed by its loop.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// The next message, decoded; `None` once the connection is closed for good.
    pub async fn next(&mut self) -> Option<Item> {
        let message = self.messages.next().await?;
        Some(self.classify(&message.subject, message.payload))
    }

    fn classify(&mut self, subject: &str, payload: bytes::Bytes) -> Item {
        let ours = subjects::parse(&self.prefix, subject);
        let event = match (self.decode)(&payload) {
            Ok(event) => event,
            Err(error) => return self.undecodable(subject, ours, error.to_string()),
        };
        let Some(category) = event.category().or(ours.map(|(_, c)| c)) else {
            return self.undecodable(subject, ours, "an event without a payload".to_string());
        };
        if event.node_id.is_empty() {
            return self.undecodable(subject, ours, "an event without a node id".to_string());
        }
        let continuity = self.sequences.observe(
            &event.node_id,
            event.extractor,
            category,
            event.run_id,
            event.sequence,
        );
        let extractor = extractor_name(event.extractor);
        match continuity {
            Continuity::Gap { missed } => self.gap_log.log(|suppressed| {
                tracing::warn!(node = %event.node_id, extractor, %category, missed, sequence = event.sequence,
                    suppressed, "events missing: sequence numbers skipped (lost on the way or dropped by NATS as a slow consumer)")
            }),
            Continuity::Restart { missed } => tracing::info!(
                node = %event.node_id, extractor, run_id = event.run_id, %category, missed,
                "the extractor restarted (new run id)"
            ),
            Continuity::Replayed => {
                self.replay_log.log(|suppressed| {
                    tracing::info!(node = %event.node_id, extractor, %category, sequence = event.sequence,
                        suppressed, "skipping events already received (replayed after a NATS reconnect)")
                });
                return Item::Replayed(Stream {
                    node: event.node_id,
                    extractor: ExtractorKind::try_from(event.extractor).unwrap_or_default(),
                    category,
                });
            }
            Continuity::First | Continuity::Next => {}
        }
        Item::Event(Box::new(Received {
            event,
            category,
            continuity,
        }))
    }

    fn undecodable(
        &mut self,
        subject: &str,
        ours: Option<(&str, Category)>,
        error: String,
    ) -> Item {
        self.undecodable_log.log(|suppressed| {
            tracing::warn!(%subject, %error, suppressed, "skipping a message that is not a nodescope event")
        });
        Item::Undecodable(Undecodable {
            node: ours.map(|(node, _)| node.to_string()),
            subject: subject.to_string(),
            error,
        })
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.confirming.abort();
    }
}

#[derive(Clone)]
pub struct Health {
    client: async_nats::Client,
    link: tokio::sync::watch::Receiver<Link>,
    /// The connection (by that count) on which the server last confirmed our subscriptions.
    confirmed_connect: Arc<AtomicU64>,
}

impl Health {
    /// Connected to NATS, and the server has confirmed our subscriptions on this connection:
    /// from now on nothing published is missed. Until then a tool is not ready (503).
    pub fn receiving(&self) -> bool {
        let link = *self.link.borrow();
        link.up
            && link.connects == self.confirmed_connect.load(Ordering::Acquire)
            && self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// After every (re)connection, proves the server has our subscriptions with a round trip.
async fn confirm_subscriptions(connection: nodescope_bus::Connection, confirmed: Arc<AtomicU64>) {
    let client = &connection.client;
    let Ok(mut round_trip) = RoundTrip::new(client).await else {
        return; // the client is closed for good
    };
    let mut link = connection.watch_link();
    loop {
        let Link { connects, up, .. } = *link.borrow_and_update();
        if up {
            if !round_trip.complete(client, Duration::from_secs(5)).await {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            confirmed.store(connects, Ordering::Release);
        }
        if link.changed().await.is_err() {
            return;
        }
    }
}

/// At most one log line per kind every 10 s, saying how many were left out in between: a storm
/// of bad messages must not become a storm of log lines.
#[derive(Debug, Default)]
struct Throttle {
    next_at: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    const INTERVAL: Duration = Duration::from_secs(10);

    fn log(&mut self, line: impl FnOnce(u64)) {
        let now = Instant::now();
        if self.next_at.is_some_and(|at| now < at) {
            self.suppressed += 1;
            return;
        }
        line(std::mem::take(&mut self.suppressed));
        self.next_at = Some(now + Self::INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_logs_once_per_interval_and_counts_the_rest() {
        let mut throttle = Throttle::default();
        let mut lines = Vec::new();
        for _ in 0..5 {
            throttle.log(|suppressed| lines.push(suppressed));
        }
        assert_eq!(lines, [0]);
        assert_eq!(throttle.suppressed, 4);
        throttle.next_at = Some(Instant::now());
        throttle.log(|suppressed| lines.push(suppressed));
        assert_eq!(lines, [0, 4]);
    }
}
