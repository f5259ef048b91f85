//! reduce-by-key: values combined per key, first on the map side (Spark's map-side combine,
//! or the transform's own pre-combine), then per shuffle partition.

use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp};
use crate::exec::{
    Combine, Dataflow, KeyedInput, KeyedOp, MapSide, NodeKind, ReduceOutput, ReduceTask,
};
use crate::shuffle::combine_by_key;
use anyhow::Result;
use spate_guest::Partition;
use std::sync::Arc;

/// The reduce-by-key family.
pub struct ReduceByKey;

impl Family for ReduceByKey {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::ReduceByKey]
    }

    fn fields(&self, _op: StepOp) -> &'static [&'static str] {
        &["plugin", "params", "partitions"]
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        step.keyed(0)?;
        let combine = step.combiner()?;
        let input = KeyedInput::new(step.inputs[0], MapSide::Combine(combine), &step.types[0]);
        Ok(Planned {
            kind: NodeKind::Keyed {
                inputs: vec![input],
                partitions: step.partitions,
                op: Arc::new(CombinePerKey(combine)),
            },
            types: step.types[0].clone(),
            slide_ms: step.slide,
        })
    }
}

/// The reduce side of reduce-by-key and count-by-value: combine per key.
#[derive(Debug)]
pub struct CombinePerKey(pub Combine);

impl KeyedOp for CombinePerKey {
    fn reduce(&self, task: ReduceTask<'_>, buckets: &mut [Partition]) -> Result<ReduceOutput> {
        let (mut folder, scratch) = task.worker.folder(self.0)?;
        let combined = combine_by_key(scratch, buckets, &mut folder)?;
        Ok(ReduceOutput::main(combined.batch))
    }

    fn describe(&self, dataflow: &Dataflow) -> String {
        format!("combine per key with {}", dataflow.combine_name(self.0))
    }

    fn operators(&self) -> Vec<(&'static str, usize)> {
        wasm_combiners(&[self.0])
    }
}

/// The Wasm ones of some combine functions, as [`KeyedOp::operators`] lists them.
pub fn wasm_combiners(combines: &[Combine]) -> Vec<(&'static str, usize)> {
    combines
        .iter()
        .filter_map(|c| Some(("combiner", c.wasm_operator()?)))
        .collect()
}
