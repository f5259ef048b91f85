//! The dataflow a batch runs through: streams, and the nodes that compute them in an order
//! where every node comes after the nodes it reads. This module is the vocabulary shared by
//! the planner (`plan`), the op families (`ops`) and the batch run ([`super::run_batch`]): what
//! the engine does with a node (tasks per partition, the shuffle of a keyed node) is decided
//! here and in `exec`; what a step computes is a trait object its family in `ops` implements
//! ([`NarrowOp`], [`KeyedOp`], [`GlobalOp`]), so the engine needs no per-op code.

use super::pool::Worker;
use super::run::GlobalTask;
use crate::config::{TaskFailurePolicy, UNLIMITED};
use crate::record::StreamType;
use crate::state::{JobState, NodeState};
use crate::wasm::{Limits, PreparedOperator, bytes};
use anyhow::Result;
use spate_guest::Partition;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Index into [`Dataflow::streams`].
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

/// A step run inside a partition task: a Wasm transform, `assign-timestamps`. Narrow steps
/// that follow each other are fused into one task, and into the map side of a shuffle.
pub trait NarrowOp: Send + Sync + fmt::Debug {
    /// Runs the step over one partition, lent to it and left intact (a failed attempt is
    /// retried or dead-lettered). With `defer`, a transform that can may hold its combined
    /// output back until its `flush`, which the caller then calls.
    fn apply(
        &self,
        worker: &mut Worker,
        dataflow: &Dataflow,
        input: &mut Partition,
        defer: bool,
    ) -> Result<Partition>;

    /// The Wasm transform it calls, if any: fusion asks it to pre-combine before a combine,
    /// and the map side lets it hold its output across partitions.
    fn transform(&self) -> Option<usize> {
        None
    }

    /// One line for `spate check`.
    fn describe(&self, dataflow: &Dataflow) -> String;
}

/// An associative combine function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// A Wasm combiner: index into [`Dataflow::operators`].
    Wasm(usize),
    /// Host-native wrapping i64 sum (count-by-value).
    SumI64,
    /// Host-native wrapping i64 subtraction (the inverse of `SumI64`).
    SubI64,
}

impl Combine {
    /// The Wasm combiner it calls, if it is one.
    pub fn wasm_operator(self) -> Option<usize> {
        match self {
            Combine::Wasm(o) => Some(o),
            _ => None,
        }
    }
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
    pub narrow: Vec<Arc<dyn NarrowOp>>,
    /// What the map side does.
    pub map_side: MapSide,
    /// Types of the records the map side reads (for dead letters).
    pub types: StreamType,
}

impl KeyedInput {
    /// The input of `stream` (of `types`), with no fused steps yet.
    pub fn new(stream: StreamId, map_side: MapSide, types: &StreamType) -> Self {
        KeyedInput {
            stream,
            narrow: Vec::new(),
            map_side,
            types: types.clone(),
        }
    }
}

/// Event-time watermarks around a batch: an event-time window closes once the watermark
/// passes its end.
#[derive(Clone, Copy, Debug)]
pub struct Watermarks {
    /// Before the batch.
    pub before: i64,
    /// After the batch (`i64::MAX` at the end of bounded input).
    pub after: i64,
}

/// What one reduce-side task of a keyed node works with.
pub struct ReduceTask<'a> {
    /// The worker running it.
    pub worker: &'a mut Worker,
    /// The node's state, if it keeps any.
    pub state: Option<&'a dyn NodeState>,
    /// The shuffle partition.
    pub partition: usize,
    /// The batch time.
    pub time: u64,
    /// Buckets from this index on are the right side's (two-input ops).
    pub left: usize,
    /// The batch's watermarks, if [`KeyedOp::watermarks`] computed them.
    pub marks: Option<Watermarks>,
    /// The node writes a side stream too.
    pub side_output: bool,
}

/// What a reduce-side task hands on.
#[derive(Default)]
pub struct ReduceOutput {
    /// The main stream's partition; none at a time the node's slide skips.
    pub main: Option<Partition>,
    /// The side stream's partition (snapshots, late records).
    pub side: Option<Partition>,
    /// Event-time records that came after the watermark had passed their window.
    pub late_records: u64,
}

