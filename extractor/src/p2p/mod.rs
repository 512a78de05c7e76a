//! `extractor p2p`: nodescope as one of the node's own peers. The node dials our listener
//! (`-addnode=127.0.0.1:8555`) or we dial it (`--connect`); either way it sees a manual peer, and
//! what it tells a peer (and how quickly it answers) is published on `<prefix>.<node>.p2p`
//! through the same envelope and publisher as the other extractors.

mod session;
mod transport;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use nodescope_proto::event::Payload;
use nodescope_proto::p2p::{wire, DecodeOptions};
use nodescope_proto::{ExtractorKind, ExtractorStats, P2pVersion, PeerState};
use nodescope_publish::{host_name, new_run_id, Envelope, EventBuffer, Publisher};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use session::user_agent;
use session::{Link, Route, SessionConfig};
use transport::Connection;

#[derive(Debug, Args)]
pub struct P2pArgs {
    /// Addresses to listen on for the node(s) to dial (`-addnode=<this>`), comma-separated;
    /// `none` to only dial.
    #[arg(
        long,
        env = "NODESCOPE_P2P_LISTEN",
        default_value = "127.0.0.1:8555",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,
    /// Nodes to dial instead (`host:port`, comma-separated), again after they restart or drop us.
    #[arg(long, env = "NODESCOPE_P2P_CONNECT", value_delimiter = ',')]
    pub connect: Vec<String>,
    /// The chain (main, test, testnet4, signet, regtest): the network magic spoken.
    #[arg(long, env = "NODESCOPE_CHAIN", default_value = "main", value_parser = crate::rpc::parse_chain)]
    pub chain: String,
    /// Which node a connection is: `<match>=<node id>`, comma-separated. A match is the node's
    /// IP (`10.0.0.5`), the address it dialled or we dialled (`127.0.0.1:8555`), or
    /// `ua:<text>` for a user agent containing it (a node's `-uacomment`).
    #[arg(long = "node", env = "NODESCOPE_P2P_NODES", value_delimiter = ',', value_parser = parse_node)]
    pub nodes: Vec<(String, String)>,
    /// The node id of connections no --node matches. Default: `<host>-<chain>`.
    #[arg(long, env = "NODESCOPE_NODE_ID")]
    pub node_id: Option<String>,
    /// Time between our pings (their round trip is the node's backlog as a peer feels it).
    #[arg(long, env = "NODESCOPE_P2P_PING_INTERVAL", default_value = "10s", value_parser = crate::rpc::parse_duration)]
    pub ping_interval: Duration,
    /// A node silent this long is gone (Core pings every 2 minutes).
    #[arg(long, env = "NODESCOPE_P2P_IDLE_TIMEOUT", default_value = "20m", value_parser = crate::rpc::parse_duration)]
    pub idle_timeout: Duration,
    /// Most time from connecting to the end of the handshake.
    #[arg(long, env = "NODESCOPE_P2P_HANDSHAKE_TIMEOUT", default_value = "30s", value_parser = crate::rpc::parse_duration)]
    pub handshake_timeout: Duration,
    /// Speak v1 only: no BIP324, neither offered nor tried.
    #[arg(long, env = "NODESCOPE_P2P_V1_ONLY")]
    pub v1_only: bool,
    /// Do not ask for the transactions the node announces.
    #[arg(long, env = "NODESCOPE_P2P_NO_TX_REQUESTS")]
    pub no_tx_requests: bool,
    /// Also publish each message's raw payload bytes.
    #[arg(long, env = "NODESCOPE_KEEP_RAW_PAYLOADS")]
    pub keep_raw_payloads: bool,
    /// Most MiB of memory for events waiting for NATS; beyond it the oldest are dropped
    /// (and counted).
    #[arg(long, env = "NODESCOPE_NATS_BUFFER_MIB", default_value_t = 16)]
    pub nats_buffer_mib: usize,
    /// Seconds between `extractor` stats events (and log lines).
    #[arg(long, env = "NODESCOPE_STATS_INTERVAL", default_value_t = 10)]
    pub stats_interval: u64,
    /// Write this file once a node has completed a handshake with us (and remove it at the
    /// stop): a readiness signal for a container's health check or a supervisor.
    #[arg(long, env = "NODESCOPE_READY_FILE")]
    pub ready_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub nats: nodescope_bus::NatsArgs,
}

fn parse_node(text: &str) -> Result<(String, String), String> {
    let (matcher, node) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: use <ip, address or ua:text>=<node id>"))?;
    nodescope_proto::subjects::subject("nodescope", node, nodescope_proto::Category::P2p)
        .map_err(|e| e.to_string())?;
    Ok((matcher.to_string(), node.to_string()))
}

/// One event on its way to its node's envelope.
pub struct Emitted {
    pub node: String,
    pub timestamp_ns: u64,
    pub payload: Payload,
    pub error: String,
}

