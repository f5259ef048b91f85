//! Tenant isolation: how much a CPU-burning tenant in the same process moves a well-behaved
//! tenant's batch delays. The well-behaved job is workload 3's socket word count at a fixed
//! rate; the burner runs the hostile test operator's infinite loop on every partition (each
//! call cut by its 2 s call-time limit, the partition skipped), keeping its workers busy.
//! Then the same job among 8 tenants of mixed load, at a fifth of the rate (so that it needs
//! no more than its fair eighth of the CPU), against itself alone at that rate: 2 burners, 3
//! socket word counts at the same fifth, 2 at a fiftieth. Every run lasts as long.

use super::ingest::{Probe, feed, probe};
use super::wordcount_job;
use crate::stats::percentile;
use anyhow::{Context, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How many runs alone and beside the burner, alternating: a single pair's p99 is nearly the
/// maximum of a few dozen batches, and the machine's noise between two runs (the job alone
/// moved from 77 to 175 ms between runs) was larger than the 10% the figure is about.
pub const PAIRS: usize = 3;

/// The runs and the ratio of their p99 total delays.
#[derive(Debug, serde::Serialize)]
pub struct Tenants {
    /// Offered rate to the well-behaved job, MB/s.
    pub rate_mb_s: f64,
    /// The well-behaved job alone (the first of the pairs' runs).
    pub alone: Probe,
    /// The same job beside the burner (the first of the pairs' runs).
    pub beside_burner: Probe,
    /// Each pair's p99 total delays, ms: (alone, beside the burner).
    pub pairs_p99_ms: Vec<(f64, f64)>,
    /// p99 total delay of every pair's batches beside the burner, pooled, ms.
    pub beside_pooled_p99_ms: f64,
    /// p99 total delay of every pair's batches alone, pooled, ms.
    pub alone_pooled_p99_ms: f64,
    /// Pooled p99 total delay beside the burner over pooled p99 total delay alone.
    pub p99_ratio: f64,
    /// The job alone at a fifth of the rate.
    pub alone_fifth: Probe,
    /// The job at a fifth of the rate among 7 other tenants of mixed load.
    pub among_eight: Probe,
    /// p99 total delay among 8 tenants over p99 total delay alone, at a fifth of the rate.
    pub eight_p99_ratio: f64,
}

/// A burner tenant's pipeline, job and tenant `name`.
fn burner_pipeline(work: &Path, name: &str) -> Result<PathBuf> {
    let plugin = spate_test_artifacts::plugin("hostile");
    let path = work.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[job]
name = "{name}"
tenant = "{name}"
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
            dead = work.join(format!("{name}-dead-letters")).display(),
            plugin = plugin.display(),
        ),
    )?;
    Ok(path)
}

/// A socket word count tenant's pipeline, job and tenant `name`, reading 127.0.0.1:`port`.
fn word_count_pipeline(work: &Path, name: &str, port: u16) -> Result<PathBuf> {
    let path = work.join(format!("{name}.toml"));
    let job = format!("name = \"{name}\"\ntenant = \"{name}\"");
    let source =
        format!("[sources.lines]\ntype = \"socket\"\nhost = \"127.0.0.1\"\nport = {port}\n");
    std::fs::write(&path, wordcount_job(&job, &source))?;
    Ok(path)
}

/// The feeders of the mixed run's word count tenants; they stop when dropped.
struct Feeders {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Feeders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The 7 other tenants of the mixed run (2 burners; 3 word counts fed at `rate` bytes/s, 2 at
/// a tenth of it) and their feeders.
fn mixed_tenants(data: &Arc<Vec<u8>>, rate: f64, work: &Path) -> Result<(Vec<PathBuf>, Feeders)> {
    let mut paths = Vec::new();
    for i in 1..=2 {
        paths.push(burner_pipeline(work, &format!("burner-{i}"))?);
    }
    let mut feeders = Feeders {
        stop: Arc::new(AtomicBool::new(false)),
        threads: Vec::new(),
    };
    let loads = [("busy", rate, 3), ("light", rate / 10.0, 2)];
    for (kind, rate, count) in loads {
        for i in 1..=count {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            paths.push(word_count_pipeline(work, &format!("{kind}-{i}"), port)?);
            let (data, stop) = (data.clone(), feeders.stop.clone());
            let sent = Arc::new(AtomicU64::new(0));
            feeders.threads.push(std::thread::spawn(move || {
                feed(listener, data, Some(rate), stop, sent)
            }));
        }
    }
    Ok((paths, feeders))
}

/// Runs, for `seconds` each: [`PAIRS`] pairs alone and beside a burner at `rate` bytes/s,
/// alone and among 8 tenants at a fifth of it.
pub fn run(corpus: &Path, rate: f64, seconds: u64, cache: &Path, work: &Path) -> Result<Tenants> {
    let data = Arc::new(std::fs::read(corpus)?);
    let burner = burner_pipeline(work, "burner")?;
    let burner = burner.to_str().context("UTF-8 path")?;
    // Alternating, every other pair beside the burner first, so that a drift of the machine
    // over the runs weighs on both kinds alike.
    let (mut alone_runs, mut beside_runs) = (Vec::new(), Vec::new());
    for pair in 0..PAIRS {
        for beside in [pair % 2 == 1, pair % 2 == 0] {
            let extra: &[&str] = if beside { &[burner] } else { &[] };
            let run = probe(&data, Some(rate), seconds, extra, cache, work)?;
            match beside {
                true => beside_runs.push(run),
                false => alone_runs.push(run),
            }
        }
    }
    let pooled = |runs: &[Probe]| {
        let delays: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.total_delays_ms.iter().copied())
            .collect();
        percentile(&delays, 99.0)
    };
    let (alone_pooled_p99_ms, beside_pooled_p99_ms) = (pooled(&alone_runs), pooled(&beside_runs));
    let pairs_p99_ms = alone_runs
        .iter()
        .zip(&beside_runs)
        .map(|(a, b)| (a.total_delay_p99_ms, b.total_delay_p99_ms))
        .collect();
    let (alone, beside_burner) = (alone_runs.swap_remove(0), beside_runs.swap_remove(0));
    let fifth = rate / 5.0;
    let alone_fifth = probe(&data, Some(fifth), seconds, &[], cache, work)?;
    let (others, feeders) = mixed_tenants(&data, fifth, work)?;
    let others: Vec<&str> = others
        .iter()
        .map(|p| p.to_str().context("UTF-8 path"))
        .collect::<Result<_>>()?;
    let among_eight = probe(&data, Some(fifth), seconds, &others, cache, work)?;
    drop(feeders);
    Ok(Tenants {
        rate_mb_s: rate / 1e6,
        p99_ratio: beside_pooled_p99_ms / alone_pooled_p99_ms.max(0.001),
        pairs_p99_ms,
        alone_pooled_p99_ms,
        beside_pooled_p99_ms,
        eight_p99_ratio: among_eight.total_delay_p99_ms / alone_fifth.total_delay_p99_ms.max(0.001),
        alone,
        beside_burner,
        alone_fifth,
        among_eight,
    })
}
