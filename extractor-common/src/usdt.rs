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
/// Bytes kept per string slot, NUL included; a longer string is cut and flagged. Strings take
/// slots in argument order, so slot 0 holds the long ones — peer addresses ("normally up to 68
/// chars" but longer for peers added by host name, up to 255 kept), misbehaving reasons (≤ 128),
/// reject and removal reasons (≤ 118), wallet names — while slots 1 and 2 only ever hold
/// connection types (≤ 19), coin-selection algorithm names and message types (≤ 12).
pub const STRING_CAPACITY: [usize; STRING_SLOTS] = [256, 32, 32];
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
    /// A payload: the value points to as many bytes as the previous argument says. The kernel
    /// sends them after the event's record as [`PayloadChunk`](super::PayloadChunk) records.
    pub const PAYLOAD: u8 = 3;
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

/// The first byte of every ring-buffer record: what follows.
pub mod record_kind {
    /// A [`TraceRecord`](super::TraceRecord): one firing of a tracepoint.
    pub const EVENT: u8 = 1;
    /// A [`PayloadChunk`](super::PayloadChunk): payload bytes of an event sent before it.
    pub const PAYLOAD_CHUNK: u8 = 2;
}

/// Flags of a [`TraceRecord`].
pub mod flags {
    /// Bit `i` (i < STRING_SLOTS): string slot `i` was longer than its capacity minus the NUL.
    pub const STRING_TRUNCATED_BASE: u8 = 1;
    /// Two bits: the ring the payload's chunks are in, 0 for the events ring itself, else the
    /// payload ring `PAYLOAD_RING_<n>` (see [`payload_ring`](super::payload_ring)).
    pub const PAYLOAD_RING_SHIFT: u8 = 3;
    pub const PAYLOAD_RING_MASK: u8 = 0b11 << PAYLOAD_RING_SHIFT;
    /// The payload follows the record in the same ring record ([`InlineEvent`]): `payload_len`
    /// bytes, or fewer when reading them failed (then none).
    pub const PAYLOAD_INLINE: u8 = 1 << 6;
    /// At least one argument could not be read (its value is 0, its string empty).
    pub const READ_FAILED: u8 = 1 << 7;
}

/// Flags of a [`PayloadChunk`].
pub mod chunk_flags {
    /// No chunk of this event follows: the payload is complete, or reading it failed.
    pub const LAST: u8 = 1;
    /// Reading this chunk from the traced process failed; it carries no bytes.
    pub const READ_FAILED: u8 = 2;
    /// A marker, in the events ring, with no bytes: the next chunk of the event (at `offset`)
    /// found no room in its ring, so the payload ends there, cut.
    pub const RING_FULL: u8 = 4;
}

/// The payload rings beside the events ring: a chunked payload is sent whole into the first of
/// them with room for all its chunks, smallest first, else into the events ring. A burst of
/// 4 MB blocks thus fills them and the events ring together, while its chunks in the payload
/// rings leave the events ring's room to the small events.
pub mod payload_ring {
    /// How many (ring numbers 1 to `COUNT`).
    pub const COUNT: u8 = 3;
    /// Ring `n`'s size is the events ring's shifted right by `SIZE_SHIFT[n - 1]`: an eighth, a
    /// quarter and a half of it, so all four take 1.875 times the events ring's size.
    pub const SIZE_SHIFT: [u32; COUNT as usize] = [3, 2, 1];
}

/// Payload capture limit by default: Bitcoin Core's largest message (MAX_PROTOCOL_MESSAGE_LENGTH,
/// a 4 MB block), so every payload is captured whole.
pub const DEFAULT_CAPTURE_LIMIT: u32 = 4_000_000;

