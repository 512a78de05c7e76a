//! Tracepoint firings as events: the payload `nodescope-proto` builds from the arguments, with
//! what could not be read noted, in the node's envelope (see `nodescope_publish`).

use async_nats::Subject;
use bytes::Bytes;
use extractor_common::{ArgValue, Tracepoint};
use nodescope_proto::p2p::DecodeOptions;
use nodescope_proto::{
    event::Payload, tracepoint_payload, tracepoint_payload_for_encoding, Event, TracepointPayload,
};
use nodescope_publish::{Envelope, EventBuffer, Publisher};

use crate::event::{PayloadCut, TraceEvent};

/// The event for one tracepoint firing.
pub fn trace(
    envelope: &mut Envelope,
    trace: TraceEvent,
    decode: DecodeOptions,
) -> (Subject, Event) {
    let (pid, time_ns) = (trace.pid, trace.time_ns);
    let converted = convert(trace, decode, tracepoint_payload);
    let (subject, mut event) = envelope.wrap(pid, time_ns, converted.payload);
    event.truncated_fields = converted.truncated_fields;
    event.error = converted.error;
    (subject, event)
}

/// The event for one tracepoint firing, encoded into `buffer`, and whether its P2P message
/// failed to decode. The bytes decode to exactly [`trace`]'s event.
pub fn trace_encoded(
    envelope: &mut Envelope,
    trace: TraceEvent,
    decode: DecodeOptions,
    buffer: &mut EventBuffer,
) -> (Subject, Bytes, bool) {
    let (pid, time_ns) = (trace.pid, trace.time_ns);
    let converted = convert(trace, decode, tracepoint_payload_for_encoding);
    let (subject, encoded) = envelope.encode_traced(pid, time_ns, &converted, buffer);
    (subject, encoded, decode_failed(&converted.payload))
}

/// The payload of a firing, made by `payload_of` (`tracepoint_payload` or its variant for
/// encoding), with what could not be read noted in its `error`.
fn convert(
    trace: TraceEvent,
    decode: DecodeOptions,
    payload_of: fn(Tracepoint, Vec<ArgValue>, DecodeOptions) -> TracepointPayload,
) -> TracepointPayload {
    let mut converted = payload_of(trace.tracepoint, trace.args, decode);
    let error = &mut converted.error;
    let mut note = |text: &str| {
        if !error.is_empty() {
            error.push_str("; ");
        }
        error.push_str(text);
    };
    if trace.read_failed {
        note("an argument could not be read from the traced process");
    }
    match trace.payload_cut {
        Some(PayloadCut::ReadFailed) => {
            note("the payload could not be read from the traced process")
        }
        Some(PayloadCut::RingFull) => note("the payload was cut: the kernel ring buffer was full"),
        // A capture-limit cut is the operator's choice: `truncated_fields` says it.
        Some(PayloadCut::CaptureLimit) | None => {}
    }
    converted
}

/// Publishes a payload the rpc or p2p extractor made (no process of its own: pid 0), with its
/// error mark, as `envelope`'s next event.
pub fn publish(
    publisher: &Publisher,
    envelope: &mut Envelope,
    timestamp_ns: u64,
    payload: &Payload,
    error: &str,
    buffer: &mut EventBuffer,
) {
    let event = envelope.encode(0, timestamp_ns, payload, &[], error, buffer);
    publisher.send(std::iter::once(event));
}

/// Whether the payload is a P2P message that failed to decode.
pub fn decode_failed(payload: &Payload) -> bool {
    match payload {
        Payload::InboundMessage(m) | Payload::OutboundMessage(m) => m
            .message
            .as_ref()
            .is_some_and(|m| !m.decode_error.is_empty()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use extractor_common::{ArgValue, Tracepoint};
    use prost::Message;

    fn message(tracepoint: Tracepoint, msg_type: &str, payload: &[u8], size: u64) -> TraceEvent {
        let text = |text: &[u8]| ArgValue::Str {
            bytes: text.to_vec(),
            truncated: false,
        };
        TraceEvent {
            tracepoint,
            pid: 7,
            tid: 8,
            time_ns: 1,
            args: vec![
                ArgValue::Signed(3),
                text(b"127.0.0.1:8333"),
                text(b"inbound"),
                text(msg_type.as_bytes()),
                ArgValue::Unsigned(size),
                ArgValue::Bytes(payload.to_vec()),
            ],
            read_failed: false,
            payload_cut: None,
        }
    }

    /// An inventory payload of `types`, one entry each.
    fn inventory(types: &[u32]) -> Vec<u8> {
        let mut payload = vec![types.len() as u8];
        for (i, type_raw) in types.iter().enumerate() {
            payload.extend_from_slice(&type_raw.to_le_bytes());
            payload.extend((0..32u8).map(|b| b.wrapping_mul(i as u8 + 1)));
        }
        payload
    }

    #[test]
    fn encoded_events_are_the_events_encoding() {
        let mut envelope = Envelope::new(
            "nodescope",
            "node-a",
            "regtest",
            nodescope_proto::ExtractorKind::Ebpf,
            42,
        )
        .unwrap();
        let mut buffer = EventBuffer::default();
        let wtx = inventory(&[5; 28]);
        let mixed = inventory(&[1, 5, 0x4000_0002, 2, 77, 0]);
        let mut trailing = inventory(&[5]);
        trailing.push(0);
        let size = |payload: &[u8]| payload.len() as u64;
        let cases: Vec<(Tracepoint, &str, &[u8], u64)> = vec![
            (
                Tracepoint::NetInboundMessage,
                "ping",
                &[1, 2, 3, 4, 5, 6, 7, 8],
                8,
            ),
            (Tracepoint::NetInboundMessage, "inv", &wtx, size(&wtx)),
            (
                Tracepoint::NetOutboundMessage,
                "getdata",
                &mixed,
                size(&mixed),
            ),
            (Tracepoint::NetOutboundMessage, "notfound", &[0], 1),
            // Cut by the capture limit, and malformed: the decoder's events, error marks included.
            (
                Tracepoint::NetInboundMessage,
                "inv",
                &wtx[..100],
                size(&wtx),
            ),
            (
                Tracepoint::NetInboundMessage,
                "inv",
                &trailing,
                size(&trailing),
            ),
        ];
        for keep_raw in [false, true] {
            let decode = DecodeOptions { keep_raw };
            for (tracepoint, msg_type, payload, size) in &cases {
                let firing = || message(*tracepoint, msg_type, payload, *size);
                let (subject, event) = super::trace(&mut envelope, firing(), decode);
                let (subject_encoded, bytes, failed) =
                    trace_encoded(&mut envelope, firing(), decode, &mut buffer);
                assert_eq!(subject, subject_encoded);
                // Well-formed inventories take the path that encodes them from the wire.
                let traced = tracepoint_payload_for_encoding(*tracepoint, firing().args, decode);
                let whole = payload.len() as u64 == *size && !failed;
                assert_eq!(
                    !traced.encoded_body.is_empty(),
                    whole && *msg_type != "ping"
                );
                let expected = Event {
                    sequence: event.sequence + 1,
                    ..event
                };
                assert_eq!(expected.chain, "regtest");
                assert_eq!(failed, decode_failed(expected.payload.as_ref().unwrap()));
                // The same fields as prost's own encoding, so the same length.
                assert_eq!(bytes.len(), expected.encoded_len(), "{msg_type} {size}");
                assert_eq!(Event::decode(bytes).unwrap(), expected, "{msg_type} {size}");
            }
        }
    }
}
