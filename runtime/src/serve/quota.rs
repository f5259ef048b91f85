//! What each tenant's jobs have consumed, and the quotas that stop (or pause) them: per tenant,
//! summed over its jobs since the server started, from the figures each job reports per batch.

use crate::status::JobSnapshot;
use serde::{Deserialize, Serialize};

/// A tenant's usage.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TenantUsage {
    /// The tenant.
    pub tenant: String,
    /// Its jobs that run now.
    pub running_jobs: u64,
    /// Batches its jobs completed.
    pub batches: u64,
    /// Operator calls.
    pub calls: u64,
    /// Time inside operator calls, seconds (summed over workers).
    pub wasm_seconds: f64,
    /// Fuel burnt (jobs with fuel metering).
    pub fuel: u64,
    /// The largest linear memory any of its instances had, bytes.
    pub peak_memory: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls that hit a limit.
    pub limit_hits: u64,
    /// Records read from its sources.
    pub input_records: u64,
    /// Input bytes read from its sources.
    pub input_bytes: u64,
    /// Records its jobs handed to their outputs.
    pub output_records: u64,
}

impl TenantUsage {
    /// Adds what job `snapshot` has done.
    pub fn add(&mut self, snapshot: &JobSnapshot) {
        let t = &snapshot.totals;
        self.batches += snapshot.batches_done;
        self.calls += t.wasm_calls;
        self.wasm_seconds += t.wasm_ms / 1000.0;
        self.fuel += t.fuel;
        self.peak_memory = self.peak_memory.max(t.peak_memory);
        self.traps += t.traps;
        self.limit_hits += t.limit_hits;
        self.input_records += t.source_records.iter().sum::<u64>();
        self.input_bytes += t.source_bytes.iter().sum::<u64>();
        self.output_records += t.output_records;
    }
}

/// `[tenants.quota]` (or `[defaults.quota]`): the most a tenant's jobs may consume together
/// since the server started.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Quota {
    /// Operator calls.
    pub calls: Option<u64>,
    /// Seconds inside operator calls.
    pub wasm_seconds: Option<f64>,
    /// Fuel (counts only for jobs that meter fuel: a policy with a fuel cap meters all).
    pub fuel: Option<u64>,
    /// Traps.
    pub traps: Option<u64>,
    /// Records read.
    pub input_records: Option<u64>,
    /// Records written.
    pub output_records: Option<u64>,
    /// What happens to the tenant's running jobs when the quota is exceeded.
    #[serde(default)]
    pub on_exceed: OnExceed,
}

/// What a quota exceeded does.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnExceed {
    /// The jobs stop gracefully (a last checkpoint) and stay stopped.
    #[default]
    Stop,
    /// The jobs stop gracefully and are started again when the server next starts (its
    /// usage counts from zero then), e.g. by a nightly restart.
    Pause,
}

impl Quota {
    /// The first limit `usage` is over, in words, if any.
    pub fn exceeded(&self, usage: &TenantUsage) -> Option<String> {
        let over = |name: &str, used: f64, most: Option<f64>| {
            most.filter(|most| used > *most)
                .map(|most| format!("quota exceeded: {name} {used} of {most}"))
        };
        over("calls", usage.calls as f64, self.calls.map(|n| n as f64))
            .or_else(|| {
                over(
                    "wasm-seconds",
                    (usage.wasm_seconds * 1000.0).round() / 1000.0,
                    self.wasm_seconds,
                )
            })
            .or_else(|| over("fuel", usage.fuel as f64, self.fuel.map(|n| n as f64)))
            .or_else(|| over("traps", usage.traps as f64, self.traps.map(|n| n as f64)))
            .or_else(|| {
                over(
                    "input-records",
                    usage.input_records as f64,
                    self.input_records.map(|n| n as f64),
                )
            })
            .or_else(|| {
                over(
                    "output-records",
                    usage.output_records as f64,
                    self.output_records.map(|n| n as f64),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_limit_over_is_named() {
        let quota = Quota {
            calls: Some(10),
            wasm_seconds: Some(1.5),
            ..Quota::default()
        };
        let mut usage = TenantUsage {
            calls: 10,
            wasm_seconds: 1.5,
            ..TenantUsage::default()
        };
        assert_eq!(quota.exceeded(&usage), None, "at the limit is not over it");
        usage.wasm_seconds = 2.0;
        assert_eq!(
            quota.exceeded(&usage).as_deref(),
            Some("quota exceeded: wasm-seconds 2 of 1.5")
        );
        usage.calls = 11;
        assert!(quota.exceeded(&usage).unwrap().contains("calls 11 of 10"));
    }
}
