//! Running a job: receivers fill the block buffer, the batch clock cuts batches on the time
//! grid, and the runner executes them one at a time, in batch order, on the worker pool.

use crate::batch::{BatchInput, BlockBuffer, partition_bytes};
use crate::checkpoint::batch_log;
use crate::config::Trigger;
use crate::exec::{InputRelease, WorkerPool, run_batch};
use crate::kafka::OffsetsGroup;
use crate::metrics::{BatchReport, OutputWrite, Summary};
use crate::plan::Plan;
use crate::position::Progress;
use crate::sink::{OutputContext, OutputGauges, Sink};
use crate::source::{self, Acks, SourceGauges};
use crate::state::JobState;
use crate::status::{JobStatus, Registry};
use anyhow::{Context, Result, anyhow};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use durability::Durability;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod clock;
mod description;
mod durability;
mod progress;

pub use durability::set_aside;

/// How a run is bounded and stopped.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Stop after this many batches.
    pub max_batches: Option<u64>,
    /// Set (by Ctrl-C or SIGTERM) to stop gracefully: stop receiving, process what was
    /// received, flush, checkpoint.
    pub stop: Arc<AtomicBool>,
    /// Start without earlier runs' state (`--fresh`).
    pub fresh: bool,
    /// Where the job reports its state and batches (the web UI reads them).
    pub registry: Arc<Registry>,
    /// A scale-out task's job: how many processes take part in the whole job, kept current
    /// by the process's member and read into each batch's figures.
    pub processes: Option<Arc<AtomicUsize>>,
}

/// A finished run.
pub struct RunOutcome {
    /// Per-batch figures.
    pub summary: Summary,
    /// Wall time of the run.
    pub elapsed: Duration,
}

pub use crate::wallclock::now_ms;

/// What the runner works with.
struct Runner<'a> {
    plan: &'a Arc<Plan>,
    state: &'a Arc<JobState>,
    pool: &'a WorkerPool,
    sinks: Sinks,
    buffer: &'a Arc<BlockBuffer>,
    acks: &'a Acks,
    durability: Option<Durability>,
    summary: Summary,
    last_time: Option<u64>,
    status: &'a JobStatus,
    /// Without a checkpoint directory: each processed batch's source progress, until its
    /// outputs are written (then the input is acknowledged).
    unacked: Vec<Vec<(usize, Progress)>>,
}

/// Runs `plan` until its sources end, `max_batches` batches are done, or a stop is asked for.
/// With a checkpoint directory, it first recovers what a previous run left there.
pub fn run(plan: Plan, options: &RunOptions) -> Result<RunOutcome> {
    let status = options.registry.add(description::describe(&plan));
    let plan = Arc::new(plan);
    {
        // Describing asks a Kafka source's brokers for partitions: not on the job's way.
        let (plan, status) = (plan.clone(), status.clone());
        let _ = std::thread::Builder::new()
            .name("spate-describe".into())
            .spawn(move || {
                let sources = plan.sources.iter().map(|s| s.source.describe()).collect();
                status.set_plan(plan.describe(), sources)
            });
    }
    let progress = (plan.job.trigger == Trigger::AvailableNow)
        .then(|| progress::ProgressReport::start(status.clone()));
    let result = run_reporting(plan, options, &status);
    if let Some(progress) = progress {
        progress.finish();
    }
    status.ended(result.as_ref().err().map(|e| format!("{e:#}")));
    result
}

