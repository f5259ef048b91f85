//! Test operator: a running sum declaring state schema version 2, as an upgrade of the bundled
//! `running-sum` (version 1) that changed its state layout would. A real version 2 would also
//! read and write another layout; what the upgrade test needs is the declaration, which Spate
//! checks against a checkpoint before any state reaches the operator.

use spate_guest::{
    BatchBuilder, Error, Info, KeyContext, Params, StateInfo, StateUpdate, ValueType,
};

/// `running-sum`, version 2.
pub struct RunningSumV2;

impl StateUpdate for RunningSumV2 {
    type Value = i64;
    type State = i64;

    fn info() -> StateInfo {
        StateInfo {
            info: Info {
                name: "running-sum",
                description: "running-sum with state schema version 2 (a test stand-in)",
                params: &[],
                key_type: None,
                value_type: Some(ValueType::I64),
                monoid: None,
            },
            state_type: ValueType::I64,
            schema_version: 2,
        }
    }

    fn configure(_params: &Params) -> Result<Self, Error> {
        Ok(RunningSumV2)
    }

    fn update(
        &mut self,
        key: &[u8],
        values: &[i64],
        state: &mut Option<i64>,
        context: KeyContext,
        out: &mut BatchBuilder,
    ) -> Result<(), Error> {
        if !context.timing_out && !values.is_empty() {
            let total = state.unwrap_or(0) + values.iter().sum::<i64>();
            *state = Some(total);
            out.emit(key, &total);
        }
        Ok(())
    }
}

spate_guest::export_state!(RunningSumV2);
