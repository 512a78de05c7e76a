//! The command line shared by `bitcoind-sim` and `bitcoind-sim-legacy`.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use extractor_common::Tracepoint;

use crate::load::{parse_mix, run_load, Direction, LoadConfig, LoadStats};
use crate::probes::{Flavour, Probes};
use crate::scenario::{regtest_like, Fixtures};
use crate::sim::{install_stop_handlers, stop_requested, Sim};
use crate::truth::TruthWriter;
use crate::unreadable::unreadable_scenario;

pub const DEFAULT_SEED: u64 = 0x6e6f_6465_7363_6f70; // "nodescop"

/// A bitcoind stand-in firing Bitcoin Core v30.0's USDT tracepoints.
#[derive(Parser, Debug)]
#[command(name = "bitcoind-sim", version, about)]
pub struct Cli {
    /// Write the ground truth (JSON lines, one per fired tracepoint) to PATH ("-" = stdout).
    #[arg(long, value_name = "PATH", env = "NODESCOPE_SIM_TRUTH", global = true)]
    pub truth: Option<String>,
    /// Before starting, wait until the semaphores of these tracepoints are all > 0:
    /// comma-separated `provider:name`, or `all`.
    #[arg(
        long,
        value_name = "LIST",
        env = "NODESCOPE_SIM_WAIT_FOR_TRACER",
        global = true
    )]
    pub wait_for_tracer: Option<String>,
    /// Give up waiting for a tracer after this many seconds (exit 1).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30.0,
        env = "NODESCOPE_SIM_WAIT_TIMEOUT",
        global = true
    )]
    pub wait_timeout: f64,
    /// Run the scenario N times.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        env = "NODESCOPE_SIM_REPEAT",
        global = true
    )]
    pub repeat: u64,
    /// Run the scenario until SIGINT/SIGTERM.
    #[arg(
        long = "loop",
        env = "NODESCOPE_SIM_LOOP",
        global = true,
        conflicts_with = "repeat"
    )]
    pub forever: bool,
    /// Sleep this long between events (regtest-like, unreadable).
    #[arg(
        long,
        value_name = "MILLIS",
        default_value_t = 0,
        env = "NODESCOPE_SIM_PACE",
        global = true
    )]
    pub pace: u64,
    /// Seed of all generated content.
    #[arg(long, default_value_t = DEFAULT_SEED, env = "NODESCOPE_SIM_SEED", global = true)]
    pub seed: u64,
    #[command(subcommand)]
    pub scenario: ScenarioCmd,
}

#[derive(Subcommand, Debug)]
pub enum ScenarioCmd {
    /// Peers, handshakes, relay, mempool, blocks, UTXO cache, wallet: all 20 tracepoints.
    RegtestLike,
    /// net:inbound_message / net:outbound_message load.
    Load(LoadArgs),
    /// Pointer arguments the tracer cannot read (a string, a hash, a payload), each between two
    /// normal firings of its tracepoint.
    Unreadable,
}

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Message types and weights, e.g. `ping=1,inv=1`.
    #[arg(long, default_value = "ping=1", env = "NODESCOPE_SIM_MIX")]
    pub mix: String,
    #[arg(long, value_enum, default_value_t = Direction::Inbound, env = "NODESCOPE_SIM_DIRECTION")]
    pub direction: Direction,
    /// Events per second (0 = flat out).
    #[arg(
        long,
        value_name = "EVENTS_PER_S",
        default_value_t = 0.0,
        env = "NODESCOPE_SIM_RATE"
    )]
    pub rate: f64,
    /// Stop after this many seconds.
    #[arg(
        long,
        value_name = "SECS",
        env = "NODESCOPE_SIM_DURATION",
        conflicts_with = "count"
    )]
    pub duration: Option<f64>,
    /// Stop after this many events (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "N", env = "NODESCOPE_SIM_COUNT")]
    pub count: Option<u64>,
}

