//! nodescope's connectivity check: takes the addresses peers announce to the node (`addr`,
//! `addrv2`) and finds out which are reachable Bitcoin nodes, per network — IPv4 and IPv6
//! directly, Tor and I2P through their SOCKS5 proxies, CJDNS where the host routes it — with a
//! v1 handshake in the magic of the node's chain. Politely: bounded concurrency, a global rate,
//! one check per address per TTL, a bounded queue, and never a private address unless allowed.
//! Results are Prometheus metrics (bounded labels), `connectivity` events on the bus, and
//! optionally CSV rows.

mod checker;
#[cfg(feature = "test-support")]
pub mod fake;
pub mod intake;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod schedule;
pub mod target;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nodescope_consumer::{exposition, http, ConsumerArgs};
use tokio::net::TcpListener;

pub use checker::CheckerError;

/// `/nodescope-connectivity-check:<version>/`: what the peers we check see.
pub const USER_AGENT: &str = concat!(
    "/nodescope-connectivity-check:",
    env!("CARGO_PKG_VERSION"),
    "/"
);

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "connectivity-check",
    about = "Checks whether the addresses peers announce to the node are reachable Bitcoin nodes, on every network"
)]
pub struct Args {
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Address to serve /metrics and /healthz on.
    #[arg(
        long,
        env = "NODESCOPE_CONNECTIVITY_LISTEN",
        default_value = "127.0.0.1:18282"
    )]
    pub listen: SocketAddr,
    /// The chain whose network magic the handshake uses when an event does not name its node's
    /// chain: main, test, testnet4, signet or regtest.
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_CHAIN", default_value = "main", value_parser = parse_chain)]
    pub chain: String,
    /// SOCKS5 proxy for Tor v3 (.onion) addresses, e.g. 127.0.0.1:9050; without it they count
    /// as unreachable_network.
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_TOR_PROXY")]
    pub tor_proxy: Option<SocketAddr>,
    /// SOCKS5 proxy for I2P (.b32.i2p) addresses, as i2pd offers it (e.g. 127.0.0.1:4447);
    /// without it they count as unreachable_network.
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_I2P_PROXY")]
    pub i2p_proxy: Option<SocketAddr>,
    /// Checks under way at once.
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Most checks started in any minute (starts are spaced evenly).
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_MAX_CHECKS_PER_MINUTE", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_checks_per_minute: u32,
    /// How long a result stands: an address announced again within it counts as cached.
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_RECHECK_AFTER", default_value = "1h", value_parser = humantime::parse_duration)]
    pub recheck_after: Duration,
    /// Addresses waiting for a check at most; more are dropped and counted.
    #[arg(
        long,
        env = "NODESCOPE_CONNECTIVITY_QUEUE_SIZE",
        default_value_t = 10_000
    )]
    pub queue_size: usize,
    /// Results remembered at most (the oldest go first, counted).
    #[arg(
        long,
        env = "NODESCOPE_CONNECTIVITY_CACHE_SIZE",
        default_value_t = 200_000
    )]
    pub cache_size: usize,
    /// Also dial loopback, private, link-local, multicast, documentation and reserved
    /// addresses (a lab network).
    #[arg(
        long,
        env = "NODESCOPE_CONNECTIVITY_ALLOW_PRIVATE",
        default_value_t = false
    )]
    pub allow_private: bool,
    /// Skip ports below 1024 other than 8333 (peers announcing such ports may be pointing the
    /// network at someone's web or mail server).
    #[arg(
        long,
        env = "NODESCOPE_CONNECTIVITY_SKIP_LOW_PORTS",
        default_value_t = false
    )]
    pub skip_low_ports: bool,
    /// Also check the addresses of getaddr answers (up to 1,000 from the peer's address
    /// manager), not only what peers gossip.
    #[arg(
        long,
        env = "NODESCOPE_CONNECTIVITY_GETADDR_RESPONSES",
        default_value_t = false
    )]
    pub getaddr_responses: bool,
    /// After a reachable v1 handshake, also try a BIP324 v2 handshake and record whether the
    /// peer supports it.
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_TRY_V2", default_value_t = false)]
    pub try_v2: bool,
    /// Time allowed for a direct TCP connection.
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_CONNECT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Time allowed for a connection through a proxy (Tor circuits are slow).
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_PROXY_CONNECT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub proxy_connect_timeout: Duration,
    /// Time allowed from the connection to the peer's version (and again for its verack).
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,
    /// Also write one CSV row per result to this file (created or truncated).
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_CSV")]
    pub csv: Option<PathBuf>,
    /// Nodes with series of their own; further nodes count under node="other".
    #[arg(long, env = "NODESCOPE_CONNECTIVITY_MAX_NODES", default_value_t = 64)]
    pub max_nodes: usize,
    /// Memory for result events waiting for NATS, MiB (the oldest are dropped, counted).
    #[arg(
        long,
        env = "NODESCOPE_CONNECTIVITY_NATS_BUFFER_MIB",
        default_value_t = 16
    )]
    pub nats_buffer_mib: usize,
}

fn parse_chain(chain: &str) -> Result<String, String> {
    match nodescope_proto::p2p::wire::magic_of_chain(chain) {
        Some(_) => Ok(chain.to_string()),
        None => Err(format!(
            "unknown chain {chain:?}: use main, test, testnet4, signet or regtest"
        )),
    }
}

/// Checks until `shutdown` resolves.
pub async fn run(args: Args, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Listen first: a taken port is the likeliest mistake, and it should fail at once.
    let listener = http::bind(args.listen, "--listen or NODESCOPE_CONNECTIVITY_LISTEN").await?;
    serve(listener, args, shutdown).await
}

/// [`run`] on a listener bound already (`args.listen` is not used): for tests and benchmarks.
pub async fn serve(
    listener: TcpListener,
    args: Args,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (metrics, registry) = metrics::Metrics::new(args.max_nodes);
    let checker = checker::Checker::start(&args, metrics).await?;
    let registry = Arc::new(registry);
    let health = checker.health();
    let url = format!("http://{}/metrics", listener.local_addr()?);
    let _server = http::spawn(listener, move |request| {
        let response = exposition::metrics_and_health(&request, Some(&registry), &health);
        async move { response }
    });
    tracing::info!(%url, "serving metrics");
    checker.run(shutdown).await
}
