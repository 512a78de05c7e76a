//! The tools' HTTP listener (metrics' `/metrics`, the websocket tool's page and feed, every
//! tool's `/healthz`): bind with an error that says what to do, then accept connections until
//! dropped, each served by hyper (HTTP/1.1, with upgrades for websockets).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub type Body = Full<Bytes>;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {error} (is another instance running? choose another address with {flag})")]
pub struct BindError {
    pub address: SocketAddr,
    pub flag: &'static str,
    pub error: std::io::Error,
}

/// Binds `address`; `flag` names the option that sets it, for the error message.
pub async fn bind(address: SocketAddr, flag: &'static str) -> Result<TcpListener, BindError> {
    TcpListener::bind(address).await.map_err(|error| BindError {
        address,
        flag,
        error,
    })
}

/// Serves every connection with `handle` until the future is dropped. A failed connection only
/// ends that connection.
pub async fn serve<H, F>(listener: TcpListener, handle: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // E.g. out of file descriptors: wait a little rather than spin.
                tracing::warn!(%error, "cannot accept an HTTP connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = handle(request);
                async move { Ok::<_, Infallible>(response.await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
}

/// [`serve`] in a task of its own, stopped when the handle is dropped (however the tool's run
/// ends: a spawned task would otherwise outlive it).
pub fn spawn<H, F>(listener: TcpListener, handle: H) -> Serving
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    Serving(tokio::spawn(serve(listener, handle)))
}

/// A server started by [`spawn`]; dropping it stops the server.
pub struct Serving(tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response with a body and its content type.
pub fn response(
    status: hyper::StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("a valid response")
}
