//! The pipeline file's shape, as serde reads it. Unknown fields are errors everywhere, so a
//! typo never silently falls back to a default.

use super::units::{ByteSize, Interval};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use toml::Spanned;

/// A whole pipeline file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Job-wide settings.
    #[serde(default)]
    pub job: JobSection,
    /// Named input streams; several are read as their union.
    pub sources: BTreeMap<String, SourceTable>,
    /// The transformations, applied in order.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Output operations, run once per batch in batch order.
    #[serde(default)]
    pub outputs: Vec<OutputTable>,
    /// The web UI of the process (`spate run`): the first pipeline's `[ui]` counts.
    pub ui: Option<UiSettings>,
}

/// `[ui]` in a pipeline file, and `--ui-port`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct UiSettings {
    /// Serve the UI at all.
    pub enabled: bool,
    /// The address to listen on: loopback unless set (then the UI and its API are open to
    /// whoever reaches that address; docs/UI.md).
    pub bind: IpAddr,
    /// The first port tried (0: any free port).
    pub port: u16,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            enabled: true,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 4040,
        }
    }
}

/// When batches run.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// One batch every batch interval, forever (Spark Streaming's model).
    #[default]
    ProcessingTime,
    /// Everything the sources hold now, in batches as fast as possible, then stop.
    AvailableNow,
}

/// `[job]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct JobSection {
    /// Job name (default: the file's stem).
    pub name: Option<String>,
    /// Batch interval T: batch i holds what arrived in [i·T, (i+1)·T).
    pub batch_interval: Interval,
    /// Receivers cut a block every block interval; blocks are a batch's input partitions.
    pub block_interval: Interval,
    /// Worker threads running operators (0: one per core).
    pub workers: usize,
    /// `processing-time` (default) or `available-now`.
    pub trigger: Trigger,
    /// A block is also cut when it reaches this size, bounding partition size. 512 KiB by
    /// default: workers take a batch's partitions one at a time, so smaller ones let them
    /// finish a stage together (an available-now word count batch of 12 MiB is 16 to 24 of
    /// them instead of 8); a pre-combining operator holds its output across a worker's
    /// partitions, so it no longer gains from larger ones. Against 1 MiB the word count ran
    /// 5% faster on 2 workers and as fast on 1, and count-by-value about 10% faster on both.
    pub max_block_bytes: ByteSize,
    /// Received but unprocessed data above this makes receivers stop reading (backpressure).
    pub max_buffered_bytes: ByteSize,
    /// With `available-now`, the most input one batch takes.
    pub max_batch_bytes: ByteSize,
    /// The most host memory the job's state (keys and values of keyed state, open windows,
    /// the batches a window keeps) may hold: over it after a batch, the job fails naming the
    /// step that holds the most, before that batch's outputs. Default: no cap, or the
    /// policy's.
    pub max_state_bytes: Option<ByteSize>,
    /// Who the job runs for, in usage figures (default: the job name).
    pub tenant: Option<String>,
    /// The tenant's share of the CPU relative to other tenants' in the process (default 1):
    /// Wasm calls are scheduled so that each tenant gets CPU in proportion to its weight.
    pub cpu_weight: f64,
    /// Default limits of every operator instance (a step's `[steps.limits]` overrides them).
    pub limits: LimitsTable,
    /// `false` runs operators without limits: no deadline, fuel, memory or output caps beyond
    /// the engine's 1 GiB slots. For trusted jobs and for measuring what the limits cost.
    pub enforce_limits: bool,
    /// How often a failed partition task is run again, each time on fresh instances.
    pub task_retries: u32,
    /// What a task that still fails after its retries does: `fail` the job or `skip` it.
    pub on_task_failure: TaskFailurePolicy,
    /// With `on-task-failure = "skip"`: where skipped partitions' input is written.
    pub dead_letter_dir: Option<String>,
    /// Turns on fault tolerance: checkpoints of the job's state and the write-ahead log of
    /// every batch's input go here, and a restart resumes from them.
    pub checkpoint_dir: Option<String>,
    /// How often a checkpoint is taken: a multiple of the batch interval (default: ten
    /// batch intervals).
    pub checkpoint_interval: Option<Interval>,
    /// How many checkpoints are kept (the newest; default 3). Older ones let recovery fall
    /// back when the newest is damaged.
    pub checkpoints_kept: usize,
    /// Scale-out: every process running this pipeline joins this Kafka consumer group and runs
    /// the tasks (input partitions) the group assigns it, each with its own checkpoints under
    /// `checkpoint-dir`, which every process must reach (docs/SCALE-OUT.md).
    pub group: Option<String>,
    /// Scale-out: the replication factor the repartition topic is created with (default: the
    /// brokers' `default.replication.factor`, as Kafka Streams' `replication.factor = -1`).
    pub repartition_replication: Option<i64>,
    /// Scale-out: topic settings the repartition topic is created with (`"retention.ms" =
    /// 604800000`, ...), as Kafka Streams' `topic.*` settings.
    pub repartition_topic_config: BTreeMap<String, toml::Value>,
}

