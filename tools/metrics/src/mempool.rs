//! The mempool (mempool:added, mempool:removed, mempool:replaced, mempool:rejected) as
//! metrics: transactions added with their size, fee and fee rate, removed by reason, replaced
//! by what replaced them, rejected by reason class. Added and removed are frequent: their
//! series are kept per node (see `series_slots`); replaced and rejected look theirs up.

use nodescope_proto::{MempoolAdded, MempoolRejected, MempoolRemoved, MempoolReplaced};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::labels::{self, enum_slot, ENUM_SLOTS};
use crate::metrics::*;
use crate::series_slots::SeriesSlots;

/// A node's series of the added and removed transactions.
pub struct MempoolSeries {
    added: Option<AddedSeries>,
    /// By removal reason.
    removed: SeriesSlots<Counter>,
}

struct AddedSeries {
    count: Counter,
    vsize: Histogram,
    fee: Histogram,
    feerate: Histogram,
}

impl Default for MempoolSeries {
    fn default() -> MempoolSeries {
        MempoolSeries {
            added: None,
            removed: SeriesSlots::new(ENUM_SLOTS),
        }
    }
}

pub fn added(m: &Metrics, node: &Node, series: &mut MempoolSeries, a: &MempoolAdded) {
    let s = series.added.get_or_insert_with(|| {
        let n = NodeLabels { node: node.clone() };
        AddedSeries {
            count: m.mempool_added.get_or_create_owned(&n),
            vsize: m.mempool_added_vsize.get_or_create_owned(&n),
            fee: m.mempool_added_fee.get_or_create_owned(&n),
            feerate: m.mempool_added_feerate.get_or_create_owned(&n),
        }
    });
    s.count.inc();
    s.vsize.observe(a.vsize as f64);
    s.fee.observe(a.fee as f64);
    if a.vsize > 0 {
        s.feerate.observe(a.fee as f64 / a.vsize as f64);
    }
}

pub fn removed(m: &Metrics, node: &Node, series: &mut MempoolSeries, r: &MempoolRemoved) {
    series
        .removed
        .get(enum_slot(r.reason), || {
            m.mempool_removed.get_or_create_owned(&ReasonLabels {
                node: node.clone(),
                reason: labels::removal_reason(r.reason),
            })
        })
        .inc();
}

pub fn replaced(m: &Metrics, node: &Node, r: &MempoolReplaced) {
    m.mempool_replaced
        .get_or_create(&ReplacementLabels {
            node: node.clone(),
            replaced_by: if r.replaced_by_transaction {
                "transaction"
            } else {
                "package"
            },
        })
        .inc();
}

pub fn rejected(m: &Metrics, node: &Node, r: &MempoolRejected) {
    m.mempool_rejected
        .get_or_create(&ReasonLabels {
            node: node.clone(),
            reason: labels::reject_class(&r.reason),
        })
        .inc();
}
