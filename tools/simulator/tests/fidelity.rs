//! The binaries' ELF notes against the real Bitcoin Core v30.0's (a fixture dumped from the
//! release build) and extractor-common's catalogue.

mod common;

use std::collections::BTreeSet;

use common::*;
use extractor_common::Tracepoint;

/// `provider:name`, `(size, signed)` per argument, and whether a semaphore guards it.
type Interface = (String, Vec<(u8, bool)>, bool);

/// What must be the same in two builds of v30.0's interface: which tracepoints, each argument's
/// size and sign, and whether it is semaphore-guarded (registers and addresses are the
/// compiler's choice).
fn interface(notes: &[Note]) -> Vec<Interface> {
    let mut rows: Vec<_> = notes
        .iter()
        .map(|n| (n.full_name(), n.args.clone(), n.semaphore != 0))
        .collect();
    rows.sort();
    rows
}

fn check_against_v30(binary_name: &str) -> Vec<Note> {
    let binary = bin(binary_name);
    let notes = readelf_notes(&binary);
    let real = v30_notes();
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
    println!(
        "{binary_name}: {} notes vs Bitcoin Core v30.0's",
        notes.len()
    );
    for row in &real {
        let row_name = row.full_name();
        let note = notes
            .iter()
            .find(|n| n.full_name() == row_name)
            .unwrap_or_else(|| panic!("{binary_name}: no note for {row_name}"));
        assert_eq!(
            note.args, row.args,
            "{row_name}: (size, signed) per argument; ours: {}, v30.0's: {}",
            note.arg_specs, row.arg_specs
        );
        let tp =
            Tracepoint::from_provider_name(&row.provider, &row.name).expect("in the catalogue");
        let catalogue: Vec<(u8, bool)> = tp.args().iter().map(|k| k.size_and_sign()).collect();
        assert_eq!(note.args, catalogue, "{row_name}: catalogue disagrees");
        assert_eq!(note.base, base_lo, "{row_name}: note base != .stapsdt.base");
        assert_ne!(note.location, 0);
        println!(
            "  ok {row_name:<42} {} args  {:<60} v30.0: {}",
            note.args.len(),
            note.arg_specs,
            row.arg_specs
        );
    }
    notes
}

#[test]
fn v30_notes_match_the_spec_and_have_distinct_semaphores_in_probes() {
    let notes = check_against_v30("bitcoind-sim");
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
    let notes = check_against_v30("bitcoind-sim-legacy");
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
fn the_semaphore_build_has_v30s_interface() {
    let sim = interface(&readelf_notes(&bin("bitcoind-sim")));
    assert_eq!(sim, interface(&v30_notes()));
}

/// The fixture is what the installed Bitcoin Core says: exactly, when it is the build the
/// fixture was dumped from; its interface, when NODESCOPE_BITCOIND_BIN names another v30.0
/// build (the official release, whose registers differ).
#[test]
fn the_fixture_is_the_installed_bitcoind() {
    let bitcoind = nodescope_regtest::bin_dir()
        .expect("Bitcoin Core v30.0 is installed (cargo xtask setup)")
        .join("bitcoind");
    let installed = readelf_notes(&bitcoind);
    let fixture = v30_notes();
    let same_build = V30_NOTES_FIXTURE.contains(&sha256_hex(&bitcoind));
    println!(
        "{}: {} notes, {}",
        bitcoind.display(),
        installed.len(),
        if same_build {
            "the fixture's build: compared exactly"
        } else {
            "another build: compared by interface"
        }
    );
    if same_build {
        let exact = |notes: &[Note]| -> Vec<String> {
            notes.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>()
        };
        assert_eq!(exact(&installed), exact(&fixture));
    } else {
        assert_eq!(interface(&installed), interface(&fixture));
    }
}

fn sha256_hex(path: &std::path::Path) -> String {
    use bitcoin::hashes::{sha256, Hash as _};
    let bytes = std::fs::read(path).expect("reading bitcoind");
    sha256::Hash::hash(&bytes).to_string()
}

#[test]
fn spec_parser_reads_signedness() {
    assert_eq!(spec_size_sign("-8@-968(%rbp)"), (8, true));
    assert_eq!(spec_size_sign("4@%r14d"), (4, false));
    assert_eq!(spec_size_sign("1@%dl"), (1, false));
}
