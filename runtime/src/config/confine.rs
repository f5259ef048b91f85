//! A pipeline read under a [`Policy`]: the checks of the whole file (tenant, limits, workers,
//! the UI, connector types, grants) when the policy is applied, and the one door every path,
//! endpoint and secret of the file goes through, so that connectors and operators get only
//! what the policy allows, with an error naming the field when they ask for more.

use super::policy::{ExplicitLimits, Policy};
use super::schema::LimitsTable;
use super::{ConfigError, Pipeline};
use crate::secret::SecretRef;
use crate::wasm::Limits;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

impl Pipeline {
    /// Puts the pipeline under `policy`: refuses what it may not ask for, naming the field,
    /// and takes the tenant and paths the policy says.
    pub fn confine_to(&mut self, policy: Arc<Policy>) -> Result<(), ConfigError> {
        let job = &self.file.job;
        if let Some(tenant) = &policy.tenant
            && job.tenant.as_ref().is_some_and(|t| t != tenant)
        {
            return Err(self.error(
                Some("job.tenant"),
                format!(
                    "this job runs for tenant '{tenant}'; a pipeline cannot name another \
                         (remove the field)"
                ),
            ));
        }
        if job.cpu_weight != 1.0 && job.cpu_weight != policy.cpu_weight {
            return Err(self.error(
                Some("job.cpu-weight"),
                format!(
                    "the tenant's CPU weight is the platform's ({}): a pipeline cannot set it",
                    policy.cpu_weight
                ),
            ));
        }
        if !job.enforce_limits {
            return Err(self.error(
                Some("job.enforce-limits"),
                "cannot be switched off under a policy: operators always run with limits",
            ));
        }
        if self.file.ui.is_some() {
            return Err(self.error(
                Some("ui"),
                "the web UI is the platform's: a pipeline under a policy cannot set it",
            ));
        }
        if let Some(most) = policy.max_workers
            && job.workers > most
        {
            return Err(self.error(
                Some("job.workers"),
                format!("{} is over the policy's cap of {most}", job.workers),
            ));
        }
        if let Some(most) = policy.max_buffered_bytes
            && job.max_buffered_bytes.0 > most.0
        {
            return Err(self.error(
                Some("job.max-buffered-bytes"),
                format!(
                    "{} is over the policy's cap of {most}",
                    job.max_buffered_bytes
                ),
            ));
        }
        if let Some(asked) = job.max_state_bytes
            && asked.0 > policy.max_state_bytes.0
        {
            return Err(self.error(
                Some("job.max-state-bytes"),
                format!(
                    "{asked} is over the policy's cap of {}",
                    policy.max_state_bytes
                ),
            ));
        }
        for (name, table) in &self.file.sources {
            policy.source_type(table.kind.get_ref()).map_err(|e| {
                self.error_at(table.kind.span(), &format!("sources.{name}.type"), e)
            })?;
        }
        for (i, table) in self.file.outputs.iter().enumerate() {
            policy
                .output_type(table.kind.get_ref())
                .map_err(|e| self.error_at(table.kind.span(), &format!("outputs[{i}].type"), e))?;
        }
        for (i, step) in self.file.steps.iter().enumerate() {
            if step.grants.clocks && !policy.clock_grants {
                return Err(self.error(
                    Some(&format!("steps[{i}].grants.clocks")),
                    "the policy does not grant the host's clocks to operators",
                ));
            }
            if step.grants.random && !policy.random_grants {
                return Err(self.error(
                    Some(&format!("steps[{i}].grants.random")),
                    "the policy does not grant real randomness to operators",
                ));
            }
            let limits = self.requested_limits(step);
            let explicit = explicit(&[&job.limits, &step.limits]);
            policy.cap(limits, &explicit).map_err(|e| {
                let table = if explicit_in(&step.limits) {
                    format!("steps[{i}].limits")
                } else {
                    "job.limits".to_owned()
                };
                self.error(Some(&table), e)
            })?;
        }
        // Paths of the job table, taken from the data root from now on.
        let name = self.job_name();
        let confine = |field: &str, raw: &str| {
            policy
                .confine(raw)
                .map(|p| p.display().to_string())
                .map_err(|e| self.error(Some(field), e))
        };
        let dead_letters = confine(
            "job.dead-letter-dir",
            job.dead_letter_dir
                .as_deref()
                .unwrap_or(&format!("dead-letters/{name}")),
        )?;
        let checkpoints = job
            .checkpoint_dir
            .as_deref()
            .map(|dir| confine("job.checkpoint-dir", dir))
            .transpose()?;
        let tenant = policy.tenant.clone().or_else(|| job.tenant.clone());
        // A consumer group is shared by everyone on the brokers: a tenant's must be its own.
        let own = format!("spate.{}.", tenant.as_deref().unwrap_or(&name));
        if let Some(group) = job.group.as_ref().filter(|g| !g.starts_with(&own)) {
            return Err(self.error(
                Some("job.group"),
                format!(
                    "'{group}' is not this tenant's: under the platform policy it must start \
                     with '{own}'"
                ),
            ));
        }
        let job = &mut self.file.job;
        job.dead_letter_dir = Some(dead_letters);
        job.checkpoint_dir = checkpoints;
        job.tenant = tenant;
        job.cpu_weight = policy.cpu_weight;
        job.max_state_bytes = job.max_state_bytes.or(Some(policy.max_state_bytes));
        if let Some(most) = policy.max_workers {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            if job.workers == 0 {
                job.workers = cores.min(most).max(1);
            }
        }
        self.policy = Some(policy);
        Ok(())
    }

