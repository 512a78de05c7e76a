//! nodescope's fleet view: follows every node on the bus and derives what no single node can
//! say — when each node first saw a block or a (sampled) transaction and how far behind the
//! last one was, reorgs (with a hint of selfish mining), and how the nodes' tips and mempools
//! differ. It publishes what it derives as `fleet` events through the shared envelope and
//! publisher, and serves Prometheus families with bounded labels.

pub mod chain;
pub mod fleet;
pub mod mempool;
pub mod metrics;
pub mod sighting;
pub mod table;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodescope_consumer::{exposition, http, Consumer, ConsumerArgs, Continuity, Item};
use nodescope_proto::event::Payload;
use nodescope_proto::{subjects, Category, ExtractorKind};
use nodescope_publish::{new_run_id, Envelope, Publisher};
use prost::Message;
use tokio::net::TcpListener;

use crate::chain::SelfishRule;
use crate::fleet::{Config, Fleet};
use crate::metrics::{Metrics, ReasonLabels};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "fleet",
    about = "When each node saw each block and transaction, reorgs, and how the nodes' tips and mempools differ"
)]
pub struct Args {
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Address to serve /metrics and /healthz on.
    #[arg(long, env = "NODESCOPE_FLEET_LISTEN", default_value = "127.0.0.1:9383")]
    pub listen: SocketAddr,
    /// The node id of the fleet's own events: they go to <prefix>.<fleet id>.fleet.
    #[arg(long, env = "NODESCOPE_FLEET_ID", default_value = "fleet")]
    pub fleet_id: String,
    /// Nodes followed at most (up to 64); events of further nodes are counted, not followed.
    #[arg(long, env = "NODESCOPE_FLEET_MAX_NODES", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_nodes: u16,
    /// A node that sent nothing (not even its extractor's stats) for this long is no longer
    /// part of the fleet: items are not awaited from it.
    #[arg(long, env = "NODESCOPE_FLEET_NODE_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub node_timeout: Duration,
    /// A block's propagation event is published when every node has seen (and, where it is
    /// traced, connected) it, or this long after its first sighting.
    #[arg(long, env = "NODESCOPE_FLEET_BLOCK_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub block_timeout: Duration,
    /// Likewise for a sampled transaction.
    #[arg(long, env = "NODESCOPE_FLEET_TX_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub tx_timeout: Duration,
    /// The share of transactions followed (0 to 1), chosen by id so every node's sightings of
    /// one transaction are followed together.
    #[arg(long, env = "NODESCOPE_FLEET_TX_SAMPLE", default_value_t = 0.01, value_parser = parse_share)]
    pub tx_sample: f64,
    /// Blocks awaiting their event at most (the least recently sighted goes unpublished, counted).
    #[arg(long, env = "NODESCOPE_FLEET_MAX_BLOCKS", default_value_t = 1_000)]
    pub max_blocks: usize,
    /// Sampled transactions awaiting their event at most (the least recently sighted goes unpublished, counted).
    #[arg(long, env = "NODESCOPE_FLEET_MAX_TXS", default_value_t = 100_000)]
    pub max_txs: usize,
    /// Mempool transactions tracked for divergence at most, all nodes together.
    #[arg(
        long,
        env = "NODESCOPE_FLEET_MEMPOOL_CAPACITY",
        default_value_t = 1_000_000
    )]
    pub mempool_capacity: usize,
    /// A reorg is reported once its new branch got no further block for this long.
    #[arg(long, env = "NODESCOPE_FLEET_REORG_SETTLE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub reorg_settle: Duration,
    /// A reorg is flagged as possible selfish mining when at least this many blocks of its new
    /// branch came from one peer...
    #[arg(long, env = "NODESCOPE_FLEET_SELFISH_BLOCKS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..))]
    pub selfish_blocks: u32,
    /// ...within this time of each other.
    #[arg(long, env = "NODESCOPE_FLEET_SELFISH_WINDOW", default_value = "30s", value_parser = humantime::parse_duration)]
    pub selfish_window: Duration,
    /// How often the fleet's tips and mempool divergence are published (fleet_state).
    #[arg(long, env = "NODESCOPE_FLEET_STATE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub state_interval: Duration,
    /// Memory for fleet events waiting for NATS, MiB (the oldest are dropped, counted).
    #[arg(long, env = "NODESCOPE_FLEET_NATS_BUFFER_MIB", default_value_t = 16)]
    pub nats_buffer_mib: usize,
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!(
            "{text:?} is not a share between 0 and 1 (e.g. 0.01 for one transaction in a hundred)"
        )),
    }
}

