//! A server that refuses the credentials is told apart from one that cannot be reached.

use std::time::Duration;

use clap::Parser;
use nodescope_bus::test_server::{free_port, NatsServer};
use nodescope_bus::{Link, NatsArgs};

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    nats: NatsArgs,
}

fn nats_args(args: &[&str]) -> NatsArgs {
    Flags::parse_from(std::iter::once("test").chain(args.iter().copied())).nats
}

/// The link once `done` holds for it, within 10 s.
async fn link_when(connection: &nodescope_bus::Connection, done: impl Fn(&Link) -> bool) -> Link {
    let mut link = connection.watch_link();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let now = *link.borrow_and_update();
            if done(&now) {
                return now;
            }
            link.changed().await.expect("the client lives");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the link never got there: {:?}", *link.borrow()))
}

const AUTHORIZATION: &str = "authorization { user: alice, password: right }";

#[tokio::test]
async fn refused_credentials_are_reported_as_refused_and_name_the_credential() {
    let server = NatsServer::start_with(AUTHORIZATION);
    let url = server.url();
    let wrong = nats_args(&[
        "--nats-url",
        &url,
        "--nats-user",
        "alice",
        "--nats-password",
        "wrong",
    ]);
    assert!(
        wrong.credential().contains("user \"alice\""),
        "{}",
        wrong.credential()
    );
    assert!(wrong.credential().contains("NODESCOPE_NATS_USER"));
    let connection = wrong.connect("test").await.expect("connect starts");
    let link = link_when(&connection, |link| link.refused).await;
    assert_eq!(link.connects, 0, "a refused client never connected");

    let right = nats_args(&[
        "--nats-url",
        &url,
        "--nats-user",
        "alice",
        "--nats-password",
        "right",
    ]);
    let connection = right.connect("test").await.expect("connect starts");
    let link = link_when(&connection, |link| link.up).await;
    assert!(!link.refused);

    let anonymous = nats_args(&["--nats-url", &url]);
    assert!(anonymous.credential().starts_with("no credentials"));
    let connection = anonymous.connect("test").await.expect("connect starts");
    link_when(&connection, |link| link.refused).await;
}

#[tokio::test]
async fn an_unreachable_server_is_not_a_refusal() {
    let args = nats_args(&["--nats-url", &format!("nats://127.0.0.1:{}", free_port())]);
    let connection = args.connect("test").await.expect("connect starts");
    let link = link_when(&connection, |link| link.failed_attempts >= 2).await;
    assert!(!link.refused && !link.up);
}
