//! `extractor rpc`: what bitcoind says about itself over JSON-RPC (peer table, mempool, traffic
//! totals, memory, address manager, chain state, uptime…) and its ZMQ notifications, published
//! on `<prefix>.<node>.rpc` and `<prefix>.<node>.zmq` through the same envelope and publisher
//! as `extractor ebpf`.

pub mod client;
mod poll;
pub mod zmq;

pub use poll::TxOutSetInfoMode;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nodescope_proto::event::Payload;
use nodescope_proto::rpc::{Method, Pace};
use nodescope_proto::rpc_call::Result as Answer;
use nodescope_proto::{ExtractorKind, ExtractorStats};
use nodescope_publish::{host_name, new_run_id, Envelope, EventBuffer, Publisher};
use prost::Message;
use tokio::sync::{mpsc, watch};

use crate::identity::ProcessIdentity;
use client::{Auth, Endpoint, RpcClient};

#[derive(Debug, Args)]
pub struct RpcArgs {
    /// The node's chain as Bitcoin Core names it (main, test, testnet4, signet, regtest): picks
    /// the default RPC port and cookie directory, and names the node.
    #[arg(long, env = "NODESCOPE_CHAIN", default_value = "main", value_parser = parse_chain)]
    pub chain: String,
    /// bitcoind's RPC server, `http://host:port` (an -rpcbind address). Default: 127.0.0.1 and
    /// the chain's port (8332, 18332, 48332, 38332, 18443).
    #[arg(long, env = "NODESCOPE_RPC_URL")]
    pub rpc_url: Option<String>,
    /// bitcoind's -datadir, where the cookie is (`<datadir>/<chain dir>/.cookie`); also names
    /// the node like `extractor ebpf` does. Default: ~/.bitcoin.
    #[arg(long, env = "NODESCOPE_BITCOIN_DATADIR")]
    pub datadir: Option<PathBuf>,
    /// The cookie file itself (bitcoind's -rpccookiefile); read at every call, so a restarted
    /// bitcoind's new cookie is used.
    #[arg(long, env = "NODESCOPE_RPC_COOKIE_FILE")]
    pub rpc_cookie_file: Option<PathBuf>,
    /// A user of -rpcuser or -rpcauth (with --rpc-password) instead of the cookie.
    #[arg(long, env = "NODESCOPE_RPC_USER", requires = "rpc_password")]
    pub rpc_user: Option<String>,
    #[arg(
        long,
        env = "NODESCOPE_RPC_PASSWORD",
        hide_env_values = true,
        requires = "rpc_user"
    )]
    pub rpc_password: Option<String>,
    /// Time between polls of the fast methods (getpeerinfo, getmempoolinfo, getnettotals,
    /// getmemoryinfo, uptime, getblockchaininfo, getnetworkinfo), e.g. `10s`, `500ms`.
    #[arg(long, env = "NODESCOPE_RPC_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Time between polls of the expensive ones (getaddrmaninfo, getchaintxstats,
    /// getorphantxs, getrawaddrman, getindexinfo, gettxoutsetinfo).
    #[arg(long, env = "NODESCOPE_RPC_SLOW_INTERVAL", default_value = "120s", value_parser = parse_duration)]
    pub slow_interval: Duration,
    /// Methods to call: `all`, or a comma-separated list of them.
    #[arg(long, env = "NODESCOPE_RPC_CALLS", default_value = "all", value_parser = parse_methods)]
    pub calls: BTreeSet<Method>,
    /// Methods not to call (e.g. `getrawaddrman` on a node with a large address manager).
    #[arg(long, env = "NODESCOPE_RPC_SKIP_CALLS", value_parser = parse_methods)]
    pub skip_calls: Option<BTreeSet<Method>>,
    /// When to call gettxoutsetinfo: `auto` only while getindexinfo shows a synced
    /// -coinstatsindex (read from the index: cheap), `always` (without the index bitcoind scans
    /// the whole UTXO set: minutes of disk reads on mainnet, so raise --rpc-timeout), or `never`.
    #[arg(long, env = "NODESCOPE_RPC_TXOUTSETINFO", value_enum, default_value_t = TxOutSetInfoMode::Auto)]
    pub txoutsetinfo: TxOutSetInfoMode,
    /// Most time one call may take before it counts as failed (timed out).
    #[arg(long, env = "NODESCOPE_RPC_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub rpc_timeout: Duration,
    /// Largest answer read, in MiB; a larger one is a failed call (too_large).
    #[arg(long, env = "NODESCOPE_RPC_MAX_REPLY_MIB", default_value_t = 64)]
    pub rpc_max_reply_mib: usize,
    /// Do not subscribe to bitcoind's ZMQ publishers.
    #[arg(long, env = "NODESCOPE_NO_ZMQ")]
    pub no_zmq: bool,
    /// Also publish whole blocks from `-zmqpubrawblock` (each up to 4 MB).
    #[arg(long, env = "NODESCOPE_ZMQ_RAWBLOCK")]
    pub zmq_rawblock: bool,
    /// The node these events are about. Default: `<host>-<chain>`, with `-<hash of datadir>`
    /// when --datadir is given, as `extractor ebpf` names the same node.
    #[arg(long, env = "NODESCOPE_NODE_ID")]
    pub node_id: Option<String>,
    /// Most MiB of memory for events waiting for NATS; beyond it the oldest are dropped
    /// (and counted).
    #[arg(long, env = "NODESCOPE_NATS_BUFFER_MIB", default_value_t = 16)]
    pub nats_buffer_mib: usize,
    /// Seconds between `extractor` stats events (and log lines).
    #[arg(long, env = "NODESCOPE_STATS_INTERVAL", default_value_t = 10)]
    pub stats_interval: u64,
    /// Write this file once bitcoind has answered a call (and remove it at the stop): a
    /// readiness signal for a container's health check or a supervisor.
    #[arg(long, env = "NODESCOPE_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    #[command(flatten)]
    pub nats: nodescope_bus::NatsArgs,
}

