//! A real Prometheus (the Debian package's binary) scrapes the exporter every second; a PromQL
//! query through its HTTP API returns what the exporter counted.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Tool;
use nodescope_consumer::testing::{free_port, http_get, publish, EventSource};
use nodescope_proto::event::Payload;
use nodescope_proto::MempoolAdded;

/// Stops (and reaps) the Prometheus this test started, however the test ends.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Percent-encodes a query string value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn prometheus_scrapes_the_exporter_and_answers_promql() {
    let tool = Tool::start(&[]).await;
    let mut run = EventSource::new("node-a", 1);
    for vsize in [100, 200, 300] {
        let added = Payload::MempoolAdded(MempoolAdded {
            txid: vec![1; 32],
            vsize,
            fee: 1000,
        });
        publish(&tool.publisher, &run.stamp(added)).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let target = tool.base.trim_start_matches("http://");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: nodescope\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus; xtask/setup.sh installs it)"),
    );

    let query = r#"sum(nodescope_mempool_added_total{node="node-a",job="nodescope"})"#;
    let url = format!("http://{web}/api/v1/query?query={}", encode(query));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        // Connection refused while Prometheus starts: keep asking.
        if tokio::net::TcpStream::connect(&web).await.is_ok() {
            let (status, body) = http_get(&url).await;
            // {"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[<time>,"3"]}]}}
            if status == 200 && body.contains(r#""value":["#) {
                assert!(body.ends_with(r#","3"]}]}}"#), "{body}");
                break;
            }
            last = format!("{status} {body}");
        }
        assert!(Instant::now() < deadline, "no answer within 60 s: {last}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tool.stop().await;
}
