//! Reading a binary's USDT probes from its `.note.stapsdt` ELF notes, with the probe and
//! semaphore addresses converted to the file offsets the kernel's uprobe interface takes.

use std::path::Path;

use object::elf::{PF_W, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, SectionHeader};
use object::{Endianness, Object, ObjectSection};

use super::argspec::{ArgSpec, ArgSpecError};

/// `NT_STAPSDT`: the note type of SystemTap probe descriptors (owner "stapsdt").
const NT_STAPSDT: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum NotesError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path} is not a 64-bit ELF executable ({reason}); point --bitcoind-path at the bitcoind binary")]
    NotElf { path: String, reason: String },
    #[error("{path} has no USDT tracepoints (no .note.stapsdt section): use a bitcoind built with -DWITH_USDT=ON (v29+) or --enable-usdt (v23-v28)")]
    NoProbes { path: String },
    #[error("{path}: malformed stapsdt note #{index}: {reason}")]
    BadNote {
        path: String,
        index: usize,
        reason: String,
    },
}

/// One probe location in a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtProbe {
    pub provider: String,
    pub name: String,
    /// Virtual address of the probe's `nop`, after the `.stapsdt.base` adjustment.
    pub address: u64,
    /// File offset of the probe, where the uprobe goes.
    pub offset: u64,
    /// File offset of the 2-byte semaphore (the uprobe reference counter), if the probe has one.
    pub semaphore_offset: Option<u64>,
    /// The semaphore's file page is mapped by two writable segments (rust-lld's RELRO/.data
    /// split): in processes started after attaching, the kernel may raise the copy in the RELRO
    /// mapping, where the program does not read it, and the probe never fires there.
    pub semaphore_page_shared: bool,
    /// The raw spec string, e.g. `-8@%rbx 8@%r12`.
    pub arg_specs: String,
    /// The parsed specs, or why they could not be parsed.
    pub args: Result<Vec<ArgSpec>, ArgSpecError>,
}

/// The PT_LOAD segments of a binary, for address → file offset conversion.
#[derive(Debug, Clone, Copy)]
struct Segment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
    writable: bool,
}

const PAGE: u64 = 4096;

/// How many writable segments map the file page holding `offset`.
fn writable_mappings_of_page(segments: &[Segment], offset: u64) -> usize {
    let page = offset / PAGE;
    segments
        .iter()
        .filter(|s| s.writable && s.filesz > 0)
        .filter(|s| s.offset / PAGE <= page && page <= (s.offset + s.filesz - 1) / PAGE)
        .count()
}

fn file_offset(segments: &[Segment], address: u64) -> Option<u64> {
    segments
        .iter()
        .find(|s| address >= s.vaddr && address < s.vaddr + s.memsz)
        .map(|s| address - s.vaddr + s.offset)
}

/// The fields of one stapsdt note descriptor (ELF64 layout).
#[derive(Debug, PartialEq, Eq)]
struct NoteDesc<'a> {
    pc: u64,
    base: u64,
    semaphore: u64,
    provider: &'a str,
    name: &'a str,
    args: &'a str,
}

fn parse_desc(desc: &[u8], little_endian: bool) -> Result<NoteDesc<'_>, String> {
    if desc.len() < 24 {
        return Err(format!(
            "descriptor is {} bytes, shorter than 3 addresses",
            desc.len()
        ));
    }
    let word = |i: usize| {
        let bytes: [u8; 8] = desc[i * 8..i * 8 + 8].try_into().expect("8 bytes");
        if little_endian {
            u64::from_le_bytes(bytes)
        } else {
            u64::from_be_bytes(bytes)
        }
    };
    let mut strings = desc[24..].split(|&b| b == 0);
    let mut next = |what: &str| {
        strings
            .next()
            .ok_or_else(|| format!("missing {what}"))
            .and_then(|s| std::str::from_utf8(s).map_err(|_| format!("{what} is not UTF-8")))
    };
    Ok(NoteDesc {
        pc: word(0),
        base: word(1),
        semaphore: word(2),
        provider: next("provider")?,
        name: next("name")?,
        args: next("argument specs").unwrap_or(""),
    })
}

