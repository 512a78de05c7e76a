//! bitcoind's ZMQ publishers (`-zmqpub…`): every notification becomes a `ZmqNotification` event
//! stamped with the time it arrived, and the publisher's per-topic counter is checked, so that
//! messages its high-water mark dropped are counted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use nodescope_proto::event::Payload;
use nodescope_proto::{zmq_notification::Body, ZmqNotification, ZmqSequence};
use tokio::sync::{mpsc, watch};
use zeromq::{Socket, SocketRecv};

use super::Emitted;

/// The topics published as events; `rawblock` only with `--zmq-rawblock`.
pub const TOPICS: &[&str] = &["hashblock", "hashtx", "rawblock", "sequence"];

/// Where to subscribe: per endpoint, its topics.
pub type Subscriptions = BTreeMap<String, BTreeSet<String>>;

/// The subscriptions `getzmqnotifications` lists: `pubhashblock` at `tcp://0.0.0.0:28332`
/// becomes topic `hashblock` at `tcp://<rpc host>:28332` (a wildcard bind is reached at the
/// host RPC is reached at).
pub fn subscriptions(
    notifications: &serde_json::Value,
    rpc_host: &str,
    rawblock: bool,
) -> Subscriptions {
    let mut wanted = Subscriptions::new();
    for item in notifications.as_array().into_iter().flatten() {
        let (Some(kind), Some(address)) = (item["type"].as_str(), item["address"].as_str()) else {
            continue;
        };
        let Some(topic) = kind.strip_prefix("pub") else {
            continue;
        };
        if !TOPICS.contains(&topic) || (topic == "rawblock" && !rawblock) {
            continue;
        }
        wanted
            .entry(reachable(address, rpc_host))
            .or_default()
            .insert(topic.to_string());
    }
    wanted
}

fn reachable(address: &str, rpc_host: &str) -> String {
    for wildcard in ["tcp://0.0.0.0:", "tcp://*:", "tcp://[::]:"] {
        if let Some(port) = address.strip_prefix(wildcard) {
            return format!("tcp://{rpc_host}:{port}");
        }
    }
    address.to_string()
}

/// Follows the latest subscriptions: (re)subscribes whenever they change or bitcoind restarted
/// (a new generation), and forwards every notification.
pub async fn follow(
    mut wanted: watch::Receiver<(u64, Subscriptions)>,
    events: mpsc::Sender<Emitted>,
    paused: watch::Receiver<bool>,
) {
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let counters = Counters::default();
    loop {
        let (_, subscriptions) = wanted.borrow_and_update().clone();
        for (_, task) in running.drain() {
            task.abort();
        }
        for (endpoint, topics) in subscriptions {
            let task = tokio::spawn(subscribe(
                endpoint.clone(),
                topics,
                events.clone(),
                paused.clone(),
                counters.clone(),
            ));
            running.insert(endpoint, task);
        }
        if wanted.changed().await.is_err() {
            break;
        }
    }
    for (_, task) in running {
        task.abort();
    }
}

/// Last counter seen per (endpoint, topic), kept across reconnections: what was published
/// while we were away is counted as missed.
type Counters = std::sync::Arc<std::sync::Mutex<HashMap<(String, String), u32>>>;

/// Retry delays for an endpoint that does not accept the connection.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

async fn subscribe(
    endpoint: String,
    topics: BTreeSet<String>,
    events: mpsc::Sender<Emitted>,
    mut paused: watch::Receiver<bool>,
    counters: Counters,
) {
    let mut retry = RETRY_MIN;
    loop {
        let mut socket = zeromq::SubSocket::new();
        if let Err(e) = socket.connect(&endpoint).await {
            tracing::warn!(%endpoint, "cannot subscribe to bitcoind's ZMQ: {e}; retrying in {retry:?}");
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
            continue;
        }
        retry = RETRY_MIN;
        let mut subscribed = true;
        for topic in &topics {
            if let Err(e) = socket.subscribe(topic).await {
                tracing::warn!(%endpoint, topic, "ZMQ subscribe failed: {e}");
                subscribed = false;
            }
        }
        if !subscribed {
            continue;
        }
        tracing::info!(%endpoint, topics = ?topics, "subscribed to bitcoind's ZMQ");
        loop {
            // Tests stop reading here to make bitcoind's high-water mark drop messages.
            while *paused.borrow() {
                if paused.changed().await.is_err() {
                    return;
                }
            }
            match socket.recv().await {
                Ok(message) => {
                    let received_ns = super::now_ns();
                    let notification = notification(&endpoint, message.into_vec(), &counters);
                    if events
                        .send(notification.stamped(received_ns))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(%endpoint, "ZMQ connection lost: {e}; reconnecting");
                    break;
                }
            }
        }
    }
}

/// A notification, and what was wrong with it (for the event's error mark).
struct Received {
    notification: ZmqNotification,
    error: String,
}

impl Received {
    fn stamped(self, timestamp_ns: u64) -> Emitted {
        Emitted {
            timestamp_ns,
            payload: Payload::ZmqNotification(self.notification),
            error: self.error,
        }
    }
}

/// Most bytes of a body kept when it is not what its topic carries.
const MALFORMED_KEEP: usize = 64;

