//! sum-by-key and sum-by-key-and-window: the i64 values of each key added up in the host (no
//! plugin), in a batch or over a window (incrementally, with the host's subtraction as the
//! inverse). Kafka Streams' `count()`/`aggregate` over counts and Flink's `keyBy().sum()`; a
//! scale-out job's count by value runs as one (docs/SCALE-OUT.md): the map tasks count, the
//! reduce tasks add the counts up. [`sum_per_key`] is the reduce side count-by-value shares.

use super::keyed_window::WindowReduce;
use super::reduce_by_key::CombinePerKey;
use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp};
use crate::exec::{Combine, KeyedInput, KeyedOp, MapSide, NodeKind};
use crate::record::{Shape, StreamType};
use std::sync::Arc;

/// The sum-by-key family.
pub struct SumByKey;

impl Family for SumByKey {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::SumByKey, StepOp::SumByKeyAndWindow]
    }

    fn fields(&self, op: StepOp) -> &'static [&'static str] {
        match op {
            StepOp::SumByKey => &["partitions"],
            _ => &["partitions", "length", "slide"],
        }
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        let key = step.keyed(0)?;
        let value = &step.types[0].value;
        if *value != Shape::I64 {
            return Err(step.error(
                step.op_span(),
                "op",
                format!(
                    "{} adds up i64 values, but stream '{}' holds {value} values",
                    step.op.name(),
                    step.input_names[0]
                ),
            ));
        }
        let input = KeyedInput::new(
            step.inputs[0],
            MapSide::Combine(Combine::SumI64),
            &step.types[0],
        );
        sum_per_key(step, step.op == StepOp::SumByKeyAndWindow, input, key)
    }
}

/// The keyed node adding up the i64 values of `input` per key (keys of type `key`): per batch,
/// or over the step's window when `windowed`.
pub(super) fn sum_per_key(
    step: &StepPlanner<'_>,
    windowed: bool,
    input: KeyedInput,
    key: Shape,
) -> Result<Planned, ConfigError> {
    let (op, slide_ms): (Arc<dyn KeyedOp>, u64) = match windowed {
        false => (Arc::new(CombinePerKey(Combine::SumI64)), step.slide),
        true => {
            let window = step.window()?;
            let op = WindowReduce {
                combine: Combine::SumI64,
                inverse: Some(Combine::SubI64),
                window,
            };
            (Arc::new(op), window.slide_ms)
        }
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
