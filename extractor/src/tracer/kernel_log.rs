//! The kernel program's diagnostics (aya-log), forwarded into this process's log.

use aya::Ebpf;
use tokio::io::unix::AsyncFd;

/// Forwards the kernel program's diagnostics while it lives.
pub(super) struct KernelLog(Option<tokio::task::JoinHandle<()>>);

impl KernelLog {
    pub(super) fn forward(ebpf: &mut Ebpf) -> KernelLog {
        let logger = match aya_log::EbpfLogger::init(ebpf) {
            Ok(logger) => logger,
            Err(error) => {
                tracing::warn!(%error, "kernel-side diagnostics will not be shown");
                return KernelLog(None);
            }
        };
        // SAFETY: the AsyncFd owns the logger, so its descriptor outlives the registration.
        let mut logger = match unsafe { AsyncFd::register(logger) } {
            Ok(logger) => logger,
            Err(error) => {
                tracing::warn!(error = %error.into_parts().1, "kernel-side diagnostics will not be shown");
                return KernelLog(None);
            }
        };
        KernelLog(Some(tokio::spawn(async move {
            while let Ok(mut ready) = logger.readable_mut().await {
                ready.get_inner_mut().flush();
                ready.clear_ready();
            }
        })))
    }
}

impl Drop for KernelLog {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
