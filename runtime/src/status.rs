//! What the process's jobs are doing, for the web UI, its JSON API and `/metrics`: each job's
//! description, state and recent batches, kept as the runner reports them. Readers take
//! snapshots; a version number that grows with every change lets live pages wait for news.

use crate::batch::BlockBuffer;
use crate::metrics::BatchReport;
use crate::wallclock::now_ms;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Completed batches kept per job for the UI (Spark keeps 1000 as well:
/// `spark.streaming.ui.retainedBatches`).
pub const RETAINED_BATCHES: usize = 1000;

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

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<Arc<JobStatus>> {
        lock(&self.jobs)
            .iter()
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
    state: JobState,
    ended_ms: Option<u64>,
    batches_done: u64,
    recent: VecDeque<BatchSummary>,
    totals: Totals,
    buffer: Option<Arc<BlockBuffer>>,
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
}

/// Upper bounds (ms) of the delay histograms' buckets.
pub const DELAY_BUCKETS_MS: [f64; 12] = [
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// One completed batch, as the UI shows it.
#[derive(Clone, Debug, Serialize)]
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
    /// Figures over the whole run.
    pub totals: Totals,
}

impl JobStatus {
    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// What `spate check` prints for the job (found after the start: it may ask brokers).
    pub fn set_plan(&self, plan: String) {
        lock(&self.live).plan = plan;
        self.changed();
    }

    /// The job runs batches now, its input held in `buffer` until processed.
    pub fn running(&self, buffer: Arc<BlockBuffer>) {
        {
            let mut live = lock(&self.live);
            live.state = JobState::Running;
            live.buffer = Some(buffer);
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
        }
        self.changed();
    }

    /// A batch completed.
    pub fn batch_done(&self, report: &BatchReport) {
        {
            let mut live = lock(&self.live);
            let live = &mut *live;
            live.batches_done += 1;
            if live.recent.len() == RETAINED_BATCHES {
                live.recent.pop_front();
            }
            live.recent.push_back(BatchSummary::from(report));
            let t = &mut live.totals;
            let sources = self.description.sources.len();
            t.source_records.resize(sources, 0);
            t.source_bytes.resize(sources, 0);
            for (i, (records, bytes)) in report.per_source.iter().enumerate().take(sources) {
                t.source_records[i] += *records as u64;
                t.source_bytes[i] += *bytes as u64;
            }
            t.output_records += report.output_records as u64;
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
            totals: live.totals.clone(),
        }
    }

    /// The last `n` completed batches, oldest first.
    pub fn recent(&self, n: usize) -> Vec<BatchSummary> {
        let live = lock(&self.live);
        let skip = live.recent.len().saturating_sub(n);
        live.recent.iter().skip(skip).cloned().collect()
    }

    /// The retained batch at `time_ms`.
    pub fn batch(&self, time_ms: u64) -> Option<BatchSummary> {
        lock(&self.live)
            .recent
            .iter()
            .find(|b| b.time_ms == time_ms)
            .cloned()
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
