//! The reading side of the kernel's BPF ring buffer, its data pages mapped a window at a time.
//!
//! The kernel maps a ring's data pages twice in a row so that a record that wraps around the
//! end reads as one piece, and aya's reader maps them so too: each page then counts twice in
//! the extractor's resident memory (32 MB for a 16 MiB ring). Here the data area is an address
//! range reserved once, of which only the pages being read are mapped (a window of at most
//! [`MAX_WINDOW`], moved along as records are read): the ring's size costs kernel memory, not
//! the extractor's resident memory, so a ring large enough for a burst of blocks does not push
//! the process past its budget. A record that wraps around the end is copied into a buffer.

use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aya::maps::MapData;

/// `BPF_RINGBUF_HDR_SZ`: a record's header (length and flags, then the kernel's page offset).
const HEADER_LEN: usize = 8;
/// The record is reserved and not yet submitted: it and everything after it are not readable.
const BUSY_BIT: u32 = 1 << 31;
/// The record was discarded: skipped.
const DISCARD_BIT: u32 = 1 << 30;

/// Records read before their room is given back to the kernel (and at the end of a drain).
const GIVE_BACK_EVERY: usize = 64;
/// Bytes read after which room is given back at every record: a large payload's chunks free
/// the ring as they are read.
const GIVE_BACK_BYTES: usize = 1024 * 1024;

/// Most of the data area mapped at once (an eighth of a smaller ring). Moving the window maps
/// its pages anew, about 50 µs for 2 MiB: once per 2 MiB of records read.
const MAX_WINDOW: usize = 2 * 1024 * 1024;

/// What one drain took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Drained {
    pub(super) records: usize,
    /// The records' bytes, headers excluded.
    pub(super) bytes: usize,
}

impl std::ops::AddAssign for Drained {
    fn add_assign(&mut self, other: Drained) {
        self.records += other.records;
        self.bytes += other.bytes;
    }
}

pub(super) struct Ring {
    /// The map's file (a duplicate of the map's descriptor), which the mappings read.
    file: OwnedFd,
    page: usize,
    /// The consumer page (read-write) and the producer page (read-only).
    consumer: *const AtomicU64,
    producer: *const AtomicU64,
    /// The data area's reserved range: inaccessible but for `window`.
    data: *mut u8,
    /// A power of two, a multiple of the page size.
    size: usize,
    /// The offsets of the data area mapped readable now.
    window: Range<usize>,
    window_len: usize,
    /// Our own position, published to the kernel after each record.
    consumer_pos: u64,
    /// For a record that wraps around the end; `u64`s, so that it is aligned like the ring.
    wrapped: Vec<u64>,
    /// The last drain stopped at its limits, not at the end of what was written.
    stopped_at_limit: bool,
}

// SAFETY: the pointers are into this process's mappings, owned by the Ring; nothing else
// writes through them but the kernel.
unsafe impl Send for Ring {}

/// A fresh mapping of `len` bytes (at `at` when given, replacing what was there).
fn map(
    at: Option<*mut u8>,
    len: usize,
    protection: libc::c_int,
    file: Option<(RawFd, usize)>,
) -> io::Result<*mut u8> {
    let (flags, fd, offset) = match file {
        Some((fd, offset)) => (libc::MAP_SHARED, fd, offset),
        None => (
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        ),
    };
    let (address, flags) = match at {
        Some(at) => (at.cast(), flags | libc::MAP_FIXED),
        None => (std::ptr::null_mut(), flags),
    };
    // SAFETY: a shared mapping of the map's file (the kernel checks the range), or anonymous
    // memory; MAP_FIXED only ever replaces part of the Ring's own reserved range.
    let address = unsafe { libc::mmap(address, len, protection, flags, fd, offset as libc::off_t) };
    if address == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(address.cast())
    }
}

impl Ring {
    /// Maps the ring buffer `map` whose data area is `size` bytes.
    pub(super) fn new(map: MapData, size: usize) -> io::Result<Ring> {
        Ring::map(map.fd().as_fd().try_clone_to_owned()?, size)
    }

