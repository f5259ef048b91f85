//! update-state-by-key and map-with-state (Spark's updateStateByKey and mapWithState): a Wasm
//! state operator per key, with the state of one shuffle partition's keys kept by the host.
//!
//! The state operator is called once per partition and batch with every key to update: the
//! keys with new data (their values in arrival order), plus every other key for
//! updateStateByKey, or the keys timing out for mapWithState. Each key's state crosses the
//! boundary once, in and out. mapWithState's cost grows with the keys touched: keys due to
//! time out are found through a queue ordered by update time, not by scanning the state.

use super::grouping::group_values;
use super::{Family, Planned, StepPlanner};
use crate::checkpoint::{Reader, Writer};
use crate::config::{ConfigError, StepOp};
use crate::exec::{
    Dataflow, KeyedInput, KeyedOp, MapSide, NodeKind, ReduceOutput, ReduceTask, Worker,
};
use crate::record::{Shape, StreamType};
use crate::shuffle::{hash_key, partition_of};
use crate::state::{NodeState, PartitionState, Partitioned, StateTable, downcast, lock};
use anyhow::{Context, Result, bail};
use spate_guest::{Column, Partition, StateInput, StateOutput, ValueType};
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The keyed state family.
pub struct KeyedState;

impl Family for KeyedState {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::UpdateStateByKey, StepOp::MapWithState]
    }

    fn fields(&self, op: StepOp) -> &'static [&'static str] {
        match op {
            StepOp::UpdateStateByKey => &["plugin", "params", "partitions", "initial-state"],
            _ => &[
                "plugin",
                "params",
                "partitions",
                "timeout",
                "initial-state",
                "snapshots",
            ],
        }
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        let key = step.keyed(0)?;
        let operator = step.plugin_operator(crate::wasm::OperatorKind::State)?;
        let info = step.operator(operator).info.clone();
        let state_type = Shape::from(info.state_type.unwrap_or(ValueType::Bytes));
        let spec = step.step;
        let initial = spec
            .initial_state
            .as_ref()
            .map(|p| step.existing_file(p, "initial-state"))
            .transpose()?;
        let (mode, types) = if step.op == StepOp::UpdateStateByKey {
            let types = StreamType::keyed(key.clone(), state_type.clone());
            (StateMode::UpdateAll, types)
        } else {
            let types = StreamType {
                key: info.key_type.map(Shape::from).or(Some(key.clone())),
                value: info.value_type.map_or(state_type.clone(), Shape::from),
            };
            if let Some(snapshots) = &spec.snapshots {
                step.side_outputs.push((
                    snapshots.get_ref().clone(),
                    StreamType::keyed(key.clone(), state_type.clone()),
                ));
            }
            let timeout_ms = spec.timeout.as_ref().map(|t| t.get_ref().as_millis());
            (StateMode::MapWithState { timeout_ms }, types)
        };
        let input = KeyedInput::new(step.inputs[0], MapSide::Hash, &step.types[0]);
        let op = KeyedStateOp {
            operator,
            mode,
            initial,
        };
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

/// updateStateByKey or mapWithState.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateMode {
    /// Every key in state is updated every batch; the output is the whole state.
    UpdateAll,
    /// Only keys with new data (and timing-out keys) are updated; the output is what the
    /// operator emits.
    MapWithState {
        /// A key idle for longer than this times out (ms).
        timeout_ms: Option<u64>,
    },
}

/// The reduce side of a keyed state step.
#[derive(Debug)]
pub struct KeyedStateOp {
    /// The Wasm state operator.
    pub operator: usize,
    /// Which of the two.
    mode: StateMode,
    /// A file of initial `key<TAB>state` lines.
    initial: Option<PathBuf>,
}

/// The role of a keyed state step's operator in [`KeyedOp::operators`] (what `spate migrate`
/// looks for).
pub const STATE_OPERATOR: &str = "state operator";

/// A keyed state node's state.
pub type KeyedStates = Partitioned<StatePartition>;

