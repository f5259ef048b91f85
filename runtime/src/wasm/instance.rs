//! Live operator instances (one per operator and worker) and the calls into them.

use super::bindings::{
    Batch as WitBatch, DeferredCombine, OperatorError, OperatorInfo, StateInfo, StateInput,
    StateOutput, batch_from_wit, batch_to_wit, column_from_wit, column_to_wit,
    combiner::CombinerOperator, state::StateOperator, transform::TransformOperator,
};
use super::guest_output::GuestOutput;
use super::guest_text::{DESCRIPTION_CAP, MESSAGE_CAP, NAME_CAP, PARAMS_CAP, guest_text};
use super::host::{HostState, arm_epoch, new_store};
use super::limits::{LimitExceeded, LimitKind, Limits, check_output};
use super::operator::{Info, Pre, PreparedOperator};
use super::usage::{CallUsage, Usage};
use anyhow::{Result, anyhow};
use spate_guest::{Column, Partition};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::{Store, Trap};

/// One instance of a component with its own store, reused across calls until it traps.
pub struct Instance<B> {
    store: Store<HostState>,
    bindings: B,
    output: GuestOutput,
    label: String,
    export: String,
    poisoned: bool,
    limits: Limits,
    fuel_metered: bool,
    usage: Arc<Usage>,
}

/// A transform's exports: `transform`, and `deferred-combine` when it has it.
pub struct TransformExports {
    transform: TransformOperator,
    deferred: Option<DeferredCombine>,
}

/// An instance of a transform operator.
pub type TransformInstance = Instance<TransformExports>;
/// An instance of a combiner operator.
pub type CombinerInstance = Instance<CombinerOperator>;
/// An instance of a state operator.
pub type StateInstance = Instance<StateOperator>;

/// An instance of either kind.
pub enum OperatorInstance {
    /// A transform.
    Transform(TransformInstance),
    /// A combiner.
    Combiner(CombinerInstance),
    /// A state operator.
    State(StateInstance),
}

impl<B> Instance<B> {
    fn new(
        op: &PreparedOperator,
        store: Store<HostState>,
        bindings: B,
        output: GuestOutput,
    ) -> Self {
        Instance {
            store,
            bindings,
            output,
            label: op.spec.to_string(),
            export: op.spec.kind.export_name(),
            poisoned: false,
            limits: op.spec.limits,
            fuel_metered: op.fuel_metered,
            usage: op.usage.clone(),
        }
    }

    /// Starts a new batch: the guest may log `limits.log-bytes` again.
    pub fn begin_batch(&mut self) {
        self.output.reset_budget();
    }

    /// Gives the next call its CPU deadline and fuel budget; returns the fuel given.
    fn arm(&mut self) -> u64 {
        arm(&mut self.store, &self.limits, self.fuel_metered)
    }

    /// The limit a failed call hit, if its error says it hit one.
    fn limit_hit(&self, error: &wasmtime::Error) -> Option<LimitExceeded> {
        if let Some(hit) = error.downcast_ref::<LimitExceeded>() {
            return Some(hit.clone());
        }
        match error.downcast_ref::<Trap>()? {
            Trap::Interrupt => Some(LimitExceeded {
                kind: LimitKind::CallTime,
                limit: humantime::format_duration(self.limits.call_time).to_string(),
                attempted: "run one call for longer".into(),
            }),
            Trap::OutOfFuel => Some(LimitExceeded {
                kind: LimitKind::Fuel,
                limit: self.limits.fuel.unwrap_or(u64::MAX).to_string(),
                attempted: "burn more fuel in one call".into(),
            }),
            _ => None,
        }
    }

    /// Fails the call with an output cap's error if the output breaks one.
    fn check_output(&self, function: &str, records: usize, bytes: usize) -> Result<()> {
        check_output(&self.limits, records, bytes).map_err(|hit| {
            self.usage.add_limit_hit();
            anyhow!("{} in {}#{function}: {hit}", self.label, self.export)
        })
    }

