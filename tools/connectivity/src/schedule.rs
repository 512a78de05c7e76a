//! Politeness, in one place: a bounded queue, one pending check per target, a result cache
//! that answers repeats within the TTL, at most `concurrency` checks at once, and starts
//! spaced evenly so that no minute sees more than `max_per_minute`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use nodescope_proto::ConnectivityResult;

use crate::intake::Announced;
use crate::target::Target;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub concurrency: usize,
    pub max_per_minute: u32,
    pub queue_size: usize,
    pub recheck_after: Duration,
    pub cache_size: usize,
}

/// A check to make.
#[derive(Debug, Clone)]
pub struct Job {
    pub target: Target,
    pub announced: Announced,
}

/// What became of an announced target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Queued,
    /// Checked less than the TTL ago, with this result.
    Cached(ConnectivityResult),
    /// Already waiting or being checked.
    Duplicate,
    /// The queue is full: dropped.
    QueueFull,
}

pub struct Schedule {
    limits: Limits,
    queue: VecDeque<Job>,
    /// Targets queued or being checked.
    pending: HashSet<Target>,
    in_flight: usize,
    cache: Cache,
    /// Starts are at least this far apart.
    spacing: Duration,
    next_start: Instant,
}

impl Schedule {
    pub fn new(limits: Limits, now: Instant) -> Schedule {
        let per_minute = limits.max_per_minute.max(1);
        Schedule {
            queue: VecDeque::new(),
            pending: HashSet::new(),
            in_flight: 0,
            cache: Cache::new(limits.cache_size, limits.recheck_after),
            spacing: Duration::from_secs(60) / per_minute,
            next_start: now,
            limits,
        }
    }

    /// The cached result of `target`, if it was checked within the TTL.
    pub fn cached(&mut self, target: &Target, now: Instant) -> Option<ConnectivityResult> {
        self.cache.get(target, now)
    }

    /// Remembers a result found without a check (an unreachable network).
    pub fn remember(&mut self, target: Target, result: ConnectivityResult, now: Instant) {
        self.cache.insert(target, result, now);
    }

    pub fn admit(&mut self, job: Job, now: Instant) -> Admission {
        if let Some(result) = self.cache.get(&job.target, now) {
            return Admission::Cached(result);
        }
        if self.pending.contains(&job.target) {
            return Admission::Duplicate;
        }
        if self.queue.len() >= self.limits.queue_size {
            return Admission::QueueFull;
        }
        self.pending.insert(job.target.clone());
        self.queue.push_back(job);
        Admission::Queued
    }

    /// When the next check may start: `None` while the queue is empty or `concurrency` checks
    /// are under way.
    pub fn next_start(&self) -> Option<Instant> {
        (!self.queue.is_empty() && self.in_flight < self.limits.concurrency)
            .then_some(self.next_start)
    }

    /// Takes the next job if it may start now.
    pub fn start(&mut self, now: Instant) -> Option<Job> {
        if self.next_start().is_none_or(|at| at > now) {
            return None;
        }
        let job = self.queue.pop_front()?;
        self.in_flight += 1;
        // From the later of the planned and the actual start: a slow loop never earns a burst.
        self.next_start = self.next_start.max(now) + self.spacing;
        Some(job)
    }

    /// A started check ended.
    pub fn finish(&mut self, target: Target, result: ConnectivityResult, now: Instant) {
        self.in_flight -= 1;
        self.pending.remove(&target);
        self.cache.insert(target, result, now);
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn cache_entries(&self) -> usize {
        self.cache.by_target.len()
    }

    /// Results evicted from the full cache before their TTL, since the start.
    pub fn cache_evicted(&self) -> u64 {
        self.cache.evicted
    }
}

/// Results by target for the TTL. Every entry lives equally long, so they expire in the order
/// they were made: a queue of (time, target) finds the expired and the oldest in O(1).
struct Cache {
    by_target: HashMap<Target, (Instant, ConnectivityResult)>,
    order: VecDeque<(Instant, Target)>,
    capacity: usize,
    ttl: Duration,
    evicted: u64,
}

impl Cache {
    fn new(capacity: usize, ttl: Duration) -> Cache {
        Cache {
            by_target: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            ttl,
            evicted: 0,
        }
    }