/// `--node` matchers, then the default.
struct Nodes {
    matchers: Vec<(String, String)>,
    default: String,
}

impl Route for Nodes {
    fn node_of(
        &self,
        remote: SocketAddr,
        local: SocketAddr,
        version: Option<&P2pVersion>,
    ) -> String {
        for (matcher, node) in &self.matchers {
            let hit = match matcher.strip_prefix("ua:") {
                Some(text) => version.is_some_and(|v| v.user_agent.contains(text)),
                None => {
                    *matcher == remote.ip().to_string()
                        || *matcher == local.to_string()
                        || *matcher == remote.to_string()
                }
            };
            if hit {
                return node.clone();
            }
        }
        self.default.clone()
    }
}

pub async fn run(args: P2pArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let magic = wire::magic_of_chain(&args.chain)
        .ok_or_else(|| anyhow::anyhow!("no network magic for chain {:?}", args.chain))?
        .to_bytes();
    let default = args
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", host_name(), args.chain));
    let nodes = Arc::new(Nodes {
        matchers: args.nodes.clone(),
        default,
    });
    let config = Arc::new(SessionConfig {
        magic,
        ping_interval: args.ping_interval,
        idle_timeout: args.idle_timeout,
        handshake_timeout: args.handshake_timeout,
        request_transactions: !args.no_tx_requests,
        v2: !args.v1_only,
        decode: DecodeOptions {
            keep_raw: args.keep_raw_payloads,
        },
    });
    let mut listeners = Vec::new();
    for address in args.listen.iter().filter(|a| a.as_str() != "none") {
        let listener = TcpListener::bind(address).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {address} (--listen): {e}; is another extractor p2p or a node using it?")
        })?;
        tracing::info!(address = %listener.local_addr()?, "listening for the node (-addnode=<this address>)");
        listeners.push(listener);
    }
    if listeners.is_empty() && args.connect.is_empty() {
        anyhow::bail!("neither --listen nor --connect: there is no way to the node");
    }
    let connection = args.nats.connect("nodescope-extractor-p2p").await?;
    let publisher = Publisher::start(connection, args.nats_buffer_mib * 1024 * 1024);
    let (events, mut incoming) = mpsc::channel::<Emitted>(EVENT_CHANNEL);
    let ids = Arc::new(AtomicU64::new(1));
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        tasks.spawn(accept(
            listener,
            config.clone(),
            nodes.clone(),
            events.clone(),
            ids.clone(),
        ));
    }
    for address in &args.connect {
        tasks.spawn(dial(
            address.clone(),
            config.clone(),
            nodes.clone(),
            events.clone(),
            ids.clone(),
        ));
    }
    drop(events);

    let run_id = new_run_id();
    let mut envelopes: HashMap<String, Envelope> = HashMap::new();
    let mut buffer = EventBuffer::default();
    let mut counts = Counts::default();
    let mut ready = None;
    let mut stats = tokio::time::interval(Duration::from_secs(args.stats_interval.max(1)));
    stats.tick().await;
    tokio::pin!(shutdown);
    let envelope_of =
        |envelopes: &mut HashMap<String, Envelope>, node: &str| -> anyhow::Result<()> {
            if !envelopes.contains_key(node) {
                let envelope = Envelope::new(
                    &args.nats.subject_prefix,
                    node,
                    &args.chain,
                    ExtractorKind::P2p,
                    run_id,
                )?;
                envelopes.insert(node.to_string(), envelope);
            }
            Ok(())
        };
    envelope_of(&mut envelopes, &nodes.default)?;
    loop {
        let emitted = tokio::select! {
            _ = &mut shutdown => break,
            _ = stats.tick() => {
                let stats = stats_of(&publisher, &counts);
                tracing::info!(
                    "connections {} (failed {}), messages {} (malformed {}), published {}, queued {}; dropped: queue full {}, too large {}",
                    counts.connections, counts.failed, counts.messages, counts.malformed,
                    stats.published, stats.queued, stats.dropped_queue_full, stats.dropped_too_large
                );
                for envelope in envelopes.values_mut() {
                    let (subject, event) = envelope.wrap(std::process::id(), now_ns(), Payload::ExtractorStats(stats.clone()));
                    publisher.send_report(subject, event.encode_to_vec().into());
                }
                if let Some(failure) = publisher.failure() {
                    anyhow::bail!("{failure}");
                }
                continue;
            }
            Some(emitted) = incoming.recv() => emitted,
        };
        counts.count(&emitted);
        if let (Some(path), None, Payload::PeerConnection(c)) =
            (&args.ready_file, &ready, &emitted.payload)
        {
            if c.state == PeerState::Connected as i32 {
                ready = Some(crate::cli::ReadyFile::saying(path, "a node is connected")?);
            }
        }
        envelope_of(&mut envelopes, &emitted.node)?;
        let envelope = envelopes.get_mut(&emitted.node).expect("made above");
        crate::envelope::publish(
            &publisher,
            envelope,
            emitted.timestamp_ns,
            &emitted.payload,
            &emitted.error,
            &mut buffer,
        );
    }
    tasks.abort_all();
    let last = publisher.close(Duration::from_millis(1500)).await;
    tracing::info!(
        "stopped: published {}; dropped: queue full {}, too large {}, unpublished at exit {}",
        last.published,
        last.dropped_queue_full,
        last.dropped_too_large,
        last.queued
    );
    Ok(())
}

