//! Event-time windows with a watermark (Flink's and Structured Streaming's model): one
//! shuffle partition's open windows.
//!
//! The watermark is the newest event time seen minus the allowed lateness. A batch's records
//! are judged against the watermark reached before the batch; a record whose every window had
//! closed by then is late (counted, and sent to the late stream if there is one). After the
//! batch, the watermark moves on with the batch's newest event time, and every window that ends
//! at or before it is emitted once, final, and forgotten.

use super::fold::{apply, fold_records};
use super::table::StateTable;
use crate::checkpoint::{Reader, Writer};
use crate::exec::Worker;
use crate::plan::{Combine, WindowSpec};
use crate::shuffle::push_record;
use anyhow::{Result, bail};
use spate_guest::{Batch, Column, nested};
use std::collections::BTreeMap;

/// The open windows of one shuffle partition, by start time.
#[derive(Default)]
pub struct EventPartition {
    windows: BTreeMap<i64, StateTable>,
}

/// What one batch produced.
pub struct EventStep {
    /// ((window start, key), value) of the windows that closed.
    pub closed: Batch,
    /// The late records.
    pub late: Batch,
}

/// The watermarks around one batch.
#[derive(Clone, Copy, Debug)]
pub struct Watermarks {
    /// Before the batch: records whose windows all ended by then are late.
    pub before: i64,
    /// After the batch: windows ending by then close.
    pub after: i64,
}

impl EventPartition {
    /// Appends the open windows to a checkpoint.
    pub fn encode(&self, out: &mut Writer) {
        out.u64(self.windows.len() as u64);
        for (start, table) in &self.windows {
            out.u64(*start as u64);
            table.encode(out);
        }
    }

    /// Reads windows written by [`EventPartition::encode`].
    pub fn decode(input: &mut Reader<'_>) -> Result<EventPartition> {
        let mut windows = BTreeMap::new();
        for _ in 0..input.u64()? {
            let start = input.u64()? as i64;
            windows.insert(start, StateTable::decode(input)?);
        }
        Ok(EventPartition { windows })
    }

    /// Open (window, key) accumulators.
    pub fn records(&self) -> usize {
        self.windows.values().map(StateTable::len).sum()
    }

    /// Folds the batch's records into their windows and emits the windows that close. Changes
    /// nothing if it fails.
    pub fn step(
        &mut self,
        worker: &mut Worker,
        combine: Combine,
        window: WindowSpec,
        marks: Watermarks,
        buckets: &[Batch],
    ) -> Result<EventStep> {
        let (length, slide) = (window.length_ms as i64, window.slide_ms as i64);
        let mut late = Batch::default();
        // Records per window start, in arrival order.
        let mut entering: BTreeMap<i64, (Column, Column)> = BTreeMap::new();
        for bucket in buckets {
            let Some(keys) = &bucket.keys else {
                if bucket.is_empty() {
                    continue;
                }
                bail!("event-time-window got records without keys");
            };
            if bucket.timestamps.len() != bucket.len() {
                bail!(
                    "event-time-window got records without event times (add an \
                     assign-timestamps step, or an operator that sets them)"
                );
            }
            if late.keys.is_none() {
                late.keys = Some(Column::default());
            }
            for i in 0..bucket.len() {
                let ts = bucket.timestamps[i];
                let last_start = ts.div_euclid(slide) * slide;
                let mut start = last_start;
                let mut open = false;
                while start > ts - length {
                    if start + length > marks.before {
                        let (k, v) = entering.entry(start).or_default();
                        k.push(keys.get(i));
                        v.push(bucket.values.get(i));
                        open = true;
                    }
                    start -= slide;
                }
                if !open {
                    push_record(&mut late, bucket, i);
                }
            }
        }
        let mut folded = Vec::with_capacity(entering.len());
        for (start, (keys, values)) in &entering {
            let table = self.windows.get(start);
            let current = |key: &[u8]| table.and_then(|t| t.find(key).map(|s| t.value(s)));
            let (mut folder, _) = worker.folder(combine)?;
            folded.push((*start, fold_records(current, keys, values, &mut folder)?));
        }
        // Nothing can fail from here on.
        for (start, pending) in folded {
            apply(self.windows.entry(start).or_default(), &pending, 0);
        }
        let mut closed = Batch {
            keys: Some(Column::default()),
            ..Batch::default()
        };
        let open_from = self
            .windows
            .keys()
            .copied()
            .find(|start| start + length > marks.after);
        let still_open = match open_from {
            Some(start) => self.windows.split_off(&start),
            None => BTreeMap::new(),
        };
        for (start, table) in std::mem::replace(&mut self.windows, still_open) {
            for slot in table.slots() {
                let key = closed.keys.as_mut().expect("built keyed").begin_value();
                nested::push_item(key, Some(&start.to_le_bytes()));
                nested::push_item(key, Some(table.key(slot)));
                closed.keys.as_mut().expect("built keyed").end_value();
                closed.values.push(table.value(slot));
                closed.timestamps.push(start);
            }
        }
        Ok(EventStep { closed, late })
    }
}
