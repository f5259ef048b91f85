//! What the process's jobs are doing, for the web UI, its JSON API and `/metrics`: each job's
//! description, state and recent batches, kept as the runner reports them. Readers take
//! snapshots; a version number that grows with every change lets live pages wait for news.

use crate::batch::BlockBuffer;
use crate::exec::TaskRecord;
use crate::metrics::{BatchReport, OutputWrite};
use crate::position::SourcePosition;
use crate::sink::{OutputGaugeReading, OutputGauges};
use crate::source::{Acks, GaugeReading, SourceGauges};
use crate::wallclock::now_ms;
use crate::wasm::UsageReport;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Completed batches kept per job for the UI (Spark keeps 1000 as well:
/// `spark.streaming.ui.retainedBatches`).
pub const RETAINED_BATCHES: usize = 1000;

/// Batches whose every task's figures are kept, for the batch pages (tasks are many).
pub const TASK_DETAIL_BATCHES: usize = 100;

/// Over how many recent batches the sources page's rate per part is taken.
pub const RATE_BATCHES: usize = 10;

/// Checkpoints remembered per job.
pub const RETAINED_CHECKPOINTS: usize = 100;

/// Every job of the process.
pub struct Registry {
    jobs: Mutex<Vec<Arc<JobStatus>>>,
    version: tokio::sync::watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            jobs: Mutex::new(Vec::new()),
            version: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Registry {
    /// Adds a job about to start; its status is updated through the returned handle.
    pub fn add(&self, description: JobDescription) -> Arc<JobStatus> {
        let status = Arc::new(JobStatus {
            description,
            live: Mutex::new(Live::default()),
            version: self.version.clone(),
        });
        lock(&self.jobs).push(status.clone());
        status.changed();
        status
    }

    /// The jobs, in the order they were added.
    pub fn jobs(&self) -> Vec<Arc<JobStatus>> {
        lock(&self.jobs).clone()
    }

    /// The job named `name` (its latest run, when it was submitted again).
    pub fn job(&self, name: &str) -> Option<Arc<JobStatus>> {
        lock(&self.jobs)
            .iter()
            .rev()
            .find(|j| j.description.name == name)
            .cloned()
    }

    /// A receiver that sees the version change whenever any job changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What does not change while a job runs.
#[derive(Clone, Debug, Serialize)]
pub struct JobDescription {
    /// The job's name (unique in the process).
    pub name: String,
    /// The tenant its usage is billed to.
    pub tenant: String,
    /// Batch interval in ms.
    pub batch_interval_ms: u64,
    /// `processing-time` or `available-now`.
    pub trigger: String,
    /// Source names, in plan order (the index of a batch's per-source figures).
    pub sources: Vec<String>,
    /// When the job started (ms since the epoch).
    pub started_ms: u64,
    /// Each source's `type`, in plan order.
    pub source_types: Vec<String>,
    /// The plan as a graph, in plan order (a node's inputs come before it).
    pub graph: Vec<GraphNode>,
    /// The job's operators, in the order of the batches' per-operator figures.
    pub operators: Vec<OperatorDescription>,
    /// The outputs, in the order of the batches' per-output figures.
    pub outputs: Vec<String>,
}

/// A node of the plan graph.
#[derive(Clone, Debug, Serialize)]
pub struct GraphNode {
    /// Its number (the stage of errors, dead letters and task figures).
    pub id: usize,
    /// What `spate check` calls it.
    pub label: String,
    /// `source`, `narrow`, `union`, `keyed` or `global`.
    pub kind: String,
    /// The nodes it reads from.
    pub inputs: Vec<usize>,
    /// Whether it reads through a shuffle (by key) of its inputs.
    pub shuffle: bool,
    /// Partitions after its shuffle.
    pub partitions: Option<usize>,
    /// The streams it writes.
    pub streams: Vec<String>,
}

/// An operator as the operators page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct OperatorDescription {
    /// The name the pipeline gives it.
    pub name: String,
    /// Where its plugin comes from.
    pub plugin: String,
    /// blake3 of the plugin's bytes (16 hex digits).
    pub hash: String,
    /// The plugin's size.
    pub wasm_bytes: usize,
    /// The world it implements.
    pub export: String,
    /// What it says it does (escaped guest text).
    pub description: String,
    /// Its parameters.
    pub params: BTreeMap<String, String>,
    /// What it is granted.
    pub grants: String,
    /// Its limits.
    pub limits: String,
}

/// What operators consumed, per batch or summed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OperatorUsage {
    /// Calls.
    pub calls: u64,
    /// Time in Wasm, ms.
    pub wasm_ms: f64,
    /// Fuel burnt.
    pub fuel: u64,
    /// Largest linear memory of an instance, bytes.
    pub peak_memory: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls that hit a limit.
    pub limit_hits: u64,
}

impl OperatorUsage {
    fn add(&mut self, usage: &UsageReport) {
        self.calls += usage.calls;
        self.wasm_ms += ms(usage.wasm_time);
        self.fuel += usage.fuel;
        self.peak_memory = self.peak_memory.max(usage.peak_memory as u64);
        self.traps += usage.traps;
        self.limit_hits += usage.limit_hits;
    }
}

impl From<&UsageReport> for OperatorUsage {
    fn from(usage: &UsageReport) -> Self {
        let mut figures = OperatorUsage::default();
        figures.add(usage);
        figures
    }
}

/// What one plan node's tasks did over a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeTotals {
    /// Tasks run.
    pub tasks: u64,
    /// Their wall time, summed over workers, ms.
    pub busy_ms: f64,
    /// Their time inside operator calls, ms.
    pub wasm_ms: f64,
    /// Records into them.
    pub records_in: u64,
    /// Records out of them.
    pub records_out: u64,
}