    /// True after a trap: the instance's state is undefined and it must not be called again.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Calls export `function`, turning traps and operator errors into one clear error naming the
    /// operator and export, with whatever the guest printed (a panic message, say). Output of
    /// successful calls goes to the host log.
    fn call<R>(
        &mut self,
        function: &str,
        f: impl FnOnce(&mut Store<HostState>, &B) -> wasmtime::Result<Result<R, OperatorError>>,
    ) -> Result<R> {
        if self.poisoned {
            return Err(anyhow!(
                "{}: instance was poisoned by an earlier trap",
                self.label
            ));
        }
        let fuel_given = self.arm();
        // The call runs holding one of the process's CPU permits (`cpu_share`).
        self.store.data_mut().take_cpu();
        let started = Instant::now();
        let result = f(&mut self.store, &self.bindings);
        let _ = self.store.data_mut().give_cpu();
        // Without fuel metering `get_fuel` fails, and building that error captures a backtrace
        // under RUST_BACKTRACE=1 (ten times the cost of an empty call): ask only when metered.
        let fuel_left = match self.fuel_metered {
            true => self.store.get_fuel().unwrap_or(fuel_given),
            false => fuel_given,
        };
        let mut usage = CallUsage {
            time: started.elapsed(),
            fuel: fuel_given.saturating_sub(fuel_left),
            peak_memory: self.store.data().limiter.peak_memory(),
            ..CallUsage::default()
        };
        let printed = self.output.take();
        if let Err(trap) = &result {
            usage.trapped = true;
            usage.limit_hit = self.limit_hit(trap).is_some();
        }
        self.usage.add(usage);
        match result {
            Ok(Ok(value)) => {
                if !printed.is_empty() {
                    tracing::info!(target: "spate::guest", "{}: {printed}", self.label);
                }
                Ok(value)
            }
            Ok(Err(e)) => {
                let at = e
                    .record_index
                    .map(|i| format!(" at input record {i}"))
                    .unwrap_or_default();
                Err(anyhow!(
                    "{} failed in {}#{function}{at}: {}{}",
                    self.label,
                    self.export,
                    guest_text(&e.message, MESSAGE_CAP),
                    quoted(&printed)
                ))
            }
            Err(trap) => {
                self.poisoned = true;
                tracing::debug!(
                    "{}: {}",
                    self.label,
                    guest_text(&format!("{trap:?}"), 4 * MESSAGE_CAP)
                );
                if let Some(hit) = self.limit_hit(&trap) {
                    return Err(anyhow!(
                        "{} in {}#{function}: {hit}{}",
                        self.label,
                        self.export,
                        quoted(&printed)
                    ));
                }
                let reason = trap
                    .downcast_ref::<wasmtime::Trap>()
                    .map(|t| format!("{t}{}", trap_hint(*t)))
                    .unwrap_or_else(|| {
                        guest_text(&format!("{:#}", trap.root_cause()), MESSAGE_CAP)
                    });
                Err(anyhow!(
                    "{} trapped in {}#{function}: {reason}{}",
                    self.label,
                    self.export,
                    quoted(&printed)
                ))
            }
        }
    }
}

/// Gives the store's next call (or instantiation) its deadline and fuel; returns the fuel given.
fn arm(store: &mut Store<HostState>, limits: &Limits, fuel_metered: bool) -> u64 {
    arm_epoch(store);
    store.data_mut().start_call();
    if !fuel_metered {
        return 0;
    }
    let budget = limits.fuel.unwrap_or(u64::MAX);
    // Only fails when the engine does not meter fuel, which `fuel_metered` rules out.
    let _ = store.set_fuel(budget);
    budget
}

/// What a trap most likely means, where its name alone misleads.
fn trap_hint(trap: Trap) -> &'static str {
    match trap {
        Trap::StackOverflow => " (the Wasm call stack is limited to 512 KiB: unbounded recursion?)",
        Trap::MemoryOutOfBounds => {
            " (a bad pointer, or a stack overflow in a language that keeps its stack in linear \
             memory, like Rust or C: unbounded recursion?)"
        }
        _ => "",
    }
}

/// What the guest printed (already one line: see [`GuestOutput::take`]), for an error.
fn quoted(printed: &str) -> String {
    if printed.is_empty() {
        String::new()
    } else {
        format!("; the operator printed: {printed}")
    }
}

impl TransformInstance {
    /// Runs `process` over one partition and checks the batch it returns. `input` is lent to
    /// the call, not consumed, so that a failed task can be retried or dead-lettered.
    pub fn process(&mut self, input: &mut Partition) -> Result<Partition> {
        self.call_with_input("process", input, |store, b, lent| {
            b.transform
                .spate_operator_transform()
                .call_process(store, lent)
        })
    }

    /// True when the instance exports `deferred-combine` (see [`TransformInstance::absorb`]).
    pub fn defers(&self) -> bool {
        self.bindings.deferred.is_some()
    }

    /// Runs `deferred-combine.absorb` over one partition: like `process`, but the operator may
    /// hold part of the output until [`TransformInstance::flush`]. Falls back to `process` on
    /// an operator without the export.
    pub fn absorb(&mut self, input: &mut Partition) -> Result<Partition> {
        if !self.defers() {
            return self.process(input);
        }
        self.call_with_input("absorb", input, |store, b, lent| {
            b.deferred
                .as_ref()
                .expect("checked by defers")
                .call_absorb(store, lent)
        })
    }

