//! [`RawPeer`]: a raw P2P client of a node over TCP, v1 or BIP324 v2, that can send any message
//! (or any bytes) and read everything the node sends.
//!
//! A reader thread per peer decodes incoming messages into a channel (so `recv` timeouts never
//! cut a v2 packet in half, and `ping`s can be answered while the test does something else).

use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bip324::io::{Payload, ProtocolReader, ProtocolWriter};
use bip324::PacketType;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::Magic;

use crate::{Error, Result, TIMEOUT};

pub mod payload;
pub mod v1;
pub mod v2;

/// Which transport a [`RawPeer`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plaintext v1 framing.
    V1,
    /// BIP324 encrypted transport (the node needs `-v2transport=1`, the default).
    V2,
}

/// A raw P2P connection to a node: full control over what is sent, and every received message
/// available as `(command, payload)`.
pub struct RawPeer {
    peer: SocketAddr,
    local: SocketAddr,
    transport: Transport,
    magic: Magic,
    socket: TcpStream,
    writer: Arc<Mutex<Writer>>,
    incoming: Receiver<Incoming>,
    /// Messages received but not yet returned (e.g. those that arrived during the handshake).
    pending: VecDeque<(String, Vec<u8>)>,
    closed: Option<String>,
    auto_pong: Arc<AtomicBool>,
    their_version: Option<VersionMessage>,
    reader: Option<JoinHandle<()>>,
}

enum Incoming {
    Message(String, Vec<u8>),
    Closed(String),
}

enum Reader {
    V1(BufReader<TcpStream>, Magic),
    V2(Box<ProtocolReader<BufReader<TcpStream>>>),
}

enum Writer {
    V1(TcpStream, Magic),
    V2(Box<ProtocolWriter<TcpStream>>, TcpStream),
}

impl RawPeer {
    /// Connects to `addr` and does the whole handshake: the transport's (BIP324 for V2), then
    /// `version` (our nonce, [`payload::USER_AGENT`], start height 0) / `version` / `verack` /
    /// `verack`. Messages the node sends meanwhile (`wtxidrelay`, `sendaddrv2`, ...) stay
    /// queued for [`RawPeer::recv`]. `magic` is e.g. `bitcoin::Network::Regtest`.
    pub fn connect(
        addr: SocketAddr,
        magic: impl Into<Magic>,
        transport: Transport,
    ) -> Result<RawPeer> {
        let mut peer = RawPeer::connect_no_handshake(addr, magic, transport)?;
        peer.handshake()?;
        Ok(peer)
    }

    /// Connects and sets up the transport (for V2 the BIP324 key exchange, without which
    /// nothing can be sent) but sends no `version`, for tests of what happens before it.
    /// Note that on a v2-capable node, V1 bytes that do not start with a `version` frame are
    /// taken for a BIP324 key: the node answers with its key, which we see as a bad magic.
    pub fn connect_no_handshake(
        addr: SocketAddr,
        magic: impl Into<Magic>,
        transport: Transport,
    ) -> Result<RawPeer> {
        let magic = magic.into();
        let io = |what: &str| {
            let what = format!("{what} (raw P2P peer of {addr})");
            move |e| Error::io(what, e)
        };
        let socket =
            TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(io("connecting"))?;
        socket
            .set_nodelay(true)
            .map_err(io("setting TCP_NODELAY"))?;
        let local = socket
            .local_addr()
            .map_err(io("reading the local address"))?;
        let clone = || socket.try_clone().map_err(io("cloning the socket"));
        let (reader, writer) = match transport {
            Transport::V1 => (
                Reader::V1(BufReader::new(clone()?), magic),
                Writer::V1(clone()?, magic),
            ),
            Transport::V2 => {
                socket
                    .set_read_timeout(Some(TIMEOUT))
                    .map_err(io("setting a timeout"))?;
                let (reader, writer) =
                    v2::handshake(&socket, magic).map_err(|message| Error::P2p {
                        peer: addr,
                        message,
                    })?;
                socket
                    .set_read_timeout(None)
                    .map_err(io("clearing the timeout"))?;
                (
                    Reader::V2(Box::new(reader)),
                    Writer::V2(Box::new(writer), clone()?),
                )
            }
        };
        let writer = Arc::new(Mutex::new(writer));
        let auto_pong = Arc::new(AtomicBool::new(false));
        let (tx, incoming) = mpsc::channel();
        let thread = {
            let (writer, auto_pong) = (writer.clone(), auto_pong.clone());
            std::thread::Builder::new()
                .name(format!("rawpeer-{}", local.port()))
                .spawn(move || read_loop(reader, &writer, &auto_pong, &tx))
                .map_err(io("spawning the reader thread"))?
        };
        tracing::debug!(%addr, %local, ?transport, "raw peer connected");
        Ok(RawPeer {
            peer: addr,
            local,
            transport,
            magic,
            socket,
            writer,
            incoming,
            pending: VecDeque::new(),
            closed: None,
            auto_pong,
            their_version: None,
            reader: Some(thread),
        })
    }