/// A checkpoint written.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointRecord {
    /// The batch it follows.
    pub batch_time_ms: u64,
    /// When it was written (ms since the epoch).
    pub written_ms: u64,
    /// The file.
    pub path: String,
    /// Bytes of state it holds (before compression).
    pub state_bytes: u64,
    /// Time copying the state took (the part that holds batches up), ms.
    pub copy_ms: f64,
    /// Time compressing and writing took (on its own thread), ms.
    pub write_ms: f64,
}

/// A start that recovered from a checkpoint or the batch log.
#[derive(Clone, Debug, Serialize)]
pub struct RecoveryRecord {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// From what: the checkpoint file and its batch, or the batch log alone.
    pub from: String,
    /// Logged batches replayed.
    pub replayed_batches: usize,
    /// Their input, bytes.
    pub replayed_bytes: usize,
}

/// The batch being processed.
#[derive(Clone, Debug, Serialize)]
pub struct RunningBatch {
    /// Batch time in ms.
    pub time_ms: u64,
    /// When its processing started (ms since the epoch).
    pub started_ms: u64,
    /// Its input records.
    pub input_records: usize,
}

/// A job's state.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "state", content = "error")]
pub enum JobState {
    /// Planning, recovering or opening its outputs.
    #[default]
    Starting,
    /// Running batches.
    Running,
    /// Ended without error.
    Finished,
    /// Ended with this error.
    Failed(String),
}

#[derive(Default)]
struct Live {
    plan: String,
    source_descriptions: Vec<String>,
    state: JobState,
    ended_ms: Option<u64>,
    batches_done: u64,
    recent: VecDeque<BatchSummary>,
    tasks: VecDeque<(u64, Vec<TaskRecord>)>,
    checkpoints: VecDeque<CheckpointRecord>,
    recoveries: Vec<RecoveryRecord>,
    running: Option<RunningBatch>,
    queued: usize,
    totals: Totals,
    buffer: Option<Arc<BlockBuffer>>,
    inputs: Option<Inputs>,
    /// Each output's retries as the last batch's report counted them.
    output_retries_seen: Vec<u64>,
    /// Per source, its position after each of the last [`RATE_BATCHES`] batches (with the
    /// wall time it was read), for the rate of each part.
    position_samples: Vec<VecDeque<(u64, SourcePosition)>>,
}

