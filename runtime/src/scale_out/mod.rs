//! Scale-out (docs/SCALE-OUT.md): several `spate run` processes share one job through a Kafka
//! consumer group, the way Kafka Streams shares an application. A task is one input
//! partition (and, for a job cut at key changes, one partition of one of its repartition
//! topics: see `repartition.rs`). The group (cooperative-sticky assignment; static membership with
//! `--member-id`, so a restarted process gets its partitions back) decides which process runs
//! which tasks, and a process runs each of its tasks as a job of its own that reads only that
//! partition, with its batch log and checkpoints under `<checkpoint-dir>/tasks/<topic>-<p>`. A
//! task that moves to another process (a member left, died or joined) resumes there from its
//! own checkpoints and log exactly as a restarted single-process job does: the same batch
//! times (the grid is aligned on the epoch in every process), the same offset ranges, outputs
//! replaced or fenced per task.

mod internal_topics;
mod member;
mod partitioning;
mod presence;
mod repartition;
mod reset;

pub use reset::reset;

use crate::config::{ConfigError, Pipeline, Trigger};
use crate::job::RunOptions;
use crate::plan::Plan;
use crate::source::GroupInput;
use anyhow::Result;
use repartition::Repartition;
use std::path::PathBuf;
use std::sync::Arc;

/// Builds a task's plan from the pipeline with these extra `--set` overrides.
pub type TaskPlanner = dyn Fn(&[String]) -> Result<Plan> + Send + Sync;

/// A scale-out job as its pipeline sets it up.
pub struct ScaleOut {
    /// The job's name.
    job: String,
    /// The consumer group its processes join (`job.group`).
    group: String,
    /// The name of its Kafka source.
    source: String,
    /// How the group is joined.
    input: GroupInput,
    /// The shared directory the tasks' checkpoints go under.
    checkpoint_dir: PathBuf,
    /// Where skipped partitions' input goes, a directory per task under it.
    dead_letter_dir: PathBuf,
    /// Which case of partitioning applies, in words.
    partitioning: String,
    /// The task pipelines of the stages between its repartition topics, when the job is cut
    /// at one or more.
    repartition: Option<Repartition>,
    /// `available-now`: each task ends once it has read its partition's input present when
    /// it started, and a process ends once the tasks it ran have all ended.
    available_now: bool,
}

impl ScaleOut {
    /// The scale-out set-up of `pipeline` (planned as `plan`), checked: one Kafka source, a
    /// checkpoint directory, no dashboard, and steps that run within a task or behind
    /// repartition topics. `None` for a job without `job.group`.
    pub fn of(pipeline: &Pipeline, plan: &Plan) -> Result<Option<ScaleOut>, ConfigError> {
        let Some(group) = pipeline.file.job.group.clone() else {
            return Ok(None);
        };
        let refuse = |why: &str| {
            pipeline.error(
                Some("job.group"),
                format!("a scale-out job (`job.group`) {why} (docs/SCALE-OUT.md)"),
            )
        };
        let [source] = &plan.sources[..] else {
            return Err(refuse(
                "reads exactly one source, a Kafka one: its partitions are the tasks",
            ));
        };
        let input = source.source.group_input().ok_or_else(|| {
            refuse(&format!(
                "reads a Kafka source: sources.{} is {}, whose input a consumer group cannot \
                 share out",
                source.name, source.kind
            ))
        })?;
        let checkpoint_dir = plan
            .job
            .checkpoint
            .as_ref()
            .map(|c| c.dir.clone())
            .ok_or_else(|| {
                refuse(
                    "needs `checkpoint-dir`, a directory every process reaches: each task's \
                     batch log and checkpoints move with it through there",
                )
            })?;
        if let Some(i) = pipeline
            .file
            .outputs
            .iter()
            .position(|o| o.kind.get_ref() == "dashboard")
        {
            return Err(pipeline.error(
                Some(&format!("outputs[{i}].type")),
                "a dashboard shows one process's batches: a scale-out job cannot have one yet",
            ));
        }
        let source_keyed = source.source.stream_type().key.is_some();
        let partitioning = partitioning::check(pipeline, source_keyed)?;
        let repartition = match &partitioning.cuts[..] {
            [] => None,
            _ if input.topics.iter().any(|t| t.starts_with('^')) => {
                return Err(refuse(
                    "with a repartition topic names its input topics (no patterns): each \
                     batch waits for every input partition's task",
                ));
            }
            _ if plan.job.trigger == Trigger::AvailableNow => {
                return Err(pipeline.error(
                    Some("job.trigger"),
                    "available-now cannot run a scale-out job cut at a repartition topic yet: \
                     its reduce tasks form batch T once every map task has ended T, and a map \
                     task that has ended its run never ends another (docs/SCALE-OUT.md); use \
                     processing-time, or run the job in one process",
                ));
            }
            cuts => Some(Repartition::plan(pipeline, plan, &source.name, cuts)?),
        };
        Ok(Some(ScaleOut {
            job: plan.job.name.clone(),
            group,
            source: source.name.clone(),
            input,
            checkpoint_dir,
            dead_letter_dir: plan.dataflow.tasks.dead_letter_dir.clone(),
            partitioning: partitioning.said,
            repartition,
            available_now: plan.job.trigger == Trigger::AvailableNow,
        }))
    }

