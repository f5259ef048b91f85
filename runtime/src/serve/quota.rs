//! What each tenant's jobs have consumed, and the quotas that stop (or pause) them: per tenant,
//! summed over its jobs from the figures each job reports per batch, and kept across restarts
//! of the server (`Ledger`) until an admin resets it; per batch of each job; and what its
//! running jobs may hold at once (checked when a job is submitted).

use super::config::{Tenant, tenant_dir};
use crate::config::ByteSize;
use crate::status::{BatchSummary, Totals};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// A tenant's usage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    /// Their bytes (keys and values).
    pub output_bytes: u64,
}

impl TenantUsage {
    /// Adds what a job has done: its totals and batches completed.
    pub fn add(&mut self, (t, batches): (&Totals, u64)) {
        self.batches += batches;
        self.calls += t.wasm_calls;
        self.wasm_seconds += t.wasm_ms / 1000.0;
        self.fuel += t.fuel;
        self.peak_memory = self.peak_memory.max(t.peak_memory);
        self.traps += t.traps;
        self.limit_hits += t.limit_hits;
        self.input_records += t.source_records.iter().sum::<u64>();
        self.input_bytes += t.source_bytes.iter().sum::<u64>();
        self.output_records += t.output_records;
        self.output_bytes += t.output_bytes;
    }

    /// Each counter of `self` and `other` summed (the peak memory: the larger; running jobs:
    /// `self`'s).
    fn plus(&self, other: &TenantUsage) -> TenantUsage {
        TenantUsage {
            tenant: self.tenant.clone(),
            running_jobs: self.running_jobs,
            batches: self.batches + other.batches,
            calls: self.calls + other.calls,
            wasm_seconds: self.wasm_seconds + other.wasm_seconds,
            fuel: self.fuel + other.fuel,
            peak_memory: self.peak_memory.max(other.peak_memory),
            traps: self.traps + other.traps,
            limit_hits: self.limit_hits + other.limit_hits,
            input_records: self.input_records + other.input_records,
            input_bytes: self.input_bytes + other.input_bytes,
            output_records: self.output_records + other.output_records,
            output_bytes: self.output_bytes + other.output_bytes,
        }
    }

    /// What was counted since `baseline` (the peak memory: `self`'s).
    fn since(&self, baseline: &TenantUsage) -> TenantUsage {
        TenantUsage {
            tenant: self.tenant.clone(),
            running_jobs: self.running_jobs,
            batches: self.batches.saturating_sub(baseline.batches),
            calls: self.calls.saturating_sub(baseline.calls),
            wasm_seconds: (self.wasm_seconds - baseline.wasm_seconds).max(0.0),
            fuel: self.fuel.saturating_sub(baseline.fuel),
            peak_memory: self.peak_memory,
            traps: self.traps.saturating_sub(baseline.traps),
            limit_hits: self.limit_hits.saturating_sub(baseline.limit_hits),
            input_records: self.input_records.saturating_sub(baseline.input_records),
            input_bytes: self.input_bytes.saturating_sub(baseline.input_bytes),
            output_records: self.output_records.saturating_sub(baseline.output_records),
            output_bytes: self.output_bytes.saturating_sub(baseline.output_bytes),
        }
    }
}

/// Each tenant's usage across restarts of the server: what its earlier runs counted (kept in
/// `<data-dir>/tenants/<tenant>/usage.json`, written when it changes, at most twice a second)
/// plus what this run's jobs report, since an admin last reset it.
pub struct Ledger {
    data_dir: PathBuf,
    books: Mutex<BTreeMap<String, Book>>,
}

/// One tenant's page of the ledger.
#[derive(Default)]
struct Book {
    /// What earlier runs of the server counted (zero after a reset).
    carried: TenantUsage,
    /// What this run's jobs had reported when the usage was last reset.
    baseline: TenantUsage,
    /// What `usage.json` holds.
    saved: TenantUsage,
}

/// The file a tenant's usage is kept in.
fn usage_file(data_dir: &Path, tenant: &str) -> PathBuf {
    tenant_dir(data_dir, tenant).join("usage.json")
}