/// Parses `args` (including argv\[0]) and runs. Errors end the process with status 1.
pub fn run<I, T>(args: I, probes: Probes) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let name = match probes.flavour {
        Flavour::V30 => "bitcoind-sim",
        Flavour::Legacy => "bitcoind-sim-legacy",
    };
    let matches = Cli::command().name(name).get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    install_stop_handlers();

    if let Some(list) = &cli.wait_for_tracer {
        wait_for_tracer(
            &probes,
            &parse_tracepoints(list)?,
            Duration::from_secs_f64(cli.wait_timeout),
        )?;
    }
    let truth = cli.truth.as_deref().map(TruthWriter::create).transpose()?;
    let pace = match cli.scenario {
        ScenarioCmd::RegtestLike | ScenarioCmd::Unreadable => Duration::from_millis(cli.pace),
        ScenarioCmd::Load(_) => Duration::ZERO,
    };
    let mut sim = Sim::new(&probes, truth, pace);
    let runs = if cli.forever { u64::MAX } else { cli.repeat };
    let result = match &cli.scenario {
        ScenarioCmd::RegtestLike => {
            let fixtures = Fixtures::new(cli.seed);
            for run in 0..runs {
                if stop_requested() {
                    break;
                }
                regtest_like(&mut sim, &fixtures, cli.seed, run);
            }
            Ok(())
        }
        ScenarioCmd::Load(args) => run_load_cmd(&mut sim, args, cli.seed, runs),
        ScenarioCmd::Unreadable => {
            for run in 0..runs {
                if stop_requested() {
                    break;
                }
                unreadable_scenario(&mut sim, run);
            }
            Ok(())
        }
    };
    let flushed = sim.finish();
    result.and(flushed)
}

fn run_load_cmd(sim: &mut Sim<'_>, args: &LoadArgs, seed: u64, runs: u64) -> anyhow::Result<()> {
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a non-negative number");
    }
    let cfg = LoadConfig {
        mix: parse_mix(&args.mix)?,
        direction: args.direction,
        rate: args.rate,
        duration: args
            .duration
            .map(Duration::try_from_secs_f64)
            .transpose()
            .context("--duration must be a non-negative number of seconds")?,
        count: args.count,
    };
    let mut total = LoadStats::default();
    for _ in 0..runs {
        if stop_requested() {
            break;
        }
        let stats = run_load(sim, &cfg, seed)?;
        total.fired += stats.fired;
        total.attempted += stats.attempted;
        total.elapsed += stats.elapsed;
    }
    println!("{}", total.summary());
    Ok(())
}

/// `all` or comma-separated `provider:name`.
pub fn parse_tracepoints(list: &str) -> anyhow::Result<Vec<Tracepoint>> {
    if list.trim() == "all" {
        return Ok(Tracepoint::ALL.to_vec());
    }
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split_once(':')
                .and_then(|(provider, name)| Tracepoint::from_provider_name(provider, name))
                .with_context(|| {
                    format!("unknown tracepoint {s:?} (expected provider:name or all)")
                })
        })
        .collect()
}

/// See [`wait_for_tracer`]: how long after its semaphores rise a tracer is taken to be linked.
const LINK_SETTLE: Duration = Duration::from_millis(100);

fn wait_for_tracer(probes: &Probes, tps: &[Tracepoint], timeout: Duration) -> anyhow::Result<()> {
    if probes.flavour == Flavour::Legacy {
        eprintln!("warning: --wait-for-tracer ignored: legacy (v23-v28) probes have no semaphores");
        return Ok(());
    }
    let start = Instant::now();
    loop {
        let missing: Vec<String> = tps
            .iter()
            .filter(|tp| !probes.active(**tp))
            .map(|tp| tp.to_string())
            .collect();
        if stop_requested() {
            return Ok(());
        }
        if missing.is_empty() {
            // A semaphore goes up when the kernel registers the uprobe (the tracer's
            // perf_event_open), a moment before the tracer links its program to it
            // (BPF_LINK_CREATE); a firing in between traps with no program to run and is lost
            // where nothing can count it. Nothing in this process can see the link, so the
            // first firing waits this long past the semaphore; a real node just starts firing.
            std::thread::sleep(LINK_SETTLE);
            return Ok(());
        }
        if start.elapsed() >= timeout {
            bail!(
                "no tracer attached after {:.1}s: semaphores still 0 for {}",
                timeout.as_secs_f64(),
                missing.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
