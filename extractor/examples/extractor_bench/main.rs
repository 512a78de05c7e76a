//! The extractor benchmark (`cargo xtask bench extractor [--quick]`): a measurement, not a test.
//! It never fails because a machine is slow; it prints what it measured beside the targets.
//!
//! Everything runs on this machine, sharing its cores: a private `nats-server`, the release
//! `extractor` binary as a child process (so its CPU time and memory are its own, read from
//! `/proc`), release `bitcoind-sim load` runs firing `net:inbound_message`, and a subscriber (this
//! program) counting every event's sequence number and its latency from the probe to here.
//!
//! * Rate steps for `ping` (8-byte payload) and `inv` (1009 bytes): the simulator fires at a
//!   fixed rate, then flat out; a step is lossless when every event fired reached the
//!   subscriber and the extractor counted no drop.
//! * A burst of 4 MB blocks, flat out.
//! * The cost charged to the traced thread: the simulator flat out with no tracer, with a
//!   count-only uprobe (the bare trap) and with the extractor attached.
//! * A real Bitcoin Core regtest node flooded by raw P2P peers, without and with the extractor
//!   (all tracepoints): bitcoind's CPU per message, the extractor's per event, losses
//!   (`bench_bitcoind/mod.rs`).

#[path = "../bench_bitcoind/mod.rs"]
mod bench_bitcoind;
#[path = "../bench_report/mod.rs"]
mod bench_report;
mod block;
mod cost;
mod processes;
mod rates;
mod subscriber;
mod table;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use nodescope_bus::test_server::NatsServer;

// What `bench_bitcoind` takes from here (`use super::…`).
use bench_report::{fixed, machine, print_table, thousands};
use processes::{process_cpu_seconds, spawn_extractor, stat_cpu_seconds, Memory};
use subscriber::Envelope;

use block::{block_section, fire_blocks};
use cost::cost_section;
use rates::rate_section;
use subscriber::Subscriber;
use table::{print_rate_section, print_targets};

#[derive(Parser, Debug)]
#[command(about = "nodescope extractor benchmark: prints a table")]
struct Args {
    /// Short steps: a smoke run of a minute or so (figures are rougher).
    #[arg(long)]
    quick: bool,
    /// Directory holding the release `extractor`, `bitcoind-sim` and `bitcoind-sim-legacy`
    /// (default: the one this example was built into).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Sections to run (comma-separated): cost, ping, inv, block, bitcoind.
    #[arg(
        long,
        default_value = "cost,ping,inv,block,bitcoind",
        value_delimiter = ','
    )]
    sections: Vec<String>,
}

const NODE: &str = "bench";
const TARGET_PING_RATE: f64 = 600_000.0;
const TARGET_INV_RATE: f64 = 300_000.0;
const TARGET_PING_CPU_US: f64 = 1.0;
const TARGET_INV_CPU_US: f64 = 3.0;
const TARGET_RSS_MB: f64 = 64.0;
const TARGET_P99_MS: f64 = 1.0;
const TARGET_KERNEL_MIB: f64 = 64.0;

// ---------------------------------------------------------------------------------------------

struct Paths {
    dir: PathBuf,
    extractor: PathBuf,
    /// Private copies of the release simulator: uprobes attach per file, so each measurement
    /// has its own and nothing else on the machine traces them.
    sim_traced: PathBuf,
    sim_count: PathBuf,
    sim_untraced: PathBuf,
    sim_legacy: PathBuf,
    /// This program, firing 4 MB blocks (`fire-blocks`).
    block_firer: PathBuf,
}

