//! Workload 3: sustained socket ingest. A feeder on 127.0.0.1 sends the corpus at a fixed rate
//! to the socket word count (1 s batches). The highest rate that keeps up (every batch
//! processed within the interval, no growing scheduling delay, the feeder never held back by
//! backpressure) is searched for; at 80% of it the delays are reported. Then an unthrottled
//! producer shows what backpressure does to the producer's rate and Spate's memory.

use super::{WORDCOUNT_JOB, wordcount_pipeline};
use crate::process::{self, BatchLine, Running};
use crate::stats::{median, percentile};
use anyhow::{Context, Result};
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One run at one offered rate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    /// Offered rate, MB/s (None: unthrottled).
    pub offered_mb_s: Option<f64>,
    /// Rate the feeder achieved, MB/s.
    pub achieved_mb_s: f64,
    /// Batches measured (after warm-up).
    pub batches: usize,
    /// Processing time p50 / p99, ms.
    pub processing_p50_ms: f64,
    /// Processing time p99, ms.
    pub processing_p99_ms: f64,
    /// Total delay p50, ms.
    pub total_delay_p50_ms: f64,
    /// Total delay p99, ms.
    pub total_delay_p99_ms: f64,
    /// Largest scheduling delay, ms.
    pub max_scheduling_ms: f64,
    /// Peak RSS sampled during the run, MB.
    pub peak_rss_mb: f64,
    /// Whether this run kept up.
    pub kept_up: bool,
    /// Every measured batch's total delay, ms (to pool runs of the same kind).
    #[serde(skip)]
    pub total_delays_ms: Vec<f64>,
}

/// The workload's figures.
#[derive(Debug, serde::Serialize)]
pub struct Ingest {
    /// Highest rate that kept up, MB/s.
    pub max_sustained_mb_s: f64,
    /// The run at 80% of it.
    pub at_80_percent: Probe,
    /// The same rate with a checkpoint directory: every batch's input goes to the batch log
    /// (written and fsynced before the batch runs) and checkpoints are taken.
    pub at_80_percent_wal: Probe,
    /// Total delay p99 with the batch log over without.
    pub wal_delay_ratio: f64,
    /// Every probe of the search.
    pub search: Vec<Probe>,
    /// An unthrottled producer, default buffer limit.
    pub overload: Probe,
    /// An unthrottled producer with `max-buffered-bytes` lowered to 64 MiB.
    pub overload_64mib: Probe,
}

/// Sends `data` in a loop at `rate` bytes/s (None: as fast as the socket takes it).
pub(super) fn feed(
    listener: TcpListener,
    data: Arc<Vec<u8>>,
    rate: Option<f64>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    let Ok((mut stream, _)) = listener.accept() else {
        return;
    };
    let start = Instant::now();
    let mut offset = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let due = match rate {
            Some(r) => (start.elapsed().as_secs_f64() * r) as u64,
            None => u64::MAX,
        };
        let already = sent.load(Ordering::Relaxed);
        if already >= due {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let want = ((due - already) as usize)
            .min(256 << 10)
            .min(data.len() - offset);
        if stream.write_all(&data[offset..offset + want]).is_err() {
            return;
        }
        sent.fetch_add(want as u64, Ordering::Relaxed);
        offset = (offset + want) % data.len();
    }
}

