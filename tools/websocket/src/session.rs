//! One websocket client's session: its filter (changed by its subscribe messages), its events
//! read from the broadcast at its own pace and written in batches, state frames for pages, and
//! what happens when it is too slow.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::feed::{Feed, Frame, States, Wanted};
use crate::filter::Filter;
use crate::outbox::{Outbox, Unwritable};
use crate::wire::{self, ClientFrames, ClientMessage};

/// A client gets at most one write of events per this: what arrives meanwhile waits for the next
/// write, so that at thousands of events a second each write (a system call, and a wake-up of
/// the client, per client) carries many — 40 at 20,000 events/s — for at most this much more
/// latency; an event after a quiet spell is written at once. (The benchmark, 1,000 events/s to
/// 100 clients: the tool's CPU 0.45 cores writing each event at once, 0.29 at most every 2 ms,
/// 0.22 every 5 ms, 0.17 every 10 ms; the median latency grows by about half the interval.)
const WRITE_INTERVAL: Duration = Duration::from_millis(2);

/// Events taken from the broadcast for one write at most.
const EVENTS_PER_WRITE: usize = 1024;

/// Why a session ended before the tool stopped.
enum Stop {
    /// The client closed, went away, broke the protocol, or the connection failed.
    Gone,
    /// A write did not complete within the send timeout.
    Stalled,
}

impl From<Unwritable> for Stop {
    fn from(unwritable: Unwritable) -> Stop {
        match unwritable {
            Unwritable::Gone => Stop::Gone,
            Unwritable::Stalled => Stop::Stalled,
        }
    }
}

struct Session {
    feed: Arc<Feed>,
    filter: Filter,
    /// This client's share of the demand for rendered events.
    wanted: Wanted,
    /// Its place in the events broadcast, while it takes events.
    events: Option<broadcast::Receiver<Arc<Frame>>>,
    states: watch::Receiver<States>,
    /// State frame versions already sent, by node.
    sent: HashMap<String, u64>,
    outbox: Outbox,
}

/// Serves a client until it goes, stalls or the tool stops. `already_received`: what it sent
/// right after its upgrade request.
pub async fn run(socket: TcpStream, already_received: &[u8], filter: Filter, feed: Arc<Feed>) {
    feed.counters.clients.fetch_add(1, Ordering::Relaxed);
    feed.counters.connections.fetch_add(1, Ordering::Relaxed);
    let (reader, writer) = socket.into_split();
    let mut session = Session {
        // Events are rendered from now on, before the client hears it is subscribed.
        wanted: Wanted::new(&feed.demand, filter.event_categories()),
        events: filter.events.then(|| feed.events.subscribe()),
        states: feed.states.subscribe(),
        sent: HashMap::new(),
        outbox: Outbox::new(writer, feed.send_timeout),
        filter,
        feed: feed.clone(),
    };
    let outcome = session
        .serve(reader, ClientFrames::new(already_received))
        .await;
    if let Err(Stop::Stalled) = outcome {
        session.count_stalled();
    }
    feed.counters.clients.fetch_sub(1, Ordering::Relaxed);
}

