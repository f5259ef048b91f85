//! What a family's planning works with: one step of the pipeline file, the streams it reads,
//! and the checks and operator loading that several families share. Errors name the step's
//! field and line.

use crate::config::{ConfigError, Interval, Pipeline, StepOp, StepSpec};
use crate::exec::{Combine, NodeKind, StreamId};
use crate::ops::WindowSpec;
use crate::record::{Shape, StreamType, type_name};
use crate::wasm::{
    ComponentCache, OperatorHost, OperatorKind, OperatorSpec, PluginOrigin, PreparedOperator,
};
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

/// A planned step: its node, and the stream it writes.
pub struct Planned {
    /// What the node computes.
    pub kind: NodeKind,
    /// The types of the stream it writes.
    pub types: StreamType,
    /// The stream's slide (ms): it has a batch at the batch times that are multiples of it.
    pub slide_ms: u64,
}

/// One step being planned.
pub struct StepPlanner<'a> {
    pipeline: &'a Pipeline,
    host: &'a OperatorHost,
    cache: &'a ComponentCache,
    operators: &'a mut Vec<PreparedOperator>,
    /// The step's index in `[[steps]]`.
    pub index: usize,
    /// The step as written.
    pub step: &'a StepSpec,
    /// Its op.
    pub op: StepOp,
    /// The streams it reads.
    pub inputs: Vec<StreamId>,
    /// Their types.
    pub types: Vec<StreamType>,
    /// Their names.
    pub input_names: Vec<String>,
    /// The slide the inputs share (ms).
    pub slide: u64,
    /// Its `partitions` (default: the worker count).
    pub partitions: usize,
    /// The job's batch interval (ms).
    pub batch_ms: u64,
    /// Side streams it writes besides its main one (name, types): map-with-state's snapshots,
    /// event-time-window's late records.
    pub side_outputs: Vec<(String, StreamType)>,
}

/// Where a step planner gets what is shared by the whole graph.
pub struct GraphContext<'a> {
    /// The pipeline file.
    pub pipeline: &'a Pipeline,
    /// Loads and links operators.
    pub host: &'a OperatorHost,
    /// The compiled-component cache.
    pub cache: &'a ComponentCache,
    /// The operators loaded so far; a step's are appended.
    pub operators: &'a mut Vec<PreparedOperator>,
    /// The job's batch interval (ms).
    pub batch_ms: u64,
}

/// The streams a step reads.
pub struct StepInputs {
    /// Their ids.
    pub ids: Vec<StreamId>,
    /// Their types.
    pub types: Vec<StreamType>,
    /// Their names.
    pub names: Vec<String>,
    /// The slide they share (ms).
    pub slide: u64,
}

impl<'a> StepPlanner<'a> {
    /// Step `index` of `graph`'s pipeline over `inputs`, with `partitions` shuffle partitions.
    pub fn new(
        graph: GraphContext<'a>,
        index: usize,
        step: &'a StepSpec,
        inputs: StepInputs,
        partitions: usize,
    ) -> Self {
        StepPlanner {
            pipeline: graph.pipeline,
            host: graph.host,
            cache: graph.cache,
            operators: graph.operators,
            index,
            step,
            op: *step.op.get_ref(),
            inputs: inputs.ids,
            types: inputs.types,
            input_names: inputs.names,
            slide: inputs.slide,
            partitions,
            batch_ms: graph.batch_ms,
            side_outputs: Vec::new(),
        }
    }

    /// `steps[i].<field>`.
    pub fn at(&self, field: &str) -> String {
        format!("steps[{}].{field}", self.index)
    }

    /// An error about `field` at `span`.
    pub fn error(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.pipeline.error_at(span, &self.at(field), message)
    }

    /// The span of the step's `op`.
    pub fn op_span(&self) -> Range<usize> {
        self.step.op.span()
    }

    /// The span of `from` (or of `op` without it), for errors about the inputs.
    pub fn from_span(&self) -> Range<usize> {
        self.step
            .from
            .as_ref()
            .map_or(self.op_span(), Spanned::span)
    }

