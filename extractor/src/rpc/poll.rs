//! The polling loops: the fast methods every `--interval`, the slow ones every
//! `--slow-interval`, each pace in its own task so that a slow `getrawaddrman` never delays a
//! `getpeerinfo`. Every call ends as events: its answer, or its failure marked as an error.
//! gettxoutsetinfo is made only while the coinstatsindex can answer it (`--txoutsetinfo auto`).

use std::sync::Arc;
use std::time::Duration;

use nodescope_proto::event::Payload;
use nodescope_proto::rpc::{raw_addrman_parts, DecodedAnswer, Method, Pace};
use nodescope_proto::rpc_call::Result as Answer;
use nodescope_proto::{RpcCall, RpcFailure};
use tokio::sync::{mpsc, watch};

use super::client::{CallError, RpcClient};
use super::zmq::{self, Subscriptions};
use super::Emitted;

/// Most bytes of one getrawaddrman part: well within NATS's default 1 MiB `max_payload`.
const RAW_ADDRMAN_PART_BYTES: usize = 512 * 1024;

/// What the fast loop tells the ZMQ follower: where to subscribe, and a generation that moves
/// on when bitcoind restarted (its publishers then need new subscriptions).
pub struct ZmqWatch {
    pub sender: watch::Sender<(u64, Subscriptions)>,
    pub rpc_host: String,
    pub rawblock: bool,
}

/// When gettxoutsetinfo is called (`--txoutsetinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TxOutSetInfoMode {
    /// While getindexinfo says the coinstatsindex is synced: read from the index, cheap.
    Auto,
    /// At every slow poll, index or not (without it bitcoind scans the whole UTXO set).
    Always,
    /// Never, as with `--skip-calls gettxoutsetinfo`.
    Never,
}

/// The name getindexinfo gives -coinstatsindex.
const COINSTATSINDEX: &str = "coinstatsindex";

/// Whether getindexinfo's answer has the coinstatsindex, synced.
fn coinstats_synced(info: &nodescope_proto::IndexInfo) -> bool {
    info.indexes.get(COINSTATSINDEX).is_some_and(|i| i.synced)
}

/// Whether bitcoind answered last time: its ups and downs are logged once each, not per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reachability {
    Unknown,
    Up,
    Down,
}

pub struct Poller {
    pub client: Arc<RpcClient>,
    pub methods: Vec<Method>,
    pub interval: Duration,
    pub events: mpsc::Sender<Emitted>,
    pub txoutsetinfo: TxOutSetInfoMode,
}

impl Poller {
    /// Polls until the events' receiver is gone. The ZMQ subscriptions are refreshed by the
    /// loop given `zmq` (the fast one).
    pub async fn run(self, mut zmq: Option<ZmqWatch>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state = Reachability::Unknown;
        let mut last_uptime: Option<u64> = None;
        let mut raw_addrman_answers = 0u64;
        // Whether gettxoutsetinfo was made at the last poll (auto), to log each change once.
        let mut txoutsetinfo_made: Option<bool> = None;
        loop {
            tick.tick().await;
            let mut restarted = false;
            // What this poll's getindexinfo said of the coinstatsindex (None: not answered).
            let mut coinstats: Option<bool> = None;
            for &method in &self.methods {
                if method == Method::GetTxOutSetInfo && self.txoutsetinfo == TxOutSetInfoMode::Auto
                {
                    let synced = match coinstats {
                        Some(synced) => Some(synced),
                        // getindexinfo is not polled (--calls, --skip-calls): asked here.
                        None if !self.methods.contains(&Method::GetIndexInfo) => {
                            self.coinstats_synced().await
                        }
                        // It is, and failed (logged as such): bitcoind is down or starting.
                        None => None,
                    };
                    if synced.is_some() && txoutsetinfo_made != synced {
                        if synced == Some(true) {
                            tracing::info!("the coinstatsindex is synced: gettxoutsetinfo is read from it every slow interval");
                        } else {
                            tracing::info!("gettxoutsetinfo not called: getindexinfo shows no synced coinstatsindex, and without it bitcoind would scan the whole UTXO set (start bitcoind with -coinstatsindex, or give --txoutsetinfo always)");
                        }
                        txoutsetinfo_made = synced;
                    }
                    if synced != Some(true) {
                        continue;
                    }
                }
                let outcome = self.client.call(method.name(), &method.params()).await;
                let now = super::now_ns();
                let events = match outcome {
                    Ok(answer) => {
                        if state != Reachability::Up {
                            tracing::info!(endpoint = %self.client.endpoint().authority, "bitcoind answers RPC");
                            restarted |= state == Reachability::Down;
                            state = Reachability::Up;
                        }
                        let call = RpcCall {
                            method: method.name().to_string(),
                            duration_ns: answer.duration.as_nanos() as u64,
                            reply_bytes: answer.reply_bytes,
                            ..RpcCall::default()
                        };
                        match method.decode(answer.result) {
                            Ok(decoded) => {
                                match &decoded.answer {
                                    DecodedAnswer::One(Answer::Uptime(uptime)) => {
                                        restarted |=
                                            last_uptime.is_some_and(|last| uptime.seconds < last);
                                        last_uptime = Some(uptime.seconds);
                                    }
                                    DecodedAnswer::One(Answer::IndexInfo(info)) => {
                                        coinstats = Some(coinstats_synced(info));
                                    }
                                    _ => {}
                                }
                                answered(call, decoded, now, &mut raw_addrman_answers)
                            }
                            Err(bad) => vec![failed(
                                call,
                                CallError {
                                    kind: nodescope_proto::RpcFailureKind::BadAnswer,
                                    code: 0,
                                    message: bad.to_string(),
                                    duration: answer.duration,
                                    reply_bytes: answer.reply_bytes,
                                },
                                now,
                            )],
                        }
                    }
                    Err(error) => {
                        state = log_failure(state, &error);
                        let call = RpcCall {
                            method: method.name().to_string(),
                            duration_ns: error.duration.as_nanos() as u64,
                            reply_bytes: error.reply_bytes,
                            ..RpcCall::default()
                        };
                        vec![failed(call, error, now)]
                    }
                };
                for event in events {
                    if self.events.send(event).await.is_err() {
                        return;
                    }
                }
            }
            if let Some(zmq) = zmq.as_mut() {
                // Until the first listing succeeds, and after every restart of bitcoind.
                let first = zmq.sender.borrow().0 == 0;
                if (first && state != Reachability::Down) || restarted {
                    self.refresh_zmq(zmq).await;
                }
            }
        }
    }

