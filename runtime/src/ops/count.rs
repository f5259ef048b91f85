//! count: the number of records of each batch, one record.

use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp};
use crate::exec::{Dataflow, GlobalOp, GlobalTask, NodeKind, single};
use crate::record::{Shape, StreamType};
use anyhow::Result;
use spate_guest::Partition;
use std::sync::Arc;

/// The count family.
pub struct Count;

impl Family for Count {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::Count]
    }

    fn fields(&self, _op: StepOp) -> &'static [&'static str] {
        &[]
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        Ok(Planned {
            kind: NodeKind::Global {
                input: step.inputs[0],
                op: Arc::new(CountRecords),
            },
            types: StreamType {
                key: None,
                value: Shape::I64,
            },
            slide_ms: step.slide,
        })
    }
}

/// The number of records of the parts.
pub fn count(parts: &[Partition]) -> i64 {
    parts.iter().map(Partition::len).sum::<usize>() as i64
}

#[derive(Debug)]
struct CountRecords;

impl GlobalOp for CountRecords {
    fn run(
        &self,
        _: &mut GlobalTask<'_, '_>,
        parts: Vec<Partition>,
    ) -> Result<Option<Vec<Partition>>> {
        Ok(Some(vec![single(&count(&parts).to_le_bytes())]))
    }

    fn describe(&self, _: &Dataflow) -> String {
        "count the records".into()
    }
}
