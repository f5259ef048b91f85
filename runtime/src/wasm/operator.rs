//! Loading an operator: read the plugin, compile (or load from cache), check that it exports
//! the world its step needs, link it, and check its parameters once.

use super::bindings::{
    DeferredCombineIndices, PACKAGE, combiner::CombinerOperatorPre, state::StateOperatorPre,
    transform::TransformOperatorIndices,
};
use super::cache::ComponentCache;
use super::cpu_share::{self, TenantShare};
use super::engine::{EngineSettings, new_engine};
use super::host::{Grants, HostState, new_linker};
use super::instance::OperatorInstance;
use super::limits::{LimitExceeded, LimitKind, Limits, bytes};
use super::usage::Usage;
use crate::bundled;
use anyhow::{Context, Result, anyhow, bail};
use spate_guest::ValueType;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

/// What every operator of one job shares: the engine (its own, so that one tenant's settings
/// and compiled code never mix with another's), the linker, and the job's usage counters.
pub struct OperatorHost {
    engine: Engine,
    linker: Linker<HostState>,
    fuel_metered: bool,
    usage: Arc<Usage>,
    /// The tenant's CPU share; none without epoch deadlines (calls could not hand a permit
    /// over, so they are not scheduled).
    share: Option<TenantShare>,
}

impl OperatorHost {
    /// An engine with `settings` and its linker.
    pub fn new(settings: &EngineSettings) -> Result<OperatorHost> {
        let engine = new_engine(settings)?;
        let linker = new_linker(&engine).context("setting up the Wasm linker")?;
        Ok(OperatorHost {
            engine,
            linker,
            fuel_metered: settings.fuel,
            usage: Arc::new(Usage::default()),
            share: settings
                .epoch_deadlines
                .then(|| cpu_share::shares().tenant(&settings.tenant, settings.cpu_weight)),
        })
    }

    /// The job's usage counters, which every instance adds to.
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Which world an operator must implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorKind {
    /// `transform-operator`: map, flatMap, filter, mapPartitions.
    Transform,
    /// `combiner-operator`: reduceByKey's function.
    Combiner,
    /// `state-operator`: updateStateByKey's and mapWithState's function.
    State,
}

/// Every kind, for messages about a plugin of the wrong kind.
const KINDS: [OperatorKind; 3] = [
    OperatorKind::Transform,
    OperatorKind::Combiner,
    OperatorKind::State,
];

impl OperatorKind {
    /// The interface name without version (`spate:operator/transform`).
    pub fn interface(self) -> &'static str {
        match self {
            OperatorKind::Transform => "spate:operator/transform",
            OperatorKind::Combiner => "spate:operator/combiner",
            OperatorKind::State => "spate:operator/state",
        }
    }

    /// The world's short name, as messages say it (`transform`).
    pub fn world(self) -> &'static str {
        match self {
            OperatorKind::Transform => "transform",
            OperatorKind::Combiner => "combiner",
            OperatorKind::State => "state",
        }
    }

    /// The full export name this Spate expects (`spate:operator/transform@0.1.0`).
    pub fn export_name(self) -> String {
        let version = PACKAGE.rsplit_once('@').map_or("", |(_, v)| v);
        format!("{}@{version}", self.interface())
    }
}

/// Where a plugin's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginOrigin {
    /// Built with Spate and embedded in the binary.
    Bundled(&'static str),
    /// A `.wasm` file.
    File(PathBuf),
}

impl fmt::Display for PluginOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginOrigin::Bundled(name) => write!(f, "{name} (bundled)"),
            PluginOrigin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What the plan says about one operator.
#[derive(Clone, Debug)]
pub struct OperatorSpec {
    /// Display name (`tokenize`).
    pub name: String,
    /// 0-based step index in the pipeline file.
    pub step: usize,
    /// The world required.
    pub kind: OperatorKind,
    /// The plugin.
    pub plugin: PluginOrigin,
    /// `configure` parameters.
    pub params: Vec<(String, String)>,
    /// For a transform feeding a reduce-by-key whose combiner declares a monoid: that monoid,
    /// passed to `configure` so the operator may pre-combine its output.
    pub output_combine: Option<spate_guest::Monoid>,
    /// What each instance may consume.
    pub limits: Limits,
    /// What each instance may reach.
    pub grants: Grants,
}

