//! The UTXO cache (utxocache:flush, utxocache:add, utxocache:spent, utxocache:uncache) as
//! metrics: flushes by mode with their duration and the cache's size then, coins added, spent
//! and uncached with their value. Coin events are frequent (thousands per block): their
//! series are kept per node; flushes look theirs up.

use nodescope_proto::UtxoCacheFlush;
use prometheus_client::metrics::counter::Counter;

use crate::labels::{self, FlushModes};
use crate::metrics::*;

/// What happened to a coin: the `operation` label.
#[derive(Debug, Clone, Copy)]
pub enum Operation {
    Add,
    Spent,
    Uncache,
}

impl Operation {
    fn label(self) -> &'static str {
        match self {
            Operation::Add => "add",
            Operation::Spent => "spent",
            Operation::Uncache => "uncache",
        }
    }
}

/// A node's (coins, value) series by [`Operation`].
#[derive(Default)]
pub struct CoinSeries {
    by_operation: [Option<(Counter, Counter)>; 3],
}

pub fn coin(m: &Metrics, node: &Node, series: &mut CoinSeries, operation: Operation, value: i64) {
    let (coins, total) = series.by_operation[operation as usize].get_or_insert_with(|| {
        let labels = OperationLabels {
            node: node.clone(),
            operation: operation.label(),
        };
        (
            m.utxocache_coins.get_or_create_owned(&labels),
            m.utxocache_coin_value.get_or_create_owned(&labels),
        )
    });
    coins.inc();
    total.inc_by(value.max(0) as u64);
}

pub fn flush(m: &Metrics, node: &Node, modes: FlushModes, f: &UtxoCacheFlush) {
    let mode = labels::flush_mode(f.mode, modes);
    m.utxocache_flushes
        .get_or_create(&FlushLabels {
            node: node.clone(),
            mode,
            for_prune: labels::bool_label(f.for_prune),
        })
        .inc();
    m.utxocache_flush_duration
        .get_or_create(&ModeLabels {
            node: node.clone(),
            mode,
        })
        .observe(f.duration_us.max(0) as f64 / 1e6);
    let n = NodeLabels { node: node.clone() };
    m.utxocache_flush_coins
        .get_or_create(&n)
        .set(f.coins_count as i64);
    m.utxocache_flush_memory
        .get_or_create(&n)
        .set(f.coins_mem_usage as i64);
}
