//! The kernel program's diagnostics (aya-log), forwarded into this process's log.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use aya::Ebpf;
use tokio::io::unix::AsyncFd;

/// Forwards the kernel program's diagnostics while it lives, and what is left of them when it
/// is dropped: the lines a probe wrote just before the stop are not lost with the process.
pub(super) struct KernelLog(Option<Forwarder>);

struct Forwarder {
    ring: Arc<AsyncFd<LogRing>>,
    task: tokio::task::JoinHandle<()>,
}

/// The logger's ring: its descriptor, for the reactor to watch, and the logger itself behind a
/// lock (owned by `flush`), shared by the forwarding task and the final flush.
struct LogRing {
    fd: RawFd,
    flush: Mutex<Box<dyn FnMut() + Send>>,
}

impl AsRawFd for LogRing {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl LogRing {
    /// Logs every record the ring holds now.
    fn flush(&self) {
        (self.flush.lock().expect("kernel log"))();
    }
}

impl KernelLog {
    pub(super) fn forward(ebpf: &mut Ebpf) -> KernelLog {
        let mut logger = match aya_log::EbpfLogger::init(ebpf) {
            Ok(logger) => logger,
            Err(error) => {
                tracing::warn!(%error, "kernel-side diagnostics will not be shown");
                return KernelLog(None);
            }
        };
        let ring = LogRing {
            fd: logger.as_raw_fd(),
            flush: Mutex::new(Box::new(move || logger.flush())),
        };
        // SAFETY: the AsyncFd owns the logger, so its descriptor outlives the registration.
        let ring = match unsafe { AsyncFd::register(ring) } {
            Ok(ring) => Arc::new(ring),
            Err(error) => {
                tracing::warn!(error = %error.into_parts().1, "kernel-side diagnostics will not be shown");
                return KernelLog(None);
            }
        };
        let task = tokio::spawn({
            let ring = ring.clone();
            async move {
                while let Ok(mut ready) = ring.readable().await {
                    ready.get_inner().flush();
                    ready.clear_ready();
                }
            }
        });
        KernelLog(Some(Forwarder { ring, task }))
    }
}

impl Drop for KernelLog {
    fn drop(&mut self) {
        if let Some(forwarder) = self.0.take() {
            forwarder.task.abort();
            // The task holds the lock only within a flush, never across an await: this takes
            // it at once, and logs what the task had not been woken for yet.
            forwarder.ring.get_ref().flush();
        }
    }
}
