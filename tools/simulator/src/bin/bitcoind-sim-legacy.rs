//! Bitcoin Core v23–v28 tracepoints: no semaphores, every probe always fires.

fn main() -> anyhow::Result<()> {
    let probes = simulator::probes!("tracepoints_legacy", simulator::Flavour::Legacy);
    simulator::run(std::env::args_os(), probes)
}
