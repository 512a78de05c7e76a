//! Everything the kernel side and the userspace side of the extractor must agree on, byte for
//! byte: the catalogue of Bitcoin Core's tracepoints, the USDT argument specs handed to the
//! kernel, and the records the kernel sends back. `no_std` so that `extractor-ebpf` can use it;
//! every `#[repr(C)]` type has a compile-time size assertion so the two sides cannot drift.
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "alloc")]
pub mod arg;
pub mod tracepoint;
pub mod usdt;

#[cfg(feature = "alloc")]
pub use arg::ArgValue;
pub use tracepoint::{ArgKind, Tracepoint};
