//! One check of one address: connect (directly or through SOCKS5), do the v1 version handshake,
//! optionally try BIP324 on a second connection, and say what happened in a
//! [`ConnectivityResult`] and words.
//!
//! Everything a peer sends is read into fixed small buffers: a hostile or broken peer can make
//! a probe fail, never make it allocate, hang past its timeouts, or panic.

mod dial;
mod v2;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitcoin::p2p::address::Address;
use bitcoin::p2p::{Magic, ServiceFlags};
use nodescope_proto::p2p::wire::{self, random_nonce, Header, HEADER_LEN, MAX_PAYLOAD};
use nodescope_proto::p2p::{decode_p2p, DecodeOptions};
use nodescope_proto::p2p_message::Body;
use nodescope_proto::{ConnectivityResult, P2pVersion, V2Support};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

/// A `version` payload is about 100 bytes plus the user agent (at most 256): anything larger is
/// not a version worth reading.
pub const MAX_VERSION_PAYLOAD: u32 = 4096;
/// What we read at most, after the peer's version, while waiting for its verack.
pub const MAX_AFTER_VERSION: u64 = 64 * 1024;

/// How to check.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The node's chain: the magic we send and expect back.
    pub magic: Magic,
    /// Direct TCP connect.
    pub connect_timeout: Duration,
    /// TCP to the proxy plus its SOCKS5 CONNECT reply (Tor circuits are slow).
    pub proxy_connect_timeout: Duration,
    /// From connected to the peer's version, and again for its verack (and for the v2 try).
    pub handshake_timeout: Duration,
    /// Also try a BIP324 handshake when the v1 check reached a node.
    pub try_v2: bool,
    /// Our user agent, e.g. "/nodescope-connectivity-check:0.1.0/".
    pub user_agent: String,
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dial {
    Direct(SocketAddr),
    /// Through a SOCKS5 proxy, which gets `host` as a name (ATYP 3) unresolved.
    Socks5 {
        proxy: SocketAddr,
        host: String,
        port: u16,
    },
}

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    pub result: ConnectivityResult,
    /// For people, naming the values seen: "connection refused", "no version within 10 s",
    /// "magic f9beb4d9 (main), expected fabfb5da (regtest)".
    pub detail: String,
    /// From the start to the TCP connection (through the proxy) being up.
    pub connect: Option<Duration>,
    /// From connected to the peer's version fully read.
    pub handshake: Option<Duration>,
    pub version: Option<P2pVersion>,
    /// The peer sent verack after our verack.
    pub verack: bool,
    pub v2: V2Support,
}

/// Why a step of the check ended it.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
struct Failure {
    result: ConnectivityResult,
    detail: String,
}

impl Failure {
    fn new(result: ConnectivityResult, detail: impl Into<String>) -> Self {
        Failure {
            result,
            detail: detail.into(),
        }
    }
}

/// Checks one address. Never panics; every way it can go is in the outcome.
pub async fn probe(dial: &Dial, config: &ProbeConfig) -> ProbeOutcome {
    let start = Instant::now();
    let mut outcome = ProbeOutcome {
        result: ConnectivityResult::Unspecified,
        detail: String::new(),
        connect: None,
        handshake: None,
        version: None,
        verack: false,
        v2: V2Support::NotTried,
    };
    match dial::connect(dial, config).await {
        Ok(mut stream) => {
            let connected = Instant::now();
            outcome.connect = Some(connected - start);
            match version_exchange(&mut stream, dial, config).await {
                Ok(version) => {
                    outcome.handshake = Some(connected.elapsed());
                    outcome.result = ConnectivityResult::Reachable;
                    outcome.detail = format!(
                        "version from {} (protocol {}, height {})",
                        version.user_agent, version.version, version.start_height
                    );
                    outcome.version = Some(version);
                    match verack_exchange(&mut stream, config).await {
                        Ok(()) => outcome.verack = true,
                        Err(why) => outcome.detail += &format!("; {why}"),
                    }
                }
                Err(fail) => (outcome.result, outcome.detail) = (fail.result, fail.detail),
            }
            // Politely: FIN rather than RST, so the peer logs a normal disconnect.
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
        }
        Err(fail) => (outcome.result, outcome.detail) = (fail.result, fail.detail),
    }
    if config.try_v2 && outcome.result == ConnectivityResult::Reachable {
        let (support, why) = v2::check(dial, config).await;
        outcome.v2 = support;
        if support != V2Support::Supported {
            outcome.detail += &format!("; v2: {why}");
        }
    }
    tracing::debug!(?dial, result = ?outcome.result, detail = %outcome.detail, "probed");
    outcome
}

