//! Tenant isolation: how much a CPU-burning tenant in the same process moves a well-behaved
//! tenant's batch delays. The well-behaved job is workload 3's socket word count at a fixed
//! rate; the burner runs the hostile test operator's infinite loop on every partition (each
//! call cut by its 2 s call-time limit, the partition skipped), keeping its workers busy.
//! Both runs (alone, then beside the burner) use the same rate and duration.

use super::ingest::{Probe, probe};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;

/// The two runs and the ratio of their p99 total delays.
#[derive(Debug, serde::Serialize)]
pub struct Tenants {
    /// Offered rate to the well-behaved job, MB/s.
    pub rate_mb_s: f64,
    /// The well-behaved job alone.
    pub alone: Probe,
    /// The same job beside the burner.
    pub beside_burner: Probe,
    /// p99 total delay beside the burner over p99 total delay alone.
    pub p99_ratio: f64,
}

fn burner_pipeline(work: &Path) -> Result<std::path::PathBuf> {
    let plugin = spate_test_artifacts::plugin("hostile");
    let path = work.join("burner.toml");
    std::fs::write(
        &path,
        format!(
            r#"[job]
name = "burner"
workers = 2
task-retries = 0
on-task-failure = "skip"
dead-letter-dir = "{dead}"

[job.limits]
call-time = "2s"

[sources.text]
type = "bundled"
lines-per-second = 50

[[steps]]
op = "map-partitions"
plugin = "{plugin}"
params = {{ attack = "loop" }}

[[outputs]]
type = "print"
num = 1
"#,
            dead = work.join("burner-dead-letters").display(),
            plugin = plugin.display(),
        ),
    )?;
    Ok(path)
}

/// Runs both for `seconds` at `rate` bytes/s.
pub fn run(corpus: &Path, rate: f64, seconds: u64, cache: &Path, work: &Path) -> Result<Tenants> {
    let data = Arc::new(std::fs::read(corpus)?);
    let alone = probe(&data, Some(rate), seconds, &[], cache, work)?;
    let burner = burner_pipeline(work)?;
    let burner = burner.to_str().context("UTF-8 path")?;
    let beside_burner = probe(&data, Some(rate), seconds, &[burner], cache, work)?;
    Ok(Tenants {
        rate_mb_s: rate / 1e6,
        p99_ratio: beside_burner.total_delay_p99_ms / alone.total_delay_p99_ms.max(0.001),
        alone,
        beside_burner,
    })
}