impl Live {
    /// Each output's gauges now (empty until the job runs).
    fn output_readings(&self) -> Vec<OutputGaugeReading> {
        self.inputs
            .as_ref()
            .map(|inputs| inputs.outputs.iter().map(|g| g.read()).collect())
            .unwrap_or_default()
    }

    /// Reads every source's position now, keeping the last [`RATE_BATCHES`] + 1 readings.
    fn sample_positions(&mut self) {
        let Some(inputs) = &self.inputs else { return };
        let sources = inputs.gauges.len();
        self.position_samples.resize_with(sources, VecDeque::new);
        let now = now_ms();
        for (i, samples) in self.position_samples.iter_mut().enumerate() {
            if samples.len() > RATE_BATCHES {
                samples.pop_front();
            }
            samples.push_back((now, inputs.acks.position(i)));
        }
    }

    /// Each output's retries since the last call.
    fn take_output_retries(&mut self) -> Vec<u64> {
        let now: Vec<u64> = self.output_readings().iter().map(|r| r.retries).collect();
        self.output_retries_seen.resize(now.len(), 0);
        let since = now
            .iter()
            .zip(&self.output_retries_seen)
            .map(|(now, seen)| now.saturating_sub(*seen))
            .collect();
        self.output_retries_seen = now;
        since
    }
}

/// Where a running job's sources are, and how its outputs fare.
struct Inputs {
    acks: Arc<Acks>,
    gauges: Vec<Arc<SourceGauges>>,
    outputs: Vec<Arc<OutputGauges>>,
}

/// Figures summed over a whole run (the counters of `/metrics`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    /// Input records and bytes per source (plan order).
    pub source_records: Vec<u64>,
    /// Input bytes per source.
    pub source_bytes: Vec<u64>,
    /// Records reaching the outputs.
    pub output_records: u64,
    /// Their bytes (keys and values).
    pub output_bytes: u64,
    /// Operator calls, time in Wasm (ms), fuel, traps, limit hits.
    pub wasm_calls: u64,
    /// Time inside operator calls, summed over workers, in ms.
    pub wasm_ms: f64,
    /// Fuel burnt.
    pub fuel: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls that hit a limit.
    pub limit_hits: u64,
    /// Largest linear memory of any instance so far, in bytes.
    pub peak_memory: u64,
    /// Task attempts that failed and ran again.
    pub task_retries: u64,
    /// Tasks skipped (dead-lettered) after their last attempt failed.
    pub skipped_tasks: u64,
    /// Lines skipped by `on-bad-line = "skip"`.
    pub skipped_lines: u64,
    /// Event-time records later than their window.
    pub late_records: u64,
    /// Sum of processing times, in ms (with `batches_done`, the histogram's sum and count).
    pub processing_ms: f64,
    /// Processing times in the buckets of [`DELAY_BUCKETS_MS`] (cumulative counts are made
    /// when rendered).
    pub processing_buckets: Vec<u64>,
    /// Total delays in the buckets of [`DELAY_BUCKETS_MS`].
    pub total_delay_buckets: Vec<u64>,
    /// Sum of total delays, in ms.
    pub total_delay_ms: f64,
    /// Per operator (in the job's operator order).
    pub operators: Vec<OperatorUsage>,
    /// Per output: records written.
    pub output_writes: Vec<u64>,
    /// Per output: time writing, ms.
    pub output_ms: Vec<f64>,
    /// Per plan node (by its number): what its tasks did.
    pub nodes: Vec<NodeTotals>,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Time they took to copy, summed, ms.
    pub checkpoint_copy_ms: f64,
    /// Time they took to compress and write, summed, ms.
    pub checkpoint_write_ms: f64,
}

