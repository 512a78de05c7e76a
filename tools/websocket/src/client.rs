//! HTTP routes and one websocket client's session: its filters (from the URL, changed later by
//! a subscribe message), its events read from the broadcast at its own pace, state frames for
//! pages, and what happens when it is too slow.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use nodescope_consumer::exposition::metrics_response;
use nodescope_consumer::http::{response, Body};
use nodescope_proto::Category;
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::feed::{Feed, States, Wanted};

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
        match upgrade.await {
            Ok(upgraded) => {
                let socket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                session(socket, filter, feed).await;
            }
            Err(error) => tracing::debug!(%error, "websocket upgrade failed"),
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

/// What a client wants: nodes and categories (all when `None`), events and/or state frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub nodes: Option<BTreeSet<String>>,
    pub categories: Option<BTreeSet<Category>>,
    pub events: bool,
    pub state: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    #[serde(rename = "type")]
    _type: String,
    nodes: Option<Vec<String>>,
    categories: Option<Vec<String>>,
    events: Option<bool>,
    state: Option<bool>,
}

fn categories(names: impl IntoIterator<Item = String>) -> Result<BTreeSet<Category>, String> {
    names
        .into_iter()
        .map(|name| name.parse::<Category>().map_err(|e| e.to_string()))
        .collect()
}

fn flag(value: &str, name: &str) -> Result<bool, String> {
    match value {
        "1" | "true" | "yes" | "" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        other => Err(format!("{name}={other:?}: use 1 or 0")),
    }
}

impl Filter {
    /// `nodes=a,b&categories=mempool,validation&events=1&state=0` (events on, state off by
    /// default; the page asks for state).
    pub fn from_query(query: &str) -> Result<Filter, String> {
        let mut filter = Filter {
            nodes: None,
            categories: None,
            events: true,
            state: false,
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let list = || {
                value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            match key.as_ref() {
                "nodes" | "node" => filter.nodes = Some(list().into_iter().collect()),
                "categories" | "category" => filter.categories = Some(categories(list())?),
                "events" => filter.events = flag(&value, "events")?,
                "state" => filter.state = flag(&value, "state")?,
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: use nodes, categories, events, state"
                    ))
                }
            }
        }
        Ok(filter)
    }

    /// Applies a subscribe message; what it leaves out stays as it was.
    fn update(&mut self, text: &str) -> Result<(), String> {
        let subscribe: Subscribe = serde_json::from_str(text).map_err(|e| {
            format!("not a subscribe message ({e}): send {{\"type\":\"subscribe\",\"nodes\":[…],\"categories\":[…],\"events\":true,\"state\":false}}")
        })?;
        if subscribe._type != "subscribe" {
            return Err(format!(
                "unknown message type {:?}: only \"subscribe\"",
                subscribe._type
            ));
        }
        if let Some(nodes) = subscribe.nodes {
            self.nodes = (!nodes.is_empty()).then(|| nodes.into_iter().collect());
        }
        if let Some(names) = subscribe.categories {
            self.categories = if names.is_empty() {
                None
            } else {
                Some(categories(names)?)
            };
        }
        if let Some(events) = subscribe.events {
            self.events = events;
        }
        if let Some(state) = subscribe.state {
            self.state = state;
        }
        Ok(())
    }

    /// The categories whose events this client takes (none when it takes state only).
    fn event_categories(&self) -> Vec<Category> {
        match (&self.categories, self.events) {
            (_, false) => Vec::new(),
            (None, true) => Category::ALL.to_vec(),
            (Some(categories), true) => categories.iter().copied().collect(),
        }
    }

    fn wants_node(&self, node: &str) -> bool {
        self.nodes.as_ref().is_none_or(|nodes| nodes.contains(node))
    }

    fn wants(&self, node: &str, category: Category) -> bool {
        self.wants_node(node)
            && self
                .categories
                .as_ref()
                .is_none_or(|c| c.contains(&category))
    }

    fn describe(&self) -> Utf8Bytes {
        serde_json::json!({
            "type": "subscribed",
            "nodes": self.nodes,
            "categories": self.categories.as_ref().map(|c| c.iter().map(|c| c.as_str()).collect::<Vec<_>>()),
            "events": self.events,
            "state": self.state,
        })
        .to_string()
        .into()
    }
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A write to the client: one that takes nothing within `timeout` means the client stalled.
async fn within<E>(
    timeout: std::time::Duration,
    write: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), Stop> {
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => Err(Stop::Stalled),
    }
}

/// Why a session ended early.
enum Stop {
    /// The client went away or the connection failed.
    Gone,
    /// A write did not complete within the send timeout.
    Stalled,
}

struct Session {
    sink: futures::stream::SplitSink<Socket, Message>,
    feed: Arc<Feed>,
    filter: Filter,
    /// State frame versions already sent, by node.
    sent: HashMap<String, u64>,
}

