//! One generic USDT program, attached once per tracepoint location. The BPF cookie of each
//! attachment indexes `USDT_SPECS`, which says which tracepoint fired and where each of its
//! arguments lives; the program reads them, captures strings and hashes, and sends one
//! `TraceRecord` through the events ring, with the payload (if the tracepoint has one) in the
//! same record when it is small (`InlineEvent`), else in `PayloadChunk` records that follow it,
//! in the first payload ring with room for them all or else in the events ring. A record that
//! finds no room is counted in `DROPS`; a payload cut short by a full ring is counted in
//! `PAYLOAD_DROPS`.
#![no_std]
#![no_main]
// The target declares no atomic read-modify-write (`AtomicU64::fetch_add` is missing), yet the
// kernel has had BPF_ATOMIC fetch-add since 5.12: written in assembly (`next_event_id`).
#![feature(asm_experimental_arch)]

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE},
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
        generated::{
            bpf_get_attach_cookie, bpf_loop, bpf_probe_read_user, bpf_probe_read_user_str,
        },
    },
    macros::{map, uprobe},
    maps::{Array, PerCpuArray, RingBuf},
    programs::ProbeContext,
    EbpfContext,
};
use aya_log_ebpf::{error, warn};
use extractor_common::usdt::{
    capture, chunk_flags, chunked_ring_bytes, flags, location, max_chunks, record_kind,
    ChunkHeader, InlineEvent, PayloadChunk, UsdtArgSpec, UsdtSpec, DEFAULT_CAPTURE_LIMIT, HASH_LEN,
    HASH_SLOTS, LARGE_CHUNK, MAX_ARGS, MAX_ATTACH_POINTS, MEDIUM_CHUNK, SMALL_CHUNK, STRING_SLOTS,
};

/// Size of `struct pt_regs` on x86_64: register offsets must stay below it.
const PT_REGS_SIZE: u16 = 168;
/// Counters are indexed by tracepoint; room for catalogue growth.
pub const DROP_SLOTS: u32 = 64;

/// Most payload bytes sent per event (set by userspace at load time).
#[unsafe(no_mangle)]
static CAPTURE_LIMIT: u32 = DEFAULT_CAPTURE_LIMIT;

/// Unread bytes in `EVENTS` above which a submission wakes the reader (set by userspace at load
/// time). Below it records are submitted silently and the reader drains on its own timer: a
/// wakeup per record would cost the traced thread several µs.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 1 << 20;

#[map]
static USDT_SPECS: Array<UsdtSpec> = Array::with_max_entries(MAX_ATTACH_POINTS, 0);

/// Records for userspace. The size is set by userspace at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Chunks of payloads, each payload whole in one ring, smallest ring first (sizes set by
/// userspace at load time). The events ring still orders the events: their records are there.
#[map]
static PAYLOAD_RING_1: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);
#[map]
static PAYLOAD_RING_2: RingBuf = RingBuf::with_byte_size(2 * 1024 * 1024, 0);
#[map]
static PAYLOAD_RING_3: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Per CPU: unread ring data, in multiples of `WAKEUP_BYTES`, at this CPU's last submission.
#[map]
static WAKEUP_LEVEL: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Set to 1 by the reader before it waits for the ring with nothing to read: the next submission
/// clears it and wakes the reader. Otherwise the reader drains on its own timer while it is busy,
/// and submissions skip the wakeup, which would cost the traced thread several µs each.
#[map]
static READER_WAITING: Array<u32> = Array::with_max_entries(1, 0);

/// Records that found no room in `EVENTS`, per tracepoint.
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

/// Events whose payload was cut because a chunk found no room in `EVENTS`, per tracepoint.
#[map]
static PAYLOAD_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

/// Events seen, by all CPUs together: the id linking an event's chunks to its record. One shared
/// counter, added to atomically: uprobe programs run with preemption enabled, so a per-CPU
/// counter read and written by two threads that took turns on one CPU could hand both the same
/// id, and their chunks would be reassembled into one another's events.
#[map]
static EVENT_COUNT: Array<u64> = Array::with_max_entries(1, 0);

/// Firings seen by `usdt_count`, the count-only program (benchmarks: the cost of the bare
/// uprobe trap, without reading or sending anything).
#[map]
static COUNT_ONLY: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Only counts the firing: attached instead of `usdt` to measure what the trap itself costs the
/// traced thread.
#[uprobe]
pub fn usdt_count(_ctx: ProbeContext) -> u32 {
    if let Some(count) = COUNT_ONLY.get_ptr_mut(0) {
        unsafe { *count += 1 };
    }
    0
}

