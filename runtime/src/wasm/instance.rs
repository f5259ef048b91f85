//! Live operator instances (one per operator and worker) and the calls into them.

use super::bindings::{
    OperatorError, OperatorInfo, batch_from_wit, batch_to_wit, column_from_wit, column_to_wit,
    combiner::CombinerOperator, transform::TransformOperator,
};
use super::guest_output::GuestOutput;
use super::host::{HostState, new_store};
use super::operator::{Info, Pre, PreparedOperator};
use anyhow::{Result, anyhow};
use spate_guest::{Batch, Column};
use wasmtime::Store;

/// One instance of a component with its own store, reused across calls until it traps.
pub struct Instance<B> {
    store: Store<HostState>,
    bindings: B,
    output: GuestOutput,
    label: String,
    export: String,
    poisoned: bool,
}

/// An instance of a transform operator.
pub type TransformInstance = Instance<TransformOperator>;
/// An instance of a combiner operator.
pub type CombinerInstance = Instance<CombinerOperator>;

/// An instance of either kind.
pub enum OperatorInstance {
    /// A transform.
    Transform(TransformInstance),
    /// A combiner.
    Combiner(CombinerInstance),
}

impl<B> Instance<B> {
    fn new(
        store: Store<HostState>,
        bindings: B,
        output: GuestOutput,
        label: String,
        export: String,
    ) -> Self {
        Instance {
            store,
            bindings,
            output,
            label,
            export,
            poisoned: false,
        }
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
        let result = f(&mut self.store, &self.bindings);
        let printed = self.output.take();
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
                    e.message,
                    quoted(&printed)
                ))
            }
            Err(trap) => {
                self.poisoned = true;
                tracing::debug!("{}: {trap:?}", self.label);
                let reason = trap
                    .downcast_ref::<wasmtime::Trap>()
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| format!("{:#}", trap.root_cause()));
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

fn quoted(printed: &str) -> String {
    if printed.is_empty() {
        String::new()
    } else {
        format!(
            "; the operator printed: {}",
            printed.trim().replace('\n', " | ")
        )
    }
}

impl TransformInstance {
    /// Runs `process` over one partition and checks the batch it returns.
    pub fn process(&mut self, input: Batch) -> Result<Batch> {
        let input = batch_to_wit(input);
        let output = self.call("process", |store, b| {
            b.spate_operator_transform().call_process(store, &input)
        })?;
        let output = batch_from_wit(output);
        output
            .validate()
            .map_err(|e| anyhow!("{} returned a malformed batch: {e}", self.label))?;
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

fn info_from_wit(info: OperatorInfo) -> Info {
    Info {
        name: info.name,
        description: info.description,
        params: info.params,
        key_type: info.key_type.map(Into::into),
        value_type: info.value_type.map(Into::into),
        monoid: info.monoid.map(Into::into),
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
                b.spate_operator_transform()
                    .call_configure(store, params, combine)
            })?,
            OperatorInstance::Combiner(i) => i.call("configure", |store, b| {
                b.spate_operator_combiner().call_configure(store, params)
            })?,
        }
        Ok(instance)
    }

    /// Instantiates `op` and asks it to describe itself.
    pub(super) fn describe(op: &PreparedOperator) -> Result<Info> {
        let info = match Self::instantiate(op)? {
            OperatorInstance::Transform(mut i) => i.call("describe", |store, b| {
                b.spate_operator_transform().call_describe(store).map(Ok)
            })?,
            OperatorInstance::Combiner(mut i) => i.call("describe", |store, b| {
                b.spate_operator_combiner().call_describe(store).map(Ok)
            })?,
        };
        Ok(info_from_wit(info))
    }

    fn instantiate(op: &PreparedOperator) -> Result<OperatorInstance> {
        let output = GuestOutput::default();
        let mut store = new_store(&op.engine, &output);
        let label = op.spec.to_string();
        let export = op.spec.kind.export_name();
        let failed = |e: wasmtime::Error| anyhow!("{label}: instantiation failed: {e:#}");
        Ok(match &op.pre {
            Pre::Transform(pre) => {
                let bindings = pre.instantiate(&mut store).map_err(failed)?;
                OperatorInstance::Transform(Instance::new(store, bindings, output, label, export))
            }
            Pre::Combiner(pre) => {
                let bindings = pre.instantiate(&mut store).map_err(failed)?;
                OperatorInstance::Combiner(Instance::new(store, bindings, output, label, export))
            }
        })
    }

    /// True after a trap.
    pub fn is_poisoned(&self) -> bool {
        match self {
            OperatorInstance::Transform(i) => i.is_poisoned(),
            OperatorInstance::Combiner(i) => i.is_poisoned(),
        }
    }
}
