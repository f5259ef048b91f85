//! Workload 6: keyed state and windows. What a batch costs when it touches few keys of a large
//! state (mapWithState against updateStateByKey, 1 M keys in state, 10 k touched per batch), and
//! what a windowed word count costs per batch with the inverse function (against the same
//! count without a window, and the window recombined without the inverse). Each figure is the
//! median processing time of the batches after the first, from spate's batch log lines. Also
//! what checkpoints cost: map-with-state with a checkpoint after every batch (1 M keys) against
//! the same run without, and the checkpoints' own copy and write times.

use crate::process;
use crate::stats::median;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::Path;

/// Per-batch medians in ms, and ratios.
#[derive(Debug, serde::Serialize)]
pub struct StateCost {
    /// Keys in state after the first batch.
    pub keys: usize,
    /// Keys touched per later batch.
    pub touched: usize,
    /// reduce-by-key over the same batches: what one batch costs without state.
    pub stateless_ms: f64,
    /// map-with-state, 1 M keys in state.
    pub map_with_state_ms: f64,
    /// update-state-by-key, 1 M keys in state.
    pub update_state_ms: f64,
    /// map-with-state over stateless: near 1 when cost follows the keys touched.
    pub map_with_state_ratio: f64,
    /// update-state-by-key over map-with-state.
    pub update_over_map_ratio: f64,
    /// reduce-by-key-and-window with the inverse, batches between slides.
    pub window_inverse_ms: f64,
    /// The same at slide batches (which also emit the window's keys).
    pub window_inverse_slide_ms: f64,
    /// Without the inverse, at slide batches (the window is recombined).
    pub window_plain_slide_ms: f64,
    /// Inverse window between slides over stateless.
    pub window_inverse_ratio: f64,
    /// Checkpoints of the map-with-state run (one after every batch).
    pub checkpoints: CheckpointCost,
}

/// What checkpointing the 1 M-key map-with-state job after every batch costs.
#[derive(Debug, serde::Serialize)]
pub struct CheckpointCost {
    /// Checkpoints written.
    pub written: usize,
    /// Median state size, MB (before compression).
    pub state_mb: f64,
    /// Median time the runner spends copying the state (batches wait for it), ms.
    pub copy_ms: f64,
    /// Median time the writer thread spends compressing and writing (batches go on), ms.
    pub write_ms: f64,
    /// Median processing time per batch with checkpoints (and the batch log), ms.
    pub processing_ms: f64,
    /// That over the median without checkpoints.
    pub processing_ratio: f64,
    /// Wall time of the whole run with checkpoints over without.
    pub wall_ratio: f64,
}

const TOUCHED: usize = 10_000;
const WINDOW: &str = "length = \"10s\"\nslide = \"5s\"\n";

fn pipeline(dir: &Path, step: &str, job: &str) -> String {
    format!(
        r#"[job]
name = "bench-state"
trigger = "available-now"
max-block-bytes = "64KiB"
max-batch-bytes = "64KiB"
{job}

[sources.words]
type = "directory"
path = "{}"
include-existing = true

[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
{step}
[[outputs]]
type = "print"
num = 1
"#,
        dir.display()
    )
}

/// Writes `batches` files of `TOUCHED` random keys out of `keys` (one word per line), after a
/// first file holding every key when `all_first`.
fn write_input(dir: &Path, keys: usize, batches: usize, all_first: bool) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut seed = 11u64;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n
    };
    if all_first {
        let mut file = std::io::BufWriter::new(std::fs::File::create(dir.join("000.txt"))?);
        for k in 0..keys {
            writeln!(file, "k{k}")?;
        }
    }
    for b in 1..=batches {
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{b:03}.txt")))?);
        for _ in 0..TOUCHED {
            writeln!(file, "k{}", next(keys))?;
        }
    }
    Ok(())
}

/// A run's batches, wall time and log.
struct Run {
    /// Processing times (ms) of each batch, with its batch time, in order.
    batches: Vec<(u64, f64)>,
    wall_s: f64,
    log: Vec<String>,
}

