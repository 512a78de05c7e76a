//! The reading side of the kernel's BPF ring buffer, with its data pages mapped once.
//!
//! The kernel maps a ring's data pages twice in a row so that a record that wraps around the
//! end reads as one piece, and aya's reader maps them so too: each page then counts twice in
//! the extractor's resident memory (32 MB for a 16 MiB ring). Mapped once, a record that wraps
//! (one per turn of the ring at most) is copied into a buffer instead.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
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

/// Where the positions and the data are, in memory shared with the kernel.
struct View {
    consumer: *const AtomicU64,
    producer: *const AtomicU64,
    data: *const u8,
    /// A power of two.
    size: usize,
}

pub(super) struct Ring {
    view: View,
    /// Our own position, published to the kernel after each record.
    consumer_pos: u64,
    /// For a record that wraps around the end; `u64`s, so that it is aligned like the ring.
    wrapped: Vec<u64>,
    /// The last drain stopped at its limits, not at the end of what was written.
    stopped_at_limit: bool,
    mapping: Option<Mapping>,
}

/// The two mappings of the map's file: the consumer page (read-write), the producer page and
/// the data pages once (read-only).
struct Mapping {
    map: MapData,
    consumer: *mut libc::c_void,
    producer: *mut libc::c_void,
    producer_len: usize,
    page: usize,
}

// SAFETY: the pointers are into this process's mappings, owned by the Ring; nothing else
// writes through them but the kernel.
unsafe impl Send for Ring {}

