use clap::Parser;

use extractor::cli::{run, Cli};
use nodescope_bus::process::{init_logging, shutdown_signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let cli = Cli::parse();
    run(cli, shutdown_signal()).await
}