/// Upper bounds (ms) of the delay histograms' buckets.
pub const DELAY_BUCKETS_MS: [f64; 12] = [
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// One completed batch, as the UI shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BatchSummary {
    /// Batch time in ms.
    pub time_ms: u64,
    /// Input records (all sources).
    pub input_records: usize,
    /// Input bytes (all sources).
    pub input_bytes: usize,
    /// Input records per source (plan order).
    pub source_records: Vec<usize>,
    /// Input partitions.
    pub partitions: usize,
    /// Records reaching the outputs.
    pub output_records: usize,
    /// Their bytes (keys and values).
    pub output_bytes: usize,
    /// From forming the batch to the start of its processing, ms.
    pub scheduling_delay_ms: f64,
    /// Processing time (outputs included), ms.
    pub processing_time_ms: f64,
    /// Scheduling delay plus processing time, ms.
    pub total_delay_ms: f64,
    /// Operator calls.
    pub wasm_calls: u64,
    /// Time inside operator calls, ms.
    pub wasm_ms: f64,
    /// Fuel burnt.
    pub fuel: u64,
    /// Largest linear memory of an instance, bytes.
    pub peak_memory: usize,
    /// Traps.
    pub traps: u64,
    /// Limit hits.
    pub limit_hits: u64,
    /// Task retries.
    pub task_retries: u64,
    /// Tasks skipped.
    pub skipped_tasks: u64,
    /// Input records of skipped tasks (dead-lettered).
    pub dead_lettered_records: u64,
    /// Dead-letter files written.
    pub dead_letters: Vec<String>,
    /// Late records.
    pub late_records: u64,
    /// Bad lines skipped.
    pub skipped_lines: u64,
    /// Records held in state after the batch.
    pub state_records: usize,
    /// Host memory the state holds after the batch, in bytes.
    pub state_bytes: usize,
    /// A scale-out task's batch: the processes taking part in the job when it ended (null
    /// outside scale-out).
    pub processes: Option<usize>,
    /// What each operator consumed (job's operator order).
    pub operators: Vec<OperatorUsage>,
    /// Each output's write (output order; null where its stream had no batch).
    pub outputs: Vec<Option<OutputWrite>>,
    /// Each output's failed tries made again since the previous batch's report (a write
    /// finished in the background counts in the batch during which it was retried).
    pub output_retries: Vec<u64>,
}

/// A batch with its tasks, for the batch page.
#[derive(Clone, Debug, Serialize)]
pub struct BatchDetail {
    /// The batch's figures.
    #[serde(flatten)]
    pub summary: BatchSummary,
    /// Every task's figures (null once the batch is older than the last
    /// [`TASK_DETAIL_BATCHES`]).
    pub tasks: Option<Vec<TaskRecord>>,
}

/// A source as the sources page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SourceView {
    /// Its name.
    pub name: String,
    /// Its `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What `spate check` says of it (empty until known).
    pub description: String,
    /// Records read so far.
    pub records: u64,
    /// Bytes read so far.
    pub bytes: u64,
    /// The position up to which its input is safe (logged, or processed).
    pub position: SourcePosition,
    /// What its receiver knows beyond the records.
    pub gauges: GaugeReading,
    /// Per part with a known end: records between the position and the end.
    pub lag: BTreeMap<String, u64>,
    /// Per part (Kafka partition, file, `stream`), how fast its position moved over the last
    /// [`RATE_BATCHES`] batches.
    pub rates: BTreeMap<String, PartRate>,
}

/// How fast one part of a source is read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartRate {
    /// Units (below) per second.
    pub per_second: f64,
    /// What the part's position counts: `records` (Kafka offsets), `bytes` (files, a socket)
    /// or `lines` (the bundled text).
    pub unit: &'static str,
}

/// Each part's rate between two readings of a source's position; `stream_unit` is what its
/// stream offset counts.
fn part_rates(
    (from_ms, from): (u64, &SourcePosition),
    (to_ms, to): (u64, &SourcePosition),
    stream_unit: &'static str,
) -> BTreeMap<String, PartRate> {
    let seconds = to_ms.saturating_sub(from_ms) as f64 / 1000.0;
    let mut rates = BTreeMap::new();
    if seconds <= 0.0 {
        return rates;
    }
    let mut rate = |part: &str, unit, to: u64, from: Option<&u64>| {
        let per_second = to.saturating_sub(from.copied().unwrap_or(0)) as f64 / seconds;
        rates.insert(part.to_owned(), PartRate { per_second, unit });
    };
    if to.stream > 0 {
        rate("stream", stream_unit, to.stream, Some(&from.stream));
    }
    for (file, at) in &to.files {
        rate(file, "bytes", *at, from.files.get(file));
    }
    for (part, at) in &to.parts {
        rate(part, "records", *at, from.parts.get(part));
    }
    rates
}

