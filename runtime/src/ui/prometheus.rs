//! `/metrics` in the Prometheus text exposition format (version 0.0.4): every job's counters,
//! gauges and delay histograms, labelled by job and tenant (and source), rendered from a
//! snapshot at each scrape. Times are in seconds, as Prometheus names them.

use crate::status::{DELAY_BUCKETS_MS, JobSnapshot, JobState, NodeTotals, OperatorUsage, Registry};
use std::fmt::Write;

/// A metric family being written: its samples follow one `# HELP` and `# TYPE`.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    Family { out }
}

/// Writes one family, `(name, type, help)`, with a sample per set of labels (for families
/// outside the jobs', like `spate serve`'s per tenant).
pub fn write_family<'l>(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    samples: impl IntoIterator<Item = (Vec<(&'l str, &'l str)>, f64)>,
) {
    let mut f = family(out, name, kind, help);
    for (labels, value) in samples {
        f.sample(name, &labels, value);
    }
}

/// The items of job number `i` (its sources, operators or outputs), named, with a value each.
type Items<'a> = dyn Fn(usize, &JobSnapshot) -> Vec<(String, f64)> + 'a;

/// A family with a sample per job and item (a source, operator or output), the item's name
/// under label `label`.
fn per_item(
    out: &mut String,
    jobs: &[JobSnapshot],
    (name, kind): (&str, &str),
    help: &str,
    label: &str,
    items: &Items<'_>,
) {
    let mut f = family(out, name, kind, help);
    for (i, job) in jobs.iter().enumerate() {
        for (item, value) in items(i, job) {
            let labels = [
                ("job", job.description.name.as_str()),
                ("tenant", job.description.tenant.as_str()),
                (label, item.as_str()),
            ];
            f.sample(name, &labels, value);
        }
    }
}