    /// Asks getindexinfo (not published: it is not a polled call) whether the coinstatsindex
    /// is synced; `None` when bitcoind gave no answer.
    async fn coinstats_synced(&self) -> Option<bool> {
        let method = Method::GetIndexInfo;
        let answer = self
            .client
            .call(method.name(), &serde_json::json!([COINSTATSINDEX]))
            .await
            .map_err(|e| e.to_string())
            .and_then(|a| method.decode(a.result).map_err(|e| e.to_string()));
        match answer {
            Ok(nodescope_proto::rpc::Decoded {
                answer: DecodedAnswer::One(Answer::IndexInfo(info)),
                ..
            }) => Some(coinstats_synced(&info)),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!("getindexinfo, asked before gettxoutsetinfo: {e}");
                None
            }
        }
    }

    /// Asks `getzmqnotifications` where bitcoind publishes, and has the follower subscribe.
    async fn refresh_zmq(&self, zmq: &mut ZmqWatch) {
        match self
            .client
            .call("getzmqnotifications", &serde_json::json!([]))
            .await
        {
            Ok(answer) => {
                let wanted = zmq::subscriptions(&answer.result, &zmq.rpc_host, zmq.rawblock);
                if wanted.is_empty() {
                    tracing::info!("bitcoind publishes no ZMQ topic nodescope reads (-zmqpubhashblock, -zmqpubhashtx, -zmqpubsequence, -zmqpubrawblock with --zmq-rawblock)");
                }
                zmq.sender.send_modify(|(generation, subscriptions)| {
                    *generation += 1;
                    *subscriptions = wanted;
                });
            }
            Err(e) => tracing::warn!("cannot list bitcoind's ZMQ publishers: {e}"),
        }
    }
}

fn log_failure(state: Reachability, error: &CallError) -> Reachability {
    use nodescope_proto::RpcFailureKind as K;
    let down = matches!(error.kind, K::Unreachable | K::Timeout | K::Auth) || error.is_warming_up();
    if !down {
        tracing::warn!("{error}");
        return state;
    }
    if state != Reachability::Down {
        if error.is_warming_up() {
            tracing::info!("bitcoind is starting, waiting for it: {error}");
        } else {
            tracing::warn!("{error}; retrying every interval");
        }
    }
    Reachability::Down
}

fn answered(
    call: RpcCall,
    decoded: nodescope_proto::rpc::Decoded,
    now: u64,
    raw_addrman_answers: &mut u64,
) -> Vec<Emitted> {
    let call = RpcCall {
        unknown_fields: decoded.unknown_fields,
        ..call
    };
    let event = |call: RpcCall| Emitted {
        timestamp_ns: now,
        payload: Payload::RpcCall(call),
        error: String::new(),
    };
    match decoded.answer {
        DecodedAnswer::One(answer) => vec![event(RpcCall {
            result: Some(answer),
            ..call
        })],
        DecodedAnswer::RawAddrman(entries) => {
            *raw_addrman_answers += 1;
            let parts = raw_addrman_parts(entries, *raw_addrman_answers, RAW_ADDRMAN_PART_BYTES);
            if parts.len() > 1 {
                tracing::debug!(parts = parts.len(), "getrawaddrman answer split in parts");
            }
            parts
                .into_iter()
                .map(|part| {
                    event(RpcCall {
                        result: Some(Answer::RawAddrman(part)),
                        ..call.clone()
                    })
                })
                .collect()
        }
    }
}

fn failed(call: RpcCall, error: CallError, now: u64) -> Emitted {
    Emitted {
        timestamp_ns: now,
        error: error.message.clone(),
        payload: Payload::RpcCall(RpcCall {
            result: Some(Answer::Failure(RpcFailure {
                kind: error.kind as i32,
                code: error.code,
                message: error.message,
            })),
            ..call
        }),
    }
}

/// The methods of one pace, in call order.
pub fn of_pace(methods: &[Method], pace: Pace) -> Vec<Method> {
    methods
        .iter()
        .copied()
        .filter(|m| m.pace() == pace)
        .collect()
}
