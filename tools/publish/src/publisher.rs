//! Publishing events to NATS without ever blocking the tracer and without losing anything
//! silently.
//!
//! Events wait in a queue bounded in bytes; when NATS is away longer than the queue lasts, the
//! oldest events are dropped and counted. A background task hands batches to the client and
//! confirms them with round trips (at most one every few milliseconds while events keep
//! coming): a probe message to its own subscription comes back only once the server has
//! processed what was handed before it. Events not confirmed on the connection they were sent
//! on go back to the front of the queue and are sent again. A server can also take
//! events and then crash before passing them on, so the events confirmed in the last second
//! are kept and sent again after any reconnection.
//! Consumers may therefore see an event twice, and tell repeats by their sequence number.
//!
//! The counters account for the events handed to [`Publisher::send`] one for one: each is
//! published, dropped (by cause) or still queued. The extractor's own reports
//! ([`Publisher::send_report`]) are sent the same way but not counted, so that its stats compare
//! with the events it read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::Subject;
use bytes::Bytes;
use nodescope_bus::{Connection, RoundTrip};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Most events handed to the client before confirming them with one round trip.
const BATCH_EVENTS: usize = 4096;
/// Most bytes handed to the client before confirming them with one round trip.
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Confirmed events younger than this are sent again after a reconnection: the server that
/// confirmed them may have died before delivering them.
const REPLAY_WINDOW: Duration = Duration::from_secs(1);
/// Most memory kept for replay, per-event bookkeeping included: at hundreds of thousands of
/// small events a second the bookkeeping, not the payloads, is what fills it.
const REPLAY_BYTES: usize = 8 * 1024 * 1024;
/// Memory an event costs in the queue or the replay window besides its payload: counted, so
/// that the limits bound the process's memory, not just the payload bytes.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Outgoing>() + 16;

#[derive(Debug, Default)]
struct Counters {
    /// Only for events that are not reports, and only once per event (a replay of a confirmed
    /// event is neither published nor dropped again).
    published: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_too_large: AtomicU64,
    resent: AtomicU64,
}

/// What happened to the events handed to the publisher, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Confirmed received by the server (each event once, however often it was sent).
    pub published: u64,
    /// Dropped (oldest first) because NATS was away longer than the queue could hold.
    pub dropped_queue_full: u64,
    /// Dropped because they exceed the server's `max_payload`.
    pub dropped_too_large: u64,
    /// Sent again after the connection failed under them or the server restarted (consumers
    /// may see these twice).
    pub resent: u64,
    /// Neither confirmed nor dropped yet: waiting in the queue or for the server's answer. After
    /// [`Publisher::close`], the events that were not delivered.
    pub queued: u64,
    /// Bytes waiting in the queue (in flight not included).
    pub queued_bytes: u64,
}

struct Outgoing {
    /// Shared per category: cloning it is a reference count, not a copy.
    subject: Subject,
    payload: Bytes,
    /// The server confirmed it once already: a replay does not count it as published again.
    confirmed: bool,
    /// The extractor's own report: not counted.
    report: bool,
}

impl Outgoing {
    /// Whether confirming or dropping it changes the counters.
    fn counts(&self) -> bool {
        !self.confirmed && !self.report
    }

    /// What it holds in the queue or the replay window, bookkeeping included.
    fn memory(&self) -> usize {
        self.payload.len() + ENTRY_OVERHEAD
    }
}

/// Events taken off the queue together: from then on they move as one (to the client, in
/// flight, confirmed, kept for replay), not one by one: at hundreds of thousands of events a
/// second each move of each event was a visible share of the cost per event.
#[derive(Default)]
struct Batch {
    items: VecDeque<Outgoing>,
    payload_bytes: usize,
}

impl Batch {
    /// What it holds, bookkeeping included (see [`ENTRY_OVERHEAD`]).
    fn memory(&self) -> usize {
        self.payload_bytes + self.items.len() * ENTRY_OVERHEAD
    }

    fn pop_front(&mut self) -> Option<Outgoing> {
        let item = self.items.pop_front()?;
        self.payload_bytes -= item.payload.len();
        Some(item)
    }

