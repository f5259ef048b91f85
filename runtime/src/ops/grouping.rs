//! Records grouped by key across a reduce task's buckets: the kernel of group-by-key, the joins,
//! cogroup and update-state-by-key. Keys are numbered in order of first appearance and each
//! key's records keep their arrival order, as Spark's do.

use anyhow::{Result, bail};
use spate_guest::{Column, KeyIndex, Partition, Slot, nested};

/// For each distinct key, where its records are: `members[starts[k]..starts[k + 1]]` holds
/// (batch, record) positions of key k's records, in arrival order.
pub struct Grouping {
    /// Where each key's members start (one more entry than keys).
    pub starts: Vec<u32>,
    /// (batch, record) positions.
    pub members: Vec<(u32, u32)>,
}

impl Grouping {
    /// Key `key`'s (batch, record) positions.
    pub fn of(&self, key: usize) -> &[(u32, u32)] {
        &self.members[self.starts[key] as usize..self.starts[key + 1] as usize]
    }
}

/// Groups the records of each side by key. Keys are numbered across sides in order of first
/// appearance (left side first), so key k means the same key on every side.
pub fn group_sides(sides: &[&[Partition]]) -> Result<(Column, Vec<Grouping>)> {
    let mut index = KeyIndex::new();
    let mut keys = Column::default();
    let mut entries_per_side = Vec::with_capacity(sides.len());
    for side in sides {
        let mut entries: Vec<(u32, u32, u32)> = Vec::new();
        for (b, batch) in side.iter().enumerate() {
            let Some(batch_keys) = &batch.keys else {
                if batch.is_empty() {
                    continue;
                }
                bail!("a keyed operation got records without keys");
            };
            for (r, key) in batch_keys.iter().enumerate() {
                let (Slot::Found(slot) | Slot::Added(slot)) = index.find_or_insert(&mut keys, key);
                entries.push((slot, b as u32, r as u32));
            }
        }
        entries_per_side.push(entries);
    }
    let n = keys.len();
    let groupings = entries_per_side
        .into_iter()
        .map(|entries| {
            // A counting sort by key keeps each key's records in arrival order.
            let mut starts = vec![0u32; n + 1];
            for &(slot, _, _) in &entries {
                starts[slot as usize + 1] += 1;
            }
            for k in 0..n {
                starts[k + 1] += starts[k];
            }
            let mut next = starts.clone();
            let mut members = vec![(0, 0); entries.len()];
            for (slot, b, r) in entries {
                let at = &mut next[slot as usize];
                members[*at as usize] = (b, r);
                *at += 1;
            }
            Grouping { starts, members }
        })
        .collect();
    Ok((keys, groupings))
}

/// The value at a (batch, record) position.
pub fn value_at(side: &[Partition], (b, r): (u32, u32)) -> &[u8] {
    side[b as usize].values.get(r as usize)
}

/// Appends the values of `members` as a list item.
pub fn push_list(out: &mut Vec<u8>, side: &[Partition], members: &[(u32, u32)]) {
    let start = nested::begin_item(out);
    for &m in members {
        nested::push_item(out, Some(value_at(side, m)));
    }
    nested::end_item(out, start);
}

/// The distinct keys of `buckets`, and their values key by key: key k's values, in arrival
/// order, are `values[starts[k]..starts[k + 1]]`.
pub fn group_values(buckets: &[Partition]) -> Result<(Column, Vec<u32>, Column)> {
    let (keys, groupings) = group_sides(&[buckets])?;
    let grouping = groupings.into_iter().next().expect("one side");
    let mut values = Column::with_capacity(grouping.members.len(), 0);
    for &m in &grouping.members {
        values.push(value_at(buckets, m));
    }
    Ok((keys, grouping.starts, values))
}

/// Records for the tests of the grouping ops.
#[cfg(test)]
pub mod test_records {
    use spate_guest::{Column, Partition, nested};

    pub fn keyed(pairs: &[(&str, &str)]) -> Partition {
        Partition {
            keys: Some(Column::from_values(pairs.iter().map(|p| p.0.as_bytes()))),
            values: Column::from_values(pairs.iter().map(|p| p.1.as_bytes())),
            timestamps: Vec::new(),
        }
    }

    pub fn rows(batch: &Partition) -> Vec<(String, Vec<Option<String>>)> {
        (0..batch.len())
            .map(|i| {
                let key = String::from_utf8_lossy(batch.keys.as_ref().unwrap().get(i)).into_owned();
                let items = nested::items(batch.values.get(i))
                    .map(|item| {
                        item.unwrap()
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                    .collect();
                (key, items)
            })
            .collect()
    }

    pub fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }
}
