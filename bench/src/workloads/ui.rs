//! The web UI's cost: the word count (`available-now`, the bench corpus) with the UI off
//! (`--no-ui`) against the UI on with a page open on the job's streaming view: one server-sent
//! event stream held open, and the page's requests (jobs, the last 300 batches, `/metrics`)
//! four times a second, the most the page makes. Runs interleaved, medians compared.

use super::wordcount::{line_count, spate_run};
use super::{WORDCOUNT_JOB, directory_source, wordcount_pipeline};
use crate::process;
use crate::stats::median;
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Copies of the corpus one run reads.
const COPIES: usize = 10;

/// Figures of the UI-cost workload.
#[derive(Debug, serde::Serialize)]
pub struct UiCost {
    /// Corpus size in MB.
    pub mb: f64,
    /// Median seconds with the UI off.
    pub off_s: f64,
    /// Median seconds with the UI on and a page open.
    pub on_s: f64,
    /// Throughput with the UI on over throughput with it off.
    pub ratio: f64,
    /// Requests the simulated page made, over all UI-on runs.
    pub requests: u64,
}

/// One HTTP/1.0 GET; the body's length (0 when the server did not answer).
fn get(address: &str, path: &str) -> usize {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").is_err() {
        return 0;
    }
    let mut body = Vec::new();
    let _ = stream.read_to_end(&mut body);
    body.len()
}

/// Runs `spate` with the UI on and a page open on it until it ends.
fn run_watched(pipeline: &Path, cache: &Path, lines: u64, requests: &AtomicU64) -> Result<f64> {
    let running = process::start(
        &[
            "run",
            pipeline.to_str().context("UTF-8 path")?,
            "--ui-port",
            "0",
        ],
        cache,
    )?;
    let address = loop {
        let (_, line) = running
            .lines
            .recv_timeout(Duration::from_secs(30))
            .context("spate printed no UI address")?;
        if let Some(at) = line.find("web UI at http://") {
            let rest = &line[at + "web UI at http://".len()..];
            break rest.split('/').next().unwrap_or_default().to_owned();
        }
    };
    let done = Arc::new(AtomicBool::new(false));
    let events = {
        let address = address.clone();
        std::thread::spawn(move || get(&address, "/api/v1/events"))
    };
    let page = {
        let (address, done) = (address.clone(), done.clone());
        let job = WORDCOUNT_JOB;
        std::thread::spawn(move || {
            let mut made = 0;
            while !done.load(Ordering::Relaxed) {
                for path in [
                    "/api/v1/jobs".to_owned(),
                    format!("/api/v1/jobs/{job}"),
                    format!("/api/v1/jobs/{job}/batches?limit=300"),
                    "/metrics".to_owned(),
                ] {
                    if get(&address, &path) > 0 {
                        made += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            made
        })
    };
    let started = running.started();
    let finished = running.finish();
    let wall = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    requests.fetch_add(page.join().unwrap_or(0), Ordering::Relaxed);
    let _ = events.join();
    let finished = finished?;
    let read = finished
        .stderr
        .iter()
        .find(|l| l.starts_with("summary: "))
        .and_then(|l| {
            l.split(" batches, ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        });
    if read != Some(lines) {
        bail!("spate read {read:?} records, the corpus has {lines} lines");
    }
    Ok(wall)
}

/// Runs the workload `reps` times each way.
pub fn run(corpus: &Path, reps: usize, cache: &Path, work: &Path) -> Result<UiCost> {
    // The corpus ten times over (hard links), so that each run lasts long enough for the
    // page's requests to matter: a 20 MB corpus takes a tenth of a second.
    let dir = work.join("ui-corpus");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for i in 0..COPIES {
        let copy = dir.join(format!("corpus-{i}.txt"));
        std::fs::hard_link(corpus, &copy).or_else(|_| std::fs::copy(corpus, &copy).map(|_| ()))?;
    }
    let pipeline = work.join("ui-cost.toml");
    std::fs::write(
        &pipeline,
        wordcount_pipeline(&directory_source(&dir), "available-now"),
    )?;
    let lines = line_count(corpus)? * COPIES as u64;
    process::start(&["check", pipeline.to_str().context("UTF-8 path")?], cache)?.finish()?;
    let requests = AtomicU64::new(0);
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let start = Instant::now();
        spate_run(&pipeline, &["--no-ui"], cache, lines)?;
        off.push(start.elapsed().as_secs_f64());
        on.push(run_watched(&pipeline, cache, lines, &requests)?);
    }
    let (off_s, on_s) = (median(&off), median(&on));
    Ok(UiCost {
        mb: (std::fs::metadata(corpus)?.len() * COPIES as u64) as f64 / 1e6,
        off_s,
        on_s,
        ratio: off_s / on_s,
        requests: requests.load(Ordering::Relaxed),
    })
}