/// What happens to a partition task that fails (trap, limit, error) after its retries.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TaskFailurePolicy {
    /// The job stops with an error and a non-zero exit.
    #[default]
    Fail,
    /// The partition's input goes to the dead-letter directory, the batch goes on without it,
    /// and the skip is counted in the batch figures.
    Skip,
}

/// `[job.limits]` or `[steps.limits]`: what one operator instance may consume (and, in a
/// policy, the most it may).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsTable {
    /// Largest linear memory (default 256 MiB).
    pub memory: Option<ByteSize>,
    /// Most table elements (default 50000).
    pub table_elements: Option<usize>,
    /// Longest one call may run (default 10s).
    pub call_time: Option<Interval>,
    /// Fuel per call; setting it turns fuel metering on for the job (default: not metered).
    pub fuel: Option<u64>,
    /// Most records one call may return (default 16777216).
    pub output_records: Option<usize>,
    /// Most bytes one call may return (default 256 MiB).
    pub output_bytes: Option<ByteSize>,
    /// Most guest stdout/stderr logged per instance and batch (default 16 KiB).
    pub log_bytes: Option<ByteSize>,
}

/// `[steps.grants]`: what an operator may reach beyond its input. Nothing unless listed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GrantsTable {
    /// Host directories the operator may use.
    #[serde(default)]
    pub dirs: Vec<DirGrantTable>,
    /// The host's real clocks (default: a stopped clock at the Unix epoch).
    #[serde(default)]
    pub clocks: bool,
    /// Real randomness (default: a fixed-seed generator).
    #[serde(default)]
    pub random: bool,
}

/// One directory grant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DirGrantTable {
    /// The host directory, relative to the pipeline file.
    pub path: Spanned<String>,
    /// Where the operator sees it (default: `/` + the directory's name).
    pub guest_path: Option<String>,
    /// `read-only` (default) or `read-write`.
    #[serde(default)]
    pub mode: DirMode,
}

/// Access to a granted directory.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DirMode {
    /// Read files and list directories.
    #[default]
    ReadOnly,
    /// Also create, change and delete.
    ReadWrite,
}

impl Default for JobSection {
    fn default() -> Self {
        JobSection {
            name: None,
            batch_interval: Interval(Duration::from_secs(1)),
            block_interval: Interval(Duration::from_millis(200)),
            workers: 0,
            trigger: Trigger::ProcessingTime,
            max_block_bytes: ByteSize(512 << 10),
            max_buffered_bytes: ByteSize(256 << 20),
            max_batch_bytes: ByteSize(12 << 20),
            max_state_bytes: None,
            tenant: None,
            cpu_weight: 1.0,
            limits: LimitsTable::default(),
            enforce_limits: true,
            task_retries: 1,
            on_task_failure: TaskFailurePolicy::Fail,
            dead_letter_dir: None,
            checkpoint_dir: None,
            checkpoint_interval: None,
            checkpoints_kept: 3,
            group: None,
            repartition_replication: None,
            repartition_topic_config: BTreeMap::new(),
        }
    }
}