    /// The directory relative paths are resolved against.
    pub fn base_dir(&self) -> &std::path::Path {
        self.pipeline.base_dir()
    }

    /// An operator loaded for this graph.
    pub fn operator(&self, operator: usize) -> &PreparedOperator {
        &self.operators[operator]
    }

    /// The key shape of input `k`, which must be keyed.
    pub fn keyed(&self, k: usize) -> Result<Shape, ConfigError> {
        self.types[k].key.clone().ok_or_else(|| {
            self.error(
                self.op_span(),
                "op",
                format!(
                    "{} needs (key, value) records, but stream '{}' holds unkeyed records",
                    self.op.name(),
                    self.input_names[k]
                ),
            )
        })
    }

    /// A duration field the op cannot do without, in ms, not zero.
    pub fn required_interval(
        &self,
        field: &Option<Spanned<Interval>>,
        name: &str,
    ) -> Result<u64, ConfigError> {
        let value = field
            .as_ref()
            .ok_or_else(|| {
                self.error(
                    self.op_span(),
                    name,
                    format!("{} needs `{name}`", self.op.name()),
                )
            })?
            .get_ref()
            .as_millis();
        if value == 0 {
            let span = field.as_ref().map_or(0..0, Spanned::span);
            return Err(self.error(span, name, "must not be zero"));
        }
        Ok(value)
    }

    /// The step's window (`length`, `slide`), checked against the input's batch times.
    pub fn window(&self) -> Result<WindowSpec, ConfigError> {
        let step = self.step;
        let input_slide = self.slide;
        let length_ms = self.required_interval(&step.length, "length")?;
        let slide_ms = step
            .slide
            .as_ref()
            .map_or(input_slide, |s| s.get_ref().as_millis());
        for (name, value, field) in [
            ("length", length_ms, &step.length),
            ("slide", slide_ms, &step.slide),
        ] {
            if value == 0 || value % input_slide != 0 {
                let span = field.as_ref().map_or(self.op_span(), Spanned::span);
                let what = if input_slide == self.batch_ms {
                    "the batch interval".to_owned()
                } else {
                    "the slide of the windowed stream it reads".to_owned()
                };
                return Err(self.error(
                    span,
                    name,
                    format!("must be a multiple of {what} ({input_slide} ms), got {value} ms"),
                ));
            }
        }
        Ok(WindowSpec {
            length_ms,
            slide_ms,
        })
    }

    /// A file a field names, relative to the pipeline file; it must exist.
    pub fn existing_file(
        &self,
        path: &Spanned<String>,
        field: &str,
    ) -> Result<PathBuf, ConfigError> {
        let full = self
            .pipeline
            .pipeline_relative(path.get_ref())
            .map_err(|e| self.error(path.span(), field, e))?;
        if full.is_file() {
            Ok(full)
        } else {
            Err(self.error(
                path.span(),
                field,
                format!("file '{}' not found", full.display()),
            ))
        }
    }

    /// The step's Wasm combiner (`plugin`), checked against the values of input 0.
    pub fn combiner(&mut self) -> Result<Combine, ConfigError> {
        let operator = self.plugin_operator(OperatorKind::Combiner)?;
        let plugin = self
            .step
            .plugin
            .as_ref()
            .expect("plugin_operator checked it");
        self.check_combined_type(operator, plugin, "plugin")?;
        Ok(Combine::Wasm(operator))
    }

    /// The step's inverse combiner (`inverse-plugin`), if it has one.
    pub fn inverse_combiner(&mut self) -> Result<Option<Combine>, ConfigError> {
        let step = self.step;
        let Some(plugin) = &step.inverse_plugin else {
            return Ok(None);
        };
        let operator = self.load_operator(
            plugin,
            &step.inverse_params,
            "inverse-plugin",
            OperatorKind::Combiner,
        )?;
        self.check_combined_type(operator, plugin, "inverse-plugin")?;
        Ok(Some(Combine::Wasm(operator)))
    }

