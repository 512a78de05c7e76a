//! Attaching a BPF program to one USDT probe location.
//!
//! aya's `UProbe::attach` does not set the uprobe reference counter, so semaphore-guarded probes
//! (every tracepoint of Bitcoin Core v29+) would never fire. Instead we open the uprobe perf event
//! ourselves with the semaphore's file offset in `config` (the kernel then raises the semaphore in
//! every process of that binary, present and future, and lowers it when we close), and link the
//! program to it with `BPF_LINK_CREATE`, which also carries the BPF cookie that tells the program
//! which probe fired.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("this kernel has no uprobe perf event source ({0}): nodescope needs a kernel with CONFIG_UPROBE_EVENTS")]
    NoUprobePmu(String),
    #[error("opening the uprobe at {path}+{offset:#x} failed: {error}{hint}")]
    PerfEventOpen {
        path: String,
        offset: u64,
        error: std::io::Error,
        hint: &'static str,
    },
    #[error("linking the BPF program to the uprobe at {path}+{offset:#x} failed: {error}")]
    LinkCreate {
        path: String,
        offset: u64,
        error: std::io::Error,
    },
}

/// The kernel's `perf_event_attr` up to `config2` (PERF_ATTR_SIZE_VER1, 72 bytes).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    /// For uprobes: pointer to the binary's path.
    config1: u64,
    /// For uprobes: the probe's file offset.
    config2: u64,
}
const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == 72);

/// The `link_create` member of the kernel's `union bpf_attr`, for perf-event links.
#[repr(C)]
#[derive(Default)]
struct BpfLinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    bpf_cookie: u64,
}
const _: () = assert!(std::mem::size_of::<BpfLinkCreateAttr>() == 24);

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PERF_EVENT: u32 = 41;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;

/// The uprobe PMU's type and where its `config` keeps the reference-counter offset, from sysfs.
#[derive(Debug, Clone, Copy)]
pub struct UprobePmu {
    kind: u32,
    ref_ctr_shift: u32,
}

impl UprobePmu {
    pub fn detect() -> Result<UprobePmu, AttachError> {
        const DIR: &str = "/sys/bus/event_source/devices/uprobe";
        let read = |file: &str| {
            std::fs::read_to_string(format!("{DIR}/{file}"))
                .map_err(|e| AttachError::NoUprobePmu(format!("{DIR}/{file}: {e}")))
        };
        let kind = read("type")?
            .trim()
            .parse()
            .map_err(|e| AttachError::NoUprobePmu(format!("{DIR}/type: {e}")))?;
        // "config:32-63" on every kernel so far; read it rather than assume it.
        let ref_ctr_shift = read("format/ref_ctr_offset")
            .ok()
            .and_then(|f| {
                f.trim()
                    .strip_prefix("config:")?
                    .split('-')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(32);
        Ok(UprobePmu {
            kind,
            ref_ctr_shift,
        })
    }
}

/// A live attachment; dropping it detaches the program and releases the semaphore.
#[derive(Debug)]
pub struct UprobeLink {
    _link: OwnedFd,
    _perf_event: OwnedFd,
}

/// Where to attach and what to hand the program.
pub struct UprobeTarget<'a> {
    pub binary: &'a Path,
    pub offset: u64,
    pub semaphore_offset: Option<u64>,
    /// Only this process, or every process of the binary.
    pub pid: Option<u32>,
    pub cookie: u64,
}

pub fn attach_uprobe(
    pmu: UprobePmu,
    program: BorrowedFd<'_>,
    target: &UprobeTarget<'_>,
) -> Result<UprobeLink, AttachError> {
    let path_text = target.binary.display().to_string();
    let path = CString::new(target.binary.as_os_str().as_encoded_bytes()).map_err(|_| {
        AttachError::PerfEventOpen {
            path: path_text.clone(),
            offset: target.offset,
            error: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            hint: " (the path contains a NUL byte)",
        }
    })?;
    let attr = PerfEventAttr {
        kind: pmu.kind,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: target.semaphore_offset.unwrap_or(0) << pmu.ref_ctr_shift,
        config1: path.as_ptr() as u64,
        config2: target.offset,
        ..PerfEventAttr::default()
    };
    // A uprobe for every process needs pid -1 with one CPU; the program still runs on all CPUs.
    let (pid, cpu) = match target.pid {
        Some(pid) => (pid as libc::pid_t, -1),
        None => (-1, 0),
    };
    // SAFETY: attr is a valid perf_event_attr of the size it declares; path outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr,
            pid,
            cpu,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        let hint = match error.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => {
                // Linux ba677dbe77af (6.16, backported to the 6.6 and 6.12 stable kernels in
                // July 2025) takes perf-event uprobes back from CAP_PERFMON.
                " (perf-event uprobes need CAP_SYS_ADMIN on current kernels: run the extractor as root or with CAP_SYS_ADMIN, or let it use multi-uprobe links, Linux 6.6+, which need only CAP_BPF + CAP_PERFMON)"
            }
            Some(libc::EINVAL) if target.semaphore_offset.is_some() => {
                " (a semaphore in use by a tracer with a different reference counter, or a kernel older than 4.20)"
            }
            Some(libc::ESRCH) => " (no such process: check --pid)",
            _ => "",
        };
        return Err(AttachError::PerfEventOpen {
            path: path_text,
            offset: target.offset,
            error,
            hint,
        });
    }
    // SAFETY: the syscall returned a new descriptor we now own.
    let perf_event = unsafe { OwnedFd::from_raw_fd(fd as i32) };

    let link_attr = BpfLinkCreateAttr {
        prog_fd: program.as_raw_fd() as u32,
        target_fd: perf_event.as_raw_fd() as u32,
        attach_type: BPF_PERF_EVENT,
        flags: 0,
        bpf_cookie: target.cookie,
    };
    // SAFETY: link_attr is the link_create layout of bpf_attr with its exact size.
    let link = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            &link_attr,
            std::mem::size_of::<BpfLinkCreateAttr>(),
        )
    };
    let link_error = |error| AttachError::LinkCreate {
        path: path_text.clone(),
        offset: target.offset,
        error,
    };
    if link < 0 {
        return Err(link_error(std::io::Error::last_os_error()));
    }
    // SAFETY: as above.
    let link = unsafe { OwnedFd::from_raw_fd(link as i32) };
    // SAFETY: plain ioctl on our own perf event descriptor.
    if unsafe { libc::ioctl(perf_event.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) } < 0 {
        return Err(link_error(std::io::Error::last_os_error()));
    }
    Ok(UprobeLink {
        _link: link,
        _perf_event: perf_event,
    })
}