impl KeyedOp for KeyedStateOp {
    fn new_state(
        &self,
        partitions: usize,
        dataflow: &Dataflow,
        now_ms: u64,
    ) -> Result<Option<Box<dyn NodeState>>> {
        let state = KeyedStates::new(partitions);
        if let Some(path) = &self.initial {
            let state_type = dataflow.operators[self.operator]
                .info
                .state_type
                .unwrap_or(ValueType::Bytes);
            load_initial_state(path, state_type, &state.parts, now_ms)?;
        }
        Ok(Some(Box::new(state)))
    }

    fn state_layout(&self) -> Option<String> {
        Some(
            match self.mode {
                StateMode::UpdateAll => "update-state-by-key",
                StateMode::MapWithState { .. } => "map-with-state",
            }
            .to_owned(),
        )
    }

    fn reduce(&self, task: ReduceTask<'_>, buckets: &mut [Partition]) -> Result<ReduceOutput> {
        let state = downcast::<KeyedStates>(task.state)?;
        let step = state.part(task.partition)?.step(
            task.worker,
            self.operator,
            self.mode,
            task.side_output,
            task.time,
            buckets,
        )?;
        Ok(ReduceOutput {
            main: Some(step.output),
            side: step.snapshot,
            late_records: 0,
        })
    }

    fn describe(&self, _: &Dataflow) -> String {
        format!(
            "{}{}",
            match self.mode {
                StateMode::UpdateAll =>
                    "update-state-by-key: every key in state each batch".to_owned(),
                StateMode::MapWithState { timeout_ms } => format!(
                    "map-with-state: keys with new data{}",
                    timeout_ms
                        .map(|t| format!(", timeout {t} ms"))
                        .unwrap_or_default()
                ),
            },
            self.initial
                .as_ref()
                .map(|p| format!(", initial state from {}", p.display()))
                .unwrap_or_default()
        )
    }

    fn operators(&self) -> Vec<(&'static str, usize)> {
        vec![(STATE_OPERATOR, self.operator)]
    }
}

impl PartitionState for StatePartition {
    const TAG: u64 = 2;

    fn encode(&self, out: &mut Writer) {
        StatePartition::encode(self, out);
    }

    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        StatePartition::decode(input)
    }

    fn records(&self) -> usize {
        self.len()
    }

    fn bytes(&self) -> usize {
        self.table.bytes() + self.timeouts.len() * std::mem::size_of::<(u64, u32)>()
    }
}

/// The keyed state of one shuffle partition. A key's meta is the time of its last update.
#[derive(Default)]
pub struct StatePartition {
    table: StateTable,
    /// (update time, slot) of each update, oldest first; stale entries (the key was updated
    /// again or removed since) are skipped when they come up.
    timeouts: VecDeque<(u64, u32)>,
}

/// What one batch produced.
pub struct StateStep {
    /// The main output: the whole state (updateStateByKey) or what the operator emitted.
    pub output: Partition,
    /// mapWithState's snapshot stream, if asked for: (key, state) of every key in state.
    pub snapshot: Option<Partition>,
}

impl StatePartition {
    /// Appends the state and the pending timeouts (by key: slots are renumbered on reading) to
    /// a checkpoint.
    pub fn encode(&self, out: &mut Writer) {
        self.table.encode(out);
        let current: Vec<(u64, u32)> = self
            .timeouts
            .iter()
            .copied()
            .filter(|&(t, slot)| self.table.is_alive(slot) && self.table.meta(slot) == t)
            .collect();
        out.u64(current.len() as u64);
        for (time, slot) in current {
            out.u64(time);
            out.bytes(self.table.key(slot));
        }
    }

    /// Reads a partition written by [`StatePartition::encode`].
    pub fn decode(input: &mut Reader<'_>) -> Result<StatePartition> {
        let table = StateTable::decode(input)?;
        let mut timeouts = VecDeque::new();
        for _ in 0..input.u64()? {
            let time = input.u64()?;
            let key = input.bytes()?;
            let Some(slot) = table.find(key) else {
                anyhow::bail!("a timeout names a key not in state");
            };
            timeouts.push_back((time, slot));
        }
        Ok(StatePartition { table, timeouts })
    }

