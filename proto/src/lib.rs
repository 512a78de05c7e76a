//! nodescope's event schema (`proto/nodescope.proto`), generated with prost.

#[allow(clippy::all)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/nodescope.v1.rs"));
}

pub use generated::*;

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn envelope_round_trips() {
        let event = Event {
            node_id: "node-a".into(),
            extractor: ExtractorKind::Ebpf as i32,
            pid: 42,
            sequence: 7,
            run_id: 0xfeed,
            timestamp_ns: 1_700_000_000_000_000_000,
            payload: Some(event::Payload::ExtractorStats(ExtractorStats {
                events_read: 10,
                kernel_drops: [("net:inbound_message".to_string(), 3)].into(),
            })),
        };
        let bytes = event.encode_to_vec();
        assert_eq!(Event::decode(bytes.as_slice()).unwrap(), event);
    }
}
