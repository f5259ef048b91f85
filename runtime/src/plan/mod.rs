//! The validated job: sources, operators linked and checked, the dataflow, outputs.
//!
//! Every source, and every step, writes a named stream; steps read streams with `from`. Each
//! step is planned by its op family (`ops`) into a node of the dataflow
//! ([`crate::exec::Dataflow`]), run in order for each batch: narrow steps fuse into one task per
//! partition, and into the map side of the shuffle that follows them; keyed ops shuffle by the
//! hash of the key (with a map-side combine where they combine) and run one task per shuffle
//! partition, which also owns that partition's state.

mod describe;
mod graph;

use crate::checkpoint::OperatorStamp;
use crate::config::{ConfigError, Pipeline, Trigger};
use crate::exec::{Dataflow, StreamId, TaskPolicy};
use crate::record::StreamType;
use crate::sink::Output;
use crate::source::NamedSource;
use crate::wasm::{ComponentCache, EngineSettings, OperatorHost, Usage};
use graph::GraphBuilder;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// An output and the stream it writes.
#[derive(Clone, Debug)]
pub struct OutputPlan {
    /// What the UI calls it: `outputs[0] text-files from 'counts'`.
    pub label: String,
    /// What it does.
    pub output: Arc<dyn Output>,
    /// The stream written.
    pub stream: StreamId,
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
    /// When batches run.
    pub trigger: Trigger,
    /// A block is cut at this size.
    pub max_block_bytes: usize,
    /// Receivers pause above this much unprocessed data.
    pub max_buffered_bytes: usize,
    /// Most input per batch with `available-now`.
    pub max_batch_bytes: usize,
    /// Most host memory the job's state may hold (`job.max-state-bytes`).
    pub max_state_bytes: Option<usize>,
    /// Who the job runs for.
    pub tenant: String,
    /// Fault tolerance, when a checkpoint directory is set.
    pub checkpoint: Option<CheckpointSettings>,
    /// The scale-out task this job runs (`topic-partition`); `None` for a whole job.
    pub task: Option<String>,
}

/// Where and how often checkpoints are taken.
#[derive(Clone, Debug)]
pub struct CheckpointSettings {
    /// Checkpoints and the batch log go here.
    pub dir: PathBuf,
    /// A checkpoint follows every batch whose time is a multiple of this.
    pub interval: Duration,
    /// Checkpoints kept.
    pub kept: usize,
}

/// A validated, linked job.
pub struct Plan {
    /// Job-wide settings.
    pub job: JobSettings,
    /// Sources; source `i` writes stream `i` of the dataflow.
    pub sources: Vec<NamedSource>,
    /// What each batch runs through: operators, streams and nodes, and how tasks run.
    pub dataflow: Arc<Dataflow>,
    /// Output operations.
    pub outputs: Vec<OutputPlan>,
    /// What the job's operators consumed (shared by all their instances).
    pub usage: Arc<Usage>,
}

impl Plan {
    /// The stateful nodes, in state order, each described by its stream and what its state
    /// holds, after the batch interval they were computed with (windows and timeouts count
    /// batches); empty without state. Steps are told apart by their stream names: naming steps
    /// (`name = ...`) keeps their state when other steps are added before them, as Flink's
    /// operator uids do.
    pub fn state_layout(&self) -> Vec<String> {
        let dataflow = &self.dataflow;
        let nodes: Vec<String> = dataflow
            .nodes
            .iter()
            .filter_map(|node| {
                let what = node.kind.state_layout()?;
                Some(format!(
                    "'{}': {what}",
                    dataflow.streams[node.outputs[0]].name
                ))
            })
            .collect();
        if nodes.is_empty() {
            return nodes;
        }
        let interval = format!("batch interval {} ms", self.job.batch_interval.as_millis());
        std::iter::once(interval).chain(nodes).collect()
    }

    /// The operators as a checkpoint records them, in plan order.
    pub fn operator_stamps(&self) -> Vec<OperatorStamp> {
        self.dataflow
            .operators
            .iter()
            .map(|op| OperatorStamp {
                name: op.spec.to_string(),
                step: format!("step {} '{}'", op.spec.step, op.spec.name),
                hash: op.hash.clone(),
                schema_version: op.info.schema_version,
            })
            .collect()
    }
}