/// Runs `pipeline` to its end.
fn batch_times(pipeline: &Path, cache: &Path) -> Result<Run> {
    let started = std::time::Instant::now();
    let finished =
        process::start(&["run", pipeline.to_str().context("UTF-8 path")?], cache)?.finish()?;
    let wall_s = started.elapsed().as_secs_f64();
    let batches: Vec<(u64, f64)> = finished
        .stderr
        .iter()
        .filter_map(|line| {
            let b = process::parse_batch_line(line)?;
            let time = line
                .split(": batch ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((time, b.processing_ms))
        })
        .collect();
    if batches.len() < 3 {
        bail!("too few batches in the state benchmark: {}", batches.len());
    }
    Ok(Run {
        batches,
        wall_s,
        log: finished.stderr,
    })
}

/// The checkpoint figures of a run's log: (state bytes, copy ms, write ms) per checkpoint.
fn checkpoint_lines(log: &[String]) -> Vec<(f64, f64, f64)> {
    log.iter()
        .filter_map(|line| {
            let rest = line.split(" written: ").nth(1)?;
            let bytes: f64 = rest.split(' ').next()?.parse().ok()?;
            let copy = rest
                .split("copied in ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            let write = rest
                .split("written in ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            Some((bytes, copy, write))
        })
        .collect()
}

fn median_after_first(batches: &[(u64, f64)], keep: impl Fn(u64) -> bool) -> f64 {
    let times: Vec<f64> = batches[1..]
        .iter()
        .filter(|(t, _)| keep(*t))
        .map(|b| b.1)
        .collect();
    median(&times)
}

/// Runs the workload with `keys` keys in state and `batches` touched batches.
pub fn run(keys: usize, batches: usize, cache: &Path, work: &Path) -> Result<StateCost> {
    let with_state = work.join("state-input");
    let windowed = work.join("window-input");
    let _ = std::fs::remove_dir_all(&with_state);
    let _ = std::fs::remove_dir_all(&windowed);
    write_input(&with_state, keys, batches, true)?;
    write_input(&windowed, keys, batches, false)?;
    let run_with = |name: &str, dir: &Path, step: &str, job: &str| -> Result<Run> {
        let path = work.join(format!("state-{name}.toml"));
        std::fs::write(&path, pipeline(dir, step, job))?;
        batch_times(&path, cache)
    };
    let run_step = |name: &str, dir: &Path, step: &str| -> Result<Vec<(u64, f64)>> {
        Ok(run_with(name, dir, step, "")?.batches)
    };
    let any = |_: u64| true;
    let stateless = median_after_first(
        &run_step(
            "reduce",
            &with_state,
            "op = \"reduce-by-key\"\nplugin = \"sum\"\n",
        )?,
        any,
    );
    let map_step = "op = \"map-with-state\"\nplugin = \"running-sum\"\n";
    let map_run = run_with("map", &with_state, map_step, "")?;
    let map_with_state = median_after_first(&map_run.batches, any);
    let checkpoint_dir = work.join("state-checkpoints");
    let _ = std::fs::remove_dir_all(&checkpoint_dir);
    let checkpointed = run_with(
        "map-checkpointed",
        &with_state,
        map_step,
        &format!(
            "checkpoint-dir = \"{}\"\ncheckpoint-interval = \"1s\"\n",
            checkpoint_dir.display()
        ),
    )?;
    let lines = checkpoint_lines(&checkpointed.log);
    let column = |i: usize| -> Vec<f64> {
        lines
            .iter()
            .map(|l| [l.0, l.1, l.2][i])
            .collect::<Vec<f64>>()
    };
    let checkpointed_ms = median_after_first(&checkpointed.batches, any);
    let checkpoints = CheckpointCost {
        written: lines.len(),
        state_mb: median(&column(0)) / 1e6,
        copy_ms: median(&column(1)),
        write_ms: median(&column(2)),
        processing_ms: checkpointed_ms,
        processing_ratio: checkpointed_ms / map_with_state,
        wall_ratio: checkpointed.wall_s / map_run.wall_s,
    };
    let update_state = median_after_first(
        &run_step(
            "update",
            &with_state,
            "op = \"update-state-by-key\"\nplugin = \"running-sum\"\n",
        )?,
        any,
    );
    let window_step = |inverse: bool| {
        format!(
            "op = \"reduce-by-key-and-window\"\nplugin = \"sum\"\n{}{WINDOW}",
            if inverse {
                "inverse-plugin = \"subtract\"\n"
            } else {
                ""
            }
        )
    };
    let at_slide = |t: u64| t.is_multiple_of(5000);
    let inverse = run_step("window-inverse", &windowed, &window_step(true))?;
    let plain = run_step("window-plain", &windowed, &window_step(false))?;
    let window_stateless = median_after_first(
        &run_step(
            "window-reduce",
            &windowed,
            "op = \"reduce-by-key\"\nplugin = \"sum\"\n",
        )?,
        any,
    );
    let window_inverse = median_after_first(&inverse, |t| !at_slide(t));
    Ok(StateCost {
        keys,
        touched: TOUCHED,
        stateless_ms: stateless,
        map_with_state_ms: map_with_state,
        update_state_ms: update_state,
        map_with_state_ratio: map_with_state / stateless,
        update_over_map_ratio: update_state / map_with_state,
        window_inverse_ms: window_inverse,
        window_inverse_slide_ms: median_after_first(&inverse, at_slide),
        window_plain_slide_ms: median_after_first(&plain, at_slide),
        window_inverse_ratio: window_inverse / window_stateless,
        checkpoints,
    })
}
