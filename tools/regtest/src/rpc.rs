//! Bitcoin Core's JSON-RPC over a minimal HTTP/1.1 client on `TcpStream`: one connection per
//! call, authenticated with the cookie file read afresh each time (a restart rewrites it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::{Error, Result};

/// How long one RPC may take (`generatetoaddress 101` with a wallet is the slowest we do).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Replies larger than this are refused instead of allocated (a regtest reply is far smaller).
const MAX_REPLY_BYTES: usize = 64 << 20;

/// A JSON-RPC client for one node.
#[derive(Debug)]
pub(crate) struct RpcClient {
    addr: SocketAddr,
    cookie: PathBuf,
    next_id: AtomicU64,
}

impl RpcClient {
    pub(crate) fn new(addr: SocketAddr, cookie: PathBuf) -> RpcClient {
        RpcClient {
            addr,
            cookie,
            next_id: AtomicU64::new(1),
        }
    }

    /// Calls `method` at `path` (`/` or `/wallet/<name>`) and returns its `result`.
    pub(crate) fn call(&self, path: &str, method: &str, params: &Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": method, "params": params,
        })
        .to_string();
        let url = format!("http://{}{path}", self.addr);
        let (status, reply) = self.post(path, &body).map_err(|e| match e {
            Error::Io { what, source } => {
                Error::io(format!("RPC {method} at {url}: {what}"), source)
            }
            other => other,
        })?;
        tracing::trace!(method, status, reply = %String::from_utf8_lossy(&reply), "rpc");
        let json: Value = match serde_json::from_slice(&reply) {
            Ok(json) => json,
            Err(_) => {
                return Err(Error::Http {
                    method: method.to_string(),
                    url,
                    status,
                    body: String::from_utf8_lossy(&reply[..reply.len().min(500)]).into_owned(),
                })
            }
        };
        match json.get("error") {
            Some(error) if !error.is_null() => Err(Error::Rpc {
                method: method.to_string(),
                code: error["code"].as_i64().unwrap_or(0),
                message: error["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| error.to_string()),
            }),
            _ => match json.get("result") {
                Some(result) => Ok(result.clone()),
                None => Err(Error::unexpected(format!("RPC {method}"), json)),
            },
        }
    }

    /// One HTTP POST; returns the status and the body.
    fn post(&self, path: &str, body: &str) -> Result<(u16, Vec<u8>)> {
        let cookie = std::fs::read_to_string(&self.cookie).map_err(|e| {
            Error::io(
                format!(
                    "reading the RPC cookie {} (bitcoind writes it once its RPC server is up)",
                    self.cookie.display()
                ),
                e,
            )
        })?;
        let auth = base64(cookie.trim().as_bytes());
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| Error::io("connecting", e))?;
        stream
            .set_read_timeout(Some(CALL_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(CALL_TIMEOUT)))
            .map_err(|e| Error::io("setting socket timeouts", e))?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| Error::io("sending the request", e))?;
        read_response(BufReader::new(stream))
    }
}

/// Standard base64 with padding, for the `Authorization: Basic` header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads a status line, headers, and a body delimited by Content-Length or by the end of the
/// connection (we asked for `Connection: close`).
fn read_response(mut reader: impl BufRead) -> Result<(u16, Vec<u8>)> {
    let read_err = |e| Error::io("reading the reply", e);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(read_err)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            Error::io(
                "reading the reply",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not an HTTP status line: {line:?}"),
                ),
            )
        })?;
    let mut content_length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(read_err)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = Vec::new();
    match content_length {
        Some(n) if n <= MAX_REPLY_BYTES => {
            body.resize(n, 0);
            reader.read_exact(&mut body).map_err(read_err)?;
        }
        _ => {
            reader
                .take(MAX_REPLY_BYTES as u64)
                .read_to_end(&mut body)
                .map_err(read_err)?;
        }
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn parses_a_reply_with_content_length() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        let (status, body) = read_response(&raw[..]).unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, b"hello");
    }

    #[test]
    fn parses_a_reply_without_content_length() {
        let raw = b"HTTP/1.1 401 Unauthorized\r\n\r\nno";
        let (status, body) = read_response(&raw[..]).unwrap();
        assert_eq!(status, 401);
        assert_eq!(body, b"no");
    }
}
