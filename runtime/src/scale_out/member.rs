//! A process's membership in a scale-out job's consumer group, and the task jobs it runs for
//! the partitions the group gives it. The member reads no records: it pauses what it is given
//! and only takes part in the group (heartbeats, rebalances). A partition is handed back
//! (revoked) only once its task's job has stopped at a batch boundary, so that while both are
//! alive and in the group no two processes run one task.

use super::presence::{self, Presence};
use super::{ScaleOut, TaskPlanner, task_name};
use crate::checkpoint::DirInUse;
use crate::job::RunOptions;
use crate::kafka::{log_client_error, log_client_line, part_name};
use anyhow::{Context, Result, anyhow};
use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A Kafka partition: topic and number.
type Part = (String, i32);

/// One task's job, running on its own thread.
struct TaskRun {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<()>>,
}

/// The task jobs this process runs.
struct Tasks {
    scale_out: Arc<ScaleOut>,
    planner: Arc<TaskPlanner>,
    max_batches: Option<u64>,
    registry: Arc<crate::status::Registry>,
    running: Mutex<BTreeMap<Part, TaskRun>>,
    /// The first task failure; it ends the process's share of the job.
    failure: Mutex<Option<anyhow::Error>>,
    /// Whether any task was started (`--max-batches` ends once all of them have ended).
    started: AtomicBool,
    /// How many tasks write into each repartition topic (the input's partitions: every topic
    /// has as many).
    writers: usize,
    /// How many processes take part in the job (read into every task's batch figures).
    processes: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tasks {
    /// Starts the job of task `part`, unless it runs already.
    fn start(&self, part: &Part) {
        let mut running = lock(&self.running);
        if running.contains_key(part) {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let options = RunOptions {
            max_batches: self.max_batches,
            stop: stop.clone(),
            fresh: false,
            registry: self.registry.clone(),
            processes: Some(self.processes.clone()),
        };
        let overrides = self.scale_out.task_overrides(&part.0, part.1, self.writers);
        let dir = self.scale_out.task_dir(&part.0, part.1);
        let planner = self.planner.clone();
        let task = task_name(&part.0, part.1);
        let name = format!("{}.{task}", self.scale_out.job);
        let thread = std::thread::Builder::new()
            .name(format!("spate-task-{task}"))
            .spawn(move || {
                let span = tracing::info_span!("job", name = %name);
                let _entered = span.enter();
                run_task(planner.as_ref(), &overrides, &dir, (name, task), &options)
            });
        match thread {
            Ok(thread) => {
                running.insert(part.clone(), TaskRun { stop, thread });
                self.started.store(true, Ordering::SeqCst);
            }
            Err(e) => self.fail(anyhow!(
                "cannot start a thread for task {}: {e}",
                part_name(&part.0, part.1)
            )),
        }
    }

    /// Stops the jobs of `parts` at their next batch boundary and waits for them.
    fn stop(&self, parts: &[Part]) {
        let runs: Vec<(Part, TaskRun)> = {
            let mut running = lock(&self.running);
            parts
                .iter()
                .filter_map(|p| running.remove(p).map(|run| (p.clone(), run)))
                .collect()
        };
        // Every one asked first, so that they stop together rather than one after another.
        for (_, run) in &runs {
            run.stop.store(true, Ordering::SeqCst);
        }
        for (part, run) in runs {
            self.ended(&part, run.thread);
        }
    }

    fn stop_all(&self) {
        let parts: Vec<Part> = lock(&self.running).keys().cloned().collect();
        self.stop(&parts);
    }

    /// Notes how the job of task `part` ended.
    fn ended(&self, part: &Part, thread: JoinHandle<Result<()>>) {
        let result = thread
            .join()
            .unwrap_or_else(|_| Err(anyhow!("internal error: the task's thread panicked")));
        if let Err(e) = result {
            self.fail(e.context(format!("task {}", part_name(&part.0, part.1))));
        }
    }

    fn fail(&self, error: anyhow::Error) {
        let mut failure = lock(&self.failure);
        if failure.is_none() {
            tracing::error!("{error:#}");
            *failure = Some(error);
        }
    }

    /// Collects the task jobs that ended by themselves; true when none runs any more.
    fn reap(&self) -> bool {
        let finished: Vec<(Part, TaskRun)> = {
            let mut running = lock(&self.running);
            let done: Vec<Part> = running
                .iter()
                .filter(|(_, run)| run.thread.is_finished())
                .map(|(part, _)| part.clone())
                .collect();
            done.into_iter()
                .filter_map(|p| running.remove(&p).map(|run| (p, run)))
                .collect()
        };
        for (part, run) in finished {
            self.ended(&part, run.thread);
        }
        lock(&self.running).is_empty()
    }
}

/// Runs the job of one task (`name`, `task`) until it ends or `options.stop` is set: planned
/// with `overrides`, keeping its state in `dir`. While the task's last owner still holds that
/// directory (a process hung past its session, or one still stopping while the group moved
/// on), it waits; its lock goes when the owner exits or lets go.
fn run_task(
    planner: &TaskPlanner,
    overrides: &[String],
    dir: &std::path::Path,
    (name, task): (String, String),
    options: &RunOptions,
) -> Result<()> {
    let mut waited = false;
    let held = |e: &anyhow::Error| e.chain().any(|c| c.is::<DirInUse>());
    loop {
        if options.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Probed first, so that waiting does not plan (and register) the task's job again and
        // again; the probe's lock goes at once (before the job takes it).
        let probe = crate::checkpoint::lock_dir(dir).map(drop);
        let outcome = match probe {
            Ok(()) => {
                let mut plan = planner(overrides)?;
                plan.job.name = name.clone();
                plan.job.task = Some(task.clone());
                crate::job::run(plan, options)
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(outcome) => {
                let batches = outcome.summary.batches();
                tracing::info!("task stopped after {batches} batches");
                return Ok(());
            }
            Err(e) if held(&e) => {
                if !waited {
                    tracing::warn!("{e:#}: waiting for its last owner to let go");
                    waited = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The member's client context: the rebalance callbacks start and stop the tasks.
struct Member {
    tasks: Arc<Tasks>,
    /// How the member is named in the log.
    label: String,
    /// This process's file among the job's members: says how many tasks it owns.
    presence: Presence,
}

fn parts_of(list: &TopicPartitionList) -> Vec<Part> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

fn names(parts: &[Part]) -> String {
    let names: Vec<String> = parts.iter().map(|(t, p)| part_name(t, *p)).collect();
    names.join(" ")
}

impl ClientContext for Member {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_client_line(&self.label, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&self.label, &error, reason);
    }
}

impl ConsumerContext for Member {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let parts = parts_of(list);
            tracing::info!(
                "{}: giving up tasks {} (they stop at a batch boundary first)",
                self.label,
                names(&parts)
            );
            self.tasks.stop(&parts);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                // The member reads nothing itself: each task's job reads its partition.
                if let Err(e) = consumer.pause(list) {
                    tracing::warn!("{}: cannot pause what it was given: {e}", self.label);
                }
                for part in parts_of(list) {
                    self.tasks.start(&part);
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!("{}: rebalance failed: {e}", self.label),
        }
        let owned = consumer
            .assignment()
            .map(|list| parts_of(&list))
            .unwrap_or_default();
        if let Err(e) = self.presence.set_tasks(owned.len()) {
            tracing::warn!("{}: cannot say how many tasks it owns: {e:#}", self.label);
        }
        tracing::info!(
            "{}: owns {} task(s) after a rebalance: [{}]",
            self.label,
            owned.len(),
            names(&owned)
        );
    }
}

/// How often the member polls the group: what it answers a rebalance within.
const POLL: Duration = Duration::from_millis(200);

pub(super) fn run(
    scale_out: Arc<ScaleOut>,
    member_id: Option<String>,
    planner: Arc<TaskPlanner>,
    options: &RunOptions,
) -> Result<()> {
    let label = format!(
        "scale-out member {} of group '{}'",
        member_id.as_deref().unwrap_or("(dynamic)"),
        scale_out.group
    );
    let mut config = scale_out.input.client.clone();
    config
        .set("group.id", &scale_out.group)
        .set("client.id", "spate-member")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.partition.eof", "false")
        .set("enable.auto.commit", "false")
        // It reads nothing: where a read would start does not matter (and is no error).
        .set("auto.offset.reset", "latest");
    if let Some(id) = &member_id {
        config.set("group.instance.id", id);
    }
    let writers = match &scale_out.repartition {
        Some(repartition) => {
            let partitions = input_partitions(&config, &scale_out.input.topics)?;
            super::internal_topics::create(&config, repartition, partitions)?;
            partitions as usize
        }
        None => 0,
    };
    let presence = Presence::announce(
        &scale_out.checkpoint_dir,
        member_id.as_deref().unwrap_or("dynamic"),
        crate::wallclock::now_ms(),
    )
    .with_context(|| format!("{label}: cannot announce itself among the job's members"))?;
    let processes = Arc::new(AtomicUsize::new(0));
    let tasks = Arc::new(Tasks {
        scale_out: scale_out.clone(),
        planner,
        max_batches: options.max_batches,
        registry: options.registry.clone(),
        running: Mutex::new(BTreeMap::new()),
        failure: Mutex::new(None),
        started: AtomicBool::new(false),
        writers,
        processes: processes.clone(),
    });
    let consumer: BaseConsumer<Member> = config
        .create_with_context(Member {
            tasks: tasks.clone(),
            label: label.clone(),
            presence,
        })
        .map_err(|e| anyhow!("{label}: cannot create its Kafka client: {e}"))?;
    let subscription = scale_out.subscription();
    let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| anyhow!("{label}: cannot subscribe to {topics:?}: {e}"))?;
    tracing::info!("{label}: joining, subscribed to {topics:?}");
    let mut last_warning: Option<Instant> = None;
    let outcome = loop {
        if options.stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        // Records never come (what the member is given is paused); errors may.
        if let Some(Err(e)) = consumer.poll(POLL)
            && last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(5))
        {
            tracing::warn!("{label}: {e}");
            last_warning = Some(Instant::now());
        }
        processes.store(
            presence::count(&scale_out.checkpoint_dir),
            Ordering::Relaxed,
        );
        let none_running = tasks.reap();
        if let Some(error) = lock(&tasks.failure).take() {
            break Err(error);
        }
        // A bounded run (`--max-batches`, available-now) ends here once the tasks it ran have
        // ended. A process the group has given nothing yet waits: it gets the tasks of those
        // that end before it (a task run again reads only what came since) and then ends too.
        let bounded = options.max_batches.is_some() || scale_out.available_now;
        if bounded && tasks.started.load(Ordering::SeqCst) && none_running {
            break Ok(());
        }
    };
    tasks.stop_all();
    // A static member does not leave the group when it closes: the group keeps its tasks for
    // it until its session times out, so a restart within that time gets them back at once.
    // A dynamic member leaves, and the others take its tasks now.
    drop(consumer);
    match lock(&tasks.failure).take() {
        Some(error) if outcome.is_ok() => Err(error),
        _ => outcome,
    }
}

/// How many partitions the input topics have together (each a map task, a writer of every
/// partition of the repartition topic).
fn input_partitions(config: &rdkafka::ClientConfig, topics: &[String]) -> Result<i32> {
    let client: BaseConsumer = config
        .create()
        .map_err(|e| anyhow!("cannot create a Kafka client: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = client
            .fetch_metadata(None, Duration::from_secs(5))
            .map_err(anyhow::Error::from)
            .and_then(|metadata| {
                topics
                    .iter()
                    .map(|name| {
                        metadata
                            .topics()
                            .iter()
                            .find(|t| t.name() == name && !t.partitions().is_empty())
                            .map(|t| t.partitions().len() as i32)
                            .ok_or_else(|| anyhow!("topic '{name}' does not exist"))
                    })
                    .sum::<Result<i32>>()
            });
        match found {
            Ok(n) => return Ok(n),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context("cannot count the input's partitions"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}
