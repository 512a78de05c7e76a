use clap::Parser;
use nodescope_consumer::{init_logging, shutdown_signal};
use nodescope_fleet::{run, Args};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    run(Args::parse(), shutdown_signal()).await
}
