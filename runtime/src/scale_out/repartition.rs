//! A scale-out job cut at keyed steps whose key an earlier step may have changed
//! ([`super::partitioning`]): the task pipelines made from the user's, one per stage. A map
//! task (one per input partition) runs the steps before the first cut and the cut step's
//! partial result per batch where it has one ([`Split`]: combined by key for a reduce-by-key,
//! counted per value for a count by value, one count or reduction per task for a global
//! aggregation, all into one partition), and writes into the job's repartition topic with the
//! Kafka output (exactly-once, keys partitioned by murmur2 as Kafka's own clients do, an
//! end-of-batch marker in every partition after each batch). A reduce task (one per partition
//! of that topic) reads its partition batch by batch (`type = "repartition"`) and runs the cut
//! step and every step and output after it; with a further cut, it runs the steps up to that
//! one and writes into the next topic as a map task does, whose tasks run the rest, and so on.
//! A join cut sends both its sides through the topic: the writing task writes each with an
//! output of its own, tagging its records and markers with the side's stream name, and the
//! reading task reads each with a source of its own, named as the stream was. Every kind is an
//! ordinary task job with its own checkpoints, so each moves between processes the same way.

use crate::config::{ConfigError, Pipeline, StepOp};
use crate::kafka::Encoding;
use crate::plan::Plan;
use crate::record::{Shape, StreamType};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

/// The task pipelines of a job cut at one or more repartition topics.
#[derive(Debug)]
pub struct Repartition {
    /// The repartition topics, one per cut, in order: `topics[k]` carries what stage `k`
    /// writes and stage `k + 1` reads.
    pub topics: Vec<String>,
    /// Their replication factor; -1: the brokers' default.
    pub replication: i32,
    /// Their topic settings.
    pub topic_config: Vec<(String, String)>,
    /// The stages: 0 runs in the map tasks (one per input partition), `k` in the tasks of
    /// `topics[k - 1]`'s partitions; the last one has the job's outputs.
    stages: Vec<Stage>,
    /// The Kafka settings the internal clients share: the source's `bootstrap` and `client`.
    kafka: InlineTable,
    /// `spate.<tenant>.<job>`, which the transactional ids of the outputs into the topics
    /// start with.
    id_prefix: String,
}

/// The part of the job one kind of task runs.
#[derive(Debug)]
struct Stage {
    /// Its steps: from its cut step (none for the map tasks) up to the next cut, and a copy
    /// of that cut step when it is a reduce-by-key (the map-side combine).
    steps: Array,
    /// The streams it writes into the next topic, which the next stage reads back; none for
    /// the last stage.
    writes: Vec<Side>,
}

/// A stream one stage writes into a repartition topic and the next reads back.
#[derive(Debug)]
struct Side {
    /// For a join's side, its name before the cut, which the reading task's source for it
    /// takes (sides are told apart in the topic by the `spate-stream` header); `None`: the
    /// cut step's one input, read by the reading task's source `repartition`.
    tagged: Option<String>,
    /// The writing task's output reads it with `from` (else the stage's last step).
    from: Option<String>,
    /// How its keys are written; `None`: unkeyed.
    key: Option<Encoding>,
    value: Encoding,
    /// The one partition of the topic its records go into (a global aggregation's partial
    /// results); `None`: by key.
    partition: Option<i32>,
}

