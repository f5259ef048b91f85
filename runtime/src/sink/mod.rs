//! Outputs: one file per connector behind the [`Output`] trait, registered by its `type` in
//! [`TYPES`]. A configured output opens a [`Sink`] when the job starts; the sink writes each
//! batch's final partitions, once per batch in batch order.
//!
//! A connector owns its pipeline fields (a serde struct read through
//! [`ConnectorTable::fields`]), what `spate check` says of it, and what a replayed batch does
//! ([`Replay`]): recovery replays logged batches through the same sinks and needs no
//! per-connector code.

mod claim;
mod command;
pub mod dashboard;
mod gauges;
mod kafka;
mod postgres;
mod print;
mod retry;
mod text_files;

use crate::config::{ConfigError, ConnectorTable};
use crate::kafka::OffsetsGroup;
use crate::position::Progress;
use crate::record::StreamType;
use anyhow::Result;
use spate_guest::Partition;
use std::sync::Arc;

pub use gauges::{OutputGaugeReading, OutputGauges};

/// What writing a batch again does, when recovery replays it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// The batch's earlier output is replaced: the effect is exactly once.
    Replaces,
    /// The batch is written again beside what an interrupted run wrote (at least once), unless
    /// what receives it deduplicates by batch time and partition.
    Repeats,
}

/// An output as its pipeline table configures it.
pub trait Output: Send + Sync + std::fmt::Debug {
    /// What it does with stream `stream`, for `spate check`.
    fn describe(&self, stream: &str) -> String;

    /// What writing a batch again does.
    fn replay(&self) -> Replay;

    /// Whether it remembers the last batch time it wrote (a marker) and skips a batch at or
    /// before it. Every batch that reaches such an output must then be in the batch log, empty
    /// ones too: otherwise recovery could form a different batch at a time the output already
    /// took, and the output would skip it.
    fn remembers_batch_times(&self) -> bool {
        false
    }

    /// Whether it can commit a source's offsets to consumer group `group` in the transaction
    /// that writes each batch (an exactly-once Kafka output on the group's cluster).
    fn commits_offsets_to(&self, _group: &OffsetsGroup) -> bool {
        false
    }

    /// Whether it can write a stream of `types` (a mode that needs keys, numbers); checked
    /// when the plan is made, so `spate check` finds it without a server.
    fn accepts(&self, _types: &StreamType) -> Result<(), String> {
        Ok(())
    }

    /// For `spate check --connect`: reaches what it writes to and checks it can write a stream
    /// of `types` there (a table and its columns); says what it found, or nothing when there
    /// is nothing to reach.
    fn verify(&self, _types: &StreamType) -> Result<Option<String>> {
        Ok(None)
    }

    /// The sink that writes the batches of a stream of `types` for the job `context` names; an
    /// error (a server not reachable, a table that does not fit) stops the job before its
    /// first batch.
    fn open(&self, context: &OutputContext<'_>, types: &StreamType) -> Result<Box<dyn Sink>>;
}

/// What an output's sink is opened with.
pub struct OutputContext<'a> {
    /// The job's name.
    pub job: &'a str,
    /// The scale-out task writing (`topic-partition`), whose writes must not meet another
    /// task's; `None` in a single-process job.
    pub task: Option<&'a str>,
    /// Where the sink counts its retries.
    pub gauges: Arc<OutputGauges>,
    /// The sources (index in the plan, group) whose offsets it commits with each batch (see
    /// [`Output::commits_offsets_to`]); empty for most outputs.
    pub input_offsets: Vec<(usize, OffsetsGroup)>,
}

/// An output operation's writer.
pub trait Sink: Send {
    /// Writes one batch's final partitions. A sink may return before the batch is written and
    /// finish it in the background while the next batch is computed; it must then finish it
    /// before it writes the next one (or in [`Sink::sync`]), and report its failure there.
    fn write(
        &mut self,
        batch_time_ms: u64,
        partitions: &[Partition],
        types: &StreamType,
    ) -> Result<()>;

    /// Where the sources stand after the batch about to be written (`(source index,
    /// progress)`), given before every batch's writes, also of batches the output gets no
    /// records of: an output committing sources' offsets ([`OutputContext::input_offsets`])
    /// commits them with its next batch.
    fn input_progress(&mut self, _progress: &[(usize, Progress)]) {}

    /// Waits until every batch handed to [`Sink::write`] is written; its failure if one was
    /// not. Called before a checkpoint is taken and when the job ends.
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }

    /// Whether a batch is still being written in the background.
    fn pending(&self) -> bool {
        false
    }

    /// The newest batch time an output that remembers batch times has recorded as written (its
    /// marker; right after opening, what an earlier run left). A job that starts afresh gives
    /// its batches later times: a new batch at or before it would be skipped as written.
    fn written_through(&self) -> Option<u64> {
        None
    }
}

/// Builds an output of one `type` from its table.
pub type Build = fn(&ConnectorTable<'_>) -> Result<Box<dyn Output>, ConfigError>;

/// Every kind of output, by its `type` in the pipeline file.
pub const TYPES: &[(&str, Build)] = &[
    ("print", print::build),
    ("text-files", text_files::build),
    ("command", command::build),
    ("kafka", kafka::build),
    ("postgres", postgres::build),
    ("dashboard", dashboard::build),
];

/// The output a pipeline table describes.
pub fn configure(table: &ConnectorTable<'_>) -> Result<Box<dyn Output>, ConfigError> {
    table.choose(TYPES)?(table)
}
