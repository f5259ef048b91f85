//! Test operator: version 2 of the bundled `running-sum`, with another state layout: the total
//! is kept as decimal text instead of 8 bytes of i64 (state schema version 2). A checkpoint of
//! version 1 is refused for it unless migrated first (`running-sum-migrate-v2`).

use spate_guest::{
    Error, Info, KeyContext, Params, PartitionBuilder, StateInfo, StateUpdate, ValueType,
};

/// `running-sum`, version 2.
pub struct RunningSumV2;

impl StateUpdate for RunningSumV2 {
    type Value = i64;
    type State = String;

    fn info() -> StateInfo {
        StateInfo {
            info: Info {
                name: "running-sum",
                description: "running i64 total per key, kept as decimal text (schema version 2)",
                params: &[],
                key_type: None,
                value_type: Some(ValueType::I64),
                monoid: None,
            },
            state_type: ValueType::Text,
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
        state: &mut Option<String>,
        context: KeyContext,
        out: &mut PartitionBuilder,
    ) -> Result<(), Error> {
        if context.timing_out || values.is_empty() {
            return Ok(());
        }
        let before = match state.as_deref() {
            None => 0,
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| Error::new(format!("state {text:?} is not a decimal total")))?,
        };
        let total = before + values.iter().sum::<i64>();
        *state = Some(total.to_string());
        out.emit(key, &total);
        Ok(())
    }
}

spate_guest::export_state!(RunningSumV2);
