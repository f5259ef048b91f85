//! State kept across batches by the stateful nodes (windows, keyed state, event-time windows),
//! each partitioned like the shuffle in front of it, one lock per partition: the task of
//! shuffle partition p is the only one to touch partition p's state.

mod event_time;
mod fold;
mod keyed;
mod table;
mod window;

pub use event_time::{EventPartition, EventStep, Watermarks};
pub use fold::{Pending, apply, fold_records};
pub use keyed::{StatePartition, StateStep};
pub use table::StateTable;
pub use window::{WindowPartition, WindowReduce};

use crate::checkpoint::{Reader, Writer};
use crate::plan::{GlobalOp, KeyedOp, NodeKind, Plan};
use crate::shuffle::{hash_key, partition_of};
use anyhow::{Context, Result, bail};
use spate_guest::{Batch, Column, ValueType};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Per-batch items kept while their batch is in a window, oldest first.
pub struct History<T> {
    entries: VecDeque<(u64, T)>,
}

impl<T> Default for History<T> {
    fn default() -> Self {
        History {
            entries: VecDeque::new(),
        }
    }
}

impl<T> History<T> {
    fn encode(&self, out: &mut Writer, item: impl Fn(&T, &mut Writer)) {
        out.u64(self.entries.len() as u64);
        for (time, value) in &self.entries {
            out.u64(*time);
            item(value, out);
        }
    }

    fn decode(input: &mut Reader<'_>, item: impl Fn(&mut Reader<'_>) -> Result<T>) -> Result<Self> {
        let mut entries = VecDeque::new();
        for _ in 0..input.u64()? {
            let time = input.u64()?;
            entries.push_back((time, item(input)?));
        }
        Ok(History { entries })
    }

    /// Adds batch `time`'s item and forgets the batches that left a window of `length_ms`.
    pub fn push(&mut self, time: u64, item: T, length_ms: u64) {
        self.entries.push_back((time, item));
        let cutoff = time.saturating_sub(length_ms);
        while self.entries.front().is_some_and(|(t, _)| *t <= cutoff) {
            self.entries.pop_front();
        }
    }

    /// The items in the window, oldest first.
    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, item)| item)
    }
}

/// The state of one node.
pub enum NodeState {
    /// The node keeps nothing across batches.
    Stateless,
    /// reduce-by-key-and-window, count-by-value-and-window.
    Window(Vec<Mutex<WindowPartition>>),
    /// update-state-by-key, map-with-state.
    Keyed(Vec<Mutex<StatePartition>>),
    /// event-time-window, with the newest event time seen so far.
    EventTime(Vec<Mutex<EventPartition>>, Mutex<Option<i64>>),
    /// window: the batches in the window.
    Batches(Mutex<History<Vec<Batch>>>),
    /// count-by-window: each batch's count.
    Counts(Mutex<History<i64>>),
    /// reduce-by-window: each batch's reduced value.
    Values(Mutex<History<Option<Vec<u8>>>>),
}

/// Appends a batch (keys, values, event times) to a checkpoint.
pub fn encode_batch(batch: &Batch, out: &mut Writer) {
    match &batch.keys {
        Some(keys) => {
            out.u64(1);
            encode_column(keys, out);
        }
        None => out.u64(0),
    }
    encode_column(&batch.values, out);
    out.u64(batch.timestamps.len() as u64);
    for &t in &batch.timestamps {
        out.u64(t as u64);
    }
}

fn encode_column(column: &Column, out: &mut Writer) {
    out.u64(column.len() as u64);
    for value in column.iter() {
        out.bytes(value);
    }
}

fn decode_column(input: &mut Reader<'_>) -> Result<Column> {
    let mut column = Column::default();
    for _ in 0..input.u64()? {
        column.push(input.bytes()?);
    }
    Ok(column)
}

/// Reads a batch written by [`encode_batch`].
pub fn decode_batch(input: &mut Reader<'_>) -> Result<Batch> {
    let keys = match input.u64()? {
        0 => None,
        _ => Some(decode_column(input)?),
    };
    let values = decode_column(input)?;
    let mut timestamps = Vec::new();
    for _ in 0..input.u64()? {
        timestamps.push(input.u64()? as i64);
    }
    let batch = Batch {
        keys,
        values,
        timestamps,
    };
    batch
        .validate()
        .map_err(|e| anyhow::anyhow!("a batch in state: {e}"))?;
    Ok(batch)
}

impl NodeState {
    /// A number per kind, so that a checkpoint is only restored into the same kinds.
    fn tag(&self) -> u64 {
        match self {
            NodeState::Stateless => 0,
            NodeState::Window(_) => 1,
            NodeState::Keyed(_) => 2,
            NodeState::EventTime(..) => 3,
            NodeState::Batches(_) => 4,
            NodeState::Counts(_) => 5,
            NodeState::Values(_) => 6,
        }
    }
}

