//! The envelope around every payload: node, chain, kind of publisher, run id, per-category
//! sequence number and time, and the subject it goes out on.

use async_nats::Subject;
use bytes::BufMut;
use bytes::{Bytes, BytesMut};
use nodescope_proto::subjects::{self, Category, Sequences, SubjectError};
use nodescope_proto::{event::Payload, Event, ExtractorKind, TracepointPayload};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

/// Numbers and addresses the events of one node in one run of a publisher.
pub struct Envelope {
    node_id: String,
    chain: String,
    /// The fields every event of this envelope shares (`node_id`, `extractor`, `run_id`,
    /// `chain`), encoded once and written before each event's other fields.
    constant_fields: Vec<u8>,
    kind: ExtractorKind,
    run_id: u64,
    sequences: Sequences,
    subjects: Vec<Subject>,
}

/// A random run id, so that a restarted extractor is told apart from a gap.
pub fn new_run_id() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: writes at most 8 bytes into our buffer.
    let read = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 8, 0) };
    if read != 8 {
        // No entropy source: time and pid still differ between runs.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return now.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
    }
    u64::from_le_bytes(bytes)
}

/// This machine's host name: the default node id.
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most buffer.len() bytes.
    if unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } != 0 {
        return "localhost".to_string();
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).replace('.', "-")
}

impl Envelope {
    pub fn new(
        prefix: &str,
        node_id: &str,
        chain: &str,
        kind: ExtractorKind,
        run_id: u64,
    ) -> Result<Envelope, SubjectError> {
        let subjects = Category::ALL
            .iter()
            .map(|category| subjects::subject(prefix, node_id, *category).map(Subject::from))
            .collect::<Result<_, _>>()?;
        Ok(Envelope {
            node_id: node_id.to_string(),
            chain: chain.to_string(),
            constant_fields: constant_fields(node_id, chain, kind, run_id),
            kind,
            run_id,
            sequences: Sequences::default(),
            subjects,
        })
    }

    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Skips `count` numbers of `category`, as lost events would (for tests of gap detection).
    pub fn skip(&mut self, category: Category, count: u64) {
        self.sequences.skip(category, count);
    }

    /// Learnt late: the node's process was first seen after its envelope was made.
    pub fn set_chain(&mut self, chain: &str) {
        self.chain = chain.to_string();
        self.constant_fields = constant_fields(&self.node_id, chain, self.kind, self.run_id);
    }

    /// Wraps a payload; returns the subject to publish on and the event.
    pub fn wrap(&mut self, pid: u32, timestamp_ns: u64, payload: Payload) -> (Subject, Event) {
        let (subject, sequence) = self.next(&payload);
        let event = Event {
            node_id: self.node_id.clone(),
            extractor: self.kind as i32,
            pid,
            sequence,
            run_id: self.run_id,
            timestamp_ns,
            chain: self.chain.clone(),
            payload: Some(payload),
            ..Event::default()
        };
        (subject, event)
    }

    /// The subject of `payload`'s category and the category's next sequence number.
    fn next(&mut self, payload: &Payload) -> (Subject, u64) {
        let category = Category::of(payload);
        let sequence = self.sequences.next(category);
        (self.subjects[category.index()].clone(), sequence)
    }

    /// The next event of `payload`'s category, encoded: the subject to publish it on and its
    /// bytes, which decode to the `Event` [`Envelope::wrap`] makes, with `truncated_fields` and
    /// `error`. The fields are written straight from their values (protobuf takes fields in
    /// any order; prost writes each as the generated code would): no `Event` is built, moved
    /// and dropped for each of the hundreds of thousands of events a second.
    pub fn encode(
        &mut self,
        pid: u32,
        timestamp_ns: u64,
        payload: &Payload,
        truncated_fields: &[String],
        error: &str,
        buffer: &mut EventBuffer,
    ) -> (Subject, Bytes) {
        let parts = Parts {
            payload,
            truncated_fields,
            error,
            message_body: &[],
        };
        self.encode_parts(pid, timestamp_ns, parts, buffer)
    }

    /// [`Envelope::encode`] for a tracepoint's payload, whose P2P message body may come encoded
    /// (see [`nodescope_proto::tracepoint_payload_for_encoding`]): the bytes decode to the event
    /// of the payload with that body in its place.
    pub fn encode_traced(
        &mut self,
        pid: u32,
        timestamp_ns: u64,
        traced: &TracepointPayload,
        buffer: &mut EventBuffer,
    ) -> (Subject, Bytes) {
        let parts = Parts {
            payload: &traced.payload,
            truncated_fields: &traced.truncated_fields,
            error: &traced.error,
            message_body: &traced.encoded_body,
        };
        self.encode_parts(pid, timestamp_ns, parts, buffer)
    }

