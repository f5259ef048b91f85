//! Event-time windows with a watermark (Flink's and Structured Streaming's model): one
//! shuffle partition's open windows.
//!
//! The watermark is the newest event time seen minus the allowed lateness. A batch's records
//! are judged against the watermark reached before the batch; a record whose every window had
//! closed by then is late (counted, and sent to the late stream if there is one). After the
//! batch, the watermark moves on with the batch's newest event time, and every window that ends
//! at or before it is emitted once, final, and forgotten.

use super::reduce_by_key::wasm_combiners;
use super::{Family, Planned, StepPlanner, WindowSpec};
use crate::checkpoint::{Reader, Writer};
use crate::config::{ConfigError, StepOp};
use crate::exec::{
    Combine, Dataflow, KeyedInput, KeyedOp, MapSide, NodeKind, ReduceOutput, ReduceTask,
    Watermarks, Worker,
};
use crate::fault::host_fault;
use crate::record::{Shape, StreamType};
use crate::shuffle::push_record;
use crate::state::{
    NodeState, StateTable, apply, decode_parts, downcast, encode_parts, fold_records, lock,
    locked_partitions,
};
use anyhow::{Result, bail};
use spate_guest::{Column, Partition, nested};
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use toml::Spanned;

/// The event-time window family.
pub struct EventTime;

impl Family for EventTime {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::EventTimeWindow]
    }

    fn fields(&self, _op: StepOp) -> &'static [&'static str] {
        &[
            "plugin",
            "params",
            "partitions",
            "length",
            "slide",
            "allowed-lateness",
            "late",
        ]
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        let key = step.keyed(0)?;
        let spec = step.step;
        let length = step.required_interval(&spec.length, "length")?;
        let slide_ms = spec
            .slide
            .as_ref()
            .map_or(length, |s| s.get_ref().as_millis());
        if slide_ms == 0 || length % slide_ms != 0 {
            let span = spec.slide.as_ref().map_or(step.op_span(), Spanned::span);
            return Err(step.error(
                span,
                "slide",
                format!("must divide the window length ({length} ms) evenly"),
            ));
        }
        let combine = step.combiner()?;
        let lateness_ms = spec
            .allowed_lateness
            .as_ref()
            .map_or(0, |l| l.get_ref().as_millis());
        if let Some(late) = &spec.late {
            step.side_outputs
                .push((late.get_ref().clone(), step.types[0].clone()));
        }
        let input = KeyedInput::new(step.inputs[0], MapSide::Hash, &step.types[0]);
        let op = EventWindow {
            combine,
            window: WindowSpec {
                length_ms: length,
                slide_ms,
            },
            lateness_ms,
        };
        let types = StreamType::keyed(Shape::pair(Shape::I64, key), step.types[0].value.clone());
        Ok(Planned {
            kind: NodeKind::Keyed {
                inputs: vec![input],
                partitions: step.partitions,
                op: Arc::new(op),
            },
            types,
            slide_ms: step.slide,
        })
    }
}

/// Values combined per key per event-time window.
#[derive(Debug)]
struct EventWindow {
    combine: Combine,
    /// Window length and slide (ms of event time).
    window: WindowSpec,
    /// How far the watermark trails the newest event time (ms).
    lateness_ms: u64,
}

/// An event-time node's state: the open windows of each partition, and the newest event time
/// seen so far.
struct EventState {
    parts: Vec<Mutex<EventPartition>>,
    newest: Mutex<Option<i64>>,
}

impl NodeState for EventState {
    fn tag(&self) -> u64 {
        3
    }

    fn encode(&self, out: &mut Writer) {
        encode_parts(&self.parts, out, EventPartition::encode);
        match *lock(&self.newest) {
            Some(t) => {
                out.u64(1);
                out.u64(t as u64);
            }
            None => out.u64(0),
        }
    }