fn encode_parts<T>(parts: &[Mutex<T>], out: &mut Writer, encode: impl Fn(&T, &mut Writer)) {
    out.u64(parts.len() as u64);
    for part in parts {
        encode(&lock(part), out);
    }
}

/// Reads partitions, refusing another partition count (keys would be in the wrong ones).
fn decode_parts<T>(
    parts: &mut [Mutex<T>],
    input: &mut Reader<'_>,
    decode: impl Fn(&mut Reader<'_>) -> Result<T>,
) -> Result<()> {
    let count = input.u64()? as usize;
    if count != parts.len() {
        bail!(
            "it has {count} partitions and the plan {}: keys would be in the wrong partitions",
            parts.len()
        );
    }
    for part in parts {
        *lock(part) = decode(input)?;
    }
    Ok(())
}

/// Locks a partition; a panic elsewhere does not make its state unusable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn locked_partitions<T: Default>(n: usize) -> Vec<Mutex<T>> {
    (0..n).map(|_| Mutex::new(T::default())).collect()
}

/// The state of every node of a job.
pub struct JobState {
    /// By node index.
    pub nodes: Vec<NodeState>,
}

impl JobState {
    /// Empty state for `plan`'s nodes, with initial states loaded (at `now_ms`).
    pub fn new(plan: &Plan, now_ms: u64) -> Result<JobState> {
        let mut nodes = Vec::with_capacity(plan.nodes.len());
        for node in &plan.nodes {
            nodes.push(match &node.kind {
                NodeKind::Keyed { partitions, op, .. } => match op {
                    KeyedOp::WindowReduce { .. } => {
                        NodeState::Window(locked_partitions(*partitions))
                    }
                    KeyedOp::EventWindow { .. } => {
                        NodeState::EventTime(locked_partitions(*partitions), Mutex::new(None))
                    }
                    KeyedOp::State {
                        operator, initial, ..
                    } => {
                        let state: Vec<Mutex<StatePartition>> = locked_partitions(*partitions);
                        if let Some(path) = initial {
                            let state_type = plan.operators[*operator]
                                .info
                                .state_type
                                .unwrap_or(ValueType::Bytes);
                            load_initial_state(path, state_type, &state, now_ms)?;
                        }
                        NodeState::Keyed(state)
                    }
                    _ => NodeState::Stateless,
                },
                NodeKind::Global { op, .. } => match op {
                    GlobalOp::Window(_) => NodeState::Batches(Mutex::default()),
                    GlobalOp::CountByWindow(_) => NodeState::Counts(Mutex::default()),
                    GlobalOp::ReduceByWindow(..) => NodeState::Values(Mutex::default()),
                    _ => NodeState::Stateless,
                },
                _ => NodeState::Stateless,
            });
        }
        Ok(JobState { nodes })
    }

    /// The stateful nodes, in plan order.
    fn stateful(&self) -> impl Iterator<Item = &NodeState> {
        self.nodes
            .iter()
            .filter(|n| !matches!(n, NodeState::Stateless))
    }

