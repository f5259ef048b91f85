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

use crate::plan::{GlobalOp, KeyedOp, NodeKind, Plan};
use crate::shuffle::{hash_key, partition_of};
use anyhow::{Context, Result, bail};
use spate_guest::{Batch, ValueType};
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
