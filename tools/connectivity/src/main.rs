use clap::Parser;
use nodescope_connectivity::{run, Args};
use nodescope_consumer::{init_logging, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    run(Args::parse(), shutdown_signal()).await
}
