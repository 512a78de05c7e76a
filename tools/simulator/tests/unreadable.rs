//! The `unreadable` scenario: pointer arguments that point at unmapped memory are handed to the
//! probes without the simulator ever touching them, and the ground truth says which.

mod common;

use common::*;
use simulator::unreadable::{UNREADABLE_ADDRESS, UNREADABLE_PAYLOAD_SIZE};
use simulator::TruthArg;

fn unreadable_truth(tag: &str, extra: &[&str]) -> Vec<simulator::TruthRecord> {
    let path = temp_path(tag);
    let mut args = vec!["--truth", path.to_str().unwrap()];
    args.extend(extra);
    args.push("unreadable");
    run(&bin("bitcoind-sim-legacy"), &args);
    simulator::read_truth(&path).unwrap()
}

#[test]
fn each_unreadable_argument_sits_between_two_normal_firings() {
    let records = unreadable_truth("unreadable", &[]);
    let tracepoints: Vec<&str> = records.iter().map(|r| r.tracepoint.as_str()).collect();
    assert_eq!(
        tracepoints,
        [
            "net:misbehaving_connection",
            "net:misbehaving_connection",
            "net:misbehaving_connection",
            "mempool:added",
            "mempool:added",
            "mempool:added",
            "net:inbound_message",
            "net:inbound_message",
            "net:inbound_message",
        ]
    );
    let address = UNREADABLE_ADDRESS as u64;
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.seq, i as u64);
        let unreadable: Vec<usize> = record
            .args
            .iter()
            .enumerate()
            .filter(|(_, a)| matches!(a, TruthArg::Unreadable(_)))
            .map(|(n, _)| n)
            .collect();
        let expected: &[usize] = match i {
            1 => &[1],
            4 => &[0],
            7 => &[5],
            _ => &[],
        };
        assert_eq!(unreadable, expected, "record {i}: {record:?}");
        for n in unreadable {
            assert_eq!(record.args[n].as_unreadable(), Some(address));
        }
    }
    // The unreadable payload still claims its size; the normal messages carry theirs.
    assert_eq!(
        records[7].args[4],
        TruthArg::Int(UNREADABLE_PAYLOAD_SIZE as i128)
    );
    for i in [6, 8] {
        assert_eq!(records[i].args[4], TruthArg::Int(8));
        assert_eq!(records[i].args[5].as_bytes().map(<[u8]>::len), Some(8));
    }
}

#[test]
fn repeats_and_gating_work_as_in_the_other_scenarios() {
    assert_eq!(
        unreadable_truth("unreadable-repeat", &["--repeat", "3"]).len(),
        27
    );
    let truth = temp_path("unreadable-no-tracer");
    run(
        &bin("bitcoind-sim"),
        &["--truth", truth.to_str().unwrap(), "unreadable"],
    );
    assert!(simulator::read_truth(&truth).unwrap().is_empty());
}
