//! The nodes one extractor traces: every process of the binary is a node of its own (mainnet
//! and signet of one install, two regtest nodes), with its own node id, chain, subjects and
//! sequence numbers, so that their events never mix. A restarted node (same chain and data
//! directory) keeps its node id and its sequences go on.

use std::collections::HashMap;

use nodescope_proto::subjects::SubjectError;

use crate::identity::ProcessIdentity;
use nodescope_proto::ExtractorKind;
use nodescope_publish::Envelope;

pub struct Nodes {
    subject_prefix: String,
    run_id: u64,
    /// `--node-id`: every process's events go to this one node.
    configured: Option<String>,
    /// The first part of derived node ids (the host name).
    host: String,
    /// Every node seen; the first is the configured node, or a placeholder named after the host
    /// for the stats published before any process fired.
    envelopes: Vec<Envelope>,
    /// Which envelope each process's events go to.
    by_pid: HashMap<u32, usize>,
}

impl Nodes {
    pub fn new(
        subject_prefix: &str,
        configured: Option<String>,
        host: String,
        run_id: u64,
    ) -> Result<Nodes, SubjectError> {
        let mut nodes = Nodes {
            subject_prefix: subject_prefix.to_string(),
            run_id,
            configured,
            host,
            envelopes: Vec::new(),
            by_pid: HashMap::new(),
        };
        // Stats have a home before any process fired: the configured node, or the host.
        let first = nodes
            .configured
            .clone()
            .unwrap_or_else(|| nodes.host.clone());
        nodes.envelopes.push(nodes.envelope(&first, "")?);
        Ok(nodes)
    }

    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    fn envelope(&self, node_id: &str, chain: &str) -> Result<Envelope, SubjectError> {
        Envelope::new(
            &self.subject_prefix,
            node_id,
            chain,
            ExtractorKind::Ebpf,
            self.run_id,
        )
    }

    /// The envelope for the events of process `pid`, found out from `/proc` the first time.
    pub fn for_pid(&mut self, pid: u32) -> &mut Envelope {
        if let Some(&index) = self.by_pid.get(&pid) {
            return &mut self.envelopes[index];
        }
        let index = self.resolve(pid);
        self.by_pid.insert(pid, index);
        &mut self.envelopes[index]
    }

    fn resolve(&mut self, pid: u32) -> usize {
        let identity = ProcessIdentity::of_process(pid);
        let chain = identity
            .as_ref()
            .map(|i| i.chain.clone())
            .unwrap_or_default();
        let node_id = match (&self.configured, &identity) {
            (Some(configured), _) => configured.clone(),
            (None, Some(identity)) => identity.node_id(&self.host),
            // Gone before its first event was read: its events still need a home.
            (None, None) => format!("{}-pid{pid}", self.host),
        };
        if let Some(index) = self.envelopes.iter().position(|e| e.node_id() == node_id) {
            // A restarted node, or the placeholder that stats used so far.
            if self.envelopes[index].chain().is_empty() && !chain.is_empty() {
                self.envelopes[index].set_chain(&chain);
            }
            return index;
        }
        match self.envelope(&node_id, &chain) {
            Ok(envelope) => {
                tracing::info!(pid, node = %node_id, chain = %chain, datadir = ?identity.and_then(|i| i.datadir), "a new node");
                self.envelopes.push(envelope);
                self.envelopes.len() - 1
            }
            Err(error) => {
                // A derived id is made of safe parts; this is a host name NATS cannot take.
                tracing::warn!(%error, pid, "cannot name this node; its events go to the extractor's node");
                0
            }
        }
    }

    /// Forgets the processes that are gone (their node stays, for a restart to come back to).
    pub fn forget_exited(&mut self) {
        self.by_pid
            .retain(|pid, _| std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    /// Where the extractor's stats go: every node seen; before any, the configured node or
    /// the host's.
    pub fn stats_targets(&mut self) -> impl Iterator<Item = &mut Envelope> {
        // Derived node ids never equal the host's placeholder: once a process showed, it has
        // no node behind it.
        let placeholder_unused = self.configured.is_none() && self.envelopes.len() > 1;
        self.envelopes.iter_mut().skip(placeholder_unused as usize)
    }

    /// The node ids seen so far.
    pub fn node_ids(&self) -> Vec<&str> {
        self.envelopes.iter().map(Envelope::node_id).collect()
    }
}