/// Sends our version and reads the peer's, all within the handshake timeout.
async fn version_exchange(
    stream: &mut TcpStream,
    dial: &Dial,
    config: &ProbeConfig,
) -> Result<P2pVersion, Failure> {
    use ConnectivityResult::*;
    let timeout = config.handshake_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let ours = wire::frame(config.magic, "version", &our_version(dial, config));
    match timeout_at(deadline, stream.write_all(&ours)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(Failure::new(
                Reset,
                format!("closed by the peer before sending version ({e})"),
            ))
        }
        Err(_) => {
            return Err(Failure::new(
                Timeout,
                format!("could not send our version within {}", secs(timeout)),
            ))
        }
    }

    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    let read = timeout_at(deadline, async {
        while got < HEADER_LEN {
            match stream.read(&mut header[got..]).await {
                Ok(0) => return Err("EOF".to_string()),
                Ok(n) => got += n,
                Err(e) => return Err(format!("{e}")),
            }
        }
        Ok(())
    })
    .await;
    let seen = &header[..got];
    match read {
        Ok(Ok(())) => {}
        Ok(Err(why)) if got == 0 => {
            return Err(Failure::new(
                Reset,
                format!("closed by the peer before sending version ({why})"),
            ))
        }
        Ok(Err(_)) => {
            return Err(Failure::new(
                NotBitcoin,
                format!(
                    "sent {got} bytes that are not a P2P header, then closed: {}",
                    hex(seen)
                ),
            ))
        }
        Err(_) if got == 0 => {
            return Err(Failure::new(
                Timeout,
                format!("no version within {}", secs(timeout)),
            ))
        }
        Err(_) => {
            return Err(Failure::new(
                Timeout,
                format!(
                    "sent {got} bytes then stalled, no full header within {}: {}",
                    secs(timeout),
                    hex(seen)
                ),
            ))
        }
    }

    let parsed = wire::parse_header(&header);
    check_version_header(&parsed, &header, config.magic)?;
    // Bounded by MAX_VERSION_PAYLOAD above.
    let mut payload = vec![0u8; parsed.length as usize];
    match timeout_at(deadline, stream.read_exact(&mut payload)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(Failure::new(
                Reset,
                format!("closed by the peer in the middle of its version ({e})"),
            ))
        }
        Err(_) => {
            return Err(Failure::new(
                Timeout,
                format!("version not complete within {}", secs(timeout)),
            ))
        }
    }
    if wire::checksum(&payload) != parsed.checksum {
        return Err(Failure::new(NotBitcoin, "version with a wrong checksum"));
    }
    let message = decode_p2p(
        "version",
        &payload,
        payload.len() as u64,
        DecodeOptions::default(),
    );
    match message.body {
        Some(Body::Version(version)) => Ok(version),
        _ => Err(Failure::new(
            NotBitcoin,
            format!("undecodable version: {}", message.decode_error),
        )),
    }
}

/// Whether the peer's first header is the version we are waiting for, and if not, what it
/// says about the peer.
fn check_version_header(
    parsed: &Header,
    header: &[u8; HEADER_LEN],
    magic: Magic,
) -> Result<(), Failure> {
    use ConnectivityResult::*;
    let not_p2p = || {
        Failure::new(
            NotBitcoin,
            format!(
                "sent bytes that are not a P2P header: {}",
                hex(&header[..16])
            ),
        )
    };
    if parsed.magic != magic.to_bytes() {
        // Another network's node still sends a well-formed header.
        if parsed.command.is_err() || parsed.length > MAX_PAYLOAD {
            return Err(not_p2p());
        }
        return Err(Failure::new(
            WrongMagic,
            format!(
                "magic {}, expected {}",
                wire::describe_magic(parsed.magic),
                wire::describe_magic(magic.to_bytes())
            ),
        ));
    }
    let command = parsed.command.as_ref().map_err(|_| not_p2p())?;
    if command != "version" {
        return Err(Failure::new(
            NotBitcoin,
            format!("first message was `{command}`, not version"),
        ));
    }
    if parsed.length > MAX_VERSION_PAYLOAD {
        return Err(Failure::new(
            NotBitcoin,
            format!(
                "announced a {}-byte version (at most {MAX_VERSION_PAYLOAD})",
                parsed.length
            ),
        ));
    }
    Ok(())
}

