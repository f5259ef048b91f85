//! Workload 5b: cold start of a job, from process start to its first batch done, with an empty
//! compiled-component cache (every plugin compiled) and with a warm one.

use super::{directory_source, wordcount_pipeline};
use crate::process;
use crate::stats::median;
use anyhow::{Context, Result, bail};
use std::path::Path;

/// Median milliseconds to the first finished batch.
#[derive(Debug, serde::Serialize)]
pub struct Startup {
    /// With an empty cache.
    pub cold_cache_ms: f64,
    /// With a warm cache.
    pub warm_cache_ms: f64,
}

fn first_batch_ms(pipeline: &Path, cache: &Path) -> Result<f64> {
    let run = process::start(&["run", pipeline.to_str().context("UTF-8 path")?], cache)?;
    let started = run.started();
    let mut first = None;
    for (at, line) in run.lines.iter() {
        if process::parse_batch_line(&line).is_some() {
            first = Some(at.duration_since(started));
            break;
        }
    }
    run.finish()?;
    match first {
        Some(d) => Ok(d.as_secs_f64() * 1000.0),
        None => bail!("spate finished without a batch"),
    }
}

/// Runs `reps` cold and `reps` warm starts over a one-line input.
pub fn run(reps: usize, work: &Path) -> Result<Startup> {
    let input = work.join("startup-input");
    std::fs::create_dir_all(&input)?;
    std::fs::write(input.join("one.txt"), "a few words to count\n")?;
    let pipeline = work.join("startup.toml");
    std::fs::write(
        &pipeline,
        wordcount_pipeline(&directory_source(&input), "available-now"),
    )?;
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let warm_cache = work.join("startup-cache-warm");
    first_batch_ms(&pipeline, &warm_cache)?;
    for i in 0..reps {
        let empty = work.join(format!("startup-cache-cold-{i}"));
        let _ = std::fs::remove_dir_all(&empty);
        cold.push(first_batch_ms(&pipeline, &empty)?);
        warm.push(first_batch_ms(&pipeline, &warm_cache)?);
    }
    Ok(Startup {
        cold_cache_ms: median(&cold),
        warm_cache_ms: median(&warm),
    })
}
