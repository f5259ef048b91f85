//! assign-timestamps: each record's event time read from a field of its text, in the
//! partition's task (fused with the narrow steps around it), for event-time windows.

use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp, TimeUnit};
use crate::exec::{Dataflow, NarrowOp, NodeKind, Worker};
use anyhow::{Result, bail};
use spate_guest::Partition;
use std::sync::Arc;
use toml::Spanned;

/// The assign-timestamps family.
pub struct AssignTimestamps;

impl Family for AssignTimestamps {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::AssignTimestamps]
    }

    fn fields(&self, _op: StepOp) -> &'static [&'static str] {
        &["time-field", "separator", "time-unit"]
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        let spec = step.step;
        let field = TimeField {
            field: spec.time_field.as_ref().map_or(0, |f| *f.get_ref()),
            separator: spec
                .separator
                .as_ref()
                .map_or_else(|| ",".to_owned(), |s| s.get_ref().clone()),
            unit: spec
                .time_unit
                .as_ref()
                .map_or(TimeUnit::Ms, |u| *u.get_ref()),
        };
        if field.separator.is_empty() {
            let span = spec.separator.as_ref().map_or(0..0, Spanned::span);
            return Err(step.error(span, "separator", "must not be empty"));
        }
        Ok(Planned {
            kind: NodeKind::Narrow {
                input: step.inputs[0],
                steps: vec![Arc::new(field)],
            },
            types: step.types[0].clone(),
            slide_ms: step.slide,
        })
    }
}

/// Where an event time is in a text record.
#[derive(Clone, Debug)]
struct TimeField {
    /// 0-based field index.
    field: usize,
    /// Field separator.
    separator: String,
    /// Unit of the number.
    unit: TimeUnit,
}

impl NarrowOp for TimeField {
    fn apply(
        &self,
        _: &mut Worker,
        _: &Dataflow,
        input: &mut Partition,
        _defer: bool,
    ) -> Result<Partition> {
        with_timestamps(input, self)
    }

    fn describe(&self, _: &Dataflow) -> String {
        format!(
            "assign-timestamps: field {} (separator {:?}) in {}",
            self.field,
            self.separator,
            match self.unit {
                TimeUnit::Ms => "ms",
                TimeUnit::S => "s",
            }
        )
    }
}

/// The batch with each record's event time read from `field` of its value.
fn with_timestamps(batch: &Partition, field: &TimeField) -> Result<Partition> {
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
    Ok(Partition {
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
        let batch = Partition::from_lines(["a,1000,x", "b, 2.5 ,y"]);
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
}
