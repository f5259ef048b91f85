//! A chain of fused narrow steps inside one partition task, each step its family's
//! [`NarrowOp`].

use super::dataflow::{Dataflow, NarrowOp};
use super::pool::Worker;
use anyhow::Result;
use spate_guest::Partition;
use std::sync::Arc;

/// Runs `steps` over `input` (lent to the operators and left intact, so that a failed attempt
/// can be retried or dead-lettered). None when there are no steps: the output is the input.
pub fn apply(
    worker: &mut Worker,
    dataflow: &Dataflow,
    steps: &[Arc<dyn NarrowOp>],
    input: &mut Partition,
) -> Result<Option<Partition>> {
    apply_with(worker, dataflow, steps, input, false)
}

/// [`apply`], but the last step's operator may hold its combined output back until its
/// `flush` (see [`crate::wasm::TransformInstance::absorb`]): the caller flushes it after the
/// task's last partition.
pub fn apply_deferring(
    worker: &mut Worker,
    dataflow: &Dataflow,
    steps: &[Arc<dyn NarrowOp>],
    input: &mut Partition,
) -> Result<Option<Partition>> {
    apply_with(worker, dataflow, steps, input, true)
}

fn apply_with(
    worker: &mut Worker,
    dataflow: &Dataflow,
    steps: &[Arc<dyn NarrowOp>],
    input: &mut Partition,
    defer_last: bool,
) -> Result<Option<Partition>> {
    let mut current: Option<Partition> = None;
    for (i, step) in steps.iter().enumerate() {
        let batch = match current.as_mut() {
            Some(batch) => batch,
            None => &mut *input,
        };
        let defer = defer_last && i + 1 == steps.len();
        let output = step.apply(worker, dataflow, batch, defer)?;
        current = Some(output);
    }
    Ok(current)
}
