//! nodescope's extractor: attaches to a bitcoind binary's USDT tracepoints with eBPF and turns
//! every firing into an event.

mod attachment;
pub mod cli;
pub mod envelope;
pub mod event;
pub mod identity;
pub mod kernel;
pub mod nodes;
pub mod p2p;
mod plan;
pub mod process;
pub mod rpc;
pub mod tracer;
pub mod usdt;
pub mod watch;

pub use event::{ArgValue, PayloadCut, TraceEvent};
pub use tracer::{Tracer, TracerConfig, TracerError};
