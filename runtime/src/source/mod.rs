//! Receivers: one thread per source, cutting input into lines and appending them to the
//! job's [`BlockBuffer`].

mod bundled;
mod directory;
pub mod lines;
mod socket;

use crate::batch::BlockBuffer;
use crate::config::{SourceSpec, Trigger};
use crate::plan::SourcePlan;
use anyhow::{Result, anyhow};
use spate_guest::Column;
use std::sync::Arc;
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
}

impl ReceiverContext {
    /// Hands lines to the buffer; false when the job is stopping.
    pub fn deliver(&self, lines: &mut Column, splitter: &mut lines::LineSplitter) -> bool {
        let skipped = splitter.take_skipped();
        if skipped > 0 {
            self.buffer.count_skipped(skipped);
        }
        if lines.is_empty() {
            return !self.buffer.is_stopping();
        }
        let more = self.buffer.push(self.index, lines);
        lines.data.clear();
        lines.offsets.clear();
        more
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

/// Starts a receiver thread for each source.
pub fn start_all(
    sources: &[SourcePlan],
    buffer: &Arc<BlockBuffer>,
    trigger: Trigger,
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
