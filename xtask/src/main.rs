//! `cargo xtask …`: set-up, the demo and the test suite. Each command that needs the toolchain
//! runs the (idempotent, seconds when done) set-up first, so nothing else has to be typed.

mod compose;
mod demo;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "nodescope's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install everything needed to build, test and demo (Debian packages, eBPF toolchain,
    /// bpf-linker, nats-server). Idempotent.
    Setup,
    /// Set up, then run the whole test suite, clippy, the format check, the unit and rule
    /// checks of compose/ (systemd units, Prometheus rules) and the compose stack test.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        cargo_args: Vec<String>,
    },
    /// Set up, then run the demo: a local NATS, the tools (the logger printing every event,
    /// metrics on :8282, the live page on :47482) and the extractor attached to a real regtest
    /// bitcoind that makes payments, RBF bumps, blocks and connections. Ctrl-C stops it.
    Demo {
        /// Trace the simulated bitcoind replaying its regtest-like scenario instead.
        #[arg(long, env = "NODESCOPE_DEMO_SIMULATED")]
        simulated: bool,
        /// Pace: milliseconds between simulated tracepoint firings; a real node takes a step
        /// (a payment, sometimes a bump, a block, a peer) every 25 times this.
        #[arg(long, env = "NODESCOPE_DEMO_PACE_MS", default_value_t = 40)]
        pace_ms: u64,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long, env = "NODESCOPE_DEMO_SECONDS")]
        seconds: Option<u64>,
    },
    /// Set up, then run the compose files for real on Docker (the last step of `test`).
    ComposeTest,
    /// Build the images from source, as a user without this checkout's binaries would (the
    /// host's CA bundle is passed to the build as a secret for fetching crates).
    Images,
    /// Set up, build in release, then run a benchmark and print its table (`extractor` needs
    /// root: eBPF).
    Bench {
        /// What to benchmark.
        #[arg(value_enum)]
        what: BenchTarget,
        /// Short steps: a smoke run (rougher figures).
        #[arg(long)]
        quick: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchTarget {
    /// The eBPF extractor: lossless rates, latency, CPU, memory, block burst, traced-thread cost
    /// (extractor/examples/extractor_bench/main.rs), and a real regtest bitcoind flooded by raw P2P
    /// peers without and with the extractor (extractor/examples/bench_bitcoind/mod.rs).
    Extractor,
    /// The metrics exporter: events/s ingested on one core, in-process and end to end through a
    /// private nats-server (tools/metrics/examples/metrics_bench.rs).
    Metrics,
    /// The websocket tool: fan-out to 100 clients at several event rates, delivered events/s
    /// and latency (tools/websocket/examples/websocket_bench.rs).
    Websocket,
    /// connectivity-check: 50,000 announced addresses against 5,000 fake peers on loopback,
    /// checks/s, handshake p99, memory, and the concurrency and rate limits measured at the
    /// peers (tools/connectivity/examples/connectivity_bench.rs).
    ConnectivityCheck,
    /// `extractor rpc` against a real regtest bitcoind with 50 raw P2P peers, a wallet, a
    /// mempool and ZMQ: per method the RPC answer's and the event's bytes, call latency p50/p99
    /// and CPU per call; per poll the extractor's CPU; its peak RSS
    /// (extractor/examples/rpc_bench.rs).
    Rpc,
    /// The fleet tool following 10 simulated nodes that announce 100,000 transactions a second
    /// in total: events/s, CPU per event, memory, propagation event latency
    /// (tools/fleet/examples/fleet_bench.rs).
    Fleet,
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup(),
        Task::Test { cargo_args } => {
            setup()?;
            test(&cargo_args)
        }
        Task::ComposeTest => {
            setup()?;
            compose::test()
        }
        Task::Images => {
            setup()?;
            compose::images()
        }
        Task::Demo {
            simulated,
            pace_ms,
            seconds,
        } => {
            setup()?;
            demo::run(demo::DemoOptions {
                simulated,
                pace_ms,
                seconds,
            })
        }
        Task::Bench { what, quick } => {
            setup()?;
            bench(what, quick)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// `cargo` as invoked with the tools the set-up installed on PATH.
fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args).current_dir(workspace_root());
    command
}

fn check(status: ExitStatus, what: &str) -> Result<()> {
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn setup() -> Result<()> {
    let script = workspace_root().join("xtask/setup.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    check(status, "set-up (xtask/setup.sh)")
}

fn test(cargo_args: &[String]) -> Result<()> {
    let mut args = vec!["test", "--workspace", "--exclude", "extractor-ebpf"];
    args.extend(cargo_args.iter().map(String::as_str));
    check(cargo(&args).status()?, "cargo test")?;
    if cargo_args.is_empty() {
        check(
            cargo(&["clippy", "--all-targets", "--", "-D", "warnings"]).status()?,
            "cargo clippy",
        )?;
        check(
            cargo(&["fmt", "--all", "--check"]).status()?,
            "cargo fmt --check",
        )?;
        let root = workspace_root();
        check(
            Command::new("bash")
                .arg(root.join("compose/systemd/verify.sh"))
                .arg(root.join("target/debug"))
                .status()?,
            "compose/systemd/verify.sh (systemd-analyze verify)",
        )?;
        check(
            Command::new("bash")
                .arg(root.join("compose/prometheus/check.sh"))
                .status()?,
            "compose/prometheus/check.sh (promtool)",
        )?;
        compose::test()?;
    }
    Ok(())
}

fn bench(what: BenchTarget, quick: bool) -> Result<()> {
    let (package, example, what_runs) = match what {
        BenchTarget::Extractor => ("extractor", "extractor_bench", "the extractor benchmark"),
        BenchTarget::Metrics => (
            "nodescope-metrics",
            "metrics_bench",
            "the metrics benchmark",
        ),
        BenchTarget::Websocket => (
            "nodescope-websocket",
            "websocket_bench",
            "the websocket benchmark",
        ),
        BenchTarget::ConnectivityCheck => (
            "nodescope-connectivity",
            "connectivity_bench",
            "the connectivity-check benchmark",
        ),
        BenchTarget::Rpc => ("extractor", "rpc_bench", "the RPC extractor benchmark"),
        BenchTarget::Fleet => ("nodescope-fleet", "fleet_bench", "the fleet benchmark"),
    };
    if let BenchTarget::Fleet = what {
        // The benchmark runs the fleet tool as a process of its own, to measure its CPU and
        // memory.
        check(
            cargo(&[
                "build",
                "--release",
                "--package",
                "nodescope-fleet",
                "--bins",
            ])
            .status()?,
            "building the fleet tool (release)",
        )?;
    }
    if let BenchTarget::ConnectivityCheck = what {
        // The benchmark runs the tool as a process of its own, to measure its memory and CPU.
        check(
            cargo(&[
                "build",
                "--release",
                "--package",
                "nodescope-connectivity",
                "--bins",
            ])
            .status()?,
            "building connectivity-check (release)",
        )?;
    }
    if let BenchTarget::Rpc = what {
        // The benchmark runs `extractor rpc` as a process of its own, to measure its CPU and
        // memory.
        check(
            cargo(&["build", "--release", "--package", "extractor", "--bins"]).status()?,
            "building the extractor (release)",
        )?;
    }
    if let BenchTarget::Extractor = what {
        // The benchmark runs the extractor and simulator binaries as separate processes.
        check(
            cargo(&[
                "build",
                "--release",
                "--package",
                "extractor",
                "--package",
                "simulator",
                "--bins",
            ])
            .status()?,
            "building the extractor and the simulator (release)",
        )?;
    }
    let mut args = vec![
        "run",
        "--release",
        "--package",
        package,
        "--example",
        example,
        "--",
    ];
    if quick {
        args.push("--quick");
    }
    check(cargo(&args).status()?, what_runs)
}
