//! `cargo xtask …`: set-up, the demo and the test suite. Each command that needs the toolchain
//! runs the (idempotent, seconds when done) set-up first, so nothing else has to be typed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};

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
    /// Set up, then run the whole test suite, clippy and the format check.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        cargo_args: Vec<String>,
    },
    /// Set up, then run the demo: a local NATS, the simulated bitcoind replaying its
    /// regtest-like scenario in a loop, the extractor attached to it, and the tools — the
    /// logger printing every event, metrics on :8282, the live page on :47482. Ctrl-C stops it.
    Demo {
        /// Milliseconds between simulated tracepoint firings.
        #[arg(long, env = "NODESCOPE_DEMO_PACE_MS", default_value_t = 40)]
        pace_ms: u64,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long, env = "NODESCOPE_DEMO_SECONDS")]
        seconds: Option<u64>,
    },
    /// Set up, build in release, then run a benchmark and print its table (needs root: eBPF).
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
    /// (extractor/examples/extractor_bench.rs).
    Extractor,
    /// The metrics exporter: events/s ingested on one core, in-process and end to end through a
    /// private nats-server (tools/metrics/examples/metrics_bench.rs).
    Metrics,
    /// The websocket tool: fan-out to 100 clients at several event rates, delivered events/s
    /// and latency (tools/websocket/examples/websocket_bench.rs).
    Websocket,
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup(),
        Task::Test { cargo_args } => {
            setup()?;
            test(&cargo_args)
        }
        Task::Demo { pace_ms, seconds } => {
            setup()?;
            demo(pace_ms, seconds)
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
    };
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

/// Children that are stopped (SIGTERM, then reaped) when the demo ends, however it ends.
struct Processes(Vec<(&'static str, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in self.0.iter_mut().rev() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

fn demo(pace_ms: u64, seconds: Option<u64>) -> Result<()> {
    check(
        cargo(&[
            "build",
            "--package",
            "extractor",
            "--package",
            "simulator",
            "--package",
            "nodescope-logger",
            "--package",
            "nodescope-metrics",
            "--package",
            "nodescope-websocket",
            "--bins",
        ])
        .status()?,
        "building the extractor, the simulator and the tools",
    )?;
    let root = workspace_root();
    let bin = |name: &str| root.join("target/debug").join(name);
    let mut processes = Processes(Vec::new());

    let nats_config = root.join("compose/nats/nats.conf");
    println!(
        "demo: starting nats-server on 127.0.0.1:4222 ({})",
        nats_config.display()
    );
    processes.0.push((
        "nats-server",
        Command::new("nats-server")
            .arg("--config")
            .arg(&nats_config)
            .spawn()
            .context("starting nats-server (run `cargo xtask setup`)")?,
    ));
    wait_for_port(4222, "nats-server")?;

    // The tools subscribe before anything is published, so they see every event.
    let nats = ["--nats-url", "nats://127.0.0.1:4222"];
    println!("demo: Prometheus metrics on http://127.0.0.1:8282/metrics");
    processes.0.push((
        "metrics",
        Command::new(bin("metrics"))
            .args(nats)
            .spawn()
            .context("starting the metrics tool")?,
    ));
    println!(
        "demo: the live page on http://127.0.0.1:47482/ (websocket feed: ws://127.0.0.1:47482/ws)"
    );
    processes.0.push((
        "websocket",
        Command::new(bin("websocket"))
            .args(nats)
            .spawn()
            .context("starting the websocket tool")?,
    ));
    wait_for_port(8282, "the metrics tool")?;
    wait_for_port(47482, "the websocket tool")?;
    println!("demo: the logger prints every event below");
    processes.0.push((
        "logger",
        Command::new(bin("logger"))
            .args(nats)
            .spawn()
            .context("starting the logger")?,
    ));
    // The logger says when it has subscribed; give it that moment.
    std::thread::sleep(std::time::Duration::from_millis(500));

    println!(
        "demo: starting the extractor on {}",
        bin("bitcoind-sim").display()
    );
    processes.0.push((
        "extractor",
        Command::new(bin("extractor"))
            .args([
                "ebpf",
                "--node-id",
                "demo",
                "--nats-url",
                "nats://127.0.0.1:4222",
                "--bitcoind-path",
            ])
            .arg(bin("bitcoind-sim"))
            .spawn()
            .context("starting the extractor")?,
    ));

    println!("demo: starting the simulated bitcoind (regtest-like scenario, looping)");
    processes.0.push((
        "bitcoind-sim",
        Command::new(bin("bitcoind-sim"))
            .args([
                "--loop",
                "--pace",
                &pace_ms.to_string(),
                "--wait-for-tracer",
                "all",
                "--wait-timeout",
                "60",
                "regtest-like",
            ])
            .spawn()
            .context("starting the simulator")?,
    ));

    let deadline = seconds.map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        for (name, child) in processes.0.iter_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited ({status}); the demo stops");
            }
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            println!("demo: done");
            return Ok(());
        }
    }
}

/// Waits until something listens on 127.0.0.1:`port`.
fn wait_for_port(port: u16, what: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("{what} did not start listening on 127.0.0.1:{port} (is the port taken?)");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}
