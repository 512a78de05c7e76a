//! Which node a traced process is. One binary can run several nodes at once (mainnet and signet
//! of one install, two regtest nodes): the extractor tells their events apart by process, and
//! names each process's node by its chain and data directory, read from the process itself
//! (its command line and its `bitcoin.conf`), the way bitcoind reads them.

use std::path::{Path, PathBuf};

use bitcoin::hashes::{sha256, Hash as _};

/// What a bitcoind process says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// Bitcoin Core's chain name: `main`, `test`, `testnet4`, `signet` or `regtest`.
    pub chain: String,
    /// `-datadir` as the process resolved it (absolute, within the process's root), if given.
    pub datadir: Option<PathBuf>,
}

impl ProcessIdentity {
    /// Reads `/proc/<pid>`: the command line, then the configuration file it names (or the one
    /// in its data directory). `None` once the process is gone.
    pub fn of_process(pid: u32) -> Option<ProcessIdentity> {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .skip(1)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|_| "/".into());
        // Paths inside a container are read through its root.
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let options = Options::parse(args.iter().map(String::as_str));
        let datadir = options.datadir.as_deref().map(|d| absolute(&cwd, d));
        let conf = match options.conf.as_deref() {
            Some(conf) => Some(absolute(datadir.as_deref().unwrap_or(&cwd), conf)),
            None => datadir.as_ref().map(|d| d.join("bitcoin.conf")),
        };
        let from_file = conf
            .and_then(|path| std::fs::read_to_string(within(&root, &path)).ok())
            .map(|text| Options::parse_conf(&text))
            .unwrap_or_default();
        Some(ProcessIdentity {
            chain: options
                .chain
                .or(from_file.chain)
                .unwrap_or_else(|| "main".to_string()),
            datadir: datadir.or_else(|| from_file.datadir.map(|d| absolute(&cwd, &d))),
        })
    }

    /// `<prefix>-<chain>`, and a short hash of the data directory when one was given: the same
    /// across restarts of the node, different for two nodes of one chain.
    pub fn node_id(&self, prefix: &str) -> String {
        match &self.datadir {
            None => format!("{prefix}-{}", self.chain),
            Some(datadir) => {
                let digest = sha256::Hash::hash(datadir.as_os_str().as_encoded_bytes());
                let short: String = digest.to_string().chars().take(8).collect();
                format!("{prefix}-{}-{short}", self.chain)
            }
        }
    }
}

fn absolute(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn within(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The options that decide a node's identity, as bitcoind reads them: the last one given wins,
/// `-noX` and `-X=0` turn a flag off.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    chain: Option<String>,
    datadir: Option<String>,
    conf: Option<String>,
}

impl Options {
    fn parse<'a>(args: impl Iterator<Item = &'a str>) -> Options {
        let mut options = Options::default();
        for arg in args {
            let Some(arg) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                continue;
            };
            let (name, value) = arg.split_once('=').unwrap_or((arg, "1"));
            options.set(name, value);
        }
        options
    }

    /// The top of a `bitcoin.conf`: options before the first `[section]` apply to every chain.
    fn parse_conf(text: &str) -> Options {
        let mut options = Options::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.starts_with('[') {
                break;
            }
            if let Some((name, value)) = line.split_once('=') {
                options.set(name.trim(), value.trim());
            }
        }
        options
    }

    fn set(&mut self, name: &str, value: &str) {
        let (name, on) = match name.strip_prefix("no") {
            Some(flag) if CHAIN_FLAGS.iter().any(|(f, _)| *f == flag) => (flag, false),
            _ => (name, value != "0"),
        };
        if let Some((_, chain)) = CHAIN_FLAGS.iter().find(|(flag, _)| *flag == name) {
            if on {
                self.chain = Some(chain.to_string());
            } else if self.chain.as_deref() == Some(chain) {
                self.chain = None;
            }
            return;
        }
        match name {
            "chain" => self.chain = Some(value.to_string()),
            "datadir" => self.datadir = Some(value.to_string()),
            "conf" => self.conf = Some(value.to_string()),
            _ => {}
        }
    }
}

/// The chain flags and the chain each selects.
const CHAIN_FLAGS: &[(&str, &str)] = &[
    ("regtest", "regtest"),
    ("testnet", "test"),
    ("testnet4", "testnet4"),
    ("signet", "signet"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Options {
        Options::parse(args.split_whitespace())
    }

    #[test]
    fn chain_flags_and_chain_option() {
        assert_eq!(parse("-regtest").chain.as_deref(), Some("regtest"));
        assert_eq!(parse("--signet=1").chain.as_deref(), Some("signet"));
        assert_eq!(parse("-testnet").chain.as_deref(), Some("test"));
        assert_eq!(parse("-chain=testnet4").chain.as_deref(), Some("testnet4"));
        assert_eq!(parse("-regtest -noregtest").chain, None);
        assert_eq!(parse("-regtest=0").chain, None);
        assert_eq!(parse("-server -txindex").chain, None);
    }

    #[test]
    fn datadir_and_conf() {
        let options = parse("-datadir=/srv/btc -conf=node.conf -printtoconsole");
        assert_eq!(options.datadir.as_deref(), Some("/srv/btc"));
        assert_eq!(options.conf.as_deref(), Some("node.conf"));
    }

    #[test]
    fn a_conf_file_counts_only_before_its_sections() {
        let options = Options::parse_conf("# comment\nsignet=1 # mine\n[main]\nregtest=1\n");
        assert_eq!(options.chain.as_deref(), Some("signet"));
    }

    #[test]
    fn node_ids_differ_by_chain_and_datadir_and_not_by_restart() {
        let node = |chain: &str, datadir: Option<&str>| ProcessIdentity {
            chain: chain.to_string(),
            datadir: datadir.map(PathBuf::from),
        };
        assert_eq!(node("main", None).node_id("host"), "host-main");
        let a = node("regtest", Some("/tmp/a")).node_id("host");
        let b = node("regtest", Some("/tmp/b")).node_id("host");
        assert_ne!(a, b);
        assert!(a.starts_with("host-regtest-") && a.len() == "host-regtest-".len() + 8);
        assert_eq!(a, node("regtest", Some("/tmp/a")).node_id("host"));
    }

    #[test]
    fn this_process_reads_as_mainnet() {
        let identity = ProcessIdentity::of_process(std::process::id()).unwrap();
        assert_eq!(identity.chain, "main");
        assert!(ProcessIdentity::of_process(u32::MAX).is_none());
    }
}
