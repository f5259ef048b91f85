//! One task's life: it runs, a failure is retried on fresh instances, and a task that still
//! fails either fails the batch or, if the job says so, is skipped with its input dead-lettered.

use super::dead_letter;
use super::pool::Worker;
use crate::config::TaskFailurePolicy;
use crate::plan::{Plan, StreamType};
use anyhow::{Context, Result};
use spate_guest::Batch;
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
/// directory). `task` must not change state it keeps across batches until it cannot fail any
/// more, so that a retry starts from the same state.
pub fn attempt<T>(
    worker: &mut Worker,
    plan: &Plan,
    id: TaskId,
    inputs: &mut [Batch],
    types: &StreamType,
    mut task: impl FnMut(&mut Worker, &mut [Batch]) -> Result<T>,
) -> Result<(Option<T>, TaskFigures)> {
    worker.begin_batch(id.batch_time);
    let mut figures = TaskFigures::default();
    let error = loop {
        match task(worker, inputs) {
            Ok(output) => return Ok((Some(output), figures)),
            Err(e) if figures.retries < u64::from(plan.job.task_retries) => {
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
    if plan.job.on_task_failure == TaskFailurePolicy::Fail {
        return Err(error);
    }
    let path = dead_letter::write(
        &plan.job.dead_letter_dir,
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
