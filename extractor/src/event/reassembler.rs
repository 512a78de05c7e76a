//! Puts events back together with the payload chunks that follow their record, in arrival order.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use extractor_common::usdt::{chunk_flags, flags, ChunkHeader, TraceRecord};

use super::warm_buffers::WarmBuffers;
use super::{ArgValue, MalformedRecord, PayloadCut, RingRecord, TraceEvent, WallClock};

/// Hashes the reassembler's integer keys (event ids, thread ids) with one multiply: they are
/// produced by our own kernel program, not an adversary, and SipHash was a visible share of the
/// per-event cost.
#[derive(Default)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(*byte as u64);
        }
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(value as u64);
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type IdHasher = BuildHasherDefault<IntHasher>;

/// How long an event may wait for more payload bytes: the kernel sends a payload's chunks within
/// one probe run (milliseconds even for 4 MB), so silence this long means they are lost.
pub const PAYLOAD_TIMEOUT: Duration = Duration::from_millis(200);

/// Puts events back together with their payload chunks and hands them out in arrival order.
///
/// An event waits until its payload is complete. It is closed early as cut by a full ring when
/// the kernel's marker says so (a chunk found no room), when a later record of the same thread
/// arrives while its chunks are in the events ring (one thread's records are in order in the
/// ring, so its missing chunks will never come), or when it is the oldest event waiting and no
/// chunk arrived for [`PAYLOAD_TIMEOUT`]. That expiry is decided at the head of the queue only, in
/// [`Reassembler::pop_ready`]: one check per call however many events wait (the events behind
/// the head cannot be released before it anyway), and it reaches every waiting event, even one
/// no chunk could reach any more.
pub struct Reassembler {
    clock: WallClock,
    capture_limit: u32,
    /// Events in arrival order; `queue[0]` has sequence number `first`.
    queue: VecDeque<Pending>,
    first: u64,
    /// Events still receiving chunks: event id → sequence number.
    open: HashMap<u64, u64, IdHasher>,
    /// The open event of each thread whose chunks come in the events ring: tid → sequence number.
    open_by_thread: HashMap<u32, u64, IdHasher>,
    counts: ReassemblyCounts,
    warm: WarmBuffers,
    /// Payload bytes taken into warm buffers since [`Reassembler::take_warm_bytes`].
    warm_bytes: usize,
}

/// What the reassembler met besides whole events, since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyCounts {
    /// Payload chunks of no event waiting for bytes, discarded: their event's record was lost
    /// (ring full), or they came after their event was closed (expired, or closed at shutdown).
    pub stray_chunks: u64,
    /// Events released with their payload cut ([`PayloadCut::RingFull`]) because no chunk came
    /// for [`PAYLOAD_TIMEOUT`] while they were the oldest event waiting: the rest of their
    /// chunks were lost to a full ring (also counted by `Tracer::kernel_payload_drops`) or never
    /// sent.
    pub expired_incomplete: u64,
    /// Events released with their payload cut ([`PayloadCut::RingFull`]) by
    /// [`Reassembler::close_open`]: still waiting for chunks when reading stopped.
    pub closed_at_shutdown: u64,
    /// Ring records that did not parse ([`MalformedRecord`](super::MalformedRecord)), discarded.
    pub malformed_records: u64,
}

struct Pending {
    event: TraceEvent,
    /// Payload bytes announced by the kernel and still open; None once the event is complete.
    receiving: Option<Receiving>,
}

struct Receiving {
    arg: usize,
    announced: u32,
    event_id: u64,
    tid: u32,
    last_progress: Instant,
    /// The kernel's marker said the payload ends here, cut; bytes before it may still come (from
    /// a payload ring, read after the events ring).
    cut_at: Option<u32>,
    /// The payload's buffer is a warm one ([`WarmBuffers`]).
    warm: bool,
}

impl Reassembler {
    pub fn new(clock: WallClock, capture_limit: u32) -> Reassembler {
        Reassembler {
            clock,
            capture_limit,
            queue: VecDeque::new(),
            first: 0,
            open: HashMap::default(),
            open_by_thread: HashMap::default(),
            counts: ReassemblyCounts::default(),
            warm: WarmBuffers::new(capture_limit, 0),
            warm_bytes: 0,
        }
    }

    /// Keeps up to `bytes` of buffers resident for large payloads (made by
    /// [`Reassembler::refill_warm_buffer`]): a burst of blocks is copied out of the rings into
    /// them several times faster than into fresh pages.
    pub fn with_warm_buffers(mut self, bytes: usize) -> Reassembler {
        self.warm = WarmBuffers::new(self.capture_limit, bytes);
        self
    }

