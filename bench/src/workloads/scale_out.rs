//! Workload: scale-out (docs/SCALE-OUT.md). The same job run by one process and by two, each
//! process pinned to its own core (`taskset`) with one worker, sharing the job through a
//! consumer group of the test broker (tansu, in memory, on 127.0.0.1, not pinned).
//!
//! - Throughput: `max_bytes` of the corpus's lines (round and round) in an 8-partition topic; the word count across the
//!   repartition topic (tokenize in the 8 map tasks, reduce-by-key in the 8 reduce tasks,
//!   counts to a Kafka topic exactly-once), at most `CAP` records per partition and batch so
//!   that it runs as a series of 1 s batches. Measured from the moment every process runs
//!   batches with input (the first batch with input of the process that got its tasks last)
//!   until every reduce task has run the last batch with input: the map tasks' input bytes
//!   in that window over its length. The p99 of the batches' total delay in the window is
//!   reported beside it, and the processes' CPU use in the window (from /proc every 100 ms):
//!   input per CPU second, two processes over one, says whether the job does the same work
//!   per record in two processes, apart from how much CPU the machine gave them.
//! - Rebalance: two processes run the job while a feeder produces at a fixed rate; one
//!   leaves (SIGINT) and a third joins at once. The cost is the longest time a task went
//!   without finishing a batch, less the 1 s interval: what the move of its partition cost.

use super::WORDCOUNT_STEPS;
use super::kafka::{Broker, Feeder, corpus_lines, create_topic, producer, send, start_broker};
use crate::process::{self, BatchLine, Running};
use crate::stats::percentile;
use anyhow::{Context, Result, bail};
use rdkafka::producer::Producer;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Records per partition and batch at most.
const CAP: usize = 50_000;

/// The workload's figures.
#[derive(Debug, serde::Serialize)]
pub struct ScaleOutFigures {
    /// MB of records (values) in the input topic.
    pub input_mb: f64,
    /// Records in the input topic.
    pub records: u64,
    /// One process: MB/s of input in the measured window.
    pub one_process_mb_s: f64,
    /// Two processes: the same.
    pub two_processes_mb_s: f64,
    /// `two_processes_mb_s / one_process_mb_s`.
    pub ratio: f64,
    /// The broker's CPU use during the one-process run, in cores (CPU seconds over wall
    /// seconds): what the two pinned processes share the machine's two cores with.
    pub one_process_broker_cores: f64,
    /// The same during the two-process run.
    pub two_processes_broker_cores: f64,
    /// Rebalances inside the two-process run's measured window (a process's tasks changed
    /// while it was measured).
    pub two_processes_rebalances_in_window: usize,
    /// The Spate process's CPU use in the measured window, in cores (at most 1: it is pinned).
    pub one_process_spate_cores: f64,
    /// The two Spate processes' together, in cores (at most 2).
    pub two_processes_spate_cores: f64,
    /// MB of input per Spate CPU second, two processes over one: 1.0 when a second process
    /// does the same work per record (the job itself scales), whatever CPU time it was given.
    pub per_cpu_second_ratio: f64,
    /// Per process of the two-process run, the share of the window in which at least one of
    /// its tasks was running a batch, and the share in which one of its map tasks was: below
    /// 1.0, the process had no batch to run part of the time (it waited for input, or its
    /// reduce tasks for the other process's map tasks).
    pub two_processes_busy: Vec<(f64, f64)>,
    /// The same for the one-process run.
    pub one_process_busy: Vec<(f64, f64)>,
    /// p99 of the batches' total delay in the window, one process, ms.
    pub one_process_p99_ms: f64,
    /// The same, two processes.
    pub two_processes_p99_ms: f64,
    /// The offered rate of the rebalance run, MB/s.
    pub rebalance_offered_mb_s: f64,
    /// The longest time a task finished no batch while one member left and one joined (less
    /// the batch interval), and where it was.
    pub rebalance_gap: RebalanceGap,
}