    /// Drops the events larger than `max_payload`, calling `dropped` for each.
    fn drop_larger_than(&mut self, max_payload: usize, mut dropped: impl FnMut(&Outgoing)) {
        let payload_bytes = &mut self.payload_bytes;
        self.items.retain(|item| {
            if item.payload.len() <= max_payload {
                return true;
            }
            *payload_bytes -= item.payload.len();
            dropped(item);
            false
        });
    }
}

struct Queue {
    items: VecDeque<Outgoing>,
    bytes: usize,
    closed: bool,
    /// Events (not reports) ever handed in. Kept under the lock with the queue, so that a
    /// snapshot never sees an event confirmed that it does not see handed in.
    accepted: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    limit_bytes: usize,
    wake: Notify,
    /// Notified whenever events are confirmed or dropped by the task (for [`Publisher::flush`]).
    progress: Notify,
    counters: Counters,
    /// Why nothing can be published any more (the confirmation path is refused), for the
    /// extractor to stop with.
    failure: Mutex<Option<String>>,
}

pub struct Publisher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// For [`Publisher::room`]: whether the connection takes events now.
    client: async_nats::Client,
}

impl Publisher {
    /// Starts publishing through `connection`, queueing at most `limit_bytes` meanwhile.
    pub fn start(connection: Connection, limit_bytes: usize) -> Publisher {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
                accepted: 0,
            }),
            limit_bytes,
            wake: Notify::new(),
            progress: Notify::new(),
            counters: Counters::default(),
            failure: Mutex::new(None),
        });
        let client = connection.client.clone();
        let task = tokio::spawn(run(connection, shared.clone()));
        Publisher {
            shared,
            task,
            client,
        }
    }

    /// Waits while more than `high_water` bytes wait in the queue and the connection is up to
    /// take them: a producer on the publisher's own thread gives it its turn instead of filling
    /// the queue only to see its oldest events dropped. While NATS is away it returns at once
    /// (the queue's limit then drops the oldest, counted).
    pub async fn room(&self, high_water: usize) {
        loop {
            let progress = self.shared.progress.notified();
            tokio::pin!(progress);
            // Registered before looking, so that progress made meanwhile is not missed.
            progress.as_mut().enable();
            let queued = self.shared.queue.lock().expect("publisher queue").bytes;
            if queued <= high_water || self.client.connection_state() != State::Connected {
                return;
            }
            // Woken when the task takes a batch; rechecked now and then for the connection.
            let _ = tokio::time::timeout(Duration::from_millis(20), progress).await;
        }
    }

    /// Queues events; never waits. Drops (and counts) the oldest events when over the limit.
    pub fn send(&self, events: impl IntoIterator<Item = (Subject, Bytes)>) {
        self.queue(events, false);
    }

    /// Queues one of the extractor's own reports (its stats), which the counters leave out.
    pub fn send_report(&self, subject: Subject, payload: Bytes) {
        self.queue([(subject, payload)], true);
    }

    fn queue(&self, events: impl IntoIterator<Item = (Subject, Bytes)>, report: bool) {
        let mut queue = self.shared.queue.lock().expect("publisher queue");
        for (subject, payload) in events {
            let item = Outgoing {
                subject,
                payload,
                confirmed: false,
                report,
            };
            queue.bytes += item.memory();
            queue.accepted += !report as u64;
            queue.items.push_back(item);
        }
        let mut dropped = 0;
        while queue.bytes > self.shared.limit_bytes && queue.items.len() > 1 {
            let oldest = queue.items.pop_front().expect("non-empty");
            queue.bytes -= oldest.memory();
            dropped += oldest.counts() as u64;
        }
        drop(queue);
        if dropped > 0 {
            self.shared
                .counters
                .dropped_queue_full
                .fetch_add(dropped, Ordering::Relaxed);
        }
        self.shared.wake.notify_one();
    }

    pub fn stats(&self) -> PublisherStats {
        snapshot(&self.shared)
    }

    /// Set once publishing cannot work at all (NATS refuses the round trips that confirm it):
    /// what to tell the person. The events stay queued (and counted) meanwhile.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().expect("failure").clone()
    }

    /// Waits until every event sent so far is confirmed or dropped; false if `deadline` came
    /// first.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let progress = self.shared.progress.notified();
            tokio::pin!(progress);
            // Registered before looking, so that progress made meanwhile is not missed.
            progress.as_mut().enable();
            if snapshot(&self.shared).queued == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                return false;
            }
        }
    }

    /// Publishes what is queued, waiting at most `timeout` for NATS, then stops. Returns the
    /// final counts; what is still `queued` then was not delivered.
    pub async fn close(self, timeout: Duration) -> PublisherStats {
        self.shared.queue.lock().expect("publisher queue").closed = true;
        self.shared.wake.notify_one();
        let mut task = self.task;
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            task.abort();
        }
        snapshot(&self.shared)
    }
}

