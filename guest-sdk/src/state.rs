//! Keyed state operators: the function of updateStateByKey and mapWithState.

use crate::{Column, Error, Info, Params, Partition, PartitionBuilder, Value, ValueType};

/// What a state operator says about itself.
#[derive(Clone, Debug)]
pub struct StateInfo {
    /// Name, description, params; `key_type`/`value_type` describe the records it emits.
    pub info: Info,
    /// The type of the state.
    pub state_type: ValueType,
    /// The layout version of the state: keep it while a new build can read the old state's
    /// bytes, bump it when they change.
    pub schema_version: u32,
}

/// Where a key's update happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyContext {
    /// The batch time, ms since the Unix epoch.
    pub batch_time: i64,
    /// mapWithState only: the key had no data for longer than the timeout; it has no new
    /// values and its state is removed after this call, whatever `update` leaves in it.
    pub timing_out: bool,
}

/// A keyed state function.
///
/// The host calls [`StateUpdate::update`] once per key to update: a key with new values (in
/// arrival order), and for updateStateByKey every other key in state with no values; for
/// mapWithState a key that times out. `state` is `None` for a key without state; leaving it
/// `None` removes the key.
pub trait StateUpdate: Sized {
    /// The type of the new values.
    type Value: Value;
    /// The type of the state.
    type State: Value;

    /// Describes the operator.
    fn info() -> StateInfo;

    /// Builds the operator from its parameters; called once per instance.
    fn configure(params: &Params) -> Result<Self, Error>;

    /// Updates one key's state and emits any records (mapWithState's output).
    fn update(
        &mut self,
        key: &[u8],
        values: &[Self::Value],
        state: &mut Option<Self::State>,
        context: KeyContext,
        out: &mut PartitionBuilder,
    ) -> Result<(), Error>;
}

/// What `update` gets, in SDK types (the WIT `state-input`).
#[derive(Clone, Debug, Default)]
pub struct StateInput {
    /// The batch time.
    pub batch_time: i64,
    /// The keys.
    pub keys: Column,
    /// Key i's values are `values[value_starts[i]..value_starts[i + 1]]`.
    pub value_starts: Vec<u32>,
    /// The new values.
    pub values: Column,
    /// Key i's state, when `has_state[i]`.
    pub states: Column,
    /// Whether key i has a state.
    pub has_state: Vec<bool>,
    /// Whether key i is timing out.
    pub timing_out: Vec<bool>,
}

/// What `update` returns, in SDK types (the WIT `state-output`).
#[derive(Clone, Debug, Default)]
pub struct StateOutput {
    /// Key i's new state, when `keep[i]`.
    pub states: Column,
    /// Whether key i keeps a state.
    pub keep: Vec<bool>,
    /// Records emitted.
    pub emitted: Partition,
}

/// Checks parameter names against the operator's declared ones, then configures it.
pub fn configure_state<S: StateUpdate>(params: Params) -> Result<S, Error> {
    params.check_known(S::info().info.params)?;
    S::configure(&params)
}

/// Runs a state operator over the keys of one call: exactly what the exported `update` does.
pub fn run_update<S: StateUpdate>(op: &mut S, input: &StateInput) -> Result<StateOutput, Error> {
    let n = input.keys.len();
    if input.value_starts.len() != n + 1
        || input.has_state.len() != n
        || input.timing_out.len() != n
        || input.states.len() != n
    {
        return Err(Error::new(format!(
            "update got {n} keys with {} value starts, {} states, {} has-state and {} \
             timing-out flags",
            input.value_starts.len(),
            input.states.len(),
            input.has_state.len(),
            input.timing_out.len()
        )));
    }
    let mut out = PartitionBuilder::new();
    let mut states = Column::with_capacity(n, input.states.data.len());
    let mut keep = Vec::with_capacity(n);
    let mut values: Vec<S::Value> = Vec::new();
    for i in 0..n {
        let (from, to) = (
            input.value_starts[i] as usize,
            input.value_starts[i + 1] as usize,
        );
        if from > to || to > input.values.len() {
            return Err(Error::new(format!(
                "key {i}: values {from}..{to} out of range"
            )));
        }
        values.clear();
        for v in from..to {
            values.push(S::Value::decode(input.values.get(v)).map_err(|e| e.at_record(v))?);
        }
        let mut state = if input.has_state[i] {
            Some(
                S::State::decode(input.states.get(i))
                    .map_err(|e| Error::new(format!("state of key {i}: {}", e.message)))?,
            )
        } else {
            None
        };
        let context = KeyContext {
            batch_time: input.batch_time,
            timing_out: input.timing_out[i],
        };
        op.update(input.keys.get(i), &values, &mut state, context, &mut out)?;
        match &state {
            Some(s) => {
                s.encode(states.begin_value());
                states.end_value();
            }
            None => states.push(&[]),
        }
        keep.push(state.is_some());
    }
    Ok(StateOutput {
        states,
        keep,
        emitted: out.finish(),
    })
}