    /// Refuses a combiner declaring a value type other than the one it will combine.
    fn check_combined_type(
        &self,
        operator: usize,
        plugin: &Spanned<String>,
        field: &str,
    ) -> Result<(), ConfigError> {
        let info = &self.operators[operator].info;
        let input = &self.types[0];
        match info.value_type {
            Some(wanted) if Shape::from(wanted) != input.value => Err(self.error(
                plugin.span(),
                field,
                format!(
                    "combiner '{}' combines {} values, but its input holds {} values",
                    info.name,
                    type_name(wanted),
                    input.value
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Loads the step's `plugin` as an operator of `kind`.
    pub fn plugin_operator(&mut self, kind: OperatorKind) -> Result<usize, ConfigError> {
        let step = self.step;
        let plugin = step.plugin.as_ref().ok_or_else(|| {
            self.error(
                self.op_span(),
                "plugin",
                format!(
                    "{} needs `plugin` (a {} operator)",
                    self.op.name(),
                    kind.world()
                ),
            )
        })?;
        self.load_operator(plugin, &step.params, "plugin", kind)
    }

    fn load_operator(
        &mut self,
        plugin: &Spanned<String>,
        params: &Spanned<toml::Table>,
        plugin_field: &str,
        kind: OperatorKind,
    ) -> Result<usize, ConfigError> {
        let (pipeline, step, i) = (self.pipeline, self.step, self.index);
        let plugin_field = format!("steps[{i}].{plugin_field}");
        let origin = resolve_plugin(pipeline, plugin.get_ref())
            .map_err(|message| pipeline.error_at(plugin.span(), &plugin_field, message))?;
        let name = match (&step.name, plugin_field.ends_with("inverse-plugin")) {
            (Some(name), false) => name.get_ref().clone(),
            (Some(name), true) => format!("{} (inverse)", name.get_ref()),
            (None, _) => plugin_name(plugin.get_ref()),
        };
        let spec = OperatorSpec {
            name,
            step: i,
            kind,
            plugin: origin,
            params: params_of(params.get_ref()),
            output_combine: None,
            limits: pipeline.limits(step),
            grants: pipeline.grants(i, step)?,
        };
        let operator = PreparedOperator::prepare(self.host, self.cache, spec).map_err(|e| {
            let message = format!("{e:#}");
            if message.contains("#configure") {
                let field = plugin_field.replace("plugin", "params");
                pipeline.error_at(params.span(), &field, message)
            } else {
                pipeline.error_at(plugin.span(), &plugin_field, message)
            }
        })?;
        self.operators.push(operator);
        Ok(self.operators.len() - 1)
    }
}

/// Turns a TOML parameter table into the `(name, text)` pairs `configure` receives.
fn params_of(table: &toml::Table) -> Vec<(String, String)> {
    table
        .iter()
        .map(|(k, v)| {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

fn plugin_name(reference: &str) -> String {
    std::path::Path::new(reference)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| reference.to_owned())
}

/// `tokenize` names a bundled operator; anything ending in `.wasm` or holding a `/` is a path,
/// relative to the pipeline file.
fn resolve_plugin(pipeline: &Pipeline, reference: &str) -> Result<PluginOrigin, String> {
    if reference.ends_with(".wasm") || reference.contains('/') {
        let path: PathBuf = pipeline.pipeline_relative(reference)?;
        if !path.is_file() {
            return Err(format!("plugin file '{}' not found", path.display()));
        }
        return Ok(PluginOrigin::File(path));
    }
    crate::bundled::PLUGINS
        .iter()
        .find(|(name, _)| *name == reference)
        .map(|(name, _)| PluginOrigin::Bundled(name))
        .ok_or_else(|| {
            format!(
                "no bundled plugin '{reference}' (bundled: {}); a plugin file needs a path ending in .wasm",
                crate::bundled::plugin_names().join(", ")
            )
        })
}
