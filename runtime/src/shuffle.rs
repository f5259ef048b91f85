//! Keyed data movement: key hashing, combine-by-key through a Wasm combiner, hash partitioning.
//!
//! Combining works on dense slots: the host hashes each key once, gives every distinct key a slot
//! (its first value seeds the slot's accumulator), and lists the other values with their slot.
//! One `fold` call then combines a whole partition; the guest never hashes or sees keys.

use crate::wasm::CombinerInstance;
use anyhow::{Result, anyhow, bail};
use spate_guest::{Column, HashedKey, KeyIndex, Partition, Slot};

/// The hash of a key, shared by every shuffle (and, later, keyed state).
pub use spate_guest::key_hash as hash_key;

/// The partition (out of `partitions`) a key hash belongs to: multiply-shift of the high bits
/// rather than modulo.
#[inline]
pub fn partition_of(hash: u64, partitions: usize) -> usize {
    (((hash >> 32) * partitions as u64) >> 32) as usize
}

/// A combine function ready to run: a Wasm combiner instance or a host-native function.
pub enum Folder<'a> {
    /// A Wasm combiner.
    Wasm(&'a mut CombinerInstance),
    /// Wrapping i64 sum.
    SumI64,
    /// Wrapping i64 subtraction (the sum's inverse).
    SubI64,
}

impl Folder<'_> {
    /// `acc[targets[i]] = f(acc[targets[i]], values[i])` for each i in order; returns the
    /// accumulators.
    pub fn fold(
        &mut self,
        accumulators: Column,
        targets: &[u32],
        values: Column,
    ) -> Result<Column> {
        let sign = match self {
            Folder::Wasm(combiner) => return combiner.fold(accumulators, targets, values),
            native => native.i64_sign().expect("a native fold"),
        };
        let mut accs = accumulators
            .iter()
            .map(|a| read_i64(a, "accumulator"))
            .collect::<Result<Vec<i64>>>()?;
        for (&target, value) in targets.iter().zip(values.iter()) {
            let acc = &mut accs[target as usize];
            *acc = acc.wrapping_add(read_i64(value, "value")?.wrapping_mul(sign));
        }
        Ok(i64_column(&accs))
    }

    /// The sign of a host-native i64 fold (1 for the sum, -1 for its inverse); none for Wasm.
    fn i64_sign(&self) -> Option<i64> {
        match self {
            Folder::Wasm(_) => None,
            Folder::SumI64 => Some(1),
            Folder::SubI64 => Some(-1),
        }
    }
}

/// An i64 value of the host's native folds.
fn read_i64(bytes: &[u8], what: &str) -> Result<i64> {
    <[u8; 8]>::try_from(bytes)
        .map(i64::from_le_bytes)
        .map_err(|_| {
            anyhow!(
                "the host's i64 combine got a {what} of {} bytes, not 8",
                bytes.len()
            )
        })
}

/// A column of i64 values, 8 bytes little-endian each.
fn i64_column(values: &[i64]) -> Column {
    let mut out = Column::with_capacity(values.len(), values.len() * 8);
    for value in values {
        out.push(&value.to_le_bytes());
    }
    out
}

/// Buffers reused by combine calls on one worker, so that steady state allocates little.
#[derive(Default)]
pub struct CombineScratch {
    index: KeyIndex,
    /// The index of the host's i64 folds, with each key's running value in its bucket.
    sums: KeyIndex<i64>,
    targets: Vec<u32>,
    values: Column,
}

/// The result of combining: one record per distinct key, with each key's hash.
pub struct Combined {
    /// Keys and combined values, in order of first appearance.
    pub batch: Partition,
    /// `hash_key` of each key.
    pub hashes: Vec<u64>,
}

/// Pending values are folded once they reach this size, so that neither the host nor the
/// guest's linear memory (which never shrinks) holds a whole reduce partition's values at once.
const FOLD_CHUNK_BYTES: usize = 4 << 20;

/// Folds the pending (target, value) pairs into `seeds` and clears them.
fn fold_pending(
    targets: &mut Vec<u32>,
    values: &mut Column,
    seeds: Column,
    combiner: &mut Folder<'_>,
) -> Result<Column> {
    let folded = combiner.fold(seeds, targets, std::mem::take(values))?;
    targets.clear();
    Ok(folded)
}

const UNKEYED: &str =
    "a keyed operation got records without keys (the step before it emits unkeyed records)";