impl Session {
    /// Queues `message` (which may already write, when the socket's buffer is full), and with
    /// `flush` sends everything queued.
    async fn write(&mut self, message: Message, flush: bool) -> Result<(), Stop> {
        let timeout = self.feed.send_timeout;
        within(timeout, self.sink.feed(message)).await?;
        if flush {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        within(self.feed.send_timeout, self.sink.flush()).await
    }

    /// The state frames of the wanted nodes that changed since they were last sent (all of
    /// them the first time: the snapshot), then the feed's counters.
    async fn send_states(&mut self, states: &States) -> Result<(), Stop> {
        if !self.filter.state {
            return Ok(());
        }
        for (node, (version, text)) in &states.nodes {
            if self.filter.wants_node(node) && self.sent.get(node) != Some(version) {
                self.sent.insert(node.clone(), *version);
                self.write(Message::Text(text.clone()), false).await?;
            }
        }
        if !states.feed.is_empty() {
            self.write(Message::Text(states.feed.clone()), false)
                .await?;
        }
        self.flush().await
    }
}

async fn session(socket: Socket, filter: Filter, feed: Arc<Feed>) {
    feed.counters.clients.fetch_add(1, Ordering::Relaxed);
    feed.counters.connections.fetch_add(1, Ordering::Relaxed);
    let (sink, mut incoming) = socket.split();
    let mut session = Session {
        sink,
        feed: feed.clone(),
        filter,
        sent: HashMap::new(),
    };
    let mut _wanted = Wanted::new(&feed.demand, session.filter.event_categories());
    let mut events = session.filter.events.then(|| feed.events.subscribe());
    let mut states = feed.states.subscribe();
    let outcome: Result<(), Stop> = async {
        session.write(Message::Text(session.filter.describe()), true).await?;
        let snapshot = states.borrow_and_update().clone();
        session.send_states(&snapshot).await?;
        loop {
            tokio::select! {
                _ = feed.stopping.cancelled() => {
                    let close = CloseFrame { code: CloseCode::Away, reason: "the websocket tool is stopping".into() };
                    let _ = session.write(Message::Close(Some(close)), true).await;
                    return Ok(());
                }
                message = incoming.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let before = session.filter.clone();
                        let reply = match session.filter.update(&text) {
                            Ok(()) => {
                                // Rendered from now on, before the client hears it is subscribed.
                                _wanted = Wanted::new(&feed.demand, session.filter.event_categories());
                                session.filter.describe()
                            }
                            Err(error) => serde_json::json!({"type": "error", "message": error}).to_string().into(),
                        };
                        session.write(Message::Text(reply), true).await?;
                        if session.filter.events != before.events {
                            events = session.filter.events.then(|| feed.events.subscribe());
                        }
                        if session.filter.state && (!before.state || session.filter.nodes != before.nodes) {
                            session.sent.clear();
                            let snapshot = states.borrow_and_update().clone();
                            session.send_states(&snapshot).await?;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Err(Stop::Gone),
                    Some(Ok(_)) => {} // pings are answered by tungstenite
                },
                received = async { events.as_mut().expect("polled only with events").recv().await }, if events.is_some() => {
                    let receiver = events.as_mut().expect("events are on");
                    let mut next = received;
                    // Send what is waiting in one flush.
                    for _ in 0..256 {
                        match next {
                            Ok(frame) => {
                                if session.filter.wants(&frame.node, frame.category) {
                                    session.write(Message::Text(frame.text.clone()), false).await?;
                                }
                            }
                            Err(RecvError::Lagged(dropped)) => {
                                feed.counters.lagged_events.fetch_add(dropped, Ordering::Relaxed);
                                tracing::debug!(dropped, "a websocket client fell behind: oldest events dropped for it");
                                let notice = serde_json::json!({"type": "lagged", "dropped": dropped}).to_string();
                                session.write(Message::Text(notice.into()), false).await?;
                            }
                            Err(RecvError::Closed) => return Ok(()),
                        }
                        next = match receiver.try_recv() {
                            Ok(frame) => Ok(frame),
                            Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Closed) => Err(RecvError::Closed),
                        };
                    }
                    session.flush().await?;
                }
                changed = states.changed(), if session.filter.state => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let latest = states.borrow_and_update().clone();
                    session.send_states(&latest).await?;
                }
            }
        }
    }
    .await;
    if let Err(Stop::Stalled) = outcome {
        // What it had not received yet is lost to it too.
        let mut lost = 0;
        if let Some(receiver) = events.as_mut() {
            loop {
                match receiver.try_recv() {
                    Ok(_) => lost += 1,
                    Err(TryRecvError::Lagged(n)) => lost += n,
                    Err(TryRecvError::Empty) | Err(TryRecvError::Closed) => break,
                }
            }
        }
        feed.counters
            .lagged_events
            .fetch_add(lost, Ordering::Relaxed);
        feed.counters
            .stalled_disconnects
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            timeout_s = feed.send_timeout.as_secs_f64(),
            lost,
            "disconnected a websocket client that stopped reading; events it had not received are lost to it"
        );
    }
    feed.counters.clients.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_come_from_the_url_and_change_with_subscribe_messages() {
        let mut filter = Filter::from_query("nodes=a,b&categories=mempool,net.message").unwrap();
        assert_eq!(
            filter.nodes,
            Some(["a".to_string(), "b".to_string()].into())
        );
        assert!(filter.wants("a", Category::Mempool));
        assert!(!filter.wants("c", Category::Mempool));
        assert!(!filter.wants("a", Category::Validation));
        assert!(filter.events && !filter.state);

        filter
            .update(r#"{"type":"subscribe","categories":["validation"],"state":true}"#)
            .unwrap();
        assert!(filter.wants("b", Category::Validation));
        assert!(!filter.wants("b", Category::Mempool));
        assert!(filter.state);
        filter.update(r#"{"type":"subscribe","nodes":[]}"#).unwrap();
        assert!(filter.wants("z", Category::Validation));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        assert!(Filter::from_query("categories=mempol")
            .unwrap_err()
            .contains("unknown category \"mempol\""));
        assert!(Filter::from_query("colour=red")
            .unwrap_err()
            .contains("unknown parameter \"colour\""));
        let mut filter = Filter::from_query("").unwrap();
        assert!(filter
            .update("{")
            .unwrap_err()
            .contains("not a subscribe message"));
        assert!(filter
            .update(r#"{"type":"unsubscribe"}"#)
            .unwrap_err()
            .contains("only \"subscribe\""));
    }
}
