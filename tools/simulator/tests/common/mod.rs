//! Helpers shared by the integration tests: the ELF notes as readelf shows them, the notes of the
//! real Bitcoin Core v30.0 (a fixture), semaphores in a running process, and running the simulator.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use object::{Object as _, ObjectSection as _, ObjectSegment as _};

/// One `.note.stapsdt` entry.
#[derive(Debug, Clone)]
pub struct Note {
    pub provider: String,
    pub name: String,
    pub location: u64,
    pub base: u64,
    pub semaphore: u64,
    /// `(size, signed)` per argument.
    pub args: Vec<(u8, bool)>,
    pub arg_specs: String,
}

impl Note {
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }
}

pub fn bin(name: &str) -> PathBuf {
    simulator::binary_path(name).expect("locating the simulator binary")
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).expect("hex number")
}

/// `-8@%rax` -> (8, true).
pub fn spec_size_sign(spec: &str) -> (u8, bool) {
    let (size, _) = spec
        .split_once('@')
        .unwrap_or_else(|| panic!("bad arg spec {spec:?}"));
    let signed = size.starts_with('-');
    (
        size.trim_start_matches('-').parse().expect("arg size"),
        signed,
    )
}

/// Parses `readelf -n --wide <binary>`, keeping only stapsdt notes.
pub fn readelf_notes(binary: &Path) -> Vec<Note> {
    let out = Command::new("readelf")
        .arg("-n")
        .arg("--wide")
        .arg(binary)
        .output()
        .expect("running readelf");
    assert!(
        out.status.success(),
        "readelf -n failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_readelf_notes(&String::from_utf8(out.stdout).expect("readelf output is UTF-8"))
}

/// The stapsdt notes in `readelf -n --wide` output.
pub fn parse_readelf_notes(text: &str) -> Vec<Note> {
    let mut notes = Vec::new();
    let mut cur: Option<Note> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("stapsdt") {
            if let Some(n) = cur.take() {
                notes.push(n);
            }
            let provider = line
                .split("Provider:")
                .nth(1)
                .expect("Provider field")
                .trim()
                .to_string();
            cur = Some(Note {
                provider,
                name: String::new(),
                location: 0,
                base: 0,
                semaphore: 0,
                args: vec![],
                arg_specs: String::new(),
            });
        } else if let Some(n) = cur.as_mut() {
            if let Some(name) = line.strip_prefix("Name:") {
                n.name = name.trim().to_string();
            } else if let Some(rest) = line.strip_prefix("Location:") {
                for field in rest.split(',') {
                    let (k, v) = field.split_once(':').unwrap_or(("Location", field));
                    match k.trim() {
                        "Location" => n.location = hex(v),
                        "Base" => n.base = hex(v),
                        "Semaphore" => n.semaphore = hex(v),
                        other => panic!("unexpected note field {other}"),
                    }
                }
            } else if let Some(args) = line.strip_prefix("Arguments:") {
                n.arg_specs = args.trim().to_string();
                n.args = args.split_whitespace().map(spec_size_sign).collect();
            } else if !line.is_empty()
                && !line.starts_with("Owner")
                && !line.starts_with("Displaying")
            {
                // Notes of other owners end the current stapsdt entry.
                notes.extend(cur.take());
            }
        }
    }
    notes.extend(cur);
    notes
}

/// The real Bitcoin Core v30.0's notes as `fixtures/dump-usdt-notes.sh` dumped them from the
/// release build: the interface the simulator is held to.
pub const V30_NOTES_FIXTURE: &str = include_str!("../fixtures/bitcoind-v30.0.usdt-notes.txt");

pub fn v30_notes() -> Vec<Note> {
    let notes = parse_readelf_notes(V30_NOTES_FIXTURE);
    assert_eq!(notes.len(), 20, "the v30.0 fixture holds 20 notes");
    notes
}

/// Address range of a section, from the ELF file.
pub fn section_range(binary: &Path, name: &str) -> Option<(u64, u64)> {
    let data = std::fs::read(binary).expect("reading binary");
    let file = object::File::parse(&*data).expect("parsing ELF");
    file.section_by_name(name)
        .map(|s| (s.address(), s.address() + s.size()))
}

/// `ref_ctr_offset`: semaphore virtual address -> file offset through the PT_LOAD segments.
pub fn vaddr_to_file_offset(binary: &Path, vaddr: u64) -> u64 {
    let data = std::fs::read(binary).expect("reading binary");
    let file = object::File::parse(&*data).expect("parsing ELF");
    for seg in file.segments() {
        let (off, size) = seg.file_range();
        if vaddr >= seg.address() && vaddr < seg.address() + size {
            return vaddr - seg.address() + off;
        }
    }
    panic!("address {vaddr:#x} is in no PT_LOAD segment with file data");
}

/// Sets a u16 semaphore in a running process through /proc/PID/mem (what BCC does with -p).
pub fn set_semaphore(pid: u32, binary: &Path, sem_vaddr: u64, value: u16) {
    use std::os::unix::fs::FileExt as _;
    let file_off = vaddr_to_file_offset(binary, sem_vaddr);
    let canonical = binary.canonicalize().expect("canonical binary path");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let addr = loop {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("reading maps");
        let found = maps.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Only the writable mapping: page-aligned read-only mappings can cover the same offset.
            if f.len() < 6 || Path::new(f[5]) != canonical || !f[1].contains('w') {
                return None;
            }
            let (start, end) = f[0].split_once('-')?;
            let (start, end, off) = (hex(start), hex(end), hex(f[2]));
            (file_off >= off && file_off < off + (end - start)).then(|| start + file_off - off)
        });
        if let Some(addr) = found {
            break addr;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "semaphore page of {pid} never mapped"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .expect("opening /proc/PID/mem");
    mem.write_at(&value.to_le_bytes(), addr)
        .expect("writing the semaphore");
}

/// Runs a simulator binary to completion.
pub fn run(binary: &Path, args: &[&str]) -> Output {
    let out = Command::new(binary)
        .args(args)
        .output()
        .expect("running the simulator");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\n{}",
        binary.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh file path for a truth file, removed when dropped (a 4 MB block makes them large).
pub fn temp_path(tag: &str) -> tempfile::TempPath {
    tempfile::Builder::new()
        .prefix(&format!("nodescope-sim-{tag}-"))
        .suffix(".jsonl")
        .tempfile()
        .expect("creating a temporary truth file")
        .into_temp_path()
}

/// Ground truth of a full legacy run (every probe fires) for the default seed.
pub fn legacy_truth(tag: &str, extra: &[&str]) -> Vec<simulator::TruthRecord> {
    let path = temp_path(tag);
    let mut args = vec!["--truth", path.to_str().unwrap()];
    args.extend(extra);
    args.push("regtest-like");
    run(&bin("bitcoind-sim-legacy"), &args);
    simulator::read_truth(&path).unwrap()
}
