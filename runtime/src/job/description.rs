//! What the UI shows of a job that does not change while it runs: its sources' types, the plan
//! as a graph, its operators and its outputs.

use crate::config::Trigger;
use crate::exec::{NodeKind, describe_limits};
use crate::plan::Plan;
use crate::status::{GraphNode, JobDescription, OperatorDescription};
use crate::wallclock::now_ms;

/// The description of `plan`'s job, starting now.
pub fn describe(plan: &Plan) -> JobDescription {
    JobDescription {
        name: plan.job.name.clone(),
        tenant: plan.job.tenant.clone(),
        batch_interval_ms: plan.job.batch_interval.as_millis() as u64,
        trigger: match plan.job.trigger {
            Trigger::ProcessingTime => "processing-time",
            Trigger::AvailableNow => "available-now",
        }
        .to_owned(),
        sources: plan.sources.iter().map(|s| s.name.clone()).collect(),
        started_ms: now_ms(),
        source_types: plan.sources.iter().map(|s| s.kind.clone()).collect(),
        graph: graph(plan),
        operators: plan
            .dataflow
            .operators
            .iter()
            .map(|op| OperatorDescription {
                name: op.spec.name.clone(),
                plugin: op.spec.plugin.to_string(),
                hash: op.hash.clone(),
                wasm_bytes: op.wasm_bytes,
                export: op.spec.kind.export_name().to_owned(),
                description: op.info.description.clone(),
                params: op.spec.params.iter().cloned().collect(),
                grants: op.spec.grants.to_string(),
                limits: describe_limits(&op.spec.limits),
            })
            .collect(),
        outputs: plan.outputs.iter().map(|o| o.label.clone()).collect(),
    }
}

/// The dataflow's nodes, each with the nodes it reads from.
fn graph(plan: &Plan) -> Vec<GraphNode> {
    let dataflow = &plan.dataflow;
    let mut writer = vec![0; dataflow.streams.len()];
    for (n, node) in dataflow.nodes.iter().enumerate() {
        for &stream in &node.outputs {
            writer[stream] = n;
        }
    }
    dataflow
        .nodes
        .iter()
        .enumerate()
        .map(|(id, node)| {
            let (kind, partitions) = match &node.kind {
                NodeKind::Source(_) => ("source", None),
                NodeKind::Narrow { .. } => ("narrow", None),
                NodeKind::Union(_) => ("union", None),
                NodeKind::Keyed { partitions, .. } => ("keyed", Some(*partitions)),
                NodeKind::Global { .. } => ("global", None),
            };
            GraphNode {
                id,
                label: node.label.clone(),
                kind: kind.to_owned(),
                inputs: node.kind.inputs().iter().map(|&s| writer[s]).collect(),
                shuffle: partitions.is_some(),
                partitions,
                streams: node
                    .outputs
                    .iter()
                    .map(|&s| dataflow.streams[s].name.clone())
                    .collect(),
            }
        })
        .collect()
}
