//! The logger: one line per event on stdout — readable text, or JSON lines for Loki/promtail —
//! for the nodes, categories, peers and message types asked for. `run(args, shutdown)` is the
//! whole program.

mod fleet;
pub mod line;

use std::future::Future;
use std::io::{ErrorKind, Write};

use anyhow::Context;
use futures::FutureExt;
use nodescope_consumer::{Consumer, ConsumerArgs, Item, Received};
use nodescope_proto::event::Payload;
use nodescope_proto::Category;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "logger",
    about = "Prints nodescope events from NATS, one line each.",
    long_about = "Prints nodescope events from NATS, one line each: time (UTC), node, category, \
                  event and the fields that matter for it. With --json, one JSON object per \
                  line (every field of the event) for Loki/promtail."
)]
pub struct Args {
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Categories to print, comma-separated (default: all): net.message, net.connection,
    /// mempool, validation, utxocache, coin_selection, rpc, zmq, p2p, connectivity, extractor.
    #[arg(long, env = "NODESCOPE_LOGGER_CATEGORIES", value_delimiter = ',')]
    pub categories: Vec<Category>,
    /// Only events about these peer ids (messages, connections, misbehaving, connectivity checks
    /// of the addresses they announced), comma-separated.
    #[arg(long, env = "NODESCOPE_LOGGER_PEERS", value_delimiter = ',')]
    pub peers: Vec<i64>,
    /// Only P2P messages of these types (e.g. inv,tx), comma-separated: the node's messages
    /// from the tracepoints and those it sent to `extractor p2p`.
    #[arg(long, env = "NODESCOPE_LOGGER_MSG_TYPES", value_delimiter = ',')]
    pub msg_types: Vec<String>,
    /// One JSON object per line instead of text.
    #[arg(long, env = "NODESCOPE_LOGGER_JSON")]
    pub json: bool,
    /// Also serve /healthz on this address (200 while connected to NATS and subscribed), for a
    /// container's or a supervisor's health check.
    #[arg(long, env = "NODESCOPE_LOGGER_HEALTH_LISTEN")]
    pub health_listen: Option<std::net::SocketAddr>,
}

/// Prints to stdout until `shutdown` resolves or stdout is closed (a closed pipe, as with
/// `logger | head`, ends the logger quietly with success).
pub async fn run(args: Args, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let stdout = std::io::stdout().lock();
    run_to(
        args,
        shutdown,
        std::io::BufWriter::with_capacity(64 * 1024, stdout),
    )
    .await
}

/// [`run`], printing to `out`.
pub async fn run_to(
    args: Args,
    shutdown: impl Future<Output = ()>,
    mut out: impl Write,
) -> anyhow::Result<()> {
    let filter = Filter::new(&args);
    let health_listener = match args.health_listen {
        Some(address) => Some(
            nodescope_consumer::http::bind(
                address,
                "--health-listen or NODESCOPE_LOGGER_HEALTH_LISTEN",
            )
            .await?,
        ),
        None => None,
    };
    let mut consumer = Consumer::subscribe(&args.consumer, "logger", &args.categories).await?;
    let _health_server = health_listener.map(|listener| {
        let health = consumer.health();
        nodescope_consumer::http::spawn(listener, move |request| {
            let response =
                nodescope_consumer::exposition::metrics_and_health(&request, None, &health);
            async move { response }
        })
    });
    tokio::pin!(shutdown);
    loop {
        let item = tokio::select! {
            _ = &mut shutdown => break,
            item = consumer.next() => item,
        };
        let Some(mut item) = item else { break };
        // Print what is already waiting, then flush once: each line shows at once when events
        // are few, and a busy stream is written in large blocks.
        for _ in 0..1024 {
            if let Item::Event(received) = &item {
                if filter.accepts(&received.event.payload) {
                    let printed = write_line(&mut out, received, args.json);
                    if quietly_closed(printed)? {
                        return Ok(());
                    }
                }
            }
            match consumer.next().now_or_never() {
                Some(Some(next)) => item = next,
                _ => break,
            }
        }
        if quietly_closed(out.flush())? {
            return Ok(());
        }
    }
    quietly_closed(out.flush())?;
    Ok(())
}

fn write_line(out: &mut impl Write, received: &Received, json: bool) -> std::io::Result<()> {
    let text = if json {
        line::json(&received.event, received.category)
    } else {
        line::text(&received.event, received.category)
    };
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")
}

/// Whether stdout was closed by its reader (true: stop quietly); other write errors are errors.
fn quietly_closed(result: std::io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(false),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(true),
        Err(error) => Err(error).context("cannot write to stdout"),
    }
}

/// The peer and message-type filters (nodes and categories narrow the subscription itself).
struct Filter {
    peers: Vec<i64>,
    msg_types: Vec<String>,
}

impl Filter {
    fn new(args: &Args) -> Filter {
        Filter {
            peers: args.peers.clone(),
            msg_types: args.msg_types.clone(),
        }
    }

    fn accepts(&self, payload: &Option<Payload>) -> bool {
        let Some(payload) = payload else {
            return self.peers.is_empty() && self.msg_types.is_empty();
        };
        let peer_ok =
            self.peers.is_empty() || peer_id(payload).is_some_and(|id| self.peers.contains(&id));
        let type_ok = self.msg_types.is_empty()
            || msg_type(payload).is_some_and(|t| self.msg_types.iter().any(|m| m == t));
        peer_ok && type_ok
    }
}

fn peer_id(payload: &Payload) -> Option<i64> {
    use Payload as P;
    let peer = match payload {
        P::InboundMessage(m) | P::OutboundMessage(m) => m.peer.as_ref(),
        P::InboundConnection(c) => c.peer.as_ref(),
        P::OutboundConnection(c) => c.peer.as_ref(),
        P::EvictedInboundConnection(c) => c.peer.as_ref(),
        P::ClosedConnection(c) => c.peer.as_ref(),
        P::MisbehavingConnection(m) => return Some(m.peer_id),
        P::ConnectivityCheck(c) => c.announced_by.as_ref(),
        _ => None,
    };
    peer.map(|p| p.id)
}

fn msg_type(payload: &Payload) -> Option<&str> {
    match payload {
        Payload::InboundMessage(m) | Payload::OutboundMessage(m) => {
            m.message.as_ref().map(|m| m.msg_type.as_str())
        }
        // What the node sent to `extractor p2p`.
        Payload::PeerMessage(m) => m.message.as_ref().map(|m| m.msg_type.as_str()),
        _ => None,
    }
}
