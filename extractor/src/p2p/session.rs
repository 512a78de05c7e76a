//! One connection with the node, as a well-behaved peer: the handshake (version with honest
//! services and our user agent, wtxidrelay, sendaddrv2, verack, then sendheaders, sendcmpct and
//! feefilter), answers to ping and getheaders, requests for announced transactions, and our own
//! timestamped pings. Everything the node sends becomes an event.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitcoin::p2p::address::Address;
use bitcoin::p2p::ServiceFlags;
use nodescope_proto::event::Payload;
use nodescope_proto::p2p::{decode_p2p_owned, wire, DecodeOptions};
use nodescope_proto::{
    p2p_message::Body, InventoryType, P2pVersion, PeerConnection, PeerMessage, PeerPing, PeerState,
};
use tokio::sync::mpsc;

use super::transport::{Connection, Received, WireError};
use super::Emitted;

/// `/nodescope:<version>/`.
pub fn user_agent() -> String {
    format!("/nodescope:{}/", env!("CARGO_PKG_VERSION"))
}

/// Settings every session shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub magic: [u8; 4],
    pub ping_interval: Duration,
    /// A node that sends nothing (not even a ping) for this long is gone.
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Ask for every transaction the node announces (to see it sent).
    pub request_transactions: bool,
    /// Offer BIP324 (services say so).
    pub v2: bool,
    pub decode: DecodeOptions,
}

/// Where a session's events go: the node it is, once known.
pub trait Route: Send + Sync {
    /// The node id for a connection whose node sent `version` (`None` before).
    fn node_of(
        &self,
        remote: SocketAddr,
        local: SocketAddr,
        version: Option<&P2pVersion>,
    ) -> String;
}

/// Which connection it is, between which addresses, and how it came about.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Counting from 1 per run.
    pub id: u64,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub node_dialled: bool,
    /// Failed attempts before this one (--connect).
    pub retries: u32,
}

impl Link {
    /// The connection's record, in `state`.
    pub fn record(&self, state: PeerState) -> PeerConnection {
        PeerConnection {
            state: state as i32,
            connection: self.id,
            node_dialled: self.node_dialled,
            remote: self.remote.to_string(),
            local: self.local.to_string(),
            retries: self.retries,
            ..PeerConnection::default()
        }
    }
}

/// Runs one connection to its end; every event is sent with the node id the route gives.
pub async fn run(
    mut connection: Connection,
    link: Link,
    config: &SessionConfig,
    route: &dyn Route,
    events: &mpsc::Sender<Emitted>,
) -> PeerState {
    let Link {
        id, remote, local, ..
    } = link;
    let started = Instant::now();
    let mut record = PeerConnection {
        transport: connection.transport().to_string(),
        ..link.record(PeerState::Unspecified)
    };
    let mut session = Session {
        id,
        config,
        pings: HashMap::new(),
        last_of_type: HashMap::new(),
        version: None,
        verack: false,
        node: route.node_of(remote, local, None),
    };
    let outcome = session
        .handshake(&mut connection, remote, local, events, route)
        .await;
    let reason = match outcome {
        Err(e) => {
            tracing::warn!(node = %session.node, %remote, connection = id, "connection failed: {e}");
            record.state = PeerState::Failed as i32;
            record.reason = e.to_string();
            record.version = session.version.clone();
            let _ = emit(
                events,
                &session.node,
                Payload::PeerConnection(record),
                String::new(),
            )
            .await;
            return PeerState::Failed;
        }
        Ok(()) => {
            tracing::info!(
                node = %session.node,
                %remote,
                connection = id,
                transport = connection.transport(),
                user_agent = session.version.as_ref().map_or("", |v| v.user_agent.as_str()),
                "connected"
            );
            record.state = PeerState::Connected as i32;
            record.version = session.version.clone();
            if emit(
                events,
                &session.node,
                Payload::PeerConnection(record.clone()),
                String::new(),
            )
            .await
            .is_err()
            {
                return PeerState::Disconnected;
            }
            session.serve(&mut connection, events).await
        }
    };
    tracing::info!(node = %session.node, %remote, connection = id, "disconnected: {reason}");
    record.state = PeerState::Disconnected as i32;
    record.reason = reason.to_string();
    record.connected_ns = started.elapsed().as_nanos() as u64;
    let _ = emit(
        events,
        &session.node,
        Payload::PeerConnection(record),
        String::new(),
    )
    .await;
    PeerState::Disconnected
}