    /// Runs `deferred-combine.flush`: the output held since the last flush (none without the
    /// export).
    pub fn flush(&mut self) -> Result<Partition> {
        if !self.defers() {
            return Ok(Partition::default());
        }
        let output = self.call("flush", |store, b| {
            b.deferred
                .as_ref()
                .expect("checked by defers")
                .call_flush(store)
        })?;
        self.checked_output("flush", batch_from_wit(output))
    }

    /// Calls `function` with `input` lent to it (not consumed, so that a failed task can be
    /// retried or dead-lettered) and checks the batch it returns.
    fn call_with_input(
        &mut self,
        function: &str,
        input: &mut Partition,
        f: impl FnOnce(
            &mut Store<HostState>,
            &TransformExports,
            &WitBatch,
        ) -> wasmtime::Result<Result<WitBatch, OperatorError>>,
    ) -> Result<Partition> {
        let lent = batch_to_wit(std::mem::take(input));
        let result = self.call(function, |store, b| f(store, b, &lent));
        *input = batch_from_wit(lent);
        self.checked_output(function, batch_from_wit(result?))
    }

    /// `output` if it is within the output caps and well formed.
    fn checked_output(&self, function: &str, output: Partition) -> Result<Partition> {
        let bytes = output.values.data.len() + output.keys.as_ref().map_or(0, |k| k.data.len());
        self.check_output(function, output.len(), bytes)?;
        output.validate().map_err(|e| {
            anyhow!(
                "{} returned a malformed batch from {}#{function}: {e}",
                self.label,
                self.export
            )
        })?;
        Ok(output)
    }
}

impl CombinerInstance {
    /// Runs `fold` and checks that one accumulator comes back per accumulator sent.
    pub fn fold(
        &mut self,
        accumulators: Column,
        targets: &[u32],
        values: Column,
    ) -> Result<Column> {
        let expected = accumulators.len();
        let (accumulators, values) = (column_to_wit(accumulators), column_to_wit(values));
        let folded = self.call("fold", |store, b| {
            b.spate_operator_combiner()
                .call_fold(store, &accumulators, targets, &values)
        })?;
        let folded = column_from_wit(folded);
        self.check_output("fold", folded.len(), folded.data.len())?;
        folded
            .validate()
            .map_err(|e| anyhow!("{} returned a malformed column: {e}", self.label))?;
        if folded.len() != expected {
            return Err(anyhow!(
                "{} returned {} accumulators for {expected}",
                self.label,
                folded.len()
            ));
        }
        Ok(folded)
    }
}

impl StateInstance {
    /// Runs `update` and checks that one state and one flag come back per key.
    pub fn update(&mut self, call: spate_guest::StateInput) -> Result<spate_guest::StateOutput> {
        let n = call.keys.len();
        let input = StateInput {
            batch_time: call.batch_time,
            keys: column_to_wit(call.keys),
            value_starts: call.value_starts,
            values: column_to_wit(call.values),
            states: column_to_wit(call.states),
            has_state: call.has_state,
            timing_out: call.timing_out,
        };
        let output: StateOutput = self.call("update", |store, b| {
            b.spate_operator_state().call_update(store, &input)
        })?;
        let states = column_from_wit(output.states);
        let emitted = batch_from_wit(output.emitted);
        let bytes = states.data.len()
            + emitted.values.data.len()
            + emitted.keys.as_ref().map_or(0, |k| k.data.len());
        self.check_output("update", states.len() + emitted.len(), bytes)?;
        let malformed = |e: String| {
            anyhow!(
                "{} returned a malformed result from {}#update: {e}",
                self.label,
                self.export
            )
        };
        states.validate().map_err(malformed)?;
        emitted.validate().map_err(malformed)?;
        if states.len() != n || output.keep.len() != n {
            return Err(malformed(format!(
                "{} states and {} keep flags for {n} keys",
                states.len(),
                output.keep.len()
            )));
        }
        Ok(spate_guest::StateOutput {
            states,
            keep: output.keep,
            emitted,
        })
    }
}

/// What `describe` returned, its text made safe to show (see [`guest_text`]).
fn info_from_wit(info: OperatorInfo) -> Info {
    let mut params: Vec<(String, String)> = info
        .params
        .iter()
        .take(PARAMS_CAP)
        .map(|(name, help)| {
            (
                guest_text(name, NAME_CAP),
                guest_text(help, DESCRIPTION_CAP),
            )
        })
        .collect();
    if info.params.len() > PARAMS_CAP {
        let more = info.params.len() - PARAMS_CAP;
        params.push(("...".into(), format!("{more} more parameters not shown")));
    }
    Info {
        name: guest_text(&info.name, NAME_CAP),
        description: guest_text(&info.description, DESCRIPTION_CAP),
        params,
        key_type: info.key_type.map(Into::into),
        value_type: info.value_type.map(Into::into),
        monoid: info.monoid.map(Into::into),
        state_type: None,
        schema_version: None,
    }
}

