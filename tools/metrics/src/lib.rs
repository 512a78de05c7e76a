//! nodescope's Prometheus exporter: subscribes to every category of the chosen nodes, turns each
//! event into counter, gauge and histogram updates (every series labelled with its `node`, every
//! other label from a closed set) and serves them on `/metrics`; `/healthz` tells whether NATS
//! is connected. The README's "Metrics" section lists every family.

pub mod blocks;
pub mod coin_selection;
pub mod connections;
pub mod decoding;
pub mod labels;
pub mod mempool;
pub mod metrics;
pub mod net_messages;
pub mod peer;
pub mod recorder;
pub mod rpc;
pub mod series_slots;
pub mod stats;
pub mod supply;
pub mod tracked_peers;
pub mod user_agents;
pub mod utxo_cache;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use nodescope_consumer::{exposition, http, Consumer, ConsumerArgs};
use tokio::net::TcpListener;

pub use decoding::decode_event;
pub use labels::FlushModes;
pub use metrics::Metrics;
pub use recorder::{Config, Recorder};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "metrics",
    about = "nodescope's Prometheus exporter: /metrics and /healthz"
)]
pub struct Args {
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Address to serve /metrics and /healthz on.
    #[arg(
        long,
        env = "NODESCOPE_METRICS_LISTEN",
        default_value = "127.0.0.1:8282"
    )]
    pub listen: SocketAddr,
    /// User agents (from version messages) with their own series per node; the rest count as
    /// "other".
    #[arg(long, env = "NODESCOPE_METRICS_USER_AGENTS", default_value_t = 20)]
    pub user_agents: usize,
    /// Nodes with their own series; events of further nodes count under node="other".
    #[arg(long, env = "NODESCOPE_METRICS_MAX_NODES", default_value_t = 64)]
    pub max_nodes: usize,
    /// Which Bitcoin Core numbering names the UTXO cache flush modes (v31 renumbered them).
    #[arg(
        long,
        env = "NODESCOPE_METRICS_FLUSH_MODES",
        value_enum,
        default_value = "v30"
    )]
    pub flush_modes: FlushModes,
}

impl Args {
    pub fn config(&self) -> Config {
        Config {
            user_agents: self.user_agents,
            max_nodes: self.max_nodes,
            flush_modes: self.flush_modes,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Listen(#[from] nodescope_consumer::http::BindError),
    #[error(transparent)]
    Consumer(#[from] nodescope_consumer::ConsumerError),
    #[error("the NATS connection closed for good")]
    NatsClosed,
}

/// Serves the metrics until `shutdown` resolves.
pub async fn run(args: Args, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Listen first: a taken port is the likeliest mistake, and it should fail at once.
    let listener = http::bind(args.listen, "--listen or NODESCOPE_METRICS_LISTEN")
        .await
        .map_err(MetricsError::from)?;
    serve(listener, args, shutdown).await
}

/// [`run`] on a listener bound already (`args.listen` is not used): for tests and benchmarks,
/// which bind port 0 rather than race for a free port.
pub async fn serve(
    listener: TcpListener,
    args: Args,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (metrics, registry) = Metrics::new();
    let mut consumer = Consumer::subscribe(&args.consumer, "metrics", &[])
        .await
        .map_err(MetricsError::from)?
        .with_decoder(decode_event);
    let url = format!("http://{}/metrics", listener.local_addr()?);
    let registry = Arc::new(registry);
    let health = consumer.health();
    let _server = http::spawn(listener, move |request| {
        let response = exposition::metrics_and_health(&request, Some(&registry), &health);
        async move { response }
    });
    tracing::info!(%url, "serving metrics");

    let mut recorder = Recorder::new(metrics, args.config());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            item = consumer.next() => match item {
                Some(item) => recorder.record(&item),
                None => return Err(MetricsError::NatsClosed.into()),
            },
        }
    }
}
