use proptest::prelude::Rng as _;
use proptest::test_runner::{RngAlgorithm, TestRng};
use prost_reflect::{Kind, Value};

use super::plan::enum_short_name;
use super::*;

#[test]
fn enum_names_lose_their_prefix() {
    assert_eq!(
        enum_short_name("ConnectionType", "CONNECTION_TYPE_BLOCK_RELAY_ONLY"),
        "block_relay_only"
    );
    assert_eq!(enum_short_name("Network", "NETWORK_IPV4"), "ipv4");
    assert_eq!(enum_short_name("Network", "OTHER"), "other");
}

#[test]
fn the_text_is_serde_jsons_compact_text_of_the_value() {
    use crate::event::Payload;
    let event = crate::Event {
        node_id: "node \"a\"\\\u{1}é".into(),
        sequence: 7,
        payload: Some(Payload::MempoolRejected(crate::MempoolRejected {
            txid: vec![0xab; 32],
            reason: "line\nbreak".into(),
        })),
        ..Default::default()
    };
    let text = to_json_string(&event);
    assert_eq!(to_json(&event).to_string(), text);
    assert!(
        text.starts_with(r#"{"node_id":"node \"a\"\\\u0001é","#),
        "{text}"
    );
    assert!(text.contains(r#""reason":"line\nbreak""#), "{text}");
}

/// The rendering as it was first written, through a reflected message: the definition the
/// renderer is held to (map entries sorted, as the renderer writes them).
mod reference {
    use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, ReflectMessage, Value};

    use super::super::{plan::enum_short_name, write_hex, write_scalar};

    pub fn render(message: &DynamicMessage) -> String {
        let mut out = Vec::new();
        write_message(message, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn write_message(message: &DynamicMessage, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for field in message.descriptor().fields() {
            let unset_member = field.containing_oneof().is_some()
                || matches!(field.kind(), Kind::Message(_)) && !field.is_list() && !field.is_map();
            if unset_member && !message.has_field(&field) {
                continue;
            }
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            write_scalar(field.name(), out);
            out.push(b':');
            write_value(&field, &message.get_field(&field), out);
        }
        out.push(b'}');
    }

    fn write_value(field: &FieldDescriptor, value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Bool(v) => write_scalar(v, out),
            Value::I32(v) => write_scalar(v, out),
            Value::I64(v) => write_scalar(v, out),
            Value::U32(v) => write_scalar(v, out),
            Value::U64(v) => write_scalar(v, out),
            Value::F32(v) => write_scalar(*v as f64, out),
            Value::F64(v) => write_scalar(v, out),
            Value::String(v) => write_scalar(v, out),
            Value::Bytes(v) => {
                out.push(b'"');
                write_hex(v, out);
                out.push(b'"');
            }
            Value::EnumNumber(number) => {
                let descriptor = field.kind().as_enum().cloned().unwrap();
                match descriptor.get_value(*number) {
                    Some(value) => {
                        write_scalar(enum_short_name(descriptor.name(), value.name()), out)
                    }
                    None => write_scalar(number, out),
                }
            }
            Value::Message(message) => write_message(message, out),
            Value::List(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_value(field, item, out);
                }
                out.push(b']');
            }
            Value::Map(entries) => {
                let value_field = field.kind().as_message().unwrap().map_entry_value_field();
                let mut entries: Vec<_> = entries.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push(b'{');
                for (i, (key, value)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    match key {
                        MapKey::Bool(v) => write_scalar(v.to_string(), out),
                        MapKey::I32(v) => write_scalar(v.to_string(), out),
                        MapKey::I64(v) => write_scalar(v.to_string(), out),
                        MapKey::U32(v) => write_scalar(v.to_string(), out),
                        MapKey::U64(v) => write_scalar(v.to_string(), out),
                        MapKey::String(v) => write_scalar(v, out),
                    }
                    out.push(b':');
                    write_value(&value_field, value, out);
                }
                out.push(b'}');
            }
        }
    }
}

/// A reproducible source of test values: proptest's deterministic generator.
struct Rng(TestRng);

impl Rng {
    fn new() -> Rng {
        Rng(TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize].clone()
    }
}

fn random_scalar(kind: &Kind, rng: &mut Rng, depth: usize) -> Value {
    let edge = |rng: &mut Rng, values: &[u64]| -> u64 {
        if rng.below(2) == 0 {
            rng.pick(values)
        } else {
            rng.next() >> rng.below(64)
        }
    };
    let bounds = [0, 1, u64::MAX, i64::MAX as u64, 1 << 31, u32::MAX as u64];
    match kind {
        Kind::Double => Value::F64(rng.pick(&[0.0, -1.5, 1e300, 0.1, f64::NAN, f64::INFINITY])),
        Kind::Float => Value::F32(rng.pick(&[0.0, -1.5, 3.4e38, 0.1, f32::NAN])),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(edge(rng, &bounds) as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(edge(rng, &bounds) as i64),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(edge(rng, &bounds) as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(edge(rng, &bounds)),
        Kind::Bool => Value::Bool(rng.below(2) == 0),
        Kind::String => Value::String(
            rng.pick(&["", "node-a", "q\"uote\\ \u{1}\n", "é✓ 🙂", "x"])
                .to_string(),
        ),
        Kind::Bytes => Value::Bytes(
            (0..rng.below(40))
                .map(|_| rng.next() as u8)
                .collect::<Vec<u8>>()
                .into(),
        ),
        Kind::Enum(descriptor) => {
            let known: Vec<i32> = descriptor.values().map(|v| v.number()).collect();
            Value::EnumNumber(if rng.below(5) == 0 {
                99
            } else {
                rng.pick(&known)
            })
        }
        Kind::Message(message) => Value::Message(random_message(message, rng, depth + 1)),
    }
}

fn random_message(
    descriptor: &prost_reflect::MessageDescriptor,
    rng: &mut Rng,
    depth: usize,
) -> prost_reflect::DynamicMessage {
    use prost_reflect::{DynamicMessage, MapKey};
    let mut message = DynamicMessage::new(descriptor.clone());
    for field in descriptor.fields() {
        let nested = matches!(field.kind(), Kind::Message(_)) && !field.is_map();
        if rng.below(3) == 0 || nested && depth >= 3 {
            continue;
        }
        let value = if field.is_map() {
            let entry = field.kind().as_message().unwrap().clone();
            let (key_field, value_field) =
                (entry.map_entry_key_field(), entry.map_entry_value_field());
            let entries = (0..rng.below(4))
                .map(|_| {
                    let key = match random_scalar(&key_field.kind(), rng, depth) {
                        Value::String(v) => MapKey::String(v),
                        Value::Bool(v) => MapKey::Bool(v),
                        Value::I32(v) => MapKey::I32(v),
                        Value::I64(v) => MapKey::I64(v),
                        Value::U32(v) => MapKey::U32(v),
                        Value::U64(v) => MapKey::U64(v),
                        other => panic!("not a map key: {other:?}"),
                    };
                    (key, random_scalar(&value_field.kind(), rng, depth))
                })
                .collect();
            Value::Map(entries)
        } else if field.is_list() {
            Value::List(
                (0..rng.below(4))
                    .map(|_| random_scalar(&field.kind(), rng, depth))
                    .collect(),
            )
        } else {
            random_scalar(&field.kind(), rng, depth)
        };
        message.set_field(&field, value);
    }
    message
}

fn render_encoded(
    descriptor: &prost_reflect::MessageDescriptor,
    bytes: &[u8],
) -> Result<String, Malformed> {
    let schema = schema();
    let mut out = Vec::new();
    schema.write_message(
        schema.by_name[descriptor.full_name()],
        bytes,
        0,
        &mut Vec::new(),
        &mut out,
    )?;
    Ok(String::from_utf8(out).unwrap())
}

/// Every message type of the schema, with random values in every kind of field: the text is
/// the reference's, from a message's own encoding and from two encodings one after the
/// other (protobuf's merge: the later scalar wins, lists and maps add up, sub-messages
/// merge, a oneof keeps the member given last).
#[test]
fn every_message_type_renders_as_the_reflected_message_does() {
    use prost::Message;
    use prost_reflect::DynamicMessage;
    let mut rng = Rng::new();
    let mut rendered = 0;
    for descriptor in pool().all_messages() {
        for _ in 0..60 {
            let first = random_message(&descriptor, &mut rng, 0).encode_to_vec();
            let second = random_message(&descriptor, &mut rng, 0).encode_to_vec();
            for bytes in [first.clone(), [first, second].concat()] {
                let expected = reference::render(
                    &DynamicMessage::decode(descriptor.clone(), bytes.as_slice()).unwrap(),
                );
                let text = render_encoded(&descriptor, &bytes).unwrap();
                assert_eq!(text, expected, "{}", descriptor.full_name());
                serde_json::from_str::<Json>(&text).unwrap();
                rendered += 1;
            }
        }
    }
    assert!(rendered > 1000, "{rendered}");
}

/// Bytes that are not an encoding are refused, never a panic; whatever the reflected
/// message accepts renders the same.
#[test]
fn damaged_encodings_are_refused_or_rendered_as_the_reflected_message_is() {
    use prost::Message;
    use prost_reflect::DynamicMessage;
    let mut rng = Rng::new();
    let (mut refused, mut accepted) = (0, 0);
    for descriptor in pool().all_messages() {
        for _ in 0..30 {
            let mut bytes = random_message(&descriptor, &mut rng, 0).encode_to_vec();
            if bytes.is_empty() {
                continue;
            }
            for _ in 0..=rng.below(3) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.below(bytes.len() as u64) as usize;
                match rng.below(3) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, rng.next() as u8),
                }
            }
            let reflected = DynamicMessage::decode(descriptor.clone(), bytes.as_slice());
            match (render_encoded(&descriptor, &bytes), reflected) {
                (Ok(text), Ok(message)) => {
                    assert_eq!(text, reference::render(&message));
                    accepted += 1;
                }
                (Err(_), Err(_)) => refused += 1,
                (ours, theirs) => panic!(
                    "{}: {bytes:?}: rendered {:?}, reflected {:?}",
                    descriptor.full_name(),
                    ours.map(|_| ()),
                    theirs.map(|_| ())
                ),
            }
        }
    }
    assert!(refused > 100 && accepted > 100, "{refused} {accepted}");
}

/// A repeated number may come one by one instead of packed; both read the same.
#[test]
fn unpacked_numbers_read_as_packed_ones() {
    let descriptor = pool()
        .get_message_by_name("nodescope.v1.P2pGetBlockTxn")
        .unwrap();
    // indexes = 2: 5, then packed [7, 300], then 1.
    let bytes = [0x10, 5, 0x12, 3, 7, 0xac, 0x02, 0x10, 1];
    let text = render_encoded(&descriptor, &bytes).unwrap();
    assert_eq!(text, r#"{"block_hash":"","indexes":[5,7,300,1]}"#);
}

#[test]
fn hex_is_lowercase_and_complete() {
    assert_eq!(hex(&[0x00, 0xab, 0x0f, 0xf0]), "00ab0ff0");
}
