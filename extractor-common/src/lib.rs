//! Everything the kernel side and the userspace side of the extractor must agree on, byte for
//! byte: the catalogue of Bitcoin Core's tracepoints, the USDT argument specs handed to the
//! kernel, and the records the kernel sends back. `no_std` so that `extractor-ebpf` can use it;
//! every `#[repr(C)]` type has a compile-time size assertion so the two sides cannot drift.
#![no_std]

pub mod tracepoint;
pub mod usdt;

pub use tracepoint::{ArgKind, Tracepoint};
