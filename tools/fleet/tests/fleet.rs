//! End to end against three real Bitcoin Core v30.0 regtest nodes (loopback), as root (eBPF):
//! one eBPF extractor in this process traces all three (each process is a node of its own),
//! the fleet tool follows them, and then:
//! - a wallet transaction's propagation names all three nodes;
//! - a mined block's first-seen offsets name all three nodes, the miner first, and each node's
//!   connection time agrees with its debug log's `UpdateTip` line;
//! - a reorg made with `invalidateblock` on one node and a longer chain mined there is a reorg
//!   event of depth 2 on the other nodes, with the disconnected hashes, flagged as a chain
//!   released by one peer;
//! - the shipped reorg alert (compose/prometheus/alerts.yml) fires in a real Prometheus that
//!   scraped the fleet tool, and reaches a real Alertmanager, whose API lists it;
//! - with the RPC extractor (ZMQ on), the P2P extractor, the metrics exporter, the websocket
//!   tool and connectivity-check also running on the same session, every panel of every
//!   provisioned dashboard (compose/grafana/dashboards) has data in that Prometheus, except
//!   those compose/grafana/mainnet_only.txt lists.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use nodescope_consumer::testing::{free_port, http_get, poll_for, wait_until, NatsServer};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{BlockPropagation, Event, Reorg, TxPropagation};
use nodescope_regtest::serde_json::{json, Value};
use nodescope_regtest::{Node, NodeConfig};
use prost::Message;
use tokio::sync::oneshot;

const WITHIN: Duration = Duration::from_secs(60);
/// The alert of compose/prometheus/alerts.yml for any reorg.
const REORG_ALERT: &str = "NodescopeReorg";

fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every event on the bus, as received.
#[derive(Clone, Default)]
struct Bus(Arc<Mutex<Vec<Event>>>);

impl Bus {
    async fn listen(url: &str) -> Bus {
        let client = async_nats::connect(url).await.expect("connecting to NATS");
        let mut subscriber = client.subscribe("nodescope.>").await.expect("subscribe");
        client.flush().await.expect("flush");
        let bus = Bus::default();
        let events = bus.0.clone();
        tokio::spawn(async move {
            let _client = client;
            while let Some(message) = subscriber.next().await {
                if let Ok(event) = Event::decode(message.payload) {
                    events.lock().unwrap().push(event);
                }
            }
        });
        bus
    }

    fn find<T>(&self, pick: impl FnMut(&Event) -> Option<T>) -> Option<T> {
        self.0.lock().unwrap().iter().find_map(pick)
    }

    async fn wait_for<T>(&self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let mut found = None;
        wait_until(what, WITHIN, || {
            found = self.find(&mut pick);
            std::future::ready(found.is_some())
        })
        .await;
        found.unwrap()
    }

    /// Until the P2P extractor has node 0's announcement of its transaction `txid` (by wtxid, or
    /// txid without wtxid relay). Node 0 sends it after a random trickle delay (2 s on average
    /// on that connection) and never once a block has taken the transaction out of its mempool:
    /// a block mined before then would leave the P2P extractor, and Prometheus, without it.
    async fn wait_for_announcement(&self, node: &Node, txid: &str) {
        let entry = blocking(|| node.rpc("getmempoolentry", json!([txid]))).unwrap();
        let wtxid = entry["wtxid"]
            .as_str()
            .expect("a mempool entry has a wtxid");
        self.wait_for(
            "node 0's inv of the transaction to the P2P extractor",
            |e| {
                let Some(Payload::PeerMessage(message)) = &e.payload else {
                    return None;
                };
                let Some(Body::Inv(inv)) = message.message.as_ref().and_then(|m| m.body.as_ref())
                else {
                    return None;
                };
                inv.items
                    .iter()
                    .any(|item| [wtxid, txid].contains(&hex(&item.hash).as_str()))
                    .then_some(())
            },
        )
        .await
    }
}

