//! The HTTP routes: the live page, `/healthz`, `/metrics`, and `/ws`, whose upgrade starts a
//! client's session.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use nodescope_consumer::exposition::metrics_response;
use nodescope_consumer::http::{response, Body};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::feed::Feed;
use crate::filter::Filter;
use crate::session;

/// The live page: one file, no external resources.
const PAGE: &str = include_str!("page.html");

pub async fn respond(request: Request<Incoming>, feed: Arc<Feed>) -> Response<Body> {
    let path = request.uri().path();
    let upgrade = request
        .headers()
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    match (request.method(), path) {
        (&Method::GET, "/ws") | (&Method::GET, "/") if upgrade => {
            upgrade_to_websocket(request, feed)
        }
        (&Method::GET, "/") => response(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        (&Method::GET, "/healthz") => healthz(&feed),
        (&Method::GET, "/metrics") => metrics_response(&request, &feed.registry),
        (&Method::GET, "/ws") => response(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "this is a websocket endpoint: connect with a websocket client\n",
        ),
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /, /ws, /healthz or /metrics\n",
        ),
    }
}

fn healthz(feed: &Feed) -> Response<Body> {
    let receiving = feed.health.receiving();
    let body = serde_json::json!({
        "status": if receiving { "ok" } else { "not receiving: connecting to NATS and subscribing" },
        "counters": &*feed.counters,
    })
    .to_string();
    let status = if receiving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    response(status, "application/json", body)
}

/// A browser's Origin must be the page's own (its Host) or an allowed one; programs send none.
fn origin_allowed(request: &Request<Incoming>, allowed: &[String]) -> bool {
    let Some(origin) = request
        .headers()
        .get("origin")
        .and_then(|o| o.to_str().ok())
    else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = request.headers().get("host").and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, host)| host);
    host.is_some() && origin_host == host
}

fn upgrade_to_websocket(mut request: Request<Incoming>, feed: Arc<Feed>) -> Response<Body> {
    if !origin_allowed(&request, &feed.allowed_origins) {
        feed.counters
            .refused_origins
            .fetch_add(1, Ordering::Relaxed);
        let origin = request.headers().get("origin").cloned();
        tracing::warn!(
            ?origin,
            "refused a websocket from another origin (allow it with --allowed-origins)"
        );
        return response(StatusCode::FORBIDDEN, "text/plain", "origin not allowed\n");
    }
    let key = request.headers().get("sec-websocket-key").cloned();
    let version_ok = request
        .headers()
        .get("sec-websocket-version")
        .is_some_and(|v| v == "13");
    let Some(key) = key.filter(|_| version_ok) else {
        return response(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "a websocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13\n",
        );
    };
    let filter = match Filter::from_query(request.uri().query().unwrap_or("")) {
        Ok(filter) => filter,
        Err(error) => return response(StatusCode::BAD_REQUEST, "text/plain", format!("{error}\n")),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade failed");
                return;
            }
        };
        // The session writes to the TCP socket itself (see outbox.rs); the server's connections
        // are plain TCP.
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => session::run(parts.io.into_inner(), &parts.read_buf, filter, feed).await,
            Err(_) => tracing::error!(
                "a websocket upgrade on a connection that is not plain TCP: not served"
            ),
        }
    });
    let mut accepted = Response::new(Body::default());
    *accepted.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = accepted.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .expect("base64 is a valid header"),
    );
    accepted
}
