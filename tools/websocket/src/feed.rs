//! What the bus task hands to clients: events rendered once, to whole websocket frames shared by
//! every client, on a broadcast channel each client reads at its own pace, and the nodes' states
//! rendered a few times a second, on a watch channel (a client always gets the newest).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nodescope_consumer::{Health, Received};
use nodescope_proto::Category;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Bytes;
use tokio_util::sync::CancellationToken;

use crate::state::Nodes;
use crate::{wire, Args};

/// One event, ready to send: the websocket frame of `{"type":"event","category":…,"event":{…}}`.
#[derive(Debug)]
pub struct Frame {
    pub node: String,
    pub category: Category,
    pub wire: Bytes,
}

/// The nodes' latest state frames (websocket frames, ready to send), each with a version that
/// grows when it changes, and the frame of the feed's own counters.
#[derive(Debug, Default, Clone)]
pub struct States {
    pub nodes: BTreeMap<String, (u64, Bytes)>,
    pub feed: Bytes,
}

/// Every drop and disconnection the feed causes, for `/metrics`, `/healthz`, the page and the
/// logs.
#[derive(Debug, Default, Serialize)]
pub struct FeedCounters {
    /// Clients connected now.
    pub clients: AtomicU64,
    /// Websocket connections accepted since start.
    pub connections: AtomicU64,
    /// Events clients lost by falling a whole queue behind.
    pub lagged_events: AtomicU64,
    /// Clients disconnected because a write to them stalled.
    pub stalled_disconnects: AtomicU64,
    /// Upgrade requests refused for their Origin.
    pub refused_origins: AtomicU64,
}

impl Collector for FeedCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let clients = ConstGauge::new(read(&self.clients) as i64);
        clients.encode(encoder.encode_descriptor(
            "nodescope_websocket_clients",
            "Websocket clients connected now",
            None,
            clients.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "nodescope_websocket_connections",
                "Websocket connections accepted",
                &self.connections,
            ),
            (
                "nodescope_websocket_lagged_events",
                "Events websocket clients lost by falling a whole queue behind or stalling",
                &self.lagged_events,
            ),
            (
                "nodescope_websocket_stalled_disconnects",
                "Websocket clients disconnected because a write to them stalled",
                &self.stalled_disconnects,
            ),
            (
                "nodescope_websocket_refused_origins",
                "Websocket upgrades refused for their Origin",
                &self.refused_origins,
            ),
        ] {
            let counter = ConstCounter::new(read(value));
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// How many clients want each category's events: an event no client wants is not rendered
/// (rendering, not sending, is what a busy node's messages cost when clients watch only blocks).
#[derive(Debug, Default)]
pub struct Demand([AtomicUsize; Category::ALL.len()]);

impl Demand {
    fn wants(&self, category: Category) -> bool {
        self.0[category.index()].load(Ordering::Relaxed) > 0
    }
}

/// One client's share of the [`Demand`], given back when dropped.
pub struct Wanted {
    demand: Arc<Demand>,
    categories: Vec<Category>,
}

impl Wanted {
    pub fn new(demand: &Arc<Demand>, categories: Vec<Category>) -> Wanted {
        for category in &categories {
            demand.0[category.index()].fetch_add(1, Ordering::Relaxed);
        }
        Wanted {
            demand: demand.clone(),
            categories,
        }
    }
}

impl Drop for Wanted {
    fn drop(&mut self) {
        for category in &self.categories {
            self.demand.0[category.index()].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

pub struct Feed {
    pub events: broadcast::Sender<Arc<Frame>>,
    pub demand: Arc<Demand>,
    pub states: watch::Sender<States>,
    pub counters: Arc<FeedCounters>,
    /// Serves the counters on `/metrics`.
    pub registry: Registry,
    pub health: Health,
    pub stopping: CancellationToken,
    pub allowed_origins: Vec<String>,
    pub send_timeout: Duration,
    next_version: AtomicU64,
}

impl Feed {
    pub fn new(args: &Args, health: Health, stopping: CancellationToken) -> Feed {
        let counters = Arc::new(FeedCounters::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(counters.clone()));
        Feed {
            events: broadcast::channel(args.client_queue.max(1)).0,
            demand: Arc::default(),
            states: watch::channel(States::default()).0,
            counters,
            registry,
            health,
            stopping,
            allowed_origins: args.allowed_origins.clone(),
            send_timeout: Duration::from_secs_f64(args.send_timeout.max(0.01)),
            next_version: AtomicU64::new(1),
        }
    }

    /// Renders and broadcasts an event, unless no client wants its category.
    pub fn publish_event(&self, received: &Received) {
        if !self.demand.wants(received.category) {
            return;
        }
        // `{"type":"event","category":…,"event":…}`, the event's JSON written in place: the
        // text of a JSON object with those members in that order, without building one.
        let text = format!(
            r#"{{"type":"event","category":{},"event":{}}}"#,
            serde_json::Value::from(received.category.as_str()),
            nodescope_proto::json::to_json_string(&received.event)
        );
        let _ = self.events.send(Arc::new(Frame {
            node: received.event.node_id.clone(),
            category: received.category,
            wire: wire::text(&text),
        }));
    }

    /// Renders the states that changed since last time, and the feed's counters.
    pub fn publish_states(&self, nodes: &mut Nodes) {
        let mut changed = Vec::new();
        for state in nodes.nodes.values_mut().filter(|s| s.changed) {
            state.changed = false;
            let text = serde_json::json!({"type": "state", "node": state.node, "state": state})
                .to_string();
            let version = self.next_version.fetch_add(1, Ordering::Relaxed);
            changed.push((state.node.clone(), (version, wire::text(&text))));
        }
        let feed = serde_json::json!({
            "type": "feed",
            "receiving": self.health.receiving(),
            "counters": &*self.counters,
        })
        .to_string();
        self.states.send_modify(|states| {
            states.nodes.extend(changed);
            states.feed = wire::text(&feed);
        });
    }

    /// Gives connected clients up to `limit` to say goodbye.
    pub async fn wait_for_clients(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.counters.clients.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_category_is_wanted_while_some_client_wants_it() {
        let demand = Arc::new(Demand::default());
        let blocks = Wanted::new(&demand, vec![Category::Validation]);
        let everything = Wanted::new(&demand, Category::ALL.to_vec());
        assert!(demand.wants(Category::NetMessage) && demand.wants(Category::Validation));
        drop(everything);
        assert!(!demand.wants(Category::NetMessage));
        assert!(demand.wants(Category::Validation));
        drop(blocks);
        assert!(Category::ALL.iter().all(|c| !demand.wants(*c)));
    }
}