/// The job, named `name` (its group and repartition topic follow), reading `topic`.
fn pipeline(name: &str, bootstrap: &str, topic: &str, checkpoints: &Path) -> String {
    format!(
        r#"[job]
name = "{name}"
batch-interval = "1s"
workers = 1
checkpoint-dir = "{checkpoints}"
group = "bench.{name}"

[sources.lines]
type = "kafka"
bootstrap = "{bootstrap}"
topics = ["{topic}"]
starting-offsets = "earliest"
max-records-per-partition = {CAP}

[sources.lines.client]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500

{WORDCOUNT_STEPS}
[[outputs]]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{name}-out"
delivery = "exactly-once"
"#,
        checkpoints = checkpoints.display()
    )
}

/// Writes the job `name` reading `topic` into `work` (its output topic created, its
/// checkpoints fresh); returns the pipeline file's path.
fn job_file(broker: &Broker, name: &str, topic: &str, work: &Path) -> Result<String> {
    create_topic(&broker.bootstrap, &format!("{name}-out"))?;
    let path = work.join(format!("{name}.toml"));
    let checkpoints = work.join(format!("{name}-ck"));
    let _ = std::fs::remove_dir_all(&checkpoints);
    std::fs::write(
        &path,
        pipeline(name, &broker.bootstrap, topic, &checkpoints),
    )?;
    Ok(path.to_str().context("UTF-8 path")?.to_owned())
}

/// A batch line with the process that logged it and when it arrived.
struct Seen {
    process: usize,
    at: Instant,
    batch: BatchLine,
}

impl Seen {
    fn is_reduce(&self) -> bool {
        self.batch.job.contains(".repartition-")
    }

    /// When its processing started (arrival less its processing time, near enough).
    fn started(&self) -> Instant {
        self.at - Duration::from_secs_f64(self.batch.processing_ms / 1000.0)
    }
}

/// What a member logs, before the list of its tasks, after each rebalance (runtime/src/
/// scale_out/member.rs).
const OWNS_AFTER_REBALANCE: &str = "task(s) after a rebalance: [";

/// Moves the batch lines that arrived from `processes` into `seen`, and when a process said
/// what it owns after a rebalance into `rebalances`.
fn collect(processes: &[Running], seen: &mut Vec<Seen>, rebalances: &mut Vec<Instant>) {
    for (process, running) in processes.iter().enumerate() {
        while let Ok((at, line)) = running.lines.try_recv() {
            if let Some(batch) = process::parse_batch_line(&line) {
                seen.push(Seen { process, at, batch });
            } else if line.contains(OWNS_AFTER_REBALANCE) {
                rebalances.push(at);
            }
        }
    }
}

/// Stops `processes` gracefully and waits for them.
fn stop(processes: Vec<Running>) -> Result<()> {
    for p in &processes {
        p.interrupt();
    }
    for p in processes {
        p.finish()?;
    }
    Ok(())
}

/// What one throughput run measured.
struct Throughput {
    /// Input MB/s in the window where all processes ran.
    mb_s: f64,
    /// p99 of the batches' total delay in the window, ms.
    p99_ms: f64,
    /// The broker's CPU use over the run, in cores.
    broker_cores: f64,
    /// The Spate processes' CPU use in the window, in cores.
    spate_cores: f64,
    /// Rebalances inside the window (a process's ownership changed after it opened): tasks
    /// moving while measured, each costing the moved tasks a few seconds with the test broker.
    rebalances: usize,
    /// Per process, the share of the window in which at least one of its tasks was running a
    /// batch (map or reduce) and the share in which one of its map tasks was.
    busy: Vec<(f64, f64)>,
}

