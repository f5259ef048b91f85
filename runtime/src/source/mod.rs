//! Sources: one file per connector behind the [`Source`] trait, registered by its `type` in
//! [`TYPES`]; at run time one receiver thread per source, cutting input into lines and
//! appending them to the job's [`BlockBuffer`] with the source's [`Progress`].
//!
//! A connector owns its pipeline fields (a serde struct read through
//! [`ConnectorTable::fields`]), what `spate check` says of it, where a new job starts and how
//! its position is kept small. Positions are the same for every connector (a stream offset and
//! offsets of named parts: files, later Kafka partitions), so the batch log, checkpoints and
//! recovery need no per-connector code.

mod bundled;
mod directory;
mod gauges;
mod kafka;
mod line_copy;
pub mod lines;
mod repartition;
mod socket;

use crate::batch::BlockBuffer;
use crate::config::{ConfigError, ConnectorTable, Trigger};
use crate::kafka::OffsetsGroup;
use crate::position::{Positions, Progress, SourcePosition};
use crate::record::StreamType;
use anyhow::{Result, anyhow};
pub use gauges::{GaugeReading, SourceGauges};
use spate_guest::Column;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A source as its pipeline table configures it.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// What it reads, for `spate check`.
    fn describe(&self) -> String;

    /// Where a new job (no checkpoint) starts reading, as progress from the start of every
    /// stream: nothing by default.
    fn start(&self, _trigger: Trigger) -> Result<Vec<Progress>> {
        Ok(Vec::new())
    }

    /// Drops from a recovered position what can no longer be read again (a deleted file), so
    /// that positions stay small.
    fn prune(&self, _position: &mut SourcePosition) {}

    /// The key and value types of its records: unkeyed text lines unless it says otherwise.
    fn stream_type(&self) -> StreamType {
        StreamType::lines()
    }

    /// Reads input into `context`'s buffer from `context.resume` until the job stops (or,
    /// with `available-now`, until the input present at start is read). An error fails the
    /// job, naming the source.
    fn receive(&self, context: &ReceiverContext) -> Result<()>;

    /// For a scale-out job (`job.group`): how a process joins the consumer group that shares
    /// the source's partitions out; `None` when the source cannot be shared that way.
    fn group_input(&self) -> Option<GroupInput> {
        None
    }

    /// The consumer group a Kafka source commits its offsets to: an exactly-once Kafka output
    /// on the same cluster can commit them in its transactions instead (see
    /// [`ReceiverContext::offsets_in_transactions`]).
    fn offsets_group(&self) -> Option<OffsetsGroup> {
        None
    }

    /// Whether the source knows which batch each of its records belongs to, so that the
    /// job's batches wait for it ([`BlockBuffer::pace`]): a scale-out repartition topic.
    fn paces_batches(&self) -> bool {
        false
    }
}

/// What a process of a scale-out job joins its consumer group with.
pub struct GroupInput {
    /// The source's client settings (brokers, `[client]` settings).
    pub client: rdkafka::ClientConfig,
    /// The subscription: topic names, and librdkafka regexes (`^...`) for patterns.
    pub topics: Vec<String>,
}