    /// The whole state, encoded for a checkpoint: per stateful node a kind tag, then its
    /// partitions. Stateless nodes are left out, so adding or removing one keeps the state
    /// usable.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Writer::default();
        out.u64(self.stateful().count() as u64);
        for node in self.stateful() {
            out.u64(node.tag());
            match node {
                NodeState::Stateless => {}
                NodeState::Window(parts) => encode_parts(parts, &mut out, WindowPartition::encode),
                NodeState::Keyed(parts) => encode_parts(parts, &mut out, StatePartition::encode),
                NodeState::EventTime(parts, newest) => {
                    encode_parts(parts, &mut out, EventPartition::encode);
                    match *lock(newest) {
                        Some(t) => {
                            out.u64(1);
                            out.u64(t as u64);
                        }
                        None => out.u64(0),
                    }
                }
                NodeState::Batches(h) => lock(h).encode(&mut out, |batches, out| {
                    out.u64(batches.len() as u64);
                    for b in batches {
                        encode_batch(b, out);
                    }
                }),
                NodeState::Counts(h) => lock(h).encode(&mut out, |n, out| out.u64(*n as u64)),
                NodeState::Values(h) => lock(h).encode(&mut out, |v, out| match v {
                    Some(v) => {
                        out.u64(1);
                        out.bytes(v);
                    }
                    None => out.u64(0),
                }),
            }
        }
        out.bytes
    }

    /// Replaces this (fresh) state with a checkpoint's, refusing one whose stateful nodes or
    /// partition counts differ from the plan's.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let mut input = Reader::new(bytes);
        let nodes = input.u64()? as usize;
        let stateful = self.stateful().count();
        if nodes != stateful {
            bail!("the checkpoint has {nodes} stateful nodes, the plan {stateful}");
        }
        let stateful = self
            .nodes
            .iter_mut()
            .filter(|n| !matches!(n, NodeState::Stateless));
        for (n, node) in stateful.enumerate() {
            let tag = input.u64()?;
            if tag != node.tag() {
                bail!("node {n} kept another kind of state when the checkpoint was taken");
            }
            let context = || format!("the state of node {n}");
            match node {
                NodeState::Stateless => {}
                NodeState::Window(parts) => {
                    decode_parts(parts, &mut input, WindowPartition::decode)
                        .with_context(context)?
                }
                NodeState::Keyed(parts) => {
                    decode_parts(parts, &mut input, StatePartition::decode).with_context(context)?
                }
                NodeState::EventTime(parts, newest) => {
                    decode_parts(parts, &mut input, EventPartition::decode)
                        .with_context(context)?;
                    *lock(newest) = match input.u64()? {
                        0 => None,
                        _ => Some(input.u64()? as i64),
                    };
                }
                NodeState::Batches(h) => {
                    *lock(h) = History::decode(&mut input, |input| {
                        let mut batches = Vec::new();
                        for _ in 0..input.u64()? {
                            batches.push(decode_batch(input)?);
                        }
                        Ok(batches)
                    })?
                }
                NodeState::Counts(h) => {
                    *lock(h) = History::decode(&mut input, |input| Ok(input.u64()? as i64))?
                }
                NodeState::Values(h) => {
                    *lock(h) = History::decode(&mut input, |input| {
                        Ok(match input.u64()? {
                            0 => None,
                            _ => Some(input.bytes()?.to_vec()),
                        })
                    })?
                }
            }
        }
        if !input.is_empty() {
            bail!("the checkpoint's state has bytes past its end");
        }
        Ok(())
    }

    /// Records (keys, window entries) held in state, over every node.
    pub fn records(&self) -> usize {
        self.nodes
            .iter()
            .map(|node| match node {
                NodeState::Window(p) => p.iter().map(|p| lock(p).records()).sum(),
                NodeState::Keyed(p) => p.iter().map(|p| lock(p).len()).sum(),
                NodeState::EventTime(p, _) => p.iter().map(|p| lock(p).records()).sum(),
                NodeState::Batches(h) => lock(h).items().flatten().map(Batch::len).sum(),
                _ => 0,
            })
            .sum()
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

    #[test]
    fn job_state_round_trips_and_refuses_another_shape() {
        let keyed: Vec<Mutex<StatePartition>> = locked_partitions(2);
        lock(&keyed[1]).preset(b"k", &5i64.to_le_bytes(), 1000);
        let mut counts = History::default();
        counts.push(1000, 3i64, 5000);
        let batches = History::default();
        let state = JobState {
            nodes: vec![
                NodeState::Stateless,
                NodeState::Keyed(keyed),
                NodeState::Counts(Mutex::new(counts)),
                NodeState::Batches(Mutex::new(batches)),
                NodeState::EventTime(locked_partitions(1), Mutex::new(Some(77))),
                NodeState::Window(locked_partitions(1)),
            ],
        };
        let bytes = state.encode();
        let mut fresh = JobState {
            nodes: vec![
                NodeState::Stateless,
                NodeState::Keyed(locked_partitions(2)),
                NodeState::Counts(Mutex::default()),
                NodeState::Batches(Mutex::default()),
                NodeState::EventTime(locked_partitions(1), Mutex::new(None)),
                NodeState::Window(locked_partitions(1)),
            ],
        };
        fresh.restore(&bytes).unwrap();
        assert_eq!(fresh.encode(), bytes);
        assert_eq!(fresh.records(), 1);
        let mut other = JobState {
            nodes: vec![NodeState::Stateless, NodeState::Keyed(locked_partitions(3))],
        };
        let err = format!("{:#}", other.restore(&bytes).unwrap_err());
        assert!(err.contains("5 stateful nodes, the plan 1"), "{err}");
        fresh.nodes[1] = NodeState::Keyed(locked_partitions(3));
        let err = format!("{:#}", fresh.restore(&bytes).unwrap_err());
        assert!(
            err.contains("node 0: it has 2 partitions and the plan 3"),
            "{err}"
        );
        let mut truncated = JobState {
            nodes: vec![NodeState::Stateless],
        };
        assert!(truncated.restore(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn history_keeps_the_window_only() {
        let mut h = History::default();
        for t in [1000, 2000, 3000, 4000] {
            h.push(t, t, 2000);
        }
        assert_eq!(h.items().copied().collect::<Vec<_>>(), vec![3000, 4000]);
    }

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
