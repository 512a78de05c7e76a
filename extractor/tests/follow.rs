//! The extractor stays on what a real node runs: a binary replaced under a running node (a
//! package upgrade before the restart), and a `--pid` whose process exits (a restart).

mod common;

use std::path::Path;
use std::time::Duration;

use nodescope_proto::event::Payload;
use nodescope_proto::json::hex;
use nodescope_regtest::{Node, NodeConfig};

use common::bus::Collected;
use common::traced::{traced_extractor, Traced};
use common::{blocking, private_bitcoind, start_extractor};

/// What a package manager does: the new file written aside, then renamed over the old path.
fn replace(binary: &Path) {
    let fresh = binary.with_extension("new");
    std::fs::copy(binary, &fresh).unwrap();
    std::fs::rename(&fresh, binary).unwrap();
}

/// Mines `n` blocks and waits for their block_connected events; returns the pid they carry.
async fn mine_and_see(bus: &Collected, node: &Node, n: u32) -> Vec<u32> {
    let hashes = blocking(|| node.generate(n)).unwrap();
    let mut pids = Vec::new();
    for hash in hashes {
        let pid = bus
            .payload(&format!("block_connected {hash}"), |e, p| match p {
                Payload::BlockConnected(b) if hex(&b.hash) == hash => Some(e.pid),
                _ => None,
            })
            .await;
        pids.push(pid);
    }
    pids
}

/// The pid of the block_connected event of `hash`, if it arrives within `wait`.
async fn seen_within(bus: &Collected, hash: &str, wait: Duration) -> Option<u32> {
    bus.find_within(wait, |events| {
        events.iter().find_map(|e| match &e.payload {
            Some(Payload::BlockConnected(b)) if hex(&b.hash) == hash => Some(e.pid),
            _ => None,
        })
    })
    .await
}

fn extractor_args<'a>(binary: &'a str, url: &'a str, node: &'a str) -> Vec<&'a str> {
    vec![
        "ebpf",
        "--bitcoind-path",
        binary,
        "--node-id",
        node,
        "--nats-url",
        url,
        "--stats-interval",
        "1",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_replaced_under_a_running_node_is_traced_old_and_new() {
    let Traced {
        bitcoind,
        bus,
        mut extractor,
        nats: _nats,
        dir: _dir,
    } = traced_extractor(Some("upgrade")).await;
    let mut node = blocking(|| Node::start(NodeConfig::new().bitcoind(&bitcoind))).unwrap();
    let old_pid = node.pid();
    assert_eq!(
        extractor.alongside(mine_and_see(&bus, &node, 1)).await,
        [old_pid]
    );

    replace(&bitcoind);
    // The new file is attached beside the old one, which the node still runs.
    extractor
        .alongside(bus.stats_when(|s| s.attached_locations == 40))
        .await;
    assert_eq!(
        extractor.alongside(mine_and_see(&bus, &node, 2)).await,
        [old_pid, old_pid],
        "the running node, on the old file, is still traced"
    );
    // The restart runs the new file: traced from its start, and the old file is let go.
    blocking(|| node.restart()).unwrap();
    let new_pid = node.pid();
    assert_ne!(new_pid, old_pid);
    assert_eq!(
        extractor.alongside(mine_and_see(&bus, &node, 2)).await,
        [new_pid, new_pid]
    );
    let stats = extractor
        .alongside(bus.stats_when(|s| s.attached_locations == 20))
        .await;
    assert_eq!(stats.kernel_drops.values().sum::<u64>(), 0);
    // No gap: every height once, in order.
    let heights: Vec<i32> = bus
        .events()
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::BlockConnected(b)) => Some(b.height),
            _ => None,
        })
        .collect();
    assert_eq!(heights, [1, 2, 3, 4, 5]);
    extractor.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_pid_that_exits_is_followed_to_the_binarys_next_process() {
    common::assert_root();
    let dir = tempfile::tempdir().unwrap();
    let bitcoind = private_bitcoind(dir.path());
    let nats = nodescope_bus::test_server::NatsServer::start();
    let bus = Collected::start(&nats.url(), "follow").await;
    let mut node = blocking(|| Node::start(NodeConfig::new().bitcoind(&bitcoind))).unwrap();
    let first_pid = node.pid().to_string();
    let url = nats.url();
    let mut args = extractor_args(bitcoind.to_str().unwrap(), &url, "follow");
    args.extend(["--pid", &first_pid]);
    let mut extractor = start_extractor(&args);
    extractor
        .alongside(bus.stats_when(|s| s.attached_locations == 20))
        .await;
    assert_eq!(
        extractor.alongside(mine_and_see(&bus, &node, 1)).await,
        [node.pid()]
    );
    for _ in 0..2 {
        let before = node.pid();
        blocking(|| node.restart()).unwrap();
        assert_ne!(node.pid(), before);
        // Followed within the watch interval: poll with blocks until one is seen from it.
        let pid = node.pid();
        extractor
            .alongside(async {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let hash = blocking(|| node.generate(1)).unwrap().remove(0);
                    if seen_within(&bus, &hash, Duration::from_secs(2)).await == Some(pid) {
                        return;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "the restarted process {pid} was never followed"
                    );
                }
            })
            .await;
    }
    // One process at a time: the exited one's probes are gone.
    extractor
        .alongside(bus.stats_when(|s| s.attached_locations == 20))
        .await;
    extractor.stop().await.unwrap();
}
