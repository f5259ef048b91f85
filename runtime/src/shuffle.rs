//! Keyed data movement: key hashing, combine-by-key through a Wasm combiner, hash partitioning.
//!
//! Combining works on dense slots: the host hashes each key once, gives every distinct key a slot
//! (its first value seeds the slot's accumulator), and lists the other values with their slot.
//! One `fold` call then combines a whole partition; the guest never hashes or sees keys.

use crate::wasm::CombinerInstance;
use anyhow::{Result, bail};
use spate_guest::{Batch, Column, KeyIndex, Slot};

/// The hash of a key, shared by every shuffle (and, later, keyed state).
pub use spate_guest::key_hash as hash_key;

/// The partition (out of `partitions`) a key hash belongs to: multiply-shift of the high bits
/// rather than modulo.
#[inline]
pub fn partition_of(hash: u64, partitions: usize) -> usize {
    (((hash >> 32) * partitions as u64) >> 32) as usize
}

/// Buffers reused by combine calls on one worker, so that steady state allocates little.
#[derive(Default)]
pub struct CombineScratch {
    index: KeyIndex,
    targets: Vec<u32>,
    values: Column,
}

/// The result of combining: one record per distinct key, with each key's hash.
pub struct Combined {
    /// Keys and combined values, in order of first appearance.
    pub batch: Batch,
    /// `hash_key` of each key.
    pub hashes: Vec<u64>,
}

/// Pending values are folded once they reach this size, so that neither the host nor the
/// guest's linear memory (which never shrinks) holds a whole reduce partition's values at once.
const FOLD_CHUNK_BYTES: usize = 4 << 20;

/// Folds the pending (target, value) pairs into `seeds` and clears them.
fn fold_pending(
    scratch: &mut CombineScratch,
    seeds: Column,
    combiner: &mut CombinerInstance,
) -> Result<Column> {
    let values = std::mem::take(&mut scratch.values);
    let folded = combiner.fold(seeds, &scratch.targets, values)?;
    scratch.targets.clear();
    Ok(folded)
}

const UNKEYED: &str =
    "reduce-by-key got records without keys (the step before it emits unkeyed records)";

impl Combined {
    /// A keyed batch taken as it is, with its keys hashed (for partitioning without combining).
    pub fn hashed(batch: Batch) -> Result<Combined> {
        let hashes = match &batch.keys {
            Some(keys) => keys.iter().map(hash_key).collect(),
            None if batch.is_empty() => Vec::new(),
            None => bail!(UNKEYED),
        };
        Ok(Combined { batch, hashes })
    }
}

/// Combines the values of equal keys across `inputs` with `combiner`.
pub fn combine_by_key(
    scratch: &mut CombineScratch,
    inputs: &[Batch],
    combiner: &mut CombinerInstance,
) -> Result<Combined> {
    let records: usize = inputs.iter().map(Batch::len).sum();
    scratch.index.clear();
    scratch.targets.clear();
    scratch.values = Column::default();
    let mut keys = Column::with_capacity(records / 4, 0);
    let mut seeds = Column::with_capacity(records / 4, 0);
    for input in inputs {
        let Some(input_keys) = &input.keys else {
            if input.is_empty() {
                continue;
            }
            bail!(UNKEYED);
        };
        for i in 0..input.len() {
            let key = input_keys.get(i);
            let value = input.values.get(i);
            match scratch.index.find_or_insert(&mut keys, key) {
                Slot::Found(slot) => {
                    scratch.targets.push(slot);
                    scratch.values.push(value);
                    if scratch.values.data.len() >= FOLD_CHUNK_BYTES {
                        seeds = fold_pending(scratch, seeds, combiner)?;
                    }
                }
                Slot::Added(_) => seeds.push(value),
            }
        }
    }
    let values = if scratch.targets.is_empty() {
        // Nothing (left) to fold: no call.
        seeds
    } else {
        fold_pending(scratch, seeds, combiner)?
    };
    Ok(Combined {
        batch: Batch {
            keys: Some(keys),
            values,
            timestamps: Vec::new(),
        },
        hashes: scratch.index.take_hashes(),
    })
}

/// Splits combined records into `partitions` buckets by key hash.
pub fn partition(combined: &Combined, partitions: usize) -> Vec<Batch> {
    let mut buckets: Vec<Batch> = (0..partitions)
        .map(|_| Batch {
            keys: Some(Column::default()),
            values: Column::default(),
            timestamps: Vec::new(),
        })
        .collect();
    let keys = combined
        .batch
        .keys
        .as_ref()
        .expect("combined batches are keyed");
    for (i, &hash) in combined.hashes.iter().enumerate() {
        let bucket = &mut buckets[partition_of(hash, partitions)];
        bucket.keys.as_mut().expect("built keyed").push(keys.get(i));
        bucket.values.push(combined.batch.values.get(i));
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cover_the_range_evenly() {
        let n = 4;
        let mut counts = vec![0usize; n];
        for i in 0..10_000u32 {
            counts[partition_of(hash_key(format!("key{i}").as_bytes()), n)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 2_000), "{counts:?}");
    }

    #[test]
    fn equal_keys_go_to_the_same_partition() {
        let h = hash_key(b"word");
        assert_eq!(partition_of(h, 7), partition_of(hash_key(b"word"), 7));
        assert!(partition_of(u64::MAX, 7) < 7);
    }
}
