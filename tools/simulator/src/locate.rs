//! Finding (and if needed building) the simulator binaries from tests, in this crate or others.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{bail, Context as _};

const SIMULATOR_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Path of binary `name` (`bitcoind-sim` or `bitcoind-sim-legacy`) for the running test's
/// profile: `<target>/<profile>/<name>` if it is newer than the simulator's sources, else built
/// with `cargo build -p simulator` into `<target>/nodescope-sim` (a separate target directory,
/// because the outer `cargo test` still holds the lock on its own).
pub fn binary_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let mut profile_dir = exe.parent().context("executable has no directory")?;
    if profile_dir.ends_with("deps") {
        profile_dir = profile_dir.parent().context("deps/ has no parent")?;
    }
    let candidate = profile_dir.join(name);
    if is_fresh(&candidate) {
        return Ok(candidate);
    }
    let target_dir = profile_dir
        .parent()
        .context("profile directory has no parent")?;
    let nested = target_dir.join("nodescope-sim");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(p) => p.to_string(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "simulator",
            "--bin",
            name,
            "--profile",
            &profile,
        ])
        .arg("--manifest-path")
        .arg(Path::new(SIMULATOR_DIR).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&nested)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .with_context(|| format!("running {cargo:?} build -p simulator"))?;
    if !status.success() {
        bail!("cargo build -p simulator --bin {name} failed ({status})");
    }
    let dir_name = if profile == "dev" { "debug" } else { &profile };
    let built = nested.join(dir_name).join(name);
    if !built.exists() {
        bail!(
            "cargo built the simulator but {} does not exist",
            built.display()
        );
    }
    Ok(built)
}

/// Exists and is newer than every source file of the simulator (so a stale binary is rebuilt).
fn is_fresh(binary: &Path) -> bool {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else {
        return false;
    };
    let root = Path::new(SIMULATOR_DIR);
    let newest = ["Cargo.toml", "build.rs", "src", "c"]
        .iter()
        .map(|p| newest_mtime(&root.join(p)))
        .max()
        .flatten();
    newest.is_none_or(|src| src <= built)
}

fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = path.metadata().ok()?;
    if meta.is_dir() {
        std::fs::read_dir(path)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| newest_mtime(&e.path()))
            .max()
    } else {
        meta.modified().ok()
    }
}