impl ReduceOutput {
    /// Just a partition of the main stream.
    pub fn main(batch: Partition) -> Self {
        ReduceOutput {
            main: Some(batch),
            ..ReduceOutput::default()
        }
    }
}

/// The reduce side of a keyed node: what each shuffle partition task computes after the
/// shuffle, with the state of its partition if the op keeps any. One implementation per op
/// family in `ops`.
pub trait KeyedOp: Send + Sync + fmt::Debug {
    /// Fresh state for `partitions` shuffle partitions (none: the op keeps nothing across
    /// batches), at `now_ms`.
    fn new_state(
        &self,
        _partitions: usize,
        _dataflow: &Dataflow,
        _now_ms: u64,
    ) -> Result<Option<Box<dyn NodeState>>> {
        Ok(None)
    }

    /// What its state holds, for the checkpoint's layout: a change refuses the checkpoint.
    /// None exactly when [`KeyedOp::new_state`] gives none.
    fn state_layout(&self) -> Option<String> {
        None
    }

    /// Watermarks for this batch, computed over every reduce task's input before they run.
    fn watermarks(
        &self,
        _state: Option<&dyn NodeState>,
        _inputs: &[Vec<Partition>],
        _end_of_input: bool,
    ) -> Result<Option<Watermarks>> {
        Ok(None)
    }

    /// One shuffle partition's task. `buckets` holds the left side's buckets, then the right
    /// side's from `task.left` on. It must not change state kept across batches until it can
    /// no longer fail, so that a retry starts from the same state.
    fn reduce(&self, task: ReduceTask<'_>, buckets: &mut [Partition]) -> Result<ReduceOutput>;

    /// Whether the main stream has a batch at `time` (a window only at its slide times).
    fn emits_at(&self, _time: u64) -> bool {
        true
    }

    /// The reduce side, for `spate check`.
    fn describe(&self, dataflow: &Dataflow) -> String;

    /// The Wasm operators it calls, each with its role (`combiner`, `state operator`).
    fn operators(&self) -> Vec<(&'static str, usize)> {
        Vec::new()
    }
}

/// An op over a whole batch, with no key. One implementation per op family in `ops`.
pub trait GlobalOp: Send + Sync + fmt::Debug {
    /// Fresh state (none: the op keeps nothing across batches).
    fn new_state(&self) -> Option<Box<dyn NodeState>> {
        None
    }

    /// What its state holds, for the checkpoint's layout (see [`KeyedOp::state_layout`]).
    fn state_layout(&self) -> Option<String> {
        None
    }

    /// The stream's batch at this time from the input's partitions (none at a time the op's
    /// slide skips).
    fn run(
        &self,
        task: &mut GlobalTask<'_, '_>,
        parts: Vec<Partition>,
    ) -> Result<Option<Vec<Partition>>>;

    /// What it computes, for `spate check`.
    fn describe(&self, dataflow: &Dataflow) -> String;

    /// The Wasm combiner it calls, if any.
    fn combiner(&self) -> Option<usize> {
        None
    }
}

/// What a node computes.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// The input blocks of a source (index into the job's sources).
    Source(usize),
    /// Narrow steps over each partition of a stream.
    Narrow {
        /// The stream read.
        input: StreamId,
        /// The steps, in order.
        steps: Vec<Arc<dyn NarrowOp>>,
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
        op: Arc<dyn KeyedOp>,
    },
    /// An op over a whole batch.
    Global {
        /// The stream read.
        input: StreamId,
        /// The op.
        op: Arc<dyn GlobalOp>,
    },
}

/// A node of the dataflow.
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

    /// Fresh state for the node (none if it keeps nothing across batches).
    pub fn new_state(
        &self,
        dataflow: &Dataflow,
        now_ms: u64,
    ) -> Result<Option<Box<dyn NodeState>>> {
        match self {
            NodeKind::Keyed { partitions, op, .. } => op.new_state(*partitions, dataflow, now_ms),
            NodeKind::Global { op, .. } => Ok(op.new_state()),
            _ => Ok(None),
        }
    }

    /// What the node's state holds, for the checkpoint's layout (none if stateless).
    pub fn state_layout(&self) -> Option<String> {
        match self {
            NodeKind::Keyed { partitions, op, .. } => op
                .state_layout()
                .map(|what| format!("{what}, {partitions} partitions")),
            NodeKind::Global { op, .. } => op.state_layout(),
            _ => None,
        }
    }
}

