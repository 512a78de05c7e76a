//! Connecting to the NATS bus, the same way in the extractor and in every tool: one set of flags
//! (each with an environment variable), user/password, token, credentials or nkey
//! authentication, TLS, and a connection that never blocks start-up — it retries with backoff
//! in the background and says so in the log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::watch;

pub mod process;
#[cfg(feature = "test-server")]
pub mod test_server;

/// Largest message bitcoind can produce on the bus: a 4 MB block plus its envelope.
pub const LARGEST_EVENT_BYTES: usize = 4_000_000 + 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot read NATS credentials file {path}: {error}")]
    Credentials { path: String, error: std::io::Error },
    #[error("cannot read NATS nkey seed file {path}: {error}")]
    NkeySeed { path: String, error: std::io::Error },
    #[error("--nats-tls-cert and --nats-tls-key go together (got only {0})")]
    HalfClientCertificate(&'static str),
    #[error("NATS URL {url:?} is not usable: {error}")]
    Connect { url: String, error: String },
}

#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        env = "NODESCOPE_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// User name (with --nats-password).
    #[arg(long, env = "NODESCOPE_NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,
    #[arg(
        long,
        env = "NODESCOPE_NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user"
    )]
    pub nats_password: Option<String>,
    /// Authentication token.
    #[arg(long, env = "NODESCOPE_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// Credentials file (JWT + nkey seed), as `nsc` writes it.
    #[arg(long, env = "NODESCOPE_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// File holding an nkey seed (`SU…`).
    #[arg(long, env = "NODESCOPE_NATS_NKEY")]
    pub nats_nkey: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server with.
    #[arg(long, env = "NODESCOPE_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), with --nats-tls-key.
    #[arg(long, env = "NODESCOPE_NATS_TLS_CERT")]
    pub nats_tls_cert: Option<PathBuf>,
    #[arg(long, env = "NODESCOPE_NATS_TLS_KEY")]
    pub nats_tls_key: Option<PathBuf>,
    /// Refuse a connection without TLS.
    #[arg(long, env = "NODESCOPE_NATS_TLS_REQUIRED")]
    pub nats_tls_required: bool,
    /// Subject prefix of this client's inbox (default `_INBOX`): the round trips that confirm
    /// publishing and subscriptions go through it, so the NATS user needs publish and subscribe
    /// permission on `<prefix>.>`. Set it to a prefix the user may use when `_INBOX.>` is not.
    #[arg(long, env = "NODESCOPE_NATS_INBOX_PREFIX")]
    pub nats_inbox_prefix: Option<String>,
    /// First part of every subject: `<prefix>.<node>.<category>`.
    #[arg(long, env = "NODESCOPE_SUBJECT_PREFIX", default_value = "nodescope")]
    pub subject_prefix: String,
}

/// What the client has said of its link to the server, in the order it said it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link {
    /// 1 after the first connection, +1 for every reconnection.
    pub connects: u64,
    /// Connected, as of the latest connect or disconnect.
    pub up: bool,
    /// The server refused the latest connection attempt's credentials (an authorization
    /// violation, or a failed nkey signature): retrying will not help until they change.
    pub refused: bool,
    /// Connection attempts failed since the latest connection (or the start).
    pub failed_attempts: u64,
}

/// A client and its [`Link`]: a consumer confirms its subscriptions again on every new
/// connection. (async-nats' own `Statistics::connects` is never incremented in 0.51, and its
/// connection state turns to connected before the client has resubscribed.)
#[derive(Clone)]
pub struct Connection {
    pub client: Client,
    link: watch::Receiver<Link>,
    inbox_prefix: String,
    denied: Arc<std::sync::Mutex<Option<String>>>,
}

impl Connection {
    /// The link, to read now or to wait on for its next change.
    pub fn watch_link(&self) -> watch::Receiver<Link> {
        self.link.clone()
    }

    /// What to tell a person when the server refused this client's inbox (a permissions
    /// violation naming it): then no round trip can confirm anything. `None` otherwise.
    pub fn inbox_denied(&self) -> Option<String> {
        let violation = self.denied.lock().expect("denied").clone()?;
        let prefix = &self.inbox_prefix;
        Some(format!(
            "NATS refused this client's inbox ({violation}): nodescope confirms what it publishes \
             and subscribes with round trips through its inbox, so the NATS user needs publish \
             and subscribe permission on \"{prefix}.>\"; grant it, or set --nats-inbox-prefix \
             (NODESCOPE_NATS_INBOX_PREFIX) to a prefix the user may publish and subscribe to"
        ))
    }
}

