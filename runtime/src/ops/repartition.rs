//! repartition: the records dealt out evenly over `partitions` partitions.

use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp};
use crate::exec::{Dataflow, KeyedInput, KeyedOp, MapSide, NodeKind, ReduceOutput, ReduceTask};
use anyhow::Result;
use spate_guest::Partition;
use std::sync::Arc;

/// The repartition family.
pub struct Repartition;

impl Family for Repartition {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::Repartition]
    }

    fn fields(&self, _op: StepOp) -> &'static [&'static str] {
        &["partitions"]
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        if step.step.partitions.is_none() {
            return Err(step.error(
                step.op_span(),
                "partitions",
                "repartition needs `partitions`",
            ));
        }
        let input = KeyedInput::new(step.inputs[0], MapSide::Deal, &step.types[0]);
        Ok(Planned {
            kind: NodeKind::Keyed {
                inputs: vec![input],
                partitions: step.partitions,
                op: Arc::new(Pass),
            },
            types: step.types[0].clone(),
            slide_ms: step.slide,
        })
    }
}

/// The records of a shuffle partition as they are.
#[derive(Debug)]
struct Pass;

impl KeyedOp for Pass {
    fn reduce(&self, _: ReduceTask<'_>, buckets: &mut [Partition]) -> Result<ReduceOutput> {
        let mut all = Partition::default();
        for bucket in buckets.iter() {
            all.extend_from(bucket);
        }
        Ok(ReduceOutput::main(all))
    }

    fn describe(&self, _: &Dataflow) -> String {
        "records as they are".into()
    }
}
