//! From the `[[steps]]` of a pipeline file to the stream graph: each step reads named streams
//! (`from`) and writes one (its `name`), its operators are loaded and checked, its fields and
//! types are checked against its op, and narrow steps are then fused where nothing else reads
//! between them.

use super::nodes::*;
use super::shape::{Shape, StreamType, type_name};
use crate::config::{ConfigError, Pipeline, StepOp, StepSpec, TimeUnit};
use crate::wasm::{
    ComponentCache, OperatorHost, OperatorKind, OperatorSpec, PluginOrigin, PreparedOperator,
};
use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
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

/// The optional fields each op takes (beyond name, op, from, limits and grants).
fn allowed_fields(op: StepOp) -> &'static [&'static str] {
    use StepOp::*;
    match op {
        Map | FlatMap | Filter | MapPartitions => &["plugin", "params"],
        ReduceByKey => &["plugin", "params", "partitions"],
        Reduce => &["plugin", "params"],
        Union | Count => &[],
        CountByValue | Repartition | GroupByKey | Join | LeftOuterJoin | RightOuterJoin
        | FullOuterJoin | Cogroup => &["partitions"],
        Window | CountByWindow => &["length", "slide"],
        ReduceByWindow => &["plugin", "params", "length", "slide"],
        ReduceByKeyAndWindow => &[
            "plugin",
            "params",
            "inverse-plugin",
            "inverse-params",
            "partitions",
            "length",
            "slide",
        ],
        CountByValueAndWindow => &["partitions", "length", "slide"],
        UpdateStateByKey => &["plugin", "params", "partitions", "initial-state"],
        MapWithState => &[
            "plugin",
            "params",
            "partitions",
            "timeout",
            "initial-state",
            "snapshots",
        ],
        AssignTimestamps => &["time-field", "separator", "time-unit"],
        EventTimeWindow => &[
            "plugin",
            "params",
            "partitions",
            "length",
            "slide",
            "allowed-lateness",
            "late",
        ],
    }
}

/// How many streams an op reads.
fn arity(op: StepOp) -> Option<usize> {
    use StepOp::*;
    match op {
        Union => None,
        Join | LeftOuterJoin | RightOuterJoin | FullOuterJoin | Cogroup => Some(2),
        _ => Some(1),
    }
}