/// `UpdateTip: new best=<hash>` in a debug log (-logtimemicros): when the node made it its tip,
/// ns since the epoch.
fn update_tip_ns(log: &Path, hash: &str) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .find(|l| l.contains("UpdateTip: new best=") && l.contains(hash))?;
    let stamp = line.split_whitespace().next()?;
    let time = humantime::parse_rfc3339(stamp).ok()?;
    Some(time.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as u64)
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(program: &str, args: &[String]) -> Daemon {
    Daemon(
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program} (cargo xtask setup installs it): {e}")),
    )
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_first_seen_reorg_and_the_alert_in_prometheus_and_alertmanager() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF programs: run it as root"
    );
    let nats = NatsServer::start();
    let url = nats.url();
    let bus = Bus::listen(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let bitcoind = nodescope_regtest::private_bitcoind(dir.path())
        .expect("Bitcoin Core is installed (cargo xtask setup)");

    let (stop_extractor, extractor) = common::extractor(&[
        "ebpf",
        "--bitcoind-path",
        bitcoind.to_str().unwrap(),
        "--nats-url",
        &url,
        "--stats-interval",
        "1",
    ]);
    bus.wait_for("the eBPF extractor attached", |e| match &e.payload {
        Some(Payload::ExtractorStats(s)) if s.attached_locations == 20 => Some(()),
        _ => None,
    })
    .await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fleet_addr = listener.local_addr().unwrap();
    let args = nodescope_fleet::Args::parse_from([
        "fleet",
        "--nats-url",
        &url,
        "--tx-sample",
        "1",
        "--state-interval",
        "1s",
        "--reorg-settle",
        "2s",
    ]);
    let (stop_fleet, fleet_stopped) = oneshot::channel::<()>();
    let fleet = tokio::spawn(nodescope_fleet::serve(listener, args, async {
        let _ = fleet_stopped.await;
    }));
    let metrics_url = format!("http://{fleet_addr}/metrics");
    wait_until("the fleet tool healthy", WITHIN, || async {
        http_get(&format!("http://{fleet_addr}/healthz")).await.0 == 200
    })
    .await;

    // The exporters Prometheus scrapes, before the nodes start: they see every connection.
    let mut stops = Vec::new();
    let mut tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>> = Vec::new();
    let mut exporters = Vec::new();
    for tool in ["metrics", "websocket", "connectivity-check"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        exporters.push((tool, listener.local_addr().unwrap()));
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        let stopped = async {
            let _ = stopped.await;
        };
        let flags = ["--nats-url", url.as_str()];
        tasks.push(match tool {
            "metrics" => tokio::spawn(nodescope_metrics::serve(
                listener,
                nodescope_metrics::Args::parse_from([&["metrics"][..], &flags].concat()),
                stopped,
            )),
            "websocket" => tokio::spawn(nodescope_websocket::run_on(
                listener,
                nodescope_websocket::Args::parse_from([&["websocket"][..], &flags].concat()),
                stopped,
            )),
            _ => tokio::spawn(nodescope_connectivity::serve(
                listener,
                nodescope_connectivity::Args::parse_from(
                    [
                        &[
                            "connectivity-check",
                            "--chain",
                            "regtest",
                            "--allow-private",
                        ][..],
                        &flags,
                    ]
                    .concat(),
                ),
                stopped,
            )),
        });
    }

    // Prometheus (with the shipped rules) and Alertmanager, watching from the start.
    let work = dir.path();
    let alertmanager_port = free_port();
    let prometheus_port = free_port();
    let alertmanager = daemon(
        "prometheus-alertmanager",
        &[
            format!(
                "--config.file={}",
                repo_file("compose/alertmanager/alertmanager.yml").display()
            ),
            format!("--storage.path={}", work.join("alertmanager").display()),
            format!("--web.listen-address=127.0.0.1:{alertmanager_port}"),
            "--cluster.listen-address=".into(),
        ],
    );
    let prometheus_config = work.join("prometheus.yml");
    let mut jobs = vec![
        ("fleet", fleet_addr.to_string()),
        ("alertmanager", format!("127.0.0.1:{alertmanager_port}")),
    ];
    jobs.extend(exporters.iter().map(|(job, addr)| (*job, addr.to_string())));
    let scrape_configs: String = jobs
        .iter()
        .map(|(job, target)| {
            format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n")
        })
        .collect();
    std::fs::write(
        &prometheus_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{alertmanager_port}']\n\
             scrape_configs:\n{scrape_configs}",
            repo_file("compose/prometheus/alerts.yml").display(),
        ),
    )
    .unwrap();
    let prometheus_started = std::time::Instant::now();
    let prometheus = daemon(
        "prometheus",
        &[
            format!("--config.file={}", prometheus_config.display()),
            format!("--storage.tsdb.path={}", work.join("prometheus").display()),
            format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
    );
    let config = || {
        NodeConfig::new()
            .bitcoind(&bitcoind)
            .arg("-logtimemicros=1")
    };
    let nodes: Vec<Node> = blocking(|| {
        [config().wallet(true).zmq(true), config(), config()]
            .into_iter()
            .map(|c| Node::start(c).expect("starting a node"))
            .collect()
    });
    blocking(|| {
        nodes[1].connect_to(&nodes[0]).unwrap();
        nodes[2].connect_to(&nodes[0]).unwrap();
        nodes[2].connect_to(&nodes[1]).unwrap();
    });
    // Node ids by process: every event names its bitcoind's pid.
    let mut ids: Vec<String> = Vec::new();
    for node in &nodes {
        let pid = node.pid();
        ids.push(
            bus.wait_for("an event of each node", |e| {
                (e.pid == pid && !e.node_id.is_empty()).then(|| e.node_id.clone())
            })
            .await,
        );
    }
    let name = |i: usize| ids[i].clone();

    // The extractors beside the eBPF one, on node 0 (RPC with ZMQ, and P2P), under the node id
    // the eBPF extractor gave it.
    // Node 0 dials the P2P extractor (addnode), as the README sets it up.
    let p2p_listen = format!("127.0.0.1:{}", free_port());
    for (stop, task) in [
        common::rpc_extractor(&nodes[0], &ids[0], &url, &["--slow-interval", "2s"]),
        common::extractor(&[
            "p2p",
            "--chain",
            "regtest",
            "--listen",
            &p2p_listen,
            "--node-id",
            &ids[0],
            "--ping-interval",
            "1s",
            "--stats-interval",
            "1",
            "--nats-url",
            &url,
        ]),
    ] {
        stops.push(stop);
        tasks.push(task);
    }
    // `onetry` until it took: the extractor may not listen yet, and a failed `add` is retried
    // only a minute later. Then until the handshake is done (the peer's version known, it takes
    // transactions): a transaction sent before that is never announced to it.
    blocking(|| {
        nodescope_regtest::wait_until("node 0 connected to the P2P extractor", WITHIN, || {
            let peers = nodes[0].peers()?;
            let extractor = peers.iter().find(|p| p["addr"] == p2p_listen.as_str());
            match extractor {
                None => {
                    let _ = nodes[0].rpc("addnode", json!([p2p_listen, "onetry"]));
                    Ok(None)
                }
                Some(peer) => Ok((peer["version"].as_i64().unwrap_or(0) > 0
                    && peer["relaytxes"] == true)
                    .then_some(())),
            }
        })
    })
    .unwrap();
    // A wallet transaction: seen by all three.
    blocking(|| nodes[0].mature_coins()).unwrap();
    blocking(|| Node::sync_blocks(&nodes.iter().collect::<Vec<_>>())).unwrap();
    let address = blocking(|| nodes[0].new_address()).unwrap();
    let txid = blocking(|| nodes[0].send_to_address(&address, 1.0)).unwrap();
    bus.wait_for_announcement(&nodes[0], &txid).await;
    let tx: TxPropagation = bus
        .wait_for("the transaction's propagation event", |e| {
            match &e.payload {
                Some(Payload::TxPropagation(t)) if hex(&t.txid) == txid => Some(t.clone()),
                _ => None,
            }
        })
        .await;
    assert!(tx.missing.is_empty(), "{tx:?}");
    assert_eq!(tx.nodes.len(), 3, "{tx:?}");
    assert_eq!(tx.first_node, name(0), "the sender saw it first: {tx:?}");
    assert_eq!(tx.nodes[0].source, "mempool_added");

    // A block: the miner first, every node's connection as its debug log says.
    let hash = blocking(|| nodes[0].generate(1)).unwrap().remove(0);
    let block: BlockPropagation = bus
        .wait_for("the block's propagation event", |e| match &e.payload {
            Some(Payload::BlockPropagation(b)) if hex(&b.hash) == hash => Some(b.clone()),
            _ => None,
        })
        .await;
    assert!(block.missing.is_empty(), "{block:?}");
    assert_eq!(block.nodes.len(), 3, "{block:?}");
    assert_eq!(block.first_node, name(0), "{block:?}");
    assert_eq!(block.height, Some(102));
    for (i, node) in nodes.iter().enumerate() {
        let sighting = block
            .nodes
            .iter()
            .find(|s| s.node == name(i))
            .unwrap_or_else(|| panic!("node {i} in {block:?}"));
        let tip_ns = update_tip_ns(&node.debug_log(), &hash).expect("UpdateTip in the debug log");
        let connected = sighting.connected_ns.expect("connected");
        // The tracepoint fires in ConnectBlock, UpdateTip is logged just after it.
        assert!(
            connected <= tip_ns + 1_000_000 && tip_ns - connected.min(tip_ns) < 500_000_000,
            "node {i}: connected at {connected}, UpdateTip at {tip_ns}"
        );
        assert!(sighting.first_seen_ns <= connected);
        assert_eq!(
            sighting.first_seen_ns - block.first_seen_ns,
            sighting.offset_ns
        );
        assert!(sighting.validation_ns.is_some());
    }
    // The miner announces by cmpctblock before its own block_connected fires, so a peer may
    // even make it its tip first; but nobody saw it before the miner's announcement.
    for s in &block.nodes {
        let i = ids.iter().position(|id| *id == s.node).unwrap();
        let tip = update_tip_ns(&nodes[i].debug_log(), &hash).unwrap();
        assert!(
            block.first_seen_ns <= tip + 1_000_000,
            "node {i}: {block:?}"
        );
    }

    // Prometheus has seen the fleet's reorg counters at 0: the reorg below is an increase.
    wait_until("Prometheus scraping the fleet tool", WITHIN, || async {
        let (status, body) = get_once_up(&format!(
            "http://127.0.0.1:{prometheus_port}/api/v1/query?query=nodescope_fleet_reorgs_total"
        ))
        .await;
        status == 200 && body.contains(&name(0))
    })
    .await;
    // A reorg: node 2 forgets the last two blocks and mines three of its own.
    let second = blocking(|| nodes[0].generate(1)).unwrap().remove(0);
    blocking(|| Node::sync_blocks(&nodes.iter().collect::<Vec<_>>())).unwrap();
    blocking(|| nodes[2].rpc("invalidateblock", json!([hash]))).unwrap();
    let branch = blocking(|| nodes[2].generate(3)).unwrap();
    let tip = blocking(|| Node::sync_blocks(&nodes.iter().collect::<Vec<_>>())).unwrap();
    assert_eq!(&tip, branch.last().unwrap());
    for i in [0, 1] {
        let reorg: Reorg = bus
            .wait_for("the reorg event", |e| match &e.payload {
                Some(Payload::Reorg(r)) if r.node == name(i) => Some(r.clone()),
                _ => None,
            })
            .await;
        assert_eq!(reorg.depth, 2, "node {i}: {reorg:?}");
        assert_eq!(reorg.old_height, 103);
        assert_eq!(reorg.new_height, 102);
        assert_eq!(hex(&reorg.old_tip), second);
        assert_eq!(hex(&reorg.new_block), branch[0]);
        let disconnected: Vec<String> = reorg.disconnected.iter().map(|h| hex(h)).collect();
        assert_eq!(disconnected, [second.clone(), hash.clone()]);
        if i == 0 {
            // Node 0 hears of node 2's branch only from node 2: three blocks at once.
            assert!(reorg.possible_selfish_mining, "{reorg:?}");
            assert!(reorg.branch_blocks_from_source >= 2, "{reorg:?}");
        }
    }
    let scrape = http_get(&metrics_url).await.1;
    let reorgs = format!(
        r#"nodescope_fleet_reorgs_total{{node="{}",depth="2"}} 1"#,
        name(0)
    );
    assert!(scrape.contains(&reorgs), "{reorgs} not in\n{scrape}");

    let alerts_url = format!("http://127.0.0.1:{alertmanager_port}/api/v2/alerts");
    let listed = Arc::new(Mutex::new(String::new()));
    wait_until("Alertmanager listing the reorg alert", WITHIN, || {
        let (url, listed) = (alerts_url.clone(), listed.clone());
        async move {
            let (status, body) = get_once_up(&url).await;
            let found = status == 200 && body.contains(REORG_ALERT);
            *listed.lock().unwrap() = body;
            found
        }
    })
    .await;
    let listed = listed.lock().unwrap().clone();
    let alerts: Value = nodescope_regtest::serde_json::from_str(&listed).unwrap();
    let reorg_alert = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == REORG_ALERT)
        .unwrap_or_else(|| panic!("{REORG_ALERT} in {listed}"));
    let node = reorg_alert["labels"]["node"].as_str().unwrap_or_default();
    assert!(
        ids.iter().any(|id| id == node),
        "the alert names a node: {reorg_alert}"
    );

    // More of a session while Prometheus watches: a wallet transaction and a block everyone
    // takes (node 2's chain is the one all follow now).
    let txid = blocking(|| nodes[0].send_to_address(&address, 0.5)).unwrap();
    bus.wait_for_announcement(&nodes[0], &txid).await;
    blocking(|| nodes[2].wait_for_mempool(&txid)).unwrap();
    let last = blocking(|| nodes[2].generate(1)).unwrap().remove(0);
    bus.wait_for("the last block's propagation event", |e| match &e.payload {
        Some(Payload::BlockPropagation(b)) if hex(&b.hash) == last && b.missing.is_empty() => {
            Some(())
        }
        _ => None,
    })
    .await;
    // Until what just happened is in Prometheus.
    let height = blocking(|| nodes[2].block_count()).unwrap();
    let scraped = format!(
        "http://127.0.0.1:{prometheus_port}/api/v1/query?query={}",
        percent_encoded(&format!("min(nodescope_fleet_tip_height) == {height}"))
    );
    wait_until("Prometheus scraping the last block", WITHIN, || async {
        let (status, body) = get_once_up(&scraped).await;
        status == 200 && body.contains(&format!("\"{height}\""))
    })
    .await;
    // The P2P extractor's inv (and the transaction it asked for) in Prometheus.
    let announced = format!(
        "http://127.0.0.1:{prometheus_port}/api/v1/query?query={}",
        // Two samples: a rate needs them.
        percent_encoded("count_over_time(nodescope_peer_transactions_total[1m]) > 1")
    );
    wait_until(
        "Prometheus seeing the P2P extractor's transactions",
        WITHIN,
        || async {
            let (status, body) = get_once_up(&announced).await;
            status == 200 && body.contains("\"value\"")
        },
    )
    .await;
    // A series born in the last scrape has one sample, too few for a rate: poll a little.
    poll_for(
        "every dashboard panel with data (but those compose/grafana/mainnet_only.txt lists)",
        Duration::from_secs(20),
        || async {
            let empty =
                panels_without_data(prometheus_port, prometheus_started.elapsed(), work).await;
            if empty.is_empty() {
                Ok(())
            } else {
                Err(format!("no data in\n  {}", empty.join("\n  ")))
            }
        },
    )
    .await;

    drop(prometheus);
    drop(alertmanager);
    for stop in stops {
        let _ = stop.send(());
    }
    for task in tasks {
        task.await
            .unwrap()
            .expect("a tool or extractor ended cleanly");
    }

    let _ = stop_fleet.send(());
    fleet.await.unwrap().expect("the fleet tool ended cleanly");
    let _ = stop_extractor.send(());
    extractor
        .await
        .unwrap()
        .expect("the extractor ended cleanly");
}

fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every dashboard panel not listed as needing mainnet conditions whose queries had no real
/// sample (NaN does not count: `x == x` drops it) at any second of the last `window`.
async fn panels_without_data(prometheus_port: u16, window: Duration, work: &Path) -> Vec<String> {
    let queries_file = work.join("dashboard-queries.json");
    let dashboards: Vec<PathBuf> = std::fs::read_dir(repo_file("compose/grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    let status = Command::new("python3")
        .arg(repo_file("compose/grafana/check_dashboards.py"))
        .arg("--queries")
        .arg(&queries_file)
        .args(&dashboards)
        .stdout(Stdio::null())
        .status()
        .expect("python3");
    assert!(
        status.success(),
        "compose/grafana/check_dashboards.py failed"
    );
    let queries: Value =
        nodescope_regtest::serde_json::from_str(&std::fs::read_to_string(&queries_file).unwrap())
            .unwrap();
    let seconds = window.as_secs().max(5);
    // Per panel: did any of its queries have data?
    let mut panels: std::collections::BTreeMap<String, bool> = Default::default();
    for query in queries.as_array().unwrap() {
        if query["empty_on_regtest"].as_bool().unwrap_or(false) {
            continue;
        }
        let panel = format!(
            "{} {:?} (panel {})",
            query["dashboard"].as_str().unwrap(),
            query["title"].as_str().unwrap(),
            query["panel_id"]
        );
        let expr = query["promql"].as_str().unwrap();
        let probe = format!("count(count_over_time((({expr}) == ({expr}))[{seconds}s:1s]))");
        let url = format!(
            "http://127.0.0.1:{prometheus_port}/api/v1/query?query={}",
            percent_encoded(&probe)
        );
        let (status, body) = http_get(&url).await;
        assert_eq!(status, 200, "{probe}: {body}");
        let answer: Value = nodescope_regtest::serde_json::from_str(&body).unwrap();
        let has_data = !answer["data"]["result"].as_array().unwrap().is_empty();
        *panels.entry(panel).or_default() |= has_data;
    }
    panels
        .into_iter()
        .filter(|(_, has_data)| !has_data)
        .map(|(panel, _)| panel)
        .collect()
}

/// A GET of a server that may not listen yet: status 0 until it does.
async fn get_once_up(url: &str) -> (u16, String) {
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    match tokio::net::TcpStream::connect(host).await {
        Ok(_) => http_get(url).await,
        Err(_) => (0, String::new()),
    }
}