/// An operator with what it consumed, for the operators page.
#[derive(Clone, Debug, Serialize)]
pub struct OperatorView {
    /// What does not change.
    #[serde(flatten)]
    pub description: OperatorDescription,
    /// Summed over the run.
    pub totals: OperatorUsage,
    /// Per batch, over the recent batches: (batch time, figures).
    pub recent: Vec<(u64, OperatorUsage)>,
}

/// A job's checkpoints and recoveries.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointView {
    /// Checkpoints written in this run.
    pub count: u64,
    /// The recent ones, newest last.
    pub recent: Vec<CheckpointRecord>,
    /// The recoveries this run started with.
    pub recoveries: Vec<RecoveryRecord>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl From<&BatchReport> for BatchSummary {
    fn from(r: &BatchReport) -> Self {
        BatchSummary {
            time_ms: r.time_ms,
            input_records: r.input_records,
            input_bytes: r.input_bytes,
            source_records: r.per_source.iter().map(|s| s.0).collect(),
            partitions: r.partitions,
            output_records: r.output_records,
            output_bytes: r.output_bytes,
            scheduling_delay_ms: ms(r.scheduling_delay),
            processing_time_ms: ms(r.processing_time),
            total_delay_ms: ms(r.total_delay()),
            wasm_calls: r.usage.calls,
            wasm_ms: ms(r.usage.wasm_time),
            fuel: r.usage.fuel,
            peak_memory: r.usage.peak_memory,
            traps: r.usage.traps,
            limit_hits: r.usage.limit_hits,
            task_retries: r.tasks.retries,
            skipped_tasks: r.tasks.skipped_tasks,
            dead_lettered_records: r.tasks.skipped_records,
            dead_letters: r
                .tasks
                .dead_letters
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            late_records: r.tasks.late_records,
            skipped_lines: r.skipped_lines,
            state_records: r.state_records,
            state_bytes: r.state_bytes,
            processes: r.processes,
            operators: r.per_operator.iter().map(OperatorUsage::from).collect(),
            outputs: r.outputs.clone(),
            output_retries: Vec::new(),
        }
    }
}

/// A job's status: its description and what it has done so far.
pub struct JobStatus {
    /// What does not change.
    pub description: JobDescription,
    live: Mutex<Live>,
    version: tokio::sync::watch::Sender<u64>,
}

/// A job's state and figures at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct JobSnapshot {
    /// What does not change.
    #[serde(flatten)]
    pub description: JobDescription,
    /// What `spate check` prints for the job: sources, steps, outputs (empty until known).
    pub plan: String,
    /// Its state (and error).
    #[serde(flatten)]
    pub state: JobState,
    /// When it ended, if it did (ms since the epoch).
    pub ended_ms: Option<u64>,
    /// Completed batches.
    pub batches_done: u64,
    /// Input received and not yet processed, in bytes.
    pub buffered_bytes: u64,
    /// The batch being processed.
    pub running: Option<RunningBatch>,
    /// Batches cut and waiting for the one running.
    pub queued_batches: usize,
    /// Figures over the whole run.
    pub totals: Totals,
    /// Records held in state after the latest batch (0 before the first).
    pub state_records: usize,
    /// Host memory the state holds after the latest batch, in bytes.
    pub state_bytes: usize,
    /// Each output's retries and last retried failure (output order; empty until running).
    pub output_gauges: Vec<OutputGaugeReading>,
}

