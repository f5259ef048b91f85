//! reduce-by-key-and-window (and count-by-value-and-window's reduce side): values combined per
//! key over the last `length` of batches, every `slide`; the state of one shuffle partition's
//! window.
//!
//! Each batch's records of the partition are combined per key and kept while the batch is in
//! the window. Without an inverse function the window is recombined from those batches at each
//! slide (cost grows with the window, as in Spark). With one, the window's value per key is
//! kept in a table and updated incrementally: the batch entering is folded in with the
//! function, the batch leaving is folded in with the inverse, and a key is dropped once no
//! batch of the window holds it (so both ways give the same keys and values). A batch then
//! costs what the batches entering and leaving hold, whatever the window holds.

use super::reduce_by_key::wasm_combiners;
use super::{Family, Planned, StepPlanner, WindowSpec};
use crate::batch::partition_bytes;
use crate::checkpoint::{Reader, Writer};
use crate::config::{ConfigError, StepOp};
use crate::exec::{
    Combine, Dataflow, KeyedInput, KeyedOp, MapSide, NodeKind, ReduceOutput, ReduceTask, Worker,
};
use crate::shuffle::combine_by_key;
use crate::state::{
    NodeState, PartitionState, Partitioned, Pending, StateTable, apply, decode_batch, downcast,
    encode_batch, fold_records,
};
use anyhow::Result;
use spate_guest::Partition;
use std::collections::VecDeque;
use std::sync::Arc;

/// The reduce-by-key-and-window family.
pub struct KeyedWindow;

impl Family for KeyedWindow {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::ReduceByKeyAndWindow]
    }

    fn fields(&self, _op: StepOp) -> &'static [&'static str] {
        &[
            "plugin",
            "params",
            "inverse-plugin",
            "inverse-params",
            "partitions",
            "length",
            "slide",
        ]
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        step.keyed(0)?;
        let window = step.window()?;
        let combine = step.combiner()?;
        let inverse = step.inverse_combiner()?;
        let input = KeyedInput::new(step.inputs[0], MapSide::Combine(combine), &step.types[0]);
        let op = WindowReduce {
            combine,
            inverse,
            window,
        };
        Ok(Planned {
            kind: NodeKind::Keyed {
                inputs: vec![input],
                partitions: step.partitions,
                op: Arc::new(op),
            },
            types: step.types[0].clone(),
            slide_ms: window.slide_ms,
        })
    }
}

/// The window state of one shuffle partition.
#[derive(Default)]
pub struct WindowPartition {
    /// Each batch's records combined per key, oldest first, while in the window.
    batches: VecDeque<(u64, Partition)>,
    /// With an inverse: the window's value per key; meta counts the window's batches holding
    /// the key.
    table: StateTable,
}

/// A windowed reduce per key: the reduce side of reduce-by-key-and-window and
/// count-by-value-and-window.
#[derive(Clone, Copy, Debug)]
pub struct WindowReduce {
    /// The function.
    pub combine: Combine,
    /// Its inverse, if given.
    pub inverse: Option<Combine>,
    /// The window.
    pub window: WindowSpec,
}

impl KeyedOp for WindowReduce {
    fn new_state(
        &self,
        partitions: usize,
        _: &Dataflow,
        _: u64,
    ) -> Result<Option<Box<dyn NodeState>>> {
        Ok(Some(Box::new(Partitioned::<WindowPartition>::new(
            partitions,
        ))))
    }

    fn state_layout(&self) -> Option<String> {
        Some(format!(
            "reduce-by-key-and-window, {}, {} inverse",
            self.window.layout(),
            if self.inverse.is_some() {
                "with"
            } else {
                "without"
            }
        ))
    }

    fn reduce(&self, task: ReduceTask<'_>, buckets: &mut [Partition]) -> Result<ReduceOutput> {
        let state = downcast::<Partitioned<WindowPartition>>(task.state)?;
        let main = state
            .part(task.partition)?
            .step(task.worker, *self, task.time, buckets)?;
        Ok(ReduceOutput {
            main,
            ..ReduceOutput::default()
        })
    }

    fn emits_at(&self, time: u64) -> bool {
        time.is_multiple_of(self.window.slide_ms)
    }

    fn describe(&self, dataflow: &Dataflow) -> String {
        format!(
            "combine per key with {} over a window of {}, {}",
            dataflow.combine_name(self.combine),
            self.window.describe(),
            match self.inverse {
                Some(inverse) =>
                    format!("incrementally (inverse {})", dataflow.combine_name(inverse)),
                None => "recombining the window's batches".into(),
            }
        )
    }

    fn operators(&self) -> Vec<(&'static str, usize)> {
        let combines: Vec<Combine> = std::iter::once(self.combine).chain(self.inverse).collect();
        wasm_combiners(&combines)
    }
}

