//! `cargo xtask compose-test` (and the last step of `cargo xtask test`): the compose files run
//! for real on the Docker engine the set-up installed.
//!
//! - `docker compose config -q` for every file and every profile;
//! - the images: nodescope from the host's release binaries (the from-source build is `cargo
//!   xtask images`), bitcoind from a tarball of the Bitcoin Core the set-up installed, and
//!   stand-ins for the official NATS, Prometheus and Alertmanager images where no registry
//!   provides them;
//! - the regtest stack: the logger's container prints the node's events, Prometheus scrapes
//!   the node's block height from the metrics tool, Alertmanager is healthy and Prometheus
//!   sends to it, the websocket tool serves its page, connectivity-check is healthy; a tool's
//!   profile stopped leaves the rest flowing; bitcoind restarted, events resume and the
//!   extractor's container was not restarted; the extractor has exactly the capabilities the
//!   file lists; the SYS_ADMIN fallback attaches with perf-event uprobes; `EXTRACTOR_TYPE=rpc`
//!   replaces it by `extractor rpc`, which runs with no capability, reads the cookie bitcoind
//!   makes readable by its group only, and publishes RPC answers and ZMQ notifications that
//!   reach the metrics tool; `down` keeps the volumes and `down -v` removes them.
//!
//! Waits poll with a deadline; every step prints how long it took.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cargo, check, workspace_root};

/// The compose project of the test: its containers, networks and volumes are its own.
const PROJECT: &str = "nodescope-test";

const FILES: [&str; 4] = [
    "docker-compose.yml",
    "node.mainnet.yml",
    "node.signet.yml",
    "compose/monitoring-only.yml",
];
const PROFILES: [&str; 8] = [
    "",
    "monitoring",
    "logger",
    "metrics",
    "websocket",
    "connectivity-check",
    "fleet",
    "dashboards",
];
/// The binaries the nodescope image takes from target/release with NODESCOPE_BINARIES=host.
const BINARIES: [(&str, &str); 6] = [
    ("extractor", "extractor"),
    ("nodescope-logger", "logger"),
    ("nodescope-metrics", "metrics"),
    ("nodescope-websocket", "websocket"),
    ("nodescope-connectivity", "connectivity-check"),
    ("nodescope-fleet", "fleet"),
];
/// The capabilities docker-compose.yml gives the extractor (compose/node.yml), by bit number.
const EXTRACTOR_CAPS: [(&str, u32); 3] = [("SYS_PTRACE", 19), ("PERFMON", 38), ("BPF", 39)];

