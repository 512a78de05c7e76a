//! The scenario's transactions and mempool: spends, replacements, conflicts, acceptance,
//! removal and rejection, as `mempool:*` tracepoints see them.

use bitcoin::hashes::Hash;
use bitcoin::{OutPoint, Transaction, Txid};
use extractor_common::Tracepoint as T;

use super::{MempoolEntry, Scenario};
use crate::payloads as p;
use crate::sim::{bytes, int, string};

impl Scenario<'_, '_> {
    pub(super) fn take_funding(&mut self) -> OutPoint {
        self.funding
            .pop()
            .expect("enough funding coins for the scenario")
    }

    /// Spends `n_in` funding coins into `n_out` outputs paying `fee` sat.
    pub(super) fn new_spend(&mut self, n_in: usize, n_out: u64, fee: u64) -> Transaction {
        let inputs: Vec<OutPoint> = (0..n_in).map(|_| self.take_funding()).collect();
        let total: u64 = inputs.iter().map(|op| self.utxos[op].value).sum();
        let each = (total - fee) / n_out;
        let mut outs = vec![each; n_out as usize];
        outs[0] += total - fee - each * n_out;
        p::spend(&mut self.rng, &inputs, &outs)
    }

    /// Same inputs as `tx`, paying `extra_fee` more (a replacement / double spend).
    pub(super) fn rbf(&mut self, tx: &Transaction, extra_fee: u64) -> Transaction {
        let inputs: Vec<OutPoint> = tx.input.iter().map(|i| i.previous_output).collect();
        let mut outs: Vec<u64> = tx.output.iter().map(|o| o.value.to_sat()).collect();
        outs[0] -= extra_fee;
        p::spend(&mut self.rng, &inputs, &outs)
    }

    /// Spends only the first input of `tx`, paying `fee`, into one output.
    pub(super) fn conflicting(&mut self, tx: &Transaction, fee: u64) -> Transaction {
        let op = tx.input[0].previous_output;
        let value = self.utxos.get(&op).map(|c| c.value).unwrap_or(100_000);
        p::spend(&mut self.rng, &[op], &[value - fee])
    }

    pub(super) fn fee_of(&self, tx: &Transaction) -> i64 {
        let inputs: u64 = tx
            .input
            .iter()
            .map(|i| {
                let op = i.previous_output;
                self.utxos
                    .get(&op)
                    .map(|c| c.value)
                    .or_else(|| {
                        // Spends an unconfirmed output: look it up in the mempool.
                        self.mempool
                            .get(&op.txid)
                            .map(|e| e.tx.output[op.vout as usize].value.to_sat())
                    })
                    .unwrap_or(0)
            })
            .sum();
        inputs as i64
            - tx.output
                .iter()
                .map(|o| o.value.to_sat() as i64)
                .sum::<i64>()
    }

    fn entry(&mut self, tx: &Transaction) -> MempoolEntry {
        self.tick(2);
        MempoolEntry {
            tx: tx.clone(),
            vsize: tx.vsize() as i32,
            fee: self.fee_of(tx),
            entry_time: self.now as u64,
        }
    }

    pub(super) fn accept(&mut self, tx: &Transaction) {
        let e = self.entry(tx);
        let (txid, vsize, fee) = (tx.compute_txid().to_byte_array(), e.vsize, e.fee);
        self.mempool.insert(tx.compute_txid(), e);
        self.sim.emit(T::MempoolAdded, move || {
            vec![bytes(txid), int(vsize), int(fee)]
        });
    }

    pub(super) fn remove(&mut self, txid: &Txid, reason: &'static str) {
        let Some(e) = self.mempool.remove(txid) else {
            return;
        };
        let txid = txid.to_byte_array();
        self.sim.emit(T::MempoolRemoved, move || {
            vec![
                bytes(txid),
                string(reason),
                int(e.vsize),
                int(e.fee),
                int(e.entry_time),
            ]
        });
    }

    /// `replaced` per evicted tx, then `removed(replaced)`, then `added` per replacement tx.
    pub(super) fn replace(&mut self, old: &[Txid], new: &[&Transaction]) {
        // Entered one by one so that a child's fee sees its parent's outputs.
        let mut news = Vec::new();
        for tx in new {
            let e = self.entry(tx);
            self.mempool.insert(tx.compute_txid(), e.clone());
            news.push(e);
        }
        let (hash, with_tx) = match new {
            [one] => (one.compute_txid().to_byte_array(), true),
            many => (p::package_hash(many), false),
        };
        let vsize: i32 = news.iter().map(|e| e.vsize).sum();
        let fee: i64 = news.iter().map(|e| e.fee).sum();
        for txid in old {
            let Some(e) = self.mempool.get(txid).cloned() else {
                continue;
            };
            let old_txid = txid.to_byte_array();
            self.sim.emit(T::MempoolReplaced, move || {
                vec![
                    bytes(old_txid),
                    int(e.vsize),
                    int(e.fee),
                    int(e.entry_time),
                    bytes(hash),
                    int(vsize),
                    int(fee),
                    int(with_tx as u8),
                ]
            });
        }
        for txid in old {
            self.remove(txid, "replaced");
        }
        for e in news {
            let (txid, vsize, fee) = (e.tx.compute_txid().to_byte_array(), e.vsize, e.fee);
            self.sim.emit(T::MempoolAdded, move || {
                vec![bytes(txid), int(vsize), int(fee)]
            });
        }
    }

    pub(super) fn reject(&mut self, tx: &Transaction, reason: &'static str, uncache: bool) {
        if uncache {
            for input in &tx.input {
                let op = input.previous_output;
                if let Some(c) = self.utxos.get(&op).copied() {
                    self.utxo_event(T::UtxocacheUncache, op, c);
                }
            }
        }
        let txid = tx.compute_txid().to_byte_array();
        self.sim.emit(T::MempoolRejected, move || {
            vec![bytes(txid), string(reason)]
        });
    }
}
