//! From the `[[steps]]` of a pipeline file to the stream graph: each step reads named streams
//! (`from`) and writes one (its `name`), its operators are loaded and checked, its fields and
//! types are checked against its op, and narrow steps are then fused where nothing else reads
//! between them.

use crate::config::{ConfigError, Pipeline, StepSpec};
use crate::exec::{Combine, KeyedInput, MapSide, Node, NodeKind, StreamId, StreamInfo};
use crate::ops::{GraphContext, StepInputs, StepPlanner};
use crate::record::StreamType;
use crate::wasm::{ComponentCache, OperatorHost, PreparedOperator};
use std::collections::HashMap;
use std::ops::Range;
use toml::Spanned;

/// The graph under construction.
pub(super) struct GraphBuilder<'a> {
    pipeline: &'a Pipeline,
    host: &'a OperatorHost,
    cache: &'a ComponentCache,
    workers: usize,
    batch_ms: u64,
    pub operators: Vec<PreparedOperator>,
    pub streams: Vec<StreamInfo>,
    pub nodes: Vec<Node>,
    names: HashMap<String, StreamId>,
    /// The union of every source, made when a step without `from` needs it.
    all_sources: Option<StreamId>,
    /// The stream the last step wrote (the default input of the next step and of outputs).
    last: Option<StreamId>,
}