/// The hash of each key of a keyed batch (for partitioning records combined upstream).
pub fn key_hashes(batch: &Partition) -> Result<Vec<u64>> {
    match &batch.keys {
        Some(keys) => Ok(keys.iter().map(hash_key).collect()),
        None if batch.is_empty() => Ok(Vec::new()),
        None => bail!(UNKEYED),
    }
}

/// How many records ahead combining prefetches a key's index bucket. The reduce side's index
/// holds a batch's distinct keys (about 50 k in the word count, 2 MiB of buckets): lookups miss
/// the cache, and prefetching this far ahead lets the misses overlap.
const PREFETCH_AHEAD: usize = 8;

/// Combines the values of equal keys across `inputs` with `combiner`.
pub fn combine_by_key(
    scratch: &mut CombineScratch,
    inputs: &[Partition],
    combiner: &mut Folder<'_>,
) -> Result<Combined> {
    let records: usize = inputs.iter().map(Partition::len).sum();
    if let Some(sign) = combiner.i64_sign() {
        return combine_i64(&mut scratch.sums, inputs, records, sign);
    }
    reset_index(&mut scratch.index, records);
    scratch.targets.clear();
    scratch.values = Column::default();
    let mut keys = Column::with_capacity(records / 4, 0);
    let mut seeds = Column::with_capacity(records / 4, 0);
    for input in inputs {
        each_key(&mut scratch.index, input, |index, key, hashed, i| {
            match index.find_or_insert_hashed(&mut keys, key, hashed) {
                Slot::Found(slot) => {
                    scratch.targets.push(slot);
                    scratch.values.push(input.values.get(i));
                    if scratch.values.data.len() >= FOLD_CHUNK_BYTES {
                        let (targets, values) = (&mut scratch.targets, &mut scratch.values);
                        seeds =
                            fold_pending(targets, values, std::mem::take(&mut seeds), combiner)?;
                    }
                }
                Slot::Added(_) => seeds.push(input.values.get(i)),
            }
            Ok(())
        })?;
    }
    let values = if scratch.targets.is_empty() {
        // Nothing (left) to fold: no call.
        seeds
    } else {
        fold_pending(&mut scratch.targets, &mut scratch.values, seeds, combiner)?
    };
    Ok(Combined {
        batch: Partition {
            keys: Some(keys),
            values,
            timestamps: Vec::new(),
        },
        hashes: scratch.index.take_hashes(),
    })
}

/// [`combine_by_key`] for the host's i64 sum (`sign` 1) and its inverse (-1): each key's
/// running value lives in its index bucket, so a repeated key costs one lookup and an add
/// instead of a pending (slot, value) pair folded later.
fn combine_i64(
    index: &mut KeyIndex<i64>,
    inputs: &[Partition],
    records: usize,
    sign: i64,
) -> Result<Combined> {
    reset_index(index, records);
    let mut keys = Column::with_capacity(records / 4, 0);
    for input in inputs {
        each_key(index, input, |index, key, hashed, i| {
            let value = read_i64(input.values.get(i), "value")?;
            // The first value seeds the key's accumulator as it is; later ones add with `sign`.
            index.combine_hashed(&mut keys, key, hashed, value, |acc, v| {
                *acc = acc.wrapping_add(v.wrapping_mul(sign));
            });
            Ok(())
        })?;
    }
    let mut sums = vec![0i64; keys.len()];
    for (slot, sum) in index.accumulators() {
        sums[slot as usize] = sum;
    }
    Ok(Combined {
        batch: Partition {
            keys: Some(keys),
            values: i64_column(&sums),
            timestamps: Vec::new(),
        },
        hashes: index.take_hashes(),
    })
}

/// Empties `index` for a combine of `records` records; an index grown much larger by an
/// earlier call is dropped, since clearing costs the index's size: one huge partition must not
/// tax every later call.
fn reset_index<A: Copy + Default>(index: &mut KeyIndex<A>, records: usize) {
    if index.capacity() > 8 * records.max(1 << 12) {
        *index = KeyIndex::default();
    }
    index.clear();
}

