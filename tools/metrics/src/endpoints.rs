//! What the exporter answers over the consumer layer's HTTP listener: `/metrics` (in the format
//! the client accepts, see `nodescope_consumer::exposition`), `/healthz` (200 while NATS is
//! connected, 503 with the reason otherwise), 404 for anything else.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use nodescope_consumer::exposition::metrics_response;
use nodescope_consumer::http::{response, Body};
use nodescope_consumer::Health;
use prometheus_client::registry::Registry;

const TEXT: &str = "text/plain; charset=utf-8";

pub fn respond(
    request: &Request<Incoming>,
    registry: &Arc<Registry>,
    health: &Health,
) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return response(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n");
    }
    match request.uri().path() {
        "/metrics" => metrics_response(request, registry),
        "/healthz" if health.receiving() => response(StatusCode::OK, TEXT, "ok\n"),
        "/healthz" => response(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "not receiving: connecting to NATS and subscribing\n",
        ),
        _ => response(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /metrics or /healthz\n",
        ),
    }
}
