//! Prometheus exposition for every tool that serves `/metrics`: OpenMetrics (as
//! prometheus-client writes it) to clients that ask for it, as Prometheus does, and the classic
//! Prometheus text format (0.0.4) to the rest (curl, promtool). The two differ where the classic
//! parsers would stumble: a counter's HELP and TYPE name the sample (`x_total`, not the family
//! `x`), and there are no `# UNIT` or `# EOF` lines.

use std::collections::HashSet;

use hyper::body::Incoming;
use hyper::header::ACCEPT;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;

use crate::http::{response, Body};
use crate::Health;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer to a `GET /metrics`, in the format the request accepts.
pub fn metrics_response<B>(request: &Request<B>, registry: &Registry) -> Response<Body> {
    let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let openmetrics = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
    match exposition(registry, openmetrics) {
        Ok((content_type, body)) => response(StatusCode::OK, content_type, body),
        Err(error) => response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("cannot encode the metrics: {error}\n"),
        ),
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The answer of a tool that serves `/metrics` (when it has a registry) and `/healthz` (200
/// while NATS is connected and subscribed, 503 with the reason otherwise); 404 for anything else.
pub fn metrics_and_health(
    request: &Request<Incoming>,
    registry: Option<&Registry>,
    health: &Health,
) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return response(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n");
    }
    match (request.uri().path(), registry) {
        ("/metrics", Some(registry)) => metrics_response(request, registry),
        ("/healthz", _) if health.receiving() => response(StatusCode::OK, TEXT, "ok\n"),
        ("/healthz", _) => response(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "not receiving: connecting to NATS and subscribing\n",
        ),
        _ => response(
            StatusCode::NOT_FOUND,
            TEXT,
            if registry.is_some() {
                "not found: try /metrics or /healthz\n"
            } else {
                "not found: try /healthz\n"
            },
        ),
    }
}

/// The registry's metrics as (content type, body): OpenMetrics, or the classic text format.
pub fn exposition(
    registry: &Registry,
    openmetrics: bool,
) -> Result<(&'static str, String), std::fmt::Error> {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    Ok(if openmetrics {
        (OPENMETRICS, body)
    } else {
        (CLASSIC, classic(&body))
    })
}

/// prometheus-client's OpenMetrics text in the classic format (see the module comment).
fn classic(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|kind| Some((kind, line.strip_prefix(kind)?)));
        match descriptor {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{kind}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Unit;

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let mut registry = Registry::with_prefix("x");
        let counter = Counter::<u64>::default();
        counter.inc();
        registry.register_with_unit("sent", "Bytes sent", Unit::Bytes, counter);
        registry.register("open", "Open things", Gauge::<i64>::default());
        let (content_type, openmetrics) = exposition(&registry, true).unwrap();
        assert_eq!(content_type, OPENMETRICS);
        assert_eq!(
            openmetrics,
            "# HELP x_sent_bytes Bytes sent.\n# TYPE x_sent_bytes counter\n# UNIT x_sent_bytes bytes\n\
             x_sent_bytes_total 1\n# HELP x_open Open things.\n# TYPE x_open gauge\nx_open 0\n# EOF\n"
        );
        let (content_type, classic) = exposition(&registry, false).unwrap();
        assert_eq!(content_type, CLASSIC);
        assert_eq!(
            classic,
            "# HELP x_sent_bytes_total Bytes sent.\n# TYPE x_sent_bytes_total counter\n\
             x_sent_bytes_total 1\n# HELP x_open Open things.\n# TYPE x_open gauge\nx_open 0\n"
        );
    }
}