    /// Keys in state.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True without keys in state.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Sets a key's initial state (loaded before the first batch) at `time`.
    pub fn preset(&mut self, key: &[u8], state: &[u8], time: u64) {
        let slot = match self.table.find(key) {
            Some(slot) => {
                self.table.set(slot, state);
                self.table.set_meta(slot, time);
                slot
            }
            None => self.table.insert(key, state, time),
        };
        self.timeouts.push_back((time, slot));
    }

    /// Rewrites every key's state with `convert` (a migration operator's `update`), called with
    /// up to `chunk` keys at a time, no values and their old states: a key kept gets the state
    /// returned, a key dropped is removed. Returns (kept, dropped).
    pub fn migrate(
        &mut self,
        batch_time: u64,
        chunk: usize,
        mut convert: impl FnMut(StateInput) -> Result<StateOutput>,
    ) -> Result<(usize, usize)> {
        let slots: Vec<u32> = self.table.slots().collect();
        let (mut kept, mut dropped) = (0, 0);
        for part in slots.chunks(chunk.max(1)) {
            let n = part.len();
            let input = StateInput {
                batch_time: batch_time as i64,
                keys: Column::from_values(part.iter().map(|&s| self.table.key(s))),
                value_starts: vec![0; n + 1],
                values: Column::default(),
                states: Column::from_values(part.iter().map(|&s| self.table.value(s))),
                has_state: vec![true; n],
                timing_out: vec![false; n],
            };
            let output = convert(input)?;
            for (i, &slot) in part.iter().enumerate() {
                if output.keep[i] {
                    self.table.set(slot, output.states.get(i));
                    kept += 1;
                } else {
                    self.table.remove(slot);
                    dropped += 1;
                }
            }
        }
        Ok((kept, dropped))
    }

    /// Runs one batch. Changes nothing if it fails.
    pub fn step(
        &mut self,
        worker: &mut Worker,
        operator: usize,
        mode: StateMode,
        snapshots: bool,
        time: u64,
        buckets: &[Partition],
    ) -> Result<StateStep> {
        if !matches!(
            mode,
            StateMode::MapWithState {
                timeout_ms: Some(_)
            }
        ) {
            // Only timeouts read the queue (initial states are queued before the mode is known).
            self.timeouts.clear();
        }
        let (mut keys, mut value_starts, values) = group_values(buckets)?;
        let with_data = keys.len();
        let mut states = Column::with_capacity(with_data, 0);
        let mut has_state = Vec::with_capacity(with_data);
        let mut slots: Vec<Option<u32>> = Vec::with_capacity(with_data);
        for key in keys.iter() {
            let slot = self.table.find(key);
            states.push(slot.map_or(&[][..], |s| self.table.value(s)));
            has_state.push(slot.is_some());
            slots.push(slot);
        }
        let mut timing_out = vec![false; with_data];
        // Keys without new data that are visited too.
        let mut extra: Vec<u32> = Vec::new();
        let mut timeouts_seen = 0;
        let mut visited: HashSet<u32> = slots.iter().flatten().copied().collect();
        match mode {
            StateMode::UpdateAll => {
                extra.extend(self.table.slots().filter(|s| !visited.contains(s)));
            }
            StateMode::MapWithState {
                timeout_ms: Some(timeout),
            } => {
                // A key last updated at u times out in the first batch t with t - u > timeout.
                for &(updated, slot) in &self.timeouts {
                    if time.saturating_sub(updated) <= timeout {
                        break;
                    }
                    timeouts_seen += 1;
                    let current = self.table.is_alive(slot) && self.table.meta(slot) == updated;
                    if current && visited.insert(slot) {
                        extra.push(slot);
                    }
                }
            }
            StateMode::MapWithState { timeout_ms: None } => {}
        }
        let extra_times_out = matches!(mode, StateMode::MapWithState { .. });
        for &slot in &extra {
            keys.push(self.table.key(slot));
            states.push(self.table.value(slot));
            has_state.push(true);
            timing_out.push(extra_times_out);
            value_starts.push(*value_starts.last().unwrap_or(&0));
            slots.push(Some(slot));
        }
        if keys.is_empty() {
            return Ok(StateStep {
                output: Partition::default(),
                snapshot: snapshots.then(|| self.table.contents()),
            });
        }
        let result = worker.state(operator)?.update(spate_guest::StateInput {
            batch_time: time as i64,
            keys: keys.clone(),
            value_starts,
            values,
            states,
            has_state,
            timing_out: timing_out.clone(),
        })?;
        // Nothing can fail from here on.
        self.timeouts.drain(..timeouts_seen);
        for i in 0..keys.len() {
            let had_data = i < with_data;
            match slots[i] {
                Some(slot) if timing_out[i] || !result.keep[i] => self.table.remove(slot),
                Some(slot) => {
                    self.table.set(slot, result.states.get(i));
                    if had_data {
                        self.table.set_meta(slot, time);
                    }
                }
                None if result.keep[i] => {
                    slots[i] = Some(self.table.insert(keys.get(i), result.states.get(i), time));
                }
                None => {}
            }
            let timed = matches!(
                mode,
                StateMode::MapWithState {
                    timeout_ms: Some(_)
                }
            );
            if let (true, true, Some(slot)) = (timed, had_data, slots[i])
                && self.table.is_alive(slot)
            {
                self.timeouts.push_back((time, slot));
            }
        }
        if let Some(renumbered) = self.table.rebuild_if_sparse() {
            self.timeouts = self
                .timeouts
                .drain(..)
                .filter_map(|(t, slot)| {
                    let new = renumbered[slot as usize];
                    (new != u32::MAX).then_some((t, new))
                })
                .collect();
        }
        let output = match mode {
            StateMode::UpdateAll => self.table.contents(),
            StateMode::MapWithState { .. } => result.emitted,
        };
        Ok(StateStep {
            output,
            snapshot: snapshots.then(|| self.table.contents()),
        })
    }
}

