//! The `zmq_notification` line: a message from one of bitcoind's ZMQ publishers (topic,
//! sequence, what was lost before it and what it carries).

use std::fmt::Write as _;

use nodescope_proto::json::hex;
use nodescope_proto::zmq_notification::Body as ZmqBody;
use nodescope_proto::ZmqNotification;

use super::Token;

/// `topic=… zmq_sequence=… endpoint=…`, lost messages before it, then what it carries.
pub(super) fn zmq_notification(line: &mut String, z: &ZmqNotification) {
    let _ = write!(
        line,
        " topic={} zmq_sequence={} endpoint={}",
        Token(&z.topic),
        z.zmq_sequence,
        Token(&z.endpoint)
    );
    if z.missed_before > 0 {
        let _ = write!(line, " missed_before={}", z.missed_before);
    }
    match &z.body {
        Some(ZmqBody::Hash(hash)) => {
            let _ = write!(line, " hash={}", hex(hash));
        }
        Some(ZmqBody::RawBlock(block)) => {
            let _ = write!(line, " block_size={}", block.len());
        }
        Some(ZmqBody::Sequence(s)) => {
            let _ = write!(line, " hash={} label={}", hex(&s.hash), Token(&s.label));
            if let Some(sequence) = s.mempool_sequence {
                let _ = write!(line, " mempool_sequence={sequence}");
            }
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::test_support::event;
    use crate::line::text;
    use nodescope_proto::event::Payload;
    use nodescope_proto::Category;

    #[test]
    fn zmq_lines_name_the_topic_the_hash_and_what_was_lost() {
        use nodescope_proto::ZmqSequence;
        let zmq = |topic: &str, missed_before, body| {
            event(Payload::ZmqNotification(ZmqNotification {
                topic: topic.into(),
                zmq_sequence: 17,
                endpoint: "tcp://127.0.0.1:28332".into(),
                missed_before,
                body: Some(body),
            }))
        };
        let mut hash = vec![0u8; 32];
        hash[0] = 0x4e;
        assert_eq!(
            text(&zmq("hashblock", 0, ZmqBody::Hash(hash.clone())), Category::Zmq),
            format!("2025-11-22T08:26:40.123456Z node-a zmq zmq_notification topic=hashblock zmq_sequence=17 endpoint=tcp://127.0.0.1:28332 hash=4e{}", "0".repeat(62))
        );
        let sequence = zmq(
            "sequence",
            3,
            ZmqBody::Sequence(ZmqSequence {
                hash: vec![0x11; 32],
                label: "A".into(),
                mempool_sequence: Some(905),
            }),
        );
        assert!(text(&sequence, Category::Zmq).ends_with(&format!(
            "zmq_sequence=17 endpoint=tcp://127.0.0.1:28332 missed_before=3 hash={} label=A mempool_sequence=905",
            "11".repeat(32)
        )));
        let connected = zmq(
            "sequence",
            0,
            ZmqBody::Sequence(ZmqSequence {
                hash: vec![0x22; 32],
                label: "C".into(),
                mempool_sequence: None,
            }),
        );
        assert!(text(&connected, Category::Zmq).ends_with(" label=C"));
        let block = zmq("rawblock", 0, ZmqBody::RawBlock(vec![0; 285]));
        assert!(
            text(&block, Category::Zmq).ends_with("endpoint=tcp://127.0.0.1:28332 block_size=285")
        );
    }
}