impl PartitionState for WindowPartition {
    const TAG: u64 = 1;

    fn encode(&self, out: &mut Writer) {
        WindowPartition::encode(self, out);
    }

    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        WindowPartition::decode(input)
    }

    fn records(&self) -> usize {
        WindowPartition::records(self)
    }

    fn bytes(&self) -> usize {
        let batches: usize = self.batches.iter().map(|(_, b)| partition_bytes(b)).sum();
        self.table.bytes() + batches
    }
}

impl WindowPartition {
    /// Appends the partition to a checkpoint.
    pub fn encode(&self, out: &mut Writer) {
        out.u64(self.batches.len() as u64);
        for (time, batch) in &self.batches {
            out.u64(*time);
            encode_batch(batch, out);
        }
        self.table.encode(out);
    }

    /// Reads a partition written by [`WindowPartition::encode`].
    pub fn decode(input: &mut Reader<'_>) -> Result<WindowPartition> {
        let mut batches = VecDeque::new();
        for _ in 0..input.u64()? {
            let time = input.u64()?;
            batches.push_back((time, decode_batch(input)?));
        }
        Ok(WindowPartition {
            batches,
            table: StateTable::decode(input)?,
        })
    }

    /// Keys held (with an inverse) plus the records of the batches kept.
    pub fn records(&self) -> usize {
        self.table.len() + self.batches.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// Takes in this batch's buckets for the partition; at a slide time returns the window's
    /// records. Changes nothing if it fails.
    pub fn step(
        &mut self,
        worker: &mut Worker,
        spec: WindowReduce,
        time: u64,
        buckets: &[Partition],
    ) -> Result<Option<Partition>> {
        let reduced = {
            let (mut folder, scratch) = worker.folder(spec.combine)?;
            combine_by_key(scratch, buckets, &mut folder)?.batch
        };
        let cutoff = time.saturating_sub(spec.window.length_ms);
        let leaving = self
            .batches
            .iter()
            .take_while(|(t, _)| *t <= cutoff)
            .count();
        let emit = time.is_multiple_of(spec.window.slide_ms);
        let output = match spec.inverse {
            None => {
                let output = if emit {
                    let mut window: Vec<Partition> = self
                        .batches
                        .iter()
                        .skip(leaving)
                        .map(|(_, b)| b.clone())
                        .collect();
                    window.push(reduced.clone());
                    let (mut folder, scratch) = worker.folder(spec.combine)?;
                    Some(combine_by_key(scratch, &window, &mut folder)?.batch)
                } else {
                    None
                };
                self.batches.drain(..leaving);
                output
            }
            Some(inverse) => {
                self.slide_incrementally(worker, spec.combine, inverse, &reduced, leaving)?;
                emit.then(|| self.table.contents())
            }
        };
        self.batches.push_back((time, reduced));
        Ok(output)
    }

    /// Folds the entering batch in and the `leaving` oldest batches out of the table.
    fn slide_incrementally(
        &mut self,
        worker: &mut Worker,
        combine: Combine,
        inverse: Combine,
        entering: &Partition,
        leaving: usize,
    ) -> Result<()> {
        let table = &self.table;
        let in_table = |key: &[u8]| table.find(key).map(|slot| table.value(slot));
        let keys_of = |b: &Partition| b.keys.clone().unwrap_or_default();
        let added = {
            let (mut folder, _) = worker.folder(combine)?;
            fold_records(in_table, &keys_of(entering), &entering.values, &mut folder)?
        };
        // Each leaving batch is subtracted from the newest value of its keys.
        let mut layers: Vec<Pending> = vec![added];
        for (_, old) in self.batches.iter().take(leaving) {
            let newest = |key: &[u8]| {
                layers
                    .iter()
                    .rev()
                    .find_map(|layer| layer.get(key))
                    .or_else(|| in_table(key))
            };
            let (mut folder, _) = worker.folder(inverse)?;
            let removed = fold_records(newest, &keys_of(old), &old.values, &mut folder)?;
            layers.push(removed);
        }
        // Nothing can fail from here on.
        let mut layers = layers.into_iter();
        let added = layers.next().expect("the entering batch's layer");
        for slot in apply(&mut self.table, &added, 0) {
            let holders = self.table.meta(slot);
            self.table.set_meta(slot, holders + 1);
        }
        for removed in layers {
            for slot in apply(&mut self.table, &removed, 0) {
                let holders = self.table.meta(slot).saturating_sub(1);
                self.table.set_meta(slot, holders);
                if holders == 0 {
                    self.table.remove(slot);
                }
            }
        }
        self.batches.drain(..leaving);
        self.table.rebuild_if_sparse();
        Ok(())
    }
}
