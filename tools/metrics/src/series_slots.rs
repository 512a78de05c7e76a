//! A node's series of one family, kept by the slot number their other labels map to: the
//! series of frequent events are found by indexing rather than by hashing the label set (the
//! node's name included) in the family at every event. A slot's series is made on first use,
//! so a series appears on `/metrics` once it counted something, as when looked up each time.
//!
//! Series handles share their value with the family's: a slot holds a clone, and two slots
//! with the same labels (say, two enum values labelled `other`) update the same series.

/// The series of `len` slots, allocated on first use (most nodes never see most families).
pub struct SeriesSlots<M> {
    len: usize,
    slots: Vec<Option<M>>,
}

impl<M: Clone> SeriesSlots<M> {
    pub fn new(len: usize) -> SeriesSlots<M> {
        SeriesSlots {
            len,
            slots: Vec::new(),
        }
    }

    /// The series of `slot`, made by `create` (the family's `get_or_create_owned` of the
    /// slot's labels) the first time. Slots beyond `len` are a bug of the caller's mapping.
    pub fn get(&mut self, slot: usize, create: impl FnOnce() -> M) -> &M {
        if self.slots.is_empty() {
            self.slots = vec![None; self.len];
        }
        self.slots[slot].get_or_insert_with(create)
    }
}
