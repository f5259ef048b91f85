//! The validated job: sources, operators linked and checked, stages split at shuffles, outputs.
//!
//! A stage runs as one task per partition on the worker pool: stage 0 over the batch's input
//! blocks, each later stage over the reduce partitions of the shuffle before it. Narrow steps
//! (map, flatMap, filter, mapPartitions) are fused into the stage that reads their input; a
//! reduceByKey ends a stage with a map-side combine and a hash shuffle, and starts the next one
//! with the final combine.

use crate::bundled;
use crate::config::{
    ConfigError, OutputSpec, Pipeline, SourceSpec, StepOp, TaskFailurePolicy, Trigger,
};
use crate::wasm::{
    ComponentCache, EngineSettings, Limits, OperatorHost, OperatorKind, OperatorSpec, PluginOrigin,
    PreparedOperator, Usage, bytes,
};
use spate_guest::ValueType;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The key and value types of a stream, as far as the operators declare them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamType {
    /// Key type; none for unkeyed records.
    pub key: Option<ValueType>,
    /// Value type.
    pub value: ValueType,
}

impl std::fmt::Display for StreamType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key {
            Some(key) => write!(f, "({}, {})", type_name(key), type_name(self.value)),
            None => f.write_str(type_name(self.value)),
        }
    }
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Bytes => "bytes",
        ValueType::Text => "text",
        ValueType::I64 => "i64",
        ValueType::F64 => "f64",
    }
}

/// A narrow step fused into a stage.
#[derive(Clone, Debug)]
pub struct NarrowStep {
    /// Index into [`Plan::operators`].
    pub operator: usize,
    /// The operation, which fixes the allowed output cardinality.
    pub op: StepOp,
}

/// A hash shuffle between two stages.
#[derive(Clone, Debug)]
pub struct Shuffle {
    /// The combiner (index into [`Plan::operators`]) run before and after the shuffle.
    pub combiner: usize,
    /// Number of reduce partitions.
    pub partitions: usize,
}

/// One stage.
#[derive(Clone, Debug)]
pub struct Stage {
    /// The shuffle this stage reads (none: it reads the batch's input blocks).
    pub input: Option<Shuffle>,
    /// The type of the records it reads.
    pub input_type: StreamType,
    /// Fused narrow steps.
    pub narrow: Vec<NarrowStep>,
    /// The shuffle this stage writes (none: its partitions go to the outputs).
    pub output: Option<Shuffle>,
}

/// A source with its name.
#[derive(Debug)]
pub struct SourcePlan {
    /// The name in `[sources.<name>]`.
    pub name: String,
    /// What to read.
    pub spec: SourceSpec,
}

/// Job-wide settings.
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// Job name.
    pub name: String,
    /// Batch interval.
    pub batch_interval: Duration,
    /// Block interval.
    pub block_interval: Duration,
    /// Worker threads.
    pub workers: usize,
    /// When batches run.
    pub trigger: Trigger,
    /// A block is cut at this size.
    pub max_block_bytes: usize,
    /// Receivers pause above this much unprocessed data.
    pub max_buffered_bytes: usize,
    /// Most input per batch with `available-now`.
    pub max_batch_bytes: usize,
    /// Who the job runs for.
    pub tenant: String,
    /// Extra attempts of a failed partition task, each on fresh instances.
    pub task_retries: u32,
    /// What a task that still fails does.
    pub on_task_failure: TaskFailurePolicy,
    /// Where skipped partitions' input goes.
    pub dead_letter_dir: PathBuf,
}

/// A validated, linked job.
pub struct Plan {
    /// Job-wide settings.
    pub job: JobSettings,
    /// Sources, read as their union.
    pub sources: Vec<SourcePlan>,
    /// Every operator, linked; stages refer to them by index.
    pub operators: Vec<Arc<PreparedOperator>>,
    /// Stages in execution order.
    pub stages: Vec<Stage>,
    /// Output operations.
    pub outputs: Vec<OutputSpec>,
    /// What the job's operators consumed (shared by all their instances).
    pub usage: Arc<Usage>,
    /// Type of the records reaching the outputs.
    pub output_type: StreamType,
}

