//! The scenario's wallet: sends and coin selection, as `coin_selection:*` tracepoints see them.

use bitcoin::Transaction;
use extractor_common::Tracepoint as T;

use super::Scenario;
use crate::payloads as p;
use crate::sim::{int, string};

impl Scenario<'_, '_> {
    /// `CreateTransaction` with the avoid-partial-spends second attempt; returns the sent tx.
    pub(super) fn wallet_send(
        &mut self,
        wallet: &str,
        algos: (&'static str, &'static str),
        use_aps: bool,
        amount: u64,
    ) -> Transaction {
        let fee = self.rng.range(1_400, 2_900);
        let inputs = [self.take_funding()];
        let total: u64 = inputs.iter().map(|op| self.utxos[op].value).sum();
        let tx = p::spend(&mut self.rng, &inputs, &[amount, total - amount - fee]);
        self.coin_selection(wallet, algos, use_aps, &tx);
        self.accept(&tx);
        tx
    }

    pub(super) fn coin_selection(
        &mut self,
        wallet: &str,
        algos: (&'static str, &'static str),
        use_aps: bool,
        tx: &Transaction,
    ) {
        let fee = self.fee_of(tx);
        let target = tx.output[0].value.to_sat() as i64 + fee;
        let selected = tx
            .output
            .iter()
            .map(|o| o.value.to_sat() as i64)
            .sum::<i64>()
            + fee;
        let change_pos: i32 = if tx.output.len() > 1 { 1 } else { -1 };
        let aps_fee = fee + self.rng.range(0, 400) as i64;
        let waste = [
            self.rng.range(0, 3_000) as i64 - 1_000,
            self.rng.range(0, 3_000) as i64 - 1_000,
        ];
        let w = wallet.to_string();
        for (i, algo) in [algos.0, algos.1].into_iter().enumerate() {
            if i == 1 {
                let w = w.clone();
                self.sim
                    .emit(T::CoinSelectionAttemptingApsCreateTx, move || {
                        vec![string(&w)]
                    });
            }
            let (w_sel, waste) = (w.clone(), waste[i]);
            self.sim.emit(T::CoinSelectionSelectedCoins, move || {
                vec![
                    string(&w_sel),
                    string(algo),
                    int(target),
                    int(waste),
                    int(selected),
                ]
            });
            let w = w.clone();
            if i == 0 {
                self.sim
                    .emit(T::CoinSelectionNormalCreateTxInternal, move || {
                        vec![string(&w), int(1u8), int(fee), int(change_pos)]
                    });
            } else {
                self.sim.emit(T::CoinSelectionApsCreateTxInternal, move || {
                    vec![
                        string(&w),
                        int(use_aps as u8),
                        int(1u8),
                        int(aps_fee),
                        int(change_pos),
                    ]
                });
            }
        }
    }
}
