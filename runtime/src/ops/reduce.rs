//! reduce: every value of each batch combined into one with a Wasm combiner.

use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp};
use crate::exec::{Combine, Dataflow, GlobalOp, GlobalTask, NodeKind, single};
use crate::record::StreamType;
use anyhow::Result;
use spate_guest::Partition;
use std::sync::Arc;

/// The reduce family.
pub struct Reduce;

impl Family for Reduce {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::Reduce]
    }

    fn fields(&self, _op: StepOp) -> &'static [&'static str] {
        &["plugin", "params"]
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        let combine = step.combiner()?;
        Ok(Planned {
            kind: NodeKind::Global {
                input: step.inputs[0],
                op: Arc::new(ReduceAll(combine)),
            },
            types: StreamType {
                key: None,
                value: step.types[0].value.clone(),
            },
            slide_ms: step.slide,
        })
    }
}

#[derive(Debug)]
struct ReduceAll(Combine);

impl GlobalOp for ReduceAll {
    fn run(
        &self,
        task: &mut GlobalTask<'_, '_>,
        parts: Vec<Partition>,
    ) -> Result<Option<Vec<Partition>>> {
        let value = task.reduce_all(self.0, parts)?;
        Ok(Some(value.map(|v| vec![single(&v)]).unwrap_or_default()))
    }

    fn describe(&self, dataflow: &Dataflow) -> String {
        format!("reduce every value with {}", dataflow.combine_name(self.0))
    }

    fn combiner(&self) -> Option<usize> {
        self.0.wasm_operator()
    }
}