impl JobStatus {
    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// What `spate check` prints for the job and for each source (found after the start: it
    /// may ask brokers).
    pub fn set_plan(&self, plan: String, sources: Vec<String>) {
        {
            let mut live = lock(&self.live);
            live.plan = plan;
            live.source_descriptions = sources;
        }
        self.changed();
    }

    /// The job runs batches now, its input held in `buffer` until processed; `acks` and
    /// `gauges` say where its sources are, `outputs` how often its outputs retried.
    pub fn running(
        &self,
        buffer: Arc<BlockBuffer>,
        acks: Arc<Acks>,
        gauges: Vec<Arc<SourceGauges>>,
        outputs: Vec<Arc<OutputGauges>>,
    ) {
        {
            let mut live = lock(&self.live);
            live.state = JobState::Running;
            live.buffer = Some(buffer);
            live.inputs = Some(Inputs {
                acks,
                gauges,
                outputs,
            });
        }
        self.changed();
    }

    /// The job recovered from a checkpoint or its batch log before starting.
    pub fn recovered(&self, recovery: RecoveryRecord) {
        lock(&self.live).recoveries.push(recovery);
        self.changed();
    }

    /// A checkpoint was written.
    pub fn checkpoint_written(&self, checkpoint: CheckpointRecord) {
        {
            let mut live = lock(&self.live);
            let live = &mut *live;
            live.totals.checkpoints += 1;
            live.totals.checkpoint_copy_ms += checkpoint.copy_ms;
            live.totals.checkpoint_write_ms += checkpoint.write_ms;
            if live.checkpoints.len() == RETAINED_CHECKPOINTS {
                live.checkpoints.pop_front();
            }
            live.checkpoints.push_back(checkpoint);
        }
        self.changed();
    }

    /// Batch `time_ms` started processing, `queued` more waiting behind it.
    pub fn batch_started(&self, time_ms: u64, input_records: usize, queued: usize) {
        {
            let mut live = lock(&self.live);
            live.running = Some(RunningBatch {
                time_ms,
                started_ms: now_ms(),
                input_records,
            });
            live.queued = queued;
        }
        self.changed();
    }

    /// The job ended, with `error` if it failed.
    pub fn ended(&self, error: Option<String>) {
        {
            let mut live = lock(&self.live);
            live.state = match error {
                Some(e) => JobState::Failed(e),
                None => JobState::Finished,
            };
            live.ended_ms = Some(now_ms());
            live.buffer = None;
            live.running = None;
            live.queued = 0;
        }
        self.changed();
    }

    /// A batch completed.
    pub fn batch_done(&self, report: &BatchReport) {
        {
            let mut live = lock(&self.live);
            let live = &mut *live;
            live.batches_done += 1;
            live.running = None;
            if live.recent.len() == RETAINED_BATCHES {
                live.recent.pop_front();
            }
            live.sample_positions();
            let mut summary = BatchSummary::from(report);
            summary.output_retries = live.take_output_retries();
            live.recent.push_back(summary);
            if live.tasks.len() == TASK_DETAIL_BATCHES {
                live.tasks.pop_front();
            }
            live.tasks
                .push_back((report.time_ms, report.tasks.tasks.clone()));
            let t = &mut live.totals;
            for task in &report.tasks.tasks {
                if t.nodes.len() <= task.node {
                    t.nodes.resize(task.node + 1, NodeTotals::default());
                }
                let node = &mut t.nodes[task.node];
                node.tasks += 1;
                node.busy_ms += task.micros as f64 / 1000.0;
                node.wasm_ms += task.wasm_micros as f64 / 1000.0;
                node.records_in += task.records_in;
                node.records_out += task.records_out;
            }
            t.operators
                .resize(report.per_operator.len(), OperatorUsage::default());
            for (total, usage) in t.operators.iter_mut().zip(&report.per_operator) {
                total.add(usage);
            }
            t.output_writes.resize(report.outputs.len(), 0);
            t.output_ms.resize(report.outputs.len(), 0.0);
            for (i, write) in report.outputs.iter().enumerate() {
                if let Some(write) = write {
                    t.output_writes[i] += write.records as u64;
                    t.output_ms[i] += write.micros as f64 / 1000.0;
                }
            }
            let sources = self.description.sources.len();
            t.source_records.resize(sources, 0);
            t.source_bytes.resize(sources, 0);
            for (i, (records, bytes)) in report.per_source.iter().enumerate().take(sources) {
                t.source_records[i] += *records as u64;
                t.source_bytes[i] += *bytes as u64;
            }
            t.output_records += report.output_records as u64;
            t.output_bytes += report.output_bytes as u64;
            t.wasm_calls += report.usage.calls;
            t.wasm_ms += ms(report.usage.wasm_time);
            t.fuel += report.usage.fuel;
            t.traps += report.usage.traps;
            t.limit_hits += report.usage.limit_hits;
            t.peak_memory = t.peak_memory.max(report.usage.peak_memory as u64);
            t.task_retries += report.tasks.retries;
            t.skipped_tasks += report.tasks.skipped_tasks;
            t.skipped_lines += report.skipped_lines;
            t.late_records += report.tasks.late_records;
            let processing = ms(report.processing_time);
            let total = ms(report.total_delay());
            t.processing_ms += processing;
            t.total_delay_ms += total;
            bucket(&mut t.processing_buckets, processing);
            bucket(&mut t.total_delay_buckets, total);
        }
        self.changed();
    }

