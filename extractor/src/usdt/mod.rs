//! USDT support for aya, which has none: probe discovery from ELF notes, argument specs, and
//! attachment with semaphores raised through the kernel's uprobe reference counter.

pub mod argspec;
pub mod attach;
pub mod multi;
pub mod notes;
pub mod signature;

pub use argspec::{ArgLocation, ArgSpec, ArgSpecError};
pub use attach::{attach_uprobe, AttachError, UprobeLink, UprobePmu, UprobeTarget};
pub use notes::{read_probes, NotesError, UsdtProbe};
pub use signature::SignatureMismatch;
