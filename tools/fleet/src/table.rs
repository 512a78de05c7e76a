//! Items (blocks, or sampled transactions) awaiting their propagation event: per item, each
//! node's first sighting. Bounded: past `capacity` the least recently sighted item goes
//! unpublished (an LRU, evictions counted);
//! an item is published once complete or at its timeout, and a late sighting of an item
//! published recently is ignored (counted) rather than starting a second, partial event.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use nodescope_proto::NodeSighting;

use crate::sighting::Hash;

#[derive(Debug, Default)]
pub struct Entry {
    /// Every id the item is known by (a transaction's txid and wtxid).
    pub ids: Vec<Hash>,
    /// A transaction's ids, once a sighting named them as such.
    pub txid: Option<Hash>,
    pub wtxid: Option<Hash>,
    pub height: Option<i32>,
    /// By node.
    pub sightings: BTreeMap<String, NodeSighting>,
    created: Option<Instant>,
    /// When it was last sighted, in [`Table`]'s use count.
    used: u64,
}

impl Entry {
    /// The earliest sighting is kept; a block's connection is recorded whatever came first.
    pub fn see(&mut self, node: &str, time_ns: u64, source: &str, peer: Option<&str>) {
        match self.sightings.get_mut(node) {
            Some(known) if known.first_seen_ns <= time_ns => {}
            Some(known) => {
                known.first_seen_ns = time_ns;
                known.source = source.to_string();
                known.peer = peer.unwrap_or_default().to_string();
            }
            None => {
                self.sightings.insert(
                    node.to_string(),
                    NodeSighting {
                        node: node.to_string(),
                        first_seen_ns: time_ns,
                        source: source.to_string(),
                        peer: peer.unwrap_or_default().to_string(),
                        ..NodeSighting::default()
                    },
                );
            }
        }
    }

    pub fn connected(&mut self, node: &str, time_ns: u64, height: i32, validation_ns: u64) {
        self.see(node, time_ns, "block_connected", None);
        self.height.get_or_insert(height);
        if let Some(sighting) = self.sightings.get_mut(node) {
            sighting.connected_ns.get_or_insert(time_ns);
            sighting.validation_ns.get_or_insert(validation_ns);
        }
    }
}

/// An item's propagation, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub ids: Vec<Hash>,
    pub txid: Option<Hash>,
    pub wtxid: Option<Hash>,
    pub height: Option<i32>,
    /// By first sighting, offsets filled in.
    pub nodes: Vec<NodeSighting>,
    pub missing: Vec<String>,
    pub first_node: String,
    pub first_seen_ns: u64,
    pub spread_ns: u64,
}

