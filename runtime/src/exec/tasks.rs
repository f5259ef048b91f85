//! One task's life: it runs, a failure is retried on fresh instances, and a task that still
//! fails either fails the batch or, if the job says so, is skipped with its input dead-lettered.

use super::dataflow::Dataflow;
use super::dead_letter;
use super::pool::Worker;
use crate::config::TaskFailurePolicy;
use crate::fault::is_host_fault;
use crate::record::StreamType;
use anyhow::{Context, Result};
use spate_guest::Partition;
use std::path::PathBuf;

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
}

impl TaskFigures {
    /// Adds another task's figures.
    pub fn add(&mut self, other: TaskFigures) {
        self.retries += other.retries;
        self.skipped_tasks += other.skipped_tasks;
        self.skipped_records += other.skipped_records;
        self.dead_letters.extend(other.dead_letters);
        self.late_records += other.late_records;
    }
}

/// Where a task sits, for messages and dead-letter names.
#[derive(Clone, Copy, Debug)]
pub struct TaskId {
    /// The batch.
    pub batch_time: u64,
    /// The plan node (its stage number in `spate check`).
    pub node: usize,
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
pub fn attempt<T>(
    worker: &mut Worker,
    dataflow: &Dataflow,
    id: TaskId,
    inputs: &mut [Partition],
    types: &StreamType,
    mut task: impl FnMut(&mut Worker, &mut [Partition]) -> Result<T>,
) -> Result<(Option<T>, TaskFigures)> {
    worker.begin_batch(id.batch_time);
    let policy = &dataflow.tasks;
    let mut figures = TaskFigures::default();
    let error = loop {
        match task(worker, inputs) {
            Ok(output) => return Ok((Some(output), figures)),
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
    figures.skipped_records = inputs.iter().map(|b| b.len() as u64).sum();
    figures.dead_letters.push(path);
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