/// Round trips through the server. `flush` only writes to the socket; a probe message to our
/// own subscription comes back only after the server has processed (and passed on) everything
/// the client wrote before it, the subscriptions async-nats resends first on a new connection
/// included.
pub struct RoundTrip {
    subject: async_nats::Subject,
    echoes: async_nats::Subscriber,
    sent: u64,
}

impl RoundTrip {
    pub async fn new(client: &Client) -> Result<RoundTrip, async_nats::SubscribeError> {
        let subject = async_nats::Subject::from(client.new_inbox());
        let echoes = client.subscribe(subject.clone()).await?;
        Ok(RoundTrip {
            subject,
            echoes,
            sent: 0,
        })
    }

    /// Sends the next probe; returns what its echo will carry.
    pub async fn probe(&mut self, client: &Client) -> Option<bytes::Bytes> {
        self.sent += 1;
        let probe = bytes::Bytes::copy_from_slice(&self.sent.to_le_bytes());
        client
            .publish(self.subject.clone(), probe.clone())
            .await
            .ok()
            .map(|()| probe)
    }

    /// The next echo, of this probe or a late one of an earlier probe; `None` once the client
    /// is closed.
    pub async fn next_echo(&mut self) -> Option<bytes::Bytes> {
        futures::StreamExt::next(&mut self.echoes)
            .await
            .map(|message| message.payload)
    }

