//! A scale-out job cut at a keyed step whose key an earlier step may have changed
//! ([`super::partitioning`]): the two task pipelines made from the user's. A map task (one per
//! input partition) runs the steps before the cut, combined by key first when the cut is a
//! reduce-by-key, and writes into the job's repartition topic with the Kafka output
//! (exactly-once, keys partitioned by murmur2 as Kafka's own clients do, an end-of-batch marker
//! in every partition after each batch). A reduce task (one per partition of that topic) reads
//! its partition batch by batch (`type = "repartition"`) and runs the cut step and every step
//! and output after it. Both are ordinary task jobs with their own checkpoints, so either kind
//! moves between processes the same way.

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
        let read = match cut {
            0 => source.to_owned(),
            i => steps[i - 1]
                .name
                .as_ref()
                .map_or_else(|| format!("steps[{}]", i - 1), |n| n.get_ref().clone()),
        };
        let types = plan
            .dataflow
            .streams
            .iter()
            .find(|s| s.name == read)
            .map(|s| s.types.clone());
        let field = format!("steps[{cut}].op");
        let scalar = |shape: Option<&Shape>| match shape {
            Some(Shape::Scalar(t)) => Some(Encoding::of(*t)),
            _ => None,
        };
        let (key, value) = match types {
            Some(t) => (scalar(t.key.as_ref()), scalar(Some(&t.value))),
            None => (None, None),
        };
        let (Some(key), Some(value)) = (key, value) else {
            return Err(pipeline.error_at(
                steps[cut].op.span(),
                &field,
                format!(
                    "the records of '{read}' go through the repartition topic before this \
                     step: they must be keyed and their key and value scalars (text, bytes, \
                     i64, f64)"
                ),
            ));
        };
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
        if *steps[cut].op.get_ref() == StepOp::ReduceByKey {
            // Each map task sends one record per key and batch, as Spark's map-side combine.
            let mut combine = tables[cut].clone();
            combine.remove("from");
            map_steps.push(combine);
        }
        let mut reduce_steps: Array = tables[cut..].iter().cloned().map(Value::from).collect();
        if let Some(Value::InlineTable(first)) = reduce_steps.get_mut(0) {
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
        Ok(Repartition {
            topic: format!(
                "spate.{}.{}.repartition",
                plan.job.tenant,
                pipeline.job_name()
            ),
            replication,
            topic_config,
            map_steps,
            reduce_steps,
            kafka,
            key,
            value,
        })
    }

    /// Its replication, in words.
    pub fn replication_said(&self) -> String {
        match self.replication {
            -1 => "the brokers' default replication".to_owned(),
            n => format!("replication {n}"),
        }
    }

    /// The overrides making a map task's pipeline (its source's partition aside).
    pub fn map_overrides(&self) -> Vec<String> {
        let mut output = self.kafka.clone();
        output.insert("type", "kafka".into());
        output.insert("topic", self.topic.as_str().into());
        output.insert("delivery", "exactly-once".into());
        output.insert("format", "native".into());
        output.insert("end-markers", true.into());
        let outputs: Array = [Value::from(output)].into_iter().collect();
        vec![
            format!("steps={}", self.map_steps),
            format!("outputs={outputs}"),
        ]
    }

    /// The overrides making the pipeline of the reduce task of `partition`, whose batches
    /// `writers` map tasks end.
    pub fn reduce_overrides(&self, partition: i32, writers: usize) -> Vec<String> {
        let mut source = self.kafka.clone();
        source.insert("type", "repartition".into());
        source.insert("topic", self.topic.as_str().into());
        source.insert("partition", i64::from(partition).into());
        source.insert("writers", (writers as i64).into());
        source.insert("key-type", self.key.name().into());
        source.insert("value-type", self.value.name().into());
        let mut sources = InlineTable::new();
        sources.insert("repartition", source.into());
        vec![
            format!("sources={sources}"),
            format!("steps={}", self.reduce_steps),
        ]
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
