//! bitcoind's JSON-RPC over HTTP/1.1: one connection per call (bitcoind's HTTP server closes
//! idle ones anyway), a deadline on the whole call, a cap on the answer's size, and the cookie
//! read afresh for every call, so that a restarted bitcoind's new cookie is picked up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use nodescope_proto::RpcFailureKind;
use serde_json::Value;

/// How the extractor proves who it is to bitcoind.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `-rpccookiefile`: `__cookie__:<random>`, rewritten at every start of bitcoind.
    Cookie(PathBuf),
    /// `-rpcuser`/`-rpcpassword`, or a user of `-rpcauth`.
    UserPassword { user: String, password: String },
}

/// Where bitcoind answers: `host:port` (an `-rpcbind` address, or the chain's default port).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub authority: String,
    /// `/` or `/wallet/<name>`.
    pub path: String,
}

impl Endpoint {
    /// `http://host:port[/path]`; https is not something bitcoind serves.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("RPC URL {url:?} must start with http:// (bitcoind serves plain HTTP; put a TLS tunnel in front if the node is remote)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || !authority.contains(':') {
            return Err(format!(
                "RPC URL {url:?} needs host and port, e.g. http://127.0.0.1:8332"
            ));
        }
        Ok(Endpoint {
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// One call's outcome: its answer's `result`, and how long and large it was.
#[derive(Debug)]
pub struct Answer {
    pub result: Value,
    pub duration: Duration,
    pub reply_bytes: u64,
}

/// Why a call gave no answer, in the terms of [`RpcFailureKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub kind: RpcFailureKind,
    /// The JSON-RPC error code, or the HTTP status.
    pub code: i64,
    pub message: String,
    pub duration: Duration,
    pub reply_bytes: u64,
}

impl CallError {
    /// bitcoind is starting (loading the block index, verifying blocks): wait, do not worry.
    pub fn is_warming_up(&self) -> bool {
        self.kind == RpcFailureKind::RpcError && self.code == RPC_IN_WARMUP
    }
}

/// `RPC_IN_WARMUP`: "Client still warming up".
pub const RPC_IN_WARMUP: i64 = -28;

#[derive(Debug, Clone)]
pub struct RpcClient {
    endpoint: Endpoint,
    auth: Auth,
    timeout: Duration,
    max_reply_bytes: usize,
}

impl RpcClient {
    pub fn new(endpoint: Endpoint, auth: Auth, timeout: Duration, max_reply_bytes: usize) -> Self {
        RpcClient {
            endpoint,
            auth,
            timeout,
            max_reply_bytes,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Calls `method` with `params`; the whole call (connect, send, read) within the timeout.
    pub async fn call(&self, method: &str, params: &Value) -> Result<Answer, CallError> {
        let started = Instant::now();
        let mut reply_bytes = 0;
        let outcome = tokio::time::timeout(
            self.timeout,
            self.exchange(method, params, &mut reply_bytes),
        )
        .await;
        let duration = started.elapsed();
        let fail = |kind, code, message: String| CallError {
            kind,
            code,
            message,
            duration,
            reply_bytes,
        };
        match outcome {
            Err(_) => Err(fail(
                RpcFailureKind::Timeout,
                0,
                format!(
                    "{method}: no answer from {} within {:?} (--rpc-timeout)",
                    self.endpoint.authority, self.timeout
                ),
            )),
            Ok(Err((kind, code, message))) => Err(fail(kind, code, message)),
            Ok(Ok(result)) => Ok(Answer {
                result,
                duration,
                reply_bytes,
            }),
        }
    }

    async fn exchange(
        &self,
        method: &str,
        params: &Value,
        reply_bytes: &mut u64,
    ) -> Result<Value, (RpcFailureKind, i64, String)> {
        let authority = &self.endpoint.authority;
        let credentials = self.credentials()?;
        let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| {
            (
                RpcFailureKind::Unreachable,
                0,
                format!("{method}: cannot connect to bitcoind's RPC at {authority}: {e} (is bitcoind running, with -server and this -rpcbind/-rpcport?)"),
            )
        })?;
        let io_error = |e: hyper::Error| {
            (
                RpcFailureKind::Unreachable,
                0,
                format!("{method}: HTTP exchange with {authority} failed: {e}"),
            )
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io_error)?;
        // Drives the connection until the answer is read; dropped with the call.
        let connection = tokio::spawn(connection);
        let _abort = AbortOnDrop(connection);
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": method, "params": params,
        })
        .to_string();
        let request = hyper::Request::post(&self.endpoint.path)
            .header(HOST, authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, credentials)
            .body(Full::new(Bytes::from(body)))
            .expect("a request of valid parts");
        let response = sender.send_request(request).await.map_err(io_error)?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err((
                RpcFailureKind::Auth,
                status as i64,
                format!(
                    "{method}: bitcoind at {authority} refused the credentials (HTTP {status}): {}",
                    self.auth_hint()
                ),
            ));
        }
        let body = Limited::new(response.into_body(), self.max_reply_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    (
                        RpcFailureKind::TooLarge,
                        0,
                        format!(
                            "{method}: the answer exceeds {} MiB (--rpc-max-reply-mib)",
                            self.max_reply_bytes >> 20
                        ),
                    )
                } else {
                    (
                        RpcFailureKind::Unreachable,
                        0,
                        format!("{method}: reading the answer from {authority} failed: {e}"),
                    )
                }
            })?
            .to_bytes();
        *reply_bytes = body.len() as u64;
        let mut json: Value = serde_json::from_slice(&body).map_err(|e| {
            (
                RpcFailureKind::BadAnswer,
                status as i64,
                format!(
                    "{method}: HTTP {status} from {authority} is not JSON-RPC ({e}): {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            )
        })?;
        match json.get_mut("error").map(Value::take) {
            Some(error) if !error.is_null() => Err((
                RpcFailureKind::RpcError,
                error["code"].as_i64().unwrap_or(0),
                format!(
                    "{method}: bitcoind answered error {}: {}",
                    error["code"],
                    error["message"].as_str().unwrap_or("(no message)")
                ),
            )),
            _ => match json.get_mut("result").map(Value::take) {
                Some(result) => Ok(result),
                None => Err((
                    RpcFailureKind::BadAnswer,
                    status as i64,
                    format!("{method}: the answer has neither result nor error"),
                )),
            },
        }
    }

    /// The `Authorization` header value; the cookie is read now, as bitcoind rewrites it at
    /// every start.
    fn credentials(&self) -> Result<String, (RpcFailureKind, i64, String)> {
        let pair = match &self.auth {
            Auth::UserPassword { user, password } => format!("{user}:{password}"),
            Auth::Cookie(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    (
                        RpcFailureKind::Unreachable,
                        0,
                        format!(
                            "cannot read the RPC cookie {}: {e} (bitcoind writes it when it starts: is it running with this -datadir, or give --rpc-cookie-file / --rpc-user)",
                            path.display()
                        ),
                    )
                })?
                .trim_end()
                .to_string(),
        };
        Ok(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ))
    }

    fn auth_hint(&self) -> String {
        match &self.auth {
            Auth::Cookie(path) => format!(
                "the cookie {} is not this bitcoind's (another datadir or chain?)",
                path.display()
            ),
            Auth::UserPassword { user, .. } => format!(
                "check --rpc-user {user:?} and --rpc-password against -rpcuser/-rpcpassword or -rpcauth, and that -rpcallowip admits this address"
            ),
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_http_host_and_port() {
        let e = Endpoint::parse("http://127.0.0.1:18443").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("127.0.0.1:18443", "/")
        );
        let e = Endpoint::parse("http://[::1]:8332/wallet/w").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("[::1]:8332", "/wallet/w")
        );
        assert!(Endpoint::parse("https://127.0.0.1:8332").is_err());
        assert!(Endpoint::parse("http://localhost").is_err());
    }

    #[tokio::test]
    async fn a_missing_cookie_is_unreachable_and_names_the_file() {
        let client = RpcClient::new(
            Endpoint::parse("http://127.0.0.1:1").unwrap(),
            Auth::Cookie("/nonexistent/.cookie".into()),
            Duration::from_secs(1),
            1 << 20,
        );
        let error = client.call("uptime", &Value::Null).await.unwrap_err();
        assert_eq!(error.kind, RpcFailureKind::Unreachable);
        assert!(error.message.contains("/nonexistent/.cookie"), "{error}");
    }

    /// A server that answers every connection with `response` (or, with `None`, never).
    async fn canned(response: Option<&'static str>) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    match response {
                        Some(response) => {
                            let _ = socket.write_all(response.as_bytes()).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap()
    }

    fn client(endpoint: Endpoint) -> RpcClient {
        let auth = Auth::UserPassword {
            user: "u".into(),
            password: "p".into(),
        };
        RpcClient::new(endpoint, auth, Duration::from_millis(500), 1 << 10)
    }

    #[tokio::test]
    async fn warm_up_timeouts_auth_and_oversized_answers_are_told_apart() {
        let body =
            r#"{"result":null,"error":{"code":-28,"message":"Loading block index…"},"id":1}"#;
        let warming = Box::leak(
            format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let error = client(canned(Some(warming)).await)
            .call("uptime", &Value::Null)
            .await
            .unwrap_err();
        assert!(error.is_warming_up(), "{error:?}");
        assert!(error.message.contains("Loading block index"), "{error}");

        let error = client(canned(None).await)
            .call("uptime", &Value::Null)
            .await
            .unwrap_err();
        assert_eq!(error.kind, RpcFailureKind::Timeout, "{error}");
        assert!(error.duration >= Duration::from_millis(500));

        let refused = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        let error = client(canned(Some(refused)).await)
            .call("uptime", &Value::Null)
            .await
            .unwrap_err();
        assert_eq!((error.kind, error.code), (RpcFailureKind::Auth, 401));
        assert!(error.message.contains("--rpc-user \"u\""), "{error}");

        let big = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n{}",
                "x".repeat(5000)
            )
            .into_boxed_str(),
        );
        let error = client(canned(Some(big)).await)
            .call("uptime", &Value::Null)
            .await
            .unwrap_err();
        assert_eq!(error.kind, RpcFailureKind::TooLarge, "{error}");

        let garbage = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnope";
        let error = client(canned(Some(garbage)).await)
            .call("uptime", &Value::Null)
            .await
            .unwrap_err();
        assert_eq!(error.kind, RpcFailureKind::BadAnswer, "{error}");
    }
}
