//! The tool's loop: announcements in from the bus, checks started as the schedule allows, each
//! result counted, published and (with `--csv`) written.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::p2p::Magic;
use nodescope_consumer::{Consumer, Health, Item};
use nodescope_proto::event::Payload;
use nodescope_proto::p2p::wire::magic_of_chain;
use nodescope_proto::{subjects::Category, ConnectivityResult, ExtractorKind, V2Support};
use nodescope_publish::{new_run_id, Envelope, Publisher};
use prost::Message;
use tokio::task::JoinSet;

use crate::intake::{Announced, Intake, Intaken};
use crate::metrics::{
    AgeLabels, CheckLabels, Metrics, NetworkLabels, NodeLabels, NodeNetworkLabels, PublisherLabels,
    SeenLabels, SkipLabels, V2Labels,
};
use crate::probe::{probe, Dial, ProbeConfig, ProbeOutcome};
use crate::report::{self, Csv};
use crate::schedule::{Admission, Job, Limits, Schedule};
use crate::target::{self, Net, Policy};
use crate::Args;

#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    #[error(transparent)]
    Consumer(#[from] nodescope_consumer::ConsumerError),
    #[error(transparent)]
    Bus(#[from] nodescope_bus::BusError),
    #[error("cannot write --csv {path}: {error}")]
    Csv { path: String, error: std::io::Error },
    #[error("the NATS connection closed for good")]
    NatsClosed,
    #[error("{0}")]
    Publish(String),
}

pub struct Checker {
    consumer: Consumer,
    publisher: Publisher,
    prefix: String,
    run_id: u64,
    envelopes: HashMap<String, Envelope>,
    intake: Intake,
    include_getaddr: bool,
    policy: Policy,
    probe: ProbeConfig,
    default_chain: String,
    schedule: Schedule,
    metrics: Metrics,
    csv: Option<Csv>,
    totals: Totals,
}

/// A finished check.
struct Done {
    job: Job,
    dial: Dial,
    chain: String,
    outcome: ProbeOutcome,
}

impl Checker {
    pub async fn start(args: &Args, metrics: Metrics) -> Result<Checker, CheckerError> {
        let csv = match &args.csv {
            Some(path) => Some(Csv::create(path).map_err(|error| CheckerError::Csv {
                path: path.display().to_string(),
                error,
            })?),
            None => None,
        };
        let consumer = Consumer::subscribe(
            &args.consumer,
            "connectivity-check",
            &[Category::NetMessage],
        )
        .await?;
        let connection = args
            .consumer
            .nats
            .connect("connectivity-check-publisher")
            .await?;
        let publisher = Publisher::start(connection, args.nats_buffer_mib.max(1) * 1024 * 1024);
        let limits = Limits {
            concurrency: args.concurrency as usize,
            max_per_minute: args.max_checks_per_minute,
            queue_size: args.queue_size,
            recheck_after: args.recheck_after,
            cache_size: args.cache_size,
        };
        let run_id = new_run_id();
        tracing::info!(
            chain = %args.chain,
            concurrency = args.concurrency,
            max_checks_per_minute = args.max_checks_per_minute,
            recheck_after = ?args.recheck_after,
            tor_proxy = ?args.tor_proxy,
            i2p_proxy = ?args.i2p_proxy,
            allow_private = args.allow_private,
            run_id,
            "checking announced addresses"
        );
        Ok(Checker {
            consumer,
            publisher,
            prefix: args.consumer.nats.subject_prefix.clone(),
            run_id,
            envelopes: HashMap::new(),
            intake: Intake::default(),
            include_getaddr: args.getaddr_responses,
            policy: Policy {
                allow_private: args.allow_private,
                skip_low_ports: args.skip_low_ports,
                tor_proxy: args.tor_proxy,
                i2p_proxy: args.i2p_proxy,
            },
            probe: ProbeConfig {
                magic: magic_of_chain(&args.chain).unwrap_or(Magic::BITCOIN),
                connect_timeout: args.connect_timeout,
                proxy_connect_timeout: args.proxy_connect_timeout,
                handshake_timeout: args.handshake_timeout,
                try_v2: args.try_v2,
                user_agent: crate::USER_AGENT.to_string(),
            },
            default_chain: args.chain.clone(),
            schedule: Schedule::new(limits, Instant::now()),
            metrics,
            csv,
            totals: Totals::default(),
        })
    }

    pub fn health(&self) -> Health {
        self.consumer.health()
    }

    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut checks: JoinSet<Done> = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut summary = tokio::time::interval(SUMMARY_INTERVAL);
        summary.tick().await;
        tokio::pin!(shutdown);
        loop {
            let next_start = self.schedule.next_start();
            tokio::select! {
                _ = &mut shutdown => break,
                item = self.consumer.next() => match item {
                    Some(item) => self.receive(item),
                    None => return Err(CheckerError::NatsClosed.into()),
                },
                Some(done) = checks.join_next(), if !checks.is_empty() => match done {
                    Ok(done) => self.finish(done),
                    Err(error) => tracing::error!(%error, "a check task failed"),
                },
                _ = tokio::time::sleep_until(next_start.unwrap_or_else(Instant::now).into()), if next_start.is_some() => {
                    self.start_checks(&mut checks);
                }
                _ = summary.tick() => self.totals.log(),
                _ = tick.tick() => {
                    self.publisher_gauges();
                    if let Some(failure) = self.publisher.failure() {
                        return Err(CheckerError::Publish(failure).into());
                    }
                }
            }
            self.update_gauges();
        }
        // Checks under way are abandoned (their sockets close); what was found is delivered.
        checks.shutdown().await;
        let stats = self.publisher.close(Duration::from_secs(2)).await;
        tracing::info!(
            published = stats.published,
            undelivered = stats.queued,
            dropped = stats.dropped_queue_full + stats.dropped_too_large,
            "stopped"
        );
        Ok(())
    }

    fn receive(&mut self, item: Item) {
        let received = match item {
            Item::Event(received) => received,
            Item::Replayed(_) => return,
            Item::Undecodable(undecodable) => {
                let node = self
                    .metrics
                    .node(undecodable.node.as_deref().unwrap_or("unknown"));
                self.metrics
                    .undecodable
                    .get_or_create(&NodeLabels { node })
                    .inc();
                return;
            }
        };
        match self.intake.take(&received.event) {
            Intaken::Nothing => {}
            Intaken::Undecodable => {
                let node = self.metrics.node(&received.event.node_id);
                self.metrics
                    .undecodable
                    .get_or_create(&NodeLabels { node })
                    .inc();
            }
            Intaken::Addresses(addresses) => {
                let now = Instant::now();
                for announced in addresses {
                    self.admit(announced, now);
                }
            }
        }
    }

    fn admit(&mut self, announced: Announced, now: Instant) {
        let node = self.metrics.node(&announced.node);
        let net = Net::of(&announced.address);
        let network = net.label();
        self.totals.add("addresses", "seen");
        self.metrics
            .seen
            .get_or_create(&SeenLabels {
                node: node.clone(),
                network,
                addr_version: announced.addr_version.label(),
                announcer: conn_type_label(announced.announced_by.conn_type),
            })
            .inc();
        if let Some(age) = announced.age_s() {
            let direction = if age >= 0 { "past" } else { "future" };
            self.metrics
                .address_age_seconds
                .get_or_create(&AgeLabels {
                    node: node.clone(),
                    direction,
                })
                .observe(age.unsigned_abs() as f64);
        }
        let skip = |metrics: &Metrics, totals: &mut Totals, reason| {
            totals.add("skipped", reason);
            metrics
                .skipped
                .get_or_create(&SkipLabels {
                    node: node.clone(),
                    network,
                    reason,
                })
                .inc();
        };
        let classified = target::classify(&announced.address, &self.policy);
        let node_network = NodeNetworkLabels {
            node: node.clone(),
            network,
        };
        if classified.private {
            self.metrics
                .private_announced
                .get_or_create(&node_network)
                .inc();
        }
        let target = match classified.verdict {
            Ok(target) => target,
            Err(reason) => return skip(&self.metrics, &mut self.totals, reason.label()),
        };
        if announced.getaddr_response && !self.include_getaddr {
            return skip(&self.metrics, &mut self.totals, "getaddr_response");
        }
        if target.dial(&self.policy).is_none() {
            // Nothing to dial, but the address was announced: a result, once per TTL.
            if self.schedule.cached(&target, now).is_some() {
                self.totals.add("addresses", "cached");
                self.metrics.cached.get_or_create(&node_network).inc();
                return;
            }
            let outcome = report::unreachable(target.unreachable_reason());
            self.schedule.remember(target, outcome.result, now);
            let chain = self.chain_of(&announced);
            self.record(&announced, None, &chain, &outcome);
            return;
        }
        let (family, total) = match self.schedule.admit(Job { target, announced }, now) {
            Admission::Queued => (&self.metrics.queued, "queued"),
            Admission::Cached(_) => (&self.metrics.cached, "cached"),
            Admission::Duplicate => (&self.metrics.duplicates, "duplicates"),
            Admission::QueueFull => (&self.metrics.dropped_queue_full, "dropped (queue full)"),
        };
        self.totals.add("addresses", total);
        family.get_or_create(&node_network).inc();
    }

    fn chain_of(&self, announced: &Announced) -> String {
        if announced.chain.is_empty() || magic_of_chain(&announced.chain).is_none() {
            self.default_chain.clone()
        } else {
            announced.chain.clone()
        }
    }

    fn start_checks(&mut self, checks: &mut JoinSet<Done>) {
        while let Some(job) = self.schedule.start(Instant::now()) {
            let Some(dial) = job.target.dial(&self.policy) else {
                continue; // admitted only with a dial
            };
            let chain = self.chain_of(&job.announced);
            let mut config = self.probe.clone();
            config.magic = magic_of_chain(&chain).unwrap_or(config.magic);
            checks.spawn(async move {
                let outcome = probe(&dial, &config).await;
                Done {
                    job,
                    dial,
                    chain,
                    outcome,
                }
            });
        }
    }

    fn finish(&mut self, done: Done) {
        let Done {
            job,
            dial,
            chain,
            outcome,
        } = done;
        self.schedule
            .finish(job.target.clone(), outcome.result, Instant::now());
        self.record(&job.announced, Some(&dial), &chain, &outcome);
        tracing::debug!(target = %job.target, result = outcome.result.label(), detail = %outcome.detail, "checked");
    }

    /// Counts, publishes and writes one result.
    fn record(
        &mut self,
        announced: &Announced,
        dial: Option<&Dial>,
        chain: &str,
        outcome: &ProbeOutcome,
    ) {
        let node = self.metrics.node(&announced.node);
        let net = Net::of(&announced.address);
        let network = net.label();
        self.totals.add("checks", outcome.result.label());
        self.metrics
            .checks
            .get_or_create(&CheckLabels {
                node: node.clone(),
                network,
                result: outcome.result.label(),
            })
            .inc();
        if let Some(connect) = outcome.connect {
            self.metrics
                .connect_seconds
                .get_or_create(&NetworkLabels { network })
                .observe(connect.as_secs_f64());
        }
        if let (ConnectivityResult::Reachable, Some(handshake)) =
            (outcome.result, outcome.handshake)
        {
            self.metrics
                .handshake_seconds
                .get_or_create(&NetworkLabels { network })
                .observe(handshake.as_secs_f64());
        }
        if outcome.v2 != V2Support::NotTried {
            self.metrics
                .v2
                .get_or_create(&V2Labels {
                    node,
                    network,
                    support: outcome.v2.label(),
                })
                .inc();
        }

        let check = report::payload(announced, dial, outcome, chain);
        let time_ns = now_ns();
        if let Some(csv) = &mut self.csv {
            if let Err(error) = csv.write(&announced.node, time_ns, &check) {
                self.metrics.csv_errors.inc();
                tracing::warn!(%error, "cannot write a CSV row");
            }
        }
        let Some(envelope) = self.envelope(&announced.node, &announced.chain) else {
            return;
        };
        let (subject, event) = envelope.wrap(
            std::process::id(),
            time_ns,
            Payload::ConnectivityCheck(check),
        );
        self.publisher
            .send([(subject, event.encode_to_vec().into())]);
    }

    /// The envelope of `node`'s results; `None` (logged) for a node id that cannot be a subject
    /// token, which the consumer layer never delivers.
    fn envelope(&mut self, node: &str, chain: &str) -> Option<&mut Envelope> {
        if !self.envelopes.contains_key(node) {
            match Envelope::new(
                &self.prefix,
                node,
                chain,
                ExtractorKind::ConnectivityCheck,
                self.run_id,
            ) {
                Ok(envelope) => {
                    self.envelopes.insert(node.to_string(), envelope);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot publish a result");
                    return None;
                }
            }
        }
        let envelope = self.envelopes.get_mut(node)?;
        if envelope.chain().is_empty() && !chain.is_empty() {
            envelope.set_chain(chain);
        }
        Some(envelope)
    }

    fn update_gauges(&mut self) {
        let m = &self.metrics;
        m.queue_depth.set(self.schedule.queued() as i64);
        m.in_flight.set(self.schedule.in_flight() as i64);
        m.cache_entries.set(self.schedule.cache_entries() as i64);
        let evicted = self.schedule.cache_evicted();
        m.cache_evicted
            .inc_by(evicted.saturating_sub(m.cache_evicted.get()));
    }

    fn publisher_gauges(&self) {
        let m = &self.metrics;
        let stats = self.publisher.stats();
        for (outcome, value) in [
            ("published", stats.published),
            ("dropped_queue_full", stats.dropped_queue_full),
            ("dropped_too_large", stats.dropped_too_large),
            ("queued", stats.queued),
        ] {
            m.published
                .get_or_create(&PublisherLabels { outcome })
                .set(value as i64);
        }
    }
}