/// Builds a source of one `type` from its table.
pub type Build = fn(&ConnectorTable<'_>) -> Result<Box<dyn Source>, ConfigError>;

/// Every kind of source, by its `type` in the pipeline file.
pub const TYPES: &[(&str, Build)] = &[
    ("socket", socket::build),
    ("directory", directory::build),
    ("bundled", bundled::build),
    ("kafka", kafka::build),
    ("repartition", repartition::build),
];

/// The source a pipeline table describes.
pub fn configure(table: &ConnectorTable<'_>) -> Result<Box<dyn Source>, ConfigError> {
    table.choose(TYPES)?(table)
}

/// A configured source with its name.
#[derive(Debug)]
pub struct NamedSource {
    /// The name in `[sources.<name>]`.
    pub name: String,
    /// Its `type`.
    pub kind: String,
    /// The connector.
    pub source: Arc<dyn Source>,
}

/// What every receiver gets.
pub struct ReceiverContext {
    /// The source's name in the pipeline file.
    pub name: String,
    /// The source's index in the plan.
    pub index: usize,
    /// Where lines go.
    pub buffer: Arc<BlockBuffer>,
    /// `available-now` receivers read what is there and end.
    pub trigger: Trigger,
    /// Where to resume (a recovered job's position; see [`initial_positions`] otherwise).
    pub resume: SourcePosition,
    /// Positions that are durable, for the resume protocol's acknowledgements and Kafka's
    /// group commits.
    pub acks: Arc<Acks>,
    /// The job's batch interval (per-batch read limits count in it).
    pub batch_interval: Duration,
    /// Set once the receiver's input has ended (see [`ReceiverContext::end_input`]).
    pub input_ended: AtomicBool,
    /// What the receiver knows of its input beyond the records (ends, reconnects, errors).
    pub gauges: Arc<SourceGauges>,
    /// An output commits this source's offsets to its group in each batch's transaction
    /// ([`Source::offsets_group`]): the receiver does not commit them itself.
    pub offsets_in_transactions: bool,
}

/// Per source, the position up to which input is safe (logged, or processed when the job keeps
/// no log): what a producer speaking the resume protocol may forget, and the offsets a Kafka
/// source commits to its group.
pub struct Acks(Vec<Mutex<SourcePosition>>);

impl Acks {
    /// Positions of `sources` sources, starting at `positions`.
    pub fn new(sources: &[NamedSource], positions: &Positions) -> Self {
        Acks(
            sources
                .iter()
                .map(|s| Mutex::new(positions.of(&s.name)))
                .collect(),
        )
    }

    fn lock(&self, source: usize) -> Option<MutexGuard<'_, SourcePosition>> {
        let at = self.0.get(source)?;
        Some(at.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Source `source` is safe up to `progress`.
    pub fn advance(&self, source: usize, progress: &Progress) {
        if let Some(mut at) = self.lock(source) {
            at.apply(progress);
        }
    }

    /// The safe stream offset of source `source`.
    pub fn get(&self, source: usize) -> u64 {
        self.lock(source).map_or(0, |at| at.stream)
    }

    /// The safe position of source `source`.
    pub fn position(&self, source: usize) -> SourcePosition {
        self.lock(source).map(|at| at.clone()).unwrap_or_default()
    }
}

impl ReceiverContext {
    /// This receiver has no more input: an `available-now` job may end once what it delivered
    /// is processed. Called when `receive` returns; a receiver that must act after the job's
    /// last batch (a Kafka source's final group commit) calls it first, then waits for
    /// [`BlockBuffer::wait_until_stopping`].
    pub fn end_input(&self) {
        if !self.input_ended.swap(true, Ordering::SeqCst) {
            self.buffer.close_source();
        }
    }

    /// Hands lines to the buffer with the source's position after them; false when the job is
    /// stopping.
    pub fn deliver(
        &self,
        lines: &mut Column,
        splitter: &mut lines::LineSplitter,
        progress: Option<Progress>,
    ) -> bool {
        let skipped = splitter.take_skipped();
        if skipped > 0 {
            self.buffer.count_skipped(skipped);
        }
        if lines.is_empty() && progress.is_none() {
            return !self.buffer.is_stopping();
        }
        self.buffer.push(self.index, lines, progress)
    }

    /// [`ReceiverContext::deliver`] once `lines` hold a block; until then they keep filling.
    /// For a receiver that knows more input is waiting (a file read that filled its buffer):
    /// its lines then go to the buffer a block at a time, taken whole instead of copied read by
    /// read. A socket receiver delivers every read: a read that fills its buffer does not tell
    /// that more will come soon, and holding lines would delay them.
    pub fn deliver_blocks(
        &self,
        lines: &mut Column,
        splitter: &mut lines::LineSplitter,
        progress: Option<Progress>,
    ) -> bool {
        if self.buffer.is_block(lines) {
            self.deliver(lines, splitter, progress)
        } else {
            !self.buffer.is_stopping()
        }
    }

    /// Sleeps up to `duration`, waking early when the job stops; false if it is stopping.
    pub fn sleep(&self, duration: Duration) -> bool {
        let end = Instant::now() + duration;
        while Instant::now() < end {
            if self.buffer.is_stopping() {
                return false;
            }
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
        }
        !self.buffer.is_stopping()
    }
}

/// Where a new job's sources start (see [`Source::start`]).
pub fn initial_positions(sources: &[NamedSource], trigger: Trigger) -> Result<Positions> {
    let mut positions = Positions::default();
    for source in sources {
        for progress in source.source.start(trigger)? {
            positions.apply(&source.name, &progress);
        }
    }
    Ok(positions)
}

/// Drops from recovered positions what the sources can no longer read (see [`Source::prune`]).
pub fn prune_positions(sources: &[NamedSource], positions: &mut Positions) {
    for source in sources {
        if let Some(position) = positions.0.get_mut(&source.name) {
            source.source.prune(position);
        }
    }
}

/// Starts a receiver thread for each source, each resuming at its position in `positions`.
pub fn start_all(
    sources: &[NamedSource],
    buffer: &Arc<BlockBuffer>,
    (trigger, batch_interval): (Trigger, Duration),
    positions: &Positions,
    acks: &Arc<Acks>,
    gauges: &[Arc<SourceGauges>],
    offsets_in_transactions: &[usize],
) -> Result<Vec<JoinHandle<()>>> {
    sources
        .iter()
        .enumerate()
        .map(|(index, source)| {
            let context = ReceiverContext {
                name: source.name.clone(),
                index,
                buffer: buffer.clone(),
                trigger,
                resume: positions.of(&source.name),
                acks: acks.clone(),
                batch_interval,
                input_ended: AtomicBool::new(false),
                gauges: gauges.get(index).cloned().unwrap_or_default(),
                offsets_in_transactions: offsets_in_transactions.contains(&index),
            };
            let connector = source.source.clone();
            buffer.open_source();
            let span = tracing::Span::current();
            std::thread::Builder::new()
                .name(format!("spate-source-{}", source.name))
                .spawn(move || {
                    let _entered = span.enter();
                    if let Err(e) = connector.receive(&context) {
                        context
                            .buffer
                            .fail(format!("source '{}': {e:#}", context.name));
                    }
                    context.end_input();
                })
                .map_err(|e| anyhow!("cannot start the receiver of source '{}': {e}", source.name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BadLinePolicy;

    #[test]
    fn lines_are_delivered_a_block_at_a_time_or_at_once() {
        let context = ReceiverContext {
            name: "test".into(),
            index: 0,
            buffer: Arc::new(BlockBuffer::new(64, 1 << 20)),
            trigger: Trigger::ProcessingTime,
            resume: SourcePosition::default(),
            acks: Arc::new(Acks(Vec::new())),
            batch_interval: Duration::from_secs(1),
            input_ended: AtomicBool::new(false),
            gauges: Arc::default(),
            offsets_in_transactions: false,
        };
        let mut splitter = lines::LineSplitter::new("test".into(), 100, BadLinePolicy::Fail);
        let mut lines = context.buffer.block_column(32);
        splitter
            .feed(b"0123456789\n0123456789\n", &mut lines)
            .unwrap();
        assert!(context.deliver_blocks(&mut lines, &mut splitter, None));
        assert_eq!((lines.len(), context.buffer.buffered_bytes()), (2, 0));
        for _ in 0..3 {
            splitter
                .feed(b"0123456789\n0123456789\n", &mut lines)
                .unwrap();
        }
        assert!(context.deliver_blocks(&mut lines, &mut splitter, None));
        assert_eq!((lines.len(), context.buffer.buffered_bytes()), (0, 80));
        splitter.feed(b"x\n", &mut lines).unwrap();
        assert!(context.deliver(&mut lines, &mut splitter, None));
        assert_eq!((lines.len(), context.buffer.buffered_bytes()), (0, 81));
    }
}
