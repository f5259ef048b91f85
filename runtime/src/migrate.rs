//! `spate migrate`: the way forward when a state operator changes its state layout. The newest
//! checkpoint's state of one map-with-state or update-state-by-key step is converted by a
//! one-shot migration operator (a state operator declaring the new schema version, called once
//! per key with the old state) and the checkpoint is rewritten for the new pipeline, so that
//! `spate run` resumes with the converted state. The old checkpoint file is kept beside it.

use crate::checkpoint::{self, compat};
use crate::exec::NodeKind;
use crate::ops::keyed_state::{KeyedStates, STATE_OPERATOR};
use crate::plan::Plan;
use crate::state::{downcast, lock};
use crate::wasm::{
    ComponentCache, EngineSettings, Grants, Limits, OperatorHost, OperatorInstance, OperatorKind,
    OperatorSpec, PluginOrigin, PreparedOperator,
};
use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;

/// Keys per call of the migration operator.
const CHUNK: usize = 16_384;

/// Converts the state of step `step` (its stream name) in the newest checkpoint of `plan`'s
/// checkpoint directory with the migration operator `plugin`; returns a report line.
pub fn migrate(plan: &Plan, step: &str, plugin: &Path, cache: &ComponentCache) -> Result<String> {
    let settings =
        plan.job.checkpoint.as_ref().ok_or_else(|| {
            anyhow!("the pipeline has no `job.checkpoint-dir`: nothing to migrate")
        })?;
    let _lock = checkpoint::lock_dir(&settings.dir)?;
    let (found, _) = checkpoint::newest_valid(&settings.dir);
    let found =
        found.ok_or_else(|| anyhow!("no valid checkpoint in {}", settings.dir.display()))?;
    let (node, operator) = state_step(plan, step)?;
    let operators = &plan.dataflow.operators;
    let target = operators[operator].info.schema_version.unwrap_or(0);
    // Which state operator this is, among the plan's (the checkpoint lists them in that order).
    let rank = operators[..operator]
        .iter()
        .filter(|o| o.info.schema_version.is_some())
        .count();
    let mut old = found.metadata.clone();
    let stamp = old
        .operators
        .iter_mut()
        .filter(|o| o.schema_version.is_some())
        .nth(rank)
        .ok_or_else(|| anyhow!("the checkpoint has no state operator for step '{step}'"))?;
    let from = stamp.schema_version.unwrap_or(0);
    if from == target {
        bail!("step '{step}': the checkpoint's state already has schema version {target}");
    }
    // Everything else must fit as it is: checked as if this step were migrated already.
    stamp.schema_version = Some(target);
    let (layout, stamps) = (plan.state_layout(), plan.operator_stamps());
    let current = compat::Current {
        job: &plan.job.name,
        layout: &layout,
        operators: &stamps,
    };
    compat::check(&old, &current).map_err(|why| {
        anyhow!(
            "checkpoint {} cannot be migrated for this pipeline: {why}",
            found.path.display()
        )
    })?;
    let mut migration = migration_instance(plugin, cache, target)?;
    let mut state = plan.dataflow.new_state(found.metadata.batch_time)?;
    state.restore(&found.state)?;
    let parts = &downcast::<KeyedStates>(state.of(node))?.parts;
    let (mut kept, mut dropped) = (0, 0);
    for part in parts {
        let (k, d) = lock(part).migrate(found.metadata.batch_time, CHUNK, |input| {
            migration.update(input)
        })?;
        kept += k;
        dropped += d;
    }
    let backup = found.path.with_extension("spc.pre-migration");
    std::fs::copy(&found.path, &backup)
        .with_context(|| format!("cannot keep a copy of {}", found.path.display()))?;
    let mut metadata = found.metadata.clone();
    metadata.operators = stamps;
    let path = checkpoint::write(&settings.dir, &metadata, &state.encode())?;
    Ok(format!(
        "migrated the state of step '{step}' from schema version {from} to {target} with {}: \
         {kept} keys converted, {dropped} dropped; {} rewritten (the previous one is kept as {})",
        plugin.display(),
        path.display(),
        backup.display()
    ))
}

/// The node and state operator of the state step writing stream `step`.
fn state_step(plan: &Plan, step: &str) -> Result<(usize, usize)> {
    let mut names = Vec::new();
    let dataflow = &plan.dataflow;
    for (index, node) in dataflow.nodes.iter().enumerate() {
        let NodeKind::Keyed { op, .. } = &node.kind else {
            continue;
        };
        if let Some((_, operator)) = op
            .operators()
            .into_iter()
            .find(|(role, _)| *role == STATE_OPERATOR)
        {
            let name = &dataflow.streams[node.outputs[0]].name;
            if name == step {
                return Ok((index, operator));
            }
            names.push(format!("'{name}'"));
        }
    }
    bail!(
        "no map-with-state or update-state-by-key step is named '{step}' (the pipeline's: {})",
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    )
}

/// Loads the migration operator and checks it produces schema version `target`.
fn migration_instance(
    plugin: &Path,
    cache: &ComponentCache,
    target: u32,
) -> Result<crate::wasm::StateInstance> {
    let host = OperatorHost::new(&EngineSettings::default())?;
    let spec = OperatorSpec {
        name: "migration".into(),
        step: 0,
        kind: OperatorKind::State,
        plugin: PluginOrigin::File(plugin.to_owned()),
        params: Vec::new(),
        output_combine: None,
        limits: Limits::default(),
        grants: Grants::default(),
    };
    let prepared = PreparedOperator::prepare(&host, cache, spec)?;
    let produces = prepared.info.schema_version.unwrap_or(0);
    if produces != target {
        bail!(
            "the migration operator {} produces state schema version {produces}, the pipeline's \
             operator reads version {target}",
            plugin.display()
        );
    }
    match OperatorInstance::new(&prepared)? {
        OperatorInstance::State(instance) => Ok(instance),
        _ => bail!("{} is not a state operator", plugin.display()),
    }
}
