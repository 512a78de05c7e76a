//! Tracepoint firings as events: the payload `nodescope-proto` builds from the arguments, with
//! what could not be read noted, in the node's envelope (see `nodescope_publish`).

use async_nats::Subject;
use bytes::Bytes;
use nodescope_proto::p2p::DecodeOptions;
use nodescope_proto::{event::Payload, tracepoint_payload, Event, TracepointPayload};
use nodescope_publish::{Envelope, EventBuffer, Publisher};

use crate::event::{PayloadCut, TraceEvent};

/// The event for one tracepoint firing.
pub fn trace(
    envelope: &mut Envelope,
    trace: TraceEvent,
    decode: DecodeOptions,
) -> (Subject, Event) {
    let (pid, time_ns) = (trace.pid, trace.time_ns);
    let converted = convert(trace, decode);
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
    let converted = convert(trace, decode);
    let (subject, encoded) = envelope.encode(
        pid,
        time_ns,
        &converted.payload,
        &converted.truncated_fields,
        &converted.error,
        buffer,
    );
    (subject, encoded, decode_failed(&converted.payload))
}

/// The payload of a firing, with what could not be read noted in its `error`.
fn convert(trace: TraceEvent, decode: DecodeOptions) -> TracepointPayload {
    let mut converted = tracepoint_payload(trace.tracepoint, trace.args, decode);
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
        let decode = DecodeOptions::default();
        let mut buffer = EventBuffer::default();
        let trace = |time_ns| TraceEvent {
            tracepoint: Tracepoint::NetInboundMessage,
            pid: 7,
            tid: 8,
            time_ns,
            args: vec![
                ArgValue::Signed(3),
                ArgValue::Str {
                    bytes: b"127.0.0.1:8333".to_vec(),
                    truncated: false,
                },
                ArgValue::Str {
                    bytes: b"inbound".to_vec(),
                    truncated: false,
                },
                ArgValue::Str {
                    bytes: b"ping".to_vec(),
                    truncated: false,
                },
                ArgValue::Unsigned(8),
                ArgValue::Bytes(vec![1, 2, 3, 4, 5, 6, 7, 8]),
            ],
            read_failed: false,
            payload_cut: None,
        };
        let (subject, event) = super::trace(&mut envelope, trace(1), decode);
        let (subject_encoded, bytes, failed) =
            trace_encoded(&mut envelope, trace(1), decode, &mut buffer);
        assert_eq!(subject, subject_encoded);
        assert!(!failed);
        let expected = Event {
            sequence: 1,
            ..event
        };
        assert_eq!(expected.chain, "regtest");
        assert_eq!(Event::decode(bytes).unwrap(), expected);
    }
}
