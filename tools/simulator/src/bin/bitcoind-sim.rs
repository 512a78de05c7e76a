//! Bitcoin Core v29+/v30 tracepoints: semaphore-gated probes.

fn main() -> anyhow::Result<()> {
    let probes = simulator::probes!("tracepoints_v30", simulator::Flavour::V30);
    simulator::run(std::env::args_os(), probes)
}