    /// The job's state and totals now.
    pub fn snapshot(&self) -> JobSnapshot {
        let live = lock(&self.live);
        JobSnapshot {
            description: self.description.clone(),
            plan: live.plan.clone(),
            state: live.state.clone(),
            ended_ms: live.ended_ms,
            batches_done: live.batches_done,
            buffered_bytes: live
                .buffer
                .as_ref()
                .map_or(0, |b| b.buffered_bytes() as u64),
            running: live.running.clone(),
            queued_batches: live.queued,
            totals: live.totals.clone(),
            state_records: live.recent.back().map_or(0, |b| b.state_records),
            state_bytes: live.recent.back().map_or(0, |b| b.state_bytes),
            output_gauges: live.output_readings(),
        }
    }

    /// The job's totals and batches completed (what a tenant's usage sums, without copying
    /// the rest of a snapshot).
    pub fn totals(&self) -> (Totals, u64) {
        let live = lock(&self.live);
        (live.totals.clone(), live.batches_done)
    }

    /// The retained completed batches after batch time `after_ms`, oldest first.
    pub fn batches_after(&self, after_ms: u64) -> Vec<BatchSummary> {
        let live = lock(&self.live);
        let newer = live
            .recent
            .iter()
            .rev()
            .take_while(|b| b.time_ms > after_ms);
        let mut batches: Vec<BatchSummary> = newer.cloned().collect();
        batches.reverse();
        batches
    }

    /// The last `n` completed batches, oldest first.
    pub fn recent(&self, n: usize) -> Vec<BatchSummary> {
        let live = lock(&self.live);
        let skip = live.recent.len().saturating_sub(n);
        live.recent.iter().skip(skip).cloned().collect()
    }

    /// The retained batch at `time_ms`, with its tasks if they are still kept.
    pub fn batch(&self, time_ms: u64) -> Option<BatchDetail> {
        let live = lock(&self.live);
        let summary = live.recent.iter().find(|b| b.time_ms == time_ms)?.clone();
        let tasks = live
            .tasks
            .iter()
            .find(|(t, _)| *t == time_ms)
            .map(|(_, tasks)| tasks.clone());
        Some(BatchDetail { summary, tasks })
    }

