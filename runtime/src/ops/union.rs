//! union: the partitions of several streams of one type, as one stream.

use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp};
use crate::exec::NodeKind;

/// The union family.
pub struct Union;

impl Family for Union {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::Union]
    }

    fn fields(&self, _op: StepOp) -> &'static [&'static str] {
        &[]
    }

    fn arity(&self, _op: StepOp) -> Option<usize> {
        None
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        let types = &step.types;
        if step.inputs.len() < 2 {
            return Err(step.error(step.from_span(), "from", "union needs at least two streams"));
        }
        if let Some(k) = (1..types.len()).find(|&k| types[k] != types[0]) {
            return Err(step.error(
                step.from_span(),
                "from",
                format!(
                    "union needs streams of one type: '{}' holds {}, '{}' holds {}",
                    step.input_names[0], types[0], step.input_names[k], types[k]
                ),
            ));
        }
        Ok(Planned {
            kind: NodeKind::Union(step.inputs.clone()),
            types: types[0].clone(),
            slide_ms: step.slide,
        })
    }
}