/// For tests: stops the ZMQ subscribers' socket reads while `true`.
pub type ZmqPause = watch::Receiver<bool>;

/// One event on its way to the envelope: the RPC loops and ZMQ subscribers make them, the main
/// loop numbers and publishes them.
pub struct Emitted {
    pub timestamp_ns: u64,
    pub payload: Payload,
    /// The event's error mark; empty when whole.
    pub error: String,
}

pub async fn run(args: RpcArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (_keep, paused) = watch::channel(false);
    run_with_pause(args, shutdown, paused).await
}

/// [`run`], with the ZMQ reads stopped while `paused` says so.
pub async fn run_with_pause(
    args: RpcArgs,
    shutdown: impl Future<Output = ()>,
    paused: ZmqPause,
) -> anyhow::Result<()> {
    let url = args
        .rpc_url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", default_port(&args.chain)));
    let endpoint = Endpoint::parse(&url).map_err(anyhow::Error::msg)?;
    let auth = match (&args.rpc_user, &args.rpc_password) {
        (Some(user), Some(password)) => Auth::UserPassword {
            user: user.clone(),
            password: password.clone(),
        },
        _ => Auth::Cookie(cookie_path(&args)?),
    };
    let methods = chosen_methods(&args);
    let node_id = args.node_id.clone().unwrap_or_else(|| {
        ProcessIdentity {
            chain: args.chain.clone(),
            datadir: args.datadir.as_deref().map(absolute),
        }
        .node_id(&host_name())
    });
    let mut envelope = Envelope::new(
        &args.nats.subject_prefix,
        &node_id,
        &args.chain,
        ExtractorKind::Rpc,
        new_run_id(),
    )?;
    let rpc_host = endpoint
        .authority
        .rsplit_once(':')
        .map_or(endpoint.authority.as_str(), |(host, _)| host)
        .to_string();
    tracing::info!(
        rpc = %url,
        auth = match &auth { Auth::Cookie(path) => format!("cookie {}", path.display()), Auth::UserPassword { user, .. } => format!("user {user}") },
        node = %node_id,
        run_id = envelope.run_id(),
        calls = %methods.iter().map(|m| m.name()).collect::<Vec<_>>().join(","),
        interval = ?args.interval,
        slow_interval = ?args.slow_interval,
        txoutsetinfo = ?args.txoutsetinfo,
        zmq = !args.no_zmq,
        "polling bitcoind"
    );
    let client = Arc::new(RpcClient::new(
        endpoint,
        auth,
        args.rpc_timeout,
        args.rpc_max_reply_mib << 20,
    ));

    let connection = args.nats.connect("nodescope-extractor-rpc").await?;
    let publisher = Publisher::start(connection, args.nats_buffer_mib * 1024 * 1024);

    let (events, mut incoming) = mpsc::channel::<Emitted>(EVENT_CHANNEL);
    let (zmq_sender, zmq_wanted) = watch::channel((0u64, zmq::Subscriptions::new()));
    let zmq_watch = (!args.no_zmq).then_some(poll::ZmqWatch {
        sender: zmq_sender,
        rpc_host,
        rawblock: args.zmq_rawblock,
    });
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(
        poll::Poller {
            client: client.clone(),
            methods: poll::of_pace(&methods, Pace::Fast),
            interval: args.interval,
            events: events.clone(),
            txoutsetinfo: args.txoutsetinfo,
        }
        .run(zmq_watch),
    );
    let slow = poll::of_pace(&methods, Pace::Slow);
    if !slow.is_empty() {
        tasks.spawn(
            poll::Poller {
                client,
                methods: slow,
                interval: args.slow_interval,
                events: events.clone(),
                txoutsetinfo: args.txoutsetinfo,
            }
            .run(None),
        );
    }
    if !args.no_zmq {
        tasks.spawn(zmq::follow(zmq_wanted, events.clone(), paused));
    }
    drop(events);

    let mut counts = Counts::default();
    let mut buffer = EventBuffer::default();
    let mut ready = None;
    let mut stats = tokio::time::interval(Duration::from_secs(args.stats_interval.max(1)));
    stats.tick().await;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = stats.tick() => {
                publish_stats(&publisher, &mut envelope, &counts);
                if let Some(failure) = publisher.failure() {
                    anyhow::bail!("{failure}");
                }
            }
            Some(emitted) = incoming.recv() => {
                counts.count(&emitted);
                if let (Some(path), None, true) = (&args.ready_file, &ready, answered(&emitted)) {
                    ready = Some(crate::cli::ReadyFile::saying(path, "bitcoind answers RPC")?);
                }
                if let Payload::RpcCall(call) = &emitted.payload {
                    learn_chain(&mut envelope, call);
                }
                publish_emitted(&publisher, &mut envelope, &emitted, &mut buffer);
            }
        }
    }
    tasks.abort_all();
    // What was made before the stop is published, then the final stats.
    while let Ok(emitted) = incoming.try_recv() {
        counts.count(&emitted);
        publish_emitted(&publisher, &mut envelope, &emitted, &mut buffer);
    }
    let deadline = tokio::time::Instant::now() + STOP_BUDGET;
    publisher.flush(deadline - FINAL_STATS_TIME).await;
    publish_stats(&publisher, &mut envelope, &counts);
    let last = publisher
        .close(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await;
    tracing::info!(
        "stopped: published {}; dropped: queue full {}, too large {}, unpublished at exit {}",
        last.published,
        last.dropped_queue_full,
        last.dropped_too_large,
        last.queued
    );
    Ok(())
}