impl Ledger {
    /// The usage kept under `data_dir` for `tenants` (none yet: zero).
    pub fn load(data_dir: &Path, tenants: &[Tenant]) -> Result<Ledger> {
        let mut books = BTreeMap::new();
        for tenant in tenants {
            let path = usage_file(data_dir, &tenant.name);
            let carried: TenantUsage = match std::fs::read_to_string(&path) {
                Ok(text) => serde_json::from_str(&text)
                    .with_context(|| format!("{} is damaged", path.display()))?,
                Err(_) => TenantUsage::default(),
            };
            let book = Book {
                saved: carried.clone(),
                carried,
                baseline: TenantUsage::default(),
            };
            books.insert(tenant.name.clone(), book);
        }
        Ok(Ledger {
            data_dir: data_dir.to_owned(),
            books: Mutex::new(books),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Book>> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tenant `tenant`'s usage, given what this run's jobs report (`live`).
    pub fn total(&self, live: TenantUsage) -> TenantUsage {
        match self.lock().get(&live.tenant) {
            Some(book) => live.since(&book.baseline).plus(&book.carried),
            None => live,
        }
    }

    /// Keeps `total` (from [`Ledger::total`]) in the tenant's file if it changed.
    pub fn keep(&self, total: &TenantUsage) -> Result<()> {
        let mut books = self.lock();
        let Some(book) = books.get_mut(&total.tenant) else {
            return Ok(());
        };
        let kept = TenantUsage {
            running_jobs: 0,
            ..total.clone()
        };
        if book.saved == kept {
            return Ok(());
        }
        let path = usage_file(&self.data_dir, &total.tenant);
        let staged = path.with_extension("json.new");
        std::fs::write(&staged, serde_json::to_string_pretty(&kept)?)
            .and_then(|_| std::fs::rename(&staged, &path))
            .with_context(|| format!("cannot keep the usage in {}", path.display()))?;
        book.saved = kept;
        Ok(())
    }

    /// Counts tenant `live.tenant`'s usage from zero again (`live`: what this run's jobs
    /// report now).
    pub fn reset(&self, live: &TenantUsage) -> Result<()> {
        if let Some(book) = self.lock().get_mut(&live.tenant) {
            book.carried = TenantUsage {
                tenant: live.tenant.clone(),
                ..TenantUsage::default()
            };
            book.baseline = live.clone();
        }
        self.keep(&self.total(live.clone()))
    }
}

/// The amounts a quota can limit, by their names in `[tenants.quota]`, in the order they are
/// checked.
const MEASURES: [&str; 7] = [
    "calls",
    "wasm-seconds",
    "fuel",
    "traps",
    "input-records",
    "output-records",
    "output-bytes",
];

/// Something measured in the amounts a quota limits (a tenant's usage, one batch's figures).
pub trait Measured {
    /// Its amounts, in `MEASURES` order.
    fn amounts(&self) -> [f64; 7];
}

impl Measured for TenantUsage {
    fn amounts(&self) -> [f64; 7] {
        [
            self.calls as f64,
            self.wasm_seconds,
            self.fuel as f64,
            self.traps as f64,
            self.input_records as f64,
            self.output_records as f64,
            self.output_bytes as f64,
        ]
    }
}

impl Measured for BatchSummary {
    fn amounts(&self) -> [f64; 7] {
        [
            self.wasm_calls as f64,
            self.wasm_ms / 1000.0,
            self.fuel as f64,
            self.traps as f64,
            self.input_records as f64,
            self.output_records as f64,
            self.output_bytes as f64,
        ]
    }
}

/// The most of each amount (none: no limit).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Amounts {
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
    /// Records handed to outputs.
    pub output_records: Option<u64>,
    /// Bytes (keys and values) of the records handed to outputs.
    pub output_bytes: Option<ByteSize>,
}

impl Amounts {
    fn limits(&self) -> [Option<f64>; 7] {
        [
            self.calls.map(|n| n as f64),
            self.wasm_seconds,
            self.fuel.map(|n| n as f64),
            self.traps.map(|n| n as f64),
            self.input_records.map(|n| n as f64),
            self.output_records.map(|n| n as f64),
            self.output_bytes.map(|b| b.0 as f64),
        ]
    }

    /// The first amount `used` is over, as `name used of most`, if any.
    pub fn first_over(&self, used: &impl Measured) -> Option<String> {
        let used = used.amounts();
        self.limits()
            .into_iter()
            .zip(used)
            .zip(MEASURES)
            .find_map(|((most, used), name)| {
                // Seconds are compared as they are shown, to the millisecond.
                let used = (used * 1000.0).round() / 1000.0;
                most.filter(|most| used > *most)
                    .map(|most| format!("{name} {used} of {most}"))
            })
    }
}

/// `[tenants.quota]` (or `[defaults.quota]`): the most a tenant's jobs may consume together
/// (the amounts at the top of the table, counted until an admin resets them), in each batch
/// of each job (`[tenants.quota.per-batch]`), and what its running jobs may hold at once.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Quota {
    /// The most in total.
    #[serde(flatten)]
    pub total: Amounts,
    /// The most in one batch of one job.
    #[serde(default)]
    pub per_batch: Option<Amounts>,
    /// The most jobs running at once (a submission over it is refused).
    #[serde(default)]
    pub running_jobs: Option<u64>,
    /// The most memory its running jobs may reserve together (a submission over it is
    /// refused): each job reserves its operators' memory limit per worker and its input
    /// buffer (`max-buffered-bytes`).
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// What happens to the tenant's running jobs when the quota is exceeded.
    #[serde(default)]
    pub on_exceed: OnExceed,
    /// Fields of none of the above (refused when the config is read).
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// What a quota exceeded does.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnExceed {
    /// The jobs stop gracefully (a last checkpoint) and stay stopped.
    #[default]
    Stop,
    /// The jobs stop gracefully and start again when an admin resets the tenant's usage
    /// (`spate usage --reset <tenant>`).
    Pause,
}

impl Quota {
    /// Reads `[tenants.quota]`, refusing fields it does not have.
    pub fn read(table: toml::Value) -> Result<Quota, String> {
        let quota: Quota = table
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_owned())?;
        if let Some(field) = quota.unknown.keys().next() {
            return Err(format!(
                "unknown field `{field}`: expected one of {}, per-batch, running-jobs, memory, \
                 on-exceed",
                MEASURES.join(", ")
            ));
        }
        Ok(quota)
    }

