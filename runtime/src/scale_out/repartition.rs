//! A scale-out job cut at a keyed step whose key an earlier step may have changed
//! ([`super::partitioning`]): the two task pipelines made from the user's. A map task (one per
//! input partition) runs the steps before the cut, combined by key first when the cut is a
//! reduce-by-key, and writes into the job's repartition topic with the Kafka output
//! (exactly-once, keys partitioned by murmur2 as Kafka's own clients do, an end-of-batch marker
//! in every partition after each batch). A reduce task (one per partition of that topic) reads
//! its partition batch by batch (`type = "repartition"`) and runs the cut step and every step
//! and output after it. A join cut there sends both its sides through the topic: a map task
//! writes each with an output of its own, tagging its records and markers with the side's
//! stream name, and a reduce task reads each with a source of its own, named as the stream
//! was. Both are ordinary task jobs with their own checkpoints, so either kind moves between
//! processes the same way.

use crate::config::{ConfigError, Pipeline, StepOp};
use crate::kafka::Encoding;
use crate::plan::Plan;
use crate::record::Shape;
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

/// The pipelines of the two kinds of task of a job cut at a repartition.
#[derive(Debug)]
pub struct Repartition {
    /// The repartition topic.
    pub topic: String,
    /// Its replication factor; -1: the brokers' default.
    pub replication: i32,
    /// Its topic settings.
    pub topic_config: Vec<(String, String)>,
    /// The steps of a map task (before the cut, and the combining step).
    map_steps: Array,
    /// The steps of a reduce task (from the cut on).
    reduce_steps: Array,
    /// The Kafka settings the internal clients share: the source's `bootstrap` and `client`.
    kafka: InlineTable,
    /// The streams the map tasks write into the topic: the cut step's input, or a join's
    /// sides (one when a stream is joined with itself).
    sides: Vec<Side>,
    /// The transactional id prefix of the map tasks' outputs: `spate.<tenant>.<job>.<topic>`.
    transactional_id: String,
}

/// A stream the map tasks write into the repartition topic and each reduce task reads back.
#[derive(Debug)]
struct Side {
    /// For a join's side, its name before the cut, which the reduce task's source for it takes
    /// (sides are told apart in the topic by the `spate-stream` header); `None`: the cut
    /// step's one input, read by the reduce task's source `repartition`.
    tagged: Option<String>,
    /// The map task's output reads it with `from` (else the last map step, its default).
    from: Option<String>,
    key: Encoding,
    value: Encoding,
}

