//! Every event of one node, collected from NATS in the background, and waiting for one of them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nodescope_proto::event::Payload;
use nodescope_proto::{Event, ExtractorStats};
use prost::Message;

pub struct Collected {
    events: Arc<Mutex<Vec<Event>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collected {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collected {
    /// Subscribes to `nodescope.<node>.>` (and has the server confirm it) before returning.
    pub async fn start(url: &str, node: &str) -> Collected {
        let client = async_nats::connect(url).await.expect("connecting to NATS");
        let mut subscriber = client
            .subscribe(format!("nodescope.{node}.>"))
            .await
            .expect("subscribing");
        client.flush().await.expect("flush");
        // A round trip: the server has the subscription once our own echo comes back.
        let mut round_trip = nodescope_bus::RoundTrip::new(&client)
            .await
            .expect("round trip");
        assert!(round_trip.complete(&client, Duration::from_secs(10)).await);
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            while let Some(message) = subscriber.next().await {
                let event = Event::decode(message.payload).expect("a protobuf Event");
                sink.lock().unwrap().push(event);
            }
        });
        Collected { events, task }
    }

    /// A copy of everything received so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Polls (every 20 ms, for up to `timeout`) until `find` picks something out of the events
    /// received so far; `None` if it never does.
    pub async fn find_within<T>(
        &self,
        timeout: Duration,
        mut find: impl FnMut(&[Event]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = find(&self.events.lock().unwrap()) {
                return Some(found);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Collected::find_within`], failing the test naming `what`, with the payload kinds
    /// received, if nothing is found.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        find: impl FnMut(&[Event]) -> Option<T>,
    ) -> T {
        if let Some(found) = self.find_within(timeout, find).await {
            return found;
        }
        let events = self.events();
        let kinds: std::collections::BTreeMap<String, usize> =
            events.iter().fold(Default::default(), |mut kinds, e| {
                *kinds.entry(payload_kind(e)).or_default() += 1;
                kinds
            });
        panic!(
            "{what}: not among the {} events received within {timeout:?} ({kinds:?})",
            events.len()
        );
    }

    /// The first payload `pick` matches, waiting for it.
    pub async fn payload<T>(
        &self,
        what: &str,
        mut pick: impl FnMut(&Event, &Payload) -> Option<T>,
    ) -> T {
        self.wait_for(what, Duration::from_secs(30), |events| {
            events
                .iter()
                .find_map(|e| e.payload.as_ref().and_then(|p| pick(e, p)))
        })
        .await
    }

    /// The latest `extractor_stats`, once one satisfies `done`.
    pub async fn stats_when(&self, done: impl Fn(&ExtractorStats) -> bool) -> ExtractorStats {
        self.wait_for("extractor_stats", Duration::from_secs(30), |events| {
            events.iter().rev().find_map(|e| match &e.payload {
                Some(Payload::ExtractorStats(stats)) if done(stats) => Some(stats.clone()),
                _ => None,
            })
        })
        .await
    }
}

/// `inbound_message`, `block_connected`, …: the payload's field name, for messages.
pub fn payload_kind(event: &Event) -> String {
    match &event.payload {
        Some(payload) => format!("{payload:?}")
            .split('(')
            .next()
            .unwrap_or_default()
            .to_string(),
        None => "none".to_string(),
    }
}
