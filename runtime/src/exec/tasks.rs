//! The tasks of a batch: one per partition per stage, run on the worker pool.

use super::pool::{Worker, WorkerPool};
use crate::config::StepOp;
use crate::plan::{Plan, Stage};
use crate::shuffle::{Combined, combine_by_key, partition};
use anyhow::{Context, Result, anyhow};
use spate_guest::Batch;
use std::sync::Arc;

/// What a stage task hands on.
enum TaskOutput {
    /// Partitions for the outputs.
    Final(Batch),
    /// One bucket per reduce partition of the next stage.
    Buckets(Vec<Batch>),
}

/// Runs every stage of `plan` over a batch's input partitions and returns the partitions that
/// reach the outputs. Any task's failure fails the batch, naming stage and partition.
pub fn run_batch(
    pool: &WorkerPool,
    plan: &Arc<Plan>,
    input: Vec<Batch>,
    batch_time: u64,
) -> Result<Vec<Batch>> {
    // Each task's inputs: one block in stage 0, one bucket per map task after a shuffle.
    let mut task_inputs: Vec<Vec<Batch>> = input.into_iter().map(|b| vec![b]).collect();
    for stage_index in 0..plan.stages.len() {
        let tasks: Vec<_> = task_inputs
            .into_iter()
            .map(|inputs| {
                let plan = plan.clone();
                move |worker: &mut Worker| {
                    run_task(worker, &plan, &plan.stages[stage_index], inputs)
                }
            })
            .collect();
        let mut outputs = Vec::with_capacity(tasks.len());
        for (partition, result) in pool.run_all(tasks).into_iter().enumerate() {
            outputs.push(result.with_context(|| {
                format!("batch {batch_time} ms, stage {stage_index}, partition {partition}")
            })?);
        }
        task_inputs = match &plan.stages[stage_index].output {
            None => {
                return Ok(outputs
                    .into_iter()
                    .map(|o| match o {
                        TaskOutput::Final(batch) => batch,
                        TaskOutput::Buckets(_) => unreachable!("a final stage writes no buckets"),
                    })
                    .collect());
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

fn run_task(
    worker: &mut Worker,
    plan: &Plan,
    stage: &Stage,
    inputs: Vec<Batch>,
) -> Result<TaskOutput> {
    let mut batch = match &stage.input {
        None => inputs.into_iter().next().unwrap_or_default(),
        Some(shuffle) => {
            let (combiner, scratch) = worker.combiner(shuffle.combiner)?;
            combine_by_key(scratch, &inputs, combiner)?.batch
        }
    };
    for step in &stage.narrow {
        let records_in = batch.len();
        batch = worker.transform(step.operator)?.process(batch)?;
        check_cardinality(step.op, records_in, batch.len())
            .map_err(|e| anyhow!("{}: {e}", plan.operators[step.operator].spec))?;
    }
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
