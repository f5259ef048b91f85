//! A keyed table kept across batches: one state partition of a stateful node.
//!
//! Keys are indexed with the same [`KeyIndex`] (and hash) as the shuffles. Values live in one
//! byte arena: a value rewritten at the same length (an i64 count, say) is overwritten in place;
//! one that changes length is appended, and the arena is compacted once more than half of it is
//! garbage. A removed key leaves a tombstone that the same key revives in place; once
//! tombstones outnumber live keys the table is rebuilt. So every operation is O(1) amortised,
//! and no allocation is made per key.

use spate_guest::{Column, KeyIndex, Partition, Slot};

/// Where a slot's value is in the arena.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: usize,
    len: u32,
}

/// A table of keys to values, with a number per key for its owner's bookkeeping (the batches
/// holding the key in a window, the time of a key's last update).
#[derive(Debug, Default)]
pub struct StateTable {
    index: KeyIndex,
    keys: Column,
    spans: Vec<Span>,
    arena: Vec<u8>,
    garbage: usize,
    alive: Vec<bool>,
    meta: Vec<u64>,
    live: usize,
}

impl StateTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Live keys.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True without live keys.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes held (keys, values, index), roughly.
    pub fn bytes(&self) -> usize {
        self.keys.data.len() + self.arena.len() + self.spans.len() * 32
    }

    /// The live slot of `key`.
    pub fn find(&self, key: &[u8]) -> Option<u32> {
        self.index
            .find(&self.keys, key)
            .filter(|&slot| self.alive[slot as usize])
    }

    /// Inserts `key` (which must not be live) with `value` and `meta`; returns its slot.
    pub fn insert(&mut self, key: &[u8], value: &[u8], meta: u64) -> u32 {
        let slot = match self.index.find_or_insert(&mut self.keys, key) {
            Slot::Found(slot) => {
                debug_assert!(!self.alive[slot as usize], "insert of a live key");
                slot
            }
            Slot::Added(slot) => {
                self.spans.push(Span::default());
                self.alive.push(false);
                self.meta.push(0);
                slot
            }
        };
        let s = slot as usize;
        self.alive[s] = true;
        self.meta[s] = meta;
        self.live += 1;
        self.set(slot, value);
        slot
    }

    /// The key of a slot.
    pub fn key(&self, slot: u32) -> &[u8] {
        self.keys.get(slot as usize)
    }

    /// The value of a live slot.
    pub fn value(&self, slot: u32) -> &[u8] {
        let span = self.spans[slot as usize];
        &self.arena[span.start..span.start + span.len as usize]
    }

    /// The bookkeeping number of a slot.
    pub fn meta(&self, slot: u32) -> u64 {
        self.meta[slot as usize]
    }

    /// Sets the bookkeeping number of a slot.
    pub fn set_meta(&mut self, slot: u32, meta: u64) {
        self.meta[slot as usize] = meta;
    }

    /// True when the slot holds a live key.
    pub fn is_alive(&self, slot: u32) -> bool {
        self.alive.get(slot as usize).copied().unwrap_or(false)
    }

    /// Replaces a slot's value.
    pub fn set(&mut self, slot: u32, value: &[u8]) {
        let span = &mut self.spans[slot as usize];
        if span.len as usize == value.len() {
            self.arena[span.start..span.start + value.len()].copy_from_slice(value);
            return;
        }
        self.garbage += span.len as usize;
        *span = Span {
            start: self.arena.len(),
            len: value.len() as u32,
        };
        self.arena.extend_from_slice(value);
        if self.garbage > 1 << 16 && self.garbage * 2 > self.arena.len() {
            self.compact_arena();
        }
    }

    /// Removes a live key (its slot stays reserved for it until the next rebuild).
    pub fn remove(&mut self, slot: u32) {
        let s = slot as usize;
        if !self.alive[s] {
            return;
        }
        self.alive[s] = false;
        self.live -= 1;
        self.garbage += self.spans[s].len as usize;
        self.spans[s].len = 0;
    }

    /// The live slots, in slot order.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.alive
            .iter()
            .enumerate()
            .filter(|(_, alive)| **alive)
            .map(|(slot, _)| slot as u32)
    }

    /// Every live key with its value, as a keyed batch.
    pub fn contents(&self) -> Partition {
        let mut keys = Column::with_capacity(self.live, 0);
        let mut values = Column::with_capacity(self.live, 0);
        for slot in self.slots() {
            keys.push(self.key(slot));
            values.push(self.value(slot));
        }
        Partition {
            keys: Some(keys),
            values,
            timestamps: Vec::new(),
        }
    }

    /// Appends the live keys with their values and meta to a checkpoint.
    pub fn encode(&self, out: &mut crate::checkpoint::Writer) {
        out.u64(self.live as u64);
        for slot in self.slots() {
            out.bytes(self.key(slot));
            out.bytes(self.value(slot));
            out.u64(self.meta(slot));
        }
    }

    /// Reads a table written by [`StateTable::encode`].
    pub fn decode(input: &mut crate::checkpoint::Reader<'_>) -> anyhow::Result<StateTable> {
        let mut table = StateTable::new();
        for _ in 0..input.u64()? {
            let (key, value, meta) = (input.bytes()?, input.bytes()?, input.u64()?);
            if table.find(key).is_some() {
                anyhow::bail!("state holds key {:?} twice", String::from_utf8_lossy(key));
            }
            table.insert(key, value, meta);
        }
        Ok(table)
    }

    /// When tombstones outnumber live keys, rebuilds the table without them; returns the new
    /// slot of each old slot (`u32::MAX` for removed keys) so owners can renumber theirs.
    pub fn rebuild_if_sparse(&mut self) -> Option<Vec<u32>> {
        let dead = self.alive.len() - self.live;
        if dead < 1024 || dead <= self.live {
            return None;
        }
        let old = std::mem::take(self);
        let mut renumbered = vec![u32::MAX; old.alive.len()];
        for slot in old.slots() {
            renumbered[slot as usize] = self.insert(old.key(slot), old.value(slot), old.meta(slot));
        }
        Some(renumbered)
    }

    fn compact_arena(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for (span, alive) in self.spans.iter_mut().zip(&self.alive) {
            if *alive {
                let start = arena.len();
                arena.extend_from_slice(&self.arena[span.start..span.start + span.len as usize]);
                span.start = start;
            } else {
                *span = Span::default();
            }
        }
        self.arena = arena;
        self.garbage = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_set_removed_and_revived() {
        let mut table = StateTable::new();
        let a = table.insert(b"a", b"1", 7);
        table.insert(b"b", b"22", 0);
        table.set(a, b"333");
        assert_eq!(table.value(a), b"333");
        assert_eq!(table.meta(a), 7);
        table.remove(a);
        assert_eq!(table.find(b"a"), None);
        assert_eq!(table.len(), 1);
        let again = table.insert(b"a", b"4", 1);
        assert_eq!(again, a, "a removed key comes back in its slot");
        assert_eq!(table.value(again), b"4");
    }

    #[test]
    fn a_table_round_trips_through_a_checkpoint_encoding() {
        let mut table = StateTable::new();
        for i in 0..100u32 {
            table.insert(
                format!("k{i}").as_bytes(),
                &i.to_le_bytes(),
                u64::from(i) * 10,
            );
        }
        let gone = table.find(b"k7").unwrap();
        table.remove(gone);
        let mut out = crate::checkpoint::Writer::default();
        table.encode(&mut out);
        let mut input = crate::checkpoint::Reader::new(&out.bytes);
        let back = StateTable::decode(&mut input).unwrap();
        assert!(input.is_empty());
        assert_eq!(back.len(), 99);
        assert_eq!(back.find(b"k7"), None);
        let slot = back.find(b"k42").unwrap();
        assert_eq!(
            (back.value(slot), back.meta(slot)),
            (&42u32.to_le_bytes()[..], 420)
        );
        let mut truncated = crate::checkpoint::Reader::new(&out.bytes[..out.bytes.len() - 3]);
        assert!(StateTable::decode(&mut truncated).is_err());
    }

    #[test]
    fn a_sparse_table_is_rebuilt_and_slots_renumbered() {
        let mut table = StateTable::new();
        for i in 0..5000u32 {
            table.insert(format!("k{i}").as_bytes(), &i.to_le_bytes(), u64::from(i));
        }
        for i in 0..4000u32 {
            let slot = table.find(format!("k{i}").as_bytes()).unwrap();
            table.remove(slot);
        }
        let renumbered = table.rebuild_if_sparse().expect("4000 dead > 1000 live");
        assert_eq!(renumbered[0], u32::MAX);
        let slot = renumbered[4500];
        assert_eq!(table.key(slot), b"k4500");
        assert_eq!(table.value(slot), 4500u32.to_le_bytes());
        assert_eq!(table.meta(slot), 4500);
        assert_eq!(table.len(), 1000);
        assert!(table.rebuild_if_sparse().is_none());
    }

    #[test]
    fn the_arena_is_compacted_when_mostly_garbage() {
        let mut table = StateTable::new();
        let slot = table.insert(b"k", b"", 0);
        for n in 1..2000usize {
            table.set(slot, &vec![b'x'; n % 300]);
        }
        assert!(table.arena.len() < 1 << 18, "{}", table.arena.len());
        assert_eq!(table.value(slot), vec![b'x'; 1999 % 300]);
    }
}
