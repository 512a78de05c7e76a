//! The wallet's coin selection (coin_selection:selected_coins, normal_create_tx_internal,
//! attempting_aps_create_tx, aps_create_tx_internal) as metrics: selections by algorithm with
//! the value selected, transactions created or not, and how often avoid-partial-spends won.

use nodescope_proto::{ApsCreateTx, NormalCreateTx, SelectedCoins};

use crate::labels;
use crate::metrics::*;

pub fn selected(m: &Metrics, node: &Node, s: &SelectedCoins) {
    let labels = AlgorithmLabels {
        node: node.clone(),
        algorithm: labels::algorithm(&s.algorithm),
    };
    m.coin_selections.get_or_create(&labels).inc();
    m.coin_selection_value
        .get_or_create(&labels)
        .inc_by(s.selected_value.max(0) as u64);
}

pub fn normal_create_tx(m: &Metrics, node: &Node, t: &NormalCreateTx) {
    create_tx(m, node, "normal", t.success);
}

/// What attempting_aps_create_tx announced: how the attempt went.
pub fn aps_create_tx(m: &Metrics, node: &Node, t: &ApsCreateTx) {
    if t.use_aps {
        m.aps_used
            .get_or_create(&NodeLabels { node: node.clone() })
            .inc();
    }
    create_tx(m, node, "aps", t.success);
}

fn create_tx(m: &Metrics, node: &Node, attempt: &'static str, success: bool) {
    m.create_tx
        .get_or_create(&CreateTxLabels {
            node: node.clone(),
            attempt,
            result: if success { "success" } else { "failure" },
        })
        .inc();
}