fn snapshot(shared: &Shared) -> PublisherStats {
    // Read under the queue's lock: an event is counted in `accepted` before it enters the queue
    // and as published or dropped only after, so `queued` never comes out below what is left.
    let queue = shared.queue.lock().expect("publisher queue");
    let published = shared.counters.published.load(Ordering::Relaxed);
    let dropped_queue_full = shared.counters.dropped_queue_full.load(Ordering::Relaxed);
    let dropped_too_large = shared.counters.dropped_too_large.load(Ordering::Relaxed);
    PublisherStats {
        published,
        dropped_queue_full,
        dropped_too_large,
        resent: shared.counters.resent.load(Ordering::Relaxed),
        queued: queue
            .accepted
            .saturating_sub(published + dropped_queue_full + dropped_too_large),
        queued_bytes: queue.bytes as u64,
    }
}

/// Takes the next batch from the front of the queue; `None` when closed and empty.
async fn next_batch(shared: &Shared) -> Option<Batch> {
    loop {
        {
            let mut queue = shared.queue.lock().expect("publisher queue");
            if !queue.items.is_empty() {
                let mut batch = Vec::new();
                let mut bytes = 0;
                while let Some(item) = queue.items.front() {
                    if !batch.is_empty()
                        && (batch.len() == BATCH_EVENTS || bytes + item.payload.len() > BATCH_BYTES)
                    {
                        break;
                    }
                    bytes += item.payload.len();
                    batch.push(queue.items.pop_front().expect("front exists"));
                }
                queue.bytes -= bytes + batch.len() * ENTRY_OVERHEAD;
                shared.progress.notify_waiters();
                return Some(Batch {
                    items: batch.into(),
                    payload_bytes: bytes,
                });
            }
            if queue.closed {
                return None;
            }
        }
        shared.wake.notified().await;
    }
}

/// Puts events back at the front of the queue, in order; `resent` when they may have been
/// delivered already.
fn requeue(shared: &Shared, items: impl DoubleEndedIterator<Item = Outgoing>, resent: bool) {
    let mut queue = shared.queue.lock().expect("publisher queue");
    for item in items.rev() {
        if resent {
            shared.counters.resent.fetch_add(1, Ordering::Relaxed);
        }
        queue.bytes += item.memory();
        queue.items.push_front(item);
    }
}

/// Longest wait for the server's answer to a probe; then what it covered is sent again.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes handed to the client and not yet confirmed: beyond it, new events wait in the
/// queue (where the oldest are dropped and counted) until the server answers.
const IN_FLIGHT_BYTES: usize = 4 * 1024 * 1024;
/// Least time between two probes while events keep coming. Each echo wakes the extractor's
/// thread, and a wakeup costs about 20 µs of CPU on a VM: a probe after every drain (4,000 a
/// second at 100,000 events/s) was a tenth of the extractor's CPU per event, and a quarter at
/// 50,000/s. Events wait at most this much longer to be counted as published.
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Bytes in flight from which the next probe goes without waiting for [`PROBE_INTERVAL`]: well
/// before [`IN_FLIGHT_BYTES`] stops the queue (a 4 MB block is confirmed at once).
const PROBE_BYTES: usize = IN_FLIGHT_BYTES / 4;

/// Events handed to the client and not confirmed yet, oldest first. At most one probe is out
/// at a time, covering the events handed before it; the next covers all handed meanwhile, so
/// round trips cost per round trip, not per event or batch.
#[derive(Default)]
struct InFlight {
    batches: VecDeque<Batch>,
    bytes: usize,
    probe: Option<Probe>,
    /// When the last probe went out.
    last_probe: Option<Instant>,
}

