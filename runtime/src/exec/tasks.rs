//! One task's life: it runs, a failure is retried on fresh instances, and a task that still
//! fails either fails the batch or, if the job says so, is skipped with its input dead-lettered.

use super::dataflow::Dataflow;
use super::dataflow::ReduceOutput;
use super::dead_letter;
use super::pool::Worker;
use crate::batch::partition_bytes;
use crate::config::TaskFailurePolicy;
use crate::fault::is_host_fault;
use crate::record::StreamType;
use anyhow::{Context, Result};
use serde::Serialize;
use spate_guest::Partition;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How the tasks of a batch went, beyond their output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFigures {
    /// Task attempts that failed and were run again.
    pub retries: u64,
    /// Tasks skipped after their last attempt failed.
    pub skipped_tasks: u64,
    /// Input records of the skipped tasks (now in the dead-letter directory).
    pub skipped_records: u64,
    /// The dead-letter files written.
    pub dead_letters: Vec<PathBuf>,
    /// Event-time records that arrived after the watermark had passed their window.
    pub late_records: u64,
    /// Every task's own figures, for the UI's batch page.
    pub tasks: Vec<TaskRecord>,
}

/// One task's figures: where it ran, how long, how much went in and out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskRecord {
    /// The plan node (stage).
    pub node: usize,
    /// Its part of the node's work.
    pub phase: Phase,
    /// The (first) partition.
    pub partition: usize,
    /// Partitions the task took: 1, or a worker's whole share when an operator combines what
    /// it emits across partitions (`deferred-combine`).
    pub partitions: usize,
    /// Wall time of all its attempts, in microseconds.
    pub micros: u64,
    /// Time inside operator calls, in microseconds.
    pub wasm_micros: u64,
    /// Records in.
    pub records_in: u64,
    /// Records out.
    pub records_out: u64,
    /// Bytes in (keys and values; on a reduce side, what it read from the shuffle).
    pub bytes_in: u64,
    /// Bytes out (on a map side, what it wrote into the shuffle).
    pub bytes_out: u64,
    /// Attempts (1 unless retried).
    pub attempts: u64,
    /// Skipped after its last attempt, its input dead-lettered.
    pub skipped: bool,
}

/// Times a task: its wall time and the operator time of its thread.
pub struct TaskClock {
    started: Instant,
    wasm_before: Duration,
}

impl TaskClock {
    /// Starts timing a task on this thread.
    pub fn start() -> Self {
        TaskClock {
            started: Instant::now(),
            wasm_before: crate::wasm::thread_wasm_time(),
        }
    }

    /// The task's record, its time measured until now; `input` and `output` in records and
    /// bytes.
    pub fn record(&self, id: TaskId, partitions: usize, input: Size, output: Size) -> TaskRecord {
        TaskRecord {
            node: id.node,
            phase: id.phase,
            partition: id.partition,
            partitions,
            micros: self.started.elapsed().as_micros() as u64,
            wasm_micros: crate::wasm::thread_wasm_time()
                .saturating_sub(self.wasm_before)
                .as_micros() as u64,
            records_in: input.records,
            records_out: output.records,
            bytes_in: input.bytes,
            bytes_out: output.bytes,
            attempts: 1,
            skipped: false,
        }
    }
}

/// How much went into or out of a task.
#[derive(Clone, Copy, Debug, Default)]
pub struct Size {
    /// Records.
    pub records: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

impl Size {
    /// The size of `partitions`.
    pub fn of<'a>(partitions: impl IntoIterator<Item = &'a Partition>) -> Size {
        partitions.into_iter().fold(Size::default(), |sum, p| Size {
            records: sum.records + p.len() as u64,
            bytes: sum.bytes + partition_bytes(p) as u64,
        })
    }
}

/// What a task produced, sized.
pub trait TaskOutput {
    /// Its size.
    fn size(&self) -> Size;
}

impl TaskOutput for () {
    fn size(&self) -> Size {
        Size::default()
    }
}

impl TaskOutput for Partition {
    fn size(&self) -> Size {
        Size::of([self])
    }
}

impl TaskOutput for Vec<Partition> {
    fn size(&self) -> Size {
        Size::of(self)
    }
}

impl TaskOutput for ReduceOutput {
    fn size(&self) -> Size {
        Size::of(self.main.iter().chain(&self.side))
    }
}

/// A global reduce's partial or final value.
impl TaskOutput for Option<Vec<u8>> {
    fn size(&self) -> Size {
        Size {
            records: u64::from(self.is_some()),
            bytes: self.as_ref().map_or(0, |v| v.len() as u64),
        }
    }
}

impl TaskFigures {
    /// Adds another task's figures.
    pub fn add(&mut self, other: TaskFigures) {
        self.retries += other.retries;
        self.skipped_tasks += other.skipped_tasks;
        self.skipped_records += other.skipped_records;
        self.dead_letters.extend(other.dead_letters);
        self.late_records += other.late_records;
        self.tasks.extend(other.tasks);
    }
}

/// Which part of its node's work a task does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Narrow steps over one partition.
    Narrow,
    /// The map side of a shuffle: narrow steps, then combining and bucketing by key.
    Map,
    /// The reduce side of a shuffle: one partition's buckets through the node's op.
    Reduce,
    /// A whole-batch reduce: one partition's partial value, or the partials into the final.
    Combine,
}