impl Finished {
    fn of(entry: Entry, fleet: &[String]) -> Finished {
        let mut nodes: Vec<NodeSighting> = entry.sightings.into_values().collect();
        nodes.sort_by(|a, b| (a.first_seen_ns, &a.node).cmp(&(b.first_seen_ns, &b.node)));
        let first_seen_ns = nodes.first().map_or(0, |n| n.first_seen_ns);
        for node in &mut nodes {
            node.offset_ns = node.first_seen_ns - first_seen_ns;
        }
        let seen: HashSet<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
        let missing = fleet
            .iter()
            .filter(|node| !seen.contains(node.as_str()))
            .cloned()
            .collect();
        Finished {
            ids: entry.ids,
            txid: entry.txid,
            wtxid: entry.wtxid,
            height: entry.height,
            first_node: nodes.first().map(|n| n.node.clone()).unwrap_or_default(),
            first_seen_ns,
            spread_ns: nodes.last().map_or(0, |n| n.offset_ns),
            nodes,
            missing,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableCounts {
    pub evicted: u64,
    pub late: u64,
}

pub struct Table {
    entries: HashMap<u64, Entry>,
    by_id: HashMap<Hash, u64>,
    /// Creation order, for the timeouts (with the keys of entries already gone, skipped).
    order: VecDeque<u64>,
    /// Use order, least recent first, for evictions: (key, use) pairs, of which only those
    /// whose use is still the entry's count (older ones are skipped, and compacted away).
    recency: VecDeque<(u64, u64)>,
    next_use: u64,
    /// Recently published ids, oldest first, and the same as a set.
    published: VecDeque<Hash>,
    published_set: HashSet<Hash>,
    next_key: u64,
    capacity: usize,
    timeout: Duration,
    pub counts: TableCounts,
}

impl Table {
    pub fn new(capacity: usize, timeout: Duration) -> Table {
        Table {
            entries: HashMap::new(),
            by_id: HashMap::new(),
            order: VecDeque::new(),
            recency: VecDeque::new(),
            next_use: 0,
            published: VecDeque::new(),
            published_set: HashSet::new(),
            next_key: 0,
            capacity: capacity.max(1),
            timeout,
            counts: TableCounts::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_tracked(&self, id: &Hash) -> bool {
        self.by_id.contains_key(id)
    }

    /// The entry for `id`, made when `create` and the item was not published recently; `None`
    /// for an item not tracked (a late sighting is counted).
    pub fn entry(&mut self, id: &Hash, create: bool, now: Instant) -> Option<&mut Entry> {
        if let Some(&key) = self.by_id.get(id) {
            self.touch(key);
            return self.entries.get_mut(&key);
        }
        if self.published_set.contains(id) {
            self.counts.late += 1;
            return None;
        }
        if !create {
            return None;
        }
        if self.entries.len() >= self.capacity {
            self.evict_least_recent();
        }
        let key = self.next_key;
        self.next_key += 1;
        self.by_id.insert(*id, key);
        self.order.push_back(key);
        self.entries.insert(
            key,
            Entry {
                ids: vec![*id],
                created: Some(now),
                ..Entry::default()
            },
        );
        self.touch(key);
        self.entries.get_mut(&key)
    }

    fn touch(&mut self, key: u64) {
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        let used = self.next_use;
        self.next_use += 1;
        entry.used = used;
        self.recency.push_back((key, used));
        if self.recency.len() > 2 * self.capacity + 64 {
            let entries = &self.entries;
            self.recency
                .retain(|(key, used)| entries.get(key).is_some_and(|e| e.used == *used));
        }
    }

    /// `other` is another id of the item `id` names (a transaction's txid and wtxid): both
    /// name one entry from now on, merged when both had one.
    pub fn alias(&mut self, id: &Hash, other: &Hash) {
        if id == other {
            return;
        }
        let (Some(&key), other_key) = (self.by_id.get(id), self.by_id.get(other).copied()) else {
            return;
        };
        match other_key {
            Some(other_key) if other_key == key => {}
            Some(other_key) => {
                let Some(merged) = self.entries.remove(&other_key) else {
                    return;
                };
                for other_id in &merged.ids {
                    self.by_id.insert(*other_id, key);
                }
                let Some(entry) = self.entries.get_mut(&key) else {
                    return;
                };
                entry.ids.extend(merged.ids);
                entry.txid = entry.txid.or(merged.txid);
                entry.wtxid = entry.wtxid.or(merged.wtxid);
                entry.created = entry.created.min(merged.created);

                for (node, s) in merged.sightings {
                    entry.see(&node, s.first_seen_ns, &s.source, Some(&s.peer));
                }
                self.touch(key);
            }
            None => {
                self.by_id.insert(*other, key);
                if let Some(entry) = self.entries.get_mut(&key) {
                    entry.ids.push(*other);
                }
            }
        }
    }

    /// Takes the item `id` names out, finished, when `complete` says so of it.
    pub fn take_if(
        &mut self,
        id: &Hash,
        fleet: &[String],
        complete: impl Fn(&Entry) -> bool,
    ) -> Option<Finished> {
        let key = *self.by_id.get(id)?;
        if !complete(self.entries.get(&key)?) {
            return None;
        }
        self.remove(key).map(|entry| Finished::of(entry, fleet))
    }

    /// The items whose timeout passed, oldest first.
    pub fn expire(&mut self, now: Instant, fleet: &[String]) -> Vec<Finished> {
        let mut done = Vec::new();
        while let Some(&key) = self.order.front() {
            let Some(entry) = self.entries.get(&key) else {
                self.order.pop_front();
                continue;
            };
            if entry.created.is_some_and(|at| now < at + self.timeout) {
                break;
            }
            self.order.pop_front();
            if let Some(entry) = self.remove(key) {
                done.push(Finished::of(entry, fleet));
            }
        }
        done
    }

    fn evict_least_recent(&mut self) {
        while let Some((key, used)) = self.recency.pop_front() {
            if self.entries.get(&key).is_none_or(|e| e.used != used) {
                continue;
            }
            if let Some(entry) = self.entries.remove(&key) {
                for id in &entry.ids {
                    self.by_id.remove(id);
                }
                self.counts.evicted += 1;
                return;
            }
        }
    }

    fn remove(&mut self, key: u64) -> Option<Entry> {
        let entry = self.entries.remove(&key)?;
        for id in &entry.ids {
            self.by_id.remove(id);
            // Remember as many published ids as the table holds items.
            if self.published.len() >= self.capacity {
                if let Some(old) = self.published.pop_front() {
                    self.published_set.remove(&old);
                }
            }
            if self.published_set.insert(*id) {
                self.published.push_back(*id);
            }
        }
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn earliest_sighting_wins_and_offsets_are_from_the_first_node() {
        let now = Instant::now();
        let mut table = Table::new(10, Duration::from_secs(60));
        let e = table.entry(&[1; 32], true, now).unwrap();
        e.see("b", 2_000, "block", Some("p"));
        e.see("a", 1_500, "inv", Some("q"));
        e.see("b", 1_700, "headers", Some("r"));
        e.see("b", 1_900, "inv", None);
        let all = fleet(&["a", "b", "c"]);
        assert!(table
            .take_if(&[1; 32], &all, |e| e.sightings.len() == 3)
            .is_none());
        let done = table.take_if(&[1; 32], &all, |_| true).unwrap();
        assert_eq!(done.first_node, "a");
        assert_eq!(done.first_seen_ns, 1_500);
        assert_eq!(done.spread_ns, 200);
        assert_eq!(done.nodes[1].source, "headers");
        assert_eq!(done.nodes[1].offset_ns, 200);
        assert_eq!(done.missing, ["c"]);
        // A late sighting of a published item is not a new item.
        assert!(table.entry(&[1; 32], true, now).is_none());
        assert_eq!(table.counts.late, 1);
    }

    #[test]
    fn bounded_and_timeouts_publish_in_creation_order() {
        let now = Instant::now();
        let mut table = Table::new(2, Duration::from_secs(5));
        for byte in 1..=3u8 {
            table
                .entry(&[byte; 32], true, now + Duration::from_secs(byte.into()))
                .unwrap()
                .see("a", byte.into(), "inv", None);
        }
        assert_eq!(table.len(), 2);
        assert_eq!(table.counts.evicted, 1);
        assert!(!table.is_tracked(&[1; 32]));
        let all = fleet(&["a"]);
        assert!(table.expire(now + Duration::from_secs(6), &all).is_empty());
        let done = table.expire(now + Duration::from_secs(7), &all);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].ids, [[2; 32]]);
        assert_eq!(table.expire(now + Duration::from_secs(60), &all).len(), 1);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn the_least_recently_sighted_item_is_evicted() {
        let now = Instant::now();
        let mut table = Table::new(2, Duration::from_secs(60));
        table.entry(&[1; 32], true, now).unwrap();
        table.entry(&[2; 32], true, now).unwrap();
        // 1 is sighted again: 2 is now the least recent.
        table.entry(&[1; 32], true, now).unwrap();
        table.entry(&[3; 32], true, now).unwrap();
        assert!(table.is_tracked(&[1; 32]));
        assert!(!table.is_tracked(&[2; 32]));
        assert_eq!(table.counts.evicted, 1);
        // Many sightings of one item keep the use order bounded.
        for _ in 0..1_000 {
            table.entry(&[3; 32], true, now).unwrap();
        }
        assert!(table.recency.len() <= 2 * 2 + 64 + 1);
        table.entry(&[4; 32], true, now).unwrap();
        assert!(!table.is_tracked(&[1; 32]), "1 was the least recent");
        assert!(table.is_tracked(&[3; 32]));
    }

    #[test]
    fn aliases_merge_two_entries_of_one_transaction() {
        let now = Instant::now();
        let mut table = Table::new(10, Duration::from_secs(60));
        table
            .entry(&[1; 32], true, now)
            .unwrap()
            .see("a", 10, "mempool_added", None);
        table
            .entry(&[2; 32], true, now)
            .unwrap()
            .see("b", 5, "inv", Some("p"));
        table.alias(&[2; 32], &[1; 32]);
        assert_eq!(table.len(), 1);
        let done = table
            .take_if(&[1; 32], &fleet(&["a", "b"]), |_| true)
            .unwrap();
        assert_eq!(done.first_node, "b");
        assert_eq!(done.nodes.len(), 2);
        assert_eq!(done.ids.len(), 2);
    }
}
