//! A node's top-N user agents (from version messages) as label values, the rest as `other`.
//!
//! Counter semantics, so that every series stays a valid counter and the series of a node add
//! up to all its version messages:
//! - a user agent with a series counts from the moment it got its series; `other` counts every
//!   version message whose user agent had no series at that moment;
//! - while fewer than N user agents have a series, a new one gets a series at once;
//! - every [`RERANK_INTERVAL`], the N most frequent user agents since start (over a tally of at
//!   most [`MAX_TALLIED`] distinct ones) get the series: a user agent leaving the top N loses
//!   its series (Prometheus sees it end; its later messages count as `other`), one entering
//!   starts a new series at 0. Series never go down; at most N (+ `other`) exist per direction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::labels::OTHER;

pub const RERANK_INTERVAL: Duration = Duration::from_secs(600);
/// Distinct user agents tallied per node; further new ones are not ranked (a flood of made-up
/// user agents cannot grow memory).
pub const MAX_TALLIED: usize = 1000;
/// Longer user agents are cut (on a character boundary) before anything else.
pub const MAX_LEN: usize = 64;

pub struct UserAgents {
    top: usize,
    tally: HashMap<Arc<str>, u64>,
    labeled: Vec<Arc<str>>,
    other: Arc<str>,
    next_rerank: Instant,
}

/// What to count a version message under, and the series to remove first (after a re-rank).
pub struct Label {
    pub user_agent: Arc<str>,
    pub dropped: Vec<Arc<str>>,
}

impl UserAgents {
    pub fn new(top: usize, now: Instant) -> UserAgents {
        UserAgents {
            top,
            tally: HashMap::new(),
            labeled: Vec::new(),
            other: Arc::from(OTHER),
            next_rerank: now + RERANK_INTERVAL,
        }
    }

    /// The label value for one version message carrying `user_agent`.
    pub fn label(&mut self, user_agent: &str, now: Instant) -> Label {
        let user_agent = normalize(user_agent);
        let dropped = if now >= self.next_rerank {
            self.next_rerank = now + RERANK_INTERVAL;
            self.rerank()
        } else {
            Vec::new()
        };
        let tallied = if let Some(count) = self.tally.get_mut(user_agent) {
            *count += 1;
            true
        } else if self.tally.len() < MAX_TALLIED {
            self.tally.insert(Arc::from(user_agent), 1);
            true
        } else {
            false
        };
        let label = match self.labeled.iter().find(|l| &***l == user_agent) {
            Some(labeled) => labeled.clone(),
            None if tallied && self.labeled.len() < self.top => {
                let (name, _) = self.tally.get_key_value(user_agent).expect("tallied");
                self.labeled.push(name.clone());
                name.clone()
            }
            None => self.other.clone(),
        };
        Label {
            user_agent: label,
            dropped,
        }
    }

    /// The top N by count (ties by name, for a stable order); returns the ones that lost their
    /// series.
    fn rerank(&mut self) -> Vec<Arc<str>> {
        let mut ranked: Vec<(&Arc<str>, &u64)> = self.tally.iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let top: Vec<Arc<str>> = ranked
            .into_iter()
            .take(self.top)
            .map(|(name, _)| name.clone())
            .collect();
        let dropped = self
            .labeled
            .iter()
            .filter(|l| !top.contains(l))
            .cloned()
            .collect();
        self.labeled = top;
        dropped
    }
}

/// Cut to [`MAX_LEN`] bytes on a character boundary; the empty user agent gets a visible name.
fn normalize(user_agent: &str) -> &str {
    if user_agent.is_empty() {
        return "(empty)";
    }
    let mut end = user_agent.len().min(MAX_LEN);
    while !user_agent.is_char_boundary(end) {
        end -= 1;
    }
    &user_agent[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(agents: &mut UserAgents, seen: &[&str], now: Instant) -> Vec<String> {
        seen.iter()
            .map(|ua| agents.label(ua, now).user_agent.to_string())
            .collect()
    }

    #[test]
    fn the_first_n_get_series_then_the_most_frequent_after_a_rerank() {
        let start = Instant::now();
        let mut agents = UserAgents::new(2, start);
        assert_eq!(
            names(
                &mut agents,
                &["/a/", "/b/", "/c/", "/c/", "/c/", "/a/"],
                start
            ),
            ["/a/", "/b/", "other", "other", "other", "/a/"]
        );
        let later = start + RERANK_INTERVAL;
        let label = agents.label("/b/", later);
        // /c/ (3) and /a/ (2) are the top two now; /b/ (1, now 2) lost its series.
        assert_eq!(label.dropped, vec![Arc::<str>::from("/b/")]);
        assert_eq!(&*label.user_agent, "other");
        assert_eq!(names(&mut agents, &["/c/", "/a/"], later), ["/c/", "/a/"]);
    }

    #[test]
    fn long_and_empty_user_agents_are_normalized() {
        let now = Instant::now();
        let mut agents = UserAgents::new(5, now);
        let long = "é".repeat(40);
        assert_eq!(agents.label(&long, now).user_agent.len(), 64);
        assert_eq!(&*agents.label("", now).user_agent, "(empty)");
    }

    #[test]
    fn the_tally_is_bounded() {
        let now = Instant::now();
        let mut agents = UserAgents::new(1, now);
        for i in 0..MAX_TALLIED + 10 {
            agents.label(&format!("/ua{i}/"), now);
        }
        assert_eq!(agents.tally.len(), MAX_TALLIED);
    }
}