/// How much received data may wait unprocessed. With `available-now` the sources are all there
/// already, so reading further ahead than the next batch only costs memory: the limit is two
/// batches' worth (the one running and the next), or `max-buffered-bytes` if lower.
fn read_ahead_limit(job: &crate::config::JobSection) -> usize {
    match job.trigger {
        Trigger::ProcessingTime => job.max_buffered_bytes.get(),
        Trigger::AvailableNow => job
            .max_buffered_bytes
            .get()
            .min(2 * job.max_batch_bytes.get()),
    }
}

/// Worker count: the configured one, or one per core.
pub fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// The engine a job needs: a pool slot per (operator, worker) plus room for checks and trap
/// replacements, slots as large as the largest memory limit, fuel only if some step meters it.
fn engine_settings(pipeline: &Pipeline, workers: usize) -> EngineSettings {
    let steps = &pipeline.file.steps;
    let limits: Vec<_> = steps.iter().map(|s| pipeline.limits(s)).collect();
    const PAGE: usize = 64 << 10;
    EngineSettings {
        max_instances: ((workers as u32 + 2) * steps.len() as u32 + 8).max(16),
        max_memory: limits
            .iter()
            .map(|l| l.memory.next_multiple_of(PAGE))
            .max()
            .unwrap_or(PAGE),
        max_table_elements: limits.iter().map(|l| l.table_elements).max().unwrap_or(0),
        epoch_deadlines: pipeline.file.job.enforce_limits,
        fuel: limits.iter().any(|l| l.fuel.is_some()),
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

impl Plan {
    /// Resolves `pipeline` into a plan: loads and links every plugin and checks parameters,
    /// types and sources, reporting problems at their place in the file.
    pub fn build(pipeline: &Pipeline, cache: &ComponentCache) -> Result<Plan, ConfigError> {
        let file = &pipeline.file;
        let name = pipeline.job_name();
        let job = JobSettings {
            tenant: file.job.tenant.clone().unwrap_or_else(|| name.clone()),
            task_retries: file.job.task_retries,
            on_task_failure: file.job.on_task_failure,
            dead_letter_dir: file
                .job
                .dead_letter_dir
                .as_ref()
                .map_or_else(|| PathBuf::from("dead-letters").join(&name), PathBuf::from),
            name,
            batch_interval: file.job.batch_interval.0,
            block_interval: file.job.block_interval.0,
            workers: worker_count(file.job.workers),
            trigger: file.job.trigger,
            max_block_bytes: file.job.max_block_bytes.get(),
            max_buffered_bytes: read_ahead_limit(&file.job),
            max_batch_bytes: file.job.max_batch_bytes.get(),
        };
        let host = OperatorHost::new(&engine_settings(pipeline, job.workers))
            .map_err(|e| pipeline.error(None, format!("{e:#}")))?;
        let mut operators = Vec::new();
        let mut stream = StreamType {
            key: None,
            value: ValueType::Text,
        };
        let mut stages = vec![Stage {
            input: None,
            input_type: stream,
            narrow: Vec::new(),
            output: None,
        }];
        let mut producer = "the source".to_owned();
        for (i, step) in file.steps.iter().enumerate() {
            let kind = if step.op == StepOp::ReduceByKey {
                OperatorKind::Combiner
            } else {
                OperatorKind::Transform
            };
            let plugin_field = format!("steps[{i}].plugin");
            let plugin = resolve_plugin(pipeline, step.plugin.get_ref())
                .map_err(|message| pipeline.error_at(step.plugin.span(), &plugin_field, message))?;
            let spec = OperatorSpec {
                name: step
                    .name
                    .clone()
                    .unwrap_or_else(|| plugin_name(step.plugin.get_ref())),
                step: i,
                kind,
                plugin,
                params: params_of(step.params.get_ref()),
                output_combine: None,
                limits: pipeline.limits(step),
                grants: pipeline.grants(i, step)?,
            };
            let operator = PreparedOperator::prepare(&host, cache, spec).map_err(|e| {
                let message = format!("{e:#}");
                if message.contains("#configure") {
                    pipeline.error_at(step.params.span(), &format!("steps[{i}].params"), message)
                } else {
                    pipeline.error_at(step.plugin.span(), &plugin_field, message)
                }
            })?;
            let index = operators.len();
            let info = operator.info.clone();
            operators.push(operator);
            let stage = stages.last_mut().expect("one stage at least");
            if step.op == StepOp::ReduceByKey {
                if stream.key.is_none() {
                    return Err(pipeline.error_at(
                        step.plugin.span(),
                        &format!("steps[{i}].op"),
                        format!("reduce-by-key needs (key, value) records, but {producer} emits unkeyed records"),
                    ));
                }
                if let Some(wanted) = info.value_type.filter(|t| *t != stream.value) {
                    return Err(pipeline.error_at(
                        step.plugin.span(),
                        &plugin_field,
                        format!(
                            "combiner '{}' combines {} values, but {producer} emits {} values",
                            info.name,
                            type_name(wanted),
                            type_name(stream.value)
                        ),
                    ));
                }
                if let (Some(monoid), Some(last)) = (info.monoid, stage.narrow.last()) {
                    // The transform feeding this combine may pre-combine its output.
                    operators[last.operator].spec.output_combine = Some(monoid);
                }
                let partitions = step
                    .partitions
                    .as_ref()
                    .map_or(job.workers, |p| *p.get_ref());
                let shuffle = Shuffle {
                    combiner: index,
                    partitions,
                };
                stage.output = Some(shuffle.clone());
                stages.push(Stage {
                    input: Some(shuffle),
                    input_type: stream,
                    narrow: Vec::new(),
                    output: None,
                });
            } else {
                stage.narrow.push(NarrowStep {
                    operator: index,
                    op: step.op,
                });
                if let Some(key) = info.key_type {
                    stream.key = Some(key);
                }
            }
            if let Some(value) = info.value_type {
                stream.value = value;
            }
            producer = format!("step {i} ({})", operators[index].spec.name);
        }
        let sources = pipeline
            .sources()?
            .into_iter()
            .map(|(name, spec)| SourcePlan { name, spec })
            .collect();
        let outputs = pipeline.outputs()?;
        let operators = operators.into_iter().map(Arc::new).collect();
        Ok(Plan {
            job,
            sources,
            operators,
            stages,
            outputs,
            output_type: stream,
            usage: host.usage().clone(),
        })
    }

    /// The plan as `spate check` prints it.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let job = &self.job;
        let _ = writeln!(
            out,
            "job '{}' (tenant '{}'): batch interval {}, block interval {}, {} workers, trigger {}",
            job.name,
            job.tenant,
            humantime::format_duration(job.batch_interval),
            humantime::format_duration(job.block_interval),
            job.workers,
            match job.trigger {
                Trigger::ProcessingTime => "processing-time",
                Trigger::AvailableNow => "available-now",
            }
        );
        let _ = writeln!(
            out,
            "failed tasks: {} retries on fresh instances, then {}",
            job.task_retries,
            match job.on_task_failure {
                TaskFailurePolicy::Fail => "fail the job".to_owned(),
                TaskFailurePolicy::Skip => format!(
                    "skip the partition (its input goes to {})",
                    job.dead_letter_dir.display()
                ),
            }
        );
        let _ = writeln!(out, "sources (read as their union):");
        for source in &self.sources {
            let _ = writeln!(out, "  {}: {}", source.name, describe_source(&source.spec));
        }
        for (s, stage) in self.stages.iter().enumerate() {
            let tasks = match &stage.input {
                None => "one task per input block".to_owned(),
                Some(shuffle) => format!("{} tasks, one per reduce partition", shuffle.partitions),
            };
            let _ = writeln!(out, "stage {s} ({tasks}):");
            if let Some(shuffle) = &stage.input {
                let _ = writeln!(
                    out,
                    "  reduce-by-key final combine: {}",
                    self.operator_line(shuffle.combiner)
                );
            }
            for step in &stage.narrow {
                let _ = writeln!(
                    out,
                    "  {}: {}",
                    step.op.name(),
                    self.operator_line(step.operator)
                );
            }
            if let Some(shuffle) = &stage.output {
                let _ = writeln!(
                    out,
                    "  reduce-by-key map-side combine: {}",
                    self.operator_line(shuffle.combiner)
                );
                let _ = writeln!(
                    out,
                    "  shuffle: hash of key -> {} partitions",
                    shuffle.partitions
                );
            }
        }
        let _ = writeln!(out, "outputs (records of type {}):", self.output_type);
        for output in &self.outputs {
            let _ = match output {
                OutputSpec::Print { num } => {
                    writeln!(out, "  print: first {num} records of each batch")
                }
                OutputSpec::TextFiles { prefix, suffix } => writeln!(
                    out,
                    "  text-files: {prefix}-<batch time ms>{} per batch (written atomically)",
                    suffix.as_ref().map(|s| format!(".{s}")).unwrap_or_default()
                ),
            };
        }
        out
    }

    fn operator_line(&self, index: usize) -> String {
        let op = &self.operators[index];
        let combine = op
            .spec
            .output_combine
            .map(|m| format!(", pre-combines its output ({m:?})"))
            .unwrap_or_default();
        let params = if op.spec.params.is_empty() {
            "no params".to_owned()
        } else {
            op.spec
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "'{}' [plugin {}, {} KiB, exports {}] {} ({params}{combine})\n    \
             grants: {}\n    limits: {}",
            op.spec.name,
            op.spec.plugin,
            op.wasm_bytes.div_ceil(1024),
            op.spec.kind.export_name(),
            op.info.description,
            op.spec.grants,
            describe_limits(&op.spec.limits),
        )
    }
}

/// An operator's limits as `spate check` prints them.
fn describe_limits(limits: &Limits) -> String {
    if *limits == crate::config::UNLIMITED {
        return "off (job.enforce-limits = false)".to_owned();
    }
    format!(
        "memory {}, call-time {}, fuel {}, output {} records / {} per call, log {} per batch",
        bytes(limits.memory),
        humantime::format_duration(limits.call_time),
        limits
            .fuel
            .map_or_else(|| "not metered".to_owned(), |f| format!("{f} per call")),
        limits.output_records,
        bytes(limits.output_bytes),
        bytes(limits.log_bytes),
    )
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
        let path: PathBuf = pipeline.base_dir().join(reference);
        if !path.is_file() {
            return Err(format!("plugin file '{}' not found", path.display()));
        }
        return Ok(PluginOrigin::File(path));
    }
    bundled::PLUGINS
        .iter()
        .find(|(name, _)| *name == reference)
        .map(|(name, _)| PluginOrigin::Bundled(name))
        .ok_or_else(|| {
            format!(
                "no bundled plugin '{reference}' (bundled: {}); a plugin file needs a path ending in .wasm",
                bundled::plugin_names().join(", ")
            )
        })
}

fn describe_source(spec: &SourceSpec) -> String {
    match spec {
        SourceSpec::Socket {
            host, port, lines, ..
        } => format!(
            "socket text client of {host}:{port} (lines up to {}, bad lines: {:?})",
            lines.max_line_length, lines.on_bad_line
        ),
        SourceSpec::Directory {
            path,
            include_existing,
            poll_interval,
            lines,
        } => format!(
            "new text files in {path}{} (polled every {poll_interval}, lines up to {}, bad lines: {:?})",
            if *include_existing {
                ", existing files too"
            } else {
                ""
            },
            lines.max_line_length,
            lines.on_bad_line
        ),
        SourceSpec::Bundled { lines_per_second } => {
            format!("the bundled demo text at {lines_per_second} lines per second")
        }
    }
}