fn paths(args: &Args, dir: &Path) -> Result<Paths> {
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            let exe = std::env::current_exe()?;
            // <target>/release/examples/extractor_bench → <target>/release
            exe.parent()
                .and_then(Path::parent)
                .context("locating the target directory")?
                .to_path_buf()
        }
    };
    let bin = |name: &str| -> Result<PathBuf> {
        let path = bin_dir.join(name);
        if !path.exists() {
            bail!(
                "{} does not exist: build with `cargo build --release -p extractor -p simulator --bins`",
                path.display()
            );
        }
        Ok(path)
    };
    let copy = |from: &str, to: &str| -> Result<PathBuf> {
        let target = dir.join(to);
        std::fs::copy(bin(from)?, &target)?;
        Ok(target)
    };
    Ok(Paths {
        dir: dir.to_path_buf(),
        extractor: bin("extractor")?,
        sim_traced: copy("bitcoind-sim", "bitcoind")?,
        sim_count: copy("bitcoind-sim", "bitcoind-count")?,
        sim_untraced: copy("bitcoind-sim", "bitcoind-untraced")?,
        sim_legacy: copy("bitcoind-sim-legacy", "bitcoind-legacy")?,
        block_firer: {
            let target = dir.join("bitcoind-blocks");
            std::fs::copy(std::env::current_exe()?, &target)?;
            target
        },
    })
}

fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some("fire-blocks") {
        let count = argv.next().context("fire-blocks N")?.parse()?;
        return fire_blocks(count);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(bench(Args::parse()))
}

async fn bench(args: Args) -> Result<()> {
    let run = |s: &str| args.sections.iter().any(|x| x == s);
    let dir = tempfile::tempdir()?;
    let paths = paths(&args, dir.path())?;
    let started = Instant::now();
    let machine = machine();
    let quick = args.quick;
    let step_s = if quick { 0.5 } else { 4.0 };
    let flat_count: u64 = if quick { 300_000 } else { 2_000_000 };
    let cost_count: u64 = if quick { 500_000 } else { 2_000_000 };
    let block_count = 20;

    let cost = if run("cost") {
        eprintln!("bench: traced-thread cost (no tracer, count-only probe)…");
        Some(cost_section(&paths, cost_count, if quick { 1 } else { 3 }).await?)
    } else {
        None
    };

    let nats = tokio::task::spawn_blocking(NatsServer::start).await?;
    let nats_url = nats.url();
    let mut subscriber = Subscriber::start(&nats_url).await?;

    let ping_rates = [
        50_000.0, 100_000.0, 200_000.0, 300_000.0, 400_000.0, 500_000.0, 600_000.0, 700_000.0,
        800_000.0,
    ];
    let inv_rates = [
        50_000.0, 100_000.0, 200_000.0, 300_000.0, 400_000.0, 500_000.0,
    ];
    let mut rate_section_if_chosen = async |name: &'static str, rates: &[f64]| {
        if !run(name) {
            return Ok::<_, anyhow::Error>(None);
        }
        let section = rate_section(
            name,
            rates,
            step_s,
            flat_count,
            &paths,
            &nats_url,
            &mut subscriber,
        );
        Ok(Some(section.await?))
    };
    let ping = rate_section_if_chosen("ping", &ping_rates).await?;
    let inv = rate_section_if_chosen("inv", &inv_rates).await?;
    let block = if run("block") {
        Some(block_section(&paths, &nats_url, &mut subscriber, block_count).await?)
    } else {
        None
    };
    // Kept to print after the other sections, should it fail.
    let real = if run("bitcoind") {
        eprintln!("bench: real bitcoind flooded by raw peers…");
        Some(bench_bitcoind::measure(&paths.dir, &paths.extractor, &nats_url, quick).await)
    } else {
        None
    };
    drop(nats);

    // ------------------------------------------------------------------ print
    println!();
    println!(
        "nodescope extractor benchmark ({} mode, {:.0} s)",
        if quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64()
    );
    println!("{machine}");
    println!(
        "simulator, nats-server, subscriber and extractor share these CPUs; one tracepoint \
         (net:inbound_message) attached"
    );
    for section in [&ping, &inv].into_iter().flatten() {
        print_rate_section(section, quick, flat_count);
    }
    if let Some(b) = &block {
        b.print();
    }
    let flat_with_extractor = ping.as_ref().and_then(|p| p.flat_out());
    if let Some(c) = &cost {
        c.print(flat_with_extractor);
    }

    match &real {
        Some(Ok(section)) => bench_bitcoind::print(section),
        Some(Err(e)) => {
            println!();
            println!("Real bitcoind: failed: {e:#}");
        }
        None => {}
    }

    print_targets(
        ping.as_ref(),
        inv.as_ref(),
        block.as_ref(),
        cost.as_ref(),
        flat_with_extractor,
    );
    match real {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}