/// How often the log says what the tool did.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// What the tool did since it started, for the log: (group, what) → count.
#[derive(Debug, Default)]
struct Totals {
    counts: std::collections::BTreeMap<(&'static str, &'static str), u64>,
    logged: u64,
}

impl Totals {
    fn add(&mut self, group: &'static str, what: &'static str) {
        *self.counts.entry((group, what)).or_default() += 1;
    }

    /// One line, when anything changed since the last: "addresses: seen 120, queued 40, …;
    /// skipped: private 3; checks: reachable 30, refused 5".
    fn log(&mut self) {
        let total: u64 = self.counts.values().sum();
        if total == self.logged {
            return;
        }
        self.logged = total;
        let mut line = String::new();
        for group in ["addresses", "skipped", "checks"] {
            let parts: Vec<String> = self
                .counts
                .iter()
                .filter(|((g, _), _)| *g == group)
                .map(|((_, what), n)| format!("{what} {n}"))
                .collect();
            if !parts.is_empty() {
                if !line.is_empty() {
                    line.push_str("; ");
                }
                line.push_str(&format!("{group}: {}", parts.join(", ")));
            }
        }
        tracing::info!("since start: {line}");
    }
}

fn conn_type_label(conn_type: i32) -> &'static str {
    nodescope_proto::ConnectionType::try_from(conn_type)
        .map(|t| t.label())
        .unwrap_or("unknown")
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}
