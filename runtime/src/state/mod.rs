//! State kept across batches: the building blocks the stateful op families of `ops` keep
//! their state in (a keyed table, two-phase folds, per-batch histories, partitions behind
//! locks: the task of shuffle partition p is the only one to touch partition p's state), the
//! [`NodeState`] trait by which a checkpoint encodes any node's state, and [`JobState`], the
//! state of every node of a job.

mod fold;
mod table;

pub use fold::{Pending, apply, fold_records};
pub use table::StateTable;

use crate::checkpoint::{Reader, Writer};
use crate::fault::host_fault;
use anyhow::{Context, Result, bail};
use spate_guest::{Column, Partition};
use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a stateful node keeps across batches, as a checkpoint sees it. Each stateful op family
/// implements it for its own state type, which only that family reads (through
/// [`downcast`]).
pub trait NodeState: Send + Sync + 'static {
    /// A number per kind of state, so that a checkpoint is only restored into the same kind.
    fn tag(&self) -> u64;

    /// Appends the whole state to a checkpoint.
    fn encode(&self, out: &mut Writer);

    /// Replaces the state with one [`NodeState::encode`] wrote, refusing another shape (another
    /// partition count).
    fn decode(&self, input: &mut Reader<'_>) -> Result<()>;

    /// Records (keys, window entries) held.
    fn records(&self) -> usize;

    /// Host memory held, roughly: keys, values and their index (`job.max-state-bytes`).
    fn bytes(&self) -> usize;

    /// The state as `Any`, for its family to see its own type.
    fn as_any(&self) -> &dyn Any;
}

