//! The map side of a shuffle: each input partition combined, hashed, dealt or counted into one
//! bucket per shuffle partition, and how a batch's partitions are shared among the workers
//! that run it. The reduce side is the op's own (`ops`).

use super::dataflow::{Dataflow, KeyedInput, MapSide};
use super::narrow;
use super::pool::Worker;
use crate::batch::partition_bytes;
use crate::shuffle::{
    Folder, combine_by_key, deal, key_hashes, partition, partition_hashed, partition_records,
};
use anyhow::Result;
use spate_guest::{Column, Partition, nested};

/// The map side of a shuffle over one (already transformed) partition: its records in one
/// bucket per shuffle partition.
pub fn map_side(
    worker: &mut Worker,
    input: &KeyedInput,
    partitions: usize,
    task: usize,
    batch: &Partition,
) -> Result<Vec<Partition>> {
    match input.map_side {
        MapSide::Combine(combine) => {
            let (mut folder, scratch) = worker.folder(combine)?;
            let combined = combine_by_key(scratch, std::slice::from_ref(batch), &mut folder)?;
            Ok(partition(&combined, partitions))
        }
        // The transform was asked to combine its output per key; whatever it did, the reduce
        // side combines again, so a second map-side pass would only repeat work.
        MapSide::PreCombined => Ok(partition_hashed(batch, &key_hashes(batch)?, partitions)),
        MapSide::Hash => partition_records(batch, partitions),
        MapSide::Deal => Ok(deal(batch, partitions, task)),
        MapSide::CountValues => {
            let ones = count_records(batch);
            let scratch = &mut worker.scratch;
            let combined = combine_by_key(scratch, &[ones], &mut Folder::SumI64)?;
            Ok(partition(&combined, partitions))
        }
    }
}

/// The map side over the partitions a worker takes from `next`, with `operator` (see
/// [`Dataflow::deferring_operator`]) holding its combined output until the last one: a key repeated
/// across them leaves the operator, is hashed and is shuffled once instead of once per
/// partition. The partitions taken stay in `taken` (for a rerun one by one if this fails);
/// a worker that takes none flushes nothing.
pub fn map_side_deferred<T>(
    worker: &mut Worker,
    dataflow: &Dataflow,
    input: &KeyedInput,
    operator: usize,
    partitions: usize,
    mut next: impl FnMut() -> Option<(T, Partition)>,
    taken: &mut Vec<(T, Partition)>,
) -> Result<Vec<Partition>> {
    let mut buckets = vec![Partition::default(); partitions];
    while let Some(part) = next() {
        taken.push(part);
        let (_, batch) = taken.last_mut().expect("pushed above");
        // Usually empty: held back until the flush.
        if let Some(out) = narrow::apply_deferring(worker, dataflow, &input.narrow, batch)? {
            append_buckets(&mut buckets, map_side(worker, input, partitions, 0, &out)?);
        }
    }
    if !taken.is_empty() {
        let held = worker.transform(operator)?.flush()?;
        append_buckets(&mut buckets, map_side(worker, input, partitions, 0, &held)?);
    }
    Ok(buckets)
}

/// Appends each bucket of `more` to the same bucket of `buckets`.
pub fn append_buckets(buckets: &mut [Partition], more: Vec<Partition>) {
    for (bucket, more) in buckets.iter_mut().zip(more) {
        if bucket.is_empty() {
            *bucket = more;
        } else {
            bucket.extend_from(&more);
        }
    }
}

/// A stage's partitions, handed out one at a time, largest first, to whichever worker asks
/// next. Shared out in advance, equal shares still finished apart: a worker whose core the
/// receiver thread also ran on, or whose records were slower, kept the other idle at the end
/// of the stage (13% of the map stage's worker time in the 2-worker word count).
pub struct PartitionQueue<T> {
    /// Smallest first: the largest is popped first.
    parts: std::sync::Mutex<Vec<(T, Partition)>>,
}

