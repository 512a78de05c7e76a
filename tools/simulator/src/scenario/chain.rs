//! The scenario's blocks and UTXO cache: connecting and disconnecting blocks and flushing the
//! cache, as `validation:*` and `utxocache:*` tracepoints see them.

use bitcoin::hashes::Hash;
use bitcoin::{Block, OutPoint, Transaction, Txid};
use extractor_common::Tracepoint as T;

use super::{Coin, Scenario};
use crate::payloads as p;
use crate::sim::{bytes, int};

impl Scenario<'_, '_> {
    pub(super) fn new_block(&mut self, txs: Vec<Transaction>) -> Block {
        self.tick(600);
        let height = self.height + 1;
        p::block(&mut self.rng, self.tip, height, self.now as u32, txs)
    }

    pub(super) fn utxo_event(&mut self, tp: T, op: OutPoint, c: Coin) {
        let txid = op.txid.to_byte_array();
        self.sim.emit(tp, move || {
            vec![
                bytes(txid),
                int(op.vout),
                int(c.height),
                int(c.value as i64),
                int(c.coinbase as u8),
            ]
        });
    }

    /// ConnectBlock: spent/add per transaction, block_connected, then the mempool update.
    pub(super) fn connect_block(&mut self, block: &Block) {
        let height = self.height + 1;
        let mut undo = Vec::new();
        let (mut inputs, mut sigops) = (0i32, 0i64);
        for (i, tx) in block.txdata.iter().enumerate() {
            inputs += tx.input.len() as i32;
            if i > 0 {
                for input in &tx.input {
                    let op = input.previous_output;
                    // Unknown prevouts belong to transactions confirmed before the scenario.
                    let c = self.utxos.remove(&op).unwrap_or(Coin {
                        height: height - 10,
                        value: 100_000,
                        coinbase: false,
                    });
                    undo.push((op, c));
                    self.utxo_event(T::UtxocacheSpent, op, c);
                    sigops += 1; // one P2WPKH CHECKSIG: witness sigops count 1
                }
            }
            let txid = tx.compute_txid();
            for (vout, out) in tx.output.iter().enumerate() {
                if out.script_pubkey.is_op_return() {
                    continue;
                }
                let op = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                let c = Coin {
                    height,
                    value: out.value.to_sat(),
                    coinbase: i == 0,
                };
                self.utxos.insert(op, c);
                self.utxo_event(T::UtxocacheAdd, op, c);
            }
        }
        let hash = block.block_hash().to_byte_array();
        let tx_count = block.txdata.len() as u64;
        let duration_ns = self.rng.range(180_000, 4_000_000) as i64;
        self.sim.emit(T::ValidationBlockConnected, move || {
            vec![
                bytes(hash),
                int(height as i32),
                int(tx_count),
                int(inputs),
                int(sigops),
                int(duration_ns),
            ]
        });
        self.height = height;
        self.tip = block.block_hash();
        self.last_block = Some((block.clone(), undo));

        // removeForBlock: confirmed txs leave as `block`, their double spends as `conflict`.
        let confirmed: Vec<Txid> = block.txdata[1..].iter().map(|t| t.compute_txid()).collect();
        let spent: Vec<OutPoint> = block.txdata[1..]
            .iter()
            .flat_map(|t| t.input.iter().map(|i| i.previous_output))
            .collect();
        for txid in &confirmed {
            self.remove(txid, "block");
        }
        let conflicts: Vec<Txid> = self
            .mempool
            .iter()
            .filter(|(_, e)| {
                e.tx.input
                    .iter()
                    .any(|i| spent.contains(&i.previous_output))
            })
            .map(|(txid, _)| *txid)
            .collect();
        for txid in conflicts {
            self.remove(&txid, "conflict");
        }
    }

    /// DisconnectBlock: outputs are spent, inputs restored from undo data, in reverse order.
    pub(super) fn disconnect_last_block(&mut self) {
        let Some((block, undo)) = self.last_block.take() else {
            return;
        };
        for tx in block.txdata.iter().rev() {
            let txid = tx.compute_txid();
            for (vout, out) in tx.output.iter().enumerate().rev() {
                if out.script_pubkey.is_op_return() {
                    continue;
                }
                let op = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                if let Some(c) = self.utxos.remove(&op) {
                    self.utxo_event(T::UtxocacheSpent, op, c);
                }
            }
            for input in tx.input.iter().rev() {
                if let Some((op, c)) = undo
                    .iter()
                    .find(|(op, _)| *op == input.previous_output)
                    .copied()
                {
                    self.utxos.insert(op, c);
                    self.utxo_event(T::UtxocacheAdd, op, c);
                }
            }
        }
        self.height -= 1;
        self.tip = block.header.prev_blockhash;
    }

    pub(super) fn flush(&mut self, mode: u32, for_prune: bool) {
        let duration_us = self.rng.range(150, 25_000) as i64;
        let coins = self.utxos.len() as u64 + self.rng.range(200, 800);
        let mem = coins * 112 + 1_048_576;
        self.sim.emit(T::UtxocacheFlush, move || {
            vec![
                int(duration_us),
                int(mode),
                int(coins),
                int(mem),
                int(for_prune as u8),
            ]
        });
    }
}
