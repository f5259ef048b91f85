//! The tasks of a batch: one per partition per stage, run on the worker pool. A failed task
//! is retried on fresh instances, then fails the batch or, if the job says so, is skipped with
//! its input dead-lettered.

use super::dead_letter;
use super::pool::{Worker, WorkerPool};
use crate::config::{StepOp, TaskFailurePolicy};
use crate::plan::{Plan, Stage};
use crate::shuffle::{Combined, combine_by_key, partition};
use anyhow::{Context, Result, anyhow};
use spate_guest::Batch;
use std::path::PathBuf;
use std::sync::Arc;

/// What a stage task hands on.
enum TaskOutput {
    /// Partitions for the outputs.
    Final(Batch),
    /// One bucket per reduce partition of the next stage.
    Buckets(Vec<Batch>),
}

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
}

/// One task's result: its output (empty when skipped) and its figures.
struct TaskResult {
    output: TaskOutput,
    figures: TaskFigures,
}

/// Where a task sits, for messages and dead-letter names.
#[derive(Clone, Copy)]
struct TaskId {
    batch_time: u64,
    stage: usize,
    partition: usize,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch {} ms, stage {}, partition {}",
            self.batch_time, self.stage, self.partition
        )
    }
}

/// Runs every stage of `plan` over a batch's input partitions and returns the partitions that
/// reach the outputs, with the batch's task figures.
pub fn run_batch(
    pool: &WorkerPool,
    plan: &Arc<Plan>,
    input: Vec<Batch>,
    batch_time: u64,
) -> Result<(Vec<Batch>, TaskFigures)> {
    let mut figures = TaskFigures::default();
    // Each task's inputs: one block in stage 0, one bucket per map task after a shuffle.
    let mut task_inputs: Vec<Vec<Batch>> = input.into_iter().map(|b| vec![b]).collect();
    for stage_index in 0..plan.stages.len() {
        let tasks: Vec<_> = task_inputs
            .into_iter()
            .enumerate()
            .map(|(partition, inputs)| {
                let plan = plan.clone();
                let id = TaskId {
                    batch_time,
                    stage: stage_index,
                    partition,
                };
                move |worker: &mut Worker| attempt_task(worker, &plan, id, inputs)
            })
            .collect();
        let mut outputs = Vec::with_capacity(tasks.len());
        for result in pool.run_all(tasks) {
            let result = result?;
            figures.retries += result.figures.retries;
            figures.skipped_tasks += result.figures.skipped_tasks;
            figures.skipped_records += result.figures.skipped_records;
            figures.dead_letters.extend(result.figures.dead_letters);
            outputs.push(result.output);
        }
        task_inputs = match &plan.stages[stage_index].output {
            None => {
                let finals = outputs.into_iter().map(|o| match o {
                    TaskOutput::Final(batch) => batch,
                    TaskOutput::Buckets(_) => unreachable!("a final stage writes no buckets"),
                });
                return Ok((finals.collect(), figures));
            }
            Some(shuffle) => {
                let mut reduce_inputs: Vec<Vec<Batch>> =
                    (0..shuffle.partitions).map(|_| Vec::new()).collect();
                for output in outputs {
                    if let TaskOutput::Buckets(buckets) = output {
                        for (r, bucket) in buckets.into_iter().enumerate() {
                            reduce_inputs[r].push(bucket);
                        }
                    }
                }
                reduce_inputs
            }
        };
    }
    Err(anyhow!("internal error: the plan has no final stage"))
}

/// Runs a task, retrying it on fresh instances, then applies the job's failure policy.
fn attempt_task(
    worker: &mut Worker,
    plan: &Plan,
    id: TaskId,
    mut inputs: Vec<Batch>,
) -> Result<TaskResult> {
    worker.begin_batch(id.batch_time);
    let stage = &plan.stages[id.stage];
    let mut figures = TaskFigures::default();
    let error = loop {
        match run_task(worker, plan, stage, &mut inputs) {
            Ok(output) => {
                return Ok(TaskResult { output, figures });
            }
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
        id.stage,
        id.partition,
        &inputs,
        &stage.input_type,
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
    let output = match &stage.output {
        None => TaskOutput::Final(Batch::default()),
        Some(shuffle) => TaskOutput::Buckets(vec![Batch::default(); shuffle.partitions]),
    };
    Ok(TaskResult { output, figures })
}

/// One attempt at a task. `inputs` are lent to the operators and left intact, so that a
/// failed attempt can be retried or dead-lettered.
fn run_task(
    worker: &mut Worker,
    plan: &Plan,
    stage: &Stage,
    inputs: &mut [Batch],
) -> Result<TaskOutput> {
    let mut current: Option<Batch> = match &stage.input {
        None => None,
        Some(shuffle) => {
            let (combiner, scratch) = worker.combiner(shuffle.combiner)?;
            Some(combine_by_key(scratch, inputs, combiner)?.batch)
        }
    };
    let mut empty = Batch::default();
    for step in &stage.narrow {
        let input = match current.as_mut() {
            Some(batch) => batch,
            None => inputs.first_mut().unwrap_or(&mut empty),
        };
        let records_in = input.len();
        let output = worker.transform(step.operator)?.process(input)?;
        check_cardinality(step.op, records_in, output.len())
            .map_err(|e| anyhow!("{}: {e}", plan.operators[step.operator].spec))?;
        current = Some(output);
    }
    // A stage without narrow steps hands its input on as it is.
    let batch = current.unwrap_or_else(|| inputs.first().cloned().unwrap_or_default());
    match &stage.output {
        None => Ok(TaskOutput::Final(batch)),
        Some(shuffle) => {
            let pre_combined = stage
                .narrow
                .last()
                .is_some_and(|step| plan.operators[step.operator].spec.output_combine.is_some());
            let combined = if pre_combined {
                // The transform was asked to combine its output per key; whatever it did, the
                // reduce side combines again, so a second map-side pass would only repeat work.
                Combined::hashed(batch)?
            } else {
                let (combiner, scratch) = worker.combiner(shuffle.combiner)?;
                combine_by_key(scratch, std::slice::from_ref(&batch), combiner)?
            };
            Ok(TaskOutput::Buckets(partition(
                &combined,
                shuffle.partitions,
            )))
        }
    }
}

/// map emits one record per input record and filter at most one: an operator breaking the
/// promise of its step is a bug worth a clear error, not a silent surprise downstream.
fn check_cardinality(op: StepOp, records_in: usize, records_out: usize) -> Result<(), String> {
    match op {
        StepOp::Map if records_out != records_in => Err(format!(
            "a map step must emit one record per input record; got {records_out} for {records_in} (use flat-map)"
        )),
        StepOp::Filter if records_out > records_in => Err(format!(
            "a filter step must not emit more records than it gets; got {records_out} for {records_in}"
        )),
        _ => Ok(()),
    }
}
