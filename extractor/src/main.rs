use clap::Parser;

use extractor::cli::{run, Cli};
use nodescope_bus::process::{init_logging, shutdown_signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    fix_allocator_thresholds();
    init_logging();
    let cli = Cli::parse();
    run(cli, shutdown_signal()).await
}

/// glibc's allocator raises its mmap and trim thresholds each time a large buffer is freed (up
/// to 32 and 64 MB), and from then on keeps what is freed below them: after a burst of events
/// or a few blocks, memory the extractor never gets back. Fixed thresholds return it (peak RSS
/// at 500,000 pings/s: 58 MB with glibc's defaults, 46 MB with these).
fn fix_allocator_thresholds() {
    #[cfg(target_env = "gnu")]
    for option in [libc::M_MMAP_THRESHOLD, libc::M_TRIM_THRESHOLD] {
        // SAFETY: mallopt takes plain integers; it is called before any other thread exists.
        unsafe { libc::mallopt(option, 256 * 1024) };
    }
}
