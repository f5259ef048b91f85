//! join, the outer joins and cogroup: two keyed streams shuffled by key, then each key's
//! records of both sides paired (join) or listed (cogroup), in arrival order.

use super::grouping::{group_sides, push_list, value_at};
use super::{Family, Planned, StepPlanner};
use crate::config::{ConfigError, StepOp};
use crate::exec::{Dataflow, KeyedInput, KeyedOp, MapSide, NodeKind, ReduceOutput, ReduceTask};
use crate::record::{Shape, StreamType};
use anyhow::Result;
use spate_guest::{Column, Partition, nested};
use std::sync::Arc;

/// The join family.
pub struct Join;

impl Family for Join {
    fn ops(&self) -> &'static [StepOp] {
        &[
            StepOp::Join,
            StepOp::LeftOuterJoin,
            StepOp::RightOuterJoin,
            StepOp::FullOuterJoin,
            StepOp::Cogroup,
        ]
    }

    fn fields(&self, _op: StepOp) -> &'static [&'static str] {
        &["partitions"]
    }

    fn arity(&self, _op: StepOp) -> Option<usize> {
        Some(2)
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        let (left_key, right_key) = (step.keyed(0)?, step.keyed(1)?);
        if left_key != right_key {
            return Err(step.error(
                step.from_span(),
                "from",
                format!(
                    "{} needs keys of one type: '{}' has {left_key} keys, '{}' has \
                     {right_key} keys",
                    step.op.name(),
                    step.input_names[0],
                    step.input_names[1]
                ),
            ));
        }
        let (v, w) = (step.types[0].value.clone(), step.types[1].value.clone());
        let (op, value): (Arc<dyn KeyedOp>, Shape) = match step.op {
            StepOp::Join => (Arc::new(JoinKind::Inner), Shape::pair(v, w)),
            StepOp::LeftOuterJoin => (
                Arc::new(JoinKind::LeftOuter),
                Shape::pair(v, Shape::maybe(w)),
            ),
            StepOp::RightOuterJoin => (
                Arc::new(JoinKind::RightOuter),
                Shape::pair(Shape::maybe(v), w),
            ),
            StepOp::FullOuterJoin => (
                Arc::new(JoinKind::FullOuter),
                Shape::pair(Shape::maybe(v), Shape::maybe(w)),
            ),
            _ => (
                Arc::new(Cogroup),
                Shape::pair(Shape::list(v), Shape::list(w)),
            ),
        };
        let inputs = vec![
            KeyedInput::new(step.inputs[0], MapSide::Hash, &step.types[0]),
            KeyedInput::new(step.inputs[1], MapSide::Hash, &step.types[1]),
        ];
        Ok(Planned {
            kind: NodeKind::Keyed {
                inputs,
                partitions: step.partitions,
                op,
            },
            types: StreamType::keyed(left_key, value),
            slide_ms: step.slide,
        })
    }
}

/// Which join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JoinKind {
    /// Matches only.
    Inner,
    /// Matches, and left records without one.
    LeftOuter,
    /// Matches, and right records without one.
    RightOuter,
    /// Matches, and records of either side without one.
    FullOuter,
}

impl KeyedOp for JoinKind {
    fn reduce(&self, task: ReduceTask<'_>, buckets: &mut [Partition]) -> Result<ReduceOutput> {
        let (left, right) = buckets.split_at(task.left);
        Ok(ReduceOutput::main(join(left, right, *self)?))
    }

    fn describe(&self, _: &Dataflow) -> String {
        let name = match self {
            JoinKind::Inner => "join",
            JoinKind::LeftOuter => "left outer join",
            JoinKind::RightOuter => "right outer join",
            JoinKind::FullOuter => "full outer join",
        };
        format!("{name} by key")
    }
}

#[derive(Debug)]
struct Cogroup;

impl KeyedOp for Cogroup {
    fn reduce(&self, task: ReduceTask<'_>, buckets: &mut [Partition]) -> Result<ReduceOutput> {
        let (left, right) = buckets.split_at(task.left);
        Ok(ReduceOutput::main(cogroup(left, right)?))
    }