impl Repartition {
    /// The cut of `pipeline` (planned as `plan`) at `steps[cut]`, reading Kafka source
    /// `source`: the records there must be a key and a value Kafka can carry (scalars).
    pub fn plan(
        pipeline: &Pipeline,
        plan: &Plan,
        source: &str,
        cut: usize,
    ) -> Result<Repartition, ConfigError> {
        let steps = &pipeline.file.steps;
        let combined = *steps[cut].op.get_ref() == StepOp::ReduceByKey;
        let named: Option<Vec<String>> = steps[cut].from.as_ref().map(|from| {
            let mut names: Vec<String> = Vec::new();
            for name in from.get_ref().names() {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
            }
            names
        });
        // What the cut step reads, and how the map task's output finds it: by name when the
        // step names it (a combining step copied into the map task reads it itself), else
        // the last step before the cut (or the source).
        // A join's sides are told apart by name, even one stream joined with itself.
        let sided = super::partitioning::two_sided(*steps[cut].op.get_ref());
        let read: Vec<(String, Option<String>)> = match named {
            Some(names) if sided => names.into_iter().map(|n| (n.clone(), Some(n))).collect(),
            Some(names) => names
                .into_iter()
                .map(|n| (n.clone(), (!combined).then_some(n)))
                .collect(),
            None => vec![(previous_stream(pipeline, source, cut), None)],
        };
        let mut sides = Vec::new();
        for (stream, from) in read {
            let (key, value) = scalars(pipeline, plan, cut, &stream)?;
            sides.push(Side {
                tagged: sided.then(|| stream.clone()),
                from,
                key,
                value,
            });
        }
        let doc: DocumentMut = pipeline
            .text()
            .parse()
            .map_err(|e| pipeline.error(None, format!("cannot read the pipeline again: {e}")))?;
        let tables: Vec<InlineTable> = doc
            .get("steps")
            .and_then(Item::as_array_of_tables)
            .map(|a| a.iter().map(inline).collect())
            .unwrap_or_default();
        let mut map_steps: Array = tables[..cut].iter().cloned().map(Value::from).collect();
        if combined {
            // Each map task sends one record per key and batch, as Spark's map-side combine.
            map_steps.push(tables[cut].clone());
        }
        let mut reduce_steps: Array = tables[cut..].iter().cloned().map(Value::from).collect();
        if let (false, Some(Value::InlineTable(first))) = (sided, reduce_steps.get_mut(0)) {
            // One stream comes through the topic: the reduce task's only source.
            first.remove("from");
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
        let topic = format!(
            "spate.{}.{}.repartition",
            plan.job.tenant,
            pipeline.job_name()
        );
        Ok(Repartition {
            transactional_id: format!("spate.{}.{}.{topic}", plan.job.tenant, pipeline.job_name()),
            topic,
            replication,
            topic_config,
            map_steps,
            reduce_steps,
            kafka,
            sides,
        })
    }

    /// Its replication, in words.
    pub fn replication_said(&self) -> String {
        match self.replication {
            -1 => "the brokers' default replication".to_owned(),
            n => format!("replication {n}"),
        }
    }

    /// The overrides making a map task's pipeline (its source's partition aside): one Kafka
    /// output per side, into the topic.
    pub fn map_overrides(&self) -> Vec<String> {
        let outputs: Array = (self.sides.iter().enumerate())
            .map(|(i, side)| {
                let mut output = self.kafka.clone();
                output.insert("type", "kafka".into());
                output.insert("topic", self.topic.as_str().into());
                output.insert("delivery", "exactly-once".into());
                output.insert("format", "native".into());
                output.insert("end-markers", true.into());
                if let Some(from) = &side.from {
                    output.insert("from", from.as_str().into());
                }
                if let Some(stream) = &side.tagged {
                    // Two outputs of one task write the topic: each its own transactions.
                    output.insert("stream-header", stream.as_str().into());
                    let id = format!("{}.side-{i}", self.transactional_id);
                    output.insert("transactional-id", id.into());
                }
                Value::from(output)
            })
            .collect();
        vec![
            format!("steps={}", self.map_steps),
            format!("outputs={outputs}"),
        ]
    }

    /// The overrides making the pipeline of the reduce task of `partition`, whose batches
    /// `writers` map tasks end: a source per side reading that partition.
    pub fn reduce_overrides(&self, partition: i32, writers: usize) -> Vec<String> {
        let mut sources = InlineTable::new();
        for side in &self.sides {
            let mut source = self.kafka.clone();
            source.insert("type", "repartition".into());
            source.insert("topic", self.topic.as_str().into());
            source.insert("partition", i64::from(partition).into());
            source.insert("writers", (writers as i64).into());
            source.insert("key-type", side.key.name().into());
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
        vec![
            format!("sources={sources}"),
            format!("steps={}", self.reduce_steps),
        ]
    }
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

/// How the records of `stream`, which go through the repartition topic before `steps[cut]`,
/// are written there: their key's and value's encodings, which must be scalars.
fn scalars(
    pipeline: &Pipeline,
    plan: &Plan,
    cut: usize,
    stream: &str,
) -> Result<(Encoding, Encoding), ConfigError> {
    let types = (plan.dataflow.streams.iter())
        .find(|s| s.name == stream)
        .map(|s| s.types.clone());
    let scalar = |shape: Option<&Shape>| match shape {
        Some(Shape::Scalar(t)) => Some(Encoding::of(*t)),
        _ => None,
    };
    let (key, value) = match types {
        Some(t) => (scalar(t.key.as_ref()), scalar(Some(&t.value))),
        None => (None, None),
    };
    match (key, value) {
        (Some(key), Some(value)) => Ok((key, value)),
        _ => Err(pipeline.error_at(
            pipeline.file.steps[cut].op.span(),
            &format!("steps[{cut}].op"),
            format!(
                "the records of '{stream}' go through the repartition topic before this step: \
                 they must be keyed and their key and value scalars (text, bytes, i64, f64)"
            ),
        )),
    }
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
            key: Encoding::Text,
            value,
        };
        let cut = Repartition {
            topic: "spate.t.j.repartition".into(),
            replication: -1,
            topic_config: Vec::new(),
            map_steps: Array::new(),
            reduce_steps: Array::new(),
            kafka: InlineTable::new(),
            sides: vec![side("clicks", Encoding::I64), side("users", Encoding::Text)],
            transactional_id: "spate.t.j.spate.t.j.repartition".into(),
        };
        let map = cut.map_overrides().join("\n");
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
        let reduce = cut.reduce_overrides(2, 4).join("\n");
        let sources: toml::Table = toml::from_str(reduce.lines().next().unwrap()).unwrap();
        let sources = sources["sources"].as_table().unwrap();
        assert_eq!(sources.keys().collect::<Vec<_>>(), ["clicks", "users"]);
        assert_eq!(sources["clicks"]["stream"].as_str(), Some("clicks"));
        assert_eq!(sources["clicks"]["value-type"].as_str(), Some("i64"));
        assert_eq!(sources["users"]["value-type"].as_str(), Some("text"));
        assert_eq!(sources["users"]["partition"].as_integer(), Some(2));
        assert_eq!(sources["users"]["writers"].as_integer(), Some(4));
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