/// How a job's tasks run: on how many workers, how often a failed one is tried again, and what
/// one that still fails does.
#[derive(Clone, Debug)]
pub struct TaskPolicy {
    /// Worker threads.
    pub workers: usize,
    /// Extra attempts of a failed partition task, each on fresh instances.
    pub retries: u32,
    /// What a task that still fails does.
    pub on_failure: TaskFailurePolicy,
    /// Where skipped partitions' input goes.
    pub dead_letter_dir: PathBuf,
}

/// A job's dataflow: what a batch runs through.
pub struct Dataflow {
    /// Every operator, linked; nodes refer to them by index.
    pub operators: Vec<Arc<PreparedOperator>>,
    /// Every stream; source `i` writes stream `i`.
    pub streams: Vec<StreamInfo>,
    /// The nodes, each after the nodes it reads.
    pub nodes: Vec<Node>,
    /// The streams the job's outputs read.
    pub output_streams: Vec<StreamId>,
    /// How tasks run.
    pub tasks: TaskPolicy,
}

impl Dataflow {
    /// Fresh state for every node, made by each node's op (initial states loaded at `now_ms`).
    pub fn new_state(&self, now_ms: u64) -> Result<JobState> {
        let nodes = self
            .nodes
            .iter()
            .map(|node| Ok(node.kind.new_state(self, now_ms)?.map(Arc::from)))
            .collect::<Result<_>>()?;
        Ok(JobState { nodes })
    }

    /// The operator of `input`'s last narrow step when it can hold its pre-combined output over
    /// several partitions (it exports `deferred-combine`): the map side then runs one task per
    /// worker, taking a batch's partitions one at a time and flushing the operator once at the
    /// end.
    pub fn deferring_operator(&self, input: &KeyedInput) -> Option<usize> {
        match (&input.map_side, input.narrow.last()?.transform()) {
            (MapSide::PreCombined, Some(operator))
                if self.operators[operator].defers_combined_output() =>
            {
                Some(operator)
            }
            _ => None,
        }
    }

    /// A combine function's name in `spate check`.
    pub fn combine_name(&self, combine: Combine) -> String {
        match combine {
            Combine::Wasm(o) => format!("'{}'", self.operators[o].spec.name),
            Combine::SumI64 => "the host's i64 sum".into(),
            Combine::SubI64 => "the host's i64 subtraction".into(),
        }
    }

    /// An operator as `spate check` shows it: plugin, exports, params, grants and limits.
    pub fn operator_line(&self, index: usize) -> String {
        let op = &self.operators[index];
        let combine = op
            .spec
            .output_combine
            .map(|m| format!(", pre-combines its output ({m:?})"))
            .unwrap_or_default();
        let params = if op.spec.params.is_empty() {
            "no params".to_owned()
        } else {
            op.spec
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "'{}' [plugin {}, {} KiB, exports {}] {} ({params}{combine})\n        \
             grants: {}\n        limits: {}",
            op.spec.name,
            op.spec.plugin,
            op.wasm_bytes.div_ceil(1024),
            op.spec.kind.export_name(),
            op.info.description,
            op.spec.grants,
            describe_limits(&op.spec.limits),
        )
    }
}

/// An operator's limits as `spate check` prints them.
pub fn describe_limits(limits: &Limits) -> String {
    if *limits == UNLIMITED {
        return "off (job.enforce-limits = false)".to_owned();
    }
    format!(
        "memory {}, call-time {}, fuel {}, output {} records / {} per call, log {} per batch",
        bytes(limits.memory),
        humantime::format_duration(limits.call_time),
        limits
            .fuel
            .map_or_else(|| "not metered".to_owned(), |f| format!("{f} per call")),
        limits.output_records,
        bytes(limits.output_bytes),
        bytes(limits.log_bytes),
    )
}