async fn emit(
    events: &mpsc::Sender<Emitted>,
    node: &str,
    payload: Payload,
    error: String,
) -> Result<(), ()> {
    events
        .send(Emitted {
            node: node.to_string(),
            timestamp_ns: super::now_ns(),
            payload,
            error,
        })
        .await
        .map_err(drop)
}

struct Session<'a> {
    id: u64,
    config: &'a SessionConfig,
    /// Our pings waiting for their pong: nonce → when sent.
    pings: HashMap<u64, Instant>,
    last_of_type: HashMap<String, Instant>,
    version: Option<P2pVersion>,
    verack: bool,
    node: String,
}

/// Most pings waiting for an answer: a node that stops answering does not grow the table.
const PINGS_WAITING: usize = 16;

impl Session<'_> {
    async fn handshake(
        &mut self,
        connection: &mut Connection,
        remote: SocketAddr,
        local: SocketAddr,
        events: &mpsc::Sender<Emitted>,
        route: &dyn Route,
    ) -> Result<(), WireError> {
        let services = if self.config.v2 {
            ServiceFlags::P2P_V2
        } else {
            ServiceFlags::NONE
        };
        let version = wire::version_payload(
            services,
            Address::new(&remote, ServiceFlags::NONE),
            Address::new(&local, services),
            wire::random_nonce(),
            &user_agent(),
            0,
            true,
        );
        connection.send("version", &version).await?;
        connection.send("wtxidrelay", &[]).await?;
        connection.send("sendaddrv2", &[]).await?;
        let deadline = tokio::time::Instant::now() + self.config.handshake_timeout;
        while self.version.is_none() || !self.verack {
            let received = tokio::time::timeout_at(deadline, connection.receive())
                .await
                .map_err(|_| {
                    WireError::Malformed(format!(
                        "no version and verack within {:?}",
                        self.config.handshake_timeout
                    ))
                })??;
            let command = received.command.clone();
            let message = self.record(received, events).await?;
            match (command.as_str(), message) {
                ("version", Some(Body::Version(v))) => {
                    self.version = Some(v);
                    // The node is known by what it says: events from here on are its.
                    self.node = route.node_of(remote, local, self.version.as_ref());
                    connection.send("verack", &[]).await?;
                }
                ("version", _) => return Err(WireError::Malformed("an unreadable version".into())),
                ("verack", _) if self.version.is_some() => self.verack = true,
                _ => {}
            }
        }
        connection.send("sendheaders", &[]).await?;
        // Low-bandwidth compact blocks, version 2 (witness).
        let mut sendcmpct = vec![0u8];
        sendcmpct.extend_from_slice(&2u64.to_le_bytes());
        connection.send("sendcmpct", &sendcmpct).await?;
        // Core's default minimum relay fee, 1,000 sat/kvB: relay what a default node relays.
        connection.send("feefilter", &1000i64.to_le_bytes()).await?;
        Ok(())
    }

    /// Until the connection ends: answers, pings, requests; returns why it ended.
    async fn serve(
        &mut self,
        connection: &mut Connection,
        events: &mpsc::Sender<Emitted>,
    ) -> WireError {
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                _ = ping.tick() => {
                    let nonce = wire::random_nonce();
                    if self.pings.len() >= PINGS_WAITING {
                        // The oldest is not going to be answered.
                        if let Some(oldest) = self.pings.iter().min_by_key(|(_, t)| **t).map(|(n, _)| *n) {
                            self.pings.remove(&oldest);
                        }
                    }
                    self.pings.insert(nonce, Instant::now());
                    if let Err(e) = connection.send("ping", &nonce.to_le_bytes()).await {
                        return e;
                    }
                    continue;
                }
                received = tokio::time::timeout(self.config.idle_timeout, connection.receive()) => received,
            };
            let received = match received {
                Err(_) => {
                    return WireError::Malformed(format!(
                        "nothing from the node for {:?}",
                        self.config.idle_timeout
                    ))
                }
                Ok(Err(e)) => return e,
                Ok(Ok(received)) => received,
            };
            let command = received.command.clone();
            let payload = received.payload.clone();
            let body = match self.record(received, events).await {
                Ok(body) => body,
                Err(e) => return e,
            };
            if let Err(e) = self
                .answer(connection, &command, &payload, body, events)
                .await
            {
                return e;
            }
        }
    }

    async fn answer(
        &mut self,
        connection: &mut Connection,
        command: &str,
        payload: &[u8],
        body: Option<Body>,
        events: &mpsc::Sender<Emitted>,
    ) -> Result<(), WireError> {
        match (command, body) {
            ("ping", _) if payload.len() == 8 => connection.send("pong", payload).await?,
            // We have no headers to give: an empty answer, as a node at genesis would.
            ("getheaders", _) => connection.send("headers", &[0]).await?,
            ("pong", Some(Body::Pong(pong))) => {
                if let Some(sent) = self.pings.remove(&pong.nonce) {
                    let rtt_ns = sent.elapsed().as_nanos() as u64;
                    let ping = PeerPing {
                        connection: self.id,
                        nonce: pong.nonce,
                        rtt_ns,
                    };
                    emit(events, &self.node, Payload::PeerPing(ping), String::new())
                        .await
                        .map_err(|_| WireError::Closed)?;
                }
            }
            ("inv", Some(Body::Inv(inv))) => {
                // A block announced by inv means the node does not know which headers we have:
                // a getheaders from it tells it (even answered with none, Core then takes us to
                // be at its tip), and it announces the next blocks by headers.
                if let Some(block) = inv.items.iter().find(|item| {
                    matches!(
                        InventoryType::try_from(item.r#type),
                        Ok(InventoryType::Block | InventoryType::WitnessBlock)
                    )
                }) {
                    let mut getheaders = wire::PROTOCOL_VERSION.to_le_bytes().to_vec();
                    getheaders.push(1);
                    getheaders.extend(block.hash.iter().rev());
                    getheaders.extend_from_slice(&[0u8; 32]);
                    connection.send("getheaders", &getheaders).await?;
                }
                if !self.config.request_transactions {
                    return Ok(());
                }
                let wanted: Vec<&nodescope_proto::InventoryItem> = inv
                    .items
                    .iter()
                    .filter(|item| {
                        matches!(
                            InventoryType::try_from(item.r#type),
                            Ok(InventoryType::Wtx | InventoryType::Tx)
                        )
                    })
                    .collect();
                if !wanted.is_empty() {
                    // The same entries back: type as on the wire, hash in the wire's order.
                    let mut getdata =
                        bitcoin::consensus::serialize(&bitcoin::VarInt(wanted.len() as u64));
                    for item in wanted {
                        getdata.extend_from_slice(&item.type_raw.to_le_bytes());
                        getdata.extend(item.hash.iter().rev());
                    }
                    connection.send("getdata", &getdata).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Publishes the message; returns its decoded body.
    async fn record(
        &mut self,
        received: Received,
        events: &mpsc::Sender<Emitted>,
    ) -> Result<Option<Body>, WireError> {
        let now = Instant::now();
        // Per type Core knows, the rest as one: a node sending made-up types cannot grow this.
        let known = wire::CORE_MESSAGE_TYPES.contains(&received.command.as_str());
        let key = if known {
            received.command.as_str()
        } else {
            wire::CORE_OTHER
        };
        let since_previous_ns = self
            .last_of_type
            .insert(key.to_string(), now)
            .map_or(0, |previous| now.duration_since(previous).as_nanos() as u64);
        let size = received.payload.len() as u64;
        let message = decode_p2p_owned(
            received.command,
            &received.payload,
            size,
            self.config.decode,
        );
        let body = message.body.clone();
        let error = received.defect.unwrap_or_default();
        let event = PeerMessage {
            connection: self.id,
            message: Some(message),
            since_previous_ns,
        };
        emit(events, &self.node, Payload::PeerMessage(event), error)
            .await
            .map_err(|_| WireError::Closed)?;
        Ok(body)
    }
}