impl Repartition {
    /// The cuts of `pipeline` (planned as `plan`) at `steps[c]` for each `c` of `cuts`, reading
    /// Kafka source `source`: the records through each topic must be a key and a value Kafka
    /// can carry (scalars).
    pub fn plan(
        pipeline: &Pipeline,
        plan: &Plan,
        source: &str,
        cuts: &[usize],
    ) -> Result<Repartition, ConfigError> {
        let doc: DocumentMut = pipeline
            .text()
            .parse()
            .map_err(|e| pipeline.error(None, format!("cannot read the pipeline again: {e}")))?;
        let tables: Vec<InlineTable> = doc
            .get("steps")
            .and_then(Item::as_array_of_tables)
            .map(|a| a.iter().map(inline).collect())
            .unwrap_or_default();
        let mut stages = Vec::new();
        let mut start = 0;
        let mut reads_tagged = false;
        for k in 0..=cuts.len() {
            let end = cuts.get(k).copied().unwrap_or(tables.len());
            let mut steps: Array = tables[start..end]
                .iter()
                .cloned()
                .map(Value::from)
                .collect();
            if let (true, Some(Value::InlineTable(first))) = (k > 0, steps.get_mut(0)) {
                if !reads_tagged {
                    // One stream comes through the topic: the task's only source.
                    first.remove("from");
                }
                Split::of(*pipeline.file.steps[start].op.get_ref()).total(first);
            }
            let mut writes = Vec::new();
            if let Some(&cut) = cuts.get(k) {
                let split = Split::of(*pipeline.file.steps[cut].op.get_ref());
                if let Some(partial) = split.partial(&tables[cut]) {
                    steps.push(partial);
                }
                writes = sides(pipeline, plan, source, cut)?;
                reads_tagged = writes.iter().any(|s| s.tagged.is_some());
            }
            stages.push(Stage { steps, writes });
            start = end;
        }
        let source_table = doc
            .get("sources")
            .and_then(|s| s.get(source))
            .map(|t| match t {
                Item::Table(t) => inline(t),
                other => other.as_inline_table().cloned().unwrap_or_default(),
            })
            .unwrap_or_default();
        let (replication, topic_config) = topic_settings(pipeline)?;
        let mut kafka = InlineTable::new();
        for field in ["bootstrap", "client"] {
            if let Some(v) = source_table.get(field) {
                kafka.insert(field, v.clone());
            }
        }
        let id_prefix = format!("spate.{}.{}", plan.job.tenant, pipeline.job_name());
        let topics = (1..=cuts.len())
            .map(|n| match n {
                1 => format!("{id_prefix}.repartition"),
                n => format!("{id_prefix}.repartition-{n}"),
            })
            .collect();
        Ok(Repartition {
            topics,
            replication,
            topic_config,
            stages,
            kafka,
            id_prefix,
        })
    }

    /// Its replication, in words.
    pub fn replication_said(&self) -> String {
        match self.replication {
            -1 => "the brokers' default replication".to_owned(),
            n => format!("replication {n}"),
        }
    }

    /// The stage the tasks of `topic`'s partitions run: 0 for an input topic's.
    fn stage_of(&self, topic: &str) -> usize {
        self.topics
            .iter()
            .position(|t| t == topic)
            .map_or(0, |k| k + 1)
    }

    /// Whether the tasks of `topic`'s partitions read a repartition topic (not the input).
    pub fn reads_internal(&self, topic: &str) -> bool {
        self.stage_of(topic) > 0
    }

    /// The overrides making the pipeline of the task of `topic`'s `partition` (an input
    /// partition's aside from its source), whose input `writers` tasks of the stage before
    /// write: a source per side reading that partition of the topic before it (none for a
    /// map task), its stage's steps, and an output per side into the topic after it (the
    /// job's outputs for the last stage).
    pub fn task_overrides(&self, topic: &str, partition: i32, writers: usize) -> Vec<String> {
        let k = self.stage_of(topic);
        let stage = &self.stages[k];
        let mut overrides = Vec::new();
        if k > 0 {
            let mut sources = InlineTable::new();
            for side in &self.stages[k - 1].writes {
                let mut source = self.kafka.clone();
                source.insert("type", "repartition".into());
                source.insert("topic", topic.into());
                source.insert("partition", i64::from(partition).into());
                source.insert("writers", (writers as i64).into());
                if let Some(key) = side.key {
                    source.insert("key-type", key.name().into());
                }
                source.insert("value-type", side.value.name().into());
                let name = match &side.tagged {
                    Some(stream) => {
                        source.insert("stream", stream.as_str().into());
                        stream.as_str()
                    }
                    None => "repartition",
                };
                sources.insert(name, source.into());
            }
            overrides.push(format!("sources={sources}"));
        }
        overrides.push(format!("steps={}", stage.steps));
        if let Some(next) = self.topics.get(k) {
            let outputs: Array = (stage.writes.iter().enumerate())
                .map(|(i, side)| {
                    let mut output = self.kafka.clone();
                    output.insert("type", "kafka".into());
                    output.insert("topic", next.as_str().into());
                    output.insert("delivery", "exactly-once".into());
                    output.insert("format", "native".into());
                    output.insert("end-markers", true.into());
                    if let Some(from) = &side.from {
                        output.insert("from", from.as_str().into());
                    }
                    if let Some(partition) = side.partition {
                        output.insert("partition", i64::from(partition).into());
                    }
                    if let Some(stream) = &side.tagged {
                        // Two outputs of one task write the topic: each its own transactions.
                        output.insert("stream-header", stream.as_str().into());
                        let id = format!("{}.{next}.side-{i}", self.id_prefix);
                        output.insert("transactional-id", id.into());
                    }
                    Value::from(output)
                })
                .collect();
            overrides.push(format!("outputs={outputs}"));
        }
        overrides
    }
}