/// Where a task sits, for messages and dead-letter names.
#[derive(Clone, Copy, Debug)]
pub struct TaskId {
    /// The batch.
    pub batch_time: u64,
    /// The plan node (its stage number in `spate check`).
    pub node: usize,
    /// Its part of the node's work.
    pub phase: Phase,
    /// The partition.
    pub partition: usize,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch {} ms, stage {}, partition {}",
            self.batch_time, self.node, self.partition
        )
    }
}

/// Runs `task` over `inputs`, retrying it on fresh instances, then applies the job's failure
/// policy: `Ok(None)` when the task was skipped (its input is then in the dead-letter
/// directory). A host fault ([`crate::fault`]) is neither retried nor skipped: it fails the
/// batch at once. `task` must not change state it keeps across batches until it cannot fail
/// any more, so that a retry starts from the same state.
pub fn attempt<T: TaskOutput>(
    worker: &mut Worker,
    dataflow: &Dataflow,
    id: TaskId,
    inputs: &mut [Partition],
    types: &StreamType,
    mut task: impl FnMut(&mut Worker, &mut [Partition]) -> Result<T>,
) -> Result<(Option<T>, TaskFigures)> {
    worker.begin_batch(id.batch_time);
    let clock = TaskClock::start();
    let input = Size::of(inputs.iter());
    let policy = &dataflow.tasks;
    let mut figures = TaskFigures::default();
    let error = loop {
        match task(worker, inputs) {
            Ok(output) => {
                let mut record = clock.record(id, 1, input, output.size());
                record.attempts = figures.retries + 1;
                figures.tasks.push(record);
                return Ok((Some(output), figures));
            }
            Err(e) if is_host_fault(&e) => {
                worker.discard_instances();
                return Err(e.context(id.to_string()));
            }
            Err(e) if figures.retries < u64::from(policy.retries) => {
                figures.retries += 1;
                tracing::warn!(
                    "{id}: attempt {} failed, retrying on fresh instances: {e:#}",
                    figures.retries
                );
                worker.discard_instances();
            }
            Err(e) => break e.context(id.to_string()),
        }
    };
    // Whatever the policy, the instances that failed are not reused.
    worker.discard_instances();
    if policy.on_failure == TaskFailurePolicy::Fail {
        return Err(error);
    }
    let path = dead_letter::write(
        &policy.dead_letter_dir,
        id.batch_time,
        id.node,
        id.partition,
        inputs,
        types,
        &error,
    )
    .with_context(|| format!("{id}: skipping a failed task: {error:#}"))?;
    tracing::warn!(
        "{id}: skipped after {} attempts, input written to {}: {error:#}",
        figures.retries + 1,
        path.display()
    );
    figures.skipped_tasks = 1;
    figures.skipped_records = input.records;
    figures.dead_letters.push(path);
    let mut record = clock.record(id, 1, input, Size::default());
    record.attempts = figures.retries + 1;
    record.skipped = true;
    figures.tasks.push(record);
    Ok((None, figures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{TaskPolicy, WorkerPool};
    use crate::fault::host_fault;
    use anyhow::anyhow;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs one task failing with `error` under the skip policy and 2 retries; returns its
    /// result, how many times it ran, and the dead-letter files written.
    fn fail_with(error: fn() -> anyhow::Error) -> (Result<bool>, usize, usize) {
        let dir = tempfile::tempdir().unwrap();
        let dataflow = Arc::new(Dataflow {
            operators: Vec::new(),
            streams: Vec::new(),
            nodes: Vec::new(),
            output_streams: Vec::new(),
            tasks: TaskPolicy {
                workers: 1,
                retries: 2,
                on_failure: TaskFailurePolicy::Skip,
                dead_letter_dir: dir.path().to_owned(),
            },
        });
        let pool = WorkerPool::new(1, Vec::new()).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let id = TaskId {
            batch_time: 1000,
            node: 1,
            phase: Phase::Narrow,
            partition: 0,
        };
        let task = move |worker: &mut Worker| {
            let mut inputs = [Partition::from_lines(["a record"])];
            let types = StreamType::lines();
            attempt(worker, &dataflow, id, &mut inputs, &types, |_, _| {
                counter.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(error())
            })
            .map(|(out, _)| out.is_none())
        };
        let result = pool.run_all(vec![task]).pop().unwrap();
        let letters = std::fs::read_dir(dir.path()).map_or(0, |d| d.count());
        (result, runs.load(Ordering::SeqCst), letters)
    }

    #[test]
    fn guest_faults_are_retried_then_dead_lettered() {
        let (result, runs, letters) = fail_with(|| anyhow!("the operator trapped"));
        assert!(result.unwrap(), "skipped");
        assert_eq!(runs, 3);
        assert!(letters > 0);
    }

    #[test]
    fn host_faults_stop_the_batch_at_once_and_keep_the_data() {
        let (result, runs, letters) = fail_with(|| host_fault("a node runs without its state"));
        let error = format!("{:#}", result.unwrap_err());
        assert!(
            error.contains("batch 1000 ms, stage 1, partition 0")
                && error.contains("internal error: a node runs without its state"),
            "{error}"
        );
        assert_eq!((runs, letters), (1, 0));
    }
}