#[uprobe]
pub fn usdt(ctx: ProbeContext) -> u32 {
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    match USDT_SPECS.get(cookie) {
        Some(spec) => emit(&ctx, spec),
        None => error!(
            &ctx,
            "no argument spec for attach cookie {}: event lost", cookie
        ),
    }
    0
}

#[inline(always)]
fn count(counters: &PerCpuArray<u64>, tracepoint: u16) {
    if let Some(count) = counters.get_ptr_mut(tracepoint as u32) {
        unsafe { *count += 1 };
    }
}

/// Submission flags: wake the reader when it waits for a record (`READER_WAITING`), or when the
/// unread data crosses another multiple of `WAKEUP_BYTES` — once per crossing, not on every
/// submission while above it (each forced wakeup costs the traced thread; the reader also
/// drains on its own timer, which catches a crossing another CPU's submission hid).
#[inline(always)]
fn wakeup_flags() -> u64 {
    if let Some(waiting) = READER_WAITING.get_ptr_mut(0) {
        // Two CPUs may both see it set and both wake the reader: one wakeup too many, harmless.
        if unsafe { core::ptr::read_volatile(waiting) } != 0 {
            unsafe { core::ptr::write_volatile(waiting, 0) };
            return BPF_RB_FORCE_WAKEUP as u64;
        }
    }
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) }.max(1);
    let level = waiting / threshold;
    let Some(last_level) = WAKEUP_LEVEL.get_ptr_mut(0) else {
        return BPF_RB_NO_WAKEUP as u64;
    };
    let previous = unsafe { *last_level };
    unsafe { *last_level = level };
    if level > previous {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Ring `n`: 0 the events ring, else payload ring `n`.
#[inline(always)]
fn ring(n: u8) -> &'static RingBuf {
    match n {
        1 => &PAYLOAD_RING_1,
        2 => &PAYLOAD_RING_2,
        3 => &PAYLOAD_RING_3,
        _ => &EVENTS,
    }
}

/// The first payload ring with room for all of a chunked payload's `needed` bytes, else 0 (the
/// events ring). Another CPU may take the room before the chunks come: then the payload is cut
/// there, counted, as it would be in the events ring.
#[inline(always)]
fn payload_ring_for(needed: u64) -> u8 {
    for n in 1..=3u8 {
        let ring = ring(n);
        if ring.query(BPF_RB_AVAIL_DATA as u64) + needed <= ring.query(BPF_RB_RING_SIZE as u64) {
            return n;
        }
    }
    0
}

#[inline(always)]
fn next_event_id() -> u64 {
    match EVENT_COUNT.get_ptr_mut(0) {
        // SAFETY: the map value is a live, aligned u64 for as long as the program runs.
        Some(count) => {
            let mut value = 1u64;
            // Assembly: the compiler's fetch-add intrinsic came out as a plain BPF_ADD, whose
            // "result" was the addend, so every event had the same id.
            // SAFETY: `count` points to the map value; BPF_ATOMIC | BPF_FETCH of BPF_ADD.
            unsafe {
                core::arch::asm!(
                    "{value} = atomic_fetch_add((u64 *)({count} + 0), {value})",
                    value = inout(reg) value,
                    count = in(reg) count,
                )
            };
            value + 1
        }
        None => 0,
    }
}

#[inline(always)]
fn emit(ctx: &ProbeContext, spec: &UsdtSpec) {
    // The payload's length picks the record's size class: one that fits comes inline, in the
    // event's own record (one reservation, one record to read), a larger one in chunks.
    let (payload_len, payload_address) = payload_of(ctx, spec);
    if payload_len == 0 || payload_len > MEDIUM_CHUNK as u32 {
        emit_record::<0>(ctx, spec, payload_len, payload_address);
    } else if payload_len <= SMALL_CHUNK as u32 {
        emit_record::<SMALL_CHUNK>(ctx, spec, payload_len, payload_address);
    } else {
        emit_record::<MEDIUM_CHUNK>(ctx, spec, payload_len, payload_address);
    }
}

