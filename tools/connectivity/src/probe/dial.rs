//! Getting a TCP connection to the peer: directly, or through a SOCKS5 proxy (Tor, I2P) that is
//! handed the name unresolved.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use nodescope_proto::ConnectivityResult;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;
use tokio_socks::TargetAddr;

use super::{hex, secs, Dial, Failure, ProbeConfig};

/// Connects as `dial` says, within the timeout that fits it.
pub(super) async fn connect(dial: &Dial, config: &ProbeConfig) -> Result<TcpStream, Failure> {
    let stream = match dial {
        Dial::Direct(addr) => direct(*addr, config.connect_timeout).await?,
        Dial::Socks5 { proxy, host, port } => {
            socks5(*proxy, host, *port, config.proxy_connect_timeout).await?
        }
    };
    // Our messages are small and each waits for an answer: do not let Nagle hold them.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn direct(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(connect_error(&e)),
        Err(_) => Err(Failure::new(
            ConnectivityResult::Timeout,
            format!("no TCP connection within {}", secs(timeout)),
        )),
    }
}

/// What a failed direct connect says about the peer.
fn connect_error(e: &io::Error) -> Failure {
    use ConnectivityResult::*;
    let (result, detail) = match e.kind() {
        ErrorKind::ConnectionRefused => (Refused, "connection refused".to_string()),
        ErrorKind::NetworkUnreachable => (UnreachableNetwork, "no route to the network".into()),
        // An ICMP host unreachable usually means the ARP or the router gave up on the host:
        // as good as a silent one, but worth saying.
        ErrorKind::HostUnreachable => (Timeout, "host unreachable".into()),
        ErrorKind::TimedOut => (Timeout, format!("connect timed out in the kernel: {e}")),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
            (Reset, format!("connection reset while connecting: {e}"))
        }
        _ => (Timeout, format!("connect failed: {e}")),
    };
    Failure::new(result, detail)
}

async fn socks5(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, Failure> {
    // Build the target ourselves so a name always goes out as ATYP 3, never resolved here
    // (that would leak it to our DNS, and .onion / .i2p names do not resolve anyway).
    let target = match host.parse::<IpAddr>() {
        Ok(ip) => TargetAddr::Ip(SocketAddr::new(ip, port)),
        Err(_) if host.is_empty() || host.len() > 255 => {
            return Err(Failure::new(
                ConnectivityResult::UnreachableNetwork,
                format!("a {}-byte name cannot go through SOCKS5", host.len()),
            ))
        }
        Err(_) => TargetAddr::Domain(host.into(), port),
    };
    let attempt = async {
        let tcp = TcpStream::connect(proxy).await.map_err(|e| {
            Failure::new(
                ConnectivityResult::ProxyError,
                format!("SOCKS5 proxy {proxy} not reachable: {e}"),
            )
        })?;
        let mut recorder = Recorder::new(tcp);
        match Socks5Stream::connect_with_socket(&mut recorder, target).await {
            Ok(_) => Ok(recorder.into_inner()),
            Err(e) => Err(socks_error(&e, recorder.seen(), proxy)),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Failure::new(
            ConnectivityResult::Timeout,
            format!(
                "no connection to {host}:{port} through SOCKS5 proxy {proxy} within {}",
                secs(timeout)
            ),
        )),
    }
}

/// What a failed SOCKS5 exchange says. `seen` is what the proxy sent: tokio-socks loses reply
/// codes above 8 (Tor's 0xF0-0xF7), which are then its 4th byte (after the method selection).
fn socks_error(e: &tokio_socks::Error, seen: &[u8], proxy: SocketAddr) -> Failure {
    use tokio_socks::Error as E;
    use ConnectivityResult::*;
    let code = match e {
        E::GeneralSocksServerFailure => Some(1),
        E::ConnectionNotAllowedByRuleset => Some(2),
        E::NetworkUnreachable => Some(3),
        E::HostUnreachable => Some(4),
        E::ConnectionRefused => Some(5),
        E::TtlExpired => Some(6),
        E::CommandNotSupported => Some(7),
        E::AddressTypeNotSupported => Some(8),
        E::UnknownAuthMethod if seen.len() >= 4 && seen[..3] == [5, 0, 5] => Some(seen[3]),
        _ => None,
    };
    if let Some(code) = code {
        let result = match code {
            // The onion service wants client authorization: it answered, and said no.
            5 | 0xf4 | 0xf5 => Refused,
            // The proxy is fine; the target did not answer it (for Tor: no descriptor, or the
            // introduction or rendezvous failed — the onion service is not online).
            4 | 6 | 0xf0 | 0xf2 | 0xf3 | 0xf7 => Timeout,
            3 => UnreachableNetwork,
            _ => ProxyError,
        };
        // RFC 1928's codes are small numbers, Tor's are documented in hex.
        let shown = if code <= 9 {
            code.to_string()
        } else {
            format!("{code:#04x}")
        };
        let detail = format!("SOCKS5 reply {shown} ({}) from {proxy}", reply_name(code));
        return Failure::new(result, detail);
    }
    let detail = match e {
        E::InvalidResponseVersion => {
            format!("{proxy} is not a SOCKS5 proxy: it answered {}", hex(seen))
        }
        E::NoAcceptableAuthMethods | E::AuthorizationRequired | E::UnknownAuthMethod => {
            format!("SOCKS5 proxy {proxy} requires authentication")
        }
        E::Io(io) if io.kind() == ErrorKind::UnexpectedEof => {
            format!("SOCKS5 proxy {proxy} closed the connection")
        }
        other => format!("SOCKS5 proxy {proxy} failed: {other}"),
    };
    Failure::new(ProxyError, detail)
}

/// RFC 1928's reply codes, and Tor's extended ones (tor's `socks_reply_code`).
fn reply_name(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        0xf0 => "onion service descriptor not found",
        0xf1 => "onion service descriptor invalid",
        0xf2 => "onion service introduction failed",
        0xf3 => "onion service rendezvous failed",
        0xf4 => "onion service client authorization missing",
        0xf5 => "onion service client authorization wrong",
        0xf6 => "onion address invalid",
        0xf7 => "onion service introduction timed out",
        _ => "unknown code",
    }
}