/// The optional step fields present, with their spans.
type Present = Vec<(&'static str, Range<usize>)>;

fn present<T>(out: &mut Present, name: &'static str, field: &Option<Spanned<T>>) {
    if let Some(f) = field {
        out.push((name, f.span()));
    }
}

fn fields_of(step: &StepSpec) -> Present {
    let mut out = Present::new();
    present(&mut out, "plugin", &step.plugin);
    present(&mut out, "inverse-plugin", &step.inverse_plugin);
    present(&mut out, "partitions", &step.partitions);
    present(&mut out, "length", &step.length);
    present(&mut out, "slide", &step.slide);
    present(&mut out, "timeout", &step.timeout);
    present(&mut out, "initial-state", &step.initial_state);
    present(&mut out, "snapshots", &step.snapshots);
    present(&mut out, "allowed-lateness", &step.allowed_lateness);
    present(&mut out, "late", &step.late);
    present(&mut out, "time-field", &step.time_field);
    present(&mut out, "separator", &step.separator);
    present(&mut out, "time-unit", &step.time_unit);
    if !step.params.get_ref().is_empty() {
        out.push(("params", step.params.span()));
    }
    if !step.inverse_params.get_ref().is_empty() {
        out.push(("inverse-params", step.inverse_params.span()));
    }
    out
}

impl<'a> GraphBuilder<'a> {
    pub fn new(
        pipeline: &'a Pipeline,
        host: &'a OperatorHost,
        cache: &'a ComponentCache,
        workers: usize,
        sources: &[(String, StreamType)],
    ) -> GraphBuilder<'a> {
        let mut builder = GraphBuilder {
            pipeline,
            host,
            cache,
            workers,
            batch_ms: pipeline.file.job.batch_interval.as_millis(),
            operators: Vec::new(),
            streams: Vec::new(),
            nodes: Vec::new(),
            names: HashMap::new(),
            all_sources: None,
            last: None,
        };
        for (i, (name, types)) in sources.iter().enumerate() {
            let id = builder.add_stream(name.clone(), types.clone(), builder.batch_ms);
            builder.nodes.push(Node {
                label: format!("source '{name}'"),
                kind: NodeKind::Source(i),
                outputs: vec![id],
            });
        }
        builder
    }

    fn add_stream(&mut self, name: String, types: StreamType, slide_ms: u64) -> StreamId {
        let id = self.streams.len();
        self.names.insert(name.clone(), id);
        self.streams.push(StreamInfo {
            name,
            types,
            slide_ms,
        });
        id
    }

    fn error(&self, span: Range<usize>, field: String, message: impl Into<String>) -> ConfigError {
        self.pipeline.error_at(span, &field, message)
    }

    /// The stream every source feeds, for a first step without `from`; their record types must
    /// agree.
    fn sources_union(&mut self) -> Result<StreamId, ConfigError> {
        if let Some(id) = self.all_sources {
            return Ok(id);
        }
        // Source i wrote stream i.
        let sources: Vec<StreamId> = (0..self.pipeline.file.sources.len()).collect();
        let id = if sources.len() == 1 {
            0
        } else {
            let types = self.streams[0].types.clone();
            if let Some(other) = sources.iter().find(|&&s| self.streams[s].types != types) {
                let (first, other) = (&self.streams[0], &self.streams[*other]);
                return Err(self.error(
                    0..0,
                    "sources".into(),
                    format!(
                        "sources '{}' ({}) and '{}' ({}) have different record types, so a \
                         step or output without `from` cannot read them together: name the \
                         source it reads with `from`",
                        first.name, first.types, other.name, other.types
                    ),
                ));
            }
            let id = self.add_stream("(all sources)".into(), types, self.batch_ms);
            self.nodes.push(Node {
                label: "union of every source".into(),
                kind: NodeKind::Union(sources),
                outputs: vec![id],
            });
            id
        };
        self.all_sources = Some(id);
        Ok(id)
    }

    /// The stream outputs read by default: the last step's, or every source's.
    pub fn default_output(&mut self) -> Result<StreamId, ConfigError> {
        match self.last {
            Some(id) => Ok(id),
            None => self.sources_union(),
        }
    }

    /// The stream named `name`, for `field`.
    pub fn stream_named(
        &self,
        name: &str,
        span: Range<usize>,
        field: String,
    ) -> Result<StreamId, ConfigError> {
        self.names.get(name).copied().ok_or_else(|| {
            let mut known: Vec<&str> = self
                .streams
                .iter()
                .map(|s| s.name.as_str())
                .filter(|n| !n.starts_with('('))
                .collect();
            known.sort_unstable();
            self.error(
                span,
                field,
                format!(
                    "no stream named '{name}' before this point (sources and earlier steps' \
                     names: {})",
                    known.join(", ")
                ),
            )
        })
    }

    /// Adds step `i`: its family checks and plans it.
    pub fn add_step(&mut self, i: usize, step: &StepSpec) -> Result<(), ConfigError> {
        let op = *step.op.get_ref();
        let at = |field: &str| format!("steps[{i}].{field}");
        let family = crate::ops::family(op).ok_or_else(|| {
            self.error(
                step.op.span(),
                at("op"),
                format!("internal error: no op family plans {}", op.name()),
            )
        })?;
        let allowed = family.fields(op);
        if let Some((name, span)) = fields_of(step)
            .into_iter()
            .find(|(name, _)| !allowed.contains(name))
        {
            return Err(self.error(
                span,
                at(name),
                format!(
                    "{} does not take `{name}` ({})",
                    op.name(),
                    if allowed.is_empty() {
                        "it takes only name, op and from".to_owned()
                    } else {
                        format!("it takes: {}", allowed.join(", "))
                    }
                ),
            ));
        }
        let inputs = self.inputs_of(i, step, family.arity(op))?;
        let slide = self.common_slide(i, step, &inputs)?;
        let label_name = step.name.as_ref().map(|n| n.get_ref().clone());
        let stream_name = label_name.clone().unwrap_or_else(|| format!("steps[{i}]"));
        if self.names.contains_key(&stream_name) {
            let span = step.name.as_ref().map_or(step.op.span(), Spanned::span);
            return Err(self.error(
                span,
                at("name"),
                format!("a source or an earlier step is already named '{stream_name}'"),
            ));
        }
        let partitions = match &step.partitions {
            Some(p) if *p.get_ref() == 0 => {
                return Err(self.error(p.span(), at("partitions"), "must be at least 1"));
            }
            Some(p) => *p.get_ref(),
            None => self.workers,
        };
        let step_inputs = StepInputs {
            types: inputs
                .iter()
                .map(|&s| self.streams[s].types.clone())
                .collect(),
            names: inputs
                .iter()
                .map(|&s| self.streams[s].name.clone())
                .collect(),
            ids: inputs,
            slide,
        };
        let graph = GraphContext {
            pipeline: self.pipeline,
            host: self.host,
            cache: self.cache,
            operators: &mut self.operators,
            batch_ms: self.batch_ms,
        };
        let mut planner = StepPlanner::new(graph, i, step, step_inputs, partitions);
        let planned = family.plan(&mut planner)?;
        let side_outputs = std::mem::take(&mut planner.side_outputs);
        let id = self.add_stream(stream_name.clone(), planned.types, planned.slide_ms);
        let mut outputs = vec![id];
        for (name, types) in side_outputs {
            if self.names.contains_key(&name) {
                return Err(self.error(
                    step.op.span(),
                    at("name"),
                    format!("a source or an earlier step is already named '{name}'"),
                ));
            }
            outputs.push(self.add_stream(name, types, planned.slide_ms));
        }
        let label = match (&label_name, &step.plugin) {
            (Some(name), _) => format!("steps[{i}] {} '{name}'", op.name()),
            (None, Some(plugin)) => format!("steps[{i}] {} '{}'", op.name(), plugin.get_ref()),
            (None, None) => format!("steps[{i}] {}", op.name()),
        };
        self.nodes.push(Node {
            label,
            kind: planned.kind,
            outputs,
        });
        self.last = Some(id);
        Ok(())
    }

    /// The streams step `i` reads.
    fn inputs_of(
        &mut self,
        i: usize,
        step: &StepSpec,
        arity: Option<usize>,
    ) -> Result<Vec<StreamId>, ConfigError> {
        let op = *step.op.get_ref();
        let inputs = match &step.from {
            Some(from) => from
                .get_ref()
                .names()
                .into_iter()
                .map(|name| self.stream_named(name, from.span(), format!("steps[{i}].from")))
                .collect::<Result<Vec<_>, _>>()?,
            None => match self.last {
                Some(last) => vec![last],
                None => vec![self.sources_union()?],
            },
        };
        let wrong = match arity {
            Some(n) if inputs.len() != n => Some(format!(
                "{} reads {n} stream{} (`from = {}`), got {}",
                op.name(),
                if n == 1 { "" } else { "s" },
                if n == 1 {
                    "\"a\""
                } else {
                    "[\"left\", \"right\"]"
                },
                inputs.len()
            )),
            _ => None,
        };
        match wrong {
            Some(message) => {
                let span = step.from.as_ref().map_or(step.op.span(), Spanned::span);
                Err(self.error(span, format!("steps[{i}].from"), message))
            }
            None => Ok(inputs),
        }
    }

    /// The slide the inputs share (several streams are only combined batch by batch when they
    /// have batches at the same times).
    fn common_slide(
        &self,
        i: usize,
        step: &StepSpec,
        inputs: &[StreamId],
    ) -> Result<u64, ConfigError> {
        let slide = self.streams[inputs[0]].slide_ms;
        if let Some(other) = inputs.iter().find(|&&s| self.streams[s].slide_ms != slide) {
            return Err(self.error(
                step.from.as_ref().map_or(step.op.span(), Spanned::span),
                format!("steps[{i}].from"),
                format!(
                    "the streams read must have batches at the same times: '{}' every {} ms, \
                     '{}' every {} ms",
                    self.streams[inputs[0]].name,
                    slide,
                    self.streams[*other].name,
                    self.streams[*other].slide_ms
                ),
            ));
        }
        Ok(slide)
    }

    /// Fuses narrow steps: a narrow node whose stream only one node reads (and no output) is
    /// merged into that reader, when the reader is a narrow node or a keyed node's map side.
    /// A transform fused before a combine whose combiner declares a monoid is asked to
    /// pre-combine its output.
    pub fn fuse(&mut self, output_streams: &[StreamId]) {
        let mut readers = vec![0usize; self.streams.len()];
        for node in &self.nodes {
            for input in node.kind.inputs() {
                readers[input] += 1;
            }
        }
        for &s in output_streams {
            readers[s] += 1;
        }
        let mut producer: HashMap<StreamId, usize> = HashMap::new();
        let mut removed = vec![false; self.nodes.len()];
        for n in 0..self.nodes.len() {
            for &s in &self.nodes[n].outputs {
                producer.insert(s, n);
            }
            let fusible = |stream: StreamId, nodes: &[Node], removed: &[bool]| {
                let p = *producer.get(&stream)?;
                if removed[p] || readers[stream] != 1 {
                    return None;
                }
                match &nodes[p].kind {
                    NodeKind::Narrow { input, steps } => Some((p, *input, steps.clone())),
                    _ => None,
                }
            };
            match self.nodes[n].kind.clone() {
                NodeKind::Narrow { input, steps } => {
                    if let Some((p, source, mut before)) = fusible(input, &self.nodes, &removed) {
                        before.extend(steps);
                        self.nodes[n].kind = NodeKind::Narrow {
                            input: source,
                            steps: before,
                        };
                        self.nodes[n].label =
                            format!("{} + {}", self.nodes[p].label, self.nodes[n].label);
                        removed[p] = true;
                    }
                }
                NodeKind::Keyed {
                    mut inputs,
                    partitions,
                    op,
                } => {
                    let mut changed = false;
                    for input in &mut inputs {
                        if let Some((p, source, steps)) =
                            fusible(input.stream, &self.nodes, &removed)
                        {
                            input.types = self.streams[source].types.clone();
                            input.stream = source;
                            input.narrow = steps;
                            removed[p] = true;
                            changed = true;
                        }
                        self.ask_pre_combine(input);
                    }
                    if changed {
                        self.nodes[n].kind = NodeKind::Keyed {
                            inputs,
                            partitions,
                            op,
                        };
                    }
                }
                _ => {}
            }
        }
        let mut index = 0;
        self.nodes.retain(|_| {
            index += 1;
            !removed[index - 1]
        });
    }

    /// Tells the transform fused last before a Wasm combine with a monoid to pre-combine.
    fn ask_pre_combine(&mut self, input: &mut KeyedInput) {
        let MapSide::Combine(Combine::Wasm(combiner)) = input.map_side else {
            return;
        };
        let Some(operator) = input.narrow.last().and_then(|step| step.transform()) else {
            return;
        };
        if let Some(monoid) = self.operators[combiner].info.monoid {
            self.operators[operator].spec.output_combine = Some(monoid);
            input.map_side = MapSide::PreCombined;
        }
    }
}
