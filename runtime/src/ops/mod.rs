//! The op families: one module per family of pipeline ops (`op = "..."` in `[[steps]]`), each
//! owning everything about its ops: which step fields they take and how many streams they read
//! ([`Family`]), their planning (field values, types, the operators they load), what `spate
//! check` says of them, their execution (a [`NarrowOp`](crate::exec::NarrowOp), the reduce side
//! of a keyed node, or an op over a whole batch) and, for stateful ones, their state and its
//! checkpoint layout. [`FAMILIES`] registers each family in one line.
//!
//! Adding an op: a variant of [`StepOp`] (its name in the pipeline file), a module here, a line
//! in [`FAMILIES`].

mod assign_timestamps;
mod count;
mod count_by_value;
mod event_time;
mod group_by_key;
mod grouping;
mod join;
pub mod keyed_state;
mod keyed_window;
mod planner;
mod reduce;
mod reduce_by_key;
mod repartition;
mod sum_by_key;
mod transform;
mod union;
mod window;

pub use planner::{GraphContext, Planned, StepInputs, StepPlanner};

use crate::config::{ConfigError, StepOp};

/// A family of ops: how its steps are checked and planned.
pub trait Family: Sync {
    /// The ops it plans.
    fn ops(&self) -> &'static [StepOp];

    /// The optional step fields `op` takes (beyond name, op, from, limits and grants).
    fn fields(&self, op: StepOp) -> &'static [&'static str];

    /// How many streams `op` reads (None: two or more).
    fn arity(&self, _op: StepOp) -> Option<usize> {
        Some(1)
    }

    /// Plans a step of one of its ops: checks its fields against its inputs, loads its
    /// operators, and returns its node with the types and slide of the stream it writes.
    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError>;
}

/// Every op family.
pub const FAMILIES: &[&dyn Family] = &[
    &transform::Transform,
    &assign_timestamps::AssignTimestamps,
    &union::Union,
    &count::Count,
    &reduce::Reduce,
    &reduce_by_key::ReduceByKey,
    &count_by_value::CountByValue,
    &sum_by_key::SumByKey,
    &repartition::Repartition,
    &group_by_key::GroupByKey,
    &join::Join,
    &window::Window,
    &keyed_window::KeyedWindow,
    &keyed_state::KeyedState,
    &event_time::EventTime,
];

/// The family of `op` (every op has one: see the test below).
pub fn family(op: StepOp) -> Option<&'static dyn Family> {
    FAMILIES
        .iter()
        .find(|family| family.ops().contains(&op))
        .copied()
}

/// A window over batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window length in ms: the batches of times in (t - length, t].
    pub length_ms: u64,
    /// The window is computed at the batch times that are multiples of this.
    pub slide_ms: u64,
}

impl WindowSpec {
    /// As `spate check` shows it.
    pub fn describe(&self) -> String {
        format!("{} ms sliding every {} ms", self.length_ms, self.slide_ms)
    }

    /// As a checkpoint's layout records it.
    pub fn layout(&self) -> String {
        format!("window {} ms sliding {} ms", self.length_ms, self.slide_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_exactly_one_family() {
        use StepOp::*;
        let all = [
            Map,
            FlatMap,
            Filter,
            MapPartitions,
            ReduceByKey,
            Reduce,
            Union,
            Count,
            CountByValue,
            Repartition,
            GroupByKey,
            Join,
            LeftOuterJoin,
            RightOuterJoin,
            FullOuterJoin,
            Cogroup,
            Window,
            CountByWindow,
            ReduceByWindow,
            ReduceByKeyAndWindow,
            CountByValueAndWindow,
            SumByKey,
            SumByKeyAndWindow,
            UpdateStateByKey,
            MapWithState,
            AssignTimestamps,
            EventTimeWindow,
        ];
        for op in all {
            let families = FAMILIES.iter().filter(|f| f.ops().contains(&op)).count();
            assert_eq!(families, 1, "{}", op.name());
        }
        let planned: usize = FAMILIES.iter().map(|f| f.ops().len()).sum();
        assert_eq!(planned, all.len());
    }
}
