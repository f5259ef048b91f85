//! Running a job: receivers fill the block buffer, the batch clock cuts batches on the time
//! grid, and the runner executes them one at a time, in batch order, on the worker pool.

use crate::batch::{BatchInput, BlockBuffer};
use crate::config::Trigger;
use crate::exec::{WorkerPool, run_batch};
use crate::metrics::{BatchReport, Summary};
use crate::plan::Plan;
use crate::sink::{self, Sink};
use crate::source;
use crate::state::JobState;
use anyhow::{Context, Result, anyhow};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How a run is bounded and stopped.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Stop after this many batches.
    pub max_batches: Option<u64>,
    /// Set (by Ctrl-C) to stop gracefully: stop receiving, process what was received, flush.
    pub stop: Arc<AtomicBool>,
}

/// A finished run.
pub struct RunOutcome {
    /// Per-batch figures.
    pub summary: Summary,
    /// Wall time of the run.
    pub elapsed: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `plan` until its sources end, `max_batches` batches are done, or a stop is asked for.
pub fn run(plan: Plan, options: &RunOptions) -> Result<RunOutcome> {
    let plan = Arc::new(plan);
    let job = &plan.job;
    let name = job.name.clone();
    let buffer = Arc::new(BlockBuffer::new(
        job.max_block_bytes,
        job.max_buffered_bytes,
    ));
    let pool = WorkerPool::new(job.workers, plan.operators.clone())?;
    let state = Arc::new(JobState::new(&plan, now_ms())?);
    let mut sinks: Vec<Box<dyn Sink>> = plan.outputs.iter().map(|o| sink::build(&o.spec)).collect();
    let halt = Arc::new(AtomicBool::new(false));
    let (batches_out, batches_in) = match job.trigger {
        Trigger::ProcessingTime => crossbeam_channel::unbounded(),
        Trigger::AvailableNow => crossbeam_channel::bounded(1),
    };
    let started = Instant::now();
    let receivers = source::start_all(&plan.sources, &buffer, job.trigger)?;
    let clock = start_clock(&plan, &buffer, &halt, batches_out)?;
    let mut summary = Summary::default();
    let result = run_batches(
        &plan,
        &state,
        &pool,
        &mut sinks,
        &buffer,
        &batches_in,
        options,
        &mut summary,
    );
    buffer.stop();
    halt.store(true, Ordering::SeqCst);
    drop(batches_in);
    let _ = clock.join();
    for receiver in receivers {
        let _ = receiver.join();
    }
    result.with_context(|| format!("job '{name}' failed"))?;
    if let Some(failure) = buffer.failure() {
        return Err(anyhow!("job '{name}' failed: {failure}"));
    }
    Ok(RunOutcome {
        summary,
        elapsed: started.elapsed(),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_batches(
    plan: &Arc<Plan>,
    state: &Arc<JobState>,
    pool: &WorkerPool,
    sinks: &mut [Box<dyn Sink>],
    buffer: &BlockBuffer,
    batches: &Receiver<BatchInput>,
    options: &RunOptions,
    summary: &mut Summary,
) -> Result<()> {
    loop {
        if options.stop.load(Ordering::SeqCst) && !buffer.is_stopping() {
            tracing::info!("stopping: no more input; finishing the batches already received");
            buffer.stop();
        }
        let input = match batches.recv_timeout(Duration::from_millis(100)) {
            Ok(input) => input,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let report = run_one(plan, state, pool, sinks, buffer, input)?;
        tracing::info!("{report}");
        summary.record(report);
        if options
            .max_batches
            .is_some_and(|max| summary.batches() as u64 >= max)
        {
            tracing::info!(
                "stopping after {} batches (--max-batches)",
                summary.batches()
            );
            return Ok(());
        }
    }
}

fn run_one(
    plan: &Arc<Plan>,
    state: &Arc<JobState>,
    pool: &WorkerPool,
    sinks: &mut [Box<dyn Sink>],
    buffer: &BlockBuffer,
    input: BatchInput,
) -> Result<BatchReport> {
    let start = Instant::now();
    let scheduling_delay = start.saturating_duration_since(input.submitted);
    let (input_bytes, input_records, partitions) =
        (input.bytes(), input.records(), input.blocks.len());
    let output = run_batch(
        pool,
        plan,
        state,
        input.blocks,
        input.time_ms,
        input.end_of_input,
    )?;
    let mut output_records = 0;
    for (sink, out) in sinks.iter_mut().zip(&plan.outputs) {
        let Some(partitions) = &output.streams[out.stream] else {
            // The stream has no batch at this time (a window between its slides).
            continue;
        };
        output_records += partitions.iter().map(|b| b.len()).sum::<usize>();
        sink.write(input.time_ms, partitions, &plan.streams[out.stream].types)
            .with_context(|| format!("batch {} ms", input.time_ms))?;
    }
    buffer.release(input_bytes);
    Ok(BatchReport {
        time_ms: input.time_ms,
        input_records,
        input_bytes,
        partitions,
        output_records,
        skipped_lines: buffer.take_skipped(),
        scheduling_delay,
        processing_time: start.elapsed(),
        usage: plan.usage.take(),
        tasks: output.figures,
        state_records: state.records(),
    })
}

fn start_clock(
    plan: &Plan,
    buffer: &Arc<BlockBuffer>,
    halt: &Arc<AtomicBool>,
    batches: Sender<BatchInput>,
) -> Result<JoinHandle<()>> {
    let (buffer, halt) = (buffer.clone(), halt.clone());
    let job = plan.job.clone();
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("spate-batch-clock".into())
        .spawn(move || {
            let _entered = span.enter();
            match job.trigger {
                Trigger::ProcessingTime => processing_time_clock(&buffer, &halt, &batches, &job),
                Trigger::AvailableNow => available_now_clock(&buffer, &halt, &batches, &job),
            }
        })
        .map_err(|e| anyhow!("cannot start the batch clock: {e}"))
}

/// Seals a block at every block-interval tick and forms a batch at every batch-interval tick,
/// on a grid aligned to the Unix epoch. Ends after the batch that follows the last source's end.
fn processing_time_clock(
    buffer: &BlockBuffer,
    halt: &AtomicBool,
    batches: &Sender<BatchInput>,
    job: &crate::plan::JobSettings,
) {
    let batch_ms = job.batch_interval.as_millis() as u64;
    let block_ms = job.block_interval.as_millis() as u64;
    let mut tick = (now_ms() / block_ms + 1) * block_ms;
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
            // Checked before sealing: if every source had ended by now, this batch holds the rest.
            let last = buffer.sources_done();
            buffer.seal();
            let input = BatchInput {
                time_ms: tick,
                blocks: buffer.take(usize::MAX),
                submitted: Instant::now(),
                end_of_input: last,
            };
            if batches.send(input).is_err() || last {
                return;
            }
        } else {
            buffer.seal();
        }
        tick += block_ms;
    }
}

/// Forms batches of up to `max-batch-bytes` as fast as the runner takes them, until the sources
/// have nothing more. Batch times still step along the grid, one interval per batch.
fn available_now_clock(
    buffer: &BlockBuffer,
    halt: &AtomicBool,
    batches: &Sender<BatchInput>,
    job: &crate::plan::JobSettings,
) {
    let batch_ms = job.batch_interval.as_millis() as u64;
    let mut time = (now_ms() / batch_ms + 1) * batch_ms;
    while !halt.load(Ordering::SeqCst) {
        let ready = buffer.wait_for_blocks(Duration::from_millis(50));
        let last = buffer.sources_done();
        if last {
            buffer.seal();
        } else if !ready {
            continue;
        }
        let blocks = buffer.take(job.max_batch_bytes);
        if blocks.is_empty() && !last {
            continue;
        }
        // The last data batch may have gone out before the sources were seen ending: then one
        // empty batch carries the end of input.
        let ended = last && !buffer.has_sealed();
        if batches
            .send(BatchInput {
                time_ms: time,
                blocks,
                submitted: Instant::now(),
                end_of_input: ended,
            })
            .is_err()
            || ended
        {
            return;
        }
        time += batch_ms;
    }
}
