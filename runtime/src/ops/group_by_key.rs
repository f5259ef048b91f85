//! group-by-key: each key's values of a batch, as one list, in arrival order.

use super::grouping::{group_sides, value_at};
use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp};
use crate::exec::{Dataflow, KeyedInput, KeyedOp, MapSide, NodeKind, ReduceOutput, ReduceTask};
use crate::record::{Shape, StreamType};
use anyhow::Result;
use spate_guest::{Column, Partition, nested};
use std::sync::Arc;

/// The group-by-key family.
pub struct GroupByKey;

impl Family for GroupByKey {
    fn ops(&self) -> &'static [StepOp] {
        &[StepOp::GroupByKey]
    }

    fn fields(&self, _op: StepOp) -> &'static [&'static str] {
        &["partitions"]
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        let key = step.keyed(0)?;
        let input = KeyedInput::new(step.inputs[0], MapSide::Hash, &step.types[0]);
        let value = Shape::list(step.types[0].value.clone());
        Ok(Planned {
            kind: NodeKind::Keyed {
                inputs: vec![input],
                partitions: step.partitions,
                op: Arc::new(Group),
            },
            types: StreamType::keyed(key, value),
            slide_ms: step.slide,
        })
    }
}

#[derive(Debug)]
struct Group;

impl KeyedOp for Group {
    fn reduce(&self, _: ReduceTask<'_>, buckets: &mut [Partition]) -> Result<ReduceOutput> {
        Ok(ReduceOutput::main(group_by_key(buckets)?))
    }

    fn describe(&self, _: &Dataflow) -> String {
        "group values per key".into()
    }
}

/// groupByKey's reduce side: (key, [values]) per key.
fn group_by_key(buckets: &[Partition]) -> Result<Partition> {
    let (keys, groupings) = group_sides(&[buckets])?;
    let mut values = Column::with_capacity(keys.len(), 0);
    for k in 0..keys.len() {
        let out = values.begin_value();
        for &m in groupings[0].of(k) {
            nested::push_item(out, Some(value_at(buckets, m)));
        }
        values.end_value();
    }
    Ok(Partition {
        keys: Some(keys),
        values,
        timestamps: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::grouping::test_records::{keyed, rows, s};
    use super::*;

    #[test]
    fn groups_keep_arrival_order_across_buckets() {
        let out = group_by_key(&[keyed(&[("a", "1"), ("b", "2")]), keyed(&[("a", "3")])]).unwrap();
        assert_eq!(
            rows(&out),
            vec![
                ("a".into(), vec![s("1"), s("3")]),
                ("b".into(), vec![s("2")])
            ]
        );
    }
}