/// Keeps the first bytes read through it, to say what the other side sent when a library
/// reading from it (tokio-socks, bip324) fails without telling.
pub(super) struct Recorder<S> {
    inner: S,
    seen: [u8; 16],
    len: usize,
}

impl<S> Recorder<S> {
    pub(super) fn new(inner: S) -> Self {
        Recorder {
            inner,
            seen: [0; 16],
            len: 0,
        }
    }

    pub(super) fn seen(&self) -> &[u8] {
        &self.seen[..self.len]
    }

    pub(super) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorder<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        let take = new.len().min(this.seen.len() - this.len);
        this.seen[this.len..this.len + take].copy_from_slice(&new[..take]);
        this.len += take;
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorder<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> SocketAddr {
        "127.0.0.1:9050".parse().unwrap()
    }

    #[test]
    fn tor_reply_codes_survive_tokio_socks() {
        let fail = socks_error(
            &tokio_socks::Error::UnknownAuthMethod,
            &[5, 0, 5, 0xf0, 0, 1],
            proxy(),
        );
        assert_eq!(fail.result, ConnectivityResult::Timeout);
        assert_eq!(
            fail.detail,
            "SOCKS5 reply 0xf0 (onion service descriptor not found) from 127.0.0.1:9050"
        );
        let invalid = socks_error(
            &tokio_socks::Error::UnknownAuthMethod,
            &[5, 0, 5, 0xf6, 0, 1],
            proxy(),
        );
        assert_eq!(invalid.result, ConnectivityResult::ProxyError);
        // The same error at the method selection is about authentication.
        let fail = socks_error(&tokio_socks::Error::UnknownAuthMethod, &[5, 3], proxy());
        assert!(fail.detail.contains("authentication"), "{}", fail.detail);
    }

    #[test]
    fn kernel_errors_map_to_results() {
        let result = |kind| connect_error(&io::Error::from(kind)).result;
        assert_eq!(
            result(ErrorKind::ConnectionRefused),
            ConnectivityResult::Refused
        );
        assert_eq!(
            result(ErrorKind::NetworkUnreachable),
            ConnectivityResult::UnreachableNetwork
        );
        assert_eq!(
            result(ErrorKind::HostUnreachable),
            ConnectivityResult::Timeout
        );
        assert_eq!(
            result(ErrorKind::ConnectionReset),
            ConnectivityResult::Reset
        );
    }
}