    /// The version/verack exchange (part of [`RawPeer::connect`]; call it yourself after
    /// [`RawPeer::connect_no_handshake`]). Other messages received meanwhile stay queued.
    pub fn handshake(&mut self) -> Result<()> {
        let version = payload::version(self.peer, self.local, payload::random_nonce(), 0);
        self.send("version", &version)?;
        let deadline = Instant::now() + TIMEOUT;
        let (mut got_version, mut got_verack) = (false, false);
        let mut others = Vec::new();
        while !(got_version && got_verack) {
            let (command, bytes) = self.next_message(deadline, "`version` and `verack`")?;
            match command.as_str() {
                "version" => {
                    if let Ok(NetworkMessage::Version(v)) = payload::decode(&command, &bytes) {
                        self.their_version = Some(v);
                    }
                    self.send("verack", &[])?;
                    got_version = true;
                }
                "verack" => got_verack = true,
                _ => others.push((command, bytes)),
            }
        }
        for message in others.into_iter().rev() {
            self.pending.push_front(message);
        }
        Ok(())
    }

    /// Sends `command` with `payload`, framed for the transport (v2: BIP324 short id where
    /// there is one, else the 12-byte command).
    pub fn send(&mut self, command: &str, payload: &[u8]) -> Result<()> {
        let bad_command = || Error::P2p {
            peer: self.peer,
            message: format!("command {command:?} is not 1-12 ASCII bytes"),
        };
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let result = match &mut *writer {
            Writer::V1(stream, magic) => {
                v1::command_bytes(command).ok_or_else(bad_command)?;
                stream.write_all(&v1::frame(*magic, command, payload))
            }
            Writer::V2(protocol, _) => {
                let contents = v2::encode_contents(command, payload).ok_or_else(bad_command)?;
                protocol
                    .write(&Payload::genuine(contents))
                    .map_err(std::io::Error::other)
            }
        };
        result.map_err(|e| self.write_error(e))
    }

    /// Sends a message built with the `bitcoin` crate.
    pub fn send_message(&mut self, message: &NetworkMessage) -> Result<()> {
        let (command, payload) = payload::encode(message);
        self.send(&command, &payload)
    }

