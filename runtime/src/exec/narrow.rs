//! Narrow steps inside one partition task: Wasm transforms, and event times read from a field.

use super::pool::Worker;
use crate::config::{StepOp, TimeUnit};
use crate::plan::{NarrowStep, Plan, TimeField};
use anyhow::{Result, anyhow, bail};
use spate_guest::Batch;

/// Runs `steps` over `input` (lent to the operators and left intact, so that a failed attempt
/// can be retried or dead-lettered). None when there are no steps: the output is the input.
pub fn apply(
    worker: &mut Worker,
    plan: &Plan,
    steps: &[NarrowStep],
    input: &mut Batch,
) -> Result<Option<Batch>> {
    apply_with(worker, plan, steps, input, false)
}

/// [`apply`], but the last step's operator may hold its combined output back until its
/// `flush` (see [`crate::wasm::TransformInstance::absorb`]): the caller flushes it after the
/// task's last partition.
pub fn apply_deferring(
    worker: &mut Worker,
    plan: &Plan,
    steps: &[NarrowStep],
    input: &mut Batch,
) -> Result<Option<Batch>> {
    apply_with(worker, plan, steps, input, true)
}

fn apply_with(
    worker: &mut Worker,
    plan: &Plan,
    steps: &[NarrowStep],
    input: &mut Batch,
    defer_last: bool,
) -> Result<Option<Batch>> {
    let mut current: Option<Batch> = None;
    for (i, step) in steps.iter().enumerate() {
        let batch = match current.as_mut() {
            Some(batch) => batch,
            None => &mut *input,
        };
        let output = match step {
            NarrowStep::Wasm { operator, .. } if defer_last && i + 1 == steps.len() => {
                // Held output is combined: no count of records out per record in holds.
                worker.transform(*operator)?.absorb(batch)?
            }
            NarrowStep::Wasm { operator, op } => {
                let records_in = batch.len();
                let output = worker.transform(*operator)?.process(batch)?;
                let spec = &plan.operators[*operator].spec;
                // Output combined per key, as the host asked, has fewer records by design: a
                // map emitting (word, 1) per line leaves one record per distinct word.
                if spec.output_combine.is_none() {
                    check_cardinality(*op, records_in, output.len())
                        .map_err(|e| anyhow!("{spec}: {e}"))?;
                }
                output
            }
            NarrowStep::AssignTimestamps(field) => with_timestamps(batch, field)?,
        };
        current = Some(output);
    }
    Ok(current)
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

/// The batch with each record's event time read from `field` of its value.
fn with_timestamps(batch: &Batch, field: &TimeField) -> Result<Batch> {
    let mut timestamps = Vec::with_capacity(batch.len());
    for (i, value) in batch.values.iter().enumerate() {
        let text = String::from_utf8_lossy(value);
        let Some(raw) = text.split(field.separator.as_str()).nth(field.field) else {
            bail!(
                "assign-timestamps: record {i} ({}) has no field {} (separator {:?})",
                preview(&text),
                field.field,
                field.separator
            );
        };
        let raw = raw.trim();
        let ms = match field.unit {
            TimeUnit::Ms => raw.parse::<i64>().ok(),
            TimeUnit::S => raw
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .map(|s| (s * 1000.0).round() as i64),
        };
        let Some(ms) = ms else {
            bail!(
                "assign-timestamps: record {i} ({}): field {} is {raw:?}, not a time in {}",
                preview(&text),
                field.field,
                match field.unit {
                    TimeUnit::Ms => "integer milliseconds",
                    TimeUnit::S => "seconds",
                }
            );
        };
        timestamps.push(ms);
    }
    Ok(Batch {
        keys: batch.keys.clone(),
        values: batch.values.clone(),
        timestamps,
    })
}

fn preview(text: &str) -> String {
    let cut: String = text.chars().take(60).collect();
    if cut.len() < text.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_come_from_the_named_field() {
        let batch = Batch::from_lines(["a,1000,x", "b, 2.5 ,y"]);
        let ms = TimeField {
            field: 1,
            separator: ",".into(),
            unit: TimeUnit::Ms,
        };
        let err = with_timestamps(&batch, &ms).unwrap_err().to_string();
        assert!(err.contains("record 1") && err.contains("\"2.5\""), "{err}");
        let s = TimeField {
            unit: TimeUnit::S,
            ..ms
        };
        assert_eq!(
            with_timestamps(&batch, &s).unwrap().timestamps,
            vec![1_000_000, 2500]
        );
        let missing = TimeField { field: 5, ..s };
        assert!(
            with_timestamps(&batch, &missing)
                .unwrap_err()
                .to_string()
                .contains("no field 5")
        );
    }

    #[test]
    fn cardinality_promises_are_checked() {
        assert!(check_cardinality(StepOp::Map, 2, 3).is_err());
        assert!(check_cardinality(StepOp::Filter, 2, 3).is_err());
        assert!(check_cardinality(StepOp::FlatMap, 2, 3).is_ok());
    }
}