    /// A probe's echo within `timeout`.
    pub async fn complete(&mut self, client: &Client, timeout: Duration) -> bool {
        let Some(probe) = self.probe(client).await else {
            return false;
        };
        let echoed = async {
            while let Some(echo) = self.next_echo().await {
                if echo == probe {
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(timeout, echoed).await.unwrap_or(false)
    }
}

/// Backoff between connection attempts: 100 ms doubling to 5 s.
pub fn backoff(attempt: usize) -> Duration {
    let exponent = attempt.saturating_sub(1).min(6) as u32;
    Duration::from_millis(100 * 2u64.pow(exponent)).min(Duration::from_secs(5))
}

impl NatsArgs {
    /// Which credential this process presents, as a person would look for it in its settings.
    pub fn credential(&self) -> String {
        let mut used = Vec::new();
        if let Some(user) = &self.nats_user {
            used.push(format!("user {user:?} with a password (--nats-user/--nats-password, NODESCOPE_NATS_USER/NODESCOPE_NATS_PASSWORD)"));
        }
        if self.nats_token.is_some() {
            used.push("a token (--nats-token, NODESCOPE_NATS_TOKEN)".to_string());
        }
        if let Some(path) = &self.nats_creds {
            used.push(format!(
                "the credentials file {} (--nats-creds, NODESCOPE_NATS_CREDS)",
                path.display()
            ));
        }
        if let Some(path) = &self.nats_nkey {
            used.push(format!(
                "the nkey seed in {} (--nats-nkey, NODESCOPE_NATS_NKEY)",
                path.display()
            ));
        }
        if used.is_empty() {
            "no credentials (none of --nats-user, --nats-token, --nats-creds, --nats-nkey is set)"
                .to_string()
        } else {
            used.join(" and ")
        }
    }

    /// Connects in the background: returns at once even when no server is up yet; the client
    /// buffers and keeps retrying (with [`backoff`]), logging the first failure and every
    /// tenth after it, and logs when the connection is up, lost and back.
    pub async fn connect(&self, client_name: &str) -> Result<Connection, BusError> {
        let mut options = ConnectOptions::new()
            .name(client_name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            // Every subject published on is made by `nodescope_proto::subjects`, which checks
            // its parts once; checking each of hundreds of thousands a second again was a
            // visible share of the extractor's cost per event.
            .skip_subject_validation(true);
        if let (Some(user), Some(password)) = (&self.nats_user, &self.nats_password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.nats_token {
            options = options.token(token.clone());
        }
        if let Some(path) = &self.nats_creds {
            options =
                options
                    .credentials_file(path)
                    .await
                    .map_err(|error| BusError::Credentials {
                        path: path.display().to_string(),
                        error,
                    })?;
        }
        if let Some(path) = &self.nats_nkey {
            let seed = std::fs::read_to_string(path).map_err(|error| BusError::NkeySeed {
                path: path.display().to_string(),
                error,
            })?;
            options = options.nkey(seed.trim().to_string());
        }
        if let Some(ca) = &self.nats_tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        match (&self.nats_tls_cert, &self.nats_tls_key) {
            (Some(cert), Some(key)) => {
                options = options.add_client_certificate(cert.clone(), key.clone())
            }
            (Some(_), None) => return Err(BusError::HalfClientCertificate("--nats-tls-cert")),
            (None, Some(_)) => return Err(BusError::HalfClientCertificate("--nats-tls-key")),
            (None, None) => {}
        }
        if self.nats_tls_required {
            options = options.require_tls(true);
        }
        let inbox_prefix = self
            .nats_inbox_prefix
            .clone()
            .unwrap_or_else(|| "_INBOX".to_string());
        options = options.custom_inbox_prefix(&inbox_prefix);
        let denied = Arc::new(std::sync::Mutex::new(None));

        let url = self.nats_url.clone();
        // async-nats asks for the delay before every attempt, the first of a series included:
        // that one follows no failure, so it goes at once. Failures are logged by the event
        // callback, which alone learns why an attempt failed.
        options = options.reconnect_delay_callback(|attempt| match attempt.saturating_sub(1) {
            0 => Duration::ZERO,
            failures => backoff(failures),
        });
        let (link_sender, link) = watch::channel(Link::default());
        let link_sender = Arc::new(link_sender);
        let event_url = url.clone();
        let credential = Arc::new(self.credential());
        let denied_inbox = (denied.clone(), inbox_prefix.clone());
        options = options.event_callback(move |event| {
            let url = event_url.clone();
            let link_sender = link_sender.clone();
            let credential = credential.clone();
            let (denied, inbox_prefix) = denied_inbox.clone();
            async move {
                match event {
                    Event::Connected => {
                        let mut again = false;
                        link_sender.send_modify(|link| {
                            again = link.connects > 0;
                            link.connects += 1;
                            link.up = true;
                            link.refused = false;
                            link.failed_attempts = 0;
                        });
                        tracing::info!(%url, "{}", if again { "reconnected to NATS" } else { "connected to NATS" });
                    }
                    Event::Disconnected => {
                        link_sender.send_modify(|link| link.up = false);
                        tracing::warn!(%url, "lost the NATS connection; reconnecting")
                    }
                    Event::SlowConsumer(sid) => tracing::warn!(sid, "NATS says this client is a slow consumer: messages were dropped by the server"),
                    Event::ServerError(async_nats::ServerError::Other(text))
                        if text.to_lowercase().contains("permissions violation") =>
                    {
                        if text.contains(&format!("{inbox_prefix}.")) {
                            *denied.lock().expect("denied") = Some(text.clone());
                        }
                        tracing::error!(
                            %url,
                            "NATS refused an operation for lack of permission ({text}): this process presented {credential}; grant that permission to the user"
                        );
                    }
                    Event::ServerError(error) => tracing::warn!(%error, "NATS server error"),
                    // A failed connection attempt: async-nats says why only here.
                    Event::ClientError(async_nats::ClientError::Other(reason)) => {
                        let refused = refused_credentials(&reason);
                        let mut failed = 0;
                        link_sender.send_modify(|link| {
                            link.refused = refused;
                            link.failed_attempts += 1;
                            failed = link.failed_attempts;
                        });
                        if failed == 1 || failed % 10 == 0 {
                            let retry = backoff(failed as usize).as_millis();
                            if refused {
                                tracing::error!(
                                    %url,
                                    failed_attempts = failed,
                                    "NATS refused the credentials ({reason}): this process presented {credential}; \
                                     set the user/password, token, credentials file or nkey the server's authorization \
                                     allows; retrying every {retry} ms at most, buffering meanwhile"
                                );
                            } else {
                                tracing::warn!(
                                    %url,
                                    failed_attempts = failed,
                                    "NATS is not reachable ({reason}); retrying every {retry} ms at most, buffering meanwhile"
                                );
                            }
                        }
                    }
                    Event::ClientError(error) => tracing::warn!(%error, "NATS client error"),
                    other => tracing::info!(event = %other, "NATS"),
                }
            }
        });
        let client = options
            .connect(url.as_str())
            .await
            .map_err(|error| BusError::Connect {
                url,
                error: error.to_string(),
            })?;
        Ok(Connection {
            client,
            link,
            inbox_prefix,
            denied,
        })
    }
}

/// Whether async-nats' reason for a failed connection attempt is the server refusing the
/// credentials (its `ConnectErrorKind` texts for an authorization violation and a failed nkey
/// or JWT signature).
fn refused_credentials(reason: &str) -> bool {
    matches!(reason, "authorization violation" | "failed signing nonce")
}

/// Whether a server's `max_payload` is too small for the largest events (4 MB blocks).
pub fn payload_limit_too_small(max_payload: usize) -> bool {
    max_payload < LARGEST_EVENT_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_seconds() {
        let delays: Vec<u128> = (1..=9).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn default_nats_payload_limit_is_too_small_for_blocks() {
        assert!(payload_limit_too_small(1024 * 1024));
        assert!(!payload_limit_too_small(8 * 1024 * 1024));
    }
}
