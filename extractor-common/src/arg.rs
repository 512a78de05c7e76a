//! A tracepoint argument's value as userspace holds it, whoever read it (the eBPF extractor, a
//! test's ground truth): what the protobuf conversion in `nodescope-proto` takes.

use alloc::vec::Vec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    Signed(i64),
    Unsigned(u64),
    Bool(bool),
    /// The bytes of a C string (without NUL); `truncated` when it was cut at the capture limit.
    Str {
        bytes: Vec<u8>,
        truncated: bool,
    },
    /// 32 bytes in internal (little-endian) order, as bitcoind passes them.
    Hash([u8; 32]),
    /// The captured bytes a pointer argument points to (a P2P payload); fewer than the size
    /// argument says when the capture was cut.
    Bytes(Vec<u8>),
    /// A pointer whose target was not captured.
    Pointer(u64),
}

impl ArgValue {
    /// The value of an integer or boolean argument, widened.
    pub fn as_i128(&self) -> Option<i128> {
        match self {
            ArgValue::Signed(v) => Some(*v as i128),
            ArgValue::Unsigned(v) => Some(*v as i128),
            ArgValue::Bool(v) => Some(*v as i128),
            _ => None,
        }
    }
}

impl core::fmt::Display for ArgValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ArgValue::Signed(v) => write!(f, "{v}"),
            ArgValue::Unsigned(v) => write!(f, "{v}"),
            ArgValue::Bool(v) => write!(f, "{v}"),
            ArgValue::Str { bytes, truncated } => {
                write!(f, "{:?}", alloc::string::String::from_utf8_lossy(bytes))?;
                if *truncated {
                    write!(f, "…(truncated)")?;
                }
                Ok(())
            }
            // People and RPC read hashes in reverse of the internal order.
            ArgValue::Hash(bytes) => bytes.iter().rev().try_for_each(|b| write!(f, "{b:02x}")),
            ArgValue::Bytes(bytes) => write!(f, "<{} bytes>", bytes.len()),
            ArgValue::Pointer(address) => write!(f, "{address:#x}"),
        }
    }
}
