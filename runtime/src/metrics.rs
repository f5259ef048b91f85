//! Per-batch figures as Spark's StreamingListener reports them, and the run summary.

use crate::exec::TaskFigures;
use crate::wasm::UsageReport;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// What one batch did.
#[derive(Clone, Debug)]
pub struct BatchReport {
    /// Batch time in ms.
    pub time_ms: u64,
    /// Input records.
    pub input_records: usize,
    /// Input bytes.
    pub input_bytes: usize,
    /// Input records and bytes per source (plan order).
    pub per_source: Vec<(usize, usize)>,
    /// Input partitions (blocks).
    pub partitions: usize,
    /// Records reaching the outputs.
    pub output_records: usize,
    /// Their bytes (keys and values as the records hold them, whatever the outputs' formats).
    pub output_bytes: usize,
    /// Lines skipped by `on-bad-line = "skip"` since the previous batch.
    pub skipped_lines: u64,
    /// From batch submission to the start of its processing.
    pub scheduling_delay: Duration,
    /// From the start to the end of processing (outputs included).
    pub processing_time: Duration,
    /// What the job's operators consumed in this batch (for billing and throttling a tenant).
    pub usage: UsageReport,
    /// The same per operator (in the dataflow's operator order).
    pub per_operator: Vec<UsageReport>,
    /// Each output's write, in output order; None where its stream had no batch at this time.
    pub outputs: Vec<Option<OutputWrite>>,
    /// Retried and skipped tasks, late records.
    pub tasks: TaskFigures,
    /// Records held in state (keys, window entries) after the batch.
    pub state_records: usize,
    /// Host memory the state holds after the batch (what `job.max-state-bytes` caps).
    pub state_bytes: usize,
    /// A scale-out task's batch: the processes taking part in the job when it ended.
    pub processes: Option<usize>,
}

/// One output's write of one batch.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct OutputWrite {
    /// Records written.
    pub records: usize,
    /// Their bytes (keys and values).
    pub bytes: usize,
    /// Time the write took, in microseconds (retries included).
    pub micros: u64,
}

impl BatchReport {
    /// Scheduling delay plus processing time.
    pub fn total_delay(&self) -> Duration {
        self.scheduling_delay + self.processing_time
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for BatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch {} ms: {} input records ({} bytes, {} partitions), {} output records, scheduling delay {}, processing time {}, total delay {}",
            self.time_ms,
            self.input_records,
            self.input_bytes,
            self.partitions,
            self.output_records,
            ms(self.scheduling_delay),
            ms(self.processing_time),
            ms(self.total_delay())
        )?;
        if self.skipped_lines > 0 {
            write!(f, ", {} bad lines skipped", self.skipped_lines)?;
        }
        write!(f, "; wasm: {}", self.usage)?;
        let tasks = &self.tasks;
        if tasks.retries > 0 {
            write!(f, "; {} task retries", tasks.retries)?;
        }
        if tasks.skipped_tasks > 0 {
            write!(
                f,
                "; {} failed tasks skipped ({} input records dead-lettered)",
                tasks.skipped_tasks, tasks.skipped_records
            )?;
        }
        if tasks.late_records > 0 {
            write!(f, "; {} late records", tasks.late_records)?;
        }
        if self.state_records > 0 {
            write!(
                f,
                "; {} records in state ({})",
                self.state_records,
                crate::wasm::bytes(self.state_bytes)
            )?;
        }
        if let Some(processes) = self.processes {
            write!(f, "; {processes} processes in the job")?;
        }
        Ok(())
    }
}

/// Figures over a whole run.
#[derive(Default, Debug)]
pub struct Summary {
    reports: Vec<BatchReport>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

impl Summary {
    /// Adds a batch.
    pub fn record(&mut self, report: BatchReport) {
        self.reports.push(report);
    }

    /// Batches completed.
    pub fn batches(&self) -> usize {
        self.reports.len()
    }

    /// The job's consumption over the whole run.
    pub fn usage(&self) -> UsageReport {
        let mut total = UsageReport::default();
        for report in &self.reports {
            total.merge(&report.usage);
        }
        total
    }

    /// A multi-line summary for the end of a run; `elapsed` is the job's wall time.
    pub fn render(&self, elapsed: Duration) -> String {
        let records: usize = self.reports.iter().map(|r| r.input_records).sum();
        let bytes: usize = self.reports.iter().map(|r| r.input_bytes).sum();
        let skipped: u64 = self.reports.iter().map(|r| r.skipped_lines).sum();
        let busy: Duration = self.reports.iter().map(|r| r.processing_time).sum();
        let sorted = |f: fn(&BatchReport) -> Duration| {
            let mut v: Vec<Duration> = self.reports.iter().map(f).collect();
            v.sort();
            v
        };
        let processing = sorted(|r| r.processing_time);
        let scheduling = sorted(|r| r.scheduling_delay);
        let total = sorted(BatchReport::total_delay);
        let line = |name: &str, v: &[Duration]| {
            format!(
                "  {name:<17} p50 {:>10}  p99 {:>10}  max {:>10}\n",
                ms(percentile(v, 50.0)),
                ms(percentile(v, 99.0)),
                ms(v.last().copied().unwrap_or_default())
            )
        };
        let rate = |n: f64, d: Duration| {
            if d.is_zero() {
                0.0
            } else {
                n / d.as_secs_f64()
            }
        };
        let mut out = format!(
            "summary: {} batches, {records} input records, {:.1} MB in {:.2} s ({:.0} records/s; {:.1} MB/s while processing)\n",
            self.reports.len(),
            bytes as f64 / 1e6,
            elapsed.as_secs_f64(),
            rate(records as f64, elapsed),
            rate(bytes as f64 / 1e6, busy),
        );
        out.push_str(&line("scheduling delay", &scheduling));
        out.push_str(&line("processing time", &processing));
        out.push_str(&line("total delay", &total));
        if skipped > 0 {
            out.push_str(&format!("  bad lines skipped: {skipped}\n"));
        }
        out.push_str(&format!("  wasm: {}\n", self.usage()));
        let retries: u64 = self.reports.iter().map(|r| r.tasks.retries).sum();
        let skipped_tasks: u64 = self.reports.iter().map(|r| r.tasks.skipped_tasks).sum();
        if retries + skipped_tasks > 0 {
            let dead: u64 = self.reports.iter().map(|r| r.tasks.skipped_records).sum();
            out.push_str(&format!(
                "  task retries: {retries}; tasks skipped: {skipped_tasks} ({dead} input records dead-lettered)\n"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(51));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