/// One firing of a tracepoint, as the kernel sends it through the ring buffer. 520 bytes.
///
/// A payload argument is not in the record: `payload_len` announces how many of its bytes come
/// (fewer than the size argument when the capture limit cut it). A payload of up to
/// [`MEDIUM_CHUNK`] bytes (pings, invs, most transactions) follows in the same ring record, an
/// [`InlineEvent`] flagged [`flags::PAYLOAD_INLINE`]: one reservation and one record for the
/// whole event. A larger one follows in [`PayloadChunk`] records carrying the same `event_id`,
/// reserved after the record, in the ring its flags name ([`flags::PAYLOAD_RING_MASK`]). In the
/// events ring they come before any later record of the same thread, since one thread's records
/// are reserved in order.
#[repr(C)]
#[derive(Copy, Clone)]
pub struct TraceRecord {
    /// [`record_kind::EVENT`].
    pub kind: u8,
    pub flags: u8,
    pub tracepoint: u16,
    /// Process id (tgid) of the traced process.
    pub pid: u32,
    /// Thread id of the traced thread.
    pub tid: u32,
    pub arg_count: u8,
    pub _reserved: u8,
    /// Length of each string slot without the NUL.
    pub string_len: [u16; STRING_SLOTS],
    /// Payload bytes the kernel will send in chunks (0: no payload argument, or an empty one).
    pub payload_len: u32,
    /// Unique per kernel object: the number of events its program has seen, this one included.
    pub event_id: u64,
    /// CLOCK_BOOTTIME at the probe, ns (userspace converts to wall-clock time).
    pub boot_time_ns: u64,
    /// Raw argument values, sign- or zero-extended to 64 bits (pointers as addresses).
    pub args: [u64; MAX_ARGS],
    pub hashes: [[u8; HASH_LEN]; HASH_SLOTS],
    pub string0: [u8; STRING_CAPACITY[0]],
    pub string1: [u8; STRING_CAPACITY[1]],
    pub string2: [u8; STRING_CAPACITY[2]],
}

impl TraceRecord {
    /// The string in slot `slot`, as read (without the NUL).
    pub fn string(&self, slot: usize) -> &[u8] {
        let bytes: &[u8] = match slot {
            0 => &self.string0,
            1 => &self.string1,
            _ => &self.string2,
        };
        let len = (self.string_len[slot] as usize).min(bytes.len() - 1);
        &bytes[..len]
    }

    pub fn string_truncated(&self, slot: usize) -> bool {
        self.flags & (flags::STRING_TRUNCATED_BASE << slot) != 0
    }
}

/// An event record with its payload in the same ring record: the kernel reserves the smallest
/// class that holds the payload ([`SMALL_CHUNK`] or [`MEDIUM_CHUNK`] bytes of room).
#[repr(C)]
#[derive(Copy, Clone)]
pub struct InlineEvent<const N: usize> {
    pub record: TraceRecord,
    pub data: [u8; N],
}

pub type SmallInlineEvent = InlineEvent<SMALL_CHUNK>;
pub type MediumInlineEvent = InlineEvent<MEDIUM_CHUNK>;

/// The start of every payload chunk record. 24 bytes.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkHeader {
    /// [`record_kind::PAYLOAD_CHUNK`].
    pub kind: u8,
    /// [`chunk_flags`].
    pub flags: u8,
    pub tracepoint: u16,
    /// Payload bytes carried by this chunk (at most its data capacity).
    pub len: u32,
    /// Where these bytes start in the payload.
    pub offset: u32,
    pub _reserved: u32,
    /// The [`TraceRecord::event_id`] of the event the bytes belong to.
    pub event_id: u64,
}

/// A slice of an event's payload. The kernel can only reserve ring space of a constant size, so
/// chunks come in three size classes: a payload is sent in the largest class it fills, then its
/// tail in the smallest class that holds it. Small messages (ping, inv) thus take one small
/// record, and a 4 MB block about 122 large ones.
#[repr(C)]
#[derive(Copy, Clone)]
pub struct PayloadChunk<const N: usize> {
    pub header: ChunkHeader,
    pub data: [u8; N],
}

/// Data capacity of the small chunk and inline class: ping, pong, feefilter, version, most
/// control messages.
pub const SMALL_CHUNK: usize = 128;
/// Data capacity of the medium chunk and inline class: inv and getdata of up to 28 entries, most
/// transactions.
pub const MEDIUM_CHUNK: usize = 1024;
/// Data capacity of the large chunk class: blocks and other big messages.
pub const LARGE_CHUNK: usize = 32 * 1024;