    fn encode_parts(
        &mut self,
        pid: u32,
        timestamp_ns: u64,
        parts: Parts<'_>,
        buffer: &mut EventBuffer,
    ) -> (Subject, Bytes) {
        use prost::encoding::{string, uint32, uint64};
        let (subject, sequence) = self.next(parts.payload);
        let bytes = buffer.encode_with(&self.constant_fields, |out| {
            // Field numbers of `Event` in nodescope.proto; zero values are left out, as prost
            // does.
            if pid != 0 {
                uint32::encode(3, &pid, out);
            }
            if sequence != 0 {
                uint64::encode(4, &sequence, out);
            }
            if timestamp_ns != 0 {
                uint64::encode(6, &timestamp_ns, out);
            }
            string::encode_repeated(7, parts.truncated_fields, out);
            if !parts.error.is_empty() {
                encode_key(8, WireType::LengthDelimited, out);
                encode_varint(parts.error.len() as u64, out);
                out.put_slice(parts.error.as_bytes());
            }
            encode_payload(parts.payload, parts.message_body, out);
        });
        (subject, bytes)
    }
}

/// What an event carries besides the envelope's fields.
struct Parts<'a> {
    payload: &'a Payload,
    truncated_fields: &'a [String],
    error: &'a str,
    /// A P2P message's `body` field, encoded; empty when the payload holds its body.
    message_body: &'a [u8],
}

/// Field numbers in nodescope.proto: `Event.inbound_message`, `Event.outbound_message`, and
/// `NetMessage`'s `peer` and `message`.
const INBOUND_MESSAGE: u32 = 10;
const OUTBOUND_MESSAGE: u32 = 11;
const NET_PEER: u32 = 1;
const NET_MESSAGE: u32 = 2;

/// `payload` as its field of `Event`, with `message_body` (when not empty) the last field of
/// its P2P message, where prost would write the message's body.
fn encode_payload(payload: &Payload, message_body: &[u8], out: &mut impl BufMut) {
    let (field, net) = match payload {
        Payload::InboundMessage(net) if !message_body.is_empty() => (INBOUND_MESSAGE, net),
        Payload::OutboundMessage(net) if !message_body.is_empty() => (OUTBOUND_MESSAGE, net),
        _ => return payload.encode(out),
    };
    let message_len = net
        .message
        .as_ref()
        .map_or(0, |message| message.encoded_len())
        + message_body.len();
    let peer_len = net.peer.as_ref().map_or(0, |peer| {
        prost::encoding::message::encoded_len(NET_PEER, peer)
    });
    let net_len =
        peer_len + key_len(NET_MESSAGE) + encoded_len_varint(message_len as u64) + message_len;
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(net_len as u64, out);
    if let Some(peer) = &net.peer {
        prost::encoding::message::encode(NET_PEER, peer, out);
    }
    encode_key(NET_MESSAGE, WireType::LengthDelimited, out);
    encode_varint(message_len as u64, out);
    if let Some(message) = &net.message {
        message.encode_raw(out);
    }
    out.put_slice(message_body);
}

/// `node_id` (field 1), `extractor` (2), `run_id` (5) and `chain` (9) of `Event`, encoded
/// (zero values left out, as prost does). A random run id is a ten-byte varint: written once
/// here rather than a byte at a time for each event.
fn constant_fields(node_id: &str, chain: &str, kind: ExtractorKind, run_id: u64) -> Vec<u8> {
    let mut fields = Vec::new();
    if !node_id.is_empty() {
        prost::encoding::string::encode(1, &node_id.to_string(), &mut fields);
    }
    if kind as i32 != 0 {
        prost::encoding::int32::encode(2, &(kind as i32), &mut fields);
    }
    if run_id != 0 {
        prost::encoding::uint64::encode(5, &run_id, &mut fields);
    }
    if !chain.is_empty() {
        prost::encoding::string::encode(9, &chain.to_string(), &mut fields);
    }
    fields
}

/// Where events are encoded: each event's bytes are a slice of a shared block, so encoding
/// costs one allocation per block rather than an allocation (and later a free) per event. A
/// block is freed once all its events are published and out of the replay window, which keeps
/// the memory held beyond what the publisher counts to about one block.
#[derive(Default)]
pub struct EventBuffer {
    block: BytesMut,
}