const EVENT_CHANNEL: usize = 4096;

#[derive(Debug, Default)]
struct Counts {
    connections: u64,
    failed: u64,
    messages: u64,
    malformed: u64,
}

impl Counts {
    fn count(&mut self, emitted: &Emitted) {
        match &emitted.payload {
            Payload::PeerMessage(_) => {
                self.messages += 1;
                self.malformed += !emitted.error.is_empty() as u64;
            }
            Payload::PeerConnection(c) if c.state == PeerState::Connected as i32 => {
                self.connections += 1
            }
            Payload::PeerConnection(c) if c.state == PeerState::Failed as i32 => self.failed += 1,
            _ => {}
        }
    }
}

fn stats_of(publisher: &Publisher, counts: &Counts) -> ExtractorStats {
    let published = publisher.stats();
    ExtractorStats {
        events_read: counts.messages,
        published: published.published,
        dropped_queue_full: published.dropped_queue_full,
        dropped_too_large: published.dropped_too_large,
        resent: published.resent,
        queued: published.queued,
        queued_bytes: published.queued_bytes,
        p2p_connections: counts.connections,
        p2p_failed_connections: counts.failed,
        p2p_messages: counts.messages,
        p2p_malformed: counts.malformed,
        ..ExtractorStats::default()
    }
}

/// Serves every node that dials in, each on its own task: one node's garbage never stops the
/// listener.
async fn accept(
    listener: TcpListener,
    config: Arc<SessionConfig>,
    nodes: Arc<Nodes>,
    events: mpsc::Sender<Emitted>,
    ids: Arc<AtomicU64>,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let local = stream.local_addr().unwrap_or(remote);
        let (config, nodes, events) = (config.clone(), nodes.clone(), events.clone());
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let link = Link {
                id,
                remote,
                local,
                node_dialled: true,
                retries: 0,
            };
            match Connection::accept(stream, config.magic, config.handshake_timeout).await {
                Ok(connection) => {
                    session::run(connection, link, &config, nodes.as_ref(), &events).await;
                }
                Err(e) => failed(&events, nodes.as_ref(), link, e.to_string()).await,
            }
        });
    }
}

/// A connection that never got as far as a handshake.
async fn failed(events: &mpsc::Sender<Emitted>, nodes: &Nodes, link: Link, reason: String) {
    tracing::warn!(remote = %link.remote, connection = link.id, "connection failed: {reason}");
    let record = nodescope_proto::PeerConnection {
        reason,
        ..link.record(PeerState::Failed)
    };
    let _ = events
        .send(Emitted {
            node: nodes.node_of(link.remote, link.local, None),
            timestamp_ns: now_ns(),
            payload: Payload::PeerConnection(record),
            error: String::new(),
        })
        .await;
}

/// Backoff between attempts to dial a node that is down or dropped us.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Keeps a connection to `address`: dials, serves, and dials again with backoff.
async fn dial(
    address: String,
    config: Arc<SessionConfig>,
    nodes: Arc<Nodes>,
    events: mpsc::Sender<Emitted>,
    ids: Arc<AtomicU64>,
) {
    let mut retry = RETRY_MIN;
    let mut retries = 0;
    loop {
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let target: SocketAddr = tokio::net::lookup_host(&address)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let link = Link {
            id,
            remote: target,
            local: target,
            node_dialled: false,
            retries,
        };
        let dialled =
            Connection::dial(&address, config.magic, config.v2, config.handshake_timeout).await;
        let state = match dialled {
            Ok((connection, local)) => {
                let link = Link { local, ..link };
                session::run(connection, link, &config, nodes.as_ref(), &events).await
            }
            Err(e) => {
                let reason = format!("dialling {address}: {e}");
                failed(&events, nodes.as_ref(), link, reason).await;
                PeerState::Failed
            }
        };
        if events.is_closed() {
            return;
        }
        if state == PeerState::Failed {
            retries += 1;
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
        } else {
            retries = 0;
            retry = RETRY_MIN;
            tokio::time::sleep(RETRY_MIN).await;
        }
    }
}

pub(crate) fn now_ns() -> u64 {
    crate::rpc::now_ns()
}
