//! For tool tests: events stamped and published exactly as an extractor publishes them (subject
//! `<prefix>.<node>.<category>`, sequence per run and category from 0, by the same envelope),
//! and tool arguments pointing at a test server.

use clap::Parser;
use nodescope_proto::event::Payload;
use nodescope_proto::{subjects, Category, Event, ExtractorKind};
use nodescope_publish::Envelope;
use prost::Message;

use crate::ConsumerArgs;

pub use nodescope_bus::test_server::{free_port, NatsServer};

/// One extractor run of one node: its events numbered by the extractors' own envelope.
pub struct EventSource {
    envelope: Envelope,
}

impl EventSource {
    /// An eBPF extractor's run.
    pub fn new(node: &str, run_id: u64) -> EventSource {
        EventSource::of(ExtractorKind::Ebpf, node, run_id)
    }

    /// A run of another kind of publisher.
    pub fn of(kind: ExtractorKind, node: &str, run_id: u64) -> EventSource {
        let envelope = Envelope::new(subjects::DEFAULT_PREFIX, node, "", kind, run_id)
            .unwrap_or_else(|error| panic!("a test node id: {error}"));
        EventSource { envelope }
    }

    /// The next event of this run carrying `payload`, timestamped now.
    pub fn stamp(&mut self, payload: Payload) -> Event {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        self.envelope.wrap(4242, now, payload).1
    }

    /// Skips `count` numbers of `category`, as if those events were lost.
    pub fn lose(&mut self, category: Category, count: u64) {
        self.envelope.skip(category, count);
    }
}

/// Publishes `event` on its subject under the default prefix.
pub async fn publish(client: &async_nats::Client, event: &Event) {
    let category = event.category().expect("a payload");
    let subject = subjects::subject(subjects::DEFAULT_PREFIX, &event.node_id, category).unwrap();
    client
        .publish(subject, event.encode_to_vec().into())
        .await
        .expect("publish");
}

/// A plain client of the test server, for publishing.
pub async fn client(server: &NatsServer) -> async_nats::Client {
    async_nats::connect(server.url()).await.expect("connect")
}

/// Consumer flags pointing at `url`, then more consumer flags (`--nodes a,b`).
pub fn consumer_args(url: &str, extra: &[&str]) -> ConsumerArgs {
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ConsumerArgs,
    }
    let mut argv = vec!["tool", "--nats-url", url];
    argv.extend_from_slice(extra);
    Wrapper::parse_from(argv).args
}

/// `GET url` (`http://host:port/path`, plain HTTP) → (status, body). HTTP/1.1 (Chromium's
/// DevTools server ignores 1.0) with `Connection: close`; the body is `Content-Length` bytes,
/// or all that follows the headers without one (a chunked body is refused). Panics on a
/// connection error (a test failure).
pub async fn http_get(url: &str) -> (u16, String) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .unwrap_or_else(|error| panic!("connecting to {host}: {error}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.expect("receive") == 0 {
            panic!("no end of headers in {head:?}");
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let status = head
        .first()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let header = |name: &str| {
        head.iter().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        // Go servers (Prometheus, Alertmanager) chunk longer answers.
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await.expect("a chunk size");
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .unwrap_or_else(|_| panic!("a bad chunk size {size:?}"));
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.expect("a whole chunk");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
        return (status, String::from_utf8_lossy(&body).into_owned());
    }
    match header("content-length").and_then(|length| length.parse::<usize>().ok()) {
        Some(length) => {
            body.resize(length, 0);
            reader.read_exact(&mut body).await.expect("the whole body");
        }
        None => {
            reader.read_to_end(&mut body).await.expect("receive");
        }
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Polls `ready` every 20 ms until it holds; fails the test naming `what` after `within`.
pub async fn wait_until<F, Fut>(what: &str, within: std::time::Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    poll_for(what, within, async || {
        if ready().await {
            Ok(())
        } else {
            Err(String::new())
        }
    })
    .await
}

/// Polls `poll` every 20 ms until it gives a value; fails the test naming `what` and the last
/// reason `poll` gave for not having one after `within`.
pub async fn poll_for<T>(
    what: &str,
    within: std::time::Duration,
    mut poll: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        let why_not = match poll().await {
            Ok(value) => return value,
            Err(why_not) => why_not,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "not {what} within {within:?}{}{why_not}",
            if why_not.is_empty() { "" } else { ": " }
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The value of the sample `series` (`name{labels}` exactly as exposed) in a scrape.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().expect("a number"))
    })
}

/// Runs `promtool check metrics` (Debian's prometheus package; `cargo xtask setup` installs
/// it) on a scrape and fails the test with what it said unless it said nothing.
pub fn assert_promtool_clean(scrape: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; xtask/setup.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

/// A process's peak resident memory (VmHWM), KiB; 0 when it cannot be read.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU of a process, from /proc/<pid>/stat (fields 14 and 15, in clock ticks).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / per_second
}