    /// The first total `usage` is over, in words, if any.
    pub fn exceeded(&self, usage: &TenantUsage) -> Option<String> {
        self.total
            .first_over(usage)
            .map(|over| format!("quota exceeded: {over}"))
    }

    /// The first per-batch amount batch `batch` of job `job` is over, in words, if any.
    pub fn batch_exceeded(&self, job: &str, batch: &BatchSummary) -> Option<String> {
        let over = self.per_batch.as_ref()?.first_over(batch)?;
        Some(format!(
            "quota exceeded: batch {} ms of job {job}: {over} per batch",
            batch.time_ms
        ))
    }
}

/// `usage` against `quota`, for the tenant's web UI: per amount, what was used, the most in
/// total and per batch (null: no limit); running jobs and memory the same way.
pub fn report(usage: &TenantUsage, quota: Option<&Quota>) -> serde_json::Value {
    let total = quota.map(|q| q.total.limits()).unwrap_or_default();
    let per_batch = quota
        .and_then(|q| q.per_batch.as_ref())
        .map(Amounts::limits)
        .unwrap_or_default();
    let used = usage.amounts();
    let mut rows: Vec<serde_json::Value> = MEASURES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            serde_json::json!({
                "amount": name,
                "used": used[i],
                "most": total[i],
                "per_batch": per_batch[i],
            })
        })
        .collect();
    rows.push(serde_json::json!({
        "amount": "running-jobs",
        "used": usage.running_jobs,
        "most": quota.and_then(|q| q.running_jobs),
        "per_batch": null,
    }));
    serde_json::json!({ "tenant": usage.tenant, "rows": rows, "usage": usage })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_limit_over_is_named() {
        let quota = Quota {
            total: Amounts {
                calls: Some(10),
                wasm_seconds: Some(1.5),
                ..Amounts::default()
            },
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

    #[test]
    fn a_quota_table_is_read_with_its_per_batch_table_and_refuses_unknown_fields() {
        let table: toml::Value = toml::from_str(
            "calls = 5\noutput-bytes = \"1 KiB\"\nrunning-jobs = 2\nmemory = \"1 GiB\"\n\
             on-exceed = \"pause\"\n[per-batch]\nwasm-seconds = 0.5\n",
        )
        .unwrap();
        let quota = Quota::read(table).unwrap();
        assert_eq!(quota.total.calls, Some(5));
        assert_eq!(quota.total.output_bytes, Some(ByteSize(1024)));
        assert_eq!(quota.running_jobs, Some(2));
        assert_eq!(quota.memory, Some(ByteSize(1 << 30)));
        assert_eq!(quota.on_exceed, OnExceed::Pause);
        let batch = BatchSummary {
            time_ms: 7,
            wasm_ms: 600.0,
            ..BatchSummary::default()
        };
        assert_eq!(
            quota.batch_exceeded("wc", &batch).as_deref(),
            Some("quota exceeded: batch 7 ms of job wc: wasm-seconds 0.6 of 0.5 per batch")
        );
        for wrong in ["cals = 5", "[per-batch]\ncals = 5"] {
            let table: toml::Value = toml::from_str(wrong).unwrap();
            let error = Quota::read(table).unwrap_err();
            assert!(error.contains("cals"), "{error}");
        }
    }
}
