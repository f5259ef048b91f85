//! The physical plan: streams and the nodes that compute them, in an order where every node
//! comes after the nodes it reads.
//!
//! Each node runs per batch as tasks on the worker pool. Narrow steps (Wasm transforms) are
//! fused: into one task per partition when they follow each other, and into the map side of a
//! shuffle when a keyed node reads them alone.

use super::StreamType;
use crate::config::{StepOp, TimeUnit};
use std::path::PathBuf;

/// Index into [`super::Plan::streams`].
pub type StreamId = usize;

/// A named stream of batches.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    /// Its name: a source's, a step's `name`, or `steps[i]`.
    pub name: String,
    /// Its records' types.
    pub types: StreamType,
    /// It has a batch at the batch times that are multiples of this (the batch interval, or a
    /// window's slide).
    pub slide_ms: u64,
}

/// A step run inside a partition task.
#[derive(Clone, Debug)]
pub enum NarrowStep {
    /// A Wasm transform.
    Wasm {
        /// Index into [`super::Plan::operators`].
        operator: usize,
        /// map, flat-map, filter or map-partitions (fixes the allowed output cardinality).
        op: StepOp,
    },
    /// Event times read from a field of each record's text.
    AssignTimestamps(TimeField),
}

/// Where an event time is in a text record.
#[derive(Clone, Debug)]
pub struct TimeField {
    /// 0-based field index.
    pub field: usize,
    /// Field separator.
    pub separator: String,
    /// Unit of the number.
    pub unit: TimeUnit,
}

/// An associative combine function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// A Wasm combiner: index into [`super::Plan::operators`].
    Wasm(usize),
    /// Host-native wrapping i64 sum (count-by-value).
    SumI64,
    /// Host-native wrapping i64 subtraction (the inverse of `SumI64`).
    SubI64,
}

/// What the map side of a shuffle does with each input partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapSide {
    /// Combine values per key, then hash partition (Spark's map-side combine).
    Combine(Combine),
    /// The last fused transform already combined per key: hash partition only.
    PreCombined,
    /// Hash partition the records as they are.
    Hash,
    /// Deal the records out evenly (repartition).
    Deal,
    /// Count each distinct value (or (key, value) pair), then hash partition the counts.
    CountValues,
}

/// One input of a keyed node.
#[derive(Clone, Debug)]
pub struct KeyedInput {
    /// The stream read.
    pub stream: StreamId,
    /// Narrow steps fused into the map side, run first.
    pub narrow: Vec<NarrowStep>,
    /// What the map side does.
    pub map_side: MapSide,
    /// Types of the records the map side reads (for dead letters).
    pub types: StreamType,
}

/// Which join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    /// Matches only.
    Inner,
    /// Matches, and left records without one.
    LeftOuter,
    /// Matches, and right records without one.
    RightOuter,
    /// Matches, and records of either side without one.
    FullOuter,
}

/// A window over batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window length in ms: the batches of times in (t - length, t].
    pub length_ms: u64,
    /// The window is computed at the batch times that are multiples of this.
    pub slide_ms: u64,
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

/// The reduce side of a keyed node: what each shuffle partition task computes.
#[derive(Clone, Debug)]
pub enum KeyedOp {
    /// Combine values per key (reduce-by-key, count-by-value).
    Reduce(Combine),
    /// Collect values per key.
    Group,
    /// Keep the records as they are (repartition).
    Pass,
    /// Join two streams.
    Join(JoinKind),
    /// Group two streams.
    Cogroup,
    /// Combine values per key over a window.
    WindowReduce {
        /// The combine function.
        combine: Combine,
        /// Its inverse, for incremental windows.
        inverse: Option<Combine>,
        /// The window.
        window: WindowSpec,
    },
    /// Keyed state.
    State {
        /// The Wasm state operator.
        operator: usize,
        /// Which of the two.
        mode: StateMode,
        /// A file of initial `key<TAB>state` lines.
        initial: Option<PathBuf>,
    },
    /// Combine values per key per event-time window.
    EventWindow {
        /// The combine function.
        combine: Combine,
        /// Window length and slide (ms of event time).
        window: WindowSpec,
        /// How far the watermark trails the newest event time (ms).
        lateness_ms: u64,
    },
}

/// Ops over a whole batch (no key).
#[derive(Clone, Debug)]
pub enum GlobalOp {
    /// The number of records.
    Count,
    /// Every value combined into one.
    Reduce(Combine),
    /// The records of the window.
    Window(WindowSpec),
    /// The number of records in the window.
    CountByWindow(WindowSpec),
    /// Every value of the window combined into one.
    ReduceByWindow(Combine, WindowSpec),
}

/// What a node computes.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// The input blocks of a source (index into [`super::Plan::sources`]).
    Source(usize),
    /// Narrow steps over each partition of a stream.
    Narrow {
        /// The stream read.
        input: StreamId,
        /// The steps, in order.
        steps: Vec<NarrowStep>,
    },
    /// The partitions of several streams.
    Union(Vec<StreamId>),
    /// A shuffle by key (or dealing) and a per-partition op after it.
    Keyed {
        /// One input, or two for joins and cogroup.
        inputs: Vec<KeyedInput>,
        /// Partitions after the shuffle.
        partitions: usize,
        /// The reduce side.
        op: KeyedOp,
    },
    /// An op over a whole batch.
    Global {
        /// The stream read.
        input: StreamId,
        /// The op.
        op: GlobalOp,
    },
}

/// A node of the plan.
#[derive(Clone, Debug)]
pub struct Node {
    /// What `spate check` and errors call it (`steps[2] reduce-by-key 'sum'`).
    pub label: String,
    /// What it computes.
    pub kind: NodeKind,
    /// The streams it writes: its main stream, then any side stream (map-with-state's
    /// snapshots, event-time-window's late records).
    pub outputs: Vec<StreamId>,
}

impl NodeKind {
    /// The streams it reads.
    pub fn inputs(&self) -> Vec<StreamId> {
        match self {
            NodeKind::Source(_) => Vec::new(),
            NodeKind::Narrow { input, .. } | NodeKind::Global { input, .. } => vec![*input],
            NodeKind::Union(inputs) => inputs.clone(),
            NodeKind::Keyed { inputs, .. } => inputs.iter().map(|i| i.stream).collect(),
        }
    }
}
