//! `running-sum`: a running total of i64 values per key, as keyed state (the stateful word
//! count: updateStateByKey's or mapWithState's `(values, state) => state + values.sum`).
//! With mapWithState it emits (key, new total) for each key with new values.

use spate_guest::{
    Error, Info, KeyContext, Params, PartitionBuilder, StateInfo, StateUpdate, ValueType,
};

/// The state operator.
pub struct RunningSum;

impl StateUpdate for RunningSum {
    type Value = i64;
    type State = i64;

    fn info() -> StateInfo {
        StateInfo {
            info: Info {
                name: "running-sum",
                description: "keeps a running i64 total per key and emits (key, total) on change",
                params: &[],
                key_type: None,
                value_type: Some(ValueType::I64),
                monoid: None,
            },
            state_type: ValueType::I64,
            schema_version: 1,
        }
    }

    fn configure(_params: &Params) -> Result<Self, Error> {
        Ok(RunningSum)
    }

    fn update(
        &mut self,
        key: &[u8],
        values: &[i64],
        state: &mut Option<i64>,
        context: KeyContext,
        out: &mut PartitionBuilder,
    ) -> Result<(), Error> {
        if context.timing_out || values.is_empty() {
            return Ok(());
        }
        let total = values
            .iter()
            .fold(state.unwrap_or(0), |acc, v| acc.wrapping_add(*v));
        *state = Some(total);
        out.emit(key, &total);
        Ok(())
    }
}

spate_guest::export_state!(RunningSum);

#[cfg(test)]
mod tests {
    use super::*;
    use spate_guest::{Column, StateInput, run_update};

    fn i64s(values: &[i64]) -> Column {
        let bytes: Vec<[u8; 8]> = values.iter().map(|v| v.to_le_bytes()).collect();
        Column::from_values(bytes.iter().map(|b| &b[..]))
    }

    #[test]
    fn totals_grow_and_timeouts_emit_nothing() {
        let input = StateInput {
            batch_time: 1000,
            keys: Column::from_values([&b"a"[..], b"b", b"c"]),
            value_starts: vec![0, 2, 3, 3],
            values: i64s(&[1, 2, 5]),
            states: i64s(&[10, 0, 7]),
            has_state: vec![true, false, true],
            timing_out: vec![false, false, true],
        };
        let out = run_update(&mut RunningSum, &input).unwrap();
        assert_eq!(out.keep, vec![true, true, true]);
        assert_eq!(out.states.get(0), 13i64.to_le_bytes());
        assert_eq!(out.states.get(1), 5i64.to_le_bytes());
        assert_eq!(out.emitted.len(), 2, "the timing-out key emits nothing");
    }
}
