//! A cursor over a payload that decodes with rust-bitcoin's `Decodable` and remembers byte
//! offsets, so that every failure says where it happened.

use bitcoin::consensus::encode::{Error as EncodeError, VarInt};
use bitcoin::consensus::Decodable;

/// Why decoding stopped: at which byte of the payload, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub offset: usize,
    pub what: String,
    pub context: String,
}

impl Fail {
    pub fn new(offset: usize, what: impl Into<String>) -> Fail {
        Fail {
            offset,
            what: what.into(),
            context: String::new(),
        }
    }

    pub fn context(mut self, context: impl Into<String>) -> Fail {
        if self.context.is_empty() {
            self.context = context.into();
        }
        self
    }

    pub fn render(&self, msg_type: &str) -> String {
        if self.context.is_empty() {
            format!("{msg_type}: {} at byte {}", self.what, self.offset)
        } else {
            format!(
                "{msg_type}: {} at byte {} ({})",
                self.what, self.offset, self.context
            )
        }
    }
}

pub(crate) fn describe(error: &EncodeError) -> String {
    match error {
        EncodeError::Io(e) if e.kind() == bitcoin::io::ErrorKind::UnexpectedEof => {
            "unexpected end of data".to_string()
        }
        EncodeError::Io(e) => format!("read error: {e}"),
        EncodeError::ParseFailed(what) => (*what).to_string(),
        other => other.to_string(),
    }
}

pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Decodes one `T` with rust-bitcoin; on failure the offset is where `T` started.
    pub fn read<T: Decodable>(&mut self, field: &str) -> Result<T, Fail> {
        self.read_spanned(field).map(|(value, _)| value)
    }

    /// Like [`Reader::read`], also returning the bytes `T` was decoded from.
    pub fn read_spanned<T: Decodable>(&mut self, field: &str) -> Result<(T, &'a [u8]), Fail> {
        let start = self.pos;
        let mut rest = &self.data[start..];
        match T::consensus_decode(&mut rest) {
            Ok(value) => {
                self.pos = self.data.len() - rest.len();
                Ok((value, &self.data[start..self.pos]))
            }
            Err(e) => Err(Fail::new(start, describe(&e)).context(field)),
        }
    }

    /// A CompactSize (canonical, as Core requires).
    pub fn compact_size(&mut self, field: &str) -> Result<u64, Fail> {
        self.read::<VarInt>(field).map(|v| v.0)
    }

    pub fn bytes(&mut self, n: usize, field: &str) -> Result<&'a [u8], Fail> {
        if self.remaining() < n {
            return Err(Fail::new(self.pos, "unexpected end of data").context(field));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], Fail> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    /// A CompactSize length followed by that many bytes, at most `max` (Core's limit, if any).
    pub fn var_bytes(&mut self, field: &str, max: Option<usize>) -> Result<&'a [u8], Fail> {
        let start = self.pos;
        let len = self.compact_size(field)?;
        if let Some(max) = max {
            if len > max as u64 {
                return Err(
                    Fail::new(start, format!("length {len} exceeds the limit of {max}"))
                        .context(field),
                );
            }
        }
        if len > self.remaining() as u64 {
            return Err(Fail::new(
                self.pos,
                format!(
                    "unexpected end of data: length {len}, {} bytes left",
                    self.remaining()
                ),
            )
            .context(field));
        }
        self.bytes(len as usize, field)
    }

    /// Capacity to reserve for `count` items of at least `min_size` bytes each.
    pub fn capacity(&self, count: u64, min_size: usize) -> usize {
        count.min((self.remaining() / min_size.max(1)) as u64) as usize
    }

    /// Fails if bytes are left over.
    pub fn finish(&self) -> Result<(), Fail> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Fail::new(
                self.pos,
                format!("{} unexpected trailing bytes", self.remaining()),
            ))
        }
    }
}