/// How a cut step's work is shared between the tasks writing the topic before it and those
/// reading it: a partial result per batch in the writing tasks (Spark's map-side combine), the
/// step's result from those in the reading ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    /// The reading tasks run the step on the records as they were (joins, groups, state).
    Whole,
    /// The same step in the writing tasks first: one record per key and batch (reduce-by-key).
    Combined,
    /// A count per value and batch written, added up by the reading tasks with `sum-by-key`
    /// (`sum-by-key-and-window` with the step's window).
    PerValue { windowed: bool },
    /// One partial result per writing task and batch, unkeyed, all into partition 0 of the
    /// topic, whose task combines them: a global aggregation. `partial` is the writing tasks'
    /// op, `total` the reading one's, with the bundled `plugin` where the step has none.
    Global {
        partial: StepOp,
        total: StepOp,
        plugin: Option<&'static str>,
    },
}

impl Split {
    fn of(op: StepOp) -> Split {
        use StepOp::*;
        let global = |partial, total, plugin| Split::Global {
            partial,
            total,
            plugin,
        };
        match op {
            ReduceByKey => Split::Combined,
            CountByValue => Split::PerValue { windowed: false },
            CountByValueAndWindow => Split::PerValue { windowed: true },
            // A count is the sum of the tasks' counts (a task with no records counts 0, so a
            // batch with no records anywhere still has its 0).
            Count => global(Count, Reduce, Some("sum")),
            CountByWindow => global(Count, ReduceByWindow, Some("sum")),
            Reduce => global(Reduce, Reduce, None),
            ReduceByWindow => global(Reduce, ReduceByWindow, None),
            _ => Split::Whole,
        }
    }

    /// The step the writing tasks run after their stage's steps, made from the cut step's
    /// table `step` (a window, if any, is the reading side's).
    fn partial(self, step: &InlineTable) -> Option<InlineTable> {
        let op = match self {
            Split::Whole => return None,
            Split::Combined => return Some(step.clone()),
            Split::PerValue { .. } => StepOp::CountByValue,
            Split::Global { partial, .. } => partial,
        };
        let mut partial = step.clone();
        partial.insert("op", op.name().into());
        partial.remove("length");
        partial.remove("slide");
        Some(partial)
    }

    /// Makes the cut step's table `step`, first of the reading tasks' steps, combine the
    /// partial results.
    fn total(self, step: &mut InlineTable) {
        let (op, plugin) = match self {
            Split::Whole | Split::Combined => return,
            Split::PerValue { windowed: false } => (StepOp::SumByKey, None),
            Split::PerValue { windowed: true } => (StepOp::SumByKeyAndWindow, None),
            Split::Global { total, plugin, .. } => (total, plugin),
        };
        step.insert("op", op.name().into());
        if let Some(plugin) = plugin {
            step.insert("plugin", plugin.into());
        }
    }
}

