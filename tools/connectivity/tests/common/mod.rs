//! connectivity-check running against a real nats-server, fed announcements as the extractor
//! publishes them, its result events collected from the bus.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use nodescope_connectivity::{serve, Args};
use nodescope_consumer::testing::{client, http_get, publish, wait_until, EventSource, NatsServer};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{
    AddrNetwork, ConnectionType, ConnectivityCheck, Event, NetAddress, NetMessage, P2pAddr,
    P2pMessage, Peer,
};
use prost::Message;

/// The node of the readiness probes (see [`Tool::start`]).
pub const PROBE_NODE: &str = "probe";

pub struct Tool {
    pub nats: NatsServer,
    pub publisher: async_nats::Client,
    pub base: String,
    /// Every result event published so far.
    pub results: Arc<Mutex<Vec<Event>>>,
    source: EventSource,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _collector: tokio::task::JoinHandle<()>,
}

impl Tool {
    /// nats-server, then the tool (with `extra` flags) on a free port, healthy and hearing.
    pub async fn start(extra: &[&str]) -> Tool {
        let nats = NatsServer::start();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let url = nats.url();
        let mut argv = vec!["connectivity-check", "--nats-url", &url];
        argv.extend_from_slice(extra);
        let args = Args::parse_from(argv);
        let publisher = client(&nats).await;
        let results = Arc::new(Mutex::new(Vec::new()));
        let mut subscription = publisher
            .subscribe("nodescope.*.connectivity")
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        let collected = results.clone();
        let collector = tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let event = Event::decode(message.payload).expect("a result event decodes");
                collected.lock().unwrap().push(event);
            }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, args, async move {
            let _ = stopped.await;
        }));
        let mut tool = Tool {
            publisher,
            nats,
            base,
            results,
            source: EventSource::new("node-a", 1),
            stop: Some(stop),
            task,
            _collector: collector,
        };
        tool.wait_for(|| async { tool.get("/healthz").await.0 == 200 }, "healthy")
            .await;
        // Healthy is not yet subscribed at the server: probe with an address that is skipped
        // (port 0) until the skip shows, from node "probe" so that tests' counts stay exact.
        let mut probes = EventSource::new(PROBE_NODE, 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let probe = addr_event(
                &mut probes,
                "regtest",
                peer(1, ConnectionType::Inbound),
                vec![ipv4("1.2.3.4".parse().unwrap(), 0)],
            );
            publish(&tool.publisher, &probe).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if tool.scrape().await.contains(r#"node="probe""#) {
                break;
            }
            assert!(Instant::now() < deadline, "the tool hears no event");
        }
        tool.source = EventSource::new("node-a", 1);
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

    /// Node node-a (chain regtest) receives `addresses` from `peer` in one addrv2.
    pub async fn announce(&mut self, from: Peer, addresses: Vec<NetAddress>) {
        let event = addr_event(&mut self.source, "regtest", from, addresses);
        publish(&self.publisher, &event).await;
    }

    /// Announces every address in gossip-sized messages (10 at most) from an inbound peer.
    pub async fn announce_all(&mut self, addresses: Vec<NetAddress>) {
        for chunk in addresses.chunks(10) {
            self.announce(peer(7, ConnectionType::Inbound), chunk.to_vec())
                .await;
        }
    }

    /// Publishes any event of node-a.
    pub async fn publish(&mut self, payload: Payload, chain: &str) {
        let mut event = self.source.stamp(payload);
        event.chain = chain.to_string();
        publish(&self.publisher, &event).await;
    }

    /// The results so far: (event, its check).
    pub fn results(&self) -> Vec<(Event, ConnectivityCheck)> {
        self.results
            .lock()
            .unwrap()
            .iter()
            .map(|event| match &event.payload {
                Some(Payload::ConnectivityCheck(check)) => (event.clone(), check.clone()),
                other => panic!("not a connectivity check: {other:?}"),
            })
            .collect()
    }

    /// Waits (up to `within`) until `count` results were published; returns them.
    pub async fn wait_results(&self, count: usize, within: Duration) -> Vec<ConnectivityCheck> {
        let what = format!("{count} results published");
        wait_until(&what, within, || async { self.results().len() >= count }).await;
        self.results().into_iter().map(|(_, check)| check).collect()
    }

    /// Polls `ready` until it holds (10 s at most).
    pub async fn wait_for<F, Fut>(&self, ready: F, what: &str)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        wait_until(what, Duration::from_secs(10), ready).await;
    }

    /// Waits until the series `series` reaches `at_least`; returns the scrape.
    pub async fn wait_metric(&self, series: &str, at_least: f64) -> String {
        let what = format!("{series} at {at_least} or more");
        wait_until(&what, Duration::from_secs(15), || async {
            value(&self.scrape().await, series).is_some_and(|v| v >= at_least)
        })
        .await;
        self.scrape().await
    }

    /// Stops the tool; it must end cleanly.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("stops within 5 s")
            .expect("no panic")
            .expect("ends without error");
    }

    /// Whether the tool is still running.
    pub fn running(&self) -> bool {
        !self.task.is_finished()
    }
}

#[allow(unused_imports)] // not every test file reads samples
pub use nodescope_consumer::testing::sample as value;

pub fn peer(id: i64, conn_type: ConnectionType) -> Peer {
    Peer {
        id,
        addr: format!("203.0.113.{id}:8333"),
        conn_type: conn_type as i32,
        conn_type_other: String::new(),
    }
}

/// An inbound addrv2 from `from` to the node of `source`.
pub fn addr_event(
    source: &mut EventSource,
    chain: &str,
    from: Peer,
    addresses: Vec<NetAddress>,
) -> Event {
    let mut event = source.stamp(message(
        true,
        "addrv2",
        Some(Body::Addrv2(P2pAddr { addresses })),
        from,
    ));
    event.chain = chain.to_string();
    event
}

/// A P2P message the node received (`inbound`) or sent to `peer`.
pub fn message(inbound: bool, msg_type: &str, body: Option<Body>, peer: Peer) -> Payload {
    let message = NetMessage {
        peer: Some(peer),
        message: Some(P2pMessage {
            msg_type: msg_type.to_string(),
            body,
            ..P2pMessage::default()
        }),
    };
    if inbound {
        Payload::InboundMessage(message)
    } else {
        Payload::OutboundMessage(message)
    }
}

fn now_s() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

pub fn ipv4(ip: std::net::Ipv4Addr, port: u16) -> NetAddress {
    NetAddress {
        time: now_s() - 3600,
        services: 1 | 8 | 1024,
        network: AddrNetwork::Ipv4 as i32,
        network_id: 1,
        address: ip.to_string(),
        port: u32::from(port),
        ..NetAddress::default()
    }
}

pub fn at(addr: SocketAddr) -> NetAddress {
    match addr {
        SocketAddr::V4(v4) => ipv4(*v4.ip(), v4.port()),
        SocketAddr::V6(v6) => NetAddress {
            network: AddrNetwork::Ipv6 as i32,
            network_id: 2,
            address: v6.ip().to_string(),
            port: u32::from(v6.port()),
            ..ipv4(std::net::Ipv4Addr::UNSPECIFIED, 0)
        },
    }
}

pub fn named(network: AddrNetwork, name: &str, port: u16) -> NetAddress {
    NetAddress {
        network: network as i32,
        network_id: match network {
            AddrNetwork::Torv3 => 4,
            AddrNetwork::I2p => 5,
            _ => 0,
        },
        address: name.to_string(),
        port: u32::from(port),
        ..ipv4(std::net::Ipv4Addr::UNSPECIFIED, 0)
    }
}
