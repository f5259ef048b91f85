//! count-by-value and count-by-value-and-window: how often each distinct value (or (key, value)
//! pair) occurs, counted on the map side and summed per shuffle partition by the host, in a
//! batch or over a window (incrementally, with the host's subtraction as the inverse): the
//! reduce side is sum-by-key's.

use super::sum_by_key::sum_per_key;
use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp};
use crate::exec::{KeyedInput, MapSide};
use crate::record::Shape;

/// The count-by-value family.
pub struct CountByValue;

impl Family for CountByValue {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::CountByValue, StepOp::CountByValueAndWindow]
    }

    fn fields(&self, op: StepOp) -> &'static [&'static str] {
        match op {
            StepOp::CountByValue => &["partitions"],
            _ => &["partitions", "length", "slide"],
        }
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        let input_types = &step.types[0];
        let key = match &input_types.key {
            Some(k) => Shape::pair(k.clone(), input_types.value.clone()),
            None => input_types.value.clone(),
        };
        let input = KeyedInput::new(step.inputs[0], MapSide::CountValues, input_types);
        sum_per_key(step, step.op == StepOp::CountByValueAndWindow, input, key)
    }
}
