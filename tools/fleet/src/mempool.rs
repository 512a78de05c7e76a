//! Which node holds which transaction, as the nodes' `mempool:added` / `mempool:removed` events
//! tell it since the tool started following them, and for every pair of nodes how many
//! transactions one holds and the other does not — kept up to date per event (a bit per node,
//! so at most [`MAX_NODES`] nodes), never recomputed from scratch.

use std::collections::HashMap;

use crate::sighting::Hash;

pub const MAX_NODES: usize = 64;

pub struct Mempools {
    holders: HashMap<Hash, u64>,
    /// `only[a][b]`: transactions node a holds and node b does not.
    only: Vec<[u64; MAX_NODES]>,
    held: [u64; MAX_NODES],
    capacity: usize,
    /// Transactions not tracked because the table was full.
    pub overflow: u64,
}

impl Mempools {
    pub fn new(capacity: usize) -> Mempools {
        Mempools {
            holders: HashMap::new(),
            only: vec![[0; MAX_NODES]; MAX_NODES],
            held: [0; MAX_NODES],
            capacity,
            overflow: 0,
        }
    }

    pub fn held(&self, node: usize) -> u64 {
        self.held[node]
    }

    /// Transactions `a` holds and `b` does not.
    pub fn only_in(&self, a: usize, b: usize) -> u64 {
        self.only[a][b]
    }

    pub fn tracked(&self) -> usize {
        self.holders.len()
    }

    /// `node` added `txid`; `others` are the slots of the other nodes followed.
    pub fn add(&mut self, node: usize, txid: Hash, others: impl Iterator<Item = usize>) {
        let bit = 1u64 << node;
        let full = self.holders.len() >= self.capacity;
        let mask = match self.holders.get_mut(&txid) {
            Some(mask) if *mask & bit != 0 => return,
            Some(mask) => {
                let before = *mask;
                *mask |= bit;
                before
            }
            None if full => {
                self.overflow += 1;
                return;
            }
            None => {
                self.holders.insert(txid, bit);
                0
            }
        };
        self.held[node] += 1;
        for other in others.filter(|&o| o != node) {
            if mask & (1 << other) != 0 {
                self.only[other][node] -= 1;
            } else {
                self.only[node][other] += 1;
            }
        }
    }

    /// `node` removed `txid` (a transaction it was not known to hold is ignored).
    pub fn remove(&mut self, node: usize, txid: &Hash, others: impl Iterator<Item = usize>) {
        let bit = 1u64 << node;
        let Some(mask) = self.holders.get_mut(txid) else {
            return;
        };
        if *mask & bit == 0 {
            return;
        }
        *mask &= !bit;
        let after = *mask;
        if after == 0 {
            self.holders.remove(txid);
        }
        self.held[node] -= 1;
        for other in others.filter(|&o| o != node) {
            if after & (1 << other) != 0 {
                self.only[other][node] += 1;
            } else {
                self.only[node][other] -= 1;
            }
        }
    }

    /// `node` is no longer followed (or its slot is given to a new node): forget what it held.
    pub fn forget(&mut self, node: usize) {
        let bit = 1u64 << node;
        self.holders.retain(|_, mask| {
            *mask &= !bit;
            *mask != 0
        });
        self.held[node] = 0;
        for other in 0..MAX_NODES {
            self.only[node][other] = 0;
            self.only[other][node] = self.held[other];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(byte: u8) -> Hash {
        [byte; 32]
    }

    /// The incremental counts equal a count from scratch after every step.
    fn check(m: &Mempools, nodes: &[usize]) {
        for &a in nodes {
            for &b in nodes {
                if a == b {
                    continue;
                }
                let expected = m
                    .holders
                    .values()
                    .filter(|mask| *mask & (1 << a) != 0 && *mask & (1 << b) == 0)
                    .count() as u64;
                assert_eq!(m.only_in(a, b), expected, "only in {a}, not in {b}");
            }
        }
    }

    #[test]
    fn pairwise_differences_follow_adds_and_removes() {
        let nodes = [0, 1, 5];
        let mut m = Mempools::new(100);
        let steps: &[(bool, usize, u8)] = &[
            (true, 0, 1),
            (true, 1, 1),
            (true, 5, 2),
            (true, 0, 3),
            (true, 0, 3), // twice: once
            (false, 1, 1),
            (false, 1, 9), // never held
            (true, 1, 2),
            (false, 5, 2),
            (false, 1, 2),
        ];
        for &(add, node, tx) in steps {
            if add {
                m.add(node, t(tx), nodes.into_iter());
            } else {
                m.remove(node, &t(tx), nodes.into_iter());
            }
            check(&m, &nodes);
        }
        assert_eq!(m.held(0), 2);
        assert_eq!(m.only_in(0, 1), 2);
        assert_eq!(m.tracked(), 2);
    }

    #[test]
    fn a_forgotten_node_holds_nothing() {
        let nodes = [0, 1];
        let mut m = Mempools::new(100);
        m.add(0, t(1), nodes.into_iter());
        m.add(1, t(1), nodes.into_iter());
        m.add(1, t(2), nodes.into_iter());
        m.forget(1);
        check(&m, &nodes);
        assert_eq!(m.only_in(0, 1), 1);
        assert_eq!(m.held(1), 0);
    }

    #[test]
    fn full_table_counts_overflow() {
        let mut m = Mempools::new(1);
        m.add(0, t(1), [0, 1].into_iter());
        m.add(0, t(2), [0, 1].into_iter());
        assert_eq!(m.overflow, 1);
        m.add(1, t(1), [0, 1].into_iter());
        assert_eq!(m.only_in(0, 1), 0);
    }
}
