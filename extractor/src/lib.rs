//! nodescope's extractor: attaches to a bitcoind binary's USDT tracepoints with eBPF and turns
//! every firing into an event.

pub mod cli;
pub mod envelope;
pub mod event;
pub mod identity;
pub mod kernel;
pub mod nodes;
pub mod process;
pub mod publish;
pub mod tracer;
pub mod usdt;

pub use event::{ArgValue, PayloadCut, TraceEvent};
pub use tracer::{Tracer, TracerConfig, TracerError};