/// The streams a stage writes into the topic before `steps[cut]`: the cut step's input, or
/// a join's sides (one when a stream is joined with itself), each with how the writing task's
/// output finds it and how its records are encoded.
fn sides(
    pipeline: &Pipeline,
    plan: &Plan,
    source: &str,
    cut: usize,
) -> Result<Vec<Side>, ConfigError> {
    let step = &pipeline.file.steps[cut];
    let split = Split::of(*step.op.get_ref());
    let combined = split != Split::Whole;
    let named: Option<Vec<String>> = step.from.as_ref().map(|from| {
        let mut names: Vec<String> = Vec::new();
        for name in from.get_ref().names() {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        names
    });
    // A join's sides are told apart by name, even one stream joined with itself.
    let sided = super::partitioning::two_sided(*step.op.get_ref());
    // How the writing task's output finds each: by name when the step names it (a combining
    // step copied into the writing task reads it itself), else the stage's last step.
    let read: Vec<(String, Option<String>)> = match named {
        Some(names) if sided => names.into_iter().map(|n| (n.clone(), Some(n))).collect(),
        Some(names) => names
            .into_iter()
            .map(|n| (n.clone(), (!combined).then_some(n)))
            .collect(),
        None => vec![(previous_stream(pipeline, source, cut), None)],
    };
    read.into_iter()
        .map(|(stream, from)| {
            let (key, value) = encodings(pipeline, plan, cut, &stream, split)?;
            Ok(Side {
                tagged: sided.then(|| stream.clone()),
                from,
                key,
                value,
                partition: matches!(split, Split::Global { .. }).then_some(0),
            })
        })
        .collect()
}

/// The stream a step without `from` at `steps[cut]` reads: the step before it, or the source.
fn previous_stream(pipeline: &Pipeline, source: &str, cut: usize) -> String {
    match cut {
        0 => source.to_owned(),
        i => pipeline.file.steps[i - 1]
            .name
            .as_ref()
            .map_or_else(|| format!("steps[{}]", i - 1), |n| n.get_ref().clone()),
    }
}

/// How the records of `stream`, which go through the repartition topic before `steps[cut]`
/// (split as `split`), are written there: their key's encoding (`None`: unkeyed) and their
/// value's, which must be scalars. As they are (keyed) for most cuts. For a count by value,
/// the counts of `stream`'s values: keyed by the value, which must be a scalar of an unkeyed
/// stream (a keyed stream's `(key, value)` pairs would be the topic's keys), the count an
/// i64. For a global aggregation, its partial results: unkeyed, an i64 count or a reduced
/// scalar value.
fn encodings(
    pipeline: &Pipeline,
    plan: &Plan,
    cut: usize,
    stream: &str,
    split: Split,
) -> Result<(Option<Encoding>, Encoding), ConfigError> {
    let scalar = |shape: Option<&Shape>| match shape {
        Some(Shape::Scalar(t)) => Some(Encoding::of(*t)),
        _ => None,
    };
    let types = stream_types(plan, stream);
    let (written, why) = match split {
        Split::Whole | Split::Combined => (
            (types.and_then(|t| scalar(t.key.as_ref()).zip(scalar(Some(&t.value)))))
                .map(|(key, value)| (Some(key), value)),
            format!(
                "the records of '{stream}' go through the repartition topic before this step: \
                 they must be keyed and their key and value scalars (text, bytes, i64, f64)"
            ),
        ),
        Split::PerValue { .. } => (
            (types.filter(|t| t.key.is_none()))
                .and_then(|t| scalar(Some(&t.value)))
                .map(|value| (Some(value), Encoding::I64)),
            format!(
                "the values of '{stream}' are counted through the repartition topic before this \
                 step, keyed by the value: '{stream}' must be unkeyed and its values scalars \
                 (text, bytes, i64, f64); to count (key, value) pairs, map each to one scalar \
                 first"
            ),
        ),
        Split::Global {
            partial: StepOp::Count,
            ..
        } => (Some((None, Encoding::I64)), String::new()),
        Split::Global { .. } => (
            types
                .and_then(|t| scalar(Some(&t.value)))
                .map(|value| (None, value)),
            format!(
                "each task's reduction of '{stream}' goes through the repartition topic before \
                 this step: its values must be scalars (text, bytes, i64, f64)"
            ),
        ),
    };
    written.ok_or_else(|| {
        pipeline.error_at(
            pipeline.file.steps[cut].op.span(),
            &format!("steps[{cut}].op"),
            why,
        )
    })
}

/// The types of `stream` as planned.
fn stream_types(plan: &Plan, stream: &str) -> Option<StreamType> {
    (plan.dataflow.streams.iter())
        .find(|s| s.name == stream)
        .map(|s| s.types.clone())
}

/// The repartition topic's replication factor (-1: the brokers' default) and topic settings,
/// from `job.repartition-replication` and `job.repartition-topic-config`.
fn topic_settings(pipeline: &Pipeline) -> Result<(i32, Vec<(String, String)>), ConfigError> {
    let job = &pipeline.file.job;
    let replication = match job.repartition_replication {
        None => -1,
        Some(n) if (1..=i64::from(i16::MAX)).contains(&n) => n as i32,
        Some(n) => {
            return Err(pipeline.error(
                Some("job.repartition-replication"),
                format!("a replication factor is at least 1, not {n}"),
            ));
        }
    };
    let mut settings = Vec::new();
    for (key, value) in &job.repartition_topic_config {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(pipeline.error(
                    Some(&format!("job.repartition-topic-config.\"{key}\"")),
                    "a topic setting is text, an integer or a boolean",
                ));
            }
        };
        settings.push((key.clone(), text));
    }
    Ok((replication, settings))
}