pub fn read_probes(path: &Path) -> Result<Vec<UsdtProbe>, NotesError> {
    let display = path.display().to_string();
    // Read in the ranges the parser asks for, not whole: bitcoind is tens of MB, of which the
    // headers and notes are a few kB.
    let file = std::fs::File::open(path).map_err(|error| NotesError::Read {
        path: display.clone(),
        error,
    })?;
    let cache = object::ReadCache::new(file);
    parse_probes(&cache).map_err(|e| e.with_path(&display))
}

impl NotesError {
    fn with_path(self, path: &str) -> NotesError {
        match self {
            NotesError::NotElf { reason, .. } => NotesError::NotElf {
                path: path.into(),
                reason,
            },
            NotesError::NoProbes { .. } => NotesError::NoProbes { path: path.into() },
            NotesError::BadNote { index, reason, .. } => NotesError::BadNote {
                path: path.into(),
                index,
                reason,
            },
            other => other,
        }
    }
}

/// Parses the probes of an ELF image (`path` fields of errors are filled in by the caller).
pub fn parse_probes<'data, R: object::ReadRef<'data>>(
    data: R,
) -> Result<Vec<UsdtProbe>, NotesError> {
    let not_elf = |reason: String| NotesError::NotElf {
        path: String::new(),
        reason,
    };
    let elf = ElfFile64::<Endianness, R>::parse(data).map_err(|e| not_elf(e.to_string()))?;
    let endian = elf.endian();
    let little_endian = elf.is_little_endian();
    let header = elf.elf_header();
    let segments: Vec<Segment> = header
        .program_headers(endian, data)
        .map_err(|e| not_elf(e.to_string()))?
        .iter()
        .filter(|ph| ph.p_type(endian) == PT_LOAD)
        .map(|ph| Segment {
            vaddr: ph.p_vaddr(endian),
            memsz: ph.p_memsz(endian),
            offset: ph.p_offset(endian),
            filesz: ph.p_filesz(endian),
            writable: ph.p_flags(endian) & PF_W != 0,
        })
        .collect();
    // Prelinking can move `.stapsdt.base`: the notes' addresses then shift by as much.
    let actual_base = elf
        .section_by_name(".stapsdt.base")
        .map(|section| section.address());

    let mut probes = Vec::new();
    let mut found_section = false;
    for section in elf.elf_section_table().iter() {
        let Ok(Some(mut notes)) = section.notes(endian, data) else {
            continue;
        };
        let name = elf
            .elf_section_table()
            .section_name(endian, section)
            .unwrap_or_default();
        if name != b".note.stapsdt" {
            continue;
        }
        found_section = true;
        while let Some(note) = notes.next().map_err(|e| NotesError::BadNote {
            path: String::new(),
            index: probes.len(),
            reason: e.to_string(),
        })? {
            if note.name() != b"stapsdt" || note.n_type(endian) != NT_STAPSDT {
                continue;
            }
            let index = probes.len();
            let bad = |reason: String| NotesError::BadNote {
                path: String::new(),
                index,
                reason,
            };
            let desc = parse_desc(note.desc(), little_endian).map_err(bad)?;
            let shift = match actual_base {
                Some(actual) if desc.base != 0 => actual.wrapping_sub(desc.base),
                _ => 0,
            };
            let address = desc.pc.wrapping_add(shift);
            let offset = file_offset(&segments, address).ok_or_else(|| {
                bad(format!(
                    "probe address {address:#x} lies in no loadable segment"
                ))
            })?;
            // The semaphore is converted without the base adjustment, as libbpf does.
            let semaphore_offset = match desc.semaphore {
                0 => None,
                semaphore => Some(file_offset(&segments, semaphore).ok_or_else(|| {
                    bad(format!(
                        "semaphore address {semaphore:#x} lies in no loadable segment"
                    ))
                })?),
            };
            probes.push(UsdtProbe {
                provider: desc.provider.to_string(),
                name: desc.name.to_string(),
                address,
                offset,
                semaphore_offset,
                semaphore_page_shared: semaphore_offset
                    .is_some_and(|offset| writable_mappings_of_page(&segments, offset) > 1),
                arg_specs: desc.args.to_string(),
                args: desc.args.split_whitespace().map(ArgSpec::parse).collect(),
            });
        }
    }
    if !found_section {
        return Err(NotesError::NoProbes {
            path: String::new(),
        });
    }
    Ok(probes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(pc: u64, base: u64, sem: u64, text: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [pc, base, sem] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }

    #[test]
    fn descriptor_fields_as_bitcoind_v30_writes_them() {
        let bytes = desc(
            0x14d51,
            0xa014a4,
            0xb4c8f4,
            "net\0inbound_message\0-8@-968(%rbp) 8@-928(%rbp) 8@-640(%rbp) 8@-336(%rbp) 8@%rax 8@%rdx\0",
        );
        let parsed = parse_desc(&bytes, true).unwrap();
        assert_eq!(parsed.pc, 0x14d51);
        assert_eq!(parsed.base, 0xa014a4);
        assert_eq!(parsed.semaphore, 0xb4c8f4);
        assert_eq!(parsed.provider, "net");
        assert_eq!(parsed.name, "inbound_message");
        assert_eq!(parsed.args.split_whitespace().count(), 6);
    }

    #[test]
    fn probe_without_arguments_and_short_descriptor() {
        let bytes = desc(1, 2, 0, "p\0n\0");
        let parsed = parse_desc(&bytes, true).unwrap();
        assert_eq!((parsed.provider, parsed.name, parsed.args), ("p", "n", ""));
        assert!(parse_desc(&[0u8; 20], true).is_err());
        assert!(parse_desc(&desc(1, 2, 0, "p"), true).is_err());
    }

    #[test]
    fn addresses_become_file_offsets_through_their_segment() {
        // The shape TOOLCHAIN.md reports: text mapped 0x1000 above its file offset.
        let segment = |vaddr, memsz, offset| Segment {
            vaddr,
            memsz,
            offset,
            filesz: memsz,
            writable: false,
        };
        let segments = [
            segment(0, 0x1000, 0),
            segment(0x2000, 0x20000, 0x1000),
            segment(0x30000, 0x3000, 0x25000),
        ];
        assert_eq!(file_offset(&segments, 0x14d51), Some(0x13d51));
        assert_eq!(file_offset(&segments, 0x30008), Some(0x25008));
        assert_eq!(file_offset(&segments, 0x1800), None);
    }

    #[test]
    fn semaphore_page_mapped_by_two_writable_segments_is_detected() {
        // rust-lld's layout: RELRO ends in the file page where .data (with .probes) begins.
        let rw = |vaddr, offset, size| Segment {
            vaddr,
            memsz: size,
            offset,
            filesz: size,
            writable: true,
        };
        let lld = [
            rw(0x30e2d0, 0x30c2d0, 0x20d30),
            rw(0x32f2f0, 0x32c2f0, 0xaa8),
        ];
        assert_eq!(writable_mappings_of_page(&lld, 0x32cd96), 2);
        // GNU ld's: one writable segment.
        let bfd = [rw(0x2f1748, 0x2f1748, 0x1a360)];
        assert_eq!(writable_mappings_of_page(&bfd, 0x30ba80), 1);
    }

    #[test]
    fn non_elf_and_elf_without_notes_are_told_apart() {
        assert!(matches!(
            parse_probes(&b"#!/bin/sh\n"[..]),
            Err(NotesError::NotElf { .. })
        ));
        let me = std::fs::read("/bin/true").unwrap();
        assert!(matches!(
            parse_probes(&me[..]),
            Err(NotesError::NoProbes { .. })
        ));
    }
}