impl Args {
    fn config(&self) -> Config {
        Config {
            max_nodes: self.max_nodes.into(),
            node_timeout: self.node_timeout,
            block_timeout: self.block_timeout,
            tx_timeout: self.tx_timeout,
            max_blocks: self.max_blocks,
            max_txs: self.max_txs,
            tx_sample: self.tx_sample,
            mempool_capacity: self.mempool_capacity,
            reorg_settle: self.reorg_settle,
            selfish: SelfishRule {
                min_blocks: self.selfish_blocks,
                window: self.selfish_window,
            },
        }
    }
}

/// Follows the fleet until `shutdown` resolves.
pub async fn run(args: Args, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Listen first: a taken port is the likeliest mistake, and it should fail at once.
    let listener = http::bind(args.listen, "--listen or NODESCOPE_FLEET_LISTEN").await?;
    serve(listener, args, shutdown).await
}

/// [`run`] on a listener bound already (`args.listen` is not used): for tests and benchmarks.
pub async fn serve(
    listener: TcpListener,
    args: Args,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    subjects::check_node_id(&args.fleet_id)
        .map_err(|error| anyhow::anyhow!("--fleet-id {:?}: {error}", args.fleet_id))?;
    let (metrics, registry) = Metrics::new();
    let registry = Arc::new(registry);
    // Every category but the fleet's own.
    let categories: Vec<Category> = Category::ALL
        .iter()
        .copied()
        .filter(|&c| c != Category::Fleet)
        .collect();
    let mut consumer = Consumer::subscribe(&args.consumer, "fleet", &categories).await?;
    let health = consumer.health();
    let connection = args.consumer.nats.connect("fleet-publisher").await?;
    let publisher = Publisher::start(connection, args.nats_buffer_mib.max(1) * 1024 * 1024);
    let mut envelope = Envelope::new(
        &args.consumer.nats.subject_prefix,
        &args.fleet_id,
        "",
        ExtractorKind::Fleet,
        new_run_id(),
    )?;
    let served_registry = registry.clone();
    let served_health = health.clone();
    let url = format!("http://{}/metrics", listener.local_addr()?);
    let _server = http::spawn(listener, move |request| {
        let response =
            exposition::metrics_and_health(&request, Some(&served_registry), &served_health);
        async move { response }
    });
    tracing::info!(%url, fleet_id = %args.fleet_id, tx_sample = args.tx_sample, "following the fleet");

    let mut fleet = Fleet::new(args.config(), metrics);
    let mut publish = |fleet: &Fleet, payloads: Vec<Payload>| {
        let events = payloads.into_iter().map(|payload| {
            let (subject, event) = envelope.wrap(std::process::id(), now_ns(), payload);
            (subject, event.encode_to_vec().into())
        });
        publisher.send(events.collect::<Vec<_>>());
        let stats = publisher.stats();
        let m = &fleet.metrics;
        catch_up(&m.published, stats.published);
        for (reason, total) in [
            ("queue_full", stats.dropped_queue_full),
            ("too_large", stats.dropped_too_large),
        ] {
            catch_up(
                &m.publish_dropped.get_or_create(&ReasonLabels { reason }),
                total,
            );
        }
        m.nats_connected.set(health.receiving().into());
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut state = tokio::time::interval(args.state_interval.max(Duration::from_secs(1)));
    state.tick().await;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            item = consumer.next() => {
                let Some(item) = item else {
                    anyhow::bail!("the NATS connection closed for good");
                };
                let payloads = match item {
                    Item::Event(received) => {
                        if let Continuity::Gap { missed } | Continuity::Restart { missed } = received.continuity {
                            if missed > 0 {
                                fleet.missed(&received.event.node_id, missed);
                            }
                        }
                        fleet.observe(&received.event, received.category, Instant::now())
                    }
                    Item::Replayed(_) => Vec::new(),
                    Item::Undecodable(_) => {
                        fleet.metrics.undecodable.inc();
                        Vec::new()
                    }
                };
                if !payloads.is_empty() {
                    publish(&fleet, payloads);
                }
            }
            _ = tick.tick() => {
                let payloads = fleet.tick(Instant::now());
                publish(&fleet, payloads);
            }
            _ = state.tick() => {
                let payload = Payload::FleetState(fleet.state());
                publish(&fleet, vec![payload]);
            }
        }
    }
    let stats = publisher.close(Duration::from_secs(2)).await;
    tracing::info!(
        published = stats.published,
        undelivered = stats.queued,
        dropped = stats.dropped_queue_full + stats.dropped_too_large,
        "stopped"
    );
    Ok(())
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A counter kept elsewhere as a total: the exported one catches up with it.
pub(crate) fn catch_up(counter: &prometheus_client::metrics::counter::Counter, total: u64) {
    let exported = counter.get();
    if total > exported {
        counter.inc_by(total - exported);
    }
}