    /// Makes one more warm buffer for large payloads ready, when one is missing: a few ms, for
    /// when the reader has caught up. Returns whether it made one.
    pub fn refill_warm_buffer(&mut self) -> bool {
        self.warm.refill()
    }

    /// Payload bytes copied into warm buffers since the last call: memory already resident, so
    /// a drain need not count it against its budget.
    pub fn take_warm_bytes(&mut self) -> usize {
        std::mem::take(&mut self.warm_bytes)
    }

    /// Takes one ring record as the ring holds it; one that does not parse is discarded and
    /// counted.
    pub fn push_bytes(&mut self, bytes: &[u8], now: Instant) {
        match RingRecord::parse(bytes) {
            Ok(record) => self.push(record, now),
            Err(error) => self.malformed(&error),
        }
    }

    /// Takes one record of a payload ring, unless it is a chunk of no open event and
    /// `event_may_come` says its event's record may still come: then it leaves it (returns
    /// false), to be pushed again after more of the events ring was read. A chunk of no open
    /// event whose event cannot come any more, and a record that is no chunk, are discarded and
    /// counted.
    pub fn push_payload_bytes(
        &mut self,
        bytes: &[u8],
        now: Instant,
        event_may_come: impl FnOnce() -> bool,
    ) -> bool {
        match RingRecord::parse(bytes) {
            Ok(RingRecord::Chunk { header, data }) => {
                if !self.open.contains_key(&header.event_id) && event_may_come() {
                    return false;
                }
                self.push_chunk(&header, data, now);
            }
            Ok(RingRecord::Event { .. }) => self.malformed(&MalformedRecord::EventInPayloadRing),
            Err(error) => self.malformed(&error),
        }
        true
    }

    fn malformed(&mut self, error: &MalformedRecord) {
        self.counts.malformed_records += 1;
        // The stats count the rest; one warning says what they are.
        if self.counts.malformed_records == 1 {
            tracing::warn!(%error, "discarded a ring record the extractor cannot parse: is the kernel program from another build of the extractor? (counted as malformed_records in the stats)");
        }
    }

    /// Takes one ring record.
    pub fn push(&mut self, record: RingRecord<'_>, now: Instant) {
        match record {
            RingRecord::Event { record, inline } => self.push_event(record, inline, now),
            RingRecord::Chunk { header, data } => self.push_chunk(&header, data, now),
        }
    }

    fn push_event(&mut self, record: &TraceRecord, inline: Option<&[u8]>, now: Instant) {
        if let Some(earlier) = self.open_by_thread.remove(&record.tid) {
            self.close(earlier, Some(PayloadCut::RingFull));
        }
        let mut event = TraceEvent::decode(record, inline, &self.clock);
        let seq = self.first + self.queue.len() as u64;
        let payload_arg = event.payload_arg();
        let mut warm = false;
        if let (Some(arg), None) = (payload_arg, inline) {
            let (buffer, is_warm) = self.warm.buffer_for(record.payload_len);
            event.args[arg] = ArgValue::Bytes(buffer);
            warm = is_warm;
        }
        self.queue.push_back(Pending {
            event,
            receiving: payload_arg.map(|arg| Receiving {
                arg,
                announced: record.payload_len,
                event_id: record.event_id,
                tid: record.tid,
                last_progress: now,
                cut_at: None,
                warm,
            }),
        });
        if payload_arg.is_some() {
            if record.payload_len > 0 && inline.is_none() {
                // Should an id come twice, the earlier event gets no more chunks: it is closed
                // by its thread's next record or expires at the head like any other.
                self.open.insert(record.event_id, seq);
                if record.flags & flags::PAYLOAD_RING_MASK == 0 {
                    self.open_by_thread.insert(record.tid, seq);
                }
            } else {
                self.close(seq, None);
            }
        }
    }

    fn push_chunk(&mut self, header: &ChunkHeader, data: &[u8], now: Instant) {
        let Some(&seq) = self.open.get(&header.event_id) else {
            self.counts.stray_chunks += 1;
            return;
        };
        let pending = &mut self.queue[(seq - self.first) as usize];
        let receiving = pending
            .receiving
            .as_mut()
            .expect("open events are receiving");
        let ArgValue::Bytes(bytes) = &mut pending.event.args[receiving.arg] else {
            unreachable!("the payload argument decodes as bytes")
        };
        if header.flags & chunk_flags::RING_FULL != 0 {
            // The marker comes through the events ring, maybe before the chunks it follows.
            if header.offset as usize <= bytes.len() {
                self.close(seq, Some(PayloadCut::RingFull));
            } else {
                receiving.cut_at = Some(header.offset);
            }
            return;
        }
        if header.offset as usize != bytes.len() {
            // Chunks of one event come in order and stop at the first failure, so a gap means
            // bytes were lost.
            self.close(seq, Some(PayloadCut::RingFull));
            return;
        }
        bytes.extend_from_slice(data);
        if receiving.warm {
            self.warm_bytes += data.len();
        }
        receiving.last_progress = now;
        let complete = bytes.len() >= receiving.announced as usize;
        if header.flags & chunk_flags::READ_FAILED != 0 {
            self.close(seq, Some(PayloadCut::ReadFailed));
        } else if complete || header.flags & chunk_flags::LAST != 0 {
            self.close(seq, None);
        } else if receiving
            .cut_at
            .is_some_and(|at| at as usize <= bytes.len())
        {
            self.close(seq, Some(PayloadCut::RingFull));
        }
    }