/// The payload argument's length to capture (its size argument, at most the capture limit)
/// and its address; (0, 0) when the tracepoint has none or it could not be read.
#[inline(always)]
fn payload_of(ctx: &ProbeContext, spec: &UsdtSpec) -> (u32, u64) {
    for i in 1..MAX_ARGS {
        if i >= spec.arg_count as usize {
            break;
        }
        let arg = &spec.args[i];
        if arg.capture != capture::PAYLOAD {
            continue;
        }
        // The size is the previous argument.
        let (Ok(size), Ok(address)) = (read_arg(ctx, &spec.args[i - 1]), read_arg(ctx, arg)) else {
            return (0, 0);
        };
        if address == 0 {
            return (0, 0);
        }
        let limit = unsafe { core::ptr::read_volatile(&CAPTURE_LIMIT) };
        return (size.min(limit as u64) as u32, address);
    }
    (0, 0)
}

/// Sends the event's record with room for an inline payload of up to `N` bytes (none: `N` = 0;
/// then a payload follows in chunks).
#[inline(always)]
fn emit_record<const N: usize>(
    ctx: &ProbeContext,
    spec: &UsdtSpec,
    payload_len: u32,
    payload_address: u64,
) {
    let Some(mut entry) = EVENTS.reserve::<InlineEvent<N>>(0) else {
        count(&DROPS, spec.tracepoint);
        return;
    };
    let event = unsafe { &mut *entry.as_mut_ptr() };
    let record = &mut event.record;
    let pid_tgid = bpf_get_current_pid_tgid();
    record.kind = record_kind::EVENT;
    record.boot_time_ns = unsafe { bpf_ktime_get_boot_ns() };
    record.pid = (pid_tgid >> 32) as u32;
    record.tid = pid_tgid as u32;
    record.tracepoint = spec.tracepoint;
    record.arg_count = spec.arg_count;
    record.flags = 0;
    record.string_len = [0; STRING_SLOTS];
    record.payload_len = payload_len;
    let event_id = next_event_id();
    record.event_id = event_id;

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
                let read = match slot {
                    0 => read_string(value, &mut record.string0),
                    1 => read_string(value, &mut record.string1),
                    _ => read_string(value, &mut record.string2),
                };
                match read {
                    Ok((len, truncated)) => {
                        record.string_len[slot] = len;
                        if truncated {
                            record.flags |= flags::STRING_TRUNCATED_BASE << slot;
                        }
                    }
                    Err(()) => record.flags |= flags::READ_FAILED,
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
    let chunks_ring = if N == 0 && payload_len > 0 {
        payload_ring_for(chunked_ring_bytes(payload_len))
    } else {
        0
    };
    record.flags |= chunks_ring << flags::PAYLOAD_RING_SHIFT;
    if N > 0 {
        record.flags |= flags::PAYLOAD_INLINE;
        // The verifier must see the bound on the size register (see `send_chunk`).
        let len = unsafe { core::ptr::read_volatile(&payload_len) };
        if len <= N as u32 {
            let ret = unsafe {
                bpf_probe_read_user(
                    event.data.as_mut_ptr().cast(),
                    len,
                    payload_address as *const _,
                )
            };
            if ret != 0 {
                // No bytes: userspace sees fewer than the size argument and marks the event.
                event.record.payload_len = 0;
            }
        }
    }
    let tracepoint = spec.tracepoint;
    let read_failed = event.record.flags & flags::READ_FAILED != 0;
    entry.submit(wakeup_flags());
    if read_failed {
        warn!(
            ctx,
            "tracepoint #{}: an argument could not be read from the traced process (pid {}); the event carries an error mark",
            tracepoint,
            (pid_tgid >> 32) as u32
        );
    }

    if N == 0 && payload_len > 0 {
        let mut copy = PayloadCopy {
            source: payload_address,
            event_id,
            len: payload_len,
            offset: 0,
            tracepoint,
            ring: chunks_ring,
        };
        // bpf_loop keeps the verifier's work independent of the payload size (up to 4 MB).
        unsafe {
            bpf_loop(
                max_chunks(payload_len),
                copy_chunk as *mut c_void,
                (&mut copy as *mut PayloadCopy).cast(),
                0,
            )
        };
    }
}

/// State of one payload copy, shared by the iterations of `bpf_loop`.
#[repr(C)]
struct PayloadCopy {
    source: u64,
    event_id: u64,
    len: u32,
    offset: u32,
    tracepoint: u16,
    /// Where the chunks go (see [`ring`]).
    ring: u8,
}

/// One `bpf_loop` iteration: sends the next chunk. Returns 1 to stop the loop.
#[inline(never)]
extern "C" fn copy_chunk(_index: u32, state: *mut c_void) -> i64 {
    let copy = unsafe { &mut *(state as *mut PayloadCopy) };
    if copy.offset >= copy.len {
        return 1;
    }
    let left = copy.len - copy.offset;
    // The largest class the rest fills, then the smallest class holding the tail.
    let more = if left >= LARGE_CHUNK as u32 {
        send_chunk::<LARGE_CHUNK>(copy, left)
    } else if left > SMALL_CHUNK as u32 {
        send_chunk::<MEDIUM_CHUNK>(copy, left)
    } else {
        send_chunk::<SMALL_CHUNK>(copy, left)
    };
    if more {
        0
    } else {
        1
    }
}

/// Sends up to N bytes of the payload; false when the copy must stop (done, ring full, or the
/// bytes could not be read).
#[inline(always)]
fn send_chunk<const N: usize>(copy: &mut PayloadCopy, left: u32) -> bool {
    let Some(mut entry) = ring(copy.ring).reserve::<PayloadChunk<N>>(0) else {
        count(&PAYLOAD_DROPS, copy.tracepoint);
        mark_cut(copy);
        return false;
    };
    let chunk = unsafe { &mut *entry.as_mut_ptr() };
    let len = if left > N as u32 { N as u32 } else { left };
    // The verifier must see the bound on the register passed as the size; reading `len` back
    // through a volatile load stops LLVM from folding this (always false) check away.
    let len = unsafe { core::ptr::read_volatile(&len) };
    if len > N as u32 {
        entry.discard(0);
        return false;
    }
    chunk.header = ChunkHeader {
        kind: record_kind::PAYLOAD_CHUNK,
        flags: 0,
        tracepoint: copy.tracepoint,
        len,
        offset: copy.offset,
        _reserved: 0,
        event_id: copy.event_id,
    };
    let source = copy.source.wrapping_add(copy.offset as u64);
    let ret =
        unsafe { bpf_probe_read_user(chunk.data.as_mut_ptr().cast(), len, source as *const _) };
    if ret != 0 {
        // Tell userspace at once rather than leave it waiting for bytes that will not come.
        chunk.header.len = 0;
        chunk.header.flags = chunk_flags::LAST | chunk_flags::READ_FAILED;
        entry.submit(chunk_wakeup_flags(copy.ring));
        return false;
    }
    copy.offset += len;
    let more = copy.offset < copy.len;
    if !more {
        chunk.header.flags = chunk_flags::LAST;
    }
    entry.submit(chunk_wakeup_flags(copy.ring));
    more
}

/// A payload ring's chunks wake nobody: the reader is woken by the events ring, where the
/// event's record came first, and reads the payload rings after it.
#[inline(always)]
fn chunk_wakeup_flags(ring: u8) -> u64 {
    if ring == 0 {
        wakeup_flags()
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Tells userspace, through the events ring, that the payload ends cut at `copy.offset`: it
/// then need not wait for chunks that will not come. Without room even for this, the event
/// waits for its timeout (or, in the events ring, for its thread's next record).
#[inline(always)]
fn mark_cut(copy: &PayloadCopy) {
    let Some(mut entry) = EVENTS.reserve::<ChunkHeader>(0) else {
        return;
    };
    unsafe {
        entry.as_mut_ptr().write(ChunkHeader {
            kind: record_kind::PAYLOAD_CHUNK,
            flags: chunk_flags::LAST | chunk_flags::RING_FULL,
            tracepoint: copy.tracepoint,
            len: 0,
            offset: copy.offset,
            _reserved: 0,
            event_id: copy.event_id,
        })
    };
    entry.submit(wakeup_flags());
}

/// Reads the NUL-terminated string at `address` into `dst`: its length without the NUL, and
/// whether it was longer than `dst` can hold.
#[inline(always)]
fn read_string<const N: usize>(address: u64, dst: &mut [u8; N]) -> Result<(u16, bool), ()> {
    let read =
        unsafe { bpf_probe_read_user_str(dst.as_mut_ptr().cast(), N as u32, address as *const _) };
    if read <= 0 {
        return Err(());
    }
    // `read` counts the NUL; a full slot may have cut the string: look at the next byte.
    let len = (read as usize - 1).min(N - 1);
    let mut truncated = false;
    if len == N - 1 {
        let mut next = 0u8;
        let ret = unsafe {
            bpf_probe_read_user(
                (&mut next as *mut u8).cast(),
                1,
                (address + len as u64) as *const _,
            )
        };
        truncated = ret != 0 || next != 0;
    }
    Ok((len as u16, truncated))
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
