//! The ground truth: one JSON object per line per fired tracepoint, in firing order. This format
//! is a contract with the extractor's tests; change it only together with them.
//!
//! `{"seq":0,"pid":1234,"tid":1234,"ts_ns":1732200000000000000,"tracepoint":"net:inbound_message",
//!   "args":[{"int":3},{"str":"127.0.0.1:18444"},{"str":"inbound"},{"str":"version"},{"int":102},
//!   {"bytes":"80110100..."}]}`
//!
//! A pointer argument the simulator made unreadable on purpose (the `unreadable` scenario) is
//! `{"unreadable":16}`: its raw address.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context as _;
use extractor_common::{ArgKind, ArgValue, Tracepoint};
use serde::{Deserialize, Serialize};

use crate::probes::Arg;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TruthRecord {
    /// Fired events of this process, counted from 0.
    pub seq: u64,
    pub pid: u32,
    pub tid: u32,
    /// CLOCK_REALTIME just before the probe, in ns.
    pub ts_ns: u64,
    /// `provider:name`.
    pub tracepoint: String,
    /// One per tracepoint argument, as the tracer sees it.
    pub args: Vec<TruthArg>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TruthArg {
    /// Any integer argument (i64 and u64 both exact); bools are 0/1.
    Int(i128),
    /// A C string, without its NUL.
    Str(String),
    /// What a pointer argument points to (payload or 32-byte hash, memory order), lowercase hex.
    Bytes(#[serde(with = "hex_bytes")] Vec<u8>),
    /// A pointer argument (string, hash or payload) whose target cannot be read: its raw address.
    /// A tracer sees the pointer but none of what it points to.
    Unreadable(u64),
}

impl TruthArg {
    pub fn from_arg(arg: &Arg<'_>) -> TruthArg {
        match arg {
            Arg::Int(v) => TruthArg::Int(*v),
            Arg::Str(s) => TruthArg::Str(String::from_utf8_lossy(s.to_bytes()).into_owned()),
            Arg::Bytes(b) => TruthArg::Bytes(b.to_vec()),
            Arg::Unreadable(address) => TruthArg::Unreadable(*address as u64),
        }
    }

    pub fn as_int(&self) -> Option<i128> {
        match self {
            TruthArg::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            TruthArg::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            TruthArg::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The raw address of an unreadable pointer argument.
    pub fn as_unreadable(&self) -> Option<u64> {
        match self {
            TruthArg::Unreadable(address) => Some(*address),
            _ => None,
        }
    }
}

impl TruthRecord {
    /// The arguments as a tracer reads them, typed by the catalogue: what the extractor must
    /// produce for this firing.
    pub fn arg_values(&self) -> Vec<ArgValue> {
        let kinds = self.tracepoint().map(|tp| tp.args()).unwrap_or(&[]);
        self.args
            .iter()
            .enumerate()
            .map(|(i, arg)| match (arg, kinds.get(i)) {
                (TruthArg::Int(v), Some(ArgKind::I64 | ArgKind::I32)) => {
                    ArgValue::Signed(*v as i64)
                }
                (TruthArg::Int(v), Some(ArgKind::Bool)) => ArgValue::Bool(*v != 0),
                (TruthArg::Int(v), _) => ArgValue::Unsigned(*v as u64),
                (TruthArg::Str(s), _) => ArgValue::Str {
                    bytes: s.as_bytes().to_vec(),
                    truncated: false,
                },
                (TruthArg::Bytes(b), Some(ArgKind::Hash32)) => {
                    match <[u8; 32]>::try_from(b.as_slice()) {
                        Ok(hash) => ArgValue::Hash(hash),
                        Err(_) => ArgValue::Bytes(b.clone()),
                    }
                }
                (TruthArg::Bytes(b), _) => ArgValue::Bytes(b.clone()),
                (TruthArg::Unreadable(address), _) => ArgValue::Pointer(*address),
            })
            .collect()
    }

    /// The tracepoint, if the name is one of the catalogue's.
    pub fn tracepoint(&self) -> Option<Tracepoint> {
        let (provider, name) = self.tracepoint.split_once(':')?;
        Tracepoint::from_provider_name(provider, name)
    }
}

/// Reads a ground-truth file written by the simulator.
pub fn read_truth(path: impl AsRef<Path>) -> anyhow::Result<Vec<TruthRecord>> {
    let path = path.as_ref();
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: bad truth record", path.display(), i + 1))?;
        records.push(record);
    }
    Ok(records)
}

/// Buffered truth writer. The first I/O error is kept and reported by [`TruthWriter::finish`], so
/// that emitting events does not need error plumbing.
pub struct TruthWriter {
    out: BufWriter<Box<dyn Write + Send>>,
    pid: u32,
    tid: u32,
    error: Option<io::Error>,
}

impl TruthWriter {
    /// `"-"` is stdout.
    pub fn create(path: &str) -> anyhow::Result<TruthWriter> {
        let sink: Box<dyn Write + Send> = if path == "-" {
            Box::new(io::stdout())
        } else {
            Box::new(File::create(path).with_context(|| format!("creating truth file {path}"))?)
        };
        Ok(TruthWriter::new(sink))
    }

    pub fn new(sink: Box<dyn Write + Send>) -> TruthWriter {
        // SAFETY: getpid/gettid cannot fail. The simulator emits from its main thread only.
        let (pid, tid) = unsafe { (libc::getpid() as u32, libc::gettid() as u32) };
        TruthWriter {
            out: BufWriter::with_capacity(1 << 20, sink),
            pid,
            tid,
            error: None,
        }
    }

    pub fn record(&mut self, seq: u64, ts_ns: u64, tp: Tracepoint, args: &[Arg<'_>]) {
        if self.error.is_some() {
            return;
        }
        let record = TruthRecord {
            seq,
            pid: self.pid,
            tid: self.tid,
            ts_ns,
            tracepoint: tp.to_string(),
            args: args.iter().map(TruthArg::from_arg).collect(),
        };
        let result = serde_json::to_writer(&mut self.out, &record)
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = result {
            self.error = Some(e);
        }
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e).context("writing the truth file");
        }
        self.out.flush().context("flushing the truth file")
    }
}

mod hex_bytes {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            hex.push(DIGITS[(b >> 4) as usize] as char);
            hex.push(DIGITS[(b & 0xf) as usize] as char);
        }
        s.serialize_str(&hex)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let hex = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let hex = hex.as_bytes();
        if hex.len() % 2 != 0 {
            return Err(D::Error::custom("odd-length hex string"));
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(D::Error::custom("bytes must be lowercase hex")),
        };
        hex.chunks_exact(2)
            .map(|p| Ok(nibble(p[0])? << 4 | nibble(p[1])?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_with_exact_64_bit_integers() {
        let line = r#"{"seq":0,"pid":1234,"tid":1234,"ts_ns":1732200000000000000,"tracepoint":"net:inbound_message","args":[{"int":-9223372036854775808},{"int":18446744073709551615},{"str":"127.0.0.1:18444"},{"bytes":"7f1101ff"}]}"#;
        let record: TruthRecord = serde_json::from_str(line).unwrap();
        assert_eq!(record.args[0], TruthArg::Int(i64::MIN as i128));
        assert_eq!(record.args[1], TruthArg::Int(u64::MAX as i128));
        assert_eq!(
            record.args[3],
            TruthArg::Bytes(vec![0x7f, 0x11, 0x01, 0xff])
        );
        assert_eq!(record.tracepoint(), Some(Tracepoint::NetInboundMessage));
        assert_eq!(serde_json::to_string(&record).unwrap(), line);
    }

    #[test]
    fn unreadable_pointers_round_trip_and_are_bare_pointers() {
        let line = r#"{"seq":1,"pid":1234,"tid":1234,"ts_ns":1732200000000000000,"tracepoint":"mempool:added","args":[{"unreadable":16},{"int":141},{"int":1410}]}"#;
        let record: TruthRecord = serde_json::from_str(line).unwrap();
        assert_eq!(record.args[0], TruthArg::Unreadable(16));
        assert_eq!(record.args[0].as_unreadable(), Some(16));
        assert_eq!(
            record.arg_values(),
            vec![
                ArgValue::Pointer(16),
                ArgValue::Signed(141),
                ArgValue::Signed(1410)
            ]
        );
        assert_eq!(serde_json::to_string(&record).unwrap(), line);
        assert_eq!(
            TruthArg::from_arg(&Arg::Unreadable(0x10)),
            TruthArg::Unreadable(16)
        );
    }

    #[test]
    fn uppercase_or_odd_hex_is_rejected() {
        for bad in [r#"{"bytes":"7F"}"#, r#"{"bytes":"7"}"#] {
            assert!(serde_json::from_str::<TruthArg>(bad).is_err(), "{bad}");
        }
    }
}