/// [`run`], reporting to `status`.
fn run_reporting(
    plan: Arc<Plan>,
    options: &RunOptions,
    status: &Arc<JobStatus>,
) -> Result<RunOutcome> {
    // Outputs open (a Kafka transactional producer takes about half a second) while the job
    // recovers and its sources start; no batch runs before they are open, and one that cannot
    // open (a broker away) stops the job before any batch.
    let output_gauges: Vec<Arc<OutputGauges>> =
        plan.outputs.iter().map(|_| Arc::default()).collect();
    let carriers = offsets_carriers(&plan);
    let opening = open_outputs(&plan, &output_gauges, &carriers)?;
    let job = &plan.job;
    let name = job.name.clone();
    let buffer = Arc::new(BlockBuffer::new(
        job.max_block_bytes,
        job.max_buffered_bytes,
    ));
    let dataflow = &plan.dataflow;
    let pool = WorkerPool::new(dataflow.tasks.workers, dataflow.operators.clone())?;
    let mut state = dataflow.new_state(now_ms())?;
    let (durability, recovered) = match job.checkpoint {
        Some(_) => {
            let (durability, recovered) = Durability::open(&plan, &mut state, status)
                .with_context(|| format!("job '{name}' cannot start"))?;
            (Some(durability), recovered)
        }
        None => (None, None),
    };
    let batch_ms = job.batch_interval.as_millis() as u64;
    let mut outputs = Outputs::Opening(opening);
    // A source that paces processing-time batches says where a fresh job's batches start (its
    // first batch, or the first the outputs have not written, whichever is later: see
    // `BlockBuffer::first_handover`); the clock's grid time is then only a lower bound.
    let pacing: Vec<usize> = (plan.sources.iter().enumerate())
        .filter(|(_, s)| s.source.paces_batches())
        .map(|(index, _)| index)
        .collect();
    let paced = job.trigger == Trigger::ProcessingTime && !pacing.is_empty();
    let (first, positions) = match &recovered {
        Some(r) => (r.next_time, r.positions.clone()),
        None => {
            // Where the sources start is fixed first: what arrives while the outputs open
            // (below) is the run's input, not something that was there before it.
            let positions = source::initial_positions(&plan.sources, job.trigger)?;
            let mut first = match paced {
                true => batch_ms,
                false => (now_ms() / batch_ms + 1) * batch_ms,
            };
            if plan
                .outputs
                .iter()
                .any(|o| o.output.remembers_batch_times())
            {
                // An earlier run's marker may be ahead of the clock (an available-now run
                // gives its batches one interval each, however fast it goes): batch times
                // start after it, or this run's first batches would be skipped as written.
                let sinks = outputs
                    .open()
                    .with_context(|| format!("job '{name}' failed"))?;
                let written = sinks.iter().filter_map(|s| s.written_through()).max();
                if let Some(written) = written.filter(|&t| t >= first) {
                    first = (written / batch_ms + 1) * batch_ms;
                    tracing::info!(
                        "batch times start at {first} ms, after the last batch an output \
                         recorded as written by an earlier run ({written} ms)"
                    );
                }
                outputs = Outputs::Open(sinks);
            }
            (first, positions)
        }
    };
    let mut durability = durability;
    if let (Some(durability), None) = (&mut durability, &recovered) {
        // A first checkpoint before any batch fixes where the sources start, so that a
        // restart before the first regular checkpoint starts from the same place.
        durability.initial(&plan, &state, first - batch_ms, &positions)?;
    }
    if !pacing.is_empty() {
        buffer.pace(first - batch_ms, &pacing);
    }
    let state = Arc::new(state);
    let acks = Arc::new(Acks::new(&plan.sources, &positions));
    let gauges: Vec<Arc<SourceGauges>> = plan.sources.iter().map(|_| Arc::default()).collect();
    let halt = Arc::new(AtomicBool::new(false));
    let channel = || match job.trigger {
        Trigger::ProcessingTime => crossbeam_channel::unbounded(),
        Trigger::AvailableNow => crossbeam_channel::bounded(1),
    };
    let (batches_out, batches_in) = channel();
    let started = Instant::now();
    let carried: Vec<usize> = carriers.iter().flatten().map(|(i, _)| *i).collect();
    let receivers = source::start_all(
        &plan.sources,
        &buffer,
        (job.trigger, job.batch_interval),
        &positions,
        &acks,
        &gauges,
        &carried,
    )?;
    // With a checkpoint directory, batches go through the logger before the runner.
    let (clock_out, logger) = match &durability {
        Some(d) => {
            let (to_logger, from_clock) = channel();
            let log_empty = plan
                .outputs
                .iter()
                .any(|o| o.output.remembers_batch_times());
            let logger = durability::start_logger(
                d.log_dir(),
                log_empty,
                from_clock,
                batches_out,
                acks.clone(),
                buffer.clone(),
            )?;
            (to_logger, Some(logger))
        }
        None => (batches_out, None),
    };
    let clock = clock::start_clock(&plan, &buffer, &halt, clock_out, first)?;
    let mut runner = Runner {
        plan: &plan,
        state: &state,
        pool: &pool,
        sinks: Vec::new(),
        buffer: &buffer,
        acks: &acks,
        durability,
        summary: Summary::default(),
        last_time: None,
        status,
        unacked: Vec::new(),
    };
    let replay = recovered.map(|r| r.replay).unwrap_or_default();
    let mut result = outputs.open().and_then(|sinks| {
        runner.sinks = sinks;
        status.running(buffer.clone(), acks.clone(), gauges, output_gauges);
        runner.run_batches(&replay, &batches_in, options)
    });
    if result.is_ok() {
        // Batches still being written (an output writing in the background) are finished
        // before the job counts as done, and before the receivers end: their input is then
        // acknowledged, in time for a Kafka source's final group commit.
        result = runner.sync_outputs();
    }
    buffer.stop();
    halt.store(true, Ordering::SeqCst);
    drop(batches_in);
    let _ = clock.join();
    if let Some(logger) = logger {
        let _ = logger.join();
    }
    for receiver in receivers {
        let _ = receiver.join();
    }
    if let Some(durability) = &mut runner.durability {
        // A graceful end leaves a checkpoint of everything processed.
        let last = if result.is_ok() && buffer.failure().is_none() {
            runner.last_time
        } else {
            None
        };
        let finished = durability.finish(&plan, &state, last);
        result = result.and(finished);
    }
    result.with_context(|| format!("job '{name}' failed"))?;
    if let Some(failure) = buffer.failure() {
        return Err(anyhow!("job '{name}' failed: {failure}"));
    }
    Ok(RunOutcome {
        summary: runner.summary,
        elapsed: started.elapsed(),
    })
}