struct Probe {
    echo: Bytes,
    sent_at: Instant,
    /// How many of the oldest batches it confirms.
    covers: usize,
}

impl InFlight {
    fn push(&mut self, handed: Batch) {
        if !handed.items.is_empty() {
            self.bytes += handed.payload_bytes;
            self.batches.push_back(handed);
        }
    }

    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// When the next probe is due (perhaps already): `None` while one is out or nothing waits
    /// for one.
    fn next_probe_at(&self) -> Option<Instant> {
        if self.probe.is_some() || self.is_empty() {
            return None;
        }
        match self.last_probe {
            Some(at) if self.bytes < PROBE_BYTES => Some(at + PROBE_INTERVAL),
            _ => Some(Instant::now()),
        }
    }

    fn probed(&mut self, echo: Bytes) {
        let now = Instant::now();
        self.last_probe = Some(now);
        self.probe = Some(Probe {
            echo,
            sent_at: now,
            covers: self.batches.len(),
        });
    }

    /// The batches an echo confirms (none when it answers an earlier probe).
    fn confirm(&mut self, echo: &[u8]) -> Vec<Batch> {
        let Some(probe) = self.probe.take_if(|probe| probe.echo == echo) else {
            return Vec::new();
        };
        let confirmed: Vec<Batch> = self.batches.drain(..probe.covers).collect();
        self.bytes -= confirmed
            .iter()
            .map(|batch| batch.payload_bytes)
            .sum::<usize>();
        confirmed
    }

    fn timed_out(&self) -> bool {
        self.probe
            .as_ref()
            .is_some_and(|probe| probe.sent_at.elapsed() > CONFIRM_TIMEOUT)
    }

    /// Everything in flight, oldest first, to send again; the probe out is forgotten.
    fn take(&mut self) -> impl DoubleEndedIterator<Item = Outgoing> {
        self.probe = None;
        self.bytes = 0;
        std::mem::take(&mut self.batches)
            .into_iter()
            .flat_map(|batch| batch.items)
    }
}

/// Confirmed events of the last [`REPLAY_WINDOW`], oldest first, at most [`REPLAY_BYTES`].
#[derive(Default)]
struct Recent {
    batches: VecDeque<(Instant, Batch)>,
    bytes: usize,
}

impl Recent {
    /// Keeps batches confirmed at `now`, forgetting what is older than the window or beyond
    /// the memory limit (oldest first, event by event).
    fn keep(&mut self, confirmed: Vec<Batch>, now: Instant) {
        for batch in confirmed {
            self.bytes += batch.memory();
            self.batches.push_back((now, batch));
        }
        while let Some((at, oldest)) = self.batches.front_mut() {
            if now.duration_since(*at) > REPLAY_WINDOW {
                self.bytes -= oldest.memory();
                self.batches.pop_front();
            } else if self.bytes > REPLAY_BYTES {
                match oldest.pop_front() {
                    Some(item) => self.bytes -= item.memory(),
                    None => drop(self.batches.pop_front()),
                }
            } else {
                break;
            }
        }
    }

    fn take(&mut self) -> impl DoubleEndedIterator<Item = Outgoing> {
        self.bytes = 0;
        std::mem::take(&mut self.batches)
            .into_iter()
            .flat_map(|(_, batch)| batch.items)
    }
}

/// Which connection the client is on, from the INFO the server sent when it connected: a
/// restarted server has a new id, and one server numbers its clients anew on every connection.
/// async-nats updates it on reconnecting before it sends anything more, so a batch whose flush
/// ends with another identity than it began with crossed a reconnection. `None` before the
/// first INFO.
fn connection_identity(client: &async_nats::Client) -> Option<(String, u64)> {
    let info = client.server_info();
    (!info.server_id.is_empty()).then_some((info.server_id, info.client_id))
}

/// Whether [`Publisher::close`] was called, and whether the queue is empty: one look (one lock)
/// per turn of the task's loop.
fn queue_state(shared: &Shared) -> (bool, bool) {
    let queue = shared.queue.lock().expect("publisher queue");
    (queue.closed, queue.items.is_empty())
}

fn connected(client: &async_nats::Client) -> Option<(String, u64)> {
    if client.connection_state() == State::Connected {
        connection_identity(client)
    } else {
        None
    }
}

