//! Connected blocks (validation:block_connected) as metrics: the height, blocks connected, the
//! time ConnectBlock took, and the transactions, inputs and sigop cost they held.

use nodescope_proto::BlockConnected;

use crate::metrics::*;

pub fn connected(m: &Metrics, node: &Node, b: &BlockConnected) {
    let n = NodeLabels { node: node.clone() };
    m.block_height.get_or_create(&n).set(b.height as i64);
    m.blocks_connected.get_or_create(&n).inc();
    m.block_connect_duration
        .get_or_create(&n)
        .observe(b.duration_ns.max(0) as f64 / 1e9);
    m.block_transactions
        .get_or_create(&n)
        .inc_by(b.transactions);
    m.block_inputs
        .get_or_create(&n)
        .inc_by(b.inputs.max(0) as u64);
    m.block_sigop_cost
        .get_or_create(&n)
        .inc_by(b.sigop_cost.max(0) as u64);
}