/// Reads `key<TAB>state` lines into the state partitions, each key to the partition its hash
/// sends it to.
fn load_initial_state(
    path: &Path,
    state_type: ValueType,
    state: &[Mutex<StatePartition>],
    now_ms: u64,
) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read initial state file {}", path.display()))?;
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let Some((key, value)) = line.split_once('\t') else {
            bail!("{}: expected `key<TAB>state`, got {line:?}", at());
        };
        let bytes = encode_scalar(value, state_type).with_context(at)?;
        let partition = partition_of(hash_key(key.as_bytes()), state.len());
        lock(&state[partition]).preset(key.as_bytes(), &bytes, now_ms);
    }
    Ok(())
}

/// The bytes of a value written as text in a file, per its type.
fn encode_scalar(text: &str, value_type: ValueType) -> Result<Vec<u8>> {
    Ok(match value_type {
        ValueType::I64 => text
            .trim()
            .parse::<i64>()
            .with_context(|| format!("state {text:?} is not an i64"))?
            .to_le_bytes()
            .to_vec(),
        ValueType::F64 => text
            .trim()
            .parse::<f64>()
            .with_context(|| format!("state {text:?} is not an f64"))?
            .to_le_bytes()
            .to_vec(),
        ValueType::Text | ValueType::Bytes => text.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::locked_partitions;

    #[test]
    fn initial_state_lines_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.tsv");
        std::fs::write(&path, "a\t1\nb\t2\n").unwrap();
        let state: Vec<Mutex<StatePartition>> = locked_partitions(2);
        load_initial_state(&path, ValueType::I64, &state, 0).unwrap();
        assert_eq!(state.iter().map(|p| lock(p).len()).sum::<usize>(), 2);
        std::fs::write(&path, "a\t1\nb two\n").unwrap();
        let err = load_initial_state(&path, ValueType::I64, &state, 0).unwrap_err();
        assert!(format!("{err:#}").contains("init.tsv:2"), "{err:#}");
        std::fs::write(&path, "a\tx\n").unwrap();
        let err = load_initial_state(&path, ValueType::I64, &state, 0).unwrap_err();
        assert!(format!("{err:#}").contains("not an i64"), "{err:#}");
    }
}