fn fail(shared: &Shared, reason: String) {
    tracing::error!("{reason}");
    *shared.failure.lock().expect("failure") = Some(reason);
}

async fn run(connection: Connection, shared: Arc<Shared>) {
    let client = connection.client.clone();
    let mut round_trip = match RoundTrip::new(&client).await {
        Ok(round_trip) => round_trip,
        Err(error) => {
            return fail(
                &shared,
                format!("cannot subscribe to the inbox that confirms publishing ({error}): nothing can be published"),
            );
        }
    };
    let mut in_flight = InFlight::default();
    let mut recent = Recent::default();
    // The connection the events in flight and in `recent` went out on.
    let mut sent_on: Option<(String, u64)> = None;
    let mut warned_payload_limit = false;
    let mut check = tokio::time::interval(Duration::from_millis(20));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now_on = connected(&client);
        // A new connection: the old one may have lost what was in flight, and the server that
        // confirmed the recent events may have died before delivering them. They go again,
        // before anything newer.
        if let (Some(before), Some(now)) = (&sent_on, &now_on) {
            if before != now {
                requeue(&shared, in_flight.take(), true);
                requeue(&shared, recent.take(), true);
                sent_on = None;
            }
        }
        if in_flight.timed_out() {
            if let Some(reason) = connection.inbox_denied() {
                // No probe will ever come back: resending would only send duplicates.
                return fail(&shared, reason);
            }
            requeue(&shared, in_flight.take(), true);
        }
        let (closed, queue_empty) = queue_state(&shared);
        // Closed, the queue is finished once it is empty.
        let finished = closed && queue_empty;
        if in_flight.is_empty() && finished {
            break;
        }
        // Closing, what is in flight is confirmed without waiting for the interval.
        let probe_at = in_flight
            .next_probe_at()
            .filter(|_| now_on.is_some())
            .map(|at| if closed { Instant::now() } else { at });
        if probe_at.is_some_and(|at| at <= Instant::now()) {
            match round_trip.probe(&client).await {
                Some(echo) => in_flight.probed(echo),
                None => requeue(&shared, in_flight.take(), true),
            }
            continue;
        }
        // Take events off the queue only while connected: while NATS is away they wait in the
        // queue, where the oldest are the ones dropped.
        let taking = now_on.is_some() && in_flight.bytes < IN_FLIGHT_BYTES && !finished;
        tokio::select! {
            echo = round_trip.next_echo(), if in_flight.probe.is_some() => {
                let Some(echo) = echo else {
                    return; // the client is closed for good
                };
                // Only the connection the events went out on can confirm them.
                if connected(&client).is_some_and(|now| sent_on.as_ref() == Some(&now)) {
                    let mut confirmed = in_flight.confirm(&echo);
                    let first_time = confirmed.iter().flat_map(|batch| &batch.items).filter(|item| item.counts()).count();
                    shared.counters.published.fetch_add(first_time as u64, Ordering::Relaxed);
                    shared.progress.notify_waiters();
                    confirmed.iter_mut().flat_map(|batch| &mut batch.items).for_each(|item| item.confirmed = true);
                    recent.keep(confirmed, Instant::now());
                }
            }
            batch = next_batch(&shared), if taking => {
                let Some(mut batch) = batch else {
                    continue;
                };
                let Some(identity) = connected(&client).filter(|now| sent_on.as_ref().is_none_or(|before| before == now)) else {
                    // Dropped or reconnected since: the top of the loop deals with it first.
                    requeue(&shared, batch.items.into_iter(), false);
                    continue;
                };
                sent_on = Some(identity);
                let max_payload = client.server_info().max_payload;
                if !warned_payload_limit && nodescope_bus::payload_limit_too_small(max_payload) {
                    warned_payload_limit = true;
                    tracing::warn!(
                        max_payload,
                        "the NATS server's max_payload is below 4 MB: large blocks will be dropped; set `max_payload: 8MB` in its configuration"
                    );
                }
                batch.drop_larger_than(max_payload, |item| {
                    if item.counts() {
                        shared.counters.dropped_too_large.fetch_add(1, Ordering::Relaxed);
                        shared.progress.notify_waiters();
                    }
                    tracing::warn!(subject = %item.subject, bytes = item.payload.len(), max_payload, "event larger than the NATS server allows: dropped");
                });
                for item in &batch.items {
                    // An error means the client is closing; the item stays in flight and is
                    // sent again if the probe goes unanswered.
                    let _ = client.publish(item.subject.clone(), item.payload.clone()).await;
                }
                in_flight.push(batch);
            }
            _ = tokio::time::sleep_until(probe_at.unwrap_or_else(Instant::now).into()), if probe_at.is_some() => {}
            _ = check.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(payloads: &[&'static str]) -> Batch {
        Batch {
            items: payloads
                .iter()
                .map(|payload| Outgoing {
                    subject: Subject::from_static("s"),
                    payload: Bytes::from_static(payload.as_bytes()),
                    confirmed: false,
                    report: false,
                })
                .collect(),
            payload_bytes: payloads.iter().map(|payload| payload.len()).sum(),
        }
    }

    #[test]
    fn a_probe_confirms_exactly_what_was_handed_before_it() {
        let mut in_flight = InFlight::default();
        in_flight.push(events(&["a", "bb"]));
        assert!(
            in_flight.next_probe_at().unwrap() <= Instant::now(),
            "the first probe goes at once"
        );
        in_flight.probed(Bytes::from_static(b"1"));
        in_flight.push(events(&["ccc"]));
        assert_eq!(in_flight.next_probe_at(), None, "one probe out at a time");
        assert!(
            in_flight.confirm(b"0").is_empty(),
            "a late echo of an earlier probe"
        );
        let confirmed = in_flight.confirm(b"1");
        assert_eq!(
            confirmed
                .iter()
                .map(|batch| batch.items.len())
                .sum::<usize>(),
            2
        );
        assert_eq!(
            (
                in_flight
                    .batches
                    .iter()
                    .map(|batch| batch.items.len())
                    .sum::<usize>(),
                in_flight.bytes
            ),
            (1, 3)
        );
        let next = in_flight
            .next_probe_at()
            .expect("a probe for what was handed meanwhile");
        assert_eq!(
            next,
            in_flight.last_probe.unwrap() + PROBE_INTERVAL,
            "not before the interval"
        );
        in_flight.probed(Bytes::from_static(b"2"));
        assert_eq!(in_flight.take().count(), 1);
        assert!(
            in_flight.confirm(b"2").is_empty(),
            "a forgotten probe confirms nothing"
        );
    }

    #[test]
    fn the_replay_window_keeps_the_newest_events_within_its_time_and_memory() {
        let mut recent = Recent::default();
        let start = Instant::now();
        recent.keep(vec![events(&["old", "old"])], start);
        let later = start + REPLAY_WINDOW / 2;
        recent.keep(vec![events(&["a"]), events(&["bb"])], later);
        assert_eq!(recent.bytes, 3 + 3 + 1 + 2 + 4 * ENTRY_OVERHEAD);
        // Past the first batch's window only: it goes whole.
        recent.keep(Vec::new(), start + REPLAY_WINDOW + Duration::from_millis(1));
        assert_eq!(recent.bytes, 1 + 2 + 2 * ENTRY_OVERHEAD);
        // Past the memory limit: the oldest events go one by one, the newest stay.
        let big_len = REPLAY_BYTES - (2 + ENTRY_OVERHEAD) - ENTRY_OVERHEAD;
        let big: &'static str = "x".repeat(big_len).leak();
        recent.keep(vec![events(&[big])], later);
        assert_eq!(
            recent.bytes, REPLAY_BYTES,
            "\"bb\" and the big one fill it exactly"
        );
        let kept: Vec<usize> = recent.take().map(|item| item.payload.len()).collect();
        assert_eq!(kept, [2, big_len]);
        assert_eq!(recent.bytes, 0);
    }

    #[test]
    fn much_in_flight_is_probed_without_waiting_for_the_interval() {
        let mut in_flight = InFlight::default();
        in_flight.push(events(&["a"]));
        in_flight.probed(Bytes::from_static(b"1"));
        assert_eq!(in_flight.confirm(b"1").len(), 1);
        let big: &'static str = "x".repeat(PROBE_BYTES).leak();
        in_flight.push(events(&[big]));
        assert!(in_flight.next_probe_at().unwrap() <= Instant::now());
    }
}