    /// What `spate check` says of it.
    pub fn describe(&self) -> String {
        format!(
            "scale-out: the processes running this job join consumer group '{}' (subscribed to \
             {:?}; cooperative-sticky, static membership with --member-id); a task per \
             partition, its batch log and checkpoints under {}/tasks/<topic>-<partition>; {}{}",
            self.group,
            self.subscription(),
            self.checkpoint_dir.display(),
            self.partitioning,
            self.repartition.as_ref().map_or(String::new(), |r| format!(
                "; repartition topic{} '{}' (created with as many partitions as the input \
                 has, {}{}; `spate reset` deletes {} when the job is retired)",
                if r.topics.len() > 1 { "s" } else { "" },
                r.topics.join("', '"),
                r.replication_said(),
                r.topic_config
                    .iter()
                    .map(|(k, v)| format!(", {k}={v}"))
                    .collect::<String>(),
                if r.topics.len() > 1 { "them" } else { "it" }
            ))
        )
    }

    /// The topics the members subscribe to: the input's, and the repartition topics.
    fn subscription(&self) -> Vec<String> {
        let mut topics = self.input.topics.clone();
        topics.extend(
            self.repartition
                .iter()
                .flat_map(|r| r.topics.iter().cloned()),
        );
        topics
    }

    /// Where task `topic/partition` keeps its batch log and checkpoints.
    fn task_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.checkpoint_dir
            .join("tasks")
            .join(task_name(topic, partition))
    }

    /// The `--set` overrides that make the job of task `topic/partition` out of the pipeline:
    /// its source reads that partition only (a map task also writes into the repartition
    /// topic; a task of a repartition topic reads its partition of it, which `writers` tasks
    /// write, and may write into the next one); its checkpoints and dead letters are its own.
    fn task_overrides(&self, topic: &str, partition: i32, writers: usize) -> Vec<String> {
        let task = task_name(topic, partition);
        let text = |path: PathBuf| toml::Value::String(path.display().to_string());
        let assign = toml::Value::Array(vec![toml::Value::String(format!("{topic}/{partition}"))]);
        let mut overrides = match &self.repartition {
            Some(r) => r.task_overrides(topic, partition, writers),
            None => Vec::new(),
        };
        if self
            .repartition
            .as_ref()
            .is_none_or(|r| !r.reads_internal(topic))
        {
            overrides.push(format!("sources.{}.assign={assign}", self.source));
        }
        overrides.extend([
            format!(
                "job.checkpoint-dir={}",
                text(self.task_dir(topic, partition))
            ),
            format!(
                "job.dead-letter-dir={}",
                text(self.dead_letter_dir.join(&task))
            ),
        ]);
        overrides
    }
}

/// A task's name: its topic and partition, as Kafka tools write them.
fn task_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

/// Runs this process's share of `scale_out` as member `member_id` (static membership; `None`:
/// a dynamic member) until `options.stop` is set or a task fails; `planner` builds each task's
/// plan. With `--max-batches`, ends once every task it started has run that many; with
/// `available-now`, once every task it started has read its input.
pub fn run(
    scale_out: ScaleOut,
    member_id: Option<String>,
    planner: Arc<TaskPlanner>,
    options: &RunOptions,
) -> Result<()> {
    member::run(Arc::new(scale_out), member_id, planner, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_job_reads_its_partition_and_keeps_its_own_checkpoints() {
        let scale_out = ScaleOut {
            job: "wc".into(),
            group: "g".into(),
            source: "lines".into(),
            input: GroupInput {
                client: rdkafka::ClientConfig::new(),
                topics: vec!["in".into()],
            },
            checkpoint_dir: PathBuf::from("/shared/wc"),
            dead_letter_dir: PathBuf::from("dead/wc"),
            partitioning: String::new(),
            repartition: None,
            available_now: false,
        };
        assert_eq!(
            scale_out.task_overrides("in", 3, 4),
            [
                "sources.lines.assign=[\"in/3\"]",
                "job.checkpoint-dir=\"/shared/wc/tasks/in-3\"",
                "job.dead-letter-dir=\"dead/wc/in-3\"",
            ]
        );
    }
}