/// What to do with a line that is not valid UTF-8 or is longer than `max-line-length`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BadLinePolicy {
    /// Stop the job with an error naming the source and line.
    #[default]
    Fail,
    /// Drop the line, log it and count it in the batch figures.
    Skip,
}

/// `[sources.<name>]` as written: one flat table whose `type` picks the connector. The
/// connector reads the other fields itself (`source` module, through
/// [`super::ConnectorTable::fields`]), so each field keeps its position for error messages.
#[derive(Debug, Deserialize)]
pub struct SourceTable {
    /// The connector: `socket`, `directory`, `bundled`, ...
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
}

/// The operation of a step (Spark Streaming's names, in kebab case).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StepOp {
    /// One output record per input record (Wasm transform).
    Map,
    /// Any number of output records per input record (Wasm transform).
    FlatMap,
    /// A subset of the input records (Wasm transform).
    Filter,
    /// Anything, over a whole partition (Wasm transform); `transform` is accepted too.
    #[serde(alias = "transform")]
    MapPartitions,
    /// Combine values per key with a Wasm combiner (map-side, then after a hash shuffle).
    ReduceByKey,
    /// Combine every value of the batch into one with a Wasm combiner.
    Reduce,
    /// The records of several streams.
    Union,
    /// One record per batch: the number of records.
    Count,
    /// (value, count) per distinct value.
    CountByValue,
    /// The same records in `partitions` partitions of even size.
    Repartition,
    /// (key, \[values\]) per key, after a hash shuffle.
    GroupByKey,
    /// (key, (left, right)) for every pair of records with equal keys in two keyed streams.
    Join,
    /// As join, plus (key, (left, None)) for left records without a match.
    LeftOuterJoin,
    /// As join, plus (key, (None, right)) for right records without a match.
    RightOuterJoin,
    /// Left and right outer join together.
    FullOuterJoin,
    /// (key, ([left values], [right values])) per key of either stream.
    Cogroup,
    /// The records of the last `length` of batches, every `slide`.
    Window,
    /// The number of records in the window.
    CountByWindow,
    /// Every value in the window combined into one (Wasm combiner).
    ReduceByWindow,
    /// Values per key combined over the window (Wasm combiner; incremental with an inverse).
    ReduceByKeyAndWindow,
    /// (value, count) per distinct value in the window, incrementally.
    CountByValueAndWindow,
    /// The i64 values of each key added up (in the host).
    SumByKey,
    /// The i64 values of each key added up over the window, incrementally.
    SumByKeyAndWindow,
    /// Keyed state updated for every key each batch (Wasm state operator).
    UpdateStateByKey,
    /// Keyed state updated for the keys with new data, with timeouts (Wasm state operator).
    MapWithState,
    /// Sets each record's event time from a field of its text.
    AssignTimestamps,
    /// Values per key combined per event-time window, emitted once the watermark passes it.
    EventTimeWindow,
}

impl StepOp {
    /// The name as written in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            StepOp::Map => "map",
            StepOp::FlatMap => "flat-map",
            StepOp::Filter => "filter",
            StepOp::MapPartitions => "map-partitions",
            StepOp::ReduceByKey => "reduce-by-key",
            StepOp::Reduce => "reduce",
            StepOp::Union => "union",
            StepOp::Count => "count",
            StepOp::CountByValue => "count-by-value",
            StepOp::Repartition => "repartition",
            StepOp::GroupByKey => "group-by-key",
            StepOp::Join => "join",
            StepOp::LeftOuterJoin => "left-outer-join",
            StepOp::RightOuterJoin => "right-outer-join",
            StepOp::FullOuterJoin => "full-outer-join",
            StepOp::Cogroup => "cogroup",
            StepOp::Window => "window",
            StepOp::CountByWindow => "count-by-window",
            StepOp::ReduceByWindow => "reduce-by-window",
            StepOp::ReduceByKeyAndWindow => "reduce-by-key-and-window",
            StepOp::CountByValueAndWindow => "count-by-value-and-window",
            StepOp::SumByKey => "sum-by-key",
            StepOp::SumByKeyAndWindow => "sum-by-key-and-window",
            StepOp::UpdateStateByKey => "update-state-by-key",
            StepOp::MapWithState => "map-with-state",
            StepOp::AssignTimestamps => "assign-timestamps",
            StepOp::EventTimeWindow => "event-time-window",
        }
    }
}

