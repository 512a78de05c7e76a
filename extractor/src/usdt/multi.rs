//! One multi-uprobe link (`BPF_LINK_TYPE_UPROBE_MULTI`, Linux 6.6) for every probe of a file,
//! instead of a perf event and a link per probe. Closing it detaches all the probes with one
//! wait for the kernel's grace period; closing 20 perf events waits 20 times, one after the
//! other (about 0.1 s each here), which is what made a stop take over 2 s.
//!
//! aya 0.14 cannot load a program for this link type (it needs `expected_attach_type =
//! BPF_TRACE_UPROBE_MULTI` at load), so the program is loaded a second time here from the same
//! object, relocated by aya-obj against the maps aya created.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use aya::maps::Map;
use aya::Ebpf;
use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type};

/// Loads `program` of `object` for multi-uprobe links, its maps being `ebpf`'s. `None` when the
/// kernel or the object does not allow it (the caller uses perf links then).
pub fn load_program(ebpf: &Ebpf, object: &[u8], program: &str) -> Option<OwnedFd> {
    match try_load(ebpf, object, program) {
        Ok(fd) => Some(fd),
        Err(reason) => {
            tracing::debug!(%reason, "multi-uprobe links unavailable; one perf link per probe");
            None
        }
    }
}

fn try_load(ebpf: &Ebpf, object: &[u8], program: &str) -> Result<OwnedFd, String> {
    let mut obj = aya_obj::Object::parse(object).map_err(|e| e.to_string())?;
    let features = aya::features();
    let btf_fd = match features.btf() {
        Some(btf_features) => match obj
            .fixup_and_sanitize_btf(btf_features)
            .map_err(|e| e.to_string())?
        {
            Some(btf) => Some(load_btf(&btf.to_bytes())?),
            None => None,
        },
        None => None,
    };
    let maps: Vec<(String, aya_obj::Map)> = obj
        .maps
        .iter()
        .map(|(name, map)| (name.clone(), map.clone()))
        .collect();
    let mut fds = Vec::new();
    for (name, _) in &maps {
        let data = match ebpf.map(name) {
            Some(
                Map::Array(data)
                | Map::PerCpuArray(data)
                | Map::RingBuf(data)
                | Map::HashMap(data)
                | Map::PerCpuHashMap(data),
            ) => data,
            _ => return Err(format!("map {name} is not one aya created")),
        };
        fds.push(data.fd().as_fd().as_raw_fd());
    }
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    obj.relocate_maps(
        maps.iter()
            .zip(&fds)
            .map(|((name, map), fd)| (name.as_str(), *fd as RawFd, map)),
        &text_sections,
    )
    .map_err(|e| e.to_string())?;
    obj.relocate_calls(&text_sections)
        .map_err(|e| e.to_string())?;
    obj.sanitize_functions(features);
    let prog = obj
        .programs
        .get(program)
        .ok_or_else(|| format!("no program {program}"))?;
    let function = obj
        .functions
        .get(&prog.function_key())
        .ok_or("no function for the program")?;
    let license = CString::new(obj.license.as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: all-zero is a valid bpf_attr.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: the prog-load member of the union, fully initialised below.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32;
    load.expected_attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
    load.insns = function.instructions.as_ptr() as u64;
    load.insn_cnt = function.instructions.len() as u32;
    load.license = license.as_ptr() as u64;
    load.kern_version = obj.kernel_version.unwrap_or(0);
    for (slot, byte) in load.prog_name.iter_mut().zip(program.bytes().take(15)) {
        *slot = byte as _;
    }
    if let Some(btf) = &btf_fd {
        load.prog_btf_fd = btf.as_raw_fd() as u32;
        let func_info = &function.func_info.func_info;
        if !func_info.is_empty() {
            load.func_info_rec_size = function.func_info_rec_size as u32;
            load.func_info = func_info.as_ptr() as u64;
            load.func_info_cnt = func_info.len() as u32;
        }
        let line_info = &function.line_info.line_info;
        if !line_info.is_empty() {
            load.line_info_rec_size = function.line_info_rec_size as u32;
            load.line_info = line_info.as_ptr() as u64;
            load.line_info_cnt = line_info.len() as u32;
        }
    }
    if let Ok(fd) = bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) {
        return Ok(fd);
    }
    // Again with the verifier's log, to say why (a full log of a success would not fit).
    let mut log = vec![0u8; 4 << 20];
    // SAFETY: the same member as above.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.log_level = 1;
    load.log_buf = log.as_mut_ptr() as u64;
    load.log_size = log.len() as u32;
    let error = match bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => return Ok(fd),
        Err(error) => error,
    };
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    Err(format!(
        "loading for multi-uprobe links: {error}; verifier: {}",
        tail.join(" | ")
    ))
}

fn load_btf(bytes: &[u8]) -> Result<OwnedFd, String> {
    // SAFETY: all-zero is a valid bpf_attr.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: the BTF-load member of the union.
    let btf = unsafe { &mut attr.__bindgen_anon_7 };
    btf.btf = bytes.as_ptr() as u64;
    btf.btf_size = bytes.len() as u32;
    bpf(bpf_cmd::BPF_BTF_LOAD, &mut attr).map_err(|e| format!("loading BTF: {e}"))
}

fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> Result<OwnedFd, std::io::Error> {
    // SAFETY: attr is a bpf_attr of its full size; the kernel reads the member `cmd` uses.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as u32,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// One probe of the link: where, its semaphore (0: none) and the cookie the program reads.
pub struct MultiTarget {
    pub offset: u64,
    pub semaphore_offset: u64,
    pub cookie: u64,
}

/// Attaches `program` (from [`load_program`]) at every target of `binary` with one link,
/// raising each semaphore through the kernel's reference counter; `pid` limits it to one
/// process.
pub fn attach(
    program: BorrowedFd<'_>,
    binary: &Path,
    targets: &[MultiTarget],
    pid: Option<u32>,
) -> Result<OwnedFd, std::io::Error> {
    let path = CString::new(binary.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let offsets: Vec<u64> = targets.iter().map(|t| t.offset).collect();
    let ref_ctr_offsets: Vec<u64> = targets.iter().map(|t| t.semaphore_offset).collect();
    let cookies: Vec<u64> = targets.iter().map(|t| t.cookie).collect();
    // SAFETY: all-zero is a valid bpf_attr.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: the link-create member of the union, with its uprobe_multi part.
    unsafe {
        let link = &mut attr.link_create;
        link.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
        link.attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
        let multi = &mut link.__bindgen_anon_3.uprobe_multi;
        multi.path = path.as_ptr() as u64;
        multi.offsets = offsets.as_ptr() as u64;
        multi.ref_ctr_offsets = ref_ctr_offsets.as_ptr() as u64;
        multi.cookies = cookies.as_ptr() as u64;
        multi.cnt = targets.len() as u32;
        multi.pid = pid.unwrap_or(0);
    }
    bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr)
}
