//! count-by-value and count-by-value-and-window: how often each distinct value (or (key, value)
//! pair) occurs, counted on the map side and summed per shuffle partition by the host, in a
//! batch or over a window (incrementally, with the host's subtraction as the inverse).

use super::keyed_window::WindowReduce;
use super::reduce_by_key::CombinePerKey;
use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp};
use crate::exec::{Combine, KeyedInput, KeyedOp, MapSide, NodeKind};
use crate::record::{Shape, StreamType};
use std::sync::Arc;

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
        let (op, slide_ms): (Arc<dyn KeyedOp>, u64) = if step.op == StepOp::CountByValue {
            (Arc::new(CombinePerKey(Combine::SumI64)), step.slide)
        } else {
            let window = step.window()?;
            let op = WindowReduce {
                combine: Combine::SumI64,
                inverse: Some(Combine::SubI64),
                window,
            };
            (Arc::new(op), window.slide_ms)
        };
        Ok(Planned {
            kind: NodeKind::Keyed {
                inputs: vec![input],
                partitions: step.partitions,
                op,
            },
            types: StreamType::keyed(key, Shape::I64),
            slide_ms,
        })
    }
}