/// Calls `each(index, key, hashed key, record)` for every record of a keyed `input`, with the
/// index bucket of the key [`PREFETCH_AHEAD`] records ahead prefetched.
fn each_key<A: Copy + Default>(
    index: &mut KeyIndex<A>,
    input: &Partition,
    mut each: impl FnMut(&mut KeyIndex<A>, &[u8], HashedKey, usize) -> Result<()>,
) -> Result<()> {
    let Some(input_keys) = &input.keys else {
        if input.is_empty() {
            return Ok(());
        }
        bail!(UNKEYED);
    };
    let mut ahead = [HashedKey::default(); PREFETCH_AHEAD];
    for (i, hashed) in ahead.iter_mut().enumerate().take(input.len()) {
        *hashed = HashedKey::of(input_keys.get(i));
        index.prefetch(hashed);
    }
    for i in 0..input.len() {
        let key = input_keys.get(i);
        let hashed = ahead[i % PREFETCH_AHEAD];
        if i + PREFETCH_AHEAD < input.len() {
            let later = HashedKey::of(input_keys.get(i + PREFETCH_AHEAD));
            index.prefetch(&later);
            ahead[i % PREFETCH_AHEAD] = later;
        }
        each(index, key, hashed, i)?;
    }
    Ok(())
}

/// An empty batch of the same kind (keyed or not) as `like`.
fn empty_like(like: &Partition) -> Partition {
    Partition {
        keys: like.keys.as_ref().map(|_| Column::default()),
        values: Column::default(),
        timestamps: Vec::new(),
    }
}

/// Appends record `i` of `from` to `to` (keys and event times included).
pub fn push_record(to: &mut Partition, from: &Partition, i: usize) {
    if let (Some(to_keys), Some(keys)) = (to.keys.as_mut(), from.keys.as_ref()) {
        to_keys.push(keys.get(i));
    }
    to.values.push(from.values.get(i));
    if let Some(&t) = from.timestamps.get(i) {
        to.timestamps.push(t);
    }
}

/// Splits keyed records, as they are, into `partitions` buckets by key hash.
pub fn partition_records(batch: &Partition, partitions: usize) -> Result<Vec<Partition>> {
    let mut buckets: Vec<Partition> = (0..partitions).map(|_| empty_like(batch)).collect();
    let Some(keys) = &batch.keys else {
        if batch.is_empty() {
            return Ok(buckets);
        }
        bail!("a keyed operation got records without keys");
    };
    for (i, key) in keys.iter().enumerate() {
        push_record(
            &mut buckets[partition_of(hash_key(key), partitions)],
            batch,
            i,
        );
    }
    Ok(buckets)
}

/// Deals records out to `partitions` buckets in turn, starting at `first` (repartition).
pub fn deal(batch: &Partition, partitions: usize, first: usize) -> Vec<Partition> {
    let mut buckets: Vec<Partition> = (0..partitions).map(|_| empty_like(batch)).collect();
    for i in 0..batch.len() {
        push_record(&mut buckets[(first + i) % partitions], batch, i);
    }
    buckets
}

/// Splits combined records into `partitions` buckets by key hash.
pub fn partition(combined: &Combined, partitions: usize) -> Vec<Partition> {
    partition_hashed(&combined.batch, &combined.hashes, partitions)
}