    /// The sources: what they read and where they are.
    pub fn sources(&self) -> Vec<SourceView> {
        let live = lock(&self.live);
        let d = &self.description;
        d.sources
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let position = live
                    .inputs
                    .as_ref()
                    .map(|inputs| inputs.acks.position(i))
                    .unwrap_or_default();
                let gauges = live
                    .inputs
                    .as_ref()
                    .and_then(|inputs| inputs.gauges.get(i))
                    .map(|g| g.read())
                    .unwrap_or_default();
                let lag = gauges
                    .ends
                    .iter()
                    .map(|(part, end)| {
                        let at = position.parts.get(part).copied().unwrap_or(0);
                        (part.clone(), end.saturating_sub(at))
                    })
                    .collect();
                let kind = d.source_types.get(i).cloned().unwrap_or_default();
                let stream_unit = if kind == "bundled" { "lines" } else { "bytes" };
                let rates = live
                    .position_samples
                    .get(i)
                    .and_then(|samples| {
                        let (from_ms, from) = samples.front()?;
                        let to_ms = live.ended_ms.unwrap_or_else(now_ms);
                        Some(part_rates(
                            (*from_ms, from),
                            (to_ms, &position),
                            stream_unit,
                        ))
                    })
                    .unwrap_or_default();
                SourceView {
                    name: name.clone(),
                    kind,
                    description: live.source_descriptions.get(i).cloned().unwrap_or_default(),
                    records: live.totals.source_records.get(i).copied().unwrap_or(0),
                    bytes: live.totals.source_bytes.get(i).copied().unwrap_or(0),
                    position,
                    gauges,
                    lag,
                    rates,
                }
            })
            .collect()
    }

    /// The operators with what they consumed, per batch over the last `n` batches.
    pub fn operators(&self, n: usize) -> Vec<OperatorView> {
        let live = lock(&self.live);
        let skip = live.recent.len().saturating_sub(n);
        self.description
            .operators
            .iter()
            .enumerate()
            .map(|(i, description)| OperatorView {
                description: description.clone(),
                totals: live.totals.operators.get(i).cloned().unwrap_or_default(),
                recent: live
                    .recent
                    .iter()
                    .skip(skip)
                    .filter_map(|b| Some((b.time_ms, b.operators.get(i)?.clone())))
                    .collect(),
            })
            .collect()
    }

    /// The checkpoints and recoveries.
    pub fn checkpoints(&self) -> CheckpointView {
        let live = lock(&self.live);
        CheckpointView {
            count: live.totals.checkpoints,
            recent: live.checkpoints.iter().cloned().collect(),
            recoveries: live.recoveries.clone(),
        }
    }
}

/// Counts `value` in the first bucket whose bound holds it (one more, past the last bound,
/// counts the rest: Prometheus' `+Inf`).
fn bucket(buckets: &mut Vec<u64>, value: f64) {
    buckets.resize(DELAY_BUCKETS_MS.len() + 1, 0);
    let at = DELAY_BUCKETS_MS
        .iter()
        .position(|bound| value <= *bound)
        .unwrap_or(DELAY_BUCKETS_MS.len());
    buckets[at] += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_part_is_rated_by_how_far_its_position_moved() {
        let mut from = SourcePosition::default();
        from.parts.insert("t/0".into(), 100);
        from.files.insert("a.txt".into(), 10);
        let mut to = from.clone();
        to.parts.insert("t/0".into(), 300);
        to.parts.insert("t/1".into(), 50);
        to.files.insert("a.txt".into(), 1010);
        to.stream = 40;
        let rates = part_rates((1_000, &from), (3_000, &to), "bytes");
        let per_second = |part: &str| (rates[part].per_second, rates[part].unit);
        assert_eq!(per_second("t/0"), (100.0, "records"));
        assert_eq!(
            per_second("t/1"),
            (25.0, "records"),
            "a new part counts from 0"
        );
        assert_eq!(per_second("a.txt"), (500.0, "bytes"));
        assert_eq!(per_second("stream"), (20.0, "bytes"));
        assert!(part_rates((3_000, &from), (3_000, &to), "bytes").is_empty());
    }

    #[test]
    fn values_fall_in_the_first_bucket_that_holds_them() {
        let mut b = Vec::new();
        for v in [0.5, 1.0, 1.5, 20_000.0] {
            bucket(&mut b, v);
        }
        assert_eq!(b[0], 2);
        assert_eq!(b[1], 1);
        assert_eq!(b[DELAY_BUCKETS_MS.len()], 1);
    }
}