    /// Writes `bytes` to the socket as they are: malformed v1 frames (see [`v1::frame_with`]),
    /// or on V2 unencrypted bytes in the middle of the encrypted stream.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let stream = match &mut *writer {
            Writer::V1(stream, _) | Writer::V2(_, stream) => stream,
        };
        stream.write_all(bytes).map_err(|e| self.write_error(e))
    }

    fn write_error(&self, e: std::io::Error) -> Error {
        Error::PeerClosed {
            peer: self.peer,
            reason: format!("sending failed: {e}"),
        }
    }

    /// The next message from the node, waiting up to `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<(String, Vec<u8>)> {
        self.next_message(Instant::now() + timeout, "a message")
    }

    /// The next `command` message, skipping (and dropping) others, waiting up to `timeout`.
    pub fn recv_until(&mut self, command: &str, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let what = format!("`{command}`");
        loop {
            let (got, payload) = self.next_message(deadline, &what)?;
            if got == command {
                return Ok(payload);
            }
            tracing::trace!(peer = %self.peer, command = %got, "skipped while waiting for {what}");
        }
    }

    /// Answer every `ping` with a `pong` from the reader thread (the pings are still returned
    /// by `recv`). Off by default, so tests see exactly what they send. The node sends its
    /// first ping right after the handshake: to answer that one, turn this on between
    /// [`RawPeer::connect_no_handshake`] and [`RawPeer::handshake`].
    pub fn set_auto_pong(&self, on: bool) {
        self.auto_pong.store(on, Ordering::SeqCst);
    }

    /// Waits until the node closes the connection (disconnect, eviction, ban) and returns the
    /// reason seen; messages received meanwhile are dropped.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_message(deadline, "the node to close the connection") {
                Ok(_) => {}
                Err(Error::PeerClosed { reason, .. }) => return Ok(reason),
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the node has closed the connection (without waiting; queued messages are kept).
    pub fn is_closed(&mut self) -> bool {
        loop {
            match self.incoming.try_recv() {
                Ok(Incoming::Message(c, p)) => self.pending.push_back((c, p)),
                Ok(Incoming::Closed(reason)) => self.closed = Some(reason),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed
                        .get_or_insert_with(|| "reader thread ended".into());
                    break;
                }
            }
        }
        self.closed.is_some()
    }

    fn next_message(&mut self, deadline: Instant, what: &str) -> Result<(String, Vec<u8>)> {
        if let Some(message) = self.pending.pop_front() {
            return Ok(message);
        }
        let closed = |reason: &str| Error::PeerClosed {
            peer: self.peer,
            reason: reason.to_string(),
        };
        if let Some(reason) = &self.closed {
            return Err(closed(reason));
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.incoming.recv_timeout(timeout) {
            Ok(Incoming::Message(command, payload)) => {
                tracing::trace!(peer = %self.peer, %command, len = payload.len(), "received");
                Ok((command, payload))
            }
            Ok(Incoming::Closed(reason)) => {
                let err = closed(&reason);
                self.closed = Some(reason);
                Err(err)
            }
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout {
                what: format!("{what} from {} (raw peer {})", self.peer, self.local),
                timeout,
                last_error: "none".into(),
            }),
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = Some("reader thread ended".into());
                Err(closed("reader thread ended"))
            }
        }
    }

    /// Our end of the connection: the `addr` of this peer in the node's `getpeerinfo`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The node's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The transport in use.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The network magic in use.
    pub fn magic(&self) -> Magic {
        self.magic
    }

    /// The node's `version` message, once the handshake got it.
    pub fn their_version(&self) -> Option<&VersionMessage> {
        self.their_version.as_ref()
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(Shutdown::Both);
        if let Some(thread) = self.reader.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for RawPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPeer")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .field("transport", &self.transport)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// The reader thread: decode, answer pings if asked, forward; report why the stream ended.
fn read_loop(
    mut reader: Reader,
    writer: &Mutex<Writer>,
    auto_pong: &AtomicBool,
    tx: &Sender<Incoming>,
) {
    loop {
        let next = match &mut reader {
            Reader::V1(stream, magic) => v1::read_frame(stream, *magic),
            Reader::V2(protocol) => match protocol.read() {
                Ok(packet) if packet.packet_type() == PacketType::Decoy => continue,
                Ok(packet) => v2::decode_contents(packet.contents()),
                Err(bip324::io::ProtocolError::Io(e, _)) => Err(describe_read_error(e)),
                Err(e) => Err(format!("v2 packet error: {e}")),
            },
        };
        match next {
            Ok((command, payload)) => {
                if command == "ping" && auto_pong.load(Ordering::SeqCst) {
                    let mut writer = writer.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = match &mut *writer {
                        Writer::V1(stream, magic) => {
                            stream.write_all(&v1::frame(*magic, "pong", &payload))
                        }
                        Writer::V2(protocol, _) => {
                            let contents =
                                v2::encode_contents("pong", &payload).unwrap_or_default();
                            protocol
                                .write(&Payload::genuine(contents))
                                .map_err(std::io::Error::other)
                        }
                    };
                }
                if tx.send(Incoming::Message(command, payload)).is_err() {
                    return;
                }
            }
            Err(reason) => {
                let _ = tx.send(Incoming::Closed(reason));
                return;
            }
        }
    }
}

/// Why a read from the node failed, in words.
pub(crate) fn describe_read_error(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "the node closed the connection (EOF)".to_string(),
        std::io::ErrorKind::ConnectionReset => "the node reset the connection".to_string(),
        _ => format!("reading from the node failed: {e}"),
    }
}