impl fmt::Display for OperatorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} '{}' (plugin {})",
            self.step, self.name, self.plugin
        )
    }
}

/// A linked operator, ready to instantiate on any worker.
pub struct PreparedOperator {
    /// The plan's description.
    pub spec: OperatorSpec,
    /// What the operator says about itself.
    pub info: Info,
    /// The plugin's size in bytes.
    pub wasm_bytes: usize,
    /// blake3 of the plugin's bytes (16 hex digits): checkpoints record it to notice upgrades.
    pub hash: String,
    pub(super) engine: Engine,
    pub(super) pre: Pre,
    pub(super) fuel_metered: bool,
    pub(super) usage: Arc<Usage>,
    pub(super) share: Option<TenantShare>,
}

impl PreparedOperator {
    /// What this operator's instances consumed (they add to the job's figures too).
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }
}

/// The linked, type-checked world.
pub(super) enum Pre {
    Transform {
        instance_pre: InstancePre<HostState>,
        indices: TransformOperatorIndices,
        /// The optional `deferred-combine` export, when the component has it.
        deferred: Option<DeferredCombineIndices>,
    },
    Combiner(CombinerOperatorPre<HostState>),
    State(StateOperatorPre<HostState>),
}

/// An operator's self-description, in host types.
#[derive(Clone, Debug)]
pub struct Info {
    /// Name it gives itself.
    pub name: String,
    /// One-line description.
    pub description: String,
    /// Accepted parameters as (name, help).
    pub params: Vec<(String, String)>,
    /// Type of emitted keys.
    pub key_type: Option<ValueType>,
    /// Type of emitted values.
    pub value_type: Option<ValueType>,
    /// For combiners: the well-known function it declares it computes.
    pub monoid: Option<spate_guest::Monoid>,
    /// For state operators: the type of the state.
    pub state_type: Option<ValueType>,
    /// For state operators: the version of the state's layout.
    pub schema_version: Option<u32>,
}

fn read_plugin(origin: &PluginOrigin) -> Result<Vec<u8>> {
    match origin {
        PluginOrigin::Bundled(name) => bundled::plugin(name)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| anyhow!("no bundled plugin is named '{name}'")),
        PluginOrigin::File(path) => std::fs::read(path)
            .with_context(|| format!("cannot read plugin file {}", path.display())),
    }
}

