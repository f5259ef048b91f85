//! From `[job.limits]`, `[steps.limits]` and `[steps.grants]` to each operator's limits and
//! grants: step fields override job fields, which override the defaults.

use super::schema::{DirMode, LimitsTable, StepSpec};
use super::{ConfigError, Pipeline};
use crate::wasm::{DirGrant, Grants, Limits};
use std::time::Duration;

/// Limits with every cap lifted, for `enforce-limits = false`. Memory stays bounded by the
/// engine's slot size.
pub const UNLIMITED: Limits = Limits {
    memory: 1 << 30,
    table_elements: 1 << 20,
    call_time: Duration::from_secs(365 * 24 * 3600),
    fuel: None,
    output_records: usize::MAX,
    output_bytes: usize::MAX,
    log_bytes: 16 << 10,
};

fn overlay(base: Limits, table: &LimitsTable) -> Limits {
    Limits {
        memory: table.memory.map_or(base.memory, |m| m.get()),
        table_elements: table.table_elements.unwrap_or(base.table_elements),
        call_time: table.call_time.map_or(base.call_time, |t| t.0),
        fuel: table.fuel.or(base.fuel),
        output_records: table.output_records.unwrap_or(base.output_records),
        output_bytes: table.output_bytes.map_or(base.output_bytes, |b| b.get()),
        log_bytes: table.log_bytes.map_or(base.log_bytes, |b| b.get()),
    }
}

impl Pipeline {
    /// The limits of the operator of `step` (capped by the policy, if any).
    pub fn limits(&self, step: &StepSpec) -> Limits {
        let requested = self.requested_limits(step);
        self.capped(requested, [&self.file.job.limits, &step.limits])
    }

    /// The limits the file asks for the operator of `step`.
    pub fn requested_limits(&self, step: &StepSpec) -> Limits {
        let job = &self.file.job;
        if !job.enforce_limits {
            return UNLIMITED;
        }
        overlay(overlay(Limits::default(), &job.limits), &step.limits)
    }

    /// The grants of the operator of step `index`, with directories checked to exist.
    pub fn grants(&self, index: usize, step: &StepSpec) -> Result<Grants, ConfigError> {
        let mut dirs = Vec::new();
        for (d, dir) in step.grants.dirs.iter().enumerate() {
            let field = format!("steps[{index}].grants.dirs[{d}].path");
            let host = self
                .pipeline_relative(dir.path.get_ref())
                .map_err(|e| self.error_at(dir.path.span(), &field, e))?;
            if !host.is_dir() {
                return Err(self.error_at(
                    dir.path.span(),
                    &field,
                    format!("granted directory '{}' does not exist", host.display()),
                ));
            }
            let guest = match &dir.guest_path {
                Some(path) if path.starts_with('/') => path.clone(),
                Some(path) => {
                    return Err(self.error_at(
                        dir.path.span(),
                        &format!("steps[{index}].grants.dirs[{d}].guest-path"),
                        format!("must be absolute (like \"/data\"), got '{path}'"),
                    ));
                }
                None => {
                    let name = host
                        .canonicalize()
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .unwrap_or_else(|| "data".to_owned());
                    format!("/{name}")
                }
            };
            dirs.push(DirGrant {
                host,
                guest,
                writable: dir.mode == DirMode::ReadWrite,
            });
        }
        Ok(Grants {
            dirs,
            clocks: step.grants.clocks,
            random: step.grants.random,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::{ByteSize, Interval};

    #[test]
    fn step_limits_override_job_limits_field_by_field() {
        let job = LimitsTable {
            memory: Some(ByteSize(64 << 20)),
            call_time: Some(Interval(Duration::from_secs(2))),
            ..LimitsTable::default()
        };
        let step = LimitsTable {
            memory: Some(ByteSize(128 << 20)),
            ..LimitsTable::default()
        };
        let limits = overlay(overlay(Limits::default(), &job), &step);
        assert_eq!(limits.memory, 128 << 20);
        assert_eq!(limits.call_time, Duration::from_secs(2));
        assert_eq!(limits.output_records, Limits::default().output_records);
    }
}