/// The share of `[start, end]` that the union of `intervals` covers.
fn covered(mut intervals: Vec<(Instant, Instant)>, start: Instant, end: Instant) -> f64 {
    intervals.sort();
    let (mut total, mut reached) = (Duration::ZERO, start);
    for (from, to) in intervals {
        let (from, to) = (from.max(reached), to.min(end));
        if to > from {
            total += to - from;
            reached = to;
        }
    }
    total.as_secs_f64() / end.duration_since(start).as_secs_f64()
}

/// The CPU seconds `processes` had used together at `at`, from `samples` (taken in time
/// order): the last sample at or before `at`, the first one if none is.
fn cpu_at(samples: &[(Instant, f64)], at: Instant) -> f64 {
    samples
        .iter()
        .take_while(|(when, _)| *when <= at)
        .last()
        .or(samples.first())
        .map_or(0.0, |(_, cpu)| *cpu)
}

/// One throughput run of `count` processes over `topic` (`records` records, `bytes` bytes).
fn throughput(
    broker: &Broker,
    count: usize,
    topic: &str,
    (records, bytes): (u64, u64),
    cache: &Path,
    work: &Path,
) -> Result<Throughput> {
    let path = job_file(broker, &format!("so-{count}p"), topic, work)?;
    let path = path.as_str();
    let (started, broker_cpu) = (Instant::now(), broker.cpu_seconds());
    let processes = (0..count)
        .map(|core| process::start_on(Some(core), &["run", path, "--no-ui"], cache))
        .collect::<Result<Vec<_>>>()?;
    let (mut seen, mut rebalances) = (Vec::new(), Vec::new());
    // The processes' CPU seconds together, every 100 ms: what they used in the window.
    let mut cpu = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        collect(&processes, &mut seen, &mut rebalances);
        let used: f64 = processes
            .iter()
            .map(|p| process::cpu_seconds(p.pid()))
            .sum();
        cpu.push((Instant::now(), used));
        let map_records: u64 = seen
            .iter()
            .filter(|s| !s.is_reduce())
            .map(|s| s.batch.records)
            .sum();
        if map_records >= records {
            // Done once every reduce task ran the last batch with map input.
            let last = seen
                .iter()
                .filter(|s| !s.is_reduce() && s.batch.records > 0)
                .map(|s| s.batch.time_ms)
                .max()
                .unwrap_or(0);
            let mut reduced: BTreeMap<&str, u64> = BTreeMap::new();
            for s in seen.iter().filter(|s| s.is_reduce()) {
                let t = reduced.entry(&s.batch.job).or_default();
                *t = (*t).max(s.batch.time_ms);
            }
            if reduced.len() == 8 && reduced.values().all(|&t| t >= last) {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("{count} process(es) did not count the input within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let end = seen.iter().map(|s| s.at).max().unwrap_or_else(Instant::now);
    let broker_cores = (broker.cpu_seconds() - broker_cpu) / started.elapsed().as_secs_f64();
    stop(processes)?;
    // The window opens when the last process to get tasks started its first batch with input.
    let start = (0..count)
        .map(|p| {
            seen.iter()
                .filter(|s| s.process == p && !s.is_reduce() && s.batch.records > 0)
                .map(Seen::started)
                .min()
        })
        .collect::<Option<Vec<_>>>()
        .and_then(|firsts| firsts.into_iter().max())
        .context("a process ran no batch with input")?;
    let in_window: Vec<&Seen> = seen.iter().filter(|s| s.started() >= start).collect();
    let window_bytes: u64 = in_window
        .iter()
        .filter(|s| !s.is_reduce())
        .map(|s| s.batch.bytes)
        .sum();
    if window_bytes < bytes / 2 {
        bail!(
            "{count} process(es): only {window_bytes} of {bytes} bytes were read once all \
             processes ran: the window is too short to measure"
        );
    }
    let delays: Vec<f64> = in_window.iter().map(|s| s.batch.total_ms).collect();
    let seconds = end.duration_since(start).as_secs_f64();
    let running = |p: usize, maps_only: bool| {
        let intervals = in_window
            .iter()
            .filter(|s| s.process == p && !(maps_only && s.is_reduce()))
            .map(|s| (s.started(), s.at))
            .collect();
        covered(intervals, start, end)
    };
    let busy = (0..count)
        .map(|p| (running(p, false), running(p, true)))
        .collect();
    Ok(Throughput {
        mb_s: window_bytes as f64 / 1e6 / seconds,
        p99_ms: percentile(&delays, 99.0),
        broker_cores,
        spate_cores: (cpu_at(&cpu, end) - cpu_at(&cpu, start)) / seconds,
        rebalances: rebalances.iter().filter(|&&at| at > start).count(),
        busy,
    })
}

/// A task's batch seen in the rebalance run: when its line came, and from which member.
type Sighting = (Instant, usize);

/// Where the longest gap of the rebalance run was.
#[derive(Debug, serde::Serialize)]
pub struct RebalanceGap {
    /// Its length less the batch interval, seconds.
    pub seconds: f64,
    /// The task (its job's name).
    pub task: String,
    /// The member that logged the task's batch before the gap (`a` stays, `b` leaves, `c`
    /// joins).
    pub before: String,
    /// The member that logged the one after it; "nobody" when the task was not resumed while
    /// the run watched (the gap then ends with the watch, 30 s after the leave).
    pub after: String,
    /// When the gap began and ended, seconds after `b` was told to leave.
    pub from_s: f64,
    /// The same for its end.
    pub to_s: f64,
    /// When the group gave the task to the member after the gap (its "owns ... after a
    /// rebalance" line naming it), seconds after `b` was told to leave, if the task moved: the
    /// time before it is the group's (rebalance rounds), the time after it Spate's. A reduce
    /// task that did not move waits for the moved map tasks' batches instead.
    pub assigned_s: Option<f64>,
    /// Of every task the group gave a member after the leave, the longest time from that to
    /// the task's first batch there, seconds: Spate's part of a move (recovering the task,
    /// its clients, waiting for the next batch time).
    pub handover_s: f64,
    /// Where the members' logs were kept (`<dir>/so-rebalance-<member>.log`).
    pub logs: String,
}

/// The rebalance run: two members (`a`, `b`), a feeder at `rate` bytes/s of `lines`; `b`
/// leaves and `c` joins. The members' logs are kept in `work` for a look at the longest gap.
fn rebalance(
    broker: &Broker,
    lines: &[&[u8]],
    rate: f64,
    cache: &Path,
    work: &Path,
) -> Result<RebalanceGap> {
    create_topic(&broker.bootstrap, "live")?;
    let path = job_file(broker, "so-rebalance", "live", work)?;
    let path = path.as_str();
    let start = |core| process::start_on(Some(core), &["run", path, "--no-ui"], cache);
    let feeder = Feeder::start(&broker.bootstrap, "live", lines, rate);
    // Every line of every member, with when it came: (member, at, line).
    let mut logged: Vec<(usize, Instant, String)> = Vec::new();
    let watch = |members: &[(usize, &Running)], logged: &mut Vec<_>, for_: Duration| {
        let until = Instant::now() + for_;
        while Instant::now() < until {
            for (member, running) in members {
                while let Ok((at, line)) = running.lines.try_recv() {
                    logged.push((*member, at, line));
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // `a` first, so that it is the group's leader and `b` is not: when the leader leaves while
    // a rebalance forms (`c` joining), the test broker (tansu 0.6) keeps naming the departed
    // member leader in every later generation, and the group never gets an assignment again
    // (docs/SCALE-OUT.md); that is the broker's, not a cost of Spate's rebalance.
    let a = start(0)?;
    watch(&[(0, &a)], &mut logged, Duration::from_secs(8));
    let b = start(1)?;
    // Both members own tasks and run them (the first rebalances are not measured).
    watch(&[(0, &a), (1, &b)], &mut logged, Duration::from_secs(20));
    let mut tasks: Vec<String> = logged
        .iter()
        .filter_map(|(_, _, line)| process::parse_batch_line(line).map(|b| b.job))
        .collect();
    tasks.sort();
    tasks.dedup();
    if tasks.len() < 16 {
        bail!("the two members did not run all 16 tasks within 20 s");
    }
    let measured_from = logged.len();
    watch(&[(0, &a), (1, &b)], &mut logged, Duration::from_secs(5));
    let leave = Instant::now();
    b.interrupt();
    let c = start(1)?;
    // The leaver's last lines still count; it is collected until it exits.
    let left = std::thread::spawn(move || -> Result<Vec<(Instant, String)>> {
        let lines: Vec<(Instant, String)> = b.lines.iter().collect();
        b.finish()?;
        Ok(lines)
    });
    watch(&[(0, &a), (2, &c)], &mut logged, Duration::from_secs(30));
    let watched_until = Instant::now();
    let leaver_lines = left
        .join()
        .map_err(|_| anyhow::anyhow!("collector panicked"))??;
    logged.extend(leaver_lines.into_iter().map(|(at, line)| (1, at, line)));
    stop(vec![a, c])?;
    feeder.stop()?;
    const NAMES: [&str; 3] = ["a", "b", "c"];
    for (member, name) in NAMES.iter().enumerate() {
        let text: Vec<&str> = logged
            .iter()
            .filter(|(m, _, _)| *m == member)
            .map(|(_, _, line)| line.as_str())
            .collect();
        std::fs::write(
            work.join(format!("so-rebalance-{name}.log")),
            text.join("\n"),
        )?;
    }
    // Per task, its batches from 5 s before the leave on, in time order; the longest gap.
    let mut per_task: BTreeMap<String, Vec<Sighting>> = BTreeMap::new();
    for (member, at, line) in &logged[measured_from..] {
        if let Some(batch) = process::parse_batch_line(line) {
            per_task.entry(batch.job).or_default().push((*at, *member));
        }
    }
    // The end of the watch closes every task's last gap: a task nobody resumed within it
    // counts with all the time it went without (its "member after" is `NOBODY`).
    const NOBODY: usize = usize::MAX;
    let mut longest: Option<(Duration, &str, Sighting, Sighting)> = None;
    for (task, batches) in per_task.iter_mut() {
        batches.sort();
        batches.push((watched_until, NOBODY));
        for pair in batches.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            if longest.is_none_or(|(g, ..)| gap > g) {
                longest = Some((gap, task, pair[0], pair[1]));
            }
        }
    }
    let (gap, task, before, after) = longest.context("no task ran two batches")?;
    // What each member owned after each of its rebalances: (member, at, `<topic>/<p>` names).
    let ownership: Vec<(usize, Instant, Vec<&str>)> = logged
        .iter()
        .filter_map(|(member, at, line)| {
            let (_, list) = line.split_once(OWNS_AFTER_REBALANCE)?;
            let parts = list
                .trim_end_matches(']')
                .split(' ')
                .filter(|p| !p.is_empty());
            Some((*member, *at, parts.collect()))
        })
        .collect();
    // The task job's name for a partition, and back.
    let job_of = |part: &str| {
        part.rsplit_once('/')
            .map(|(topic, p)| format!("so-rebalance.{topic}-{p}"))
    };
    let part_of = |job: &str| {
        job.strip_prefix("so-rebalance.")
            .and_then(|t| t.rsplit_once('-'))
            .map(|(topic, p)| format!("{topic}/{p}"))
    };
    // When the group gave the longest gap's task to its next owner, if it moved.
    let assigned = ownership
        .iter()
        .filter(|(member, at, _)| {
            after.1 != NOBODY && after.1 != before.1 && *member == after.1 && *at >= before.0
        })
        .find(|(_, _, parts)| part_of(task).is_some_and(|p| parts.contains(&p.as_str())))
        .map(|(_, at, _)| *at);
    // Spate's part of every move after the leave: from the group giving a member a task it
    // did not own to that task's first batch there (recovery, clients, the next grid tick).
    let mut handover = Duration::ZERO;
    for member in 0..NAMES.len() {
        let mut owned: Vec<&str> = Vec::new();
        for (_, at, parts) in ownership.iter().filter(|(m, ..)| *m == member) {
            let given = parts.iter().filter(|p| !owned.contains(p));
            for job in given.filter(|_| *at >= leave).filter_map(|p| job_of(p)) {
                let first_batch = logged.iter().find(|(m, batch_at, line)| {
                    *m == member
                        && batch_at >= at
                        && process::parse_batch_line(line).is_some_and(|b| b.job == job)
                });
                if let Some((_, batch_at, _)) = first_batch {
                    handover = handover.max(*batch_at - *at);
                }
            }
            owned = parts.clone();
        }
    }
    let since_leave = |at: Instant| {
        at.checked_duration_since(leave)
            .map_or_else(|| -(leave - at).as_secs_f64(), |d| d.as_secs_f64())
    };
    Ok(RebalanceGap {
        seconds: (gap.as_secs_f64() - 1.0).max(0.0),
        task: task.to_owned(),
        before: NAMES[before.1].to_owned(),
        after: NAMES
            .get(after.1)
            .map_or("nobody (not resumed while watched)", |n| n)
            .to_owned(),
        from_s: since_leave(before.0),
        to_s: since_leave(after.0),
        assigned_s: assigned.map(since_leave),
        handover_s: handover.as_secs_f64(),
        logs: work.display().to_string(),
    })
}

/// Runs the workload on `max_bytes` of the corpus's lines (again from its start when it is
/// shorter).
pub fn run(
    root: &Path,
    corpus: &Path,
    max_bytes: usize,
    cache: &Path,
    work: &Path,
) -> Result<ScaleOutFigures> {
    let broker = start_broker(root)?;
    let text = std::fs::read(corpus)?;
    let lines = corpus_lines(&text, usize::MAX);
    create_topic(&broker.bootstrap, "in")?;
    let loader = producer(&broker.bootstrap)?;
    // The corpus's lines round and round up to `max_bytes`: the window measured must hold
    // many batches (at 20 MB it held about three, and the ratio swung from 0.84x to 1.44x).
    let (mut bytes, mut records) = (0u64, 0u64);
    for line in lines.iter().cycle() {
        if bytes + line.len() as u64 > max_bytes as u64 {
            break;
        }
        send(&loader, "in", line)?;
        bytes += line.len() as u64;
        records += 1;
    }
    loader.flush(Duration::from_secs(300))?;
    let one = throughput(&broker, 1, "in", (records, bytes), cache, work)?;
    let two = throughput(&broker, 2, "in", (records, bytes), cache, work)?;
    let rate = 0.5 * one.mb_s * 1e6;
    let gap = rebalance(&broker, &lines, rate, cache, work)?;
    Ok(ScaleOutFigures {
        input_mb: bytes as f64 / 1e6,
        records,
        one_process_mb_s: one.mb_s,
        two_processes_mb_s: two.mb_s,
        ratio: two.mb_s / one.mb_s,
        one_process_broker_cores: one.broker_cores,
        two_processes_broker_cores: two.broker_cores,
        two_processes_rebalances_in_window: two.rebalances,
        one_process_spate_cores: one.spate_cores,
        two_processes_spate_cores: two.spate_cores,
        per_cpu_second_ratio: (two.mb_s / two.spate_cores) / (one.mb_s / one.spate_cores),
        one_process_p99_ms: one.p99_ms,
        two_processes_p99_ms: two.p99_ms,
        one_process_busy: one.busy,
        two_processes_busy: two.busy,
        rebalance_offered_mb_s: rate / 1e6,
        rebalance_gap: gap,
    })
}