impl<T> PartitionQueue<T> {
    /// A queue of `parts`.
    pub fn new(mut parts: Vec<(T, Partition)>) -> Self {
        parts.sort_by_key(|(_, b)| partition_bytes(b));
        PartitionQueue {
            parts: std::sync::Mutex::new(parts),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(T, Partition)>> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The largest partition not yet taken.
    pub fn take(&self) -> Option<(T, Partition)> {
        self.lock().pop()
    }

    /// Every partition not yet taken.
    pub fn take_all(&self) -> Vec<(T, Partition)> {
        std::mem::take(&mut *self.lock())
    }
}

/// Pieces each of the `workers` smallest partitions is cut into by [`split_last_partitions`].
const TAIL_PIECES: usize = 4;

/// A partition smaller than this is not cut: a Wasm call per piece would cost more than the
/// imbalance it saves.
const MIN_PIECE_BYTES: usize = 16 << 10;

/// Cuts the `workers` smallest of `parts` into [`TAIL_PIECES`] pieces each (at record
/// boundaries, of about equal bytes). A [`PartitionQueue`] hands those out last: a stage's
/// workers then finish at most a small piece apart instead of up to a whole partition apart.
/// With 512 KiB partitions, one partition is ~5 ms of tokenizing: the 2-worker word count lost
/// 71-77 ms of worker time per run waiting at the ends of its map stages (37-41 ms with this).
pub fn split_last_partitions(mut parts: Vec<Partition>, workers: usize) -> Vec<Partition> {
    parts.sort_by_key(|b| std::cmp::Reverse(partition_bytes(b)));
    let keep = parts.len().saturating_sub(workers);
    let last = parts.split_off(keep);
    for part in last {
        match TAIL_PIECES.min(partition_bytes(&part) / MIN_PIECE_BYTES) {
            // Too small to cut: kept as it is, not copied.
            0 | 1 => parts.push(part),
            pieces => parts.extend(split_batch(&part, pieces)),
        }
    }
    parts
}

/// `batch` cut into `pieces` batches of consecutive records, of about equal value bytes
/// (empty pieces left out).
fn split_batch(batch: &Partition, pieces: usize) -> Vec<Partition> {
    let offsets = &batch.values.offsets;
    let bytes = batch.values.data.len();
    let mut cuts: Vec<usize> = (1..pieces)
        .map(|j| {
            let target = (bytes * j / pieces) as u32;
            // The first record that starts at or after the target.
            offsets
                .partition_point(|&start| start < target)
                .min(batch.len())
        })
        .collect();
    cuts.insert(0, 0);
    cuts.push(batch.len());
    cuts.dedup();
    cuts.windows(2)
        .map(|w| Partition {
            keys: batch.keys.as_ref().map(|k| column_range(k, w[0]..w[1])),
            values: column_range(&batch.values, w[0]..w[1]),
            timestamps: batch
                .timestamps
                .get(w[0]..w[1])
                .unwrap_or_default()
                .to_vec(),
        })
        .collect()
}

/// Values `range` of `column`, as a column of their own.
fn column_range(column: &Column, range: std::ops::Range<usize>) -> Column {
    if range.is_empty() {
        return Column::default();
    }
    let offsets = &column.offsets[range.start..=range.end];
    let base = offsets[0];
    Column {
        data: column.data[base as usize..offsets[offsets.len() - 1] as usize].to_vec(),
        offsets: offsets.iter().map(|&o| o - base).collect(),
    }
}

/// (value, 1) for each record of an unkeyed batch; ((key, value), 1) for a keyed one.
fn count_records(batch: &Partition) -> Partition {
    let one = 1i64.to_le_bytes();
    let mut keys = Column::with_capacity(batch.len(), batch.values.data.len());
    let mut values = Column::with_capacity(batch.len(), 8 * batch.len());
    for i in 0..batch.len() {
        match &batch.keys {
            Some(k) => {
                let out = keys.begin_value();
                nested::push_item(out, Some(k.get(i)));
                nested::push_item(out, Some(batch.values.get(i)));
                keys.end_value();
            }
            None => keys.push(batch.values.get(i)),
        }
        values.push(&one);
    }
    Partition {
        keys: Some(keys),
        values,
        timestamps: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_handed_out_largest_first_each_once() {
        let part = |bytes: usize| Partition::from_lines([&*"x".repeat(bytes)]);
        let parts: Vec<(usize, Partition)> = [5, 1, 4, 2, 3]
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| (i, part(bytes)))
            .collect();
        let queue = PartitionQueue::new(parts);
        let sizes = |taken: Vec<(usize, Partition)>| -> Vec<usize> {
            taken.iter().map(|(_, b)| b.values.data.len()).collect()
        };
        let first: Vec<_> = std::iter::from_fn(|| queue.take()).take(2).collect();
        assert_eq!(sizes(first), [5, 4]);
        assert_eq!(sizes(queue.take_all()), [1, 2, 3]);
        assert!(queue.take().is_none());
    }

    #[test]
    fn the_smallest_partitions_are_cut_into_pieces_of_whole_records() {
        // Keyed, with event times: every part of a record must stay together.
        let part = |records: usize, tag: u8| {
            let value = vec![tag; 1000];
            let mut batch = Partition {
                keys: Some(Column::default()),
                ..Partition::default()
            };
            for i in 0..records {
                batch.keys.as_mut().unwrap().push(&i.to_le_bytes());
                batch.values.push(&value);
                batch.timestamps.push(i as i64);
            }
            batch
        };
        let parts = vec![
            part(100, b'a'),
            part(40, b'b'),
            part(100, b'c'),
            part(8, b'd'),
        ];
        let split = split_last_partitions(parts.clone(), 2);
        let sizes: Vec<usize> = split.iter().map(Partition::len).collect();
        // The two largest whole, 40 records (40 KB) in 2 pieces (16 KiB at least each), and
        // 8 records (8 KB) left whole.
        assert_eq!(sizes, [100, 100, 20, 20, 8]);
        let mut whole = split[2].clone();
        whole.extend_from(&split[3]);
        assert_eq!(whole, parts[1]);
        assert_eq!(split[3].timestamps[0], 20);
        assert!(split.iter().all(|b| b.validate().is_ok()));
        // Big enough for four pieces.
        let sizes: Vec<usize> = split_last_partitions(vec![part(100, b'a')], 2)
            .iter()
            .map(Partition::len)
            .collect();
        assert_eq!(sizes, [25, 25, 25, 25]);
    }

    fn keyed(pairs: &[(&str, &str)]) -> Partition {
        Partition {
            keys: Some(Column::from_values(pairs.iter().map(|p| p.0.as_bytes()))),
            values: Column::from_values(pairs.iter().map(|p| p.1.as_bytes())),
            timestamps: Vec::new(),
        }
    }

    #[test]
    fn counted_records_are_keyed_by_value_or_by_pair() {
        let counted = count_records(&Partition::from_lines(["x", "y"]));
        assert_eq!(counted.keys.unwrap().get(1), b"y");
        let counted = count_records(&keyed(&[("k", "v")]));
        let pair: Vec<_> = nested::items(counted.keys.as_ref().unwrap().get(0))
            .map(|i| i.unwrap().unwrap())
            .collect();
        assert_eq!(pair, vec![&b"k"[..], b"v"]);
    }
}