/// A table written as an inline table, nested tables too.
fn inline(table: &Table) -> InlineTable {
    let mut out = InlineTable::new();
    for (key, item) in table.iter() {
        let value = match item {
            Item::Value(v) => v.clone(),
            Item::Table(t) => Value::InlineTable(inline(t)),
            Item::ArrayOfTables(a) => Value::Array(a.iter().map(inline).collect()),
            Item::None => continue,
        };
        out.insert(key, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::ComponentCache;

    fn pipeline(job: &str) -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            format!(
                "[job]\n{job}\n[sources.in]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:1\"\n\
                 topics = [\"t\"]\n[[outputs]]\ntype = \"print\"\n"
            ),
        )
        .unwrap();
        Pipeline::load(&path, &[]).unwrap()
    }

    #[test]
    fn a_join_cut_writes_each_side_with_its_own_output_and_reads_it_with_its_own_source() {
        let side = |stream: &str, value: Encoding| Side {
            tagged: Some(stream.to_owned()),
            from: Some(stream.to_owned()),
            key: Some(Encoding::Text),
            value,
            partition: None,
        };
        let stage = |writes| Stage {
            steps: Array::new(),
            writes,
        };
        let cut = Repartition {
            topics: vec!["spate.t.j.repartition".into()],
            replication: -1,
            topic_config: Vec::new(),
            stages: vec![
                stage(vec![
                    side("clicks", Encoding::I64),
                    side("users", Encoding::Text),
                ]),
                stage(Vec::new()),
            ],
            kafka: InlineTable::new(),
            id_prefix: "spate.t.j".into(),
        };
        let map = cut.task_overrides("clicks-topic", 2, 4).join("\n");
        assert!(!map.contains("sources="), "{map}");
        for (i, stream) in ["clicks", "users"].iter().enumerate() {
            assert!(
                map.contains(&format!("from = \"{stream}\""))
                    && map.contains(&format!("stream-header = \"{stream}\""))
                    && map.contains(&format!(
                        "transactional-id = \"spate.t.j.spate.t.j.repartition.side-{i}\""
                    )),
                "{map}"
            );
        }
        let reduce = cut.task_overrides("spate.t.j.repartition", 2, 4);
        assert!(
            !reduce.iter().any(|o| o.starts_with("outputs=")),
            "{reduce:?}"
        );
        let sources: toml::Table = toml::from_str(&reduce[0]).unwrap();
        let sources = sources["sources"].as_table().unwrap();
        assert_eq!(sources.keys().collect::<Vec<_>>(), ["clicks", "users"]);
        assert_eq!(sources["clicks"]["stream"].as_str(), Some("clicks"));
        assert_eq!(sources["clicks"]["value-type"].as_str(), Some("i64"));
        assert_eq!(sources["users"]["value-type"].as_str(), Some("text"));
        assert_eq!(sources["users"]["partition"].as_integer(), Some(2));
        assert_eq!(sources["users"]["writers"].as_integer(), Some(4));
    }

    /// The cut at `steps[0]` of a job reading Kafka source `in` (its table ending with
    /// `source`) through `steps` into print.
    fn cut_first(source: &str, steps: &str) -> Result<Repartition, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            format!(
                "[job]\nname = \"j\"\n[sources.in]\ntype = \"kafka\"\n\
                 bootstrap = \"127.0.0.1:1\"\ntopics = [\"t\"]\n{source}\n{steps}\n\
                 [[outputs]]\ntype = \"print\"\n"
            ),
        )
        .unwrap();
        let pipeline = Pipeline::load(&path, &[]).unwrap();
        let plan = Plan::build(&pipeline, &ComponentCache::disabled()).unwrap();
        Repartition::plan(&pipeline, &plan, "in", &[0])
    }

    /// The steps of `overrides`, a task's, as a table each.
    fn steps_of(overrides: &[String]) -> Vec<toml::Value> {
        let steps = overrides.iter().find(|o| o.starts_with("steps=")).unwrap();
        let steps: toml::Table = toml::from_str(steps).unwrap();
        steps["steps"].as_array().unwrap().clone()
    }

    #[test]
    fn a_count_by_value_cut_counts_in_the_writing_tasks_and_adds_up_in_the_reading_ones() {
        let load = |source: &str| {
            let steps = "[[steps]]\nname = \"seen\"\nop = \"count-by-value-and-window\"\n\
                         length = \"3s\"\nslide = \"2s\"";
            cut_first(source, steps)
        };
        let cut = load("").unwrap();
        // The map tasks count each batch's values, the window left to the reading side.
        let map = cut.task_overrides("t", 0, 4);
        let steps = steps_of(&map);
        assert_eq!(steps.len(), 1, "{map:?}");
        assert_eq!(steps[0]["op"].as_str(), Some("count-by-value"));
        assert!(steps[0].get("length").is_none() && steps[0].get("slide").is_none());
        // Keyed by the value, the count an i64; added up over the window in the reading tasks.
        let reduce = cut.task_overrides(&cut.topics[0], 0, 4);
        let read: toml::Table = toml::from_str(&reduce[0]).unwrap();
        let read = &read["sources"]["repartition"];
        assert_eq!(read["key-type"].as_str(), Some("text"));
        assert_eq!(read["value-type"].as_str(), Some("i64"));
        let summed = &steps_of(&reduce)[0];
        assert_eq!(summed["op"].as_str(), Some("sum-by-key-and-window"));
        assert_eq!(summed["name"].as_str(), Some("seen"));
        assert_eq!(summed["length"].as_str(), Some("3s"));
        assert_eq!(summed["slide"].as_str(), Some("2s"));
        // A keyed stream's (key, value) pairs cannot be the topic's keys.
        let keyed = load("key-type = \"text\"").unwrap_err();
        assert_eq!(keyed.field.as_deref(), Some("steps[0].op"));
        assert!(keyed.message.contains("'in' must be unkeyed"), "{keyed}");
    }

    #[test]
    fn a_global_aggregation_is_reduced_per_task_and_combined_in_partition_0() {
        let steps = "[[steps]]\nname = \"n\"\nop = \"count-by-window\"\nlength = \"3s\"";
        let cut = cut_first("", steps).unwrap();
        let map = cut.task_overrides("t", 1, 4);
        let counted = &steps_of(&map)[0];
        assert_eq!(counted["op"].as_str(), Some("count"));
        assert!(counted.get("length").is_none(), "{map:?}");
        let written = map.iter().find(|o| o.starts_with("outputs=")).unwrap();
        assert!(written.contains("partition = 0"), "{written}");
        let reduce = cut.task_overrides(&cut.topics[0], 0, 4);
        let read: toml::Table = toml::from_str(&reduce[0]).unwrap();
        let read = &read["sources"]["repartition"];
        assert!(read.get("key-type").is_none(), "unkeyed: {read:?}");
        assert_eq!(read["value-type"].as_str(), Some("i64"));
        let total = &steps_of(&reduce)[0];
        assert_eq!(total["op"].as_str(), Some("reduce-by-window"));
        assert_eq!(total["plugin"].as_str(), Some("sum"));
        assert_eq!(total["length"].as_str(), Some("3s"));
        // A reduction keeps its plugin on both sides; its values must be scalars.
        let reduce_steps = "[[steps]]\nop = \"reduce\"\nplugin = \"sum\"";
        let cut = cut_first("value-type = \"i64\"", reduce_steps).unwrap();
        let partial = &steps_of(&cut.task_overrides("t", 1, 4))[0];
        assert_eq!(
            (partial["op"].as_str(), partial["plugin"].as_str()),
            (Some("reduce"), Some("sum"))
        );
        let total = &steps_of(&cut.task_overrides(&cut.topics[0], 2, 4))[0];
        assert_eq!(
            (total["op"].as_str(), total["plugin"].as_str()),
            (Some("reduce"), Some("sum"))
        );
    }

    #[test]
    fn a_middle_stage_reads_the_topic_before_it_and_writes_the_one_after_it() {
        let one = |key, value| Side {
            tagged: None,
            from: None,
            key: Some(key),
            value,
            partition: None,
        };
        let cut = Repartition {
            topics: vec!["t.repartition".into(), "t.repartition-2".into()],
            replication: -1,
            topic_config: Vec::new(),
            stages: vec![
                Stage {
                    steps: Array::new(),
                    writes: vec![one(Encoding::Text, Encoding::I64)],
                },
                Stage {
                    steps: Array::new(),
                    writes: vec![one(Encoding::I64, Encoding::Text)],
                },
                Stage {
                    steps: Array::new(),
                    writes: Vec::new(),
                },
            ],
            kafka: InlineTable::new(),
            id_prefix: "spate.t.j".into(),
        };
        let middle = cut.task_overrides("t.repartition", 1, 4);
        let read: toml::Table = toml::from_str(&middle[0]).unwrap();
        let read = &read["sources"]["repartition"];
        assert_eq!(read["topic"].as_str(), Some("t.repartition"));
        assert_eq!(read["key-type"].as_str(), Some("text"));
        let written = middle.last().unwrap();
        assert!(
            written.starts_with("outputs=")
                && written.contains("topic = \"t.repartition-2\"")
                && !written.contains("transactional-id"),
            "{written}"
        );
        let last = cut.task_overrides("t.repartition-2", 1, 4);
        let read: toml::Table = toml::from_str(&last[0]).unwrap();
        assert_eq!(
            read["sources"]["repartition"]["key-type"].as_str(),
            Some("i64")
        );
        assert_eq!(last.len(), 2, "no outputs but the job's: {last:?}");
    }

    #[test]
    fn the_repartition_topic_takes_its_replication_and_settings_from_the_job() {
        assert_eq!(topic_settings(&pipeline("")).unwrap(), (-1, vec![]));
        let set = pipeline(
            "repartition-replication = 3\nrepartition-topic-config = { \"retention.ms\" = \
             604800000, \"cleanup.policy\" = \"delete\", \"preallocate\" = true }",
        );
        let (replication, settings) = topic_settings(&set).unwrap();
        assert_eq!(replication, 3);
        assert_eq!(
            settings,
            [
                ("cleanup.policy", "delete"),
                ("preallocate", "true"),
                ("retention.ms", "604800000")
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        let zero = topic_settings(&pipeline("repartition-replication = 0")).unwrap_err();
        assert!(
            zero.to_string().contains("job.repartition-replication")
                && zero.to_string().contains("at least 1, not 0"),
            "{zero}"
        );
        let list = topic_settings(&pipeline(
            "repartition-topic-config = { \"retention.ms\" = [1] }",
        ))
        .unwrap_err();
        assert!(
            list.to_string()
                .contains("job.repartition-topic-config.\"retention.ms\""),
            "{list}"
        );
    }
}