    fn describe(&self, _: &Dataflow) -> String {
        "cogroup by key".into()
    }
}

/// cogroup's reduce side: (key, ([left values], [right values])) per key of either side.
fn cogroup(left: &[Partition], right: &[Partition]) -> Result<Partition> {
    let (keys, groupings) = group_sides(&[left, right])?;
    let mut values = Column::with_capacity(keys.len(), 0);
    for k in 0..keys.len() {
        let out = values.begin_value();
        push_list(out, left, groupings[0].of(k));
        push_list(out, right, groupings[1].of(k));
        values.end_value();
    }
    Ok(Partition {
        keys: Some(keys),
        values,
        timestamps: Vec::new(),
    })
}

/// A join's reduce side: (key, (left, right)) per matching pair, plus the unmatched records
/// of the outer side(s) with `None` on the other.
fn join(left: &[Partition], right: &[Partition], kind: JoinKind) -> Result<Partition> {
    let (keys, groupings) = group_sides(&[left, right])?;
    let keep_left = matches!(kind, JoinKind::LeftOuter | JoinKind::FullOuter);
    let keep_right = matches!(kind, JoinKind::RightOuter | JoinKind::FullOuter);
    let mut out_keys = Column::default();
    let mut values = Column::default();
    let mut emit = |key: &[u8], l: Option<&[u8]>, r: Option<&[u8]>| {
        out_keys.push(key);
        let out = values.begin_value();
        nested::push_item(out, l);
        nested::push_item(out, r);
        values.end_value();
    };
    for k in 0..keys.len() {
        let (ls, rs) = (groupings[0].of(k), groupings[1].of(k));
        let key = keys.get(k);
        match (ls.is_empty(), rs.is_empty()) {
            (false, false) => {
                for &l in ls {
                    for &r in rs {
                        emit(key, Some(value_at(left, l)), Some(value_at(right, r)));
                    }
                }
            }
            (false, true) if keep_left => {
                for &l in ls {
                    emit(key, Some(value_at(left, l)), None);
                }
            }
            (true, false) if keep_right => {
                for &r in rs {
                    emit(key, None, Some(value_at(right, r)));
                }
            }
            _ => {}
        }
    }
    Ok(Partition {
        keys: Some(out_keys),
        values,
        timestamps: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::grouping::test_records::{keyed, rows, s};
    use super::*;

    #[test]
    fn joins_pair_every_match_and_keep_the_outer_sides() {
        let left = [keyed(&[("a", "1"), ("a", "2"), ("l", "3")])];
        let right = [keyed(&[("a", "x"), ("r", "y")])];
        let inner = rows(&join(&left, &right, JoinKind::Inner).unwrap());
        assert_eq!(
            inner,
            vec![
                ("a".into(), vec![s("1"), s("x")]),
                ("a".into(), vec![s("2"), s("x")])
            ]
        );
        let full = rows(&join(&left, &right, JoinKind::FullOuter).unwrap());
        assert!(full.contains(&("l".into(), vec![s("3"), None])));
        assert!(full.contains(&("r".into(), vec![None, s("y")])));
        assert_eq!(full.len(), 4);
        let left_outer = rows(&join(&left, &right, JoinKind::LeftOuter).unwrap());
        assert_eq!(left_outer.len(), 3);
        let right_outer = rows(&join(&left, &right, JoinKind::RightOuter).unwrap());
        assert_eq!(right_outer.len(), 3);
    }

    #[test]
    fn cogroup_lists_both_sides_per_key() {
        let out = cogroup(&[keyed(&[("a", "1")])], &[keyed(&[("b", "2"), ("a", "3")])]).unwrap();
        let value = out.values.get(0);
        let sides: Vec<_> = nested::items(value).map(|i| i.unwrap().unwrap()).collect();
        let left: Vec<_> = nested::items(sides[0])
            .map(|i| i.unwrap().unwrap())
            .collect();
        let right: Vec<_> = nested::items(sides[1])
            .map(|i| i.unwrap().unwrap())
            .collect();
        assert_eq!((left, right), (vec![&b"1"[..]], vec![&b"3"[..]]));
        assert_eq!(out.len(), 2);
    }
}