/// The sinks of a job's outputs, in output order.
type Sinks = Vec<Box<dyn Sink>>;

/// A job's outputs: opening on a thread of their own, or open.
enum Outputs {
    Opening(JoinHandle<Result<Sinks>>),
    Open(Sinks),
}

impl Outputs {
    /// The sinks, once every output is open; the first that could not open stops the job.
    fn open(self) -> Result<Sinks> {
        match self {
            Outputs::Opening(thread) => match thread.join() {
                Ok(opened) => opened.context("an output cannot open"),
                Err(_) => Err(anyhow!("internal error: opening the outputs panicked")),
            },
            Outputs::Open(sinks) => Ok(sinks),
        }
    }
}

/// Waits until every sink has written every batch it was given.
fn sync_all(sinks: &mut Sinks) -> Result<()> {
    sinks.iter_mut().try_for_each(|sink| sink.sync())
}

/// Per output, the sources whose offsets it commits to their consumer groups in its batches'
/// transactions (Kafka Streams' exactly-once: outputs and input offsets committed together),
/// instead of the sources committing them once the batch is safe. Each such source goes to the
/// first output that can commit to its group (an exactly-once Kafka output on the same
/// cluster), and only when that output's commit means the batch is safe: it is the job's only
/// output, or the job keeps a batch log (recovery then reads the log, and the group's offsets
/// are for lag tools alone). Otherwise a job without a log, resuming from the group's offsets,
/// could skip a batch another output had not written yet.
fn offsets_carriers(plan: &Plan) -> Vec<Vec<(usize, OffsetsGroup)>> {
    let mut carriers = vec![Vec::new(); plan.outputs.len()];
    if plan.outputs.len() > 1 && plan.job.checkpoint.is_none() {
        return carriers;
    }
    for (index, source) in plan.sources.iter().enumerate() {
        let Some(group) = source.source.offsets_group() else {
            continue;
        };
        if let Some(carrier) = plan
            .outputs
            .iter()
            .position(|o| o.output.commits_offsets_to(&group))
        {
            carriers[carrier].push((index, group));
        }
    }
    carriers
}

