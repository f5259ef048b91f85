//! The batch clock: cuts blocks and batches on the time grid (processing time) or when the
//! runner asks for the next batch (available now).

use crate::batch::{BatchInput, BlockBuffer};
use crate::config::Trigger;
use crate::plan::{JobSettings, Plan};
use anyhow::{Result, anyhow};
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::now_ms;

/// Starts the clock thread; `first` is the first batch time (a grid time).
pub fn start_clock(
    plan: &Plan,
    buffer: &Arc<BlockBuffer>,
    halt: &Arc<AtomicBool>,
    batches: Sender<BatchInput>,
    first: u64,
) -> Result<JoinHandle<()>> {
    let (buffer, halt) = (buffer.clone(), halt.clone());
    let job = plan.job.clone();
    let workers = plan.dataflow.tasks.workers;
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("spate-batch-clock".into())
        .spawn(move || {
            let _entered = span.enter();
            match job.trigger {
                Trigger::ProcessingTime => {
                    processing_time_clock(&buffer, &halt, &batches, &job, first)
                }
                Trigger::AvailableNow => {
                    available_now_clock(&buffer, &halt, &batches, (&job, workers), first)
                }
            }
        })
        .map_err(|e| anyhow!("cannot start the batch clock: {e}"))
}

/// Seals a block at every block-interval tick and forms a batch at every batch-interval tick,
/// on a grid aligned to the Unix epoch, from batch time `first` on. Grid times already past
/// (a recovered job's down time) get their batches at once, empty, as Spark does, so windows
/// and timeouts see every batch time. Ends after the batch that follows the last source's end.
fn processing_time_clock(
    buffer: &BlockBuffer,
    halt: &AtomicBool,
    batches: &Sender<BatchInput>,
    job: &JobSettings,
    first: u64,
) {
    let batch_ms = job.batch_interval.as_millis() as u64;
    let block_ms = job.block_interval.as_millis() as u64;
    // A source that paces the batches may move the first one back (a fresh reduce task whose
    // writers are ahead of it): known once it hands its first batch over.
    let Some(before_first) = buffer.wait_for_first_handover(first - batch_ms, halt) else {
        return;
    };
    let mut tick = before_first + block_ms;
    loop {
        loop {
            if halt.load(Ordering::SeqCst) {
                return;
            }
            let now = now_ms();
            if now >= tick {
                break;
            }
            std::thread::sleep(Duration::from_millis((tick - now).min(20)));
        }
        if tick.is_multiple_of(batch_ms) {
            // A source that paces the batches holds this one until it has all its records;
            // if it ends first, the job ends without a batch it could not complete.
            if !buffer.wait_until_formable(tick, halt) {
                return;
            }
            // Checked before sealing: if every source had ended by now, this batch holds the rest.
            let last = buffer.sources_done();
            buffer.seal();
            let input = BatchInput::new(tick, buffer.take(usize::MAX), last);
            buffer.formed(tick);
            if batches.send(input).is_err() || last {
                return;
            }
        } else {
            buffer.seal();
        }
        tick += block_ms;
    }
}

/// Forms batches of up to `max-batch-bytes` when the runner asks for one, until the sources
/// have nothing more, like Spark's available-now trigger, which plans each micro-batch when the
/// one before has finished. Batch times still step along the grid, one interval per batch.
/// Formed as soon as the runner took the previous one instead, a batch held only the few blocks
/// sealed since, and the cost each batch has whatever its size (flushing the held output,
/// the reduce side) was paid two to three times as often. A batch holds a multiple of the
/// worker count of blocks (partitions) while the sources still send: taking whatever was sealed
/// gave 2 workers batches of 1, 3 and 5 partitions, which leave a worker idle.
fn available_now_clock(
    buffer: &BlockBuffer,
    halt: &AtomicBool,
    batches: &Sender<BatchInput>,
    (job, workers): (&JobSettings, usize),
    first: u64,
) {
    let batch_ms = job.batch_interval.as_millis() as u64;
    let mut time = first;
    while !halt.load(Ordering::SeqCst) {
        let ready = buffer.wait_for_demand(workers, Duration::from_millis(50));
        let last = buffer.sources_done();
        if last {
            buffer.seal();
        } else if !ready {
            continue;
        }
        let blocks = buffer.take_in_multiples(job.max_batch_bytes, workers);
        if blocks.is_empty() && !last {
            continue;
        }
        // The last data batch may have gone out before the sources were seen ending: then one
        // empty batch carries the end of input.
        let ended = last && !buffer.has_sealed();
        if batches.send(BatchInput::new(time, blocks, ended)).is_err() || ended {
            return;
        }
        time += batch_ms;
    }
}