pub fn test() -> Result<()> {
    let started = Instant::now();
    let root = workspace_root();
    step("release binaries for the image", || {
        let mut args = vec!["build", "--release", "--bins"];
        for (package, _) in BINARIES {
            args.extend(["--package", package]);
        }
        check(cargo(&args).status()?, "cargo build --release")
    })?;
    step(
        "docker compose config for every file and profile",
        check_configs,
    )?;
    let release = root.join("target/compose-test/bitcoin-release");
    step(
        "images (nodescope, bitcoind, NATS, Prometheus and Alertmanager stand-ins)",
        || build_images(&release),
    )?;
    let stack = Stack::new(&release);
    // A run cut off before its own clean-up (a killed CI job, a lost session) leaves the
    // project's volumes behind: the chain and the wallet would carry into this run.
    step("nothing left from an earlier run of the test", || {
        stack.remove()
    })?;
    let outcome = stack.run_checks();
    // Whatever happened, nothing of the test's is left running.
    let removed = stack.remove();
    outcome?;
    removed?;
    println!(
        "compose: the stack test passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn step(what: &str, work: impl FnOnce() -> Result<()>) -> Result<()> {
    let started = Instant::now();
    println!("compose: {what}...");
    work().with_context(|| format!("compose test: {what}"))?;
    println!(
        "compose: {what}: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn docker(args: &[&str]) -> Command {
    let mut command = Command::new("docker");
    command.args(args).current_dir(workspace_root());
    command
}

/// Runs `command`; its output, or an error with what it printed.
fn run(command: &mut Command, what: &str) -> Result<Output> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

fn check_configs() -> Result<()> {
    for file in FILES {
        for profile in PROFILES {
            let mut args = vec!["compose", "-f", file];
            if !profile.is_empty() {
                args.extend(["--profile", profile]);
            }
            args.extend(["config", "-q"]);
            run(
                &mut docker(&args),
                &format!("docker compose -f {file} --profile '{profile}' config -q"),
            )?;
        }
    }
    // The other extractors, on every chain.
    for file in &FILES[..3] {
        for kind in ["rpc", "p2p"] {
            run(
                docker(&["compose", "-f", file, "config", "-q"]).env("EXTRACTOR_TYPE", kind),
                &format!("EXTRACTOR_TYPE={kind} docker compose -f {file} config -q"),
            )?;
        }
    }
    for overlay in [
        "compose/extractor-sys-admin.yml",
        "compose/extractor-privileged.yml",
    ] {
        run(
            &mut docker(&[
                "compose",
                "-f",
                "docker-compose.yml",
                "-f",
                overlay,
                "config",
                "-q",
            ]),
            &format!("docker compose with {overlay}"),
        )?;
    }
    run(
        docker(&[
            "compose",
            "-f",
            "docker-compose.yml",
            "-f",
            "compose/nats-auth.yml",
            "config",
            "-q",
        ])
        .env("NATS_USER", "u")
        .env("NATS_PASSWORD", "p"),
        "docker compose with compose/nats-auth.yml",
    )?;
    Ok(())
}

/// The stand-ins are built only when the official image is not there (a registry may have
/// provided it).
fn build_images(release: &Path) -> Result<()> {
    let root = workspace_root();
    let standins = root.join("target/compose-test/standins");
    std::fs::create_dir_all(&standins)?;
    let nats_server = which("nats-server")?;
    std::fs::copy(&nats_server, standins.join("nats-server"))
        .with_context(|| format!("copying {}", nats_server.display()))?;
    // Debian's Alertmanager and the notification templates it reads from disk.
    let alertmanager = which("prometheus-alertmanager")?;
    std::fs::copy(&alertmanager, standins.join("prometheus-alertmanager"))
        .with_context(|| format!("copying {}", alertmanager.display()))?;
    let templates = standins.join("alertmanager-templates");
    std::fs::create_dir_all(&templates)?;
    for template in ["default.tmpl", "email.tmpl"] {
        let from = Path::new("/usr/share/prometheus/alertmanager").join(template);
        std::fs::copy(&from, templates.join(template))
            .with_context(|| format!("copying {}", from.display()))?;
    }
    for (tag, dockerfile) in [
        ("nats:2.12-alpine", "xtask/standins/nats.Dockerfile"),
        (
            "prom/prometheus:v2.53.4",
            "xtask/standins/prometheus.Dockerfile",
        ),
        (
            "prom/alertmanager:v0.27.0",
            "xtask/standins/alertmanager.Dockerfile",
        ),
    ] {
        let present = docker(&["image", "inspect", tag])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        if !present {
            let dockerfile = root.join(dockerfile);
            run(
                docker(&["build", "-q", "-t", tag, "-f"])
                    .arg(&dockerfile)
                    .arg(&standins),
                &format!("building the stand-in {tag}"),
            )?;
        }
    }
    // bitcoind from the Bitcoin Core the set-up installed (and checked), as a release tarball.
    pack_release(release, false)?;
    let stack = Stack::new(release);
    run(
        &mut stack.compose(&["--profile", "*", "build", "-q"]),
        "docker compose build",
    )?;
    Ok(())
}

/// A release directory (tarball + SHA256SUMS) of the installed bitcoind; `changed`: with a
/// byte appended to bitcoind (the loader ignores it), a different file as an upgrade brings.
fn pack_release(release: &Path, changed: bool) -> Result<()> {
    let bin = workspace_root().join("target/bitcoin-core/30.0/bin");
    let _ = std::fs::remove_dir_all(release);
    let staging = release.join("bitcoin-30.0/bin");
    std::fs::create_dir_all(&staging)?;
    for program in ["bitcoind", "bitcoin-cli"] {
        std::fs::copy(bin.join(program), staging.join(program))
            .with_context(|| format!("copying {program} from {}", bin.display()))?;
    }
    if changed {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(staging.join("bitcoind"))?
            .write_all(b"\0")?;
    }
    let tarball = "bitcoin-30.0-local-x86_64-linux-gnu.tar.gz";
    run(
        Command::new("tar")
            .args(["-czf", tarball, "bitcoin-30.0"])
            .current_dir(release),
        "packing bitcoind",
    )?;
    std::fs::remove_dir_all(release.join("bitcoin-30.0"))?;
    let sums = run(
        Command::new("sha256sum").arg(tarball).current_dir(release),
        "sha256sum",
    )?;
    std::fs::write(release.join("SHA256SUMS"), sums.stdout)?;
    Ok(())
}

fn which(program: &str) -> Result<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin").join(program));
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .chain(cargo_bin)
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{program} is not installed: run cargo xtask setup"))
}

struct Stack {
    release: PathBuf,
    /// Where mined coins go (from the wallet made at the start; mining to it needs no wallet
    /// loaded, which matters after bitcoind restarts).
    payout: std::cell::OnceCell<String>,
}

impl Stack {
    fn new(release: &Path) -> Stack {
        Stack {
            release: release.to_path_buf(),
            payout: std::cell::OnceCell::new(),
        }
    }

    /// `docker compose` on the regtest stack of the test project: images from the host's
    /// binaries and the local tarball, every port on a free one.
    fn compose(&self, args: &[&str]) -> Command {
        let mut command = docker(&["compose", "-p", PROJECT, "-f", "docker-compose.yml"]);
        command.args(args);
        self.env(&mut command);
        command
    }

    fn compose_with(&self, overlay: &str, args: &[&str]) -> Command {
        let mut command = docker(&[
            "compose",
            "-p",
            PROJECT,
            "-f",
            "docker-compose.yml",
            "-f",
            overlay,
        ]);
        command.args(args);
        self.env(&mut command);
        command
    }

    fn env(&self, command: &mut Command) {
        command
            .env("NODESCOPE_BINARIES", "host")
            .env("BITCOIN_SOURCE", "local")
            .env("BITCOIN_RELEASE_DIR", &self.release);
        for port in [
            "NATS_PORT",
            "METRICS_PORT",
            "WEBSOCKET_PORT",
            "CONNECTIVITY_PORT",
            "PROMETHEUS_PORT",
            "ALERTMANAGER_PORT",
            "FLEET_PORT",
            "GRAFANA_PORT",
            "BITCOIN_RPC_PORT",
            "BITCOIN_P2P_PORT",
        ] {
            command.env(port, "0");
        }
    }

    /// Removes every container, network and volume of the test's project, of every profile.
    fn remove(&self) -> Result<()> {
        self.run(&["--profile", "*", "down", "-v", "--remove-orphans"])
            .map(drop)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let output = run(
            &mut self.compose(args),
            &format!("docker compose {}", args.join(" ")),
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The host address a service's port is published on.
    fn published(&self, service: &str, port: u16) -> Result<String> {
        let address = self.run(&["port", service, &port.to_string()])?;
        let address = address.trim().to_string();
        if address.is_empty() {
            bail!("{service}:{port} is not published");
        }
        Ok(address)
    }

    fn cli(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["exec", "-T", "bitcoind", "bitcoin-cli", "-chain=regtest"];
        full.extend_from_slice(args);
        self.run(&full)
    }

    /// Mines `blocks`; returns the new height.
    fn mine(&self, blocks: u32) -> Result<u64> {
        let payout = match self.payout.get() {
            Some(address) => address.clone(),
            None => {
                self.cli(&["createwallet", "nodescope-test"])?;
                let address = self.cli(&["getnewaddress"])?.trim().to_string();
                self.payout.get_or_init(|| address).clone()
            }
        };
        self.cli(&["generatetoaddress", &blocks.to_string(), &payout])?;
        Ok(self.cli(&["getblockcount"])?.trim().parse()?)
    }

    fn container(&self, service: &str) -> Result<String> {
        let id = self.run(&["ps", "-q", service])?;
        let id = id.trim().to_string();
        if id.is_empty() {
            bail!("no container for {service}");
        }
        Ok(id)
    }

    fn inspect(&self, service: &str, format: &str) -> Result<String> {
        let id = self.container(service)?;
        let output = run(
            &mut docker(&["inspect", "-f", format, &id]),
            "docker inspect",
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    fn run_checks(&self) -> Result<()> {
        step(
            "the base stack (nats, bitcoind, extractor) up and healthy",
            || {
                self.run(&["up", "-d", "--wait", "--wait-timeout", "180"])
                    .map(drop)
            },
        )?;
        step(
            "the extractor has exactly the capabilities the file lists",
            || self.check_capabilities(),
        )?;
        self.mine(3)?;
        step(
            "every tool and Prometheus up and healthy (--profile monitoring)",
            || {
                self.run(&[
                    "--profile",
                    "monitoring",
                    "up",
                    "-d",
                    "--wait",
                    "--wait-timeout",
                    "180",
                ])
                .map(drop)
            },
        )?;
        let prometheus = self.published("prometheus", 9090)?;
        let alertmanager = self.published("alertmanager", 9093)?;
        let websocket = self.published("websocket", 47482)?;
        let connectivity = self.published("connectivity-check", 18282)?;
        step(
            "Alertmanager is healthy and Prometheus sends alerts to it",
            || self.check_alertmanager(&prometheus, &alertmanager),
        )?;
        step(
            "the fleet tool follows the node; Prometheus scrapes it",
            || self.check_fleet(&prometheus),
        )?;
        step("the logger's container prints the node's events", || {
            self.mine(1)?;
            wait_for(
                "the logger printing a block of node regtest",
                Duration::from_secs(60),
                || {
                    let logs = self.run(&["logs", "--no-log-prefix", "logger"])?;
                    Ok(logs
                        .lines()
                        .any(|l| l.contains(" regtest validation block_connected ")))
                },
            )
        })?;
        step(
            "Prometheus has the node's block height from the metrics tool",
            || {
                let height = self.mine(0)?;
                self.wait_height(&prometheus, height)
            },
        )?;
        step("the websocket tool serves its page", || {
            let (status, body) = http_get(&websocket, "/")?;
            if status != 200 || !body.contains("<html") {
                bail!("GET / answered {status}: {}", &body[..body.len().min(200)]);
            }
            Ok(())
        })?;
        step("connectivity-check is healthy", || {
            let (status, _) = http_get(&connectivity, "/healthz")?;
            if status != 200 {
                bail!("/healthz answered {status}");
            }
            let health = self.inspect("connectivity-check", "{{.State.Health.Status}}")?;
            if health != "healthy" {
                bail!("its container is {health}");
            }
            Ok(())
        })?;
        step(
            "a tool's profile stops alone; events keep flowing to the others",
            || {
                self.run(&[
                    "--profile",
                    "logger",
                    "up",
                    "-d",
                    "--wait",
                    "--wait-timeout",
                    "60",
                ])?;
                self.run(&["--profile", "logger", "stop", "logger"])?;
                for service in ["nats", "bitcoind", "extractor", "metrics"] {
                    let state = self.inspect(service, "{{.State.Status}}")?;
                    if state != "running" {
                        bail!("{service} is {state} after stopping the logger");
                    }
                }
                let height = self.mine(1)?;
                self.wait_height(&prometheus, height)
            },
        )?;
        step(
            "bitcoind restarted: events resume, the extractor was not restarted",
            || {
                self.without_restarting_the_extractor(|| {
                    self.run(&["restart", "bitcoind"])?;
                    wait_for("bitcoind healthy again", Duration::from_secs(120), || {
                        Ok(self.inspect("bitcoind", "{{.State.Health.Status}}")? == "healthy")
                    })?;
                    let height = self.mine(1)?;
                    self.wait_height(&prometheus, height)
                })
            },
        )?;
        step(
            "bitcoind's image upgraded: the extractor follows the new binary, not restarted",
            || {
                self.without_restarting_the_extractor(|| {
                    let upgrade = self.release.with_file_name("bitcoin-upgrade");
                    pack_release(&upgrade, true)?;
                    for args in [
                        &["build", "-q", "bitcoind"][..],
                        &["up", "-d", "--wait", "--wait-timeout", "120", "bitcoind"],
                    ] {
                        let mut command = self.compose(args);
                        command.env("BITCOIN_RELEASE_DIR", &upgrade);
                        run(
                            &mut command,
                            &format!(
                                "docker compose {} with the upgraded bitcoind",
                                args.join(" ")
                            ),
                        )?;
                    }
                    let height = self.mine(1)?;
                    self.wait_height(&prometheus, height)?;
                    let logs = self.run(&["logs", "--no-log-prefix", "extractor"])?;
                    if !logs.contains("the binary was replaced") {
                        bail!("the extractor did not attach to the upgraded binary:\n{logs}");
                    }
                    Ok(())
                })
            },
        )?;
        step(
            "the SYS_ADMIN fallback attaches with perf-event uprobes",
            || {
                let overlay = "compose/extractor-sys-admin.yml";
                let mut up = self.compose_with(
                    overlay,
                    &["up", "-d", "--wait", "--wait-timeout", "120", "extractor"],
                );
                up.env("NODESCOPE_PERF_LINKS", "true");
                run(
                    &mut up,
                    "docker compose up with compose/extractor-sys-admin.yml",
                )?;
                let logs = self.run(&["logs", "--no-log-prefix", "extractor"])?;
                if !logs.contains("a perf link per probe") {
                    bail!("the extractor did not attach with perf links:\n{logs}");
                }
                let height = self.mine(1)?;
                self.wait_height(&prometheus, height)
            },
        )?;
        step(
            "EXTRACTOR_TYPE=rpc: extractor rpc, with no capability, publishes RPC answers and ZMQ notifications",
            || self.check_rpc_extractor(),
        )?;
        step(
            "EXTRACTOR_TYPE=p2p: extractor p2p, with no capability, is a peer of bitcoind",
            || self.check_p2p_extractor(),
        )?;
        step("down keeps the volumes, down -v removes them", || {
            self.run(&["--profile", "*", "down"])?;
            let volumes = self.volumes()?;
            if !volumes.iter().any(|v| v.ends_with("_bitcoin-data")) {
                bail!("down removed the volumes: {volumes:?}");
            }
            self.run(&["--profile", "*", "down", "-v"])?;
            let left = self.volumes()?;
            if !left.is_empty() {
                bail!("down -v left volumes: {left:?}");
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Runs `work`, then fails if the extractor's container was restarted meanwhile (it must
    /// follow bitcoind by itself).
    fn without_restarting_the_extractor(&self, work: impl FnOnce() -> Result<()>) -> Result<()> {
        let started = self.inspect("extractor", "{{.State.StartedAt}}")?;
        work()?;
        let now = self.inspect("extractor", "{{.State.StartedAt}}")?;
        if now != started {
            bail!("the extractor's container restarted: started {started}, now {now}");
        }
        Ok(())
    }

    fn volumes(&self) -> Result<Vec<String>> {
        let output = run(
            &mut docker(&[
                "volume",
                "ls",
                "-q",
                "--filter",
                &format!("label=com.docker.compose.project={PROJECT}"),
            ]),
            "docker volume ls",
        )?;
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// From the engine's view (CapAdd, CapDrop) and from the kernel's (the process's effective
    /// set in /proc/<pid>/status).
    fn check_capabilities(&self) -> Result<()> {
        let added = self.inspect("extractor", "{{json .HostConfig.CapAdd}}")?;
        let dropped = self.inspect("extractor", "{{json .HostConfig.CapDrop}}")?;
        let mut want: Vec<String> = EXTRACTOR_CAPS
            .iter()
            .map(|(name, _)| format!("CAP_{name}"))
            .collect();
        want.sort();
        let mut have: Vec<String> = serde_like_list(&added)
            .into_iter()
            .map(|c| {
                if c.starts_with("CAP_") {
                    c
                } else {
                    format!("CAP_{c}")
                }
            })
            .collect();
        have.sort();
        if have != want || serde_like_list(&dropped) != ["ALL"] {
            bail!("the extractor's container has CapAdd {added}, CapDrop {dropped}; the file lists {want:?} and ALL");
        }
        let pid = self.inspect("extractor", "{{.State.Pid}}")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let effective = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .context("no CapEff line")?
            .trim();
        let effective = u64::from_str_radix(effective, 16)?;
        let expected = EXTRACTOR_CAPS
            .iter()
            .fold(0u64, |mask, (_, bit)| mask | 1 << bit);
        if effective != expected {
            bail!("the extractor runs with capabilities {effective:#x}, not {expected:#x} (BPF, PERFMON, SYS_PTRACE)");
        }
        Ok(())
    }

    /// The extractor's service recreated with EXTRACTOR_TYPE=rpc: its container has no
    /// capability, a read-only root and its own PID namespace, runs as the image's user with
    /// bitcoind's group, which alone can read the cookie; bitcoind's height (getblockchaininfo)
    /// and a hashblock notification (ZMQ) reach the metrics tool.
    fn check_rpc_extractor(&self) -> Result<()> {
        let mut up = self.compose(&["up", "-d", "--wait", "--wait-timeout", "120", "extractor"]);
        up.env("EXTRACTOR_TYPE", "rpc");
        run(&mut up, "EXTRACTOR_TYPE=rpc docker compose up extractor")?;
        let command = self.inspect("extractor", "{{json .Config.Cmd}}")?;
        if !serde_like_list(&command).starts_with(&["extractor".to_string(), "rpc".to_string()]) {
            bail!("the extractor's container runs {command}, not extractor rpc");
        }
        let added = self.inspect("extractor", "{{json .HostConfig.CapAdd}}")?;
        let dropped = self.inspect("extractor", "{{json .HostConfig.CapDrop}}")?;
        let read_only = self.inspect("extractor", "{{.HostConfig.ReadonlyRootfs}}")?;
        let pid_mode = self.inspect("extractor", "{{.HostConfig.PidMode}}")?;
        if !serde_like_list(&added).is_empty()
            || serde_like_list(&dropped) != ["ALL"]
            || read_only != "true"
            || !pid_mode.is_empty()
        {
            bail!("extractor rpc's container has CapAdd {added}, CapDrop {dropped}, read-only root {read_only}, PID mode {pid_mode:?}; the file says none, ALL, true and its own");
        }
        let pid = self.inspect("extractor", "{{.State.Pid}}")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let (effective, uid) = (field("CapEff:"), field("Uid:"));
        let (gid, groups) = (field("Gid:"), field("Groups:"));
        // Its own group (the engine lists it among the supplementary ones too) and bitcoind's.
        let other_groups = groups
            .iter()
            .any(|g| *g != "10002" && Some(g) != gid.first());
        if effective != ["0000000000000000"]
            || uid.first() != Some(&"10001")
            || !groups.contains(&"10002")
            || other_groups
        {
            bail!("extractor rpc runs with capabilities {effective:?}, uid {uid:?}, gid {gid:?}, groups {groups:?}; expected none, 10001 (nodescope), and its own group and 10002 (bitcoind's) only");
        }
        let cookie = self.run(&[
            "exec",
            "-T",
            "bitcoind",
            "stat",
            "-c",
            "%a %u:%g",
            "/home/bitcoin/.bitcoin/regtest",
            "/home/bitcoin/.bitcoin/regtest/.cookie",
        ])?;
        let modes: Vec<&str> = cookie.lines().collect();
        if modes != ["710 10002:10002", "640 10002:10002"] {
            bail!("the cookie's directory and the cookie are {modes:?}: expected 710 and 640, owned by bitcoin:bitcoin (10002)");
        }
        let metrics = self.published("metrics", 8282)?;
        let mut height = self.mine(1)?;
        let mut last = String::new();
        let mut polls = 0u32;
        let outcome = wait_for(
            "the metrics tool showing bitcoind's height from RPC and a hashblock from ZMQ",
            Duration::from_secs(90),
            || {
                // The first block may come before the ZMQ subscription (a "slow joiner"), and
                // calls are 10 s apart: another block every 5 s until both have arrived.
                polls += 1;
                if polls.is_multiple_of(10) {
                    height = self.mine(1)?;
                }
                let (_, body) = http_get(&metrics, "/metrics")?;
                let blocks = sample(&body, "nodescope_rpc_chain_blocks", &[]);
                let hashblocks = sample(
                    &body,
                    "nodescope_zmq_notifications_total",
                    &["topic=\"hashblock\""],
                );
                last = format!("nodescope_rpc_chain_blocks {blocks:?} (height {height}), hashblock notifications {hashblocks:?}");
                Ok(blocks == Some(height as f64) && hashblocks.is_some_and(|n| n >= 1.0))
            },
        );
        outcome.with_context(|| {
            let logs = self
                .run(&["logs", "--no-log-prefix", "extractor"])
                .unwrap_or_default();
            format!("last seen: {last}; extractor rpc's log:\n{logs}")
        })
    }

    /// The extractor's service recreated with EXTRACTOR_TYPE=p2p: no capability, a read-only
    /// root, its own PID namespace; bitcoind lists it as a peer with nodescope's user agent, and
    /// a block mined reaches the metrics tool as a headers announcement.
    fn check_p2p_extractor(&self) -> Result<()> {
        let mut up = self.compose(&["up", "-d", "--wait", "--wait-timeout", "120", "extractor"]);
        up.env("EXTRACTOR_TYPE", "p2p");
        run(&mut up, "EXTRACTOR_TYPE=p2p docker compose up extractor")?;
        let command = self.inspect("extractor", "{{json .Config.Cmd}}")?;
        if !serde_like_list(&command).starts_with(&["extractor".to_string(), "p2p".to_string()]) {
            bail!("the extractor's container runs {command}, not extractor p2p");
        }
        let added = self.inspect("extractor", "{{json .HostConfig.CapAdd}}")?;
        let dropped = self.inspect("extractor", "{{json .HostConfig.CapDrop}}")?;
        let read_only = self.inspect("extractor", "{{.HostConfig.ReadonlyRootfs}}")?;
        let pid_mode = self.inspect("extractor", "{{.HostConfig.PidMode}}")?;
        if !serde_like_list(&added).is_empty()
            || serde_like_list(&dropped) != ["ALL"]
            || read_only != "true"
            || !pid_mode.is_empty()
        {
            bail!("extractor p2p's container has CapAdd {added}, CapDrop {dropped}, read-only root {read_only}, PID mode {pid_mode:?}; the file says none, ALL, true and its own");
        }
        let peers = self.run(&[
            "exec",
            "-T",
            "bitcoind",
            "bitcoin-cli",
            "-chain=regtest",
            "getpeerinfo",
        ])?;
        if !peers.contains("/nodescope:") {
            bail!("bitcoind does not list extractor p2p among its peers: {peers}");
        }
        let metrics = self.published("metrics", 8282)?;
        let mut polls = 0u32;
        let mut last = String::new();
        let outcome = wait_for(
            "the metrics tool counting a block announcement from extractor p2p",
            Duration::from_secs(90),
            || {
                // The first block after connecting is announced by inv (the node does not know
                // our headers yet), the next ones by headers: a block every 5 s until one is.
                if polls.is_multiple_of(10) {
                    self.mine(1)?;
                }
                polls += 1;
                let (_, body) = http_get(&metrics, "/metrics")?;
                let announced = sample(
                    &body,
                    "nodescope_peer_block_announcements_total",
                    &["msg_type=\"headers\""],
                );
                last = format!("nodescope_peer_block_announcements_total {announced:?}");
                Ok(announced.is_some_and(|n| n >= 1.0))
            },
        );
        outcome.with_context(|| {
            let logs = self
                .run(&["logs", "--no-log-prefix", "extractor"])
                .unwrap_or_default();
            format!("last seen: {last}; extractor p2p's log:\n{logs}")
        })
    }

    /// The fleet tool's container is healthy, and Prometheus has the node's tip from it.
    fn check_fleet(&self, prometheus: &str) -> Result<()> {
        let health = self.inspect("fleet", "{{.State.Health.Status}}")?;
        if health != "healthy" {
            bail!("its container is {health}");
        }
        self.mine(1)?;
        let query = "/api/v1/query?query=nodescope_fleet_tip_height%7Bnode%3D%22regtest%22%7D";
        let mut last = String::new();
        wait_for(
            "Prometheus scraping the node's tip from the fleet tool",
            Duration::from_secs(60),
            || {
                let (_, body) = http_get(prometheus, query)?;
                let found = body.contains("\"job\":\"fleet\"");
                last = body;
                Ok(found)
            },
        )
        .with_context(|| format!("its last answer: {last}"))
    }

    /// Alertmanager's container is healthy and it is ready; Prometheus lists it among its
    /// active Alertmanagers and scrapes it (so the compose network joins them).
    fn check_alertmanager(&self, prometheus: &str, alertmanager: &str) -> Result<()> {
        let health = self.inspect("alertmanager", "{{.State.Health.Status}}")?;
        if health != "healthy" {
            bail!("its container is {health}");
        }
        let (status, body) = http_get(alertmanager, "/-/ready")?;
        if status != 200 {
            bail!("/-/ready answered {status}: {body}");
        }
        let mut last = String::new();
        wait_for(
            "Prometheus listing alertmanager:9093 as active",
            Duration::from_secs(60),
            || {
                let (_, body) = http_get(prometheus, "/api/v1/alertmanagers")?;
                let active = body
                    .split_once("\"activeAlertmanagers\"")
                    .and_then(|(_, rest)| rest.split_once(']'))
                    .is_some_and(|(list, _)| list.contains("//alertmanager:9093/"));
                last = body;
                Ok(active)
            },
        )
        .with_context(|| format!("its last answer: {last}"))?;
        let query = "/api/v1/query?query=up%7Bjob%3D%22alertmanager%22%7D";
        wait_for(
            "Prometheus scraping Alertmanager (up 1)",
            Duration::from_secs(60),
            || {
                let (_, body) = http_get(prometheus, query)?;
                let up = body.contains(",\"1\"]");
                last = body;
                Ok(up)
            },
        )
        .with_context(|| format!("its last answer: {last}"))
    }

    /// Waits until Prometheus's last scrape of the metrics tool shows `height` for node regtest.
    fn wait_height(&self, prometheus: &str, height: u64) -> Result<()> {
        let query = "/api/v1/query?query=nodescope_block_height%7Bnode%3D%22regtest%22%7D";
        let mut last = String::new();
        let outcome = wait_for(
            &format!("Prometheus to report block height {height}"),
            Duration::from_secs(90),
            || {
                let (_, body) = http_get(prometheus, query)?;
                let seen = body.contains(&format!(",\"{height}\"]"));
                last = body;
                Ok(seen)
            },
        );
        outcome.with_context(|| format!("its last answer: {last}"))
    }
}

/// The value of the sample of `name` for node regtest with `labels` in Prometheus's text
/// format, e.g. `nodescope_rpc_chain_blocks{node="regtest"} 104`.
fn sample(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.split_once('}'))
        .find(|(set, _)| {
            let set: Vec<&str> = set.split(',').collect();
            set.contains(&"node=\"regtest\"") && labels.iter().all(|l| set.contains(l))
        })
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// `["A","B"]` (docker inspect's JSON of a string list) as strings.
fn serde_like_list(json: &str) -> Vec<String> {
    json.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|item| item.trim().trim_matches('"').to_string())
        .filter(|item| !item.is_empty() && item != "null")
        .collect()
}

fn wait_for(what: &str, within: Duration, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + within;
    let mut last_error = None;
    loop {
        match ready() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() > deadline {
            match last_error {
                Some(error) => bail!("not {what} within {within:?}: {error:#}"),
                None => bail!("not {what} within {within:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `GET path` from `address` (`127.0.0.1:port`) over plain HTTP/1.0: (status, body).
fn http_get(address: &str, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no HTTP status from {address}{path}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `cargo xtask images`: the nodescope image built from source (toolchain, bpf-linker and the
/// workspace built inside the image) and the bitcoind image (BITCOIN_SOURCE and the other
/// variables of .env apply), timed.
pub fn images() -> Result<()> {
    let started = Instant::now();
    let cacert = std::env::var("NODESCOPE_BUILD_CACERT")
        .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".to_string());
    run(
        docker(&[
            "buildx",
            "build",
            "--load",
            "-t",
            "nodescope:latest",
            "-f",
            "compose/images/nodescope.Dockerfile",
            "--build-arg",
            "BINARIES=source",
            "--secret",
            &format!("id=cacert,src={cacert}"),
            ".",
        ])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit()),
        "building the nodescope image from source",
    )?;
    println!(
        "images: nodescope built from source in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let bitcoind = Instant::now();
    run(
        docker(&["compose", "build", "bitcoind"])
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit()),
        "building the bitcoind image",
    )?;
    println!(
        "images: bitcoind built in {:.0} s; both in {:.0} s",
        bitcoind.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