    fn decode(&self, input: &mut Reader<'_>) -> Result<()> {
        decode_parts(&self.parts, input, EventPartition::decode)?;
        *lock(&self.newest) = match input.u64()? {
            0 => None,
            _ => Some(input.u64()? as i64),
        };
        Ok(())
    }

    fn records(&self) -> usize {
        self.parts.iter().map(|p| lock(p).records()).sum()
    }

    fn bytes(&self) -> usize {
        self.parts.iter().map(|p| lock(p).bytes()).sum()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl KeyedOp for EventWindow {
    fn new_state(
        &self,
        partitions: usize,
        _: &Dataflow,
        _: u64,
    ) -> Result<Option<Box<dyn NodeState>>> {
        Ok(Some(Box::new(EventState {
            parts: locked_partitions(partitions),
            newest: Mutex::new(None),
        })))
    }

    fn state_layout(&self) -> Option<String> {
        Some(format!(
            "event-time-window, {}, lateness {} ms",
            self.window.layout(),
            self.lateness_ms
        ))
    }

    /// The watermarks around this batch, moving the newest event time on with the batch's.
    fn watermarks(
        &self,
        state: Option<&dyn NodeState>,
        inputs: &[Vec<Partition>],
        end_of_input: bool,
    ) -> Result<Option<Watermarks>> {
        let state = downcast::<EventState>(state)?;
        let lateness = self.lateness_ms as i64;
        let mut newest = lock(&state.newest);
        let before = newest.map_or(i64::MIN, |t| t.saturating_sub(lateness));
        let batch_newest = inputs
            .iter()
            .flatten()
            .flat_map(|b| b.timestamps.iter().copied())
            .max();
        *newest = newest.max(batch_newest);
        let after = if end_of_input {
            // No event can come any more: every window is complete.
            i64::MAX
        } else {
            newest.map_or(i64::MIN, |t| t.saturating_sub(lateness))
        };
        Ok(Some(Watermarks { before, after }))
    }

    fn reduce(&self, task: ReduceTask<'_>, buckets: &mut [Partition]) -> Result<ReduceOutput> {
        let state = downcast::<EventState>(task.state)?;
        let marks = task
            .marks
            .ok_or_else(|| host_fault("an event-time window runs without watermarks"))?;
        let part = state
            .parts
            .get(task.partition)
            .ok_or_else(|| host_fault(format!("no event-time partition {}", task.partition)))?;
        let step = lock(part).step(task.worker, self.combine, self.window, marks, buckets)?;
        Ok(ReduceOutput {
            main: Some(step.closed),
            late_records: step.late.len() as u64,
            side: Some(step.late),
        })
    }

    fn describe(&self, dataflow: &Dataflow) -> String {
        format!(
            "combine per key with {} per event-time window of {}, watermark = newest event time - {} ms",
            dataflow.combine_name(self.combine),
            self.window.describe(),
            self.lateness_ms
        )
    }

    fn operators(&self) -> Vec<(&'static str, usize)> {
        wasm_combiners(&[self.combine])
    }
}

/// The open windows of one shuffle partition, by start time.
#[derive(Default)]
pub struct EventPartition {
    windows: BTreeMap<i64, StateTable>,
}

/// What one batch produced.
pub struct EventStep {
    /// ((window start, key), value) of the windows that closed.
    pub closed: Partition,
    /// The late records.
    pub late: Partition,
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

    /// Host memory the open windows hold, roughly.
    pub fn bytes(&self) -> usize {
        self.windows.values().map(StateTable::bytes).sum()
    }

    /// Folds the batch's records into their windows and emits the windows that close. Changes
    /// nothing if it fails.
    pub fn step(
        &mut self,
        worker: &mut Worker,
        combine: Combine,
        window: WindowSpec,
        marks: Watermarks,
        buckets: &[Partition],
    ) -> Result<EventStep> {
        let (length, slide) = (window.length_ms as i64, window.slide_ms as i64);
        let mut late = Partition::default();
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
        let mut closed = Partition {
            keys: Some(Column::default()),
            ..Partition::default()
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
