//! What is made once per message type from the schema, for the renderer to follow.

use std::collections::HashMap;

use prost::encoding::WireType;
use prost_reflect::{Cardinality, DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};

use super::{write_enum, write_scalar};

/// Every message type's plan, indexed as `by_name` says.
pub(super) struct Schema {
    pub(super) plans: Vec<Plan>,
    pub(super) by_name: HashMap<String, usize>,
}

/// How to write one message type.
pub(super) struct Plan {
    /// In declaration order: the order they are written in.
    pub(super) fields: Vec<FieldPlan>,
    /// (field number, index in `fields`), sorted by number.
    pub(super) by_number: Vec<(u32, usize)>,
    /// How many oneofs the message has (real and proto3 `optional` ones).
    pub(super) oneofs: usize,
}

pub(super) struct FieldPlan {
    pub(super) number: u32,
    /// `"name":`, rendered.
    pub(super) key: Box<[u8]>,
    pub(super) shape: Shape,
    /// What is written when the encoding does not hold the field; `None`: nothing, not even
    /// its name (unset oneof members and sub-messages).
    pub(super) absent: Option<Box<[u8]>>,
    /// The oneof it belongs to (its index in the message).
    pub(super) oneof: Option<usize>,
}

pub(super) enum Shape {
    Single(ValueKind),
    List(ValueKind),
    Map { key: ValueKind, value: ValueKind },
}

#[derive(Clone)]
pub(super) enum ValueKind {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
    /// (number, rendered name) sorted by number; a number not in it is written as the number.
    Enum(std::sync::Arc<[(i32, Box<[u8]>)]>),
    /// The index of its plan.
    Message(usize),
}

impl ValueKind {
    pub(super) fn wire_type(&self) -> WireType {
        use ValueKind::*;
        match self {
            Double | Fixed64 | Sfixed64 => WireType::SixtyFourBit,
            Float | Fixed32 | Sfixed32 => WireType::ThirtyTwoBit,
            String | Bytes | Message(_) => WireType::LengthDelimited,
            _ => WireType::Varint,
        }
    }
}

impl Schema {
    pub(super) fn new(pool: &DescriptorPool) -> Schema {
        let by_name: HashMap<String, usize> = pool
            .all_messages()
            .enumerate()
            .map(|(index, message)| (message.full_name().to_string(), index))
            .collect();
        let plans = pool
            .all_messages()
            .map(|message| Plan::new(&message, &by_name))
            .collect();
        Schema { plans, by_name }
    }
}

impl Plan {
    pub(super) fn new(message: &MessageDescriptor, by_name: &HashMap<String, usize>) -> Plan {
        let oneofs: Vec<String> = message
            .oneofs()
            .map(|oneof| oneof.full_name().to_string())
            .collect();
        let fields: Vec<FieldPlan> = message
            .fields()
            .map(|field| {
                let shape = if field.is_map() {
                    let entry = field.kind();
                    let entry = entry.as_message().expect("a map's entry is a message");
                    Shape::Map {
                        key: value_kind(&entry.map_entry_key_field(), by_name),
                        value: value_kind(&entry.map_entry_value_field(), by_name),
                    }
                } else if field.cardinality() == Cardinality::Repeated {
                    Shape::List(value_kind(&field, by_name))
                } else {
                    Shape::Single(value_kind(&field, by_name))
                };
                let oneof = field.containing_oneof().map(|oneof| {
                    oneofs
                        .iter()
                        .position(|name| name == oneof.full_name())
                        .expect("a field's oneof is its message's")
                });
                let absent = match &shape {
                    _ if oneof.is_some() => None,
                    Shape::Single(ValueKind::Message(_)) => None,
                    Shape::Single(kind) => Some(absent_value(kind)),
                    Shape::List(_) => Some(Box::from(&b"[]"[..])),
                    Shape::Map { .. } => Some(Box::from(&b"{}"[..])),
                };
                let mut key = Vec::new();
                write_scalar(field.name(), &mut key);
                key.push(b':');
                FieldPlan {
                    number: field.number(),
                    key: key.into(),
                    shape,
                    absent,
                    oneof,
                }
            })
            .collect();
        let mut by_number: Vec<(u32, usize)> = fields
            .iter()
            .enumerate()
            .map(|(index, field)| (field.number, index))
            .collect();
        by_number.sort_unstable();
        Plan {
            fields,
            by_number,
            oneofs: oneofs.len(),
        }
    }
}

pub(super) fn value_kind(field: &FieldDescriptor, by_name: &HashMap<String, usize>) -> ValueKind {
    match field.kind() {
        Kind::Double => ValueKind::Double,
        Kind::Float => ValueKind::Float,
        Kind::Int32 => ValueKind::Int32,
        Kind::Int64 => ValueKind::Int64,
        Kind::Uint32 => ValueKind::Uint32,
        Kind::Uint64 => ValueKind::Uint64,
        Kind::Sint32 => ValueKind::Sint32,
        Kind::Sint64 => ValueKind::Sint64,
        Kind::Fixed32 => ValueKind::Fixed32,
        Kind::Fixed64 => ValueKind::Fixed64,
        Kind::Sfixed32 => ValueKind::Sfixed32,
        Kind::Sfixed64 => ValueKind::Sfixed64,
        Kind::Bool => ValueKind::Bool,
        Kind::String => ValueKind::String,
        Kind::Bytes => ValueKind::Bytes,
        Kind::Enum(descriptor) => {
            let mut names: Vec<(i32, Box<[u8]>)> = Vec::new();
            for value in descriptor.values() {
                // Of aliases, the first name is the one.
                if names.iter().all(|(number, _)| *number != value.number()) {
                    let mut name = Vec::new();
                    write_scalar(enum_short_name(descriptor.name(), value.name()), &mut name);
                    names.push((value.number(), name.into()));
                }
            }
            names.sort_by_key(|(number, _)| *number);
            ValueKind::Enum(names.into())
        }
        Kind::Message(message) => ValueKind::Message(
            *by_name
                .get(message.full_name())
                .expect("a field's message is in the pool"),
        ),
    }
}

/// What an unset field of this kind is written as (proto3's defaults).
pub(super) fn absent_value(kind: &ValueKind) -> Box<[u8]> {
    let mut out = Vec::new();
    match kind {
        ValueKind::Double | ValueKind::Float => write_scalar(0.0f64, &mut out),
        ValueKind::Bool => write_scalar(false, &mut out),
        ValueKind::String | ValueKind::Bytes => out.extend_from_slice(b"\"\""),
        ValueKind::Enum(names) => write_enum(names, 0, &mut out),
        ValueKind::Message(_) => out.extend_from_slice(b"{}"),
        _ => write_scalar(0, &mut out),
    }
    out.into()
}

/// `ConnectionType` + `CONNECTION_TYPE_BLOCK_RELAY_ONLY` → `block_relay_only`.
pub(super) fn enum_short_name(enum_name: &str, value_name: &str) -> String {
    let mut prefix = String::new();
    for (i, c) in enum_name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            prefix.push('_');
        }
        prefix.push(c.to_ascii_uppercase());
    }
    prefix.push('_');
    value_name
        .strip_prefix(&prefix)
        .unwrap_or(value_name)
        .to_ascii_lowercase()
}
