//! Folding records into accumulators kept in a table, in two phases: compute (which calls the
//! combiner and may fail) and apply (which cannot), so that a failed task leaves the table as
//! it was and its retry starts from the same state.

use super::table::StateTable;
use crate::shuffle::Folder;
use anyhow::Result;
use spate_guest::{Column, KeyIndex, Slot};

/// Folded accumulators per distinct key, not yet applied to a table.
#[derive(Default)]
pub struct Pending {
    index: KeyIndex,
    keys: Column,
    values: Column,
}

impl Pending {
    /// The folded value of `key`, if it was among the records.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.index
            .find(&self.keys, key)
            .map(|slot| self.values.get(slot as usize))
    }

    /// The distinct keys with their folded values.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.keys.iter().zip(self.values.iter())
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True without keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Folds `values[i]` into the accumulator of `keys[i]` for every i: a key's accumulator starts
/// from `current(key)` when that has one, else from its first value. One combiner call.
pub fn fold_records<'a>(
    current: impl Fn(&[u8]) -> Option<&'a [u8]>,
    keys: &Column,
    values: &Column,
    folder: &mut Folder<'_>,
) -> Result<Pending> {
    let mut pending = Pending::default();
    let mut seeds = Column::default();
    let mut targets = Vec::new();
    let mut rest = Column::default();
    for (key, value) in keys.iter().zip(values.iter()) {
        match pending.index.find_or_insert(&mut pending.keys, key) {
            Slot::Found(slot) => {
                targets.push(slot);
                rest.push(value);
            }
            Slot::Added(slot) => match current(key) {
                Some(acc) => {
                    seeds.push(acc);
                    targets.push(slot);
                    rest.push(value);
                }
                None => seeds.push(value),
            },
        }
    }
    pending.values = if targets.is_empty() {
        seeds
    } else {
        folder.fold(seeds, &targets, rest)?
    };
    Ok(pending)
}

/// Writes folded values into `table`; new keys are inserted with `meta`. Returns the slots
/// written, in the pending order.
pub fn apply(table: &mut StateTable, pending: &Pending, meta: u64) -> Vec<u32> {
    pending
        .iter()
        .map(|(key, value)| match table.find(key) {
            Some(slot) => {
                table.set(slot, value);
                slot
            }
            None => table.insert(key, value, meta),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(values: &[i64]) -> Column {
        let bytes: Vec<[u8; 8]> = values.iter().map(|v| v.to_le_bytes()).collect();
        Column::from_values(bytes.iter().map(|b| &b[..]))
    }

    #[test]
    fn records_fold_onto_the_table_then_apply() {
        let mut table = StateTable::new();
        table.insert(b"a", &10i64.to_le_bytes(), 0);
        let keys = Column::from_values([&b"a"[..], b"b", b"a", b"b"]);
        let pending = fold_records(
            |k| table.find(k).map(|s| table.value(s)),
            &keys,
            &col(&[1, 2, 3, 4]),
            &mut Folder::SumI64,
        )
        .unwrap();
        assert_eq!(pending.get(b"a"), Some(&14i64.to_le_bytes()[..]));
        assert_eq!(pending.get(b"b"), Some(&6i64.to_le_bytes()[..]));
        assert_eq!(
            table.value(table.find(b"a").unwrap()),
            10i64.to_le_bytes(),
            "not applied yet"
        );
        apply(&mut table, &pending, 5);
        assert_eq!(table.value(table.find(b"a").unwrap()), 14i64.to_le_bytes());
        assert_eq!(table.meta(table.find(b"b").unwrap()), 5);
    }
}