    /// The policy the pipeline is under, if any.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_deref()
    }

    /// Where a path of the file (field `field`, at `span`) is on the host: as written
    /// (relative to the working directory) without a policy; inside the data root with one.
    pub fn host_path(
        &self,
        span: Range<usize>,
        field: &str,
        raw: &str,
    ) -> Result<PathBuf, ConfigError> {
        match &self.policy {
            None => Ok(PathBuf::from(raw)),
            Some(policy) => policy
                .confine(raw)
                .map_err(|e| self.error_at(span, field, e)),
        }
    }

    /// A file the pipeline reads that is named relative to the pipeline file (a plugin, a
    /// grant, an initial state): under a policy it must be inside the data root or the
    /// pipeline file's own directory (where `spate serve` keeps a job's uploaded plugins).
    pub fn pipeline_relative(&self, raw: &str) -> Result<PathBuf, String> {
        let full = self.base_dir().join(raw);
        let Some(policy) = &self.policy else {
            return Ok(full);
        };
        if Path::new(raw)
            .components()
            .any(|c| c == Component::ParentDir)
        {
            return Err(format!(
                "'{raw}' contains `..`: paths must stay inside the data root"
            ));
        }
        let own = self.base_dir().canonicalize().ok();
        match full.canonicalize() {
            Ok(real) if own.as_ref().is_some_and(|own| real.starts_with(own)) => Ok(full),
            _ => policy.confine(&full.display().to_string()),
        }
    }

    /// Whether the pipeline may connect to `host:port` (field `field`, at `span`).
    pub fn endpoint(
        &self,
        span: Range<usize>,
        field: &str,
        host: &str,
        port: u16,
    ) -> Result<(), ConfigError> {
        match &self.policy {
            None => Ok(()),
            Some(policy) => policy
                .endpoint(host, port)
                .map_err(|e| self.error_at(span, field, e)),
        }
    }

    /// A secret of the file as it may be read: under a policy, only from a variable the policy
    /// names or from a file inside the data root.
    pub fn secret(
        &self,
        span: Range<usize>,
        field: &str,
        secret: &SecretRef,
    ) -> Result<SecretRef, ConfigError> {
        let Some(policy) = &self.policy else {
            return Ok(secret.clone());
        };
        let mut allowed = secret.clone();
        if let Some(var) = &secret.env
            && !policy.secret_env.contains(var)
        {
            return Err(self.error_at(
                span,
                field,
                format!(
                    "environment variable {var} is not one the policy lets pipelines read \
                         (secret-env); put the secret in a file in the data root"
                ),
            ));
        }
        if let Some(file) = &secret.file {
            let path = policy
                .confine(file)
                .map_err(|e| self.error_at(span, field, e))?;
            allowed.file = Some(path.display().to_string());
        }
        Ok(allowed)
    }

    /// `limits` capped by the policy (already checked when it was applied).
    pub(super) fn capped(&self, limits: Limits, tables: [&LimitsTable; 2]) -> Limits {
        match &self.policy {
            None => limits,
            Some(policy) => policy.cap(limits, &explicit(&tables)).unwrap_or(limits),
        }
    }
}

/// Which fields of the limits tables (job's, step's) are set.
fn explicit(tables: &[&LimitsTable]) -> ExplicitLimits {
    let any = |f: fn(&LimitsTable) -> bool| tables.iter().any(|t| f(t));
    ExplicitLimits {
        memory: any(|t| t.memory.is_some()),
        table_elements: any(|t| t.table_elements.is_some()),
        call_time: any(|t| t.call_time.is_some()),
        output_records: any(|t| t.output_records.is_some()),
        output_bytes: any(|t| t.output_bytes.is_some()),
        log_bytes: any(|t| t.log_bytes.is_some()),
    }
}

/// Whether a limits table sets anything.
fn explicit_in(table: &LimitsTable) -> bool {
    let e = explicit(&[table]);
    e.memory
        || e.table_elements
        || e.call_time
        || e.output_records
        || e.output_bytes
        || e.log_bytes
        || table.fuel.is_some()
}
