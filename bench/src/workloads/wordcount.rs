//! Workload 1: word count throughput with `available-now`, Spate against the native baseline on
//! the same cores, runs interleaved so that machine noise hits both alike.

use super::{directory_source, wordcount_pipeline};
use crate::native;
use crate::process;
use crate::stats::median;
use anyhow::{Context, Result, bail};
use spate_plugin_tokenize::Tokenizer;
use std::path::Path;
use std::time::Instant;

/// Figures for one thread count.
#[derive(Debug, serde::Serialize)]
pub struct Wordcount {
    /// Worker threads (Spate) and counting threads (native).
    pub threads: usize,
    /// Corpus size in MB (10^6 bytes).
    pub mb: f64,
    /// Words in the corpus.
    pub words: u64,
    /// Median seconds, native.
    pub native_s: f64,
    /// Median seconds, Spate (process start to exit: compile from cache, read, count, print).
    pub spate_s: f64,
    /// Median seconds inside Spate's batches only (its summary's processing time).
    pub spate_processing_s: f64,
    /// Spate throughput over native throughput (wall time).
    pub ratio: f64,
    /// Median seconds inside Wasm calls, summed over workers (the run summary's figure).
    pub spate_wasm_s: f64,
    /// Median seconds in the calls of the tokenize operator compiled natively, one thread,
    /// partitions and batches as Spate's (see [`native::operator_word_count`]); measured in the
    /// 1-thread runs only.
    pub native_operator_s: Option<f64>,
    /// Peak RSS of the Spate process, MB.
    pub spate_peak_rss_mb: f64,
}

/// Sum of the processing times in a run's batch lines, in seconds.
fn processing_seconds(stderr: &[String]) -> f64 {
    stderr
        .iter()
        .filter_map(|l| process::parse_batch_line(l))
        .map(|b| b.processing_ms)
        .sum::<f64>()
        / 1000.0
}

/// The summary's time in Wasm, in seconds (`  wasm: N calls, X ms in Wasm, ...`).
fn wasm_seconds(stderr: &[String]) -> Option<f64> {
    let line = stderr.iter().find(|l| l.starts_with("  wasm: "))?;
    let ms = line.split(" calls, ").nth(1)?.split(" ms in Wasm").next()?;
    Some(ms.parse::<f64>().ok()? / 1000.0)
}

fn records_in_summary(stderr: &[String]) -> Option<u64> {
    let line = stderr.iter().find(|l| l.starts_with("summary: "))?;
    let after = line.split(" batches, ").nth(1)?;
    after.split(' ').next()?.parse().ok()
}

/// Runs `spate run <pipeline> <extra>` to completion and checks it read all `lines`.
pub fn spate_run(
    pipeline: &Path,
    extra: &[&str],
    cache: &Path,
    lines: u64,
) -> Result<process::Finished> {
    let mut args = vec!["run", pipeline.to_str().context("UTF-8 path")?];
    args.extend_from_slice(extra);
    let finished = process::start(&args, cache)?.finish()?;
    if records_in_summary(&finished.stderr) != Some(lines) {
        bail!(
            "spate read {:?} records, the corpus has {lines} lines",
            records_in_summary(&finished.stderr)
        );
    }
    Ok(finished)
}

/// Lines in a corpus file.
pub fn line_count(corpus: &Path) -> Result<u64> {
    Ok(memchr::memchr_iter(b'\n', &std::fs::read(corpus)?).count() as u64)
}

/// Runs the workload for `threads` threads, `reps` times each.
pub fn run(
    corpus: &Path,
    threads: usize,
    reps: usize,
    cache: &Path,
    work: &Path,
) -> Result<Wordcount> {
    let dir = corpus.parent().context("corpus file has a directory")?;
    let pipeline = work.join(format!("wordcount-{threads}.toml"));
    std::fs::write(
        &pipeline,
        wordcount_pipeline(&directory_source(dir), "available-now"),
    )?;
    let bytes = std::fs::metadata(corpus)?.len();
    let lines = line_count(corpus)?;
    let tokenizer = Tokenizer::default();
    let workers = format!("job.workers={threads}");
    let (mut native_s, mut spate_s, mut processing_s, mut rss) =
        (Vec::new(), Vec::new(), Vec::new(), 0u64);
    let (mut wasm_s, mut operator_s) = (Vec::new(), Vec::new());
    let mut words = 0;
    // The runs measure plugins loaded from the compiled cache: compile them first (`spate
    // check` does), or the first run's time and peak RSS would include Cranelift's.
    process::start(&["check", pipeline.to_str().context("UTF-8 path")?], cache)?.finish()?;
    for _ in 0..reps {
        let start = Instant::now();
        let data = std::fs::read(corpus)?;
        let (counts, n) = native::word_count(&data, threads, &tokenizer);
        native_s.push(start.elapsed().as_secs_f64());
        words = n;
        drop(counts);
        if threads == 1 {
            // Spate's defaults: 1 MiB blocks, 12 MiB batches.
            let (_, in_calls) = native::operator_word_count(&data, 1 << 20, 12);
            operator_s.push(in_calls.as_secs_f64());
        }
        drop(data);

        let finished = spate_run(&pipeline, &["--set", &workers], cache, lines)?;
        spate_s.push(finished.wall.as_secs_f64());
        processing_s.push(processing_seconds(&finished.stderr));
        wasm_s.extend(wasm_seconds(&finished.stderr));
        rss = rss.max(finished.peak_rss);
    }
    let (native_s, spate_s) = (median(&native_s), median(&spate_s));
    Ok(Wordcount {
        threads,
        mb: bytes as f64 / 1e6,
        words,
        native_s,
        spate_s,
        spate_processing_s: median(&processing_s),
        ratio: native_s / spate_s,
        spate_wasm_s: median(&wasm_s),
        native_operator_s: (!operator_s.is_empty()).then(|| median(&operator_s)),
        spate_peak_rss_mb: rss as f64 / 1e6,
    })
}