    /// Maps a file laid out as the kernel lays out a ring buffer map: the consumer page, the
    /// producer page, then `size` bytes of data.
    fn map(file: OwnedFd, size: usize) -> io::Result<Ring> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let fd = file.as_raw_fd();
        let mut ring = Ring {
            file,
            page,
            consumer: std::ptr::null(),
            producer: std::ptr::null(),
            data: std::ptr::null_mut(),
            size,
            window: 0..0,
            window_len: (size / 8).clamp(page, MAX_WINDOW),
            consumer_pos: 0,
            wrapped: Vec::new(),
            stopped_at_limit: false,
        };
        // Each mapping is kept as soon as made, so that dropping the ring undoes what was done.
        ring.consumer = map(
            None,
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            Some((fd, 0)),
        )?
        .cast();
        ring.producer = map(None, page, libc::PROT_READ, Some((fd, page)))?.cast();
        ring.data = map(None, size, libc::PROT_NONE, None)?;
        // SAFETY: the consumer page is mapped and holds the position as an aligned u64.
        ring.consumer_pos = unsafe { &*ring.consumer }.load(Ordering::Acquire);
        Ok(ring)
    }

    /// Makes the data bytes `offset..offset + len` readable, moving the window when they are
    /// not in it.
    fn cover(&mut self, offset: usize, len: usize) -> io::Result<()> {
        let end = offset + len;
        if self.window.start <= offset && end <= self.window.end {
            return Ok(());
        }
        let start = offset - offset % self.page;
        let window = start
            ..(start + self.window_len)
                .max(end.next_multiple_of(self.page))
                .min(self.size);
        if !self.window.is_empty() {
            let old = std::mem::replace(&mut self.window, 0..0);
            // SAFETY: within the reserved range.
            let at = unsafe { self.data.add(old.start) };
            map(Some(at), old.len(), libc::PROT_NONE, None)?;
        }
        // SAFETY: within the reserved range.
        let at = unsafe { self.data.add(window.start) };
        let file_offset = 2 * self.page + window.start;
        map(
            Some(at),
            window.len(),
            libc::PROT_READ,
            Some((self.file.as_raw_fd(), file_offset)),
        )?;
        self.window = window;
        Ok(())
    }

    /// Calls `each` with up to `max` records, in order, each as its bytes (8-byte aligned),
    /// stopping once `max_bytes` were taken; returns what it took. Stops at the
    /// first record still being written, and at a record `each` leaves (returns false for):
    /// that one comes first again in the next drain. Fails only when the window cannot be
    /// mapped.
    pub(super) fn drain(
        &mut self,
        max: usize,
        max_bytes: usize,
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> io::Result<Drained> {
        // SAFETY (all dereferences below): the position pages are mapped for the ring's life
        // and hold aligned u64s; data is read only in the window `cover` has just mapped.
        let producer = unsafe { &*self.producer };
        let consumer = unsafe { &*self.consumer };
        let mask = self.size as u64 - 1;
        let mut producer_pos = producer.load(Ordering::Acquire);
        let (mut taken, mut bytes_taken) = (0, 0);
        let result = loop {
            if taken >= max || bytes_taken >= max_bytes {
                break Ok(());
            }
            if self.consumer_pos >= producer_pos {
                // Caught up with what was visible at the start: look once more.
                producer_pos = producer.load(Ordering::Acquire);
                if self.consumer_pos >= producer_pos {
                    break Ok(());
                }
            }
            let offset = (self.consumer_pos & mask) as usize;
            // Records are 8-byte aligned and the size is a multiple of a page: a header never
            // wraps.
            if let Err(error) = self.cover(offset, HEADER_LEN) {
                break Err(error);
            }
            let header = unsafe { &*self.data.add(offset).cast::<AtomicU32>() };
            let flags_and_len = header.load(Ordering::Acquire);
            if flags_and_len & BUSY_BIT != 0 {
                break Ok(());
            }
            let len = (flags_and_len & !(BUSY_BIT | DISCARD_BIT)) as usize;
            if flags_and_len & DISCARD_BIT == 0 {
                let start = (offset + HEADER_LEN) & mask as usize;
                match self.read_record(start, len, &mut each) {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(error) => break Err(error),
                }
                taken += 1;
                bytes_taken += len;
            }
            self.consumer_pos += (HEADER_LEN + len).next_multiple_of(8) as u64;
            // The room is the kernel's again. Given back every few records, not after each: the
            // kernel reads the position at every reservation, and a cache line written for each
            // record moves between the two CPUs for each record.
            if taken % GIVE_BACK_EVERY == 0 || bytes_taken >= GIVE_BACK_BYTES {
                consumer.store(self.consumer_pos, Ordering::Release);
            }
        };
        consumer.store(self.consumer_pos, Ordering::Release);
        self.stopped_at_limit = taken >= max || bytes_taken >= max_bytes;
        result.map(|()| Drained {
            records: taken,
            bytes: bytes_taken,
        })
    }

    /// Calls `each` with the `len` bytes of data at `start`, copied when they wrap around the
    /// end; returns what `each` did.
    fn read_record(
        &mut self,
        start: usize,
        len: usize,
        each: &mut impl FnMut(&[u8]) -> bool,
    ) -> io::Result<bool> {
        if start + len <= self.size {
            self.cover(start, len)?;
            return Ok(each(unsafe {
                std::slice::from_raw_parts(self.data.add(start), len)
            }));
        }
        let first = self.size - start;
        let mut wrapped = std::mem::take(&mut self.wrapped);
        wrapped.clear();
        wrapped.resize(len.div_ceil(8), 0);
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(wrapped.as_mut_ptr().cast::<u8>(), len) };
        let copied = self.cover(start, first).and_then(|()| {
            bytes[..first].copy_from_slice(unsafe {
                std::slice::from_raw_parts(self.data.add(start), first)
            });
            self.cover(0, len - first)?;
            bytes[first..]
                .copy_from_slice(unsafe { std::slice::from_raw_parts(self.data, len - first) });
            Ok(())
        });
        let took = copied.map(|()| each(bytes));
        self.wrapped = wrapped;
        took
    }

    /// Where the kernel reserves the next record: every record reserved so far lies before it.
    pub(super) fn producer_pos(&self) -> u64 {
        // SAFETY: the producer page is mapped for the ring's life and holds an aligned u64.
        unsafe { &*self.producer }.load(Ordering::Acquire)
    }

    /// Where the next record to read starts: the records before it were read.
    pub(super) fn consumer_pos(&self) -> u64 {
        self.consumer_pos
    }

    /// Whether the last drain stopped at its limits: more was there to take. (Records that
    /// came after it reached the end do not count: at a high rate some always have.)
    pub(super) fn stopped_at_limit(&self) -> bool {
        self.stopped_at_limit
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mappings, which nothing borrows any more.
        unsafe {
            for (address, len) in [
                (self.consumer as *mut libc::c_void, self.page),
                (self.producer as *mut libc::c_void, self.page),
                (self.data.cast(), self.size),
            ] {
                if !address.is_null() {
                    libc::munmap(address, len);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file laid out as the kernel lays out a ring buffer map (the positions' pages, then
    /// the data), written the way the kernel writes one: the ring maps it as it maps the map.
    struct FakeKernel {
        file: OwnedFd,
        /// The whole file, mapped read-write.
        base: *mut u8,
        page: usize,
        size: usize,
    }

    impl FakeKernel {
        fn new(size: usize, start: u64) -> FakeKernel {
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
            let fd = unsafe { libc::memfd_create(c"ring".as_ptr(), libc::MFD_CLOEXEC) };
            assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
            let file = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let len = 2 * page + size;
            assert_eq!(unsafe { libc::ftruncate(fd, len as libc::off_t) }, 0);
            let base = map(None, len, libc::PROT_READ | libc::PROT_WRITE, Some((fd, 0))).unwrap();
            let kernel = FakeKernel {
                file,
                base,
                page,
                size,
            };
            kernel.consumer().store(start, Ordering::Relaxed);
            kernel.producer().store(start, Ordering::Relaxed);
            kernel
        }

        fn consumer(&self) -> &AtomicU64 {
            unsafe { &*self.base.cast::<AtomicU64>() }
        }

        fn producer(&self) -> &AtomicU64 {
            unsafe { &*self.base.add(self.page).cast::<AtomicU64>() }
        }

        fn data(&mut self) -> &mut [u8] {
            unsafe { std::slice::from_raw_parts_mut(self.base.add(2 * self.page), self.size) }
        }

        fn ring(&self) -> Ring {
            Ring::map(self.file.try_clone().unwrap(), self.size).unwrap()
        }

        /// Writes a record at the producer position, busy or submitted (or discarded).
        fn write(&mut self, payload: &[u8], flags: u32) {
            let size = self.size;
            let pos = self.producer().load(Ordering::Relaxed) as usize;
            let header = (payload.len() as u32 | flags).to_le_bytes();
            let bytes = self.data();
            bytes[pos % size..pos % size + 4].copy_from_slice(&header);
            for (i, byte) in payload.iter().enumerate() {
                bytes[(pos + HEADER_LEN + i) % size] = *byte;
            }
            let next = pos + (HEADER_LEN + payload.len()).next_multiple_of(8);
            self.producer().store(next as u64, Ordering::Release);
        }
    }

    impl Drop for FakeKernel {
        fn drop(&mut self) {
            unsafe { libc::munmap(self.base.cast(), 2 * self.page + self.size) };
        }
    }

    fn drain_all(ring: &mut Ring) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        ring.drain(usize::MAX, usize::MAX, |bytes| {
            assert_eq!(bytes.as_ptr() as usize % 8, 0, "records are 8-byte aligned");
            records.push(bytes.to_vec());
            true
        })
        .unwrap();
        records
    }

    #[test]
    fn records_come_in_order_and_a_wrapping_one_in_one_piece() {
        // One page of ring from 32 before its end: the second record's bytes start 8 before
        // the end.
        let mut kernel = FakeKernel::new(4096, 4096 - 32);
        let mut ring = kernel.ring();
        kernel.write(b"abc", 0);
        kernel.write(b"0123456789abcdefghij", 0);
        kernel.write(b"skipped", DISCARD_BIT);
        assert_eq!(
            drain_all(&mut ring),
            [b"abc".to_vec(), b"0123456789abcdefghij".to_vec()]
        );
        // Every byte given back to the kernel, discarded record included.
        assert_eq!(
            kernel.consumer().load(Ordering::Relaxed),
            kernel.producer().load(Ordering::Relaxed)
        );
        assert!(drain_all(&mut ring).is_empty());
    }

    #[test]
    fn a_record_still_being_written_holds_back_the_ones_after_it() {
        let mut kernel = FakeKernel::new(4096, 0);
        let mut ring = kernel.ring();
        kernel.write(b"first", 0);
        let busy_at = kernel.producer().load(Ordering::Relaxed);
        kernel.write(b"busy", BUSY_BIT);
        kernel.write(b"third", 0);
        assert_eq!(drain_all(&mut ring), [b"first".to_vec()]);
        assert_eq!(kernel.consumer().load(Ordering::Relaxed), busy_at);
        // Microseconds from being submitted: not worth draining again at once.
        assert!(!ring.stopped_at_limit());
        // Submitted now (the kernel clears the busy bit).
        kernel.data()[busy_at as usize..busy_at as usize + 4].copy_from_slice(&4u32.to_le_bytes());
        assert_eq!(drain_all(&mut ring), [b"busy".to_vec(), b"third".to_vec()]);
    }

    #[test]
    fn a_drain_takes_at_most_what_it_is_asked() {
        let mut kernel = FakeKernel::new(4096, 0);
        let mut ring = kernel.ring();
        for n in 0..10u8 {
            kernel.write(&[n; 3], 0);
        }
        let mut seen = Vec::new();
        let mut take = |b: &[u8]| {
            seen.push(b[0]);
            true
        };
        assert_eq!(ring.drain(4, usize::MAX, &mut take).unwrap().records, 4);
        assert!(ring.stopped_at_limit());
        // The record that reaches the byte limit is the last one taken.
        assert_eq!(
            ring.drain(100, 5, &mut take).unwrap(),
            Drained {
                records: 2,
                bytes: 6
            }
        );
        assert!(ring.stopped_at_limit());
        assert_eq!(ring.drain(100, usize::MAX, &mut take).unwrap().records, 4);
        assert!(!ring.stopped_at_limit());
        assert_eq!(seen, (0..10).collect::<Vec<u8>>());
    }

    #[test]
    fn a_record_left_comes_first_in_the_next_drain() {
        let mut kernel = FakeKernel::new(4096, 0);
        let mut ring = kernel.ring();
        for n in 0..4u8 {
            kernel.write(&[n; 5], 0);
        }
        let mut seen = Vec::new();
        let drained = ring
            .drain(usize::MAX, usize::MAX, |b| {
                seen.push(b[0]);
                b[0] != 2
            })
            .unwrap();
        assert_eq!(drained.records, 2, "the record left is not taken");
        assert!(!ring.stopped_at_limit());
        let left_at = kernel.consumer().load(Ordering::Relaxed);
        assert_eq!(left_at, 2 * 16, "its room stays the kernel's");
        assert_eq!(drain_all(&mut ring), [[2u8; 5].to_vec(), [3u8; 5].to_vec()]);
        assert_eq!(seen, [0, 1, 2]);
    }

    #[test]
    fn a_ring_read_through_a_moving_window_gives_every_byte_in_order() {
        // 64 KiB of ring: windows of two pages. Turns of the ring with records of every size
        // class, one larger than the window and some that wrap around the end.
        let size = 64 * 1024;
        let mut kernel = FakeKernel::new(size, 0);
        let mut ring = kernel.ring();
        assert_eq!(ring.window_len, 2 * kernel.page);
        let lens = [3, 128, 1000, 4100, 20_000, 57, 9000];
        let mut expected = Vec::new();
        let mut received = Vec::new();
        for n in 0..200usize {
            let len = lens[n % lens.len()];
            let record: Vec<u8> = (0..len).map(|i| (i * 7 + n) as u8).collect();
            kernel.write(&record, 0);
            expected.push(record);
            // Read at times, as the kernel fills; never more than the ring holds unread.
            if n % 3 == 2 {
                received.extend(drain_all(&mut ring));
                assert!(
                    ring.window.len() <= 20_000usize.next_multiple_of(kernel.page) + kernel.page,
                    "the window grows only to hold a record: {:?}",
                    ring.window
                );
            }
        }
        received.extend(drain_all(&mut ring));
        assert!(
            kernel.producer().load(Ordering::Relaxed) > 10 * size as u64,
            "the ring turned over"
        );
        assert_eq!(received.len(), expected.len());
        for (n, (got, want)) in received.iter().zip(&expected).enumerate() {
            assert!(got == want, "record {n} ({} bytes) differs", want.len());
        }
    }
}
