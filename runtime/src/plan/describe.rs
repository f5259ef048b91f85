//! The plan as `spate check` prints it: job settings, sources, the nodes with their operators,
//! and the outputs. What a node computes is described by its op (`ops`); this file lays out
//! the rest.

use super::Plan;
use crate::config::{TaskFailurePolicy, Trigger};
use crate::exec::{Dataflow, KeyedInput, MapSide, NarrowOp, NodeKind, StreamId};
use std::fmt::Write as _;
use std::sync::Arc;

impl Plan {
    /// The plan as `spate check` prints it.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let job = &self.job;
        let dataflow = &self.dataflow;
        let tasks = &dataflow.tasks;
        let _ = writeln!(
            out,
            "job '{}' (tenant '{}'): batch interval {}, block interval {}, {} workers, trigger {}",
            job.name,
            job.tenant,
            humantime::format_duration(job.batch_interval),
            humantime::format_duration(job.block_interval),
            tasks.workers,
            match job.trigger {
                Trigger::ProcessingTime => "processing-time",
                Trigger::AvailableNow => "available-now",
            }
        );
        let _ = writeln!(
            out,
            "failed tasks: {} retries on fresh instances, then {}",
            tasks.retries,
            match tasks.on_failure {
                TaskFailurePolicy::Fail => "fail the job".to_owned(),
                TaskFailurePolicy::Skip => format!(
                    "skip the partition (its input goes to {})",
                    tasks.dead_letter_dir.display()
                ),
            }
        );
        if let Some(most) = job.max_state_bytes {
            let _ = writeln!(
                out,
                "state: at most {} of host memory (max-state-bytes); a batch leaving more fails \
                 the job",
                crate::wasm::bytes(most)
            );
        }
        let _ = writeln!(out, "sources:");
        for source in &self.sources {
            let _ = writeln!(out, "  {}: {}", source.name, source.source.describe());
        }
        let _ = writeln!(
            out,
            "graph (one stage per node, run in this order each batch):"
        );
        for (n, node) in dataflow.nodes.iter().enumerate() {
            let writes: Vec<String> = node.outputs.iter().map(|&s| self.stream_line(s)).collect();
            let _ = writeln!(out, "  stage {n}: {} -> {}", node.label, writes.join(" + "));
            self.describe_kind(&mut out, &node.kind);
        }
        let _ = writeln!(out, "outputs:");
        for output in &self.outputs {
            let stream = &dataflow.streams[output.stream].name;
            let _ = writeln!(out, "  {}", output.output.describe(stream));
        }
        out
    }

    fn stream_line(&self, id: StreamId) -> String {
        let stream = &self.dataflow.streams[id];
        let every = if stream.slide_ms == self.job.batch_interval.as_millis() as u64 {
            String::new()
        } else {
            format!(", every {} ms", stream.slide_ms)
        };
        format!("'{}' {}{every}", stream.name, stream.types)
    }

    fn describe_kind(&self, out: &mut String, kind: &NodeKind) {
        let dataflow = &self.dataflow;
        let name = |id: StreamId| dataflow.streams[id].name.clone();
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
                describe_narrow(out, dataflow, steps);
            }
            NodeKind::Union(inputs) => {
                let names: Vec<String> = inputs.iter().map(|&s| name(s)).collect();
                let _ = writeln!(out, "    the partitions of {}", names.join(", "));
            }
            NodeKind::Global { input, op } => {
                let _ = writeln!(out, "    {} of '{}'", op.describe(dataflow), name(*input));
                if let Some(o) = op.combiner() {
                    let _ = writeln!(out, "    combiner: {}", dataflow.operator_line(o));
                }
            }
            NodeKind::Keyed {
                inputs,
                partitions,
                op,
            } => {
                for input in inputs {
                    let tasks = match dataflow.deferring_operator(input) {
                        Some(_) => "one task per worker over its partitions of",
                        None => "one task per partition of",
                    };
                    let _ = writeln!(
                        out,
                        "    map side, {tasks} '{}': {} -> {partitions} partitions",
                        name(input.stream),
                        map_side(dataflow, input)
                    );
                    describe_narrow(out, dataflow, &input.narrow);
                }
                let reduce = op.describe(dataflow);
                let _ = writeln!(out, "    reduce side, {partitions} tasks: {reduce}");
                for (role, o) in op.operators() {
                    let _ = writeln!(out, "    {role}: {}", dataflow.operator_line(o));
                }
            }
        }
    }
}

/// What the map side of a shuffle does, in words.
fn map_side(dataflow: &Dataflow, input: &KeyedInput) -> String {
    match input.map_side {
        MapSide::Combine(c) => format!(
            "map-side combine with {}, then hash of key",
            dataflow.combine_name(c)
        ),
        MapSide::PreCombined if dataflow.deferring_operator(input).is_some() => {
            "pre-combined by the transform over all of the task's partitions, then hash of key"
                .into()
        }
        MapSide::PreCombined => "pre-combined by the transform, then hash of key".into(),
        MapSide::Hash => "hash of key".into(),
        MapSide::Deal => "dealt out evenly".into(),
        MapSide::CountValues => "count per value, then hash of value".into(),
    }
}

fn describe_narrow(out: &mut String, dataflow: &Dataflow, steps: &[Arc<dyn NarrowOp>]) {
    for step in steps {
        let _ = writeln!(out, "      {}", step.describe(dataflow));
    }
}