/// The methods to call: --calls without --skip-calls, gettxoutsetinfo not with
/// `--txoutsetinfo never`.
fn chosen_methods(args: &RpcArgs) -> Vec<Method> {
    args.calls
        .iter()
        .filter(|m| {
            !args
                .skip_calls
                .as_ref()
                .is_some_and(|skip| skip.contains(m))
        })
        .filter(|m| **m != Method::GetTxOutSetInfo || args.txoutsetinfo != TxOutSetInfoMode::Never)
        .copied()
        .collect()
}

/// Events waiting between the RPC/ZMQ tasks and the publisher: a full channel holds the ZMQ
/// reads back, and bitcoind's high-water mark then drops (counted as missed).
const EVENT_CHANNEL: usize = 4096;
/// From the stop to the end of `run`: publishing what is queued, then the final stats.
const STOP_BUDGET: Duration = Duration::from_millis(1500);
const FINAL_STATS_TIME: Duration = Duration::from_millis(300);

/// Publishes an answer or notification, with its error mark, as the envelope's next event.
fn publish_emitted(
    publisher: &Publisher,
    envelope: &mut Envelope,
    emitted: &Emitted,
    buffer: &mut EventBuffer,
) {
    crate::envelope::publish(
        publisher,
        envelope,
        emitted.timestamp_ns,
        &emitted.payload,
        &emitted.error,
        buffer,
    );
}