    /// Closes every event still waiting for chunks as cut by a full ring, for when no more
    /// chunks can come (the probes are detached and the ring read to its end). Returns how many
    /// it closed. Walks the whole queue: for the end only.
    pub fn close_open(&mut self) -> usize {
        let waiting: Vec<u64> = (self.first..)
            .zip(&self.queue)
            .filter(|(_, pending)| pending.receiving.is_some())
            .map(|(seq, _)| seq)
            .collect();
        for seq in &waiting {
            self.close(*seq, Some(PayloadCut::RingFull));
        }
        self.counts.closed_at_shutdown += waiting.len() as u64;
        waiting.len()
    }

    /// Moves the complete events at the head of the queue to `out`, in arrival order. An event
    /// at the head that got no chunk for [`PAYLOAD_TIMEOUT`] by `now` is closed as cut by a full
    /// ring (its chunks are lost) and released too, and so on with the next one: an event whose
    /// chunks never come holds the events behind it back for the timeout at most.
    pub fn pop_ready(&mut self, out: &mut Vec<TraceEvent>, now: Instant) {
        while let Some(front) = self.queue.front() {
            if let Some(receiving) = &front.receiving {
                if now.saturating_duration_since(receiving.last_progress) < PAYLOAD_TIMEOUT {
                    break;
                }
                self.close(self.first, Some(PayloadCut::RingFull));
                self.counts.expired_incomplete += 1;
            }
            out.push(self.queue.pop_front().expect("front exists").event);
            self.first += 1;
        }
    }

    /// Events waiting for payload bytes.
    pub fn open_events(&self) -> usize {
        self.open.len()
    }

    /// Stray chunks and events closed incomplete, since the reassembler was created.
    pub fn counts(&self) -> ReassemblyCounts {
        self.counts
    }

    /// Marks event `seq` complete, says whether and why its payload is cut, and forgets it as
    /// open. An event already complete is left as it is.
    fn close(&mut self, seq: u64, lost: Option<PayloadCut>) {
        let pending = &mut self.queue[(seq - self.first) as usize];
        let Some(receiving) = pending.receiving.take() else {
            return;
        };
        if self.open.get(&receiving.event_id) == Some(&seq) {
            self.open.remove(&receiving.event_id);
        }
        if self.open_by_thread.get(&receiving.tid) == Some(&seq) {
            self.open_by_thread.remove(&receiving.tid);
        }
        let event = &mut pending.event;
        let got = match &event.args[receiving.arg] {
            ArgValue::Bytes(bytes) => bytes.len() as u64,
            _ => 0,
        };
        let size = match receiving.arg.checked_sub(1).map(|i| &event.args[i]) {
            Some(ArgValue::Unsigned(size)) => *size,
            _ => 0,
        };
        event.payload_cut = if got >= size {
            None
        } else if lost.is_some() {
            lost
        } else if got == size.min(self.capture_limit as u64) {
            Some(PayloadCut::CaptureLimit)
        } else {
            Some(PayloadCut::ReadFailed)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use extractor_common::usdt::{
        flags, record_kind, HASH_LEN, HASH_SLOTS, MAX_ARGS, STRING_CAPACITY,
    };
    use extractor_common::Tracepoint;

    const CLOCK: WallClock = WallClock {
        realtime_minus_boottime_ns: 0,
    };

    /// An inbound_message record of thread `tid` with a `size`-byte payload of which the kernel
    /// announces `announced` bytes.
    fn message(event_id: u64, tid: u32, size: u64, announced: u32) -> RingRecord<'static> {
        let mut args = [0; MAX_ARGS];
        args[4] = size;
        RingRecord::Event {
            record: Box::leak(Box::new(TraceRecord {
                kind: record_kind::EVENT,
                flags: 0,
                tracepoint: Tracepoint::NetInboundMessage as u16,
                pid: 1,
                tid,
                arg_count: 6,
                _reserved: 0,
                string_len: [0; 3],
                payload_len: announced,
                event_id,
                boot_time_ns: 0,
                args,
                hashes: [[0; HASH_LEN]; HASH_SLOTS],
                string0: [0; STRING_CAPACITY[0]],
                string1: [0; STRING_CAPACITY[1]],
                string2: [0; STRING_CAPACITY[2]],
            })),
            inline: None,
        }
    }

    fn chunk(event_id: u64, offset: u32, data: &[u8], flags: u8) -> RingRecord<'_> {
        RingRecord::Chunk {
            header: ChunkHeader {
                kind: record_kind::PAYLOAD_CHUNK,
                flags,
                tracepoint: Tracepoint::NetInboundMessage as u16,
                len: data.len() as u32,
                offset,
                _reserved: 0,
                event_id,
            },
            data,
        }
    }