/// Sends verack and waits for the peer's, skipping what comes before it.
async fn verack_exchange(stream: &mut TcpStream, config: &ProbeConfig) -> Result<(), String> {
    let timeout = config.handshake_timeout;
    let verack = wire::frame(config.magic, "verack", &[]);
    let wait = async {
        stream
            .write_all(&verack)
            .await
            .map_err(|e| format!("sending verack failed: {e}"))?;
        let mut budget = MAX_AFTER_VERSION;
        let mut header = [0u8; HEADER_LEN];
        loop {
            stream
                .read_exact(&mut header)
                .await
                .map_err(|e| format!("no verack: {e}"))?;
            let parsed = wire::parse_header(&header);
            match parsed.command {
                Ok(command) if parsed.magic == config.magic.to_bytes() => {
                    if command == "verack" {
                        return Ok(());
                    }
                    let length = u64::from(parsed.length);
                    budget = budget
                        .checked_sub(HEADER_LEN as u64 + length)
                        .ok_or_else(|| {
                            format!("no verack within the first {MAX_AFTER_VERSION} bytes")
                        })?;
                    skip(stream, length)
                        .await
                        .map_err(|e| format!("no verack: {e}"))?;
                }
                _ => return Err("sent a malformed header instead of verack".to_string()),
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .unwrap_or_else(|_| Err(format!("no verack within {}", secs(timeout))))
}

/// Reads and drops `length` bytes through a small fixed buffer.
async fn skip(stream: &mut TcpStream, mut length: u64) -> std::io::Result<()> {
    let mut sink = [0u8; 4096];
    while length > 0 {
        let chunk = length.min(sink.len() as u64) as usize;
        stream.read_exact(&mut sink[..chunk]).await?;
        length -= chunk as u64;
    }
    Ok(())
}

/// Our version payload. We serve nothing (services NONE), relay nothing, and say so.
fn our_version(dial: &Dial, config: &ProbeConfig) -> Vec<u8> {
    let nowhere = |port| Address {
        services: ServiceFlags::NONE,
        address: [0; 8],
        port,
    };
    let receiver = match dial {
        Dial::Direct(addr) => Address::new(addr, ServiceFlags::NONE),
        // The peer is a name to us: no address to tell it.
        Dial::Socks5 { port, .. } => nowhere(*port),
    };
    wire::version_payload(
        bitcoin::p2p::ServiceFlags::NONE,
        receiver,
        nowhere(0),
        random_nonce(),
        &config.user_agent,
        0,
        false,
    )
}

/// Bytes in hex, at most the first 16.
fn hex(bytes: &[u8]) -> String {
    let shown: String = bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 16 {
        shown + "..."
    } else {
        shown
    }
}

/// "10 s", "0.3 s".
fn secs(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8; HEADER_LEN]) -> Result<(), Failure> {
        check_version_header(&wire::parse_header(bytes), bytes, Magic::REGTEST)
    }

    #[test]
    fn first_headers_are_classified() {
        let version = wire::frame(Magic::REGTEST, "version", &[0; 100]);
        assert!(header(version[..24].try_into().unwrap()).is_ok());

        let main = wire::frame(Magic::BITCOIN, "version", &[0; 100]);
        let fail = header(main[..24].try_into().unwrap()).unwrap_err();
        assert_eq!(fail.result, ConnectivityResult::WrongMagic);
        assert_eq!(
            fail.detail,
            "magic f9beb4d9 (main), expected fabfb5da (regtest)"
        );
        let unknown = wire::frame(Magic::from_bytes([1, 2, 3, 4]), "version", &[]);
        let fail = header(unknown[..24].try_into().unwrap()).unwrap_err();
        assert!(
            fail.detail.contains("01020304 (unknown network)"),
            "{}",
            fail.detail
        );

        let fail = header(b"HTTP/1.1 400 Bad Request").unwrap_err();
        assert_eq!(fail.result, ConnectivityResult::NotBitcoin);
        assert!(fail.detail.contains("48545450"), "{}", fail.detail);

        let ping = wire::frame(Magic::REGTEST, "ping", &[0; 8]);
        let fail = header(ping[..24].try_into().unwrap()).unwrap_err();
        assert_eq!(
            (fail.result, fail.detail.as_str()),
            (
                ConnectivityResult::NotBitcoin,
                "first message was `ping`, not version"
            )
        );

        let huge = wire::frame_with(
            Magic::REGTEST.to_bytes(),
            wire::command_bytes("version").unwrap(),
            5000,
            [0; 4],
            &[],
        );
        let fail = header(huge[..24].try_into().unwrap()).unwrap_err();
        assert_eq!(fail.result, ConnectivityResult::NotBitcoin);
    }

    #[test]
    fn our_version_is_honest() {
        let config = ProbeConfig {
            magic: Magic::REGTEST,
            connect_timeout: Duration::from_secs(1),
            proxy_connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            try_v2: false,
            user_agent: "/test:0.1/".into(),
        };
        let dial = Dial::Socks5 {
            proxy: "127.0.0.1:9050".parse().unwrap(),
            host: "example.onion".into(),
            port: 8333,
        };
        let payload = our_version(&dial, &config);
        let message = decode_p2p(
            "version",
            &payload,
            payload.len() as u64,
            DecodeOptions::default(),
        );
        let Some(Body::Version(v)) = message.body else {
            panic!("not a version: {message:?}")
        };
        assert_eq!((v.version, v.services, v.relay), (70016, 0, false));
        assert_eq!((v.user_agent.as_str(), v.start_height), ("/test:0.1/", 0));
    }
}