/// Every job's metrics.
pub fn render(registry: &Registry) -> String {
    let statuses = registry.jobs();
    let jobs: Vec<JobSnapshot> = statuses.iter().map(|j| j.snapshot()).collect();
    let mut out = String::new();
    let per_job = |out: &mut String,
                   name: &str,
                   kind: &str,
                   help: &str,
                   value: &dyn Fn(&JobSnapshot) -> f64| {
        let mut f = family(out, name, kind, help);
        for job in &jobs {
            let labels = [
                ("job", job.description.name.as_str()),
                ("tenant", job.description.tenant.as_str()),
            ];
            f.sample(name, &labels, value(job));
        }
    };
    per_job(
        &mut out,
        "spate_job_running",
        "gauge",
        "1 while the job runs batches, 0 before and after.",
        &|j| f64::from(u8::from(j.state == JobState::Running)),
    );
    per_job(
        &mut out,
        "spate_job_failed",
        "gauge",
        "1 once the job has failed.",
        &|j| f64::from(u8::from(matches!(j.state, JobState::Failed(_)))),
    );
    per_job(
        &mut out,
        "spate_batch_interval_seconds",
        "gauge",
        "The job's batch interval.",
        &|j| j.description.batch_interval_ms as f64 / 1000.0,
    );
    per_job(
        &mut out,
        "spate_batches_total",
        "counter",
        "Batches completed.",
        &|j| j.batches_done as f64,
    );
    per_job(
        &mut out,
        "spate_output_records_total",
        "counter",
        "Records that reached the outputs.",
        &|j| j.totals.output_records as f64,
    );
    per_job(
        &mut out,
        "spate_output_bytes_total",
        "counter",
        "Bytes (keys and values) of the records that reached the outputs.",
        &|j| j.totals.output_bytes as f64,
    );
    per_job(
        &mut out,
        "spate_buffered_bytes",
        "gauge",
        "Input received and not yet processed.",
        &|j| j.buffered_bytes as f64,
    );
    per_job(
        &mut out,
        "spate_state_records",
        "gauge",
        "Records (keys, window entries) held in state after the latest batch.",
        &|j| j.state_records as f64,
    );
    per_job(
        &mut out,
        "spate_state_bytes",
        "gauge",
        "Host memory the state holds after the latest batch (what job.max-state-bytes caps).",
        &|j| j.state_bytes as f64,
    );
    per_job(
        &mut out,
        "spate_wasm_calls_total",
        "counter",
        "Operator (Wasm) calls.",
        &|j| j.totals.wasm_calls as f64,
    );
    per_job(
        &mut out,
        "spate_wasm_seconds_total",
        "counter",
        "Time inside operator calls, summed over workers.",
        &|j| j.totals.wasm_ms / 1000.0,
    );
    per_job(
        &mut out,
        "spate_wasm_fuel_total",
        "counter",
        "Fuel burnt by operators (0 unless limits.fuel is set).",
        &|j| j.totals.fuel as f64,
    );
    per_job(
        &mut out,
        "spate_wasm_traps_total",
        "counter",
        "Operator calls that trapped.",
        &|j| j.totals.traps as f64,
    );
    per_job(
        &mut out,
        "spate_wasm_limit_hits_total",
        "counter",
        "Operator calls that hit a limit (time, fuel, memory).",
        &|j| j.totals.limit_hits as f64,
    );
    per_job(
        &mut out,
        "spate_wasm_peak_memory_bytes",
        "gauge",
        "Largest linear memory of any operator instance so far.",
        &|j| j.totals.peak_memory as f64,
    );
    per_job(
        &mut out,
        "spate_task_retries_total",
        "counter",
        "Task attempts that failed and ran again.",
        &|j| j.totals.task_retries as f64,
    );
    per_job(
        &mut out,
        "spate_tasks_skipped_total",
        "counter",
        "Tasks skipped (their input dead-lettered) after their last attempt failed.",
        &|j| j.totals.skipped_tasks as f64,
    );
    per_job(
        &mut out,
        "spate_bad_lines_skipped_total",
        "counter",
        "Input lines skipped by on-bad-line = \"skip\".",
        &|j| j.totals.skipped_lines as f64,
    );
    per_job(
        &mut out,
        "spate_late_records_total",
        "counter",
        "Event-time records that came after their window closed.",
        &|j| j.totals.late_records as f64,
    );
    let per_source = |j: &JobSnapshot, of: &dyn Fn(usize) -> Option<u64>| -> Vec<(String, f64)> {
        let sources = j.description.sources.iter().enumerate();
        sources
            .map(|(i, s)| (s.clone(), of(i).unwrap_or(0) as f64))
            .collect()
    };
    per_item(
        &mut out,
        &jobs,
        ("spate_input_records_total", "counter"),
        "Input records, per source.",
        "source",
        &|_, j| per_source(j, &|i| j.totals.source_records.get(i).copied()),
    );
    per_item(
        &mut out,
        &jobs,
        ("spate_input_bytes_total", "counter"),
        "Input bytes, per source.",
        "source",
        &|_, j| per_source(j, &|i| j.totals.source_bytes.get(i).copied()),
    );
    let lags: Vec<Vec<(String, f64)>> = statuses
        .iter()
        .map(|job| {
            job.sources()
                .into_iter()
                .flat_map(|s| {
                    let source = s.name;
                    s.lag
                        .into_iter()
                        .map(move |(part, lag)| (format!("{source}:{part}"), lag as f64))
                })
                .collect()
        })
        .collect();
    per_item(
        &mut out,
        &jobs,
        ("spate_source_lag_records", "gauge"),
        "Records between a source part's safe position and its end (Kafka: the high \
         watermark), labelled source:topic/partition.",
        "part",
        &|i, _| lags.get(i).cloned().unwrap_or_default(),
    );
    let per_operator = |j: &JobSnapshot, of: &dyn Fn(&OperatorUsage) -> f64| {
        let operators = j.description.operators.iter().zip(&j.totals.operators);
        operators
            .map(|(d, usage)| (d.name.clone(), of(usage)))
            .collect::<Vec<_>>()
    };
    for (name, kind, help, of) in [
        (
            "spate_operator_calls_total",
            "counter",
            "Calls, per operator.",
            &(|u: &OperatorUsage| u.calls as f64) as &dyn Fn(&OperatorUsage) -> f64,
        ),
        (
            "spate_operator_wasm_seconds_total",
            "counter",
            "Time inside calls, per operator, summed over workers.",
            &|u: &OperatorUsage| u.wasm_ms / 1000.0,
        ),
        (
            "spate_operator_fuel_total",
            "counter",
            "Fuel burnt, per operator (0 unless limits.fuel is set).",
            &|u: &OperatorUsage| u.fuel as f64,
        ),
        (
            "spate_operator_traps_total",
            "counter",
            "Calls that trapped, per operator.",
            &|u: &OperatorUsage| u.traps as f64,
        ),
        (
            "spate_operator_limit_hits_total",
            "counter",
            "Calls that hit a limit, per operator.",
            &|u: &OperatorUsage| u.limit_hits as f64,
        ),
        (
            "spate_operator_peak_memory_bytes",
            "gauge",
            "Largest linear memory of an instance, per operator.",
            &|u: &OperatorUsage| u.peak_memory as f64,
        ),
    ] {
        per_item(&mut out, &jobs, (name, kind), help, "operator", &|_, j| {
            per_operator(j, of)
        });
    }
    let per_output = |j: &JobSnapshot, of: &[f64]| -> Vec<(String, f64)> {
        let outputs = j.description.outputs.iter().enumerate();
        outputs
            .map(|(i, o)| (o.clone(), of.get(i).copied().unwrap_or(0.0)))
            .collect()
    };
    per_item(
        &mut out,
        &jobs,
        ("spate_output_written_records_total", "counter"),
        "Records written, per output.",
        "output",
        &|_, j| {
            let written: Vec<f64> = j.totals.output_writes.iter().map(|&n| n as f64).collect();
            per_output(j, &written)
        },
    );
    per_item(
        &mut out,
        &jobs,
        ("spate_output_write_seconds_total", "counter"),
        "Time spent writing, per output (retries included).",
        "output",
        &|_, j| {
            let seconds: Vec<f64> = j.totals.output_ms.iter().map(|ms| ms / 1000.0).collect();
            per_output(j, &seconds)
        },
    );
    per_item(
        &mut out,
        &jobs,
        ("spate_output_retries_total", "counter"),
        "Failed writes (or connections) tried again, per output.",
        "output",
        &|_, j| {
            let retries: Vec<f64> = j.output_gauges.iter().map(|g| g.retries as f64).collect();
            per_output(j, &retries)
        },
    );
    let per_node = |j: &JobSnapshot, of: &dyn Fn(&NodeTotals) -> f64| -> Vec<(String, f64)> {
        let nodes = j.description.graph.iter();
        nodes
            .map(|n| {
                let totals = j.totals.nodes.get(n.id).cloned().unwrap_or_default();
                (format!("{}: {}", n.id, n.label), of(&totals))
            })
            .collect()
    };
    for (name, help, of) in [
        (
            "spate_node_tasks_total",
            "Tasks run, per plan node (`<stage>: <label>`).",
            &(|n: &NodeTotals| n.tasks as f64) as &dyn Fn(&NodeTotals) -> f64,
        ),
        (
            "spate_node_busy_seconds_total",
            "Wall time of a node's tasks, summed over workers.",
            &|n: &NodeTotals| n.busy_ms / 1000.0,
        ),
        (
            "spate_node_wasm_seconds_total",
            "Time a node's tasks spent inside operator calls.",
            &|n: &NodeTotals| n.wasm_ms / 1000.0,
        ),
        (
            "spate_node_records_in_total",
            "Records into a node's tasks.",
            &|n: &NodeTotals| n.records_in as f64,
        ),
        (
            "spate_node_records_out_total",
            "Records out of a node's tasks.",
            &|n: &NodeTotals| n.records_out as f64,
        ),
    ] {
        per_item(&mut out, &jobs, (name, "counter"), help, "node", &|_, j| {
            per_node(j, of)
        });
    }
    per_job(
        &mut out,
        "spate_checkpoints_total",
        "counter",
        "Checkpoints written.",
        &|j| j.totals.checkpoints as f64,
    );
    per_job(
        &mut out,
        "spate_checkpoint_copy_seconds_total",
        "counter",
        "Time copying state for checkpoints (the part that holds batches up).",
        &|j| j.totals.checkpoint_copy_ms / 1000.0,
    );
    per_job(
        &mut out,
        "spate_checkpoint_write_seconds_total",
        "counter",
        "Time compressing and writing checkpoints (on their own thread).",
        &|j| j.totals.checkpoint_write_ms / 1000.0,
    );
    per_job(
        &mut out,
        "spate_queued_batches",
        "gauge",
        "Batches cut and waiting for the one being processed.",
        &|j| j.queued_batches as f64,
    );
    for (name, help, buckets, sum) in [
        (
            "spate_batch_processing_seconds",
            "Batch processing time (outputs included).",
            &(|j: &JobSnapshot| j.totals.processing_buckets.clone())
                as &dyn Fn(&JobSnapshot) -> Vec<u64>,
            &(|j: &JobSnapshot| j.totals.processing_ms) as &dyn Fn(&JobSnapshot) -> f64,
        ),
        (
            "spate_batch_total_delay_seconds",
            "Batch total delay: scheduling delay plus processing time.",
            &|j: &JobSnapshot| j.totals.total_delay_buckets.clone(),
            &|j: &JobSnapshot| j.totals.total_delay_ms,
        ),
    ] {
        let mut f = family(&mut out, name, "histogram", help);
        for job in &jobs {
            let (job_name, tenant) = (
                job.description.name.as_str(),
                job.description.tenant.as_str(),
            );
            let counts = buckets(job);
            let mut cumulative = 0;
            for (i, bound) in DELAY_BUCKETS_MS
                .iter()
                .map(|b| b / 1000.0)
                .chain([f64::INFINITY])
                .enumerate()
            {
                cumulative += counts.get(i).copied().unwrap_or(0);
                let le = number(bound);
                f.sample(
                    &format!("{name}_bucket"),
                    &[("job", job_name), ("tenant", tenant), ("le", &le)],
                    cumulative as f64,
                );
            }
            let labels = [("job", job_name), ("tenant", tenant)];
            f.sample(&format!("{name}_sum"), &labels, sum(job) / 1000.0);
            f.sample(&format!("{name}_count"), &labels, cumulative as f64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_numbers_plain() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
    }
}