impl Ring {
    /// Maps the ring buffer `map` whose data area is `size` bytes.
    pub(super) fn new(map: MapData, size: usize) -> io::Result<Ring> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let fd = map.fd().as_fd().as_raw_fd();
        let map_at = |len: usize, protection: libc::c_int, offset: usize| {
            // SAFETY: a fresh shared mapping of the map's file; the kernel checks the range.
            let address = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    protection,
                    libc::MAP_SHARED,
                    fd,
                    offset as libc::off_t,
                )
            };
            if address == libc::MAP_FAILED {
                Err(io::Error::last_os_error())
            } else {
                Ok(address)
            }
        };
        let consumer = map_at(page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer_len = page + size;
        let producer = match map_at(producer_len, libc::PROT_READ, page) {
            Ok(producer) => producer,
            Err(error) => {
                // SAFETY: unmapping what was just mapped.
                unsafe { libc::munmap(consumer, page) };
                return Err(error);
            }
        };
        let view = View {
            consumer: consumer.cast(),
            producer: producer.cast(),
            // SAFETY: the data starts one page into the producer mapping.
            data: unsafe { producer.cast::<u8>().add(page) },
            size,
        };
        // SAFETY: the consumer page is mapped and holds the position as an aligned u64.
        let consumer_pos = unsafe { &*view.consumer }.load(Ordering::Acquire);
        Ok(Ring {
            view,
            consumer_pos,
            wrapped: Vec::new(),
            stopped_at_limit: false,
            mapping: Some(Mapping {
                map,
                consumer,
                producer,
                producer_len,
                page,
            }),
        })
    }

    /// Calls `each` with up to `max` records, in order, each as its bytes (8-byte aligned),
    /// stopping once `max_bytes` were taken; returns how many records it took. Stops at the
    /// first record still being written.
    pub(super) fn drain(
        &mut self,
        max: usize,
        max_bytes: usize,
        mut each: impl FnMut(&[u8]),
    ) -> usize {
        let view = &self.view;
        // SAFETY (all dereferences below): the view's pointers are into live mappings (or, in
        // tests, buffers) of the sizes it says; positions are aligned u64s.
        let producer = unsafe { &*view.producer };
        let consumer = unsafe { &*view.consumer };
        let mask = view.size as u64 - 1;
        let mut producer_pos = producer.load(Ordering::Acquire);
        let (mut taken, mut bytes_taken) = (0, 0);
        while taken < max && bytes_taken < max_bytes {
            if self.consumer_pos >= producer_pos {
                // Caught up with what was visible at the start: look once more.
                producer_pos = producer.load(Ordering::Acquire);
                if self.consumer_pos >= producer_pos {
                    break;
                }
            }
            let offset = (self.consumer_pos & mask) as usize;
            // Records are 8-byte aligned and the size is a multiple of a page: a header never
            // wraps.
            let header = unsafe { &*view.data.add(offset).cast::<AtomicU32>() };
            let flags_and_len = header.load(Ordering::Acquire);
            if flags_and_len & BUSY_BIT != 0 {
                break;
            }
            let len = (flags_and_len & !(BUSY_BIT | DISCARD_BIT)) as usize;
            if flags_and_len & DISCARD_BIT == 0 {
                let start = (offset + HEADER_LEN) & mask as usize;
                if start + len <= view.size {
                    each(unsafe { std::slice::from_raw_parts(view.data.add(start), len) });
                } else {
                    let first = view.size - start;
                    self.wrapped.clear();
                    self.wrapped.resize(len.div_ceil(8), 0);
                    let bytes = unsafe {
                        std::slice::from_raw_parts_mut(self.wrapped.as_mut_ptr().cast::<u8>(), len)
                    };
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            view.data.add(start),
                            bytes.as_mut_ptr(),
                            first,
                        );
                        std::ptr::copy_nonoverlapping(
                            view.data,
                            bytes.as_mut_ptr().add(first),
                            len - first,
                        );
                    }
                    each(bytes);
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
        }
        consumer.store(self.consumer_pos, Ordering::Release);
        self.stopped_at_limit = taken >= max || bytes_taken >= max_bytes;
        taken
    }

    /// Whether the last drain stopped at its limits: more was there to take. (Records that
    /// came after it reached the end do not count: at a high rate some always have.)
    pub(super) fn stopped_at_limit(&self) -> bool {
        self.stopped_at_limit
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        let mapping = self.mapping.as_ref().expect("a mapped ring has a map");
        mapping.map.fd().as_fd().as_raw_fd()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if let Some(mapping) = &self.mapping {
            // SAFETY: unmapping our own mappings, which nothing borrows any more.
            unsafe {
                libc::munmap(mapping.consumer, mapping.page);
                libc::munmap(mapping.producer, mapping.producer_len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring in plain memory, written the way the kernel writes one.
    struct FakeKernel {
        consumer: Box<AtomicU64>,
        producer: Box<AtomicU64>,
        data: Vec<u64>,
    }

    impl FakeKernel {
        fn new(size: usize, start: u64) -> FakeKernel {
            FakeKernel {
                consumer: Box::new(AtomicU64::new(start)),
                producer: Box::new(AtomicU64::new(start)),
                data: vec![0; size / 8],
            }
        }

        fn ring(&self) -> Ring {
            Ring {
                view: View {
                    consumer: &*self.consumer,
                    producer: &*self.producer,
                    data: self.data.as_ptr().cast(),
                    size: self.data.len() * 8,
                },
                consumer_pos: self.consumer.load(Ordering::Relaxed),
                wrapped: Vec::new(),
                stopped_at_limit: false,
                mapping: None,
            }
        }

        /// Writes a record at the producer position, busy or submitted (or discarded).
        fn write(&mut self, payload: &[u8], flags: u32) {
            let size = self.data.len() * 8;
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(self.data.as_mut_ptr().cast::<u8>(), size)
            };
            let pos = self.producer.load(Ordering::Relaxed) as usize;
            let header = (payload.len() as u32 | flags).to_le_bytes();
            bytes[pos % size..pos % size + 4].copy_from_slice(&header);
            for (i, byte) in payload.iter().enumerate() {
                bytes[(pos + HEADER_LEN + i) % size] = *byte;
            }
            let next = pos + (HEADER_LEN + payload.len()).next_multiple_of(8);
            self.producer.store(next as u64, Ordering::Release);
        }
    }

    fn drain_all(ring: &mut Ring) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        ring.drain(usize::MAX, usize::MAX, |bytes| {
            assert_eq!(bytes.as_ptr() as usize % 8, 0, "records are 8-byte aligned");
            records.push(bytes.to_vec())
        });
        records
    }

    #[test]
    fn records_come_in_order_and_a_wrapping_one_in_one_piece() {
        // 64 bytes of ring from position 32: the second record's bytes start 8 before the end.
        let mut kernel = FakeKernel::new(64, 32);
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
            kernel.consumer.load(Ordering::Relaxed),
            kernel.producer.load(Ordering::Relaxed)
        );
        assert!(drain_all(&mut ring).is_empty());
    }

    #[test]
    fn a_record_still_being_written_holds_back_the_ones_after_it() {
        let mut kernel = FakeKernel::new(4096, 0);
        let mut ring = kernel.ring();
        kernel.write(b"first", 0);
        let busy_at = kernel.producer.load(Ordering::Relaxed);
        kernel.write(b"busy", BUSY_BIT);
        kernel.write(b"third", 0);
        assert_eq!(drain_all(&mut ring), [b"first".to_vec()]);
        assert_eq!(kernel.consumer.load(Ordering::Relaxed), busy_at);
        // Microseconds from being submitted: not worth draining again at once.
        assert!(!ring.stopped_at_limit());
        // Submitted now (the kernel clears the busy bit).
        let data =
            unsafe { std::slice::from_raw_parts_mut(kernel.data.as_mut_ptr().cast::<u8>(), 4096) };
        data[busy_at as usize..busy_at as usize + 4].copy_from_slice(&4u32.to_le_bytes());
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
        assert_eq!(ring.drain(4, usize::MAX, |b| seen.push(b[0])), 4);
        assert!(ring.stopped_at_limit());
        // The record that reaches the byte limit is the last one taken.
        assert_eq!(ring.drain(100, 5, |b| seen.push(b[0])), 2);
        assert!(ring.stopped_at_limit());
        assert_eq!(ring.drain(100, usize::MAX, |b| seen.push(b[0])), 4);
        assert!(!ring.stopped_at_limit());
        assert_eq!(seen, (0..10).collect::<Vec<u8>>());
    }
}