    fn payload(event: &TraceEvent) -> (&[u8], Option<PayloadCut>) {
        match &event.args[5] {
            ArgValue::Bytes(bytes) => (bytes, event.payload_cut),
            other => panic!("payload is {other:?}"),
        }
    }

    #[test]
    fn chunks_complete_their_event_and_later_events_wait_behind_it() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        r.push(message(7, 10, 5, 5), now);
        r.push(message(8, 11, 0, 0), now);
        r.push(chunk(7, 0, b"abc", 0), now);
        r.pop_ready(&mut out, now);
        assert!(out.is_empty(), "event 7 still misses 2 bytes");
        r.push(chunk(7, 3, b"de", chunk_flags::LAST), now);
        r.pop_ready(&mut out, now);
        assert_eq!(out.len(), 2);
        assert_eq!(payload(&out[0]), (&b"abcde"[..], None));
        assert_eq!(payload(&out[1]), (&b""[..], None));
        assert_eq!(r.open_events(), 0);
    }

    /// An inbound_message record of thread `tid` whose `size`-byte payload came inline: `data`
    /// (fewer bytes than `size` when the kernel could not read them).
    fn inline_message(
        event_id: u64,
        tid: u32,
        size: u64,
        data: &'static [u8],
    ) -> RingRecord<'static> {
        let RingRecord::Event { record, .. } = message(event_id, tid, size, data.len() as u32)
        else {
            unreachable!()
        };
        RingRecord::Event {
            record,
            inline: Some(data),
        }
    }

    /// `message(..)` with its chunks in payload ring 1.
    fn in_payload_ring(message: RingRecord<'static>) -> RingRecord<'static> {
        let RingRecord::Event { record, inline } = message else {
            unreachable!()
        };
        let mut record = *record;
        record.flags |= 1 << flags::PAYLOAD_RING_SHIFT;
        RingRecord::Event {
            record: Box::leak(Box::new(record)),
            inline,
        }
    }

    /// A kernel record, viewed as the bytes the ring would hold.
    fn bytes_of<T: Copy>(record: &T) -> &[u8] {
        // SAFETY: the records are plain data; the slice borrows `record`.
        unsafe {
            std::slice::from_raw_parts((record as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
    }

    /// A chunk record's bytes, as a payload ring holds them.
    fn chunk_bytes(event_id: u64, offset: u32, data: &[u8], flags: u8) -> Vec<u8> {
        let RingRecord::Chunk { header, .. } = chunk(event_id, offset, data, flags) else {
            unreachable!()
        };
        [bytes_of(&header), data].concat()
    }

    #[test]
    fn a_payload_in_a_payload_ring_is_not_cut_by_its_threads_next_record() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        r.push(in_payload_ring(message(1, 10, 6, 6)), now);
        // The thread's next event, read from the events ring before the chunks of the first.
        r.push(inline_message(2, 10, 3, b"xyz"), now);
        assert!(r.push_payload_bytes(&chunk_bytes(1, 0, b"abc", 0), now, || true));
        assert!(r.push_payload_bytes(&chunk_bytes(1, 3, b"def", chunk_flags::LAST), now, || true));
        r.pop_ready(&mut out, now);
        assert_eq!(out.len(), 2);
        assert_eq!(payload(&out[0]), (&b"abcdef"[..], None));
        assert_eq!(payload(&out[1]), (&b"xyz"[..], None));
        assert_eq!(r.counts(), ReassemblyCounts::default());
    }

    #[test]
    fn the_kernels_ring_full_marker_cuts_the_payload_once_the_bytes_before_it_came() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        r.push(in_payload_ring(message(1, 10, 10, 10)), now);
        // From the events ring, before the payload ring's chunks were read.
        r.push(
            chunk(1, 6, b"", chunk_flags::LAST | chunk_flags::RING_FULL),
            now,
        );
        assert!(r.push_payload_bytes(&chunk_bytes(1, 0, b"abc", 0), now, || true));
        r.pop_ready(&mut out, now);
        assert!(out.is_empty(), "three bytes before the cut still to come");
        assert!(r.push_payload_bytes(&chunk_bytes(1, 3, b"def", 0), now, || true));
        r.pop_ready(&mut out, now);
        assert_eq!(out.len(), 1);
        assert_eq!(
            payload(&out[0]),
            (&b"abcdef"[..], Some(PayloadCut::RingFull))
        );
        // A marker after all the bytes before it cuts at once.
        r.push(message(2, 10, 10, 10), now);
        r.push(chunk(2, 0, b"abcd", 0), now);
        r.push(
            chunk(2, 4, b"", chunk_flags::LAST | chunk_flags::RING_FULL),
            now,
        );
        r.pop_ready(&mut out, now);
        assert_eq!(payload(&out[1]), (&b"abcd"[..], Some(PayloadCut::RingFull)));
        assert_eq!(r.counts(), ReassemblyCounts::default());
    }

    #[test]
    fn a_payload_rings_chunk_waits_for_its_event_while_it_may_come_then_is_stray() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        let first = chunk_bytes(1, 0, b"abc", chunk_flags::LAST);
        assert!(
            !r.push_payload_bytes(&first, now, || true),
            "left in its ring"
        );
        assert_eq!(r.counts().stray_chunks, 0);
        r.push(in_payload_ring(message(1, 10, 3, 3)), now);
        assert!(r.push_payload_bytes(&first, now, || panic!("the event is open")));
        assert!(r.push_payload_bytes(&chunk_bytes(9, 0, b"x", 0), now, || false));
        r.pop_ready(&mut out, now);
        assert_eq!(payload(&out[0]), (&b"abc"[..], None));
        assert_eq!(r.counts().stray_chunks, 1);
        // An event record where only chunks belong is counted, not taken for one.
        let RingRecord::Event { record, .. } = message(3, 10, 0, 0) else {
            unreachable!()
        };
        assert!(r.push_payload_bytes(bytes_of(record), now, || true));
        assert_eq!(r.counts().malformed_records, 1);
    }

    #[test]
    fn an_inline_payload_completes_its_event_at_once_in_arrival_order() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        r.push(message(1, 10, 5, 5), now);
        r.push(inline_message(2, 11, 8, b"pingpong"), now);
        r.pop_ready(&mut out, now);
        assert!(
            out.is_empty(),
            "waits behind event 1, still receiving chunks"
        );
        r.push(chunk(1, 0, b"abcde", chunk_flags::LAST), now);
        r.push(inline_message(3, 10, 3, b"xyz"), now);
        r.pop_ready(&mut out, now);
        assert_eq!(out.len(), 3);
        assert_eq!(payload(&out[0]), (&b"abcde"[..], None));
        assert_eq!(payload(&out[1]), (&b"pingpong"[..], None));
        assert_eq!(payload(&out[2]), (&b"xyz"[..], None));
        assert_eq!(
            (r.open_events(), r.counts()),
            (0, ReassemblyCounts::default())
        );
    }

    #[test]
    fn a_ring_record_with_an_inline_payload_parses_to_its_bytes() {
        let RingRecord::Event { record, .. } = message(1, 10, 8, 8) else {
            unreachable!()
        };
        let mut event = Box::new(extractor_common::usdt::SmallInlineEvent {
            record: *record,
            data: [0xee; extractor_common::usdt::SMALL_CHUNK],
        });
        event.record.flags = flags::PAYLOAD_INLINE;
        event.data[..8].copy_from_slice(b"pingpong");
        match RingRecord::parse(bytes_of(&*event)) {
            Ok(RingRecord::Event { inline, .. }) => assert_eq!(inline, Some(&b"pingpong"[..])),
            Ok(RingRecord::Chunk { .. }) => panic!("parsed as a chunk"),
            Err(error) => panic!("{error}"),
        }
        // An inline length past the record's end is refused, not read beyond it.
        event.record.payload_len = extractor_common::usdt::SMALL_CHUNK as u32 + 1;
        assert!(matches!(
            RingRecord::parse(bytes_of(&*event)),
            Err(MalformedRecord::Short { what: "event", .. })
        ));
        event.record.payload_len = 8;
        // Without the flag the payload comes in chunks.
        event.record.flags = 0;
        assert!(matches!(
            RingRecord::parse(bytes_of(&*event)),
            Ok(RingRecord::Event { inline: None, .. })
        ));
    }

    #[test]
    fn a_record_that_does_not_parse_is_counted_and_the_rest_go_on() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        // Aligned like the ring's records: an event record is read in place.
        let mut aligned = vec![0u64; 64];
        // SAFETY: plain integers viewed as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(aligned.as_mut_ptr().cast::<u8>(), aligned.len() * 8)
        };
        bytes[0] = 0x7f;
        assert!(matches!(
            RingRecord::parse(&bytes[..16]),
            Err(MalformedRecord::UnknownKind {
                kind: 0x7f,
                len: 16
            })
        ));
        r.push_bytes(&bytes[..16], now);
        bytes[0] = record_kind::EVENT;
        r.push_bytes(&bytes[..8], now);
        bytes[0] = record_kind::PAYLOAD_CHUNK;
        r.push_bytes(&bytes[..4], now);
        r.push_bytes(&[], now);
        assert_eq!(r.counts().malformed_records, 4);
        // A chunk header announcing more bytes than its record holds.
        let header_len = std::mem::size_of::<ChunkHeader>();
        bytes[4..8].copy_from_slice(&100u32.to_ne_bytes());
        let header: ChunkHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        assert_eq!(
            header.len, 100,
            "the length field sits where this test writes it"
        );
        assert!(matches!(
            RingRecord::parse(&bytes[..header_len + 10]),
            Err(MalformedRecord::Short {
                what: "payload chunk",
                ..
            })
        ));
        // What comes after is read as usual.
        let mut out = Vec::new();
        r.push(inline_message(1, 10, 3, b"abc"), now);
        r.pop_ready(&mut out, now);
        assert_eq!(payload(&out[0]), (&b"abc"[..], None));
    }

    #[test]
    fn an_inline_payload_the_kernel_could_not_read_is_marked() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        r.push(inline_message(1, 10, 8, b""), now);
        r.pop_ready(&mut out, now);
        assert_eq!(payload(&out[0]), (&b""[..], Some(PayloadCut::ReadFailed)));
    }

    #[test]
    fn a_capture_limit_cut_is_reported_as_such() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 3);
        let mut out = Vec::new();
        r.push(message(1, 10, 5, 3), now);
        r.push(chunk(1, 0, b"abc", chunk_flags::LAST), now);
        r.pop_ready(&mut out, now);
        assert_eq!(
            payload(&out[0]),
            (&b"abc"[..], Some(PayloadCut::CaptureLimit))
        );
    }

    #[test]
    fn a_failed_read_closes_the_event_at_once() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        r.push(message(1, 10, 5, 5), now);
        r.push(
            chunk(1, 0, b"", chunk_flags::LAST | chunk_flags::READ_FAILED),
            now,
        );
        r.pop_ready(&mut out, now);
        assert_eq!(payload(&out[0]), (&b""[..], Some(PayloadCut::ReadFailed)));
    }

    #[test]
    fn lost_chunks_end_at_the_threads_next_record_or_at_the_timeout() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        // Thread 10 moves on: its earlier event's missing chunks will never come.
        r.push(message(1, 10, 5, 5), now);
        r.push(chunk(1, 0, b"ab", 0), now);
        r.push(message(2, 10, 4, 4), now);
        r.pop_ready(&mut out, now);
        assert_eq!(out.len(), 1);
        assert_eq!(payload(&out[0]), (&b"ab"[..], Some(PayloadCut::RingFull)));

        // Thread 10 stays silent: the timeout ends the wait.
        r.pop_ready(&mut out, now + PAYLOAD_TIMEOUT / 2);
        assert_eq!(out.len(), 1, "still within the timeout");
        r.pop_ready(&mut out, now + PAYLOAD_TIMEOUT);
        assert_eq!(out.len(), 2);
        assert_eq!(payload(&out[1]), (&b""[..], Some(PayloadCut::RingFull)));
        // A chunk arriving after all is not mistaken for another event's.
        r.push(chunk(2, 0, b"wxyz", chunk_flags::LAST), now);
        assert_eq!((r.counts().stray_chunks, r.open_events()), (1, 0));
        assert_eq!(r.counts().expired_incomplete, 1);
    }

    #[test]
    fn after_a_detach_events_still_missing_chunks_are_closed_and_let_the_rest_out() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        r.push(message(1, 10, 5, 5), now);
        r.push(chunk(1, 0, b"ab", 0), now);
        r.push(message(2, 11, 0, 0), now);
        r.pop_ready(&mut out, now);
        assert!(out.is_empty(), "event 2 waits behind event 1");
        assert_eq!(r.close_open(), 1);
        r.pop_ready(&mut out, now);
        assert_eq!(out.len(), 2);
        assert_eq!(payload(&out[0]), (&b"ab"[..], Some(PayloadCut::RingFull)));
        assert_eq!(r.open_events(), 0);
        assert_eq!(
            r.counts(),
            ReassemblyCounts {
                closed_at_shutdown: 1,
                ..ReassemblyCounts::default()
            }
        );
    }

    /// A net message of thread `tid` whose `data` payload comes whole in one chunk.
    fn whole(r: &mut Reassembler, event_id: u64, tid: u32, data: &[u8], now: Instant) {
        r.push(
            message(event_id, tid, data.len() as u64, data.len() as u32),
            now,
        );
        r.push(chunk(event_id, 0, data, chunk_flags::LAST), now);
    }

    #[test]
    fn a_head_event_whose_chunks_never_come_holds_the_rest_back_for_the_timeout_only() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        // Thread 10 got 2 of its 5 bytes out, then its chunks were lost (ring full) or it was
        // killed: it never sends another record.
        r.push(message(1, 10, 5, 5), now);
        r.push(chunk(1, 0, b"ab", 0), now);
        for id in 2..1_002u64 {
            whole(&mut r, id, 11, &id.to_le_bytes(), now);
        }
        r.pop_ready(&mut out, now);
        r.pop_ready(&mut out, now + PAYLOAD_TIMEOUT - Duration::from_millis(1));
        assert!(
            out.is_empty(),
            "within the timeout, all wait behind event 1"
        );
        r.pop_ready(&mut out, now + PAYLOAD_TIMEOUT);
        assert_eq!(out.len(), 1_001, "at the timeout, all are out");
        assert_eq!(payload(&out[0]), (&b"ab"[..], Some(PayloadCut::RingFull)));
        for (id, event) in (2..1_002u64).zip(&out[1..]) {
            assert_eq!(payload(event), (&id.to_le_bytes()[..], None), "event {id}");
        }
        assert_eq!(r.open_events(), 0);
        assert_eq!(
            r.counts(),
            ReassemblyCounts {
                expired_incomplete: 1,
                ..ReassemblyCounts::default()
            }
        );
    }

    #[test]
    fn each_waiting_event_expires_from_its_own_last_chunk_once_it_is_the_oldest() {
        let now = Instant::now();
        let later = now + PAYLOAD_TIMEOUT / 2;
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        r.push(message(1, 10, 5, 5), now);
        r.push(message(2, 11, 5, 5), now);
        whole(&mut r, 3, 12, b"xyz", now);
        r.push(chunk(2, 0, b"ab", 0), later);
        whole(&mut r, 4, 12, b"uvw", later);
        // Event 1 expires; event 2 got a chunk since: it is given its own timeout.
        r.pop_ready(&mut out, now + PAYLOAD_TIMEOUT);
        assert_eq!(out.len(), 1);
        assert_eq!(payload(&out[0]), (&b""[..], Some(PayloadCut::RingFull)));
        r.pop_ready(&mut out, later + PAYLOAD_TIMEOUT);
        assert_eq!(out.len(), 4);
        assert_eq!(payload(&out[1]), (&b"ab"[..], Some(PayloadCut::RingFull)));
        assert_eq!(payload(&out[2]), (&b"xyz"[..], None));
        assert_eq!(payload(&out[3]), (&b"uvw"[..], None));
        assert_eq!(r.counts().expired_incomplete, 2);
    }

    #[test]
    fn an_event_no_chunk_can_reach_still_expires_at_the_head() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        // Two records with one id (the kernel's ids are unique; per-CPU ids once collided):
        // the chunks go to the later one, the earlier can never complete.
        r.push(message(5, 10, 5, 5), now);
        whole(&mut r, 5, 11, b"xyz", now);
        for id in 100..1_100 {
            r.push(message(id, 12, 0, 0), now);
        }
        r.pop_ready(&mut out, now);
        assert!(out.is_empty());
        r.pop_ready(&mut out, now + PAYLOAD_TIMEOUT);
        assert_eq!(out.len(), 1_002, "released after the timeout");
        assert_eq!(payload(&out[0]), (&b""[..], Some(PayloadCut::RingFull)));
        assert_eq!(payload(&out[1]), (&b"xyz"[..], None));
        assert_eq!(r.counts().expired_incomplete, 1);
    }

    #[test]
    fn a_threads_next_record_closes_its_own_event_even_when_its_id_came_twice() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        r.push(message(5, 10, 5, 5), now);
        r.push(message(5, 11, 3, 3), now);
        // Thread 10 moves on: its own event is closed, not thread 11's.
        r.push(message(7, 10, 0, 0), now);
        r.push(chunk(5, 0, b"xyz", chunk_flags::LAST), now);
        r.pop_ready(&mut out, now);
        assert_eq!(out.len(), 3);
        assert_eq!(payload(&out[0]), (&b""[..], Some(PayloadCut::RingFull)));
        assert_eq!(payload(&out[1]), (&b"xyz"[..], None));
        assert_eq!(
            (r.counts(), r.open_events()),
            (ReassemblyCounts::default(), 0)
        );
    }

    #[test]
    fn close_open_lets_out_an_event_no_chunk_can_reach() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        r.push(message(5, 10, 5, 5), now);
        whole(&mut r, 5, 11, b"xyz", now);
        r.push(message(6, 12, 5, 5), now);
        assert_eq!(r.close_open(), 2);
        r.pop_ready(&mut out, now);
        assert_eq!(out.len(), 3, "released at shutdown");
        assert_eq!(payload(&out[0]), (&b""[..], Some(PayloadCut::RingFull)));
        assert_eq!(payload(&out[2]), (&b""[..], Some(PayloadCut::RingFull)));
        assert_eq!(r.counts().closed_at_shutdown, 2);
        assert_eq!(r.open_events(), 0);
    }

    #[test]
    fn a_check_costs_the_same_however_many_events_wait() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        // A burst whose chunks were all lost, one thread each: 20,000 events waiting.
        for id in 0..20_000 {
            r.push(message(id, id as u32, 5, 5), now);
        }
        // 5 s of drains, one check a millisecond, before the timeout: each looks at the head
        // only. (Scanning every waiting event took 6 s here.)
        let started = Instant::now();
        for _ in 0..5_000 {
            r.pop_ready(&mut out, now);
        }
        let spent = started.elapsed();
        assert!(
            spent < Duration::from_millis(500),
            "5,000 checks took {spent:?}"
        );
        assert!(out.is_empty());
        r.pop_ready(&mut out, now + PAYLOAD_TIMEOUT);
        assert_eq!(out.len(), 20_000);
        assert_eq!(r.counts().expired_incomplete, 20_000);
        assert_eq!(r.open_events(), 0);
    }

    #[test]
    fn stray_chunks_are_counted_and_added_to_nothing() {
        let now = Instant::now();
        let mut r = Reassembler::new(CLOCK, 4_000_000);
        let mut out = Vec::new();
        // Event 1's record was lost (ring full), its chunk was not.
        r.push(chunk(1, 0, b"lost", chunk_flags::LAST), now);
        assert_eq!(r.counts().stray_chunks, 1);
        // Event 2 expires at the head; event 3 (another thread) waits behind it, started later.
        r.push(message(2, 10, 5, 5), now);
        r.push(chunk(2, 0, b"ab", 0), now);
        let later = now + PAYLOAD_TIMEOUT / 2;
        r.push(message(3, 11, 4, 4), later);
        r.push(chunk(3, 0, b"wx", 0), later);
        r.pop_ready(&mut out, now + PAYLOAD_TIMEOUT);
        assert_eq!(out.len(), 1);
        assert_eq!(payload(&out[0]), (&b"ab"[..], Some(PayloadCut::RingFull)));
        // Event 2's missing bytes, late: stray, neither added to event 2 nor to event 3 (whose
        // next offset they would fit).
        r.push(chunk(2, 2, b"cde", chunk_flags::LAST), later);
        assert_eq!(r.counts().stray_chunks, 2);
        assert_eq!(payload(&out[0]), (&b"ab"[..], Some(PayloadCut::RingFull)));
        r.push(chunk(3, 2, b"yz", chunk_flags::LAST), later);
        r.pop_ready(&mut out, later);
        assert_eq!(out.len(), 2);
        assert_eq!(payload(&out[1]), (&b"wxyz"[..], None));
        // A chunk of an event closed by its thread's next record, or at shutdown: stray too.
        r.push(message(4, 12, 5, 5), later);
        r.push(message(5, 12, 0, 0), later);
        r.push(chunk(4, 0, b"abcde", chunk_flags::LAST), later);
        r.push(message(6, 13, 5, 5), later);
        r.close_open();
        r.push(chunk(6, 0, b"abcde", chunk_flags::LAST), later);
        r.pop_ready(&mut out, later);
        assert_eq!(out.len(), 5);
        assert_eq!(payload(&out[2]), (&b""[..], Some(PayloadCut::RingFull)));
        assert_eq!(payload(&out[4]), (&b""[..], Some(PayloadCut::RingFull)));
        assert_eq!(
            r.counts(),
            ReassemblyCounts {
                stray_chunks: 4,
                expired_incomplete: 1,
                closed_at_shutdown: 1,
                malformed_records: 0,
            }
        );
    }
}