/// Opens every output's sink on a thread of its own, each counting its retries in its gauges,
/// and each given the sources whose offsets it commits (`carriers`).
fn open_outputs(
    plan: &Arc<Plan>,
    gauges: &[Arc<OutputGauges>],
    carriers: &[Vec<(usize, OffsetsGroup)>],
) -> Result<JoinHandle<Result<Sinks>>> {
    let plan = plan.clone();
    let gauges = gauges.to_vec();
    let carriers = carriers.to_vec();
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("spate-open-outputs".into())
        .spawn(move || {
            let _entered = span.enter();
            plan.outputs
                .iter()
                .zip(gauges)
                .zip(carriers)
                .map(|((o, gauges), input_offsets)| {
                    let types = &plan.dataflow.streams[o.stream].types;
                    let context = OutputContext {
                        job: &plan.job.name,
                        task: plan.job.task.as_deref(),
                        gauges,
                        input_offsets,
                    };
                    o.output.open(&context, types)
                })
                .collect()
        })
        .map_err(|e| anyhow!("cannot start a thread: {e}"))
}

impl Runner<'_> {
    /// Runs the recovered batches, then the new ones as they come.
    fn run_batches(
        &mut self,
        replay: &[PathBuf],
        batches: &Receiver<BatchInput>,
        options: &RunOptions,
    ) -> Result<()> {
        for (i, path) in replay.iter().enumerate() {
            let input = batch_log::read(path)?;
            tracing::info!("replaying batch {} from the batch log", input.time_ms);
            if self.run_and_report(input, replay.len() - i - 1, options)? {
                return Ok(());
            }
        }
        loop {
            if options.stop.load(Ordering::SeqCst) && !self.buffer.is_stopping() {
                tracing::info!("stopping: no more input; finishing the batches already received");
                self.buffer.stop();
            }
            self.buffer.want_batch();
            let input = match batches.recv_timeout(Duration::from_millis(100)) {
                Ok(input) => input,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            if self.run_and_report(input, batches.len(), options)? {
                return Ok(());
            }
        }
    }

    /// Acknowledges the input of the first `n` batches waiting for it.
    fn advance_acks(&mut self, n: usize) {
        for progress in self.unacked.drain(..n) {
            for (source, p) in &progress {
                self.acks.advance(*source, p);
            }
        }
    }

    /// Waits until every output has written every batch; then their input is safe.
    fn sync_outputs(&mut self) -> Result<()> {
        sync_all(&mut self.sinks)?;
        self.advance_acks(self.unacked.len());
        Ok(())
    }

    /// Runs one batch, `queued` more waiting; true when the run should end (`--max-batches`).
    fn run_and_report(
        &mut self,
        input: BatchInput,
        queued: usize,
        options: &RunOptions,
    ) -> Result<bool> {
        let (time, progress) = (input.time_ms, input.progress.clone());
        self.status.batch_started(time, input.records(), queued);
        let mut report = run_one(
            self.plan,
            self.state,
            self.pool,
            &mut self.sinks,
            self.buffer,
            input,
        )?;
        report.processes = options
            .processes
            .as_ref()
            .map(|count| count.load(Ordering::Relaxed));
        tracing::info!("{report}");
        self.status.batch_done(&report);
        // Each task's figures are for the UI, which has them now; the run summary keeps every
        // batch, and they would grow it by a record per task.
        report.tasks.tasks = Vec::new();
        self.summary.record(report);
        self.last_time = Some(time);
        match &mut self.durability {
            Some(durability) => {
                let sinks = &mut self.sinks;
                durability
                    .after_batch(self.plan, self.state, (time, &progress), || sync_all(sinks))?
            }
            None => {
                // Input is safe once its outputs are written. Writing this batch finished the
                // one before it; this one may still be in flight.
                self.unacked.push(progress);
                let in_flight = usize::from(self.sinks.iter().any(|s| s.pending()));
                self.advance_acks(self.unacked.len() - in_flight);
            }
        }
        let done = options
            .max_batches
            .is_some_and(|max| self.summary.batches() as u64 >= max);
        if done {
            tracing::info!(
                "stopping after {} batches (--max-batches)",
                self.summary.batches()
            );
        }
        Ok(done)
    }
}