/// Splits keyed records whose key hashes are known into `partitions` buckets.
pub fn partition_hashed(batch: &Partition, hashes: &[u64], partitions: usize) -> Vec<Partition> {
    let mut buckets: Vec<Partition> = (0..partitions)
        .map(|_| Partition {
            keys: Some(Column::default()),
            values: Column::default(),
            timestamps: Vec::new(),
        })
        .collect();
    let Some(keys) = batch.keys.as_ref() else {
        return buckets;
    };
    for (i, &hash) in hashes.iter().enumerate() {
        let bucket = &mut buckets[partition_of(hash, partitions)];
        bucket.keys.as_mut().expect("built keyed").push(keys.get(i));
        bucket.values.push(batch.values.get(i));
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
    fn native_folds_add_and_subtract() {
        let accs = Column::from_values([&5i64.to_le_bytes()[..], &1i64.to_le_bytes()[..]]);
        let values = Column::from_values([&2i64.to_le_bytes()[..], &3i64.to_le_bytes()[..]]);
        let sum = Folder::SumI64
            .fold(accs.clone(), &[0, 0], values.clone())
            .unwrap();
        assert_eq!(sum.get(0), 10i64.to_le_bytes());
        let diff = Folder::SubI64.fold(accs, &[1, 1], values).unwrap();
        assert_eq!(diff.get(1), (-4i64).to_le_bytes());
        let bad = Column::from_values([&b"xy"[..]]);
        assert!(
            Folder::SumI64
                .fold(bad.clone(), &[], Column::default())
                .is_err()
        );
    }

    fn i64_batch(pairs: &[(&str, i64)]) -> Partition {
        let values: Vec<[u8; 8]> = pairs.iter().map(|p| p.1.to_le_bytes()).collect();
        Partition {
            keys: Some(Column::from_values(pairs.iter().map(|p| p.0.as_bytes()))),
            values: Column::from_values(values.iter().map(|v| &v[..])),
            timestamps: Vec::new(),
        }
    }

    fn i64_rows(combined: &Combined) -> Vec<(String, i64)> {
        let keys = combined.batch.keys.as_ref().unwrap();
        (0..combined.batch.len())
            .map(|i| {
                let key = String::from_utf8(keys.get(i).to_vec()).unwrap();
                (
                    key,
                    read_i64(combined.batch.values.get(i), "value").unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn native_combines_keep_first_appearance_order_across_inputs() {
        let mut scratch = CombineScratch::default();
        let inputs = [
            i64_batch(&[("b", 1), ("a", 2), ("b", 3)]),
            i64_batch(&[("c", 4), ("a", 5)]),
        ];
        let sum = combine_by_key(&mut scratch, &inputs, &mut Folder::SumI64).unwrap();
        assert_eq!(
            i64_rows(&sum),
            [("b".into(), 4), ("a".into(), 7), ("c".into(), 4)]
        );
        let hashes: Vec<u64> = ["b", "a", "c"]
            .iter()
            .map(|k| hash_key(k.as_bytes()))
            .collect();
        assert_eq!(sum.hashes, hashes);
        // The inverse: the first value seeds the key as it is, as the Wasm path's fold does.
        let diff = combine_by_key(&mut scratch, &inputs, &mut Folder::SubI64).unwrap();
        assert_eq!(
            i64_rows(&diff),
            [("b".into(), -2), ("a".into(), -3), ("c".into(), 4)]
        );
        let bad = Partition {
            keys: Some(Column::from_values([&b"k"[..]])),
            values: Column::from_values([&b"xy"[..]]),
            timestamps: Vec::new(),
        };
        let Err(error) = combine_by_key(&mut scratch, &[bad], &mut Folder::SumI64) else {
            panic!("a 2-byte value must be refused");
        };
        assert!(error.to_string().contains("a value of 2 bytes"), "{error}");
    }

    #[test]
    fn native_sums_agree_with_a_map_through_index_growth() {
        let mut scratch = CombineScratch::default();
        let words: Vec<String> = (0..20_000).map(|i| format!("w{}", i % 7_001)).collect();
        let pairs: Vec<(&str, i64)> = words.iter().map(|w| (w.as_str(), 3)).collect();
        let combined =
            combine_by_key(&mut scratch, &[i64_batch(&pairs)], &mut Folder::SumI64).unwrap();
        let mut expected = std::collections::HashMap::new();
        for (word, n) in &pairs {
            *expected.entry(word.to_string()).or_insert(0) += n;
        }
        let rows = i64_rows(&combined);
        assert_eq!(rows.len(), 7_001);
        assert!(rows.iter().all(|(k, n)| expected[k] == *n));
    }

    #[test]
    fn records_keep_their_event_times_through_partitioning_and_dealing() {
        let batch = Partition {
            keys: Some(Column::from_values([&b"a"[..], b"b", b"a"])),
            values: Column::from_values([&b"1"[..], b"2", b"3"]),
            timestamps: vec![10, 20, 30],
        };
        let buckets = partition_records(&batch, 3).unwrap();
        let a = &buckets[partition_of(hash_key(b"a"), 3)];
        let b_too = partition_of(hash_key(b"b"), 3) == partition_of(hash_key(b"a"), 3);
        let expected = if b_too {
            vec![10, 20, 30]
        } else {
            vec![10, 30]
        };
        assert_eq!(a.timestamps, expected);
        assert_eq!(buckets.iter().map(Partition::len).sum::<usize>(), 3);
        let dealt = deal(&batch, 2, 1);
        assert_eq!(dealt[1].values.get(0), b"1");
        assert_eq!(dealt[0].timestamps, vec![20]);
    }

    #[test]
    fn equal_keys_go_to_the_same_partition() {
        let h = hash_key(b"word");
        assert_eq!(partition_of(h, 7), partition_of(hash_key(b"word"), 7));
        assert!(partition_of(u64::MAX, 7) < 7);
    }
}
