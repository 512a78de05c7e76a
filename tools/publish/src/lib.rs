//! The one publishing path of nodescope: every extractor (ebpf, rpc, p2p) and every tool that
//! publishes events (connectivity-check) wraps its payloads in an [`Envelope`] — node, chain,
//! run id, per-category sequence numbers — and hands them to a [`Publisher`], which never
//! blocks its caller, confirms delivery with the server, replays after reconnections and
//! counts every drop.

pub mod envelope;
pub mod publisher;

pub use envelope::{host_name, new_run_id, Envelope, EventBuffer};
pub use publisher::{Publisher, PublisherStats};