/// Fails the job when its state (`held`: bytes by node, `total` in all) holds more host
/// memory than `most` (`job.max-state-bytes`), naming the step that holds the most: checked
/// after the batch's dataflow, before its outputs, so that the batch stays unwritten and a
/// restart with a higher cap runs it again.
fn check_state_size(plan: &Plan, held: &[(usize, usize)], total: usize, most: usize) -> Result<()> {
    if total <= most {
        return Ok(());
    }
    let (node, largest) = held
        .iter()
        .copied()
        .max_by_key(|(_, bytes)| *bytes)
        .unwrap_or_default();
    let size = crate::wasm::bytes;
    Err(anyhow!(
        "the job's state holds {} of host memory, over job.max-state-bytes ({}); {} holds {}. \
         Raise job.max-state-bytes (under a policy, up to its max-state-bytes), or keep fewer \
         keys (a timeout with map-with-state, a shorter window)",
        size(total),
        size(most),
        plan.dataflow
            .nodes
            .get(node)
            .map_or("a step", |n| n.label.as_str()),
        size(largest)
    ))
}

fn run_one(
    plan: &Arc<Plan>,
    state: &Arc<JobState>,
    pool: &WorkerPool,
    sinks: &mut [Box<dyn Sink>],
    buffer: &Arc<BlockBuffer>,
    input: BatchInput,
) -> Result<BatchReport> {
    let start = Instant::now();
    let scheduling_delay = start.saturating_duration_since(input.submitted);
    let (input_bytes, input_records, partitions) =
        (input.bytes(), input.records(), input.blocks.len());
    let mut per_source = vec![(0, 0); plan.sources.len()];
    for block in &input.blocks {
        if let Some(source) = per_source.get_mut(block.source) {
            source.0 += block.records.len();
            source.1 += block.bytes();
        }
    }
    let to_buffer = buffer.clone();
    let release = InputRelease::new(move |bytes| to_buffer.release(bytes));
    let times = (input.time_ms, input.end_of_input);
    let output = run_batch(pool, &plan.dataflow, state, input.blocks, times, &release)?;
    let held = state.bytes_by_node();
    let state_bytes: usize = held.iter().map(|(_, bytes)| bytes).sum();
    if let Some(most) = plan.job.max_state_bytes {
        check_state_size(plan, &held, state_bytes, most)
            .with_context(|| format!("batch {} ms", times.0))?;
    }
    let (mut output_records, mut output_bytes) = (0, 0);
    let mut outputs = Vec::with_capacity(sinks.len());
    // Before any write: an output may have no batch now, yet commit this progress with its next.
    for sink in sinks.iter_mut() {
        sink.input_progress(&input.progress);
    }
    for (sink, out) in sinks.iter_mut().zip(&plan.outputs) {
        let Some(partitions) = &output.streams[out.stream] else {
            // The stream has no batch at this time (a window between its slides).
            outputs.push(None);
            continue;
        };
        let records = partitions.iter().map(|b| b.len()).sum::<usize>();
        let bytes = partitions.iter().map(partition_bytes).sum::<usize>();
        output_records += records;
        output_bytes += bytes;
        let types = &plan.dataflow.streams[out.stream].types;
        let writing = Instant::now();
        sink.write(input.time_ms, partitions, types)
            .with_context(|| format!("batch {} ms", input.time_ms))?;
        outputs.push(Some(OutputWrite {
            records,
            bytes,
            micros: writing.elapsed().as_micros() as u64,
        }));
    }
    // The input bytes the tasks did not hand back (blocks that more than one reader kept).
    buffer.release(input_bytes.saturating_sub(release.released()));
    Ok(BatchReport {
        time_ms: input.time_ms,
        input_records,
        input_bytes,
        per_source,
        partitions,
        output_records,
        output_bytes,
        skipped_lines: buffer.take_skipped(),
        scheduling_delay,
        processing_time: start.elapsed(),
        usage: plan.usage.take(),
        per_operator: plan
            .dataflow
            .operators
            .iter()
            .map(|o| o.usage().take())
            .collect(),
        outputs,
        tasks: output.figures,
        state_records: state.records(),
        state_bytes,
        processes: None,
    })
}