impl Session {
    async fn serve(
        &mut self,
        mut reader: OwnedReadHalf,
        mut client: ClientFrames,
    ) -> Result<(), Stop> {
        self.outbox.push(wire::text(&self.filter.describe()));
        self.queue_states();
        // What the client sent along with its upgrade request.
        self.answer(&mut client).await?;
        let mut next_write = Instant::now();
        loop {
            tokio::select! {
                _ = self.feed.stopping.cancelled() => {
                    self.outbox.push(wire::close(wire::GOING_AWAY, "the websocket tool is stopping"));
                    let _ = self.outbox.write().await;
                    return Ok(());
                }
                read = reader.read_buf(client.buffer()) => {
                    if !matches!(read, Ok(received) if received > 0) {
                        return Err(Stop::Gone);
                    }
                    self.answer(&mut client).await?;
                }
                received = next_event(self.events.as_mut(), next_write), if self.events.is_some() => {
                    next_write = Instant::now() + WRITE_INTERVAL;
                    if !self.queue_events(received) {
                        return Ok(());
                    }
                    self.outbox.write().await?;
                }
                changed = self.states.changed(), if self.filter.state => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    self.queue_states();
                    self.outbox.write().await?;
                }
            }
        }
    }

    /// Answers the messages the client sent.
    async fn answer(&mut self, client: &mut ClientFrames) -> Result<(), Stop> {
        loop {
            match client.next_message() {
                Ok(None) => break,
                Ok(Some(ClientMessage::Text(text))) => self.subscribe(&text),
                Ok(Some(ClientMessage::Ping(payload))) => self.outbox.push(wire::pong(&payload)),
                Ok(Some(ClientMessage::Binary | ClientMessage::Pong)) => {}
                Ok(Some(ClientMessage::Close(code))) => {
                    let code = code.unwrap_or(wire::NORMAL_CLOSURE);
                    self.outbox.push(wire::close(code, ""));
                    let _ = self.outbox.write().await;
                    return Err(Stop::Gone);
                }
                Err(violation) => {
                    tracing::debug!(
                        reason = violation.reason,
                        "a websocket client broke the protocol"
                    );
                    self.outbox
                        .push(wire::close(violation.code, violation.reason));
                    let _ = self.outbox.write().await;
                    return Err(Stop::Gone);
                }
            }
        }
        Ok(self.outbox.write().await?)
    }

    /// Applies a subscribe message and queues the reply, and the state snapshot when the client
    /// newly takes state or other nodes.
    fn subscribe(&mut self, text: &str) {
        let before = self.filter.clone();
        let reply = match self.filter.update(text) {
            Ok(()) => {
                self.wanted = Wanted::new(&self.feed.demand, self.filter.event_categories());
                self.filter.describe()
            }
            Err(error) => serde_json::json!({"type": "error", "message": error}).to_string(),
        };
        self.outbox.push(wire::text(&reply));
        if self.filter.events != before.events {
            self.events = self.filter.events.then(|| self.feed.events.subscribe());
        }
        if self.filter.state && (!before.state || self.filter.nodes != before.nodes) {
            self.sent.clear();
            self.queue_states();
        }
    }

    /// Queues `received` and what else waits in the broadcast (up to a write's worth). False
    /// when the broadcast is closed (the tool is stopping).
    fn queue_events(&mut self, received: Result<Arc<Frame>, RecvError>) -> bool {
        let receiver = self.events.as_mut().expect("events are on");
        let mut next = received;
        for taken in 1.. {
            match next {
                Ok(frame) => {
                    if self.filter.wants(&frame.node, frame.category) {
                        self.outbox.push_event(frame.wire.clone());
                    }
                }
                Err(RecvError::Lagged(dropped)) => {
                    self.feed
                        .counters
                        .lagged_events
                        .fetch_add(dropped, Ordering::Relaxed);
                    tracing::debug!(
                        dropped,
                        "a websocket client fell behind: oldest events dropped for it"
                    );
                    let notice = serde_json::json!({"type": "lagged", "dropped": dropped});
                    self.outbox.push(wire::text(&notice.to_string()));
                }
                Err(RecvError::Closed) => return false,
            }
            if taken == EVENTS_PER_WRITE {
                break;
            }
            next = match receiver.try_recv() {
                Ok(frame) => Ok(frame),
                Err(TryRecvError::Lagged(dropped)) => Err(RecvError::Lagged(dropped)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
        }
        true
    }

    /// Queues the state frames of the wanted nodes that changed since they were last sent (all
    /// of them the first time: the snapshot), then the feed's counters.
    fn queue_states(&mut self) {
        if !self.filter.state {
            return;
        }
        let states = self.states.borrow_and_update().clone();
        for (node, (version, frame)) in &states.nodes {
            if self.filter.wants_node(node) && self.sent.get(node) != Some(version) {
                self.sent.insert(node.clone(), *version);
                self.outbox.push(frame.clone());
            }
        }
        if !states.feed.is_empty() {
            self.outbox.push(states.feed.clone());
        }
    }

    /// Counts what a stalled client loses: the events queued for it and not written, and those
    /// it had not taken from the broadcast yet.
    fn count_stalled(&mut self) {
        let mut lost = self.outbox.unwritten_events();
        if let Some(receiver) = self.events.as_mut() {
            loop {
                match receiver.try_recv() {
                    Ok(_) => lost += 1,
                    Err(TryRecvError::Lagged(n)) => lost += n,
                    Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
                }
            }
        }
        let counters = &self.feed.counters;
        counters.lagged_events.fetch_add(lost, Ordering::Relaxed);
        counters.stalled_disconnects.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            timeout_s = self.feed.send_timeout.as_secs_f64(),
            lost,
            "disconnected a websocket client that stopped reading; events it had not received are lost to it"
        );
    }
}

/// The next event once `not_before` has come (the pace of writes).
async fn next_event(
    receiver: Option<&mut broadcast::Receiver<Arc<Frame>>>,
    not_before: Instant,
) -> Result<Arc<Frame>, RecvError> {
    if Instant::now() < not_before {
        tokio::time::sleep_until(not_before).await;
    }
    receiver.expect("polled only with events").recv().await
}