impl<'a> GraphBuilder<'a> {
    pub fn new(
        pipeline: &'a Pipeline,
        host: &'a OperatorHost,
        cache: &'a ComponentCache,
        workers: usize,
        source_names: &[String],
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
        for (i, name) in source_names.iter().enumerate() {
            let id = builder.add_stream(name.clone(), StreamType::lines(), builder.batch_ms);
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

    /// The stream every source feeds, for a first step without `from`.
    fn sources_union(&mut self) -> StreamId {
        if let Some(id) = self.all_sources {
            return id;
        }
        // Source i wrote stream i.
        let sources: Vec<StreamId> = (0..self.pipeline.file.sources.len()).collect();
        let id = if sources.len() == 1 {
            0
        } else {
            let id = self.add_stream("(all sources)".into(), StreamType::lines(), self.batch_ms);
            self.nodes.push(Node {
                label: "union of every source".into(),
                kind: NodeKind::Union(sources),
                outputs: vec![id],
            });
            id
        };
        self.all_sources = Some(id);
        id
    }

    /// The stream outputs read by default: the last step's, or every source's.
    pub fn default_output(&mut self) -> StreamId {
        match self.last {
            Some(id) => id,
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

    /// Adds step `i`.
    pub fn add_step(&mut self, i: usize, step: &StepSpec) -> Result<(), ConfigError> {
        let op = *step.op.get_ref();
        let at = |field: &str| format!("steps[{i}].{field}");
        if let Some((name, span)) = fields_of(step)
            .into_iter()
            .find(|(name, _)| !allowed_fields(op).contains(name))
        {
            let allowed = allowed_fields(op);
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
        let inputs = self.inputs_of(i, step)?;
        let types: Vec<StreamType> = inputs
            .iter()
            .map(|&s| self.streams[s].types.clone())
            .collect();
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
        let input_name = |k: usize| self.streams[inputs[k]].name.clone();
        let partitions = match &step.partitions {
            Some(p) if *p.get_ref() == 0 => {
                return Err(self.error(p.span(), at("partitions"), "must be at least 1"));
            }
            Some(p) => *p.get_ref(),
            None => self.workers,
        };
        let keyed = |k: usize| -> Result<Shape, ConfigError> {
            types[k].key.clone().ok_or_else(|| {
                self.error(
                    step.op.span(),
                    at("op"),
                    format!(
                        "{} needs (key, value) records, but stream '{}' holds unkeyed records",
                        op.name(),
                        input_name(k)
                    ),
                )
            })
        };
        let hash_input = |stream: StreamId, map_side: MapSide, types: &StreamType| KeyedInput {
            stream,
            narrow: Vec::new(),
            map_side,
            types: types.clone(),
        };
        let mut extra_outputs: Vec<(String, StreamType)> = Vec::new();
        let (kind, out_types, out_slide) = match op {
            StepOp::Map | StepOp::FlatMap | StepOp::Filter | StepOp::MapPartitions => {
                let operator = self.plugin_operator(i, step, OperatorKind::Transform)?;
                let info = &self.operators[operator].info;
                let out = StreamType {
                    key: info.key_type.map(Shape::from).or(types[0].key.clone()),
                    value: info.value_type.map_or(types[0].value.clone(), Shape::from),
                };
                let steps = vec![NarrowStep::Wasm { operator, op }];
                let kind = NodeKind::Narrow {
                    input: inputs[0],
                    steps,
                };
                (kind, out, slide)
            }
            StepOp::AssignTimestamps => {
                let field = TimeField {
                    field: step.time_field.as_ref().map_or(0, |f| *f.get_ref()),
                    separator: step
                        .separator
                        .as_ref()
                        .map_or_else(|| ",".to_owned(), |s| s.get_ref().clone()),
                    unit: step
                        .time_unit
                        .as_ref()
                        .map_or(TimeUnit::Ms, |u| *u.get_ref()),
                };
                if field.separator.is_empty() {
                    let span = step.separator.as_ref().map_or(0..0, Spanned::span);
                    return Err(self.error(span, at("separator"), "must not be empty"));
                }
                let kind = NodeKind::Narrow {
                    input: inputs[0],
                    steps: vec![NarrowStep::AssignTimestamps(field)],
                };
                (kind, types[0].clone(), slide)
            }
            StepOp::ReduceByKey => {
                keyed(0)?;
                let combine = self.combiner(i, step, &types[0])?;
                let kind = NodeKind::Keyed {
                    inputs: vec![hash_input(inputs[0], MapSide::Combine(combine), &types[0])],
                    partitions,
                    op: KeyedOp::Reduce(combine),
                };
                (kind, types[0].clone(), slide)
            }
            StepOp::Reduce => {
                let combine = self.combiner(i, step, &types[0])?;
                let out = StreamType {
                    key: None,
                    value: types[0].value.clone(),
                };
                let kind = NodeKind::Global {
                    input: inputs[0],
                    op: GlobalOp::Reduce(combine),
                };
                (kind, out, slide)
            }
            StepOp::Union => {
                if inputs.len() < 2 {
                    let span = step.from.as_ref().map_or(step.op.span(), Spanned::span);
                    return Err(self.error(span, at("from"), "union needs at least two streams"));
                }
                if let Some(k) = (1..types.len()).find(|&k| types[k] != types[0]) {
                    return Err(self.error(
                        step.from.as_ref().map_or(step.op.span(), Spanned::span),
                        at("from"),
                        format!(
                            "union needs streams of one type: '{}' holds {}, '{}' holds {}",
                            input_name(0),
                            types[0],
                            input_name(k),
                            types[k]
                        ),
                    ));
                }
                (NodeKind::Union(inputs.clone()), types[0].clone(), slide)
            }
            StepOp::Count => {
                let kind = NodeKind::Global {
                    input: inputs[0],
                    op: GlobalOp::Count,
                };
                (
                    kind,
                    StreamType {
                        key: None,
                        value: Shape::I64,
                    },
                    slide,
                )
            }
            StepOp::CountByValue | StepOp::CountByValueAndWindow => {
                let key = match &types[0].key {
                    Some(k) => Shape::pair(k.clone(), types[0].value.clone()),
                    None => types[0].value.clone(),
                };
                let input = hash_input(inputs[0], MapSide::CountValues, &types[0]);
                let (op_, out_slide) = if op == StepOp::CountByValue {
                    (KeyedOp::Reduce(Combine::SumI64), slide)
                } else {
                    let window = self.window(i, step, slide)?;
                    let op_ = KeyedOp::WindowReduce {
                        combine: Combine::SumI64,
                        inverse: Some(Combine::SubI64),
                        window,
                    };
                    (op_, window.slide_ms)
                };
                let kind = NodeKind::Keyed {
                    inputs: vec![input],
                    partitions,
                    op: op_,
                };
                (kind, StreamType::keyed(key, Shape::I64), out_slide)
            }
            StepOp::Repartition => {
                let kind = NodeKind::Keyed {
                    inputs: vec![hash_input(inputs[0], MapSide::Deal, &types[0])],
                    partitions: match &step.partitions {
                        Some(_) => partitions,
                        None => {
                            return Err(self.error(
                                step.op.span(),
                                at("partitions"),
                                "repartition needs `partitions`",
                            ));
                        }
                    },
                    op: KeyedOp::Pass,
                };
                (kind, types[0].clone(), slide)
            }
            StepOp::GroupByKey => {
                let key = keyed(0)?;
                let kind = NodeKind::Keyed {
                    inputs: vec![hash_input(inputs[0], MapSide::Hash, &types[0])],
                    partitions,
                    op: KeyedOp::Group,
                };
                let value = Shape::list(types[0].value.clone());
                (kind, StreamType::keyed(key, value), slide)
            }
            StepOp::Join
            | StepOp::LeftOuterJoin
            | StepOp::RightOuterJoin
            | StepOp::FullOuterJoin
            | StepOp::Cogroup => {
                let (left_key, right_key) = (keyed(0)?, keyed(1)?);
                if left_key != right_key {
                    return Err(self.error(
                        step.from.as_ref().map_or(step.op.span(), Spanned::span),
                        at("from"),
                        format!(
                            "{} needs keys of one type: '{}' has {left_key} keys, '{}' has \
                             {right_key} keys",
                            op.name(),
                            input_name(0),
                            input_name(1)
                        ),
                    ));
                }
                let (v, w) = (types[0].value.clone(), types[1].value.clone());
                let (keyed_op, value) = match op {
                    StepOp::Join => (KeyedOp::Join(JoinKind::Inner), Shape::pair(v, w)),
                    StepOp::LeftOuterJoin => (
                        KeyedOp::Join(JoinKind::LeftOuter),
                        Shape::pair(v, Shape::maybe(w)),
                    ),
                    StepOp::RightOuterJoin => (
                        KeyedOp::Join(JoinKind::RightOuter),
                        Shape::pair(Shape::maybe(v), w),
                    ),
                    StepOp::FullOuterJoin => (
                        KeyedOp::Join(JoinKind::FullOuter),
                        Shape::pair(Shape::maybe(v), Shape::maybe(w)),
                    ),
                    _ => (
                        KeyedOp::Cogroup,
                        Shape::pair(Shape::list(v), Shape::list(w)),
                    ),
                };
                let kind = NodeKind::Keyed {
                    inputs: vec![
                        hash_input(inputs[0], MapSide::Hash, &types[0]),
                        hash_input(inputs[1], MapSide::Hash, &types[1]),
                    ],
                    partitions,
                    op: keyed_op,
                };
                (kind, StreamType::keyed(left_key, value), slide)
            }
            StepOp::Window | StepOp::CountByWindow | StepOp::ReduceByWindow => {
                let window = self.window(i, step, slide)?;
                let (global, out) = match op {
                    StepOp::Window => (GlobalOp::Window(window), types[0].clone()),
                    StepOp::CountByWindow => (
                        GlobalOp::CountByWindow(window),
                        StreamType {
                            key: None,
                            value: Shape::I64,
                        },
                    ),
                    _ => {
                        let combine = self.combiner(i, step, &types[0])?;
                        let out = StreamType {
                            key: None,
                            value: types[0].value.clone(),
                        };
                        (GlobalOp::ReduceByWindow(combine, window), out)
                    }
                };
                let kind = NodeKind::Global {
                    input: inputs[0],
                    op: global,
                };
                (kind, out, window.slide_ms)
            }
            StepOp::ReduceByKeyAndWindow => {
                keyed(0)?;
                let window = self.window(i, step, slide)?;
                let combine = self.combiner(i, step, &types[0])?;
                let inverse = match &step.inverse_plugin {
                    None => None,
                    Some(plugin) => {
                        let operator = self.load_operator(
                            i,
                            step,
                            plugin,
                            &step.inverse_params,
                            "inverse-plugin",
                            OperatorKind::Combiner,
                        )?;
                        self.check_combined_type(i, operator, plugin, "inverse-plugin", &types[0])?;
                        Some(Combine::Wasm(operator))
                    }
                };
                let kind = NodeKind::Keyed {
                    inputs: vec![hash_input(inputs[0], MapSide::Combine(combine), &types[0])],
                    partitions,
                    op: KeyedOp::WindowReduce {
                        combine,
                        inverse,
                        window,
                    },
                };
                (kind, types[0].clone(), window.slide_ms)
            }
            StepOp::UpdateStateByKey | StepOp::MapWithState => {
                let key = keyed(0)?;
                let operator = self.plugin_operator(i, step, OperatorKind::State)?;
                let info = &self.operators[operator].info;
                let state_type =
                    Shape::from(info.state_type.unwrap_or(spate_guest::ValueType::Bytes));
                let initial = step
                    .initial_state
                    .as_ref()
                    .map(|p| self.existing_file(p, at("initial-state")))
                    .transpose()?;
                let (mode, out) = if op == StepOp::UpdateStateByKey {
                    let out = StreamType::keyed(key.clone(), state_type.clone());
                    (StateMode::UpdateAll, out)
                } else {
                    let out = StreamType {
                        key: info.key_type.map(Shape::from).or(Some(key.clone())),
                        value: info.value_type.map_or(state_type.clone(), Shape::from),
                    };
                    if let Some(snapshots) = &step.snapshots {
                        extra_outputs.push((
                            snapshots.get_ref().clone(),
                            StreamType::keyed(key.clone(), state_type.clone()),
                        ));
                    }
                    let timeout_ms = step.timeout.as_ref().map(|t| t.get_ref().as_millis());
                    (StateMode::MapWithState { timeout_ms }, out)
                };
                let kind = NodeKind::Keyed {
                    inputs: vec![hash_input(inputs[0], MapSide::Hash, &types[0])],
                    partitions,
                    op: KeyedOp::State {
                        operator,
                        mode,
                        initial,
                    },
                };
                (kind, out, slide)
            }
            StepOp::EventTimeWindow => {
                let key = keyed(0)?;
                let length = self.required_interval(step, &step.length, "length", i)?;
                let slide_ms = step
                    .slide
                    .as_ref()
                    .map_or(length, |s| s.get_ref().as_millis());
                if slide_ms == 0 || length % slide_ms != 0 {
                    let span = step.slide.as_ref().map_or(step.op.span(), Spanned::span);
                    return Err(self.error(
                        span,
                        at("slide"),
                        format!("must divide the window length ({length} ms) evenly"),
                    ));
                }
                let combine = self.combiner(i, step, &types[0])?;
                let lateness_ms = step
                    .allowed_lateness
                    .as_ref()
                    .map_or(0, |l| l.get_ref().as_millis());
                if let Some(late) = &step.late {
                    extra_outputs.push((late.get_ref().clone(), types[0].clone()));
                }
                let kind = NodeKind::Keyed {
                    inputs: vec![hash_input(inputs[0], MapSide::Hash, &types[0])],
                    partitions,
                    op: KeyedOp::EventWindow {
                        combine,
                        window: WindowSpec {
                            length_ms: length,
                            slide_ms,
                        },
                        lateness_ms,
                    },
                };
                let out = StreamType::keyed(Shape::pair(Shape::I64, key), types[0].value.clone());
                (kind, out, slide)
            }
        };
        let id = self.add_stream(stream_name.clone(), out_types, out_slide);
        let mut outputs = vec![id];
        for (name, types) in extra_outputs {
            if self.names.contains_key(&name) {
                return Err(self.error(
                    step.op.span(),
                    at("name"),
                    format!("a source or an earlier step is already named '{name}'"),
                ));
            }
            outputs.push(self.add_stream(name, types, out_slide));
        }
        let label = match (&label_name, &step.plugin) {
            (Some(name), _) => format!("steps[{i}] {} '{name}'", op.name()),
            (None, Some(plugin)) => format!("steps[{i}] {} '{}'", op.name(), plugin.get_ref()),
            (None, None) => format!("steps[{i}] {}", op.name()),
        };
        self.nodes.push(Node {
            label,
            kind,
            outputs,
        });
        self.last = Some(id);
        Ok(())
    }

    /// The streams step `i` reads.
    fn inputs_of(&mut self, i: usize, step: &StepSpec) -> Result<Vec<StreamId>, ConfigError> {
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
                None => vec![self.sources_union()],
            },
        };
        let wrong = match arity(op) {
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

    fn required_interval(
        &self,
        step: &StepSpec,
        field: &Option<Spanned<crate::config::Interval>>,
        name: &str,
        i: usize,
    ) -> Result<u64, ConfigError> {
        let value = field
            .as_ref()
            .ok_or_else(|| {
                self.error(
                    step.op.span(),
                    format!("steps[{i}].{name}"),
                    format!("{} needs `{name}`", step.op.get_ref().name()),
                )
            })?
            .get_ref()
            .as_millis();
        if value == 0 {
            let span = field.as_ref().map_or(0..0, Spanned::span);
            return Err(self.error(span, format!("steps[{i}].{name}"), "must not be zero"));
        }
        Ok(value)
    }

    /// A window's length and slide, checked against the input's batch times.
    fn window(
        &self,
        i: usize,
        step: &StepSpec,
        input_slide: u64,
    ) -> Result<WindowSpec, ConfigError> {
        let length_ms = self.required_interval(step, &step.length, "length", i)?;
        let slide_ms = step
            .slide
            .as_ref()
            .map_or(input_slide, |s| s.get_ref().as_millis());
        for (name, value, field) in [
            ("length", length_ms, &step.length),
            ("slide", slide_ms, &step.slide),
        ] {
            if value == 0 || value % input_slide != 0 {
                let span = field.as_ref().map_or(step.op.span(), Spanned::span);
                let what = if input_slide == self.batch_ms {
                    "the batch interval".to_owned()
                } else {
                    "the slide of the windowed stream it reads".to_owned()
                };
                return Err(self.error(
                    span,
                    format!("steps[{i}].{name}"),
                    format!("must be a multiple of {what} ({input_slide} ms), got {value} ms"),
                ));
            }
        }
        Ok(WindowSpec {
            length_ms,
            slide_ms,
        })
    }

    fn existing_file(&self, path: &Spanned<String>, field: String) -> Result<PathBuf, ConfigError> {
        let full = self.pipeline.base_dir().join(path.get_ref());
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

    /// The step's Wasm combiner, checked against the values it will combine.
    fn combiner(
        &mut self,
        i: usize,
        step: &StepSpec,
        input: &StreamType,
    ) -> Result<Combine, ConfigError> {
        let operator = self.plugin_operator(i, step, OperatorKind::Combiner)?;
        let plugin = step.plugin.as_ref().expect("plugin_operator checked it");
        self.check_combined_type(i, operator, plugin, "plugin", input)?;
        Ok(Combine::Wasm(operator))
    }

    /// Refuses a combiner declaring a value type other than the one it will combine.
    fn check_combined_type(
        &self,
        i: usize,
        operator: usize,
        plugin: &Spanned<String>,
        field: &str,
        input: &StreamType,
    ) -> Result<(), ConfigError> {
        let info = &self.operators[operator].info;
        match info.value_type {
            Some(wanted) if Shape::from(wanted) != input.value => Err(self.error(
                plugin.span(),
                format!("steps[{i}].{field}"),
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
    fn plugin_operator(
        &mut self,
        i: usize,
        step: &StepSpec,
        kind: OperatorKind,
    ) -> Result<usize, ConfigError> {
        let plugin = step.plugin.as_ref().ok_or_else(|| {
            self.error(
                step.op.span(),
                format!("steps[{i}].plugin"),
                format!(
                    "{} needs `plugin` (a {} operator)",
                    step.op.get_ref().name(),
                    kind.world()
                ),
            )
        })?;
        self.load_operator(i, step, plugin, &step.params, "plugin", kind)
    }

    fn load_operator(
        &mut self,
        i: usize,
        step: &StepSpec,
        plugin: &Spanned<String>,
        params: &Spanned<toml::Table>,
        plugin_field: &str,
        kind: OperatorKind,
    ) -> Result<usize, ConfigError> {
        let pipeline = self.pipeline;
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
        let Some(NarrowStep::Wasm { operator, .. }) = input.narrow.last() else {
            return;
        };
        if let Some(monoid) = self.operators[combiner].info.monoid {
            self.operators[*operator].spec.output_combine = Some(monoid);
            input.map_side = MapSide::PreCombined;
        }
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
        let path: PathBuf = pipeline.base_dir().join(reference);
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
