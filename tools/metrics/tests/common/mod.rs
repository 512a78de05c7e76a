//! The exporter running against a real nats-server, for the tests.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use clap::Parser;
use nodescope_consumer::testing::{client, http_get, publish, EventSource, NatsServer};
use nodescope_metrics::{serve, Args};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{AttemptingApsCreateTx, ConnectionType, NetMessage, P2pMessage, Peer};

/// The node of the readiness probes (see [`Tool::start`]).
pub const PROBE_NODE: &str = "probe";

pub struct Tool {
    pub nats: NatsServer,
    pub publisher: async_nats::Client,
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Tool {
    /// nats-server, then the exporter (with `extra` flags) on a free port, healthy.
    pub async fn start(extra: &[&str]) -> Tool {
        let nats = NatsServer::start();
        // Port 0: two tests never race for the same "free" port.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let url = nats.url();
        let mut argv = vec!["metrics", "--nats-url", &url];
        argv.extend_from_slice(extra);
        let args = Args::parse_from(argv);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, args, async move {
            let _ = stopped.await;
        }));
        let tool = Tool {
            publisher: client(&nats).await,
            nats,
            base,
            stop: Some(stop),
            task,
        };
        tool.wait_for(|| async { tool.get("/healthz").await.0 == 200 }, "healthy")
            .await;
        // Healthy means connected, not that the server has seen the exporter's subscriptions
        // (after a slow first connection they are sent once connected): probe until an event
        // arrives. A probe only shows in `events_received` of node "probe".
        let mut probes = EventSource::new(PROBE_NODE, 1);
        let probe = || Payload::AttemptingApsCreateTx(AttemptingApsCreateTx::default());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            publish(&tool.publisher, &probes.stamp(probe())).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if tool.scrape().await.contains(r#"node="probe""#) {
                break;
            }
            assert!(Instant::now() < deadline, "the exporter hears no event");
        }
        tool
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{path}", self.base)).await
    }

    pub async fn scrape(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200);
        body
    }

    /// Polls `ready` until it holds (10 s at most).
    pub async fn wait_for<F, Fut>(&self, ready: F, what: &str)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        nodescope_consumer::testing::wait_until(what, Duration::from_secs(10), ready).await;
    }

    /// Stops the exporter; it must end cleanly.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("stops within 5 s")
            .expect("no panic")
            .expect("ends without error");
    }
}

#[allow(unused_imports)] // not every test file reads samples
pub use nodescope_consumer::testing::sample as value;

pub fn peer(id: i64, conn_type: ConnectionType) -> Peer {
    Peer {
        id,
        addr: format!("10.0.0.{id}:8333"),
        conn_type: conn_type as i32,
        conn_type_other: String::new(),
    }
}

/// A P2P message with the body given.
pub fn message(inbound: bool, peer: Peer, msg_type: &str, size: u64, body: Body) -> Payload {
    net(
        inbound,
        peer,
        P2pMessage {
            msg_type: msg_type.into(),
            size,
            body: Some(body),
            ..P2pMessage::default()
        },
    )
}

pub fn net(inbound: bool, peer: Peer, message: P2pMessage) -> Payload {
    let net = NetMessage {
        peer: Some(peer),
        message: Some(message),
    };
    if inbound {
        Payload::InboundMessage(net)
    } else {
        Payload::OutboundMessage(net)
    }
}