/// `[topic, body, counter (4 bytes LE)]`, as bitcoind's notifiers send them.
fn notification(endpoint: &str, frames: Vec<Bytes>, counters: &Counters) -> Received {
    let mut notification = ZmqNotification {
        endpoint: endpoint.to_string(),
        ..ZmqNotification::default()
    };
    let [topic, body, counter] = frames.as_slice() else {
        notification.topic = frames
            .first()
            .map(|t| String::from_utf8_lossy(&t[..t.len().min(MALFORMED_KEEP)]).into_owned())
            .unwrap_or_default();
        return Received {
            notification,
            error: format!(
                "a ZMQ message of {} frames (bitcoind sends topic, body, counter)",
                frames.len()
            ),
        };
    };
    notification.topic =
        String::from_utf8_lossy(&topic[..topic.len().min(MALFORMED_KEEP)]).into_owned();
    let mut errors = Vec::new();
    match <[u8; 4]>::try_from(counter.as_ref()) {
        Ok(counter) => {
            let sequence = u32::from_le_bytes(counter);
            notification.zmq_sequence = sequence;
            let mut last = counters.lock().unwrap_or_else(|e| e.into_inner());
            let key = (endpoint.to_string(), notification.topic.clone());
            notification.missed_before = match last.insert(key, sequence) {
                // A counter that went back: bitcoind restarted, and counts from 0 again.
                Some(previous) if sequence <= previous => sequence,
                Some(previous) => sequence - previous - 1,
                // The first since we started: what came before is not ours to count.
                None => 0,
            };
        }
        Err(_) => errors.push(format!("a counter frame of {} bytes, not 4", counter.len())),
    }
    let body = body.clone();
    notification.body = Some(match notification.topic.as_str() {
        "hashblock" | "hashtx" if body.len() == 32 => Body::Hash(body.to_vec()),
        "rawblock" => Body::RawBlock(body.to_vec()),
        "sequence" if body.len() == 33 || body.len() == 41 => {
            let label = body[32] as char;
            let mempool_sequence = (body.len() == 41)
                .then(|| u64::from_le_bytes(body[33..41].try_into().expect("8 bytes")));
            if !matches!(
                (label, mempool_sequence.is_some()),
                ('C' | 'D', false) | ('A' | 'R', true)
            ) {
                errors.push(format!(
                    "sequence label {label:?} with a body of {} bytes",
                    body.len()
                ));
            }
            Body::Sequence(ZmqSequence {
                hash: body[..32].to_vec(),
                label: label.to_string(),
                mempool_sequence,
            })
        }
        other => {
            errors.push(format!(
                "a {other:?} body of {} bytes, not what bitcoind sends for it",
                body.len()
            ));
            Body::Hash(body[..body.len().min(MALFORMED_KEEP)].to_vec())
        }
    });
    Received {
        notification,
        error: errors.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frames(topic: &str, body: &[u8], counter: u32) -> Vec<Bytes> {
        vec![
            Bytes::copy_from_slice(topic.as_bytes()),
            Bytes::copy_from_slice(body),
            Bytes::copy_from_slice(&counter.to_le_bytes()),
        ]
    }

    #[test]
    fn subscriptions_come_from_getzmqnotifications() {
        let listed = json!([
            {"type": "pubhashblock", "address": "tcp://0.0.0.0:28332", "hwm": 1000},
            {"type": "pubhashtx", "address": "tcp://0.0.0.0:28332", "hwm": 1000},
            {"type": "pubrawblock", "address": "tcp://127.0.0.1:28333", "hwm": 1000},
            {"type": "pubrawtx", "address": "tcp://127.0.0.1:28333", "hwm": 1000},
            {"type": "pubsequence", "address": "tcp://10.0.0.2:28334", "hwm": 1000},
        ]);
        let wanted = subscriptions(&listed, "bitcoind", false);
        assert_eq!(
            wanted,
            BTreeMap::from([
                (
                    "tcp://bitcoind:28332".to_string(),
                    BTreeSet::from(["hashblock".into(), "hashtx".into()])
                ),
                (
                    "tcp://10.0.0.2:28334".to_string(),
                    BTreeSet::from(["sequence".into()])
                ),
            ])
        );
        assert!(subscriptions(&listed, "h", true).contains_key("tcp://127.0.0.1:28333"));
    }

    #[test]
    fn counter_jumps_are_missed_messages_and_a_reset_is_a_restart() {
        let counters = Counters::default();
        let hash = [7u8; 32];
        let missed = |counter| {
            let r = notification("e", frames("hashblock", &hash, counter), &counters);
            assert!(r.error.is_empty(), "{}", r.error);
            r.notification.missed_before
        };
        assert_eq!(missed(5), 0);
        assert_eq!(missed(6), 0);
        assert_eq!(missed(10), 3);
        assert_eq!(missed(2), 2);
    }

    #[test]
    fn sequence_bodies_and_malformed_ones() {
        let counters = Counters::default();
        let mut body = vec![1u8; 32];
        body.push(b'A');
        body.extend_from_slice(&42u64.to_le_bytes());
        let r = notification("e", frames("sequence", &body, 0), &counters);
        assert_eq!(
            r.notification.body,
            Some(Body::Sequence(ZmqSequence {
                hash: vec![1; 32],
                label: "A".into(),
                mempool_sequence: Some(42)
            }))
        );
        let r = notification("e", frames("hashtx", &[1, 2, 3], 1), &counters);
        assert!(r.error.contains("3 bytes"), "{}", r.error);
        let r = notification("e", vec![Bytes::from_static(b"hashtx")], &counters);
        assert!(r.error.contains("1 frames"), "{}", r.error);
    }
}
