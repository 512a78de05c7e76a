//! One generic USDT program, attached once per tracepoint location. The BPF cookie of each
//! attachment indexes `USDT_SPECS`, which says which tracepoint fired and where each of its
//! arguments lives; the program reads them, captures strings and hashes, and sends one
//! `TraceRecord` through the ring buffer. A record that finds no room is counted in `DROPS`.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
        generated::{bpf_get_attach_cookie, bpf_probe_read_user, bpf_probe_read_user_str},
    },
    macros::{map, uprobe},
    maps::{Array, PerCpuArray, RingBuf},
    programs::ProbeContext,
    EbpfContext,
};
use extractor_common::usdt::{
    capture, flags, location, TraceRecord, UsdtArgSpec, UsdtSpec, HASH_LEN, HASH_SLOTS, MAX_ARGS,
    MAX_ATTACH_POINTS, STRING_CAPACITY, STRING_SLOTS,
};

/// Size of `struct pt_regs` on x86_64: register offsets must stay below it.
const PT_REGS_SIZE: u16 = 168;
/// Counters are indexed by tracepoint; room for catalogue growth.
pub const DROP_SLOTS: u32 = 64;

#[map]
static USDT_SPECS: Array<UsdtSpec> = Array::with_max_entries(MAX_ATTACH_POINTS, 0);

/// Records for userspace. The size is set by userspace at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Records that found no room in `EVENTS`, per tracepoint.
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

#[uprobe]
pub fn usdt(ctx: ProbeContext) -> u32 {
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    if let Some(spec) = USDT_SPECS.get(cookie) {
        emit(&ctx, spec);
    }
    0
}

#[inline(always)]
fn emit(ctx: &ProbeContext, spec: &UsdtSpec) {
    let Some(mut entry) = EVENTS.reserve::<TraceRecord>(0) else {
        if let Some(count) = DROPS.get_ptr_mut(spec.tracepoint as u32) {
            unsafe { *count += 1 };
        }
        return;
    };
    let record = unsafe { &mut *entry.as_mut_ptr() };
    let pid_tgid = bpf_get_current_pid_tgid();
    record.boot_time_ns = unsafe { bpf_ktime_get_boot_ns() };
    record.pid = (pid_tgid >> 32) as u32;
    record.tid = pid_tgid as u32;
    record.tracepoint = spec.tracepoint;
    record.arg_count = spec.arg_count;
    record.flags = 0;
    record.string_len = [0; STRING_SLOTS];

    for i in 0..MAX_ARGS {
        if i >= spec.arg_count as usize {
            break;
        }
        let arg = &spec.args[i];
        let value = match read_arg(ctx, arg) {
            Ok(value) => value,
            Err(()) => {
                record.flags |= flags::READ_FAILED;
                0
            }
        };
        record.args[i] = value;
        let slot = arg.slot as usize;
        match arg.capture {
            capture::CSTRING if slot < STRING_SLOTS => {
                if read_string(value, slot, record).is_err() {
                    record.flags |= flags::READ_FAILED;
                }
            }
            capture::HASH if slot < HASH_SLOTS => {
                let dst = &mut record.hashes[slot];
                let ret = unsafe {
                    bpf_probe_read_user(dst.as_mut_ptr().cast(), HASH_LEN as u32, value as *const _)
                };
                if ret != 0 {
                    record.flags |= flags::READ_FAILED;
                }
            }
            _ => {}
        }
    }
    entry.submit(0);
}

/// Reads the string at `address` into string slot `slot`, noting its length and whether it
/// was longer than the slot.
#[inline(always)]
fn read_string(address: u64, slot: usize, record: &mut TraceRecord) -> Result<(), ()> {
    let dst = &mut record.strings[slot];
    let read = unsafe {
        bpf_probe_read_user_str(
            dst.as_mut_ptr().cast(),
            STRING_CAPACITY as u32,
            address as *const _,
        )
    };
    if read <= 0 {
        return Err(());
    }
    // `read` counts the NUL; a full slot may have cut the string: look at the next byte.
    let len = (read as usize - 1).min(STRING_CAPACITY - 1);
    record.string_len[slot] = len as u16;
    if len == STRING_CAPACITY - 1 {
        let mut next = 0u8;
        let ret = unsafe {
            bpf_probe_read_user(
                (&mut next as *mut u8).cast(),
                1,
                (address + len as u64) as *const _,
            )
        };
        if ret != 0 || next != 0 {
            record.flags |= flags::STRING_TRUNCATED_BASE << slot;
        }
    }
    Ok(())
}

/// Fetches one argument as the spec says and sign- or zero-extends it from its size to 64 bits.
#[inline(always)]
fn read_arg(ctx: &ProbeContext, arg: &UsdtArgSpec) -> Result<u64, ()> {
    let size = arg.size as u32;
    if size == 0 || size > 8 {
        return Err(());
    }
    let raw = match arg.location {
        location::CONSTANT => arg.value_or_displacement as u64,
        location::REGISTER => read_register(ctx, arg.register_offset)?,
        location::MEMORY => {
            let base = read_register(ctx, arg.register_offset)?;
            let address = base.wrapping_add(arg.value_or_displacement as u64);
            let mut value = 0u64;
            let ret = unsafe {
                bpf_probe_read_user((&mut value as *mut u64).cast(), size, address as *const _)
            };
            if ret != 0 {
                return Err(());
            }
            value
        }
        _ => return Err(()),
    };
    let shift = 64 - size * 8;
    Ok(if arg.signed != 0 {
        (((raw << shift) as i64) >> shift) as u64
    } else {
        (raw << shift) >> shift
    })
}

/// The verifier rejects variable offsets into the context, so registers are read through
/// `bpf_probe_read_kernel` at `regs + offset`, as libbpf does.
#[inline(always)]
fn read_register(ctx: &ProbeContext, offset: u16) -> Result<u64, ()> {
    if offset > PT_REGS_SIZE - 8 {
        return Err(());
    }
    let address = unsafe { (ctx.regs as *const u8).add(offset as usize) } as *const u64;
    unsafe { bpf_probe_read_kernel(address) }.map_err(|_| ())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