/// Bytes allocated at a time for encoding events.
const BLOCK_BYTES: usize = 64 * 1024;
/// An event is begun in a fresh block when the current one has less room than this: it is
/// then written in place. A larger event grows its block (a copy of what it wrote so far),
/// and the block after it is a fresh one again.
const BLOCK_ROOM: usize = 16 * 1024;

/// A block as prost's output. prost writes varints a byte at a time with `put_u8`, which
/// `BytesMut` implements as a one-byte `put_slice` (a call and a capacity check per byte, a
/// visible share of the per-event cost); here it is a store while the block has room.
struct BlockWriter<'a>(&'a mut BytesMut);

// SAFETY: every method delegates to `BytesMut`'s implementation, except `put_u8`, which keeps
// the same contract (the byte is written and the length advances by one).
unsafe impl bytes::BufMut for BlockWriter<'_> {
    fn remaining_mut(&self) -> usize {
        self.0.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.0.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.0.chunk_mut()
    }

    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        self.0.extend_from_slice(src);
    }

    #[inline]
    fn put_u8(&mut self, n: u8) {
        match self.0.spare_capacity_mut().first_mut() {
            Some(slot) => {
                slot.write(n);
                // SAFETY: the byte at the old length was just written, within the capacity.
                unsafe { self.0.set_len(self.0.len() + 1) };
            }
            None => self.0.extend_from_slice(&[n]),
        }
    }
}

impl EventBuffer {
    /// `prefix` followed by what `write` writes.
    fn encode_with(&mut self, prefix: &[u8], write: impl FnOnce(&mut BlockWriter)) -> Bytes {
        if self.block.capacity() < BLOCK_ROOM {
            self.block = BytesMut::with_capacity(BLOCK_BYTES);
        }
        self.block.extend_from_slice(prefix);
        write(&mut BlockWriter(&mut self.block));
        let event = self.block.split().freeze();
        if event.len() > BLOCK_BYTES {
            // A 4 MB block passed through: the small events after it do not keep its memory.
            self.block = BytesMut::new();
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodescope_proto::MempoolRejected;
    use prost::Message;

    #[test]
    fn encoded_events_are_the_wrapped_events() {
        let mut envelope = Envelope::new(
            "nodescope",
            "node-a",
            "regtest",
            ExtractorKind::ConnectivityCheck,
            42,
        )
        .unwrap();
        let mut buffer = EventBuffer::default();
        let payload = Payload::MempoolRejected(MempoolRejected {
            txid: vec![7; 32],
            reason: "insufficient fee".into(),
        });
        let (subject, event) = envelope.wrap(9, 1, payload.clone());
        assert_eq!(subject.as_str(), "nodescope.node-a.mempool");
        let truncated = ["peer.addr".to_string()];
        let (encoded_subject, bytes) =
            envelope.encode(9, 1, &payload, &truncated, "a note", &mut buffer);
        assert_eq!(encoded_subject, subject);
        let expected = Event {
            sequence: 1,
            truncated_fields: truncated.to_vec(),
            error: "a note".into(),
            ..event.clone()
        };
        // The same fields as prost's own encoding, so the same bytes once reordered by tag.
        assert_eq!(bytes.len(), expected.encoded_len());
        let decoded = Event::decode(bytes).unwrap();
        assert_eq!(decoded, expected);
        assert_eq!(
            (decoded.chain.as_str(), decoded.extractor, event.sequence),
            ("regtest", ExtractorKind::ConnectivityCheck as i32, 0)
        );
    }

    #[test]
    fn events_of_every_size_keep_their_bytes_across_blocks() {
        let mut envelope =
            Envelope::new("nodescope", "node-a", "regtest", ExtractorKind::Ebpf, 42).unwrap();
        let mut buffer = EventBuffer::default();
        // Small ones filling blocks, ones larger than a block's room and than a block, and
        // small ones after them: each event's bytes stay its own while the later ones are
        // written.
        let sizes = (0..400)
            .map(|i| i * 37 % 3000)
            .chain([20_000, 5, 70_000, 1, 4_000_000, 3, 16_383, 16_385]);
        let encoded: Vec<(Payload, Bytes)> = sizes
            .map(|size| {
                let payload = Payload::MempoolRejected(MempoolRejected {
                    txid: vec![7; 32],
                    reason: "x".repeat(size),
                });
                let (_, bytes) = envelope.encode(1, 2, &payload, &[], "", &mut buffer);
                (payload, bytes)
            })
            .collect();
        for (payload, bytes) in encoded {
            assert_eq!(Event::decode(bytes).unwrap().payload, Some(payload));
        }
    }
}