pub type SmallChunk = PayloadChunk<SMALL_CHUNK>;
pub type MediumChunk = PayloadChunk<MEDIUM_CHUNK>;
pub type LargeChunk = PayloadChunk<LARGE_CHUNK>;

/// Most chunks one payload can take: whole large chunks, then at most one medium and one small
/// chunk for the tail (or a read-failure marker). Bounds the kernel's copy loop.
pub const fn max_chunks(payload_len: u32) -> u32 {
    payload_len / LARGE_CHUNK as u32 + 1 + (LARGE_CHUNK / MEDIUM_CHUNK) as u32 + 1
}

/// Ring bytes that the chunks of a `payload_len`-byte payload take at most: the data, each
/// chunk's ring header (8 bytes) and [`ChunkHeader`], and the unused room of the last medium and
/// small chunk.
pub const fn chunked_ring_bytes(payload_len: u32) -> u64 {
    const RING_HEADER: u64 = 8;
    payload_len as u64
        + max_chunks(payload_len) as u64
            * (RING_HEADER + core::mem::size_of::<ChunkHeader>() as u64)
        + (MEDIUM_CHUNK + SMALL_CHUNK) as u64
}

const _: () = {
    assert!(core::mem::size_of::<UsdtArgSpec>() == 16);
    assert!(core::mem::size_of::<UsdtSpec>() == 200);
    assert!(core::mem::size_of::<TraceRecord>() == 520);
    assert!(core::mem::offset_of!(TraceRecord, payload_len) == 20);
    assert!(core::mem::offset_of!(TraceRecord, event_id) == 24);
    assert!(core::mem::offset_of!(TraceRecord, args) == 40);
    assert!(core::mem::offset_of!(TraceRecord, string0) == 200);
    assert!(core::mem::align_of::<TraceRecord>() == 8);
    assert!(core::mem::size_of::<ChunkHeader>() == 24);
    assert!(core::mem::offset_of!(ChunkHeader, event_id) == 16);
    assert!(core::mem::size_of::<SmallChunk>() == 24 + SMALL_CHUNK);
    assert!(core::mem::size_of::<MediumChunk>() == 24 + MEDIUM_CHUNK);
    assert!(core::mem::size_of::<LargeChunk>() == 24 + LARGE_CHUNK);
    assert!(core::mem::size_of::<SmallInlineEvent>() == 520 + SMALL_CHUNK);
    assert!(core::mem::size_of::<MediumInlineEvent>() == 520 + MEDIUM_CHUNK);
    assert!(core::mem::offset_of!(MediumInlineEvent, data) == 520);
    // Both kinds of record start with their kind byte.
    assert!(core::mem::offset_of!(TraceRecord, kind) == 0);
    assert!(core::mem::offset_of!(ChunkHeader, kind) == 0);
    assert!(SMALL_CHUNK < MEDIUM_CHUNK && MEDIUM_CHUNK < LARGE_CHUNK);
    assert!(
        STRING_SLOTS <= flags::PAYLOAD_RING_SHIFT as usize,
        "string truncation flags must not reach the payload ring's bits"
    );
    assert!(flags::PAYLOAD_RING_MASK & (flags::PAYLOAD_INLINE | flags::READ_FAILED) == 0);
    assert!(payload_ring::COUNT <= flags::PAYLOAD_RING_MASK >> flags::PAYLOAD_RING_SHIFT);
    // A 4 MB block fits whole in the smallest payload ring of the default 32 MiB events ring.
    assert!(chunked_ring_bytes(DEFAULT_CAPTURE_LIMIT) <= (32 << 20) >> payload_ring::SIZE_SHIFT[0]);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] data with no padding holes that matter to the kernel, valid for
    // any bit pattern.
    unsafe impl aya::Pod for super::UsdtSpec {}
    unsafe impl aya::Pod for super::TraceRecord {}
    unsafe impl aya::Pod for super::ChunkHeader {}
}