/// Runs spate's socket word count for `seconds` at `rate` bytes/s; `extra` is appended to the
/// command line (overrides, or more pipelines to run beside it).
pub fn probe(
    data: &Arc<Vec<u8>>,
    rate: Option<f64>,
    seconds: u64,
    extra: &[&str],
    cache: &Path,
    work: &Path,
) -> Result<Probe> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let source =
        format!("[sources.lines]\ntype = \"socket\"\nhost = \"127.0.0.1\"\nport = {port}\n");
    let pipeline = work.join("ingest.toml");
    std::fs::write(&pipeline, wordcount_pipeline(&source, "processing-time"))?;
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let feeder = {
        let (data, stop, sent) = (data.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || feed(listener, data, rate, stop, sent))
    };
    let mut args = vec!["run", pipeline.to_str().context("UTF-8 path")?];
    args.extend_from_slice(extra);
    let run: Running = process::start(&args, cache)?;
    let warmup = Duration::from_secs(3);
    let until = Instant::now() + warmup + Duration::from_secs(seconds);
    let mut batches: Vec<BatchLine> = Vec::new();
    let mut peak_rss = 0u64;
    let mut measured_from = None;
    while Instant::now() < until {
        peak_rss = peak_rss.max(run.rss());
        if measured_from.is_none() && run.started().elapsed() >= warmup {
            measured_from = Some((Instant::now(), sent.load(Ordering::Relaxed)));
        }
        while let Ok((_, line)) = run.lines.try_recv() {
            if let (Some(b), Some(_)) = (process::parse_batch_line(&line), measured_from)
                && b.job == WORDCOUNT_JOB
            {
                batches.push(b);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (from, sent_before) = measured_from.unwrap_or((Instant::now(), 0));
    let achieved =
        (sent.load(Ordering::Relaxed) - sent_before) as f64 / from.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    run.interrupt();
    let _ = run.finish();
    let _ = feeder.join();
    let processing: Vec<f64> = batches.iter().map(|b| b.processing_ms).collect();
    let total: Vec<f64> = batches.iter().map(|b| b.total_ms).collect();
    let scheduling: Vec<f64> = batches.iter().map(|b| b.scheduling_ms).collect();
    let max_scheduling = scheduling.iter().copied().fold(0.0, f64::max);
    let kept_up = !batches.is_empty()
        && processing.iter().all(|&p| p < 1000.0)
        && max_scheduling < 1000.0
        && rate.is_none_or(|r| achieved >= 0.95 * r);
    Ok(Probe {
        offered_mb_s: rate.map(|r| r / 1e6),
        achieved_mb_s: achieved / 1e6,
        batches: batches.len(),
        processing_p50_ms: median(&processing),
        processing_p99_ms: percentile(&processing, 99.0),
        total_delay_p50_ms: median(&total),
        total_delay_p99_ms: percentile(&total, 99.0),
        max_scheduling_ms: max_scheduling,
        peak_rss_mb: peak_rss as f64 / 1e6,
        kept_up,
        total_delays_ms: total,
    })
}

/// Runs the search and the measurement runs. `probe_s` is the length of each search probe,
/// `steady_s` of the confirmation run, the 80% run and the overload runs.
pub fn run(
    corpus: &Path,
    probe_s: u64,
    steady_s: u64,
    cache: &Path,
    work: &Path,
) -> Result<Ingest> {
    let data = Arc::new(std::fs::read(corpus)?);
    let mut search = Vec::new();
    let (mut good, mut bad) = (0.0f64, None::<f64>);
    let mut rate = 8e6;
    // Double until a probe fails, then bisect three times.
    loop {
        let p = probe(&data, Some(rate), probe_s, &[], cache, work)?;
        let ok = p.kept_up;
        search.push(p);
        if ok {
            good = rate;
            rate *= 2.0;
            if rate > 2e9 {
                break;
            }
        } else {
            bad = Some(rate);
            break;
        }
    }
    if let Some(mut high) = bad {
        for _ in 0..3 {
            let mid = (good + high) / 2.0;
            let p = probe(&data, Some(mid), probe_s, &[], cache, work)?;
            let ok = p.kept_up;
            search.push(p);
            if ok {
                good = mid;
            } else {
                high = mid;
            }
        }
    }
    // Confirm the maximum over the full duration; step down until it holds.
    let mut max = good;
    while max > 1e6 {
        let p = probe(&data, Some(max), steady_s, &[], cache, work)?;
        let ok = p.kept_up;
        search.push(p);
        if ok {
            break;
        }
        max *= 0.9;
    }
    let at_80_percent = probe(&data, Some(0.8 * max), steady_s, &[], cache, work)?;
    let checkpoints = work.join("ingest-checkpoints");
    let _ = std::fs::remove_dir_all(&checkpoints);
    let with_log = format!("job.checkpoint-dir={}", checkpoints.display());
    let at_80_percent_wal = probe(
        &data,
        Some(0.8 * max),
        steady_s,
        &["--set", &with_log],
        cache,
        work,
    )?;
    let overload = probe(&data, None, steady_s, &[], cache, work)?;
    let overload_64mib = probe(
        &data,
        None,
        steady_s,
        &["--set", "job.max-buffered-bytes=64 MiB"],
        cache,
        work,
    )?;
    Ok(Ingest {
        max_sustained_mb_s: max / 1e6,
        wal_delay_ratio: at_80_percent_wal.total_delay_p99_ms / at_80_percent.total_delay_p99_ms,
        at_80_percent,
        at_80_percent_wal,
        search,
        overload,
        overload_64mib,
    })
}
