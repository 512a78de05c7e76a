//! The binaries' ELF notes against TRACEPOINTS.md §2 and extractor-common's catalogue.

mod common;

use std::collections::BTreeSet;

use common::*;
use extractor_common::Tracepoint;

fn check_against_spec(binary_name: &str) -> Vec<Note> {
    let binary = bin(binary_name);
    let notes = readelf_notes(&binary);
    let spec = spec_table();
    assert_eq!(
        notes.len(),
        20,
        "{binary_name}: expected exactly 20 stapsdt notes, got {}",
        notes.len()
    );
    let names: BTreeSet<String> = notes.iter().map(Note::full_name).collect();
    assert_eq!(names.len(), 20, "{binary_name}: duplicate provider:name");
    let (base_lo, _) =
        section_range(&binary, ".stapsdt.base").expect(".stapsdt.base section exists");
    println!("{binary_name}: {} notes vs TRACEPOINTS.md §2", notes.len());
    for row in &spec {
        let note = notes
            .iter()
            .find(|n| n.full_name() == row.name)
            .unwrap_or_else(|| panic!("{binary_name}: no note for {}", row.name));
        assert_eq!(note.args.len(), row.arg_count, "{}: arg count", row.name);
        assert_eq!(
            note.args, row.args,
            "{}: (size, signed) per argument; ours: {}",
            row.name, note.arg_specs
        );
        let (provider, name) = row.name.split_once(':').unwrap();
        let tp = Tracepoint::from_provider_name(provider, name).expect("in the catalogue");
        let catalogue: Vec<(u8, bool)> = tp.args().iter().map(|k| k.size_and_sign()).collect();
        assert_eq!(note.args, catalogue, "{}: catalogue disagrees", row.name);
        assert_eq!(
            note.base, base_lo,
            "{}: note base != .stapsdt.base",
            row.name
        );
        assert_ne!(note.location, 0);
        println!(
            "  ok {:<42} {} args  {:<60} sem={:#x}",
            row.name, row.arg_count, note.arg_specs, note.semaphore
        );
    }
    notes
}

#[test]
fn v30_notes_match_the_spec_and_have_distinct_semaphores_in_probes() {
    let notes = check_against_spec("bitcoind-sim");
    let (lo, hi) = section_range(&bin("bitcoind-sim"), ".probes").expect(".probes section exists");
    let sems: BTreeSet<u64> = notes.iter().map(|n| n.semaphore).collect();
    assert_eq!(sems.len(), 20, "semaphores must be distinct");
    for n in &notes {
        assert_ne!(n.semaphore, 0, "{}: no semaphore", n.full_name());
        assert!(
            n.semaphore >= lo && n.semaphore + 2 <= hi,
            "{}: semaphore {:#x} outside .probes {lo:#x}..{hi:#x}",
            n.full_name(),
            n.semaphore
        );
    }
    assert_eq!(
        hi - lo,
        40,
        ".probes holds exactly 20 u16 semaphores, as in Core"
    );
}

#[test]
fn legacy_notes_match_the_spec_without_semaphores() {
    let notes = check_against_spec("bitcoind-sim-legacy");
    for n in &notes {
        assert_eq!(
            n.semaphore,
            0,
            "{}: legacy probes have no semaphore",
            n.full_name()
        );
    }
    assert!(
        section_range(&bin("bitcoind-sim-legacy"), ".probes").is_none(),
        "legacy has no .probes"
    );
}

#[test]
fn spec_parser_reads_signedness() {
    assert_eq!(spec_size_sign("-8@-968(%rbp)"), (8, true));
    assert_eq!(spec_size_sign("4@%r14d"), (4, false));
    assert_eq!(spec_size_sign("1@%dl"), (1, false));
}
