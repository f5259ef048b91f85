//! The plan as `spate check` prints it: job settings, sources, the nodes with their operators,
//! and the outputs.

use super::Plan;
use super::nodes::*;
use crate::config::{TaskFailurePolicy, Trigger};
use crate::wasm::{Limits, bytes};
use std::fmt::Write as _;

impl Plan {
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
        let _ = writeln!(out, "sources:");
        for source in &self.sources {
            let _ = writeln!(out, "  {}: {}", source.name, source.source.describe());
        }
        let _ = writeln!(
            out,
            "graph (one stage per node, run in this order each batch):"
        );
        for (n, node) in self.nodes.iter().enumerate() {
            let writes: Vec<String> = node.outputs.iter().map(|&s| self.stream_line(s)).collect();
            let _ = writeln!(out, "  stage {n}: {} -> {}", node.label, writes.join(" + "));
            self.describe_kind(&mut out, &node.kind);
        }
        let _ = writeln!(out, "outputs:");
        for output in &self.outputs {
            let stream = &self.streams[output.stream].name;
            let _ = writeln!(out, "  {}", output.output.describe(stream));
        }
        out
    }

    fn stream_line(&self, id: StreamId) -> String {
        let stream = &self.streams[id];
        let every = if stream.slide_ms == self.job.batch_interval.as_millis() as u64 {
            String::new()
        } else {
            format!(", every {} ms", stream.slide_ms)
        };
        format!("'{}' {}{every}", stream.name, stream.types)
    }

    fn describe_kind(&self, out: &mut String, kind: &NodeKind) {
        let name = |id: StreamId| self.streams[id].name.clone();
        match kind {
            NodeKind::Source(source) => {
                let _ = writeln!(
                    out,
                    "    the input blocks of source '{}'",
                    self.sources[*source].name
                );
            }
            NodeKind::Narrow { input, steps } => {
                let _ = writeln!(out, "    one task per partition of '{}':", name(*input));
                self.describe_narrow(out, steps);
            }
            NodeKind::Union(inputs) => {
                let names: Vec<String> = inputs.iter().map(|&s| name(s)).collect();
                let _ = writeln!(out, "    the partitions of {}", names.join(", "));
            }
            NodeKind::Global { input, op } => {
                let what = match op {
                    GlobalOp::Count => "count the records".to_owned(),
                    GlobalOp::Reduce(c) => {
                        format!("reduce every value with {}", self.combine_name(*c))
                    }
                    GlobalOp::Window(w) => format!("window of {}", window(w)),
                    GlobalOp::CountByWindow(w) => format!("count over a window of {}", window(w)),
                    GlobalOp::ReduceByWindow(c, w) => format!(
                        "reduce with {} over a window of {}",
                        self.combine_name(*c),
                        window(w)
                    ),
                };
                let _ = writeln!(out, "    {what} of '{}'", name(*input));
                if let GlobalOp::Reduce(Combine::Wasm(o))
                | GlobalOp::ReduceByWindow(Combine::Wasm(o), _) = op
                {
                    let _ = writeln!(out, "    combiner: {}", self.operator_line(*o));
                }
            }
            NodeKind::Keyed {
                inputs,
                partitions,
                op,
            } => {
                for input in inputs {
                    let map_side = match input.map_side {
                        MapSide::Combine(c) => format!(
                            "map-side combine with {}, then hash of key",
                            self.combine_name(c)
                        ),
                        MapSide::PreCombined if self.deferring_operator(input).is_some() => {
                            "pre-combined by the transform over all of the task's partitions, \
                             then hash of key"
                                .into()
                        }
                        MapSide::PreCombined => {
                            "pre-combined by the transform, then hash of key".into()
                        }
                        MapSide::Hash => "hash of key".into(),
                        MapSide::Deal => "dealt out evenly".into(),
                        MapSide::CountValues => "count per value, then hash of value".into(),
                    };
                    let tasks = match self.deferring_operator(input) {
                        Some(_) => "one task per worker over its partitions of",
                        None => "one task per partition of",
                    };
                    let _ = writeln!(
                        out,
                        "    map side, {tasks} '{}': {map_side} -> {partitions} partitions",
                        name(input.stream)
                    );
                    self.describe_narrow(out, &input.narrow);
                }
                let reduce = match op {
                    KeyedOp::Reduce(c) => format!("combine per key with {}", self.combine_name(*c)),
                    KeyedOp::Group => "group values per key".into(),
                    KeyedOp::Pass => "records as they are".into(),
                    KeyedOp::Join(kind) => format!(
                        "{} by key",
                        match kind {
                            JoinKind::Inner => "join",
                            JoinKind::LeftOuter => "left outer join",
                            JoinKind::RightOuter => "right outer join",
                            JoinKind::FullOuter => "full outer join",
                        }
                    ),
                    KeyedOp::Cogroup => "cogroup by key".into(),
                    KeyedOp::WindowReduce {
                        combine,
                        inverse,
                        window: w,
                    } => format!(
                        "combine per key with {} over a window of {}, {}",
                        self.combine_name(*combine),
                        window(w),
                        match inverse {
                            Some(inv) =>
                                format!("incrementally (inverse {})", self.combine_name(*inv)),
                            None => "recombining the window's batches".into(),
                        }
                    ),
                    KeyedOp::State { mode, initial, .. } => format!(
                        "{}{}",
                        match mode {
                            StateMode::UpdateAll =>
                                "update-state-by-key: every key in state each batch".to_owned(),
                            StateMode::MapWithState { timeout_ms } => format!(
                                "map-with-state: keys with new data{}",
                                timeout_ms
                                    .map(|t| format!(", timeout {t} ms"))
                                    .unwrap_or_default()
                            ),
                        },
                        initial
                            .as_ref()
                            .map(|p| format!(", initial state from {}", p.display()))
                            .unwrap_or_default()
                    ),
                    KeyedOp::EventWindow {
                        combine,
                        window: w,
                        lateness_ms,
                    } => format!(
                        "combine per key with {} per event-time window of {}, watermark = newest event time - {lateness_ms} ms",
                        self.combine_name(*combine),
                        window(w)
                    ),
                };
                let _ = writeln!(out, "    reduce side, {partitions} tasks: {reduce}");
                if let KeyedOp::State { operator, .. } = op {
                    let _ = writeln!(out, "    state operator: {}", self.operator_line(*operator));
                }
                for c in keyed_combiners(op) {
                    let _ = writeln!(out, "    combiner: {}", self.operator_line(c));
                }
            }
        }
    }

    fn describe_narrow(&self, out: &mut String, steps: &[NarrowStep]) {
        for step in steps {
            let _ = match step {
                NarrowStep::Wasm { operator, op } => {
                    writeln!(
                        out,
                        "      {}: {}",
                        op.name(),
                        self.operator_line(*operator)
                    )
                }
                NarrowStep::AssignTimestamps(f) => writeln!(
                    out,
                    "      assign-timestamps: field {} (separator {:?}) in {}",
                    f.field,
                    f.separator,
                    match f.unit {
                        crate::config::TimeUnit::Ms => "ms",
                        crate::config::TimeUnit::S => "s",
                    }
                ),
            };
        }
    }

    fn combine_name(&self, combine: Combine) -> String {
        match combine {
            Combine::Wasm(o) => format!("'{}'", self.operators[o].spec.name),
            Combine::SumI64 => "the host's i64 sum".into(),
            Combine::SubI64 => "the host's i64 subtraction".into(),
        }
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
            "'{}' [plugin {}, {} KiB, exports {}] {} ({params}{combine})\n        \
             grants: {}\n        limits: {}",
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

/// The Wasm combiners of a keyed op.
fn keyed_combiners(op: &KeyedOp) -> Vec<usize> {
    let combines = match op {
        KeyedOp::Reduce(c) | KeyedOp::EventWindow { combine: c, .. } => vec![*c],
        KeyedOp::WindowReduce {
            combine, inverse, ..
        } => std::iter::once(*combine).chain(*inverse).collect(),
        _ => Vec::new(),
    };
    combines
        .into_iter()
        .filter_map(|c| match c {
            Combine::Wasm(o) => Some(o),
            _ => None,
        })
        .collect()
}

fn window(w: &WindowSpec) -> String {
    format!("{} ms sliding every {} ms", w.length_ms, w.slide_ms)
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
