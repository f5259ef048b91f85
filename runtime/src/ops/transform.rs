//! map, flat-map, filter and map-partitions: a Wasm transform over each partition, run in the
//! partition's task (fused with the narrow steps around it, and into the map side of a shuffle
//! that reads it alone).

use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp};
use crate::exec::{Dataflow, NarrowOp, NodeKind, Worker};
use crate::record::{Shape, StreamType};
use crate::wasm::OperatorKind;
use anyhow::{Result, anyhow};
use spate_guest::Partition;
use std::sync::Arc;

/// The transform family.
pub struct Transform;

impl Family for Transform {
    fn ops(&self) -> &'static [StepOp] {
        &[
            StepOp::Map,
            StepOp::FlatMap,
            StepOp::Filter,
            StepOp::MapPartitions,
        ]
    }

    fn fields(&self, _op: StepOp) -> &'static [&'static str] {
        &["plugin", "params"]
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        let operator = step.plugin_operator(OperatorKind::Transform)?;
        let info = &step.operator(operator).info;
        let input = &step.types[0];
        let types = StreamType {
            key: info.key_type.map(Shape::from).or(input.key.clone()),
            value: info.value_type.map_or(input.value.clone(), Shape::from),
        };
        let transform = WasmTransform {
            operator,
            op: step.op,
        };
        Ok(Planned {
            kind: NodeKind::Narrow {
                input: step.inputs[0],
                steps: vec![Arc::new(transform)],
            },
            types,
            slide_ms: step.slide,
        })
    }
}

/// A Wasm transform step.
#[derive(Debug)]
struct WasmTransform {
    /// Index into [`Dataflow::operators`].
    operator: usize,
    /// Which op (fixes the allowed output cardinality).
    op: StepOp,
}

impl NarrowOp for WasmTransform {
    fn apply(
        &self,
        worker: &mut Worker,
        dataflow: &Dataflow,
        input: &mut Partition,
        defer: bool,
    ) -> Result<Partition> {
        if defer {
            // Held output is combined: no count of records out per record in holds.
            return worker.transform(self.operator)?.absorb(input);
        }
        let records_in = input.len();
        let output = worker.transform(self.operator)?.process(input)?;
        let spec = &dataflow.operators[self.operator].spec;
        // Output combined per key, as the host asked, has fewer records by design: a map
        // emitting (word, 1) per line leaves one record per distinct word.
        if spec.output_combine.is_none() {
            check_cardinality(self.op, records_in, output.len())
                .map_err(|e| anyhow!("{spec}: {e}"))?;
        }
        Ok(output)
    }

    fn transform(&self) -> Option<usize> {
        Some(self.operator)
    }

    fn describe(&self, dataflow: &Dataflow) -> String {
        format!(
            "{}: {}",
            self.op.name(),
            dataflow.operator_line(self.operator)
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cardinality_promises_are_checked() {
        assert!(check_cardinality(StepOp::Map, 2, 3).is_err());
        assert!(check_cardinality(StepOp::Filter, 2, 3).is_err());
        assert!(check_cardinality(StepOp::FlatMap, 2, 3).is_ok());
    }
}
