//! The extractor in the tests' own process.

#![allow(dead_code)]

use clap::Parser;
use nodescope_regtest::Node;
use tokio::sync::oneshot;

/// A running extractor: fire (or drop) the sender to stop it, then await its end.
pub type Running = (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// `extractor <args>` running in this process.
pub fn extractor(args: &[&str]) -> Running {
    let cli =
        extractor::cli::Cli::parse_from(std::iter::once("extractor").chain(args.iter().copied()));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(extractor::cli::run(cli, async {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// `extractor rpc` on `node` (cookie auth, ZMQ when the node has it), polling every second and
/// publishing as `node_id`; `extra` flags added.
pub fn rpc_extractor(node: &Node, node_id: &str, nats: &str, extra: &[&str]) -> Running {
    let rpc_url = format!("http://127.0.0.1:{}", node.rpc_port());
    let cookie = node.cookie_path();
    let mut args = vec![
        "rpc",
        "--chain",
        "regtest",
        "--rpc-url",
        &rpc_url,
        "--rpc-cookie-file",
        cookie.to_str().unwrap(),
        "--node-id",
        node_id,
        "--interval",
        "1s",
        "--stats-interval",
        "1",
        "--nats-url",
        nats,
    ];
    args.extend_from_slice(extra);
    extractor(&args)
}
