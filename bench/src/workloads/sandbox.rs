//! Workload 4: what the sandbox limits cost. The word count of workload 1 (2 workers,
//! available-now) with the default limits (epoch deadline per call, memory and output caps),
//! with fuel metering on top, and with every limit off (`job.enforce-limits = false`: no epoch
//! checks compiled in), runs interleaved.

use super::wordcount::{line_count, spate_run};
use super::{directory_source, wordcount_pipeline};
use crate::stats::median;
use anyhow::{Context, Result};
use std::path::Path;

/// Median wall seconds of each configuration, and the ratios against limits off.
#[derive(Debug, serde::Serialize)]
pub struct SandboxCost {
    /// Limits off.
    pub off_s: f64,
    /// Default limits.
    pub default_s: f64,
    /// Default limits plus fuel metering.
    pub fuel_s: f64,
    /// Throughput with default limits over throughput with limits off.
    pub default_ratio: f64,
    /// Throughput with fuel over throughput with limits off.
    pub fuel_ratio: f64,
}

/// Runs each configuration `reps` times.
pub fn run(corpus: &Path, reps: usize, cache: &Path, work: &Path) -> Result<SandboxCost> {
    let dir = corpus.parent().context("corpus file has a directory")?;
    let pipeline = work.join("sandbox-wordcount.toml");
    std::fs::write(
        &pipeline,
        wordcount_pipeline(&directory_source(dir), "available-now"),
    )?;
    let lines = line_count(corpus)?;
    let configs: [&[&str]; 3] = [
        &[
            "--set",
            "job.workers=2",
            "--set",
            "job.enforce-limits=false",
        ],
        &["--set", "job.workers=2"],
        &[
            "--set",
            "job.workers=2",
            "--set",
            "job.limits.fuel=1000000000000",
        ],
    ];
    let mut times: [Vec<f64>; 3] = Default::default();
    for _ in 0..reps {
        for (config, times) in configs.iter().zip(times.iter_mut()) {
            times.push(
                spate_run(&pipeline, config, cache, lines)?
                    .wall
                    .as_secs_f64(),
            );
        }
    }
    let [off_s, default_s, fuel_s] = times.map(|t| median(&t));
    Ok(SandboxCost {
        off_s,
        default_s,
        fuel_s,
        default_ratio: off_s / default_s,
        fuel_ratio: off_s / fuel_s,
    })
}