/// How much received data may wait unprocessed. With `available-now` the sources are all there
/// already, so reading further ahead than the next batch only costs memory: the limit is the
/// batch running plus half the next one (its blocks are released as it is processed, so the
/// receiver keeps ahead), or `max-buffered-bytes` if lower. Against two whole batches this cut
/// the word count's peak RSS from 69 to 62 MB (2 workers) at the same speed.
fn read_ahead_limit(job: &crate::config::JobSection) -> usize {
    match job.trigger {
        Trigger::ProcessingTime => job.max_buffered_bytes.get(),
        Trigger::AvailableNow => job
            .max_buffered_bytes
            .get()
            .min(job.max_batch_bytes.get() * 3 / 2),
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
        // A step may load two operators (reduce-by-key-and-window's inverse).
        max_instances: ((workers as u32 + 2) * 2 * steps.len() as u32 + 8).max(16),
        max_memory: limits
            .iter()
            .map(|l| l.memory.next_multiple_of(PAGE))
            .max()
            .unwrap_or(PAGE),
        max_table_elements: limits.iter().map(|l| l.table_elements).max().unwrap_or(0),
        epoch_deadlines: pipeline.file.job.enforce_limits,
        tenant: pipeline
            .file
            .job
            .tenant
            .clone()
            .unwrap_or_else(|| pipeline.job_name()),
        cpu_weight: pipeline.file.job.cpu_weight,
        fuel: limits.iter().any(|l| l.fuel.is_some()),
    }
}

impl Plan {
    /// Resolves `pipeline` into a plan: loads and links every plugin and checks parameters,
    /// types, streams and sources, reporting problems at their place in the file.
    pub fn build(pipeline: &Pipeline, cache: &ComponentCache) -> Result<Plan, ConfigError> {
        let file = &pipeline.file;
        let name = pipeline.job_name();
        let tasks = TaskPolicy {
            workers: worker_count(file.job.workers),
            retries: file.job.task_retries,
            on_failure: file.job.on_task_failure,
            dead_letter_dir: file
                .job
                .dead_letter_dir
                .as_ref()
                .map_or_else(|| PathBuf::from("dead-letters").join(&name), PathBuf::from),
        };
        let job = JobSettings {
            tenant: file.job.tenant.clone().unwrap_or_else(|| name.clone()),
            checkpoint: file
                .job
                .checkpoint_dir
                .as_ref()
                .map(|dir| CheckpointSettings {
                    dir: PathBuf::from(dir),
                    interval: file
                        .job
                        .checkpoint_interval
                        .map_or(file.job.batch_interval.0 * 10, |i| i.0),
                    kept: file.job.checkpoints_kept,
                }),
            name,
            batch_interval: file.job.batch_interval.0,
            block_interval: file.job.block_interval.0,
            trigger: file.job.trigger,
            max_block_bytes: file.job.max_block_bytes.get(),
            max_buffered_bytes: read_ahead_limit(&file.job),
            max_batch_bytes: file.job.max_batch_bytes.get(),
            max_state_bytes: file.job.max_state_bytes.map(|b| b.get()),
            task: None,
        };
        let host = OperatorHost::new(&engine_settings(pipeline, tasks.workers))
            .map_err(|e| pipeline.error(None, format!("{e:#}")))?;
        let sources = pipeline
            .source_tables()
            .map(|(name, table)| {
                Ok(NamedSource {
                    name: name.to_owned(),
                    kind: table.kind().to_owned(),
                    source: crate::source::configure(&table)?.into(),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let connectors = pipeline
            .output_tables()
            .map(|table| crate::sink::configure(&table))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let source_types: Vec<(String, StreamType)> = sources
            .iter()
            .map(|s| (s.name.clone(), s.source.stream_type()))
            .collect();
        let mut graph = GraphBuilder::new(pipeline, &host, cache, tasks.workers, &source_types);
        for (i, step) in file.steps.iter().enumerate() {
            graph.add_step(i, step)?;
        }
        let mut outputs = Vec::new();
        for (i, (output, table)) in connectors.into_iter().zip(&file.outputs).enumerate() {
            let stream = match &table.from {
                Some(from) => {
                    graph.stream_named(from.get_ref(), from.span(), format!("outputs[{i}].from"))?
                }
                None => graph.default_output()?,
            };
            output
                .accepts(&graph.streams[stream].types)
                .map_err(|e| pipeline.error(Some(&format!("outputs[{i}]")), e))?;
            outputs.push(OutputPlan {
                label: format!(
                    "outputs[{i}] {} from '{}'",
                    table.kind.get_ref(),
                    graph.streams[stream].name
                ),
                output: output.into(),
                stream,
            });
        }
        let output_streams: Vec<StreamId> = outputs.iter().map(|o| o.stream).collect();
        graph.fuse(&output_streams);
        let dataflow = Dataflow {
            operators: graph.operators.into_iter().map(Arc::new).collect(),
            streams: graph.streams,
            nodes: graph.nodes,
            output_streams,
            tasks,
        };
        Ok(Plan {
            job,
            sources,
            dataflow: Arc::new(dataflow),
            outputs,
            usage: host.usage().clone(),
        })
    }
}
