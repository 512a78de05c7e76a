//! The USDT contract between userspace and the kernel program.
//!
//! Userspace parses each probe's argument spec (`-8@-968(%rbp)`) once and hands the kernel a
//! [`UsdtSpec`] per attach point, addressed by the BPF cookie. One generic kernel program reads
//! the arguments by following the spec (the way libbpf's `usdt.bpf.h` does), so registers and
//! stack offsets are never hard-coded: they change with every build of bitcoind.

/// USDT allows up to 12 arguments per probe; Bitcoin Core v30 uses at most 8.
pub const MAX_ARGS: usize = 12;
/// Most C strings one tracepoint passes (net messages: address, connection type, message type).
pub const STRING_SLOTS: usize = 3;
/// Bytes kept per string, NUL included. Peer addresses are "normally up to 68 chars" but can be
/// longer for peers added by host name; misbehaving reasons are up to 128 chars.
pub const STRING_CAPACITY: usize = 256;
/// Most 32-byte hashes one tracepoint passes (mempool:replaced: replaced and replacement).
pub const HASH_SLOTS: usize = 2;
pub const HASH_LEN: usize = 32;
/// Upper bound on attach points (tracepoint locations across all traced binaries).
pub const MAX_ATTACH_POINTS: u32 = 1024;

/// Where an argument's value lives when the probe fires.
pub mod location {
    /// The value is the spec's constant (`-4@$42`).
    pub const CONSTANT: u8 = 1;
    /// The value is in a register (`8@%rax`, `4@%r14d`, `1@%dl`).
    pub const REGISTER: u8 = 2;
    /// The value is in user memory at register + displacement (`-8@-968(%rbp)`, `8@(%rbx)`).
    pub const MEMORY: u8 = 3;
}

/// What the kernel keeps of an argument besides its raw 64-bit value.
pub mod capture {
    /// Only the value (integers; pointers whose target is fetched elsewhere).
    pub const VALUE: u8 = 0;
    /// The NUL-terminated string the value points to, into string slot `slot`.
    pub const CSTRING: u8 = 1;
    /// The 32 bytes the value points to, into hash slot `slot`.
    pub const HASH: u8 = 2;
}

/// How to fetch one argument. 16 bytes.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct UsdtArgSpec {
    /// The constant for [`location::CONSTANT`], the displacement for [`location::MEMORY`].
    pub value_or_displacement: i64,
    /// Byte offset of the register in the kernel's `struct pt_regs`.
    pub register_offset: u16,
    pub location: u8,
    /// 1, 2, 4 or 8.
    pub size: u8,
    /// 1 if the value is sign-extended from `size` bytes.
    pub signed: u8,
    pub capture: u8,
    pub slot: u8,
    pub _reserved: u8,
}

/// One attach point: which tracepoint it is and how to read each argument. 200 bytes.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UsdtSpec {
    pub args: [UsdtArgSpec; MAX_ARGS],
    /// `Tracepoint as u16`.
    pub tracepoint: u16,
    pub arg_count: u8,
    pub _reserved: [u8; 5],
}

/// Flags of a [`TraceRecord`].
pub mod flags {
    /// Bit `i` (i < STRING_SLOTS): string slot `i` was longer than STRING_CAPACITY - 1 bytes.
    pub const STRING_TRUNCATED_BASE: u8 = 1;
    /// At least one argument could not be read (its value is 0, its string empty).
    pub const READ_FAILED: u8 = 1 << 7;
}

/// One firing of a tracepoint, as the kernel sends it through the ring buffer. 960 bytes.
#[repr(C)]
#[derive(Copy, Clone)]
pub struct TraceRecord {
    /// CLOCK_BOOTTIME at the probe, ns (userspace converts to wall-clock time).
    pub boot_time_ns: u64,
    /// Process id (tgid) of the traced process.
    pub pid: u32,
    /// Thread id of the traced thread.
    pub tid: u32,
    pub tracepoint: u16,
    pub arg_count: u8,
    pub flags: u8,
    /// Length of each string slot without the NUL.
    pub string_len: [u16; STRING_SLOTS],
    pub _reserved: [u8; 6],
    /// Raw argument values, sign- or zero-extended to 64 bits (pointers as addresses).
    pub args: [u64; MAX_ARGS],
    pub hashes: [[u8; HASH_LEN]; HASH_SLOTS],
    pub strings: [[u8; STRING_CAPACITY]; STRING_SLOTS],
}

impl TraceRecord {
    /// The string in slot `slot`, as read (without the NUL).
    pub fn string(&self, slot: usize) -> &[u8] {
        let len = (self.string_len[slot] as usize).min(STRING_CAPACITY - 1);
        &self.strings[slot][..len]
    }

    pub fn string_truncated(&self, slot: usize) -> bool {
        self.flags & (flags::STRING_TRUNCATED_BASE << slot) != 0
    }
}

const _: () = {
    assert!(core::mem::size_of::<UsdtArgSpec>() == 16);
    assert!(core::mem::size_of::<UsdtSpec>() == 200);
    assert!(core::mem::size_of::<TraceRecord>() == 960);
    assert!(core::mem::offset_of!(TraceRecord, args) == 32);
    assert!(core::mem::align_of::<TraceRecord>() == 8);
    assert!(
        STRING_SLOTS < 7,
        "string truncation flags must not reach READ_FAILED"
    );
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] data with no padding holes that matter to the kernel, valid for
    // any bit pattern.
    unsafe impl aya::Pod for super::UsdtSpec {}
    unsafe impl aya::Pod for super::TraceRecord {}
}
