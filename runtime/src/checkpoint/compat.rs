//! Whether a checkpoint's state fits the plan being run: the layout of the state (which
//! stateful nodes, in which order, with which partitions and windows) must be the same, and a
//! state operator whose code changed must declare the same state schema version. Operators
//! without state may change freely. Anything else is refused with what changed and the options.

use super::{Metadata, OperatorStamp};
use crate::plan::{GlobalOp, KeyedOp, NodeKind, Plan, StateMode, WindowSpec};

/// The stateful nodes, in state order, each described by its stream and what its state holds,
/// after the batch interval they were computed with (windows and timeouts count batches).
/// Steps are told apart by their stream names: naming steps (`name = ...`) keeps their state
/// when other steps are added before them, as Flink's operator uids do.
pub fn layout(plan: &Plan) -> Vec<String> {
    let nodes: Vec<String> = plan
        .nodes
        .iter()
        .filter_map(|node| {
            let what = state_kind(&node.kind)?;
            Some(format!("'{}': {what}", plan.streams[node.outputs[0]].name))
        })
        .collect();
    if nodes.is_empty() {
        return nodes;
    }
    let interval = format!("batch interval {} ms", plan.job.batch_interval.as_millis());
    std::iter::once(interval).chain(nodes).collect()
}

fn window(w: &WindowSpec) -> String {
    format!("window {} ms sliding {} ms", w.length_ms, w.slide_ms)
}

fn state_kind(kind: &NodeKind) -> Option<String> {
    Some(match kind {
        NodeKind::Keyed { partitions, op, .. } => {
            let what = match op {
                KeyedOp::WindowReduce {
                    inverse, window: w, ..
                } => format!(
                    "reduce-by-key-and-window, {}, {} inverse",
                    window(w),
                    if inverse.is_some() { "with" } else { "without" }
                ),
                KeyedOp::State { mode, .. } => match mode {
                    StateMode::UpdateAll => "update-state-by-key".to_owned(),
                    StateMode::MapWithState { .. } => "map-with-state".to_owned(),
                },
                KeyedOp::EventWindow {
                    window: w,
                    lateness_ms,
                    ..
                } => format!(
                    "event-time-window, {}, lateness {lateness_ms} ms",
                    window(w)
                ),
                _ => return None,
            };
            format!("{what}, {partitions} partitions")
        }
        NodeKind::Global { op, .. } => match op {
            GlobalOp::Window(w) => format!("window, {}", window(w)),
            GlobalOp::CountByWindow(w) => format!("count-by-window, {}", window(w)),
            GlobalOp::ReduceByWindow(_, w) => format!("reduce-by-window, {}", window(w)),
            _ => return None,
        },
        _ => return None,
    })
}

/// A short fingerprint of a layout.
pub fn fingerprint(layout: &[String]) -> String {
    let hash = blake3::hash(layout.join("\n").as_bytes());
    hash.to_hex()[..16].to_owned()
}

/// The plan's operators as a checkpoint records them, in plan order.
pub fn stamps(plan: &Plan) -> Vec<OperatorStamp> {
    plan.operators
        .iter()
        .map(|op| OperatorStamp {
            name: op.spec.to_string(),
            step: format!("step {} '{}'", op.spec.step, op.spec.name),
            hash: op.hash.clone(),
            schema_version: op.info.schema_version,
        })
        .collect()
}

const OPTIONS: &str = "to convert the old state, run `spate migrate <pipeline> --step <name> \
     --with <migration operator>` first; to start over without it, run with --fresh (the \
     checkpoint directory is moved aside, not deleted); or run the previous version";

/// Checks a checkpoint against `plan`. Ok holds notices of accepted changes (to be logged);
/// Err the refusal, saying what changed and the options.
pub fn check(old: &Metadata, plan: &Plan) -> Result<Vec<String>, String> {
    if old.job != plan.job.name {
        return Err(format!(
            "it belongs to job '{}', not '{}': give each job its own checkpoint directory \
             (or, if the job was renamed, set `job.name` back)",
            old.job, plan.job.name
        ));
    }
    let layout = layout(plan);
    if old.layout != layout {
        let mut changes = Vec::new();
        for i in 0..old.layout.len().max(layout.len()) {
            let (was, now) = (old.layout.get(i), layout.get(i));
            if was != now {
                let show = |s: Option<&String>| s.map_or("nothing".to_owned(), |s| s.to_owned());
                changes.push(format!("was {}, is now {}", show(was), show(now)));
            }
        }
        return Err(format!(
            "the pipeline's state layout changed since the checkpoint ({}); {OPTIONS}",
            changes.join("; ")
        ));
    }
    let mut notices = Vec::new();
    let new = stamps(plan);
    let state_ops = |s: &[OperatorStamp]| -> Vec<OperatorStamp> {
        s.iter()
            .filter(|o| o.schema_version.is_some())
            .cloned()
            .collect()
    };
    for (was, now) in state_ops(&old.operators).iter().zip(state_ops(&new)) {
        if was.hash == now.hash {
            continue;
        }
        if was.schema_version != now.schema_version {
            return Err(format!(
                "the state operator of {} changed its state schema version from {} to {} \
                 (the checkpoint's state was written by {}); {OPTIONS}",
                now.name,
                was.schema_version.unwrap_or(0),
                now.schema_version.unwrap_or(0),
                was.name
            ));
        }
        notices.push(format!(
            "the state operator of {} changed (code {} -> {}) with the same state schema \
             version {}: it resumes with its state",
            now.name,
            was.hash,
            now.hash,
            now.schema_version.unwrap_or(0)
        ));
    }
    for (i, now) in new.iter().enumerate() {
        // The same step's operators pair up in order (a window step has a combiner and its
        // inverse).
        let nth = new[..i].iter().filter(|o| o.step == now.step).count();
        let was = old.operators.iter().filter(|o| o.step == now.step).nth(nth);
        if let Some(was) = was
            && now.schema_version.is_none()
            && was.hash != now.hash
        {
            notices.push(format!(
                "{} changed (code {} -> {}); it keeps no state, so its new code simply runs",
                now.name, was.hash, now.hash
            ));
        }
    }
    Ok(notices)
}