    fn get(&mut self, target: &Target, now: Instant) -> Option<ConnectivityResult> {
        self.expire(now);
        self.by_target.get(target).map(|(_, result)| *result)
    }

    fn insert(&mut self, target: Target, result: ConnectivityResult, now: Instant) {
        self.expire(now);
        while self.by_target.len() >= self.capacity {
            match self.pop_oldest() {
                Some(true) => self.evicted += 1,
                Some(false) => {}
                None => break,
            }
        }
        self.by_target.insert(target.clone(), (now, result));
        self.order.push_back((now, target));
    }

    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= self.ttl)
        {
            self.pop_oldest();
        }
    }

    /// Removes the oldest entry; `Some(true)` if it was live, `Some(false)` if it had been
    /// replaced by a newer check of the same target.
    fn pop_oldest(&mut self) -> Option<bool> {
        let (at, target) = self.order.pop_front()?;
        let live = self
            .by_target
            .get(&target)
            .is_some_and(|(made, _)| *made == at);
        if live {
            self.by_target.remove(&target);
        }
        Some(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::AddrVersion;
    use crate::target::{Host, Net};

    fn job(i: u8) -> Job {
        Job {
            target: Target {
                net: Net::Ipv4,
                host: Host::Ip([1, 2, 3, i].into()),
                port: 8333,
            },
            announced: Announced {
                node: "n".into(),
                chain: String::new(),
                address: Default::default(),
                addr_version: AddrVersion::Addr,
                announced_by: Default::default(),
                getaddr_response: false,
                message_time_ns: 0,
            },
        }
    }

    fn limits() -> Limits {
        Limits {
            concurrency: 2,
            max_per_minute: 60,
            queue_size: 3,
            recheck_after: Duration::from_secs(3600),
            cache_size: 2,
        }
    }

    #[test]
    fn the_queue_is_bounded_and_targets_are_pending_once() {
        let now = Instant::now();
        let mut schedule = Schedule::new(limits(), now);
        assert_eq!(schedule.admit(job(1), now), Admission::Queued);
        assert_eq!(schedule.admit(job(1), now), Admission::Duplicate);
        assert_eq!(schedule.admit(job(2), now), Admission::Queued);
        assert_eq!(schedule.admit(job(3), now), Admission::Queued);
        assert_eq!(schedule.admit(job(4), now), Admission::QueueFull);
        assert_eq!(schedule.queued(), 3);
    }

    #[test]
    fn starts_are_spaced_and_concurrency_is_capped() {
        let now = Instant::now();
        let mut schedule = Schedule::new(limits(), now);
        for i in 1..=3 {
            schedule.admit(job(i), now);
        }
        let first = schedule.start(now).unwrap();
        assert!(schedule.start(now).is_none(), "60 a minute: 1 s apart");
        let second = Duration::from_secs(1);
        assert_eq!(schedule.next_start(), Some(now + second));
        let started = schedule.start(now + second).unwrap();
        assert_eq!(schedule.in_flight(), 2);
        assert_eq!(schedule.next_start(), None, "two under way");
        schedule.finish(
            first.target.clone(),
            ConnectivityResult::Refused,
            now + second,
        );
        assert_eq!(schedule.next_start(), Some(now + 2 * second));
        assert_eq!(
            schedule.admit(first, now + second),
            Admission::Cached(ConnectivityResult::Refused)
        );
        assert_eq!(schedule.admit(started, now + second), Admission::Duplicate);
    }

    #[test]
    fn the_cache_expires_after_the_ttl_and_evicts_the_oldest_when_full() {
        let now = Instant::now();
        let mut schedule = Schedule::new(limits(), now);
        let ttl = limits().recheck_after;
        let reachable = ConnectivityResult::Reachable;
        schedule.remember(job(1).target, reachable, now);
        assert_eq!(
            schedule.cached(&job(1).target, now + ttl / 2),
            Some(reachable)
        );
        assert_eq!(schedule.cached(&job(1).target, now + ttl), None);

        let later = now + ttl * 2;
        for i in 1..=3 {
            schedule.remember(job(i).target, reachable, later);
        }
        assert_eq!(schedule.cache_entries(), 2);
        assert_eq!(schedule.cache_evicted(), 1);
        assert_eq!(schedule.cached(&job(1).target, later), None);
        assert_eq!(schedule.cached(&job(3).target, later), Some(reachable));
    }
}
