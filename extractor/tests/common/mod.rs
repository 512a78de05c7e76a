//! What the extractor's integration tests share: private simulator copies (tracing is by path,
//! so parallel tests must not share one binary) and the extractor run in-process.
#![allow(dead_code)]

pub mod bus;
pub mod traced;

use std::path::{Path, PathBuf};

use clap::Parser;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn private_binary(dir: &Path, name: &str) -> PathBuf {
    let source = simulator::binary_path(name).expect("simulator binary");
    let copy = dir.join(name);
    std::fs::copy(&source, &copy).expect("copy simulator");
    copy
}

/// A private copy of the installed bitcoind, for the same reason.
pub fn private_bitcoind(dir: &Path) -> PathBuf {
    nodescope_regtest::private_bitcoind(dir).expect("Bitcoin Core is installed (cargo xtask setup)")
}

/// Blocking harness calls (RPC, raw sockets) off the async workers, so that an extractor
/// running in the test's process keeps reading meanwhile.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

pub fn assert_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests load eBPF programs: run them as root"
    );
}

/// The `fired=` count of the simulator's `load: fired=… attempted=…` summary line.
pub fn fired_from_summary(output: &str) -> u64 {
    let line = output
        .lines()
        .find(|l| l.starts_with("load: "))
        .unwrap_or_else(|| panic!("no summary line in {output:?}"));
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("fired="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fired= in {line:?}"))
}

/// `extractor <args>` running in this process until [`Running::stop`].
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

pub fn start_extractor(args: &[impl AsRef<str>]) -> Running {
    assert_root();
    let cli = extractor::cli::Cli::parse_from(
        std::iter::once("extractor").chain(args.iter().map(AsRef::as_ref)),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(extractor::cli::run(cli, async {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        task,
    }
}

impl Running {
    /// Runs `work` while the extractor runs; if the extractor exits first, fails with its error.
    pub async fn alongside<T>(&mut self, work: impl std::future::Future<Output = T>) -> T {
        tokio::select! {
            out = work => out,
            ended = &mut self.task => panic!("the extractor exited early: {:?}", ended.expect("extractor task")),
        }
    }

    /// Waits for it to end on its own, and returns how it ended.
    pub async fn ended(mut self) -> anyhow::Result<()> {
        (&mut self.task).await.expect("extractor task")
    }

    /// Stops it as SIGINT would, and returns how it ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().expect("running").send(());
        self.task.await.expect("extractor task")
    }
}

/// `extractor rpc <args>` running in this process (no root needed), and the switch that stops
/// its ZMQ socket reads while `true`.
pub fn start_rpc_extractor(
    args: &[impl AsRef<str>],
) -> (Running, tokio::sync::watch::Sender<bool>) {
    let cli = extractor::cli::Cli::parse_from(
        ["extractor", "rpc"]
            .into_iter()
            .chain(args.iter().map(AsRef::as_ref)),
    );
    let extractor::cli::Command::Rpc(rpc) = cli.command else {
        unreachable!("parsed as rpc")
    };
    let (pause, paused) = tokio::sync::watch::channel(false);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(extractor::rpc::run_with_pause(
        rpc,
        async {
            let _ = stopped.await;
        },
        paused,
    ));
    (
        Running {
            stop: Some(stop),
            task,
        },
        pause,
    )
}

/// `extractor <args>` running in this process, for the subcommands that need no root.
pub fn start_unprivileged(args: &[impl AsRef<str>]) -> Running {
    let cli = extractor::cli::Cli::parse_from(
        std::iter::once("extractor").chain(args.iter().map(AsRef::as_ref)),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(extractor::cli::run(cli, async {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        task,
    }
}
