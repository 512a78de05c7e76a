//! Buffers for large payloads whose pages are resident before the payload comes.
//!
//! The kernel writes a burst of twenty 4 MB blocks into the rings in about 5 ms, and the rings
//! hold fifteen: the reader must copy the rest out while the burst lasts. Copying into fresh
//! heap pages goes at about 1.3 GB/s here (each 4 KiB page a fault and zeroing), into resident
//! ones at over 10 GB/s. So a few buffers of the capture limit's size are kept touched, handed
//! to the first large payloads, and made again, one at a time, once the reader has caught up.

/// Payloads this large or larger get a warm buffer while one is left: blocks, not transactions.
pub const WARM_MIN_PAYLOAD: u32 = 1 << 20;

/// Resident memory kept for bursts of large payloads by default: five 4 MB blocks, which with
/// the rings' fifteen make room for twenty.
pub const DEFAULT_WARM_BYTES: usize = 20_000_000;

pub struct WarmBuffers {
    ready: Vec<Vec<u8>>,
    /// Buffers to keep ready.
    count: usize,
    /// Each buffer's capacity: the capture limit.
    capacity: usize,
}

impl WarmBuffers {
    /// As many buffers of `capacity` bytes as `bytes` holds, none made yet ([`refill`]); none
    /// at all when no payload can reach [`WARM_MIN_PAYLOAD`].
    ///
    /// [`refill`]: WarmBuffers::refill
    pub fn new(capacity: u32, bytes: usize) -> WarmBuffers {
        let capacity = capacity as usize;
        let count = if capacity >= WARM_MIN_PAYLOAD as usize {
            bytes / capacity
        } else {
            0
        };
        WarmBuffers {
            ready: Vec::with_capacity(count),
            count,
            capacity,
        }
    }

    /// An empty buffer for a payload of `len` bytes: a warm one for a large payload while one is
    /// ready, else a fresh one.
    pub fn buffer_for(&mut self, len: u32) -> (Vec<u8>, bool) {
        if len >= WARM_MIN_PAYLOAD && len as usize <= self.capacity {
            if let Some(buffer) = self.ready.pop() {
                return (buffer, true);
            }
        }
        (Vec::with_capacity(len as usize), false)
    }

    /// Makes one more buffer ready, its pages touched; false when all are. A few ms for a 4 MB
    /// one: for when the reader has nothing else to do.
    pub fn refill(&mut self) -> bool {
        if self.ready.len() >= self.count {
            return false;
        }
        let mut buffer = Vec::with_capacity(self.capacity);
        // Written, not only reserved: the allocator's fresh pages are mapped on first write. Not
        // with zeroes, which `vec![0; n]` would take from calloc, untouched.
        buffer.resize(self.capacity, u8::MAX);
        buffer.clear();
        self.ready.push(buffer);
        true
    }

    /// Buffers ready.
    #[cfg(test)]
    pub fn ready(&self) -> usize {
        self.ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_payloads_take_the_ready_buffers_then_fresh_ones() {
        let mut warm = WarmBuffers::new(4_000_000, DEFAULT_WARM_BYTES);
        while warm.refill() {}
        assert_eq!(warm.ready(), 5);
        let (small, warm_small) = warm.buffer_for(2_000);
        assert!(!warm_small && small.capacity() >= 2_000 && small.capacity() < 4_000_000);
        for _ in 0..5 {
            let (buffer, is_warm) = warm.buffer_for(3_000_000);
            assert!(is_warm && buffer.is_empty() && buffer.capacity() >= 4_000_000);
        }
        let (fresh, is_warm) = warm.buffer_for(3_000_000);
        assert!(!is_warm && fresh.capacity() >= 3_000_000);
        assert!(warm.refill());
        assert_eq!(warm.ready(), 1);
    }

    #[test]
    fn a_capture_limit_below_large_payloads_keeps_nothing() {
        let mut warm = WarmBuffers::new(64 * 1024, DEFAULT_WARM_BYTES);
        assert!(!warm.refill());
        assert!(!warm.buffer_for(60_000).1);
        assert!(!WarmBuffers::new(4_000_000, 0).refill(), "none asked for");
    }
}
