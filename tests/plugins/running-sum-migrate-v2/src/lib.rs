//! Test operator: a one-shot state migration for `spate migrate`, converting `running-sum`
//! state from schema version 1 (an i64, 8 bytes little-endian) to version 2 (decimal text).
//! A migration operator is a state operator declaring the version it produces; `spate migrate`
//! calls it once per key in state, with no values and the old state, and keeps what it returns.

use spate_guest::{
    Error, Info, KeyContext, Params, PartitionBuilder, StateInfo, StateUpdate, ValueType,
};

/// The migration.
pub struct MigrateToV2;

impl StateUpdate for MigrateToV2 {
    type Value = i64;
    type State = Vec<u8>;

    fn info() -> StateInfo {
        StateInfo {
            info: Info {
                name: "running-sum-migrate-v2",
                description: "running-sum state: i64 (version 1) to decimal text (version 2)",
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
        Ok(MigrateToV2)
    }

    fn update(
        &mut self,
        _key: &[u8],
        _values: &[i64],
        state: &mut Option<Vec<u8>>,
        _context: KeyContext,
        _out: &mut PartitionBuilder,
    ) -> Result<(), Error> {
        if let Some(old) = state.as_deref() {
            let total = i64::from_le_bytes(
                old.try_into()
                    .map_err(|_| Error::new("a version 1 state is 8 bytes"))?,
            );
            *state = Some(total.to_string().into_bytes());
        }
        Ok(())
    }
}

spate_guest::export_state!(MigrateToV2);
