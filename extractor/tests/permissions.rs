//! NATS credentials without permission on the inbox that confirms publishing: the extractor
//! stops with an error naming the permission (never publishes on, unconfirmed, in silence), and
//! `--nats-inbox-prefix` lets it confirm through a prefix the user may use.

mod common;

use std::time::Duration;

use common::bus::Collected;
use common::{private_binary, start_extractor};
use nodescope_bus::test_server::NatsServer;
use nodescope_proto::event::Payload;

const NODE: &str = "permissions";

/// Two users: `collector` (also whoever presents no credentials) may do anything; `extractor`
/// may publish anywhere but subscribe only to `nodescope_inbox.>`, not to `_INBOX.>`.
const CONFIG: &str = r#"
no_auth_user: collector
authorization {
  users = [
    { user: collector, password: pw }
    { user: extractor, password: pw, permissions: {
        publish: ">"
        subscribe: { allow: ["nodescope_inbox.>"] }
    } }
  ]
}
"#;

fn args(binary: &str, url: &str, extra: &[&str]) -> Vec<String> {
    [
        "ebpf",
        "--bitcoind-path",
        binary,
        "--nats-url",
        url,
        "--node-id",
        NODE,
        "--nats-user",
        "extractor",
        "--nats-password",
        "pw",
        "--stats-interval",
        "1",
        "--tracepoints",
        "net:inbound_message",
    ]
    .iter()
    .chain(extra)
    .map(|arg| arg.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_permission_on_the_inbox_it_stops_naming_the_permission() {
    let server = NatsServer::start_with(CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let extractor = start_extractor(&args(binary.to_str().unwrap(), &server.url(), &[]));
    let ended = tokio::time::timeout(Duration::from_secs(30), extractor.ended())
        .await
        .expect("the extractor stops on its own");
    let error = ended.expect_err("it stops with an error").to_string();
    assert!(error.contains("\"_INBOX.>\""), "{error}");
    assert!(error.contains("--nats-inbox-prefix"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_prefix_the_user_may_use_confirms_publishing() {
    let server = NatsServer::start_with(CONFIG);
    let bus = Collected::start(&server.url(), NODE).await;
    let dir = tempfile::tempdir().unwrap();
    let binary = private_binary(dir.path(), "bitcoind-sim");
    let mut extractor = start_extractor(&args(
        binary.to_str().unwrap(),
        &server.url(),
        &["--nats-inbox-prefix", "nodescope_inbox"],
    ));
    let output = extractor
        .alongside(
            tokio::process::Command::new(&binary)
                .args([
                    "--wait-for-tracer",
                    "net:inbound_message",
                    "load",
                    "--mix",
                    "ping=1",
                    "--count",
                    "100",
                ])
                .output(),
        )
        .await
        .unwrap();
    assert!(output.status.success());
    // Confirmed: the stats count all 100 as published.
    extractor
        .alongside(bus.stats_when(|s| s.published == 100))
        .await;
    let messages = bus
        .events()
        .iter()
        .filter(|e| matches!(e.payload, Some(Payload::InboundMessage(_))))
        .count();
    assert_eq!(messages, 100);
    extractor.stop().await.unwrap();
}
