//! The pipeline file's shape, as serde reads it. Unknown fields are errors everywhere, so a
//! typo never silently falls back to a default.

use super::units::{ByteSize, Interval};
use serde::Deserialize;
use std::collections::BTreeMap;
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
    /// A block is also cut when it reaches this size, bounding partition size.
    pub max_block_bytes: ByteSize,
    /// Received but unprocessed data above this makes receivers stop reading (backpressure).
    pub max_buffered_bytes: ByteSize,
    /// With `available-now`, the most input one batch takes.
    pub max_batch_bytes: ByteSize,
}

impl Default for JobSection {
    fn default() -> Self {
        JobSection {
            name: None,
            batch_interval: Interval(Duration::from_secs(1)),
            block_interval: Interval(Duration::from_millis(200)),
            workers: 0,
            trigger: Trigger::ProcessingTime,
            max_block_bytes: ByteSize(256 << 10),
            max_buffered_bytes: ByteSize(256 << 20),
            max_batch_bytes: ByteSize(8 << 20),
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

/// `[sources.<name>]` as written: one flat table whose `type` decides which fields apply
/// (checked in `resolve`). Kept flat rather than a tagged enum so that every field keeps its
/// position for error messages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceTable {
    /// `socket`, `directory` or `bundled`.
    #[serde(rename = "type")]
    pub kind: Spanned<SourceKind>,
    /// Socket: server host name or address.
    pub host: Option<Spanned<String>>,
    /// Socket: server port.
    pub port: Option<Spanned<u16>>,
    /// Socket: longest wait between reconnection attempts (default 5s).
    pub reconnect_max: Option<Spanned<Interval>>,
    /// Directory: the directory watched.
    pub path: Option<Spanned<String>>,
    /// Directory: also read the files present at start (default false).
    pub include_existing: Option<Spanned<bool>>,
    /// Directory: how often it is listed (default 200ms).
    pub poll_interval: Option<Spanned<Interval>>,
    /// Socket and directory: longest accepted line (default 1 MiB).
    pub max_line_length: Option<Spanned<ByteSize>>,
    /// Socket and directory: `fail` (default) or `skip`.
    pub on_bad_line: Option<Spanned<BadLinePolicy>>,
    /// Bundled: lines released per second (default 20; 0: all at once).
    pub lines_per_second: Option<Spanned<u32>>,
}

/// The kinds of source.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// TCP text client.
    Socket,
    /// New files in a directory.
    Directory,
    /// The bundled demo text.
    Bundled,
}

/// A source, resolved from its [`SourceTable`] with defaults applied.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    /// A TCP client reading text lines, like Spark's `socketTextStream`.
    Socket {
        /// Server host name or address.
        host: String,
        /// Server port.
        port: u16,
        /// Line rules.
        lines: LineRules,
        /// Longest wait between reconnection attempts (backoff doubles up to it).
        reconnect_max: Interval,
    },
    /// New text files in a directory, like Spark's `textFileStream`.
    Directory {
        /// The directory watched.
        path: String,
        /// Also read the files present at start (as Spark's `newFilesOnly = false`).
        include_existing: bool,
        /// How often the directory is listed.
        poll_interval: Interval,
        /// Line rules.
        lines: LineRules,
    },
    /// The demo text bundled in the binary, replayed at a fixed rate.
    Bundled {
        /// Lines released per second (0: all at once).
        lines_per_second: u32,
    },
}

/// How a text source cuts and checks lines.
#[derive(Clone, Copy, Debug)]
pub struct LineRules {
    /// Longest accepted line in bytes.
    pub max_line_length: ByteSize,
    /// What to do with a bad line.
    pub on_bad_line: BadLinePolicy,
}

/// The operation of a step.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StepOp {
    /// One output record per input record.
    Map,
    /// Any number of output records per input record.
    FlatMap,
    /// A subset of the input records.
    Filter,
    /// Anything, over a whole partition.
    MapPartitions,
    /// Combine values per key with a combiner operator (map-side, then after a hash shuffle).
    ReduceByKey,
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
        }
    }
}

/// `[[steps]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepSpec {
    /// Display name (default: the plugin's name).
    pub name: Option<String>,
    /// The operation.
    pub op: StepOp,
    /// A bundled operator's name (`tokenize`) or a path to a `.wasm` component, relative to the
    /// pipeline file.
    pub plugin: Spanned<String>,
    /// Parameters handed to the operator's `configure`.
    #[serde(default = "empty_params")]
    pub params: Spanned<toml::Table>,
    /// For reduce-by-key: the number of reduce partitions (default: the worker count).
    pub partitions: Option<Spanned<usize>>,
}

/// `[[outputs]]` as written (flat, like [`SourceTable`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OutputTable {
    /// `print` or `text-files`.
    #[serde(rename = "type")]
    pub kind: Spanned<OutputKind>,
    /// Print: how many records to show (default 10).
    pub num: Option<Spanned<usize>>,
    /// Text files: path prefix, relative to the working directory.
    pub prefix: Option<Spanned<String>>,
    /// Text files: optional suffix of each batch's directory name.
    pub suffix: Option<Spanned<String>>,
}

/// The kinds of output.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// Spark's `print(num)`.
    Print,
    /// Spark's `saveAsTextFiles(prefix, suffix)`.
    TextFiles,
}

/// An output, resolved from its [`OutputTable`].
#[derive(Clone, Debug)]
pub enum OutputSpec {
    /// Spark's `print(num)`: the first `num` records of every batch on stdout.
    Print {
        /// How many records to show.
        num: usize,
    },
    /// Spark's `saveAsTextFiles(prefix, suffix)`: a directory per batch, written atomically.
    TextFiles {
        /// Path prefix.
        prefix: String,
        /// Optional suffix of the directory name.
        suffix: Option<String>,
    },
}

fn empty_params() -> Spanned<toml::Table> {
    Spanned::new(0..0, toml::Table::new())
}