/// One stream name or several (`from = "a"` or `from = ["a", "b"]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum StreamNames {
    /// One stream.
    One(String),
    /// Several streams, in order.
    Many(Vec<String>),
}

impl StreamNames {
    /// The names, in order.
    pub fn names(&self) -> Vec<&str> {
        match self {
            StreamNames::One(name) => vec![name.as_str()],
            StreamNames::Many(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

/// The unit of an event-time field.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TimeUnit {
    /// Milliseconds since the Unix epoch.
    #[default]
    Ms,
    /// Seconds since the Unix epoch (a fraction allowed).
    S,
}

/// `[[steps]]`. Which fields apply depends on `op` (checked when the plan is built).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepSpec {
    /// The name of the stream this step produces, which later steps and outputs may read with
    /// `from`; also the operator's display name (default: the plugin's or op's name).
    pub name: Option<Spanned<String>>,
    /// The operation.
    pub op: Spanned<StepOp>,
    /// The streams read (default: the previous step's, or every source for the first step).
    pub from: Option<Spanned<StreamNames>>,
    /// A bundled operator's name (`tokenize`) or a path to a `.wasm` component, relative to the
    /// pipeline file. Required by the ops that run user code.
    pub plugin: Option<Spanned<String>>,
    /// Parameters handed to the operator's `configure`.
    #[serde(default = "empty_params")]
    pub params: Spanned<toml::Table>,
    /// reduce-by-key-and-window: the inverse combiner that subtracts a batch leaving the window.
    pub inverse_plugin: Option<Spanned<String>>,
    /// Parameters of the inverse combiner.
    #[serde(default = "empty_params")]
    pub inverse_params: Spanned<toml::Table>,
    /// Shuffling ops: the number of partitions after the shuffle (default: the worker count).
    pub partitions: Option<Spanned<usize>>,
    /// Window ops: the window length (a multiple of the batch interval).
    pub length: Option<Spanned<Interval>>,
    /// Window ops: how often the window is computed (default: the batch interval).
    pub slide: Option<Spanned<Interval>>,
    /// map-with-state: a key without new data for longer than this times out.
    pub timeout: Option<Spanned<Interval>>,
    /// map-with-state and update-state-by-key: a file of `key<TAB>state` lines loaded at start.
    pub initial_state: Option<Spanned<String>>,
    /// map-with-state: also name a stream of (key, state) snapshots of every key in state, each
    /// batch (Spark's `stateSnapshots()`).
    pub snapshots: Option<Spanned<String>>,
    /// event-time-window: how far behind the newest event time the watermark trails.
    pub allowed_lateness: Option<Spanned<Interval>>,
    /// event-time-window: name a stream receiving the late records (else they are only counted).
    pub late: Option<Spanned<String>>,
    /// assign-timestamps: the 0-based field holding the event time.
    pub time_field: Option<Spanned<usize>>,
    /// assign-timestamps: the field separator (default ",").
    pub separator: Option<Spanned<String>>,
    /// assign-timestamps: `ms` (default) or `s` since the Unix epoch.
    pub time_unit: Option<Spanned<TimeUnit>>,
    /// This operator's limits, overriding `[job.limits]` field by field.
    #[serde(default)]
    pub limits: LimitsTable,
    /// What this operator may reach (default: nothing).
    #[serde(default)]
    pub grants: GrantsTable,
}

/// `[[outputs]]` as written (flat, like [`SourceTable`]; the `sink` module reads the fields
/// of each `type`).
#[derive(Debug, Deserialize)]
pub struct OutputTable {
    /// The stream written (default: the last step's).
    pub from: Option<Spanned<String>>,
    /// The connector: `print`, `text-files`, `command`, ...
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
}

fn empty_params() -> Spanned<toml::Table> {
    Spanned::new(0..0, toml::Table::new())
}