fn answered(emitted: &Emitted) -> bool {
    matches!(&emitted.payload, Payload::RpcCall(call) if !matches!(call.result, Some(Answer::Failure(_))))
}

/// The chain bitcoind names in getblockchaininfo wins over --chain (and is said).
fn learn_chain(envelope: &mut Envelope, call: &nodescope_proto::RpcCall) {
    if let Some(Answer::BlockchainInfo(info)) = &call.result {
        if !info.chain.is_empty() && info.chain != envelope.chain() {
            tracing::warn!(
                configured = envelope.chain(),
                node = %info.chain,
                "bitcoind runs another chain than --chain: events now say {}",
                info.chain
            );
            envelope.set_chain(&info.chain);
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    rpc_calls: std::collections::HashMap<String, u64>,
    rpc_failures: std::collections::HashMap<String, u64>,
    zmq_received: std::collections::HashMap<String, u64>,
    zmq_missed: std::collections::HashMap<String, u64>,
    events: u64,
}

impl Counts {
    fn count(&mut self, emitted: &Emitted) {
        self.events += 1;
        match &emitted.payload {
            Payload::RpcCall(call) => {
                // A getrawaddrman answer in parts counts once.
                if let Some(Answer::RawAddrman(part)) = &call.result {
                    if part.part > 0 {
                        return;
                    }
                }
                let map = match call.result {
                    Some(Answer::Failure(_)) => &mut self.rpc_failures,
                    _ => &mut self.rpc_calls,
                };
                *map.entry(call.method.clone()).or_default() += 1;
            }
            Payload::ZmqNotification(n) => {
                *self.zmq_received.entry(n.topic.clone()).or_default() += 1;
                if n.missed_before > 0 {
                    *self.zmq_missed.entry(n.topic.clone()).or_default() += n.missed_before as u64;
                }
            }
            _ => {}
        }
    }
}

fn publish_stats(publisher: &Publisher, envelope: &mut Envelope, counts: &Counts) {
    let published = publisher.stats();
    let failures: u64 = counts.rpc_failures.values().sum();
    let missed: u64 = counts.zmq_missed.values().sum();
    let message = format!(
        "made {} events ({} calls answered, {} failed; {} ZMQ notifications, {} missed), published {}, queued {}; dropped: queue full {}, too large {}",
        counts.events,
        counts.rpc_calls.values().sum::<u64>(),
        failures,
        counts.zmq_received.values().sum::<u64>(),
        missed,
        published.published,
        published.queued,
        published.dropped_queue_full,
        published.dropped_too_large,
    );
    if published.dropped_queue_full + published.dropped_too_large + missed > 0 {
        tracing::warn!("{message}");
    } else {
        tracing::info!("{message}");
    }
    let stats = ExtractorStats {
        events_read: counts.events,
        published: published.published,
        dropped_queue_full: published.dropped_queue_full,
        dropped_too_large: published.dropped_too_large,
        resent: published.resent,
        queued: published.queued,
        queued_bytes: published.queued_bytes,
        rpc_calls: counts.rpc_calls.clone(),
        rpc_failures: counts.rpc_failures.clone(),
        zmq_received: counts.zmq_received.clone(),
        zmq_missed: counts.zmq_missed.clone(),
        ..ExtractorStats::default()
    };
    let (subject, event) =
        envelope.wrap(std::process::id(), now_ns(), Payload::ExtractorStats(stats));
    publisher.send_report(subject, event.encode_to_vec().into());
}

pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

const CHAINS: &[&str] = &["main", "test", "testnet4", "signet", "regtest"];

pub fn parse_chain(text: &str) -> Result<String, String> {
    match text {
        "mainnet" => Ok("main".into()),
        "testnet" | "testnet3" => Ok("test".into()),
        chain if CHAINS.contains(&chain) => Ok(chain.into()),
        other => Err(format!(
            "unknown chain {other:?}: use one of {}",
            CHAINS.join(", ")
        )),
    }
}

/// bitcoind's default -rpcport per chain.
fn default_port(chain: &str) -> u16 {
    match chain {
        "test" => 18332,
        "testnet4" => 48332,
        "signet" => 38332,
        "regtest" => 18443,
        _ => 8332,
    }
}

/// The chain's subdirectory of the datadir, where bitcoind writes `.cookie`.
fn chain_dir(chain: &str) -> &'static str {
    match chain {
        "test" => "testnet3",
        "testnet4" => "testnet4",
        "signet" => "signet",
        "regtest" => "regtest",
        _ => "",
    }
}

fn cookie_path(args: &RpcArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.rpc_cookie_file {
        return Ok(path.clone());
    }
    let datadir = match &args.datadir {
        Some(datadir) => datadir.clone(),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".bitcoin"))
            .context("no --datadir, --rpc-cookie-file or --rpc-user given, and no $HOME to find ~/.bitcoin in")?,
    };
    Ok(datadir.join(chain_dir(&args.chain)).join(".cookie"))
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = match text.parse::<f64>() {
        // A bare number is seconds.
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Duration::from_secs_f64(seconds),
        _ => humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration such as 10s or 500ms: {e}"))?,
    };
    if duration.is_zero() {
        return Err(format!("{text:?}: a duration must be more than 0"));
    }
    Ok(duration)
}

