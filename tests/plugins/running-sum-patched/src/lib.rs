//! Test operator: `running-sum` with changed code (totals saturate instead of wrapping) and the
//! same state schema version, as a bug-fix release would be: a checkpoint of the original
//! resumes with it.

use spate_guest::{
    Error, Info, KeyContext, Params, PartitionBuilder, StateInfo, StateUpdate, ValueType,
};

/// `running-sum`, patched.
pub struct RunningSumPatched;

impl StateUpdate for RunningSumPatched {
    type Value = i64;
    type State = i64;

    fn info() -> StateInfo {
        StateInfo {
            info: Info {
                name: "running-sum",
                description: "running-sum whose totals saturate (a test stand-in for a bug fix)",
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
        Ok(RunningSumPatched)
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
            .fold(state.unwrap_or(0), |acc, v| acc.saturating_add(*v));
        *state = Some(total);
        out.emit(key, &total);
        Ok(())
    }
}

spate_guest::export_state!(RunningSumPatched);
