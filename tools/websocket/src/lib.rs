//! The websocket tool: streams events to browsers and programs as JSON, and serves its own live
//! page. `run(args, shutdown)` is the whole program.
//!
//! One task reads the bus; every event is rendered once, to a websocket frame, and put on a
//! broadcast channel that each client reads at its own pace, writing the frames straight from
//! that one shared buffer, many per write. So a slow client only ever delays itself: when it
//! falls a whole queue behind it loses the oldest events (counted, and told so), and when a
//! write to it stalls it is disconnected (counted, logged). The same task keeps each node's
//! state ([`state::NodeState`]), rendered a few times a second for pages and sent whole to
//! every page on connect.

mod feed;
mod filter;
pub mod fleet_view;
mod outbox;
pub mod peer_view;
mod routes;
mod session;
pub mod state;
pub mod summary;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nodescope_consumer::{http, Consumer, ConsumerArgs, Item};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use feed::FeedCounters;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "websocket",
    about = "Streams nodescope events to websocket clients and serves a live page.",
    long_about = "Streams nodescope events from NATS to websocket clients as JSON (/ws), and \
                  serves a live page of each node's peers, messages, mempool, blocks, \
                  pipeline health, from RPC and ZMQ bitcoind's own summary, from extractor p2p the node as one of its peers sees it and, from the fleet tool, each recent block's arrival at every node (/). Clients choose nodes and categories in the URL \
                  (/ws?nodes=a,b&categories=mempool,validation) or later with a message \
                  {\"type\":\"subscribe\",\"nodes\":[...],\"categories\":[...]}."
)]
pub struct Args {
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Address to serve the page, /ws and /healthz on.
    #[arg(
        long,
        env = "NODESCOPE_WEBSOCKET_LISTEN",
        default_value = "127.0.0.1:47482"
    )]
    pub listen: SocketAddr,
    /// Origins allowed to open the websocket from a browser, comma-separated (e.g.
    /// https://ops.example.org), or `*` for any. Default: only the page's own origin. Clients
    /// that send no Origin (programs) are always allowed.
    #[arg(
        long,
        env = "NODESCOPE_WEBSOCKET_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Events a client may fall behind before it loses the oldest ones.
    #[arg(long, env = "NODESCOPE_WEBSOCKET_CLIENT_QUEUE", default_value_t = 8192)]
    pub client_queue: usize,
    /// A client whose socket accepts nothing for this long is disconnected (seconds).
    #[arg(long, env = "NODESCOPE_WEBSOCKET_SEND_TIMEOUT", default_value_t = 5.0)]
    pub send_timeout: f64,
    /// How often pages get the nodes' state (milliseconds).
    #[arg(
        long,
        env = "NODESCOPE_WEBSOCKET_STATE_INTERVAL_MS",
        default_value_t = 500
    )]
    pub state_interval_ms: u64,
}

/// Binds `--listen`, then serves until `shutdown` resolves.
pub async fn run(args: Args, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listener = http::bind(args.listen, "--listen or NODESCOPE_WEBSOCKET_LISTEN").await?;
    run_on(listener, args, shutdown).await
}

/// [`run`] on a listener already bound (tests bind port 0).
pub async fn run_on(
    listener: TcpListener,
    args: Args,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    let mut consumer = Consumer::subscribe(&args.consumer, "websocket", &[]).await?;
    let stopping = CancellationToken::new();
    let feed = Arc::new(feed::Feed::new(&args, consumer.health(), stopping.clone()));
    tracing::info!("live page on http://{address}/ , websocket on ws://{address}/ws");

    let server = tokio::spawn(http::serve(listener, {
        let feed = feed.clone();
        move |request| {
            let feed = feed.clone();
            async move { routes::respond(request, feed).await }
        }
    }));
    let mut nodes = state::Nodes::default();
    let mut render = tokio::time::interval(Duration::from_millis(args.state_interval_ms.max(10)));
    render.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = render.tick() => feed.publish_states(&mut nodes),
            item = consumer.next() => match item {
                Some(Item::Event(received)) => {
                    nodes.node(&received.event.node_id).apply(&received);
                    feed.publish_event(&received);
                }
                Some(Item::Replayed(stream)) => {
                    nodes.node(&stream.node).pipeline.replayed += 1;
                }
                Some(Item::Undecodable(bad)) => {
                    if let Some(node) = bad.node {
                        nodes.node(&node).pipeline.undecodable += 1;
                    }
                }
                None => break,
            },
        }
    }
    // Clients get a close frame; the listener stops.
    stopping.cancel();
    server.abort();
    feed.wait_for_clients(Duration::from_secs(2)).await;
    Ok(())
}