fn parse_methods(text: &str) -> Result<BTreeSet<Method>, String> {
    let mut methods = BTreeSet::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "all" {
            methods.extend(Method::ALL.iter().copied());
            continue;
        }
        methods.insert(Method::from_name(item).ok_or_else(|| {
            format!(
                "unknown RPC method {item:?}: use `all` or some of {}",
                Method::ALL
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?);
    }
    Ok(methods)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_ports_and_cookie_directories() {
        assert_eq!(parse_chain("testnet3").unwrap(), "test");
        assert!(parse_chain("litecoin").unwrap_err().contains("regtest"));
        assert_eq!(
            (default_port("regtest"), chain_dir("regtest")),
            (18443, "regtest")
        );
        assert_eq!((default_port("main"), chain_dir("main")), (8332, ""));
    }

    #[test]
    fn durations_and_method_lists() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("0s").is_err());
        assert_eq!(
            parse_methods("uptime").unwrap(),
            BTreeSet::from([Method::Uptime])
        );
        assert_eq!(parse_methods("all").unwrap().len(), Method::ALL.len());
        assert!(parse_methods("getblock")
            .unwrap_err()
            .contains("getpeerinfo"));
    }

    #[test]
    fn txoutsetinfo_is_auto_by_default_and_never_drops_the_call() {
        let parse = |extra: &[&str]| {
            let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(
                ["extractor", "rpc"].iter().chain(extra),
            )
            .map_err(|e| e.to_string())?;
            let crate::cli::Command::Rpc(args) = cli.command else {
                unreachable!("parsed as rpc")
            };
            Ok::<_, String>(args)
        };
        let args = parse(&[]).unwrap();
        assert_eq!(args.txoutsetinfo, TxOutSetInfoMode::Auto);
        assert!(chosen_methods(&args).contains(&Method::GetTxOutSetInfo));
        let never = parse(&["--txoutsetinfo", "never"]).unwrap();
        assert_eq!(chosen_methods(&never).len(), Method::ALL.len() - 1);
        assert!(!chosen_methods(&never).contains(&Method::GetTxOutSetInfo));
        let skipped = parse(&["--skip-calls", "gettxoutsetinfo"]).unwrap();
        assert_eq!(chosen_methods(&skipped), chosen_methods(&never));
        let always = parse(&["--txoutsetinfo", "always", "--calls", "gettxoutsetinfo"]).unwrap();
        assert_eq!(chosen_methods(&always), [Method::GetTxOutSetInfo]);
        let error = parse(&["--txoutsetinfo", "sometimes"]).unwrap_err();
        assert!(error.contains("auto, always, never"), "{error}");
    }
}