/// Refuses what is not a component before compiling it, with a message saying what it is.
/// Refuses a component whose core modules declare, from the start, a linear memory or a table
/// over the operator's limits, naming the limit (the pooling allocator would refuse it at
/// instantiation in its own words, blaming its slots). Malformed input is left to the compiler
/// to report.
fn check_declared_sizes(wasm: &[u8], limits: &Limits) -> Result<(), LimitExceeded> {
    use wasmparser::{Parser, Payload};
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else {
            return Ok(());
        };
        match payload {
            Payload::MemorySection(memories) => {
                for memory in memories.into_iter().flatten() {
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    let start = memory.initial.saturating_mul(page);
                    if start > limits.memory as u64 {
                        return Err(LimitExceeded {
                            kind: LimitKind::Memory,
                            limit: bytes(limits.memory),
                            attempted: format!(
                                "start with a linear memory of {}, as the component declares",
                                bytes(usize::try_from(start).unwrap_or(usize::MAX))
                            ),
                        });
                    }
                }
            }
            Payload::TableSection(tables) => {
                for table in tables.into_iter().flatten() {
                    if table.ty.initial > limits.table_elements as u64 {
                        return Err(LimitExceeded {
                            kind: LimitKind::TableElements,
                            limit: limits.table_elements.to_string(),
                            attempted: format!(
                                "start with a table of {} elements, as the component declares",
                                table.ty.initial
                            ),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_header(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!("not a WebAssembly file (no \\0asm header)");
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => bail!(
            "a core Wasm module, not a component: build the operator for wasm32-wasip2 (or wrap \
             it with `wasm-tools component new`)"
        ),
        _ => bail!("an unknown WebAssembly version/layer {:02x?}", &bytes[4..8]),
    }
}

/// Explains why a component lacks the expected export.
fn missing_export(engine: &Engine, component: &Component, kind: OperatorKind) -> anyhow::Error {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let expected = kind.export_name();
    if let Some(other) = exports
        .iter()
        .find(|e| e.starts_with(&format!("{}@", kind.interface())))
    {
        return anyhow!(
            "it exports {other}, built against another version of the WIT contract; this Spate \
             expects {expected}: rebuild the operator against {PACKAGE}"
        );
    }
    for other_kind in KINDS.into_iter().filter(|k| *k != kind) {
        if exports
            .iter()
            .any(|e| e.starts_with(other_kind.interface()))
        {
            return anyhow!(
                "it is a {} operator (exports {}), but this step needs one exporting {expected}",
                other_kind.world(),
                other_kind.export_name()
            );
        }
    }
    anyhow!(
        "it does not export {expected} (its exports: {})",
        if exports.is_empty() {
            "none".to_owned()
        } else {
            exports.join(", ")
        }
    )
}

impl PreparedOperator {
    /// Loads, compiles, links and checks the operator of `spec`; instantiates it once to read
    /// its description and to check its parameters, so bad parameters fail before any data flows.
    pub fn prepare(
        host: &OperatorHost,
        cache: &ComponentCache,
        spec: OperatorSpec,
    ) -> Result<PreparedOperator> {
        let (engine, linker) = (&host.engine, &host.linker);
        let context = || format!("{spec}");
        let bytes = read_plugin(&spec.plugin).with_context(context)?;
        check_header(&bytes).with_context(|| format!("{spec}: the plugin is"))?;
        check_declared_sizes(&bytes, &spec.limits).map_err(|hit| anyhow!("{spec}: {hit}"))?;
        let component = cache
            .load(engine, &bytes)
            .with_context(|| format!("{spec}: the plugin is not a valid Wasm component"))?;
        kind_export(engine, &component, spec.kind).with_context(context)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{spec}: the plugin needs imports Spate does not provide"))?;
        let pre = match spec.kind {
            OperatorKind::Transform => Pre::Transform {
                indices: TransformOperatorIndices::new(&instance_pre)?,
                deferred: DeferredCombineIndices::new(&instance_pre).ok(),
                instance_pre,
            },
            OperatorKind::Combiner => Pre::Combiner(CombinerOperatorPre::new(instance_pre)?),
            OperatorKind::State => Pre::State(StateOperatorPre::new(instance_pre)?),
        };
        let mut prepared = PreparedOperator {
            spec,
            info: Info {
                name: String::new(),
                description: String::new(),
                params: Vec::new(),
                key_type: None,
                value_type: None,
                monoid: None,
                state_type: None,
                schema_version: None,
            },
            wasm_bytes: bytes.len(),
            hash: blake3::hash(&bytes).to_hex()[..16].to_owned(),
            engine: engine.clone(),
            pre,
            fuel_metered: host.fuel_metered,
            usage: Arc::new(Usage::child_of(host.usage.clone())),
            share: host.share,
        };
        prepared.info = OperatorInstance::describe(&prepared)?;
        // Instantiating and configuring once checks the parameters now rather than mid-batch.
        OperatorInstance::new(&prepared)?;
        Ok(prepared)
    }
}

impl PreparedOperator {
    /// True for a transform exporting `deferred-combine` and asked to pre-combine its output:
    /// its instances can then hold combined output over several partitions.
    pub fn defers_combined_output(&self) -> bool {
        self.spec.output_combine.is_some()
            && matches!(
                self.pre,
                Pre::Transform {
                    deferred: Some(_),
                    ..
                }
            )
    }
}

/// Checks the component exports the interface of `kind` at this WIT version.
fn kind_export(engine: &Engine, component: &Component, kind: OperatorKind) -> Result<()> {
    match component.get_export_index(None, &*kind.export_name()) {
        Some(_) => Ok(()),
        None => Err(missing_export(engine, component, kind)),
    }
}
