//! `bitcoind-sim`: a stand-in for Bitcoin Core v30.0 as seen by a USDT tracer. It fires the
//! same 20 tracepoints (same ELF notes, argument types and semaphores; see `c/tracepoints.c`)
//! with realistic, valid content (and, in the `unreadable` scenario, deliberately unreadable
//! pointers), and writes a ground truth of every event that fired.
//!
//! The C probes are linked by the two binaries, not by this library: see [`probes`].

pub mod cli;
pub mod load;
pub mod locate;
pub mod payloads;
pub mod probes;
pub mod scenario;
pub mod sim;
pub mod truth;
pub mod unreadable;

pub use cli::run;
pub use locate::binary_path;
pub use probes::{Flavour, Probes};
pub use truth::{read_truth, TruthArg, TruthRecord};
