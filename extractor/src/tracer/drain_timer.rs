//! When the reader drains the ring: a one-shot timer with microsecond resolution (a timerfd;
//! tokio's timers tick in whole milliseconds, too coarse for a batch delay of 250 µs).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

pub(super) struct DrainTimer {
    fd: AsyncFd<OwnedFd>,
}

impl DrainTimer {
    pub(super) fn new() -> io::Result<DrainTimer> {
        // SAFETY: no pointers; the descriptor returned is ours to own.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the AsyncFd owns the descriptor, so it outlives the registration.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(DrainTimer { fd })
    }

    /// Fires once, `after` from now (replacing whatever was set before).
    pub(super) fn arm(&self, after: Duration) {
        // A zero value would disarm the timer.
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: a valid descriptor and specification; the old value is not asked for.
        let set =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        // Cannot fail with a valid descriptor and a normalised value.
        debug_assert_eq!(set, 0, "{}", io::Error::last_os_error());
    }

    /// Waits until the timer fires. Cancel-safe.
    pub(super) async fn fired(&self) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads at most 8 bytes into our buffer.
            let read = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    expirations.as_mut_ptr().cast(),
                    expirations.len(),
                )
            };
            // One-shot: once read (or not fired yet, EAGAIN), it is not readable until it fires.
            ready.clear_ready();
            if read == 8 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test(flavor = "current_thread")]
    async fn fires_once_after_the_delay_and_rearms() {
        let timer = DrainTimer::new().unwrap();
        for delay in [Duration::from_micros(250), Duration::from_millis(3)] {
            let armed = Instant::now();
            timer.arm(delay);
            timer.fired().await.unwrap();
            assert!(
                armed.elapsed() >= delay,
                "fired early: {:?}",
                armed.elapsed()
            );
        }
        // Re-arming replaces the pending expiry instead of adding one.
        timer.arm(Duration::from_secs(3600));
        timer.arm(Duration::from_micros(100));
        tokio::time::timeout(Duration::from_secs(5), timer.fired())
            .await
            .expect("the later arm replaced the hour")
            .unwrap();
    }
}
