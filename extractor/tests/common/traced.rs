//! A private bitcoind copy with the extractor (in this process) attached to all 20 of its
//! tracepoints, publishing to a nats-server of its own whose events are collected.

use std::path::PathBuf;

use super::bus::Collected;
use super::{private_bitcoind, start_extractor, Running};

/// Nodes started from `bitcoind` afterwards are traced from their start (no event is missed).
pub struct Traced {
    pub bitcoind: PathBuf,
    pub bus: Collected,
    pub extractor: Running,
    pub nats: nodescope_bus::test_server::NatsServer,
    pub dir: tempfile::TempDir,
}

/// Publishing as `node_id` (the bus collects that node's events), or without `--node-id` (a
/// node per process; the bus collects every node's).
pub async fn traced_extractor(node_id: Option<&str>) -> Traced {
    super::assert_root();
    let dir = tempfile::tempdir().unwrap();
    let bitcoind = private_bitcoind(dir.path());
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), node_id.unwrap_or("*")).await;
    let url = nats.url();
    let mut args = vec![
        "ebpf",
        "--bitcoind-path",
        bitcoind.to_str().unwrap(),
        "--nats-url",
        &url,
        "--stats-interval",
        "1",
    ];
    if let Some(node_id) = node_id {
        args.extend(["--node-id", node_id]);
    }
    let mut extractor = start_extractor(&args);
    extractor
        .alongside(bus.stats_when(|s| s.attached_locations == 20))
        .await;
    Traced {
        bitcoind,
        bus,
        extractor,
        nats,
        dir,
    }
}