fn state_info_from_wit(info: StateInfo) -> Info {
    Info {
        state_type: Some(info.state_type.into()),
        schema_version: Some(info.schema_version),
        ..info_from_wit(info.info)
    }
}

impl OperatorInstance {
    /// A new instance of `op`, configured with its parameters.
    pub fn new(op: &PreparedOperator) -> Result<OperatorInstance> {
        let mut instance = Self::instantiate(op)?;
        let params = &op.spec.params;
        let combine = op.spec.output_combine.map(Into::into);
        match &mut instance {
            OperatorInstance::Transform(i) => i.call("configure", |store, b| {
                b.transform
                    .spate_operator_transform()
                    .call_configure(store, params, combine)
            })?,
            OperatorInstance::Combiner(i) => i.call("configure", |store, b| {
                b.spate_operator_combiner().call_configure(store, params)
            })?,
            OperatorInstance::State(i) => i.call("configure", |store, b| {
                b.spate_operator_state().call_configure(store, params)
            })?,
        }
        Ok(instance)
    }

    /// Instantiates `op` and asks it to describe itself.
    pub(super) fn describe(op: &PreparedOperator) -> Result<Info> {
        Ok(match Self::instantiate(op)? {
            OperatorInstance::Transform(mut i) => {
                info_from_wit(i.call("describe", |store, b| {
                    b.transform
                        .spate_operator_transform()
                        .call_describe(store)
                        .map(Ok)
                })?)
            }
            OperatorInstance::Combiner(mut i) => {
                info_from_wit(i.call("describe", |store, b| {
                    b.spate_operator_combiner().call_describe(store).map(Ok)
                })?)
            }
            OperatorInstance::State(mut i) => {
                state_info_from_wit(i.call("describe", |store, b| {
                    b.spate_operator_state().call_describe(store).map(Ok)
                })?)
            }
        })
    }

    fn instantiate(op: &PreparedOperator) -> Result<OperatorInstance> {
        let output = GuestOutput::new(op.spec.limits.log_bytes);
        let label = &op.spec;
        let limits = (&op.spec.grants, &op.spec.limits);
        let mut store = new_store(&op.engine, &output, limits, op.share)
            .map_err(|e| anyhow!("{label}: {e:#}"))?;
        // Instantiation runs guest code (start functions) too: same deadline and fuel.
        arm(&mut store, &op.spec.limits, op.fuel_metered);
        let failed = |e: wasmtime::Error| match e.downcast_ref::<LimitExceeded>() {
            Some(hit) => anyhow!("{label}: instantiation {hit}"),
            None => anyhow!("{label}: instantiation failed: {e:#}"),
        };
        Ok(match &op.pre {
            Pre::Transform {
                instance_pre,
                indices,
                deferred,
            } => {
                let instance = instance_pre.instantiate(&mut store).map_err(failed)?;
                let transform = indices.load(&mut store, &instance).map_err(failed)?;
                let deferred = deferred
                    .as_ref()
                    .map(|d| d.load(&mut store, &instance))
                    .transpose()
                    .map_err(failed)?;
                let exports = TransformExports {
                    transform,
                    deferred,
                };
                OperatorInstance::Transform(Instance::new(op, store, exports, output))
            }
            Pre::Combiner(pre) => {
                let bindings = pre.instantiate(&mut store).map_err(failed)?;
                OperatorInstance::Combiner(Instance::new(op, store, bindings, output))
            }
            Pre::State(pre) => {
                let bindings = pre.instantiate(&mut store).map_err(failed)?;
                OperatorInstance::State(Instance::new(op, store, bindings, output))
            }
        })
    }

    /// Starts a new batch: the guest may log `limits.log-bytes` again.
    pub fn begin_batch(&mut self) {
        match self {
            OperatorInstance::Transform(i) => i.begin_batch(),
            OperatorInstance::Combiner(i) => i.begin_batch(),
            OperatorInstance::State(i) => i.begin_batch(),
        }
    }

    /// True after a trap.
    pub fn is_poisoned(&self) -> bool {
        match self {
            OperatorInstance::Transform(i) => i.is_poisoned(),
            OperatorInstance::Combiner(i) => i.is_poisoned(),
            OperatorInstance::State(i) => i.is_poisoned(),
        }
    }
}