/// A node's state as the family that made it knows it. The state of every node is made by the
/// node's own op ([`crate::exec::KeyedOp::new_state`]), so a mismatch is a host bug.
pub fn downcast<T: NodeState>(state: Option<&dyn NodeState>) -> Result<&T> {
    state
        .and_then(|s| s.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            host_fault(format!(
                "a node runs without its state ({})",
                std::any::type_name::<T>()
            ))
        })
}

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
    /// Appends the items to a checkpoint, each with its batch time.
    pub fn encode(&self, out: &mut Writer, item: impl Fn(&T, &mut Writer)) {
        out.u64(self.entries.len() as u64);
        for (time, value) in &self.entries {
            out.u64(*time);
            item(value, out);
        }
    }

    /// Reads items written by [`History::encode`].
    pub fn decode(
        input: &mut Reader<'_>,
        item: impl Fn(&mut Reader<'_>) -> Result<T>,
    ) -> Result<Self> {
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

/// Appends a batch (keys, values, event times) to a checkpoint.
pub fn encode_batch(batch: &Partition, out: &mut Writer) {
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
pub fn decode_batch(input: &mut Reader<'_>) -> Result<Partition> {
    let keys = match input.u64()? {
        0 => None,
        _ => Some(decode_column(input)?),
    };
    let values = decode_column(input)?;
    let mut timestamps = Vec::new();
    for _ in 0..input.u64()? {
        timestamps.push(input.u64()? as i64);
    }
    let batch = Partition {
        keys,
        values,
        timestamps,
    };
    batch
        .validate()
        .map_err(|e| anyhow::anyhow!("a batch in state: {e}"))?;
    Ok(batch)
}

/// Appends partitions to a checkpoint: their count, then each.
pub fn encode_parts<T>(parts: &[Mutex<T>], out: &mut Writer, encode: impl Fn(&T, &mut Writer)) {
    out.u64(parts.len() as u64);
    for part in parts {
        encode(&lock(part), out);
    }
}

/// Reads partitions, refusing another partition count (keys would be in the wrong ones).
pub fn decode_parts<T>(
    parts: &[Mutex<T>],
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

/// `n` empty partitions, each behind its lock.
pub fn locked_partitions<T: Default>(n: usize) -> Vec<Mutex<T>> {
    (0..n).map(|_| Mutex::new(T::default())).collect()
}

/// One shuffle partition's part of a keyed node's state.
pub trait PartitionState: Default + Send + 'static {
    /// The kind's number in checkpoints (see [`NodeState::tag`]).
    const TAG: u64;

    /// Appends the partition to a checkpoint.
    fn encode(&self, out: &mut Writer);

    /// Reads a partition [`PartitionState::encode`] wrote.
    fn decode(input: &mut Reader<'_>) -> Result<Self>;

    /// Records (keys, window entries) held.
    fn records(&self) -> usize;

    /// Host memory held, roughly.
    fn bytes(&self) -> usize;
}

/// A keyed node's state: one part per shuffle partition, each behind its own lock, so that
/// the task of shuffle partition p is the only one to wait for partition p.
pub struct Partitioned<T> {
    /// By shuffle partition.
    pub parts: Vec<Mutex<T>>,
}

impl<T: PartitionState> Partitioned<T> {
    /// `n` empty partitions.
    pub fn new(n: usize) -> Self {
        Partitioned {
            parts: locked_partitions(n),
        }
    }

    /// Partition `p`, locked.
    pub fn part(&self, p: usize) -> Result<MutexGuard<'_, T>> {
        let part = self
            .parts
            .get(p)
            .ok_or_else(|| host_fault(format!("no state partition {p} of {}", self.parts.len())))?;
        Ok(lock(part))
    }
}

impl<T: PartitionState> NodeState for Partitioned<T> {
    fn tag(&self) -> u64 {
        T::TAG
    }

    fn encode(&self, out: &mut Writer) {
        encode_parts(&self.parts, out, T::encode);
    }

    fn decode(&self, input: &mut Reader<'_>) -> Result<()> {
        decode_parts(&self.parts, input, T::decode)
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

/// The state of every node of a job, by node index (none for the nodes that keep nothing).
pub struct JobState {
    /// By node index.
    pub nodes: Vec<Option<Arc<dyn NodeState>>>,
}

impl JobState {
    /// The state of node `n`, if it keeps any.
    pub fn of(&self, n: usize) -> Option<&dyn NodeState> {
        self.nodes.get(n)?.as_deref()
    }

    /// The stateful nodes, in plan order.
    fn stateful(&self) -> impl Iterator<Item = &Arc<dyn NodeState>> {
        self.nodes.iter().flatten()
    }

    /// The whole state, encoded for a checkpoint: per stateful node a kind tag, then its
    /// state. Stateless nodes are left out, so adding or removing one keeps the state usable.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Writer::default();
        out.u64(self.stateful().count() as u64);
        for node in self.stateful() {
            out.u64(node.tag());
            node.encode(&mut out);
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
        for (n, node) in self.stateful().enumerate() {
            let tag = input.u64()?;
            if tag != node.tag() {
                bail!("node {n} kept another kind of state when the checkpoint was taken");
            }
            node.decode(&mut input)
                .with_context(|| format!("the state of node {n}"))?;
        }
        if !input.is_empty() {
            bail!("the checkpoint's state has bytes past its end");
        }
        Ok(())
    }

    /// Records (keys, window entries) held in state, over every node.
    pub fn records(&self) -> usize {
        self.stateful().map(|node| node.records()).sum()
    }

    /// Host memory held by each stateful node: (node index, bytes).
    pub fn bytes_by_node(&self) -> Vec<(usize, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(n, node)| Some((n, node.as_ref()?.bytes())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state of one count per partition.
    #[derive(Default)]
    struct Counts(Vec<Mutex<u64>>);

    impl NodeState for Counts {
        fn tag(&self) -> u64 {
            9
        }
        fn encode(&self, out: &mut Writer) {
            encode_parts(&self.0, out, |n, out| out.u64(*n));
        }
        fn decode(&self, input: &mut Reader<'_>) -> Result<()> {
            decode_parts(&self.0, input, |input| input.u64())
        }
        fn records(&self) -> usize {
            self.0.iter().map(|n| *lock(n) as usize).sum()
        }
        fn bytes(&self) -> usize {
            self.0.len() * 8
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn counts(values: &[u64]) -> Option<Arc<dyn NodeState>> {
        Some(Arc::new(Counts(
            values.iter().map(|&v| Mutex::new(v)).collect(),
        )))
    }

    #[test]
    fn job_state_round_trips_and_refuses_another_shape() {
        let state = JobState {
            nodes: vec![None, counts(&[1, 2]), counts(&[3])],
        };
        let bytes = state.encode();
        let mut fresh = JobState {
            nodes: vec![None, counts(&[0, 0]), None, counts(&[0])],
        };
        fresh.restore(&bytes).unwrap();
        assert_eq!(fresh.encode(), bytes);
        assert_eq!(fresh.records(), 6);
        assert_eq!(fresh.bytes_by_node(), [(1, 16), (3, 8)]);
        assert!(downcast::<Counts>(fresh.of(1)).is_ok());
        assert!(downcast::<Counts>(fresh.of(0)).is_err());
        let mut other = JobState {
            nodes: vec![counts(&[0])],
        };
        let err = format!("{:#}", other.restore(&bytes).unwrap_err());
        assert!(err.contains("2 stateful nodes, the plan 1"), "{err}");
        let mut wider = JobState {
            nodes: vec![counts(&[0, 0, 0]), counts(&[0])],
        };
        let err = format!("{:#}", wider.restore(&bytes).unwrap_err());
        assert!(
            err.contains("node 0: it has 2 partitions and the plan 3"),
            "{err}"
        );
        let mut truncated = JobState {
            nodes: vec![counts(&[0, 0]), counts(&[0])],
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
}
