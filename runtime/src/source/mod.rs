//! Receivers: one thread per source, cutting input into lines and appending them to the
//! job's [`BlockBuffer`].

mod bundled;
mod directory;
mod line_copy;
pub mod lines;
pub mod position;
mod socket;

use crate::batch::BlockBuffer;
use crate::config::{SourceSpec, Trigger};
use crate::plan::SourcePlan;
use anyhow::{Result, anyhow};
use position::{Positions, Progress, SourcePosition};
use spate_guest::Column;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// Stream offsets that are durable, for the resume protocol's acknowledgements.
    pub acks: Arc<Acks>,
}

/// Per source, the stream offset up to which input is safe (logged, or processed when the job
/// keeps no log): what a producer speaking the resume protocol may forget.
pub struct Acks(Vec<AtomicU64>);

impl Acks {
    /// Offsets of `sources` sources, starting at `positions`.
    pub fn new(sources: &[SourcePlan], positions: &Positions) -> Self {
        Acks(
            sources
                .iter()
                .map(|s| AtomicU64::new(positions.of(&s.name).stream))
                .collect(),
        )
    }

    /// Source `source` is safe up to `progress`.
    pub fn advance(&self, source: usize, progress: &Progress) {
        if let (Progress::Stream(offset), Some(at)) = (progress, self.0.get(source)) {
            at.fetch_max(*offset, Ordering::SeqCst);
        }
    }

    /// The safe offset of source `source`.
    pub fn get(&self, source: usize) -> u64 {
        self.0.get(source).map_or(0, |a| a.load(Ordering::SeqCst))
    }
}

impl ReceiverContext {
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

/// Where a new job's sources start: at the beginning, except that a directory source taking
/// only new files counts the files already there as read.
pub fn initial_positions(sources: &[SourcePlan], trigger: Trigger) -> Result<Positions> {
    let mut positions = Positions::default();
    for source in sources {
        for progress in directory::existing(&source.spec, trigger)? {
            positions.apply(&source.name, &progress);
        }
    }
    Ok(positions)
}

/// Forgets the files of directory sources that are gone from their directory: a position
/// only needs the files a listing can still return.
pub fn forget_deleted_files(sources: &[SourcePlan], positions: &mut Positions) {
    for source in sources {
        if let (SourceSpec::Directory { path, .. }, Some(position)) =
            (&source.spec, positions.0.get_mut(&source.name))
        {
            let dir = std::path::Path::new(path);
            position.files.retain(|name, _| dir.join(name).exists());
        }
    }
}

/// Starts a receiver thread for each source, each resuming at its position in `positions`.
pub fn start_all(
    sources: &[SourcePlan],
    buffer: &Arc<BlockBuffer>,
    trigger: Trigger,
    positions: &Positions,
    acks: &Arc<Acks>,
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
            };
            let spec = source.spec.clone();
            buffer.open_source();
            let span = tracing::Span::current();
            std::thread::Builder::new()
                .name(format!("spate-source-{}", source.name))
                .spawn(move || {
                    let _entered = span.enter();
                    let result = match &spec {
                        SourceSpec::Socket { .. } => socket::run(&context, &spec),
                        SourceSpec::Directory { .. } => directory::run(&context, &spec),
                        SourceSpec::Bundled { lines_per_second } => {
                            bundled::run(&context, *lines_per_second)
                        }
                    };
                    if let Err(e) = result {
                        context
                            .buffer
                            .fail(format!("source '{}': {e:#}", context.name));
                    }
                    context.buffer.close_source();
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
