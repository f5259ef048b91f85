//! Which steps a scale-out job can run task by task. A task holds one input partition, so a
//! step that needs records from several partitions at once cannot run inside it: a keyed step
//! can when it groups by the Kafka record key as read (Kafka's partitioner put every record of
//! a key in one partition: the input is co-partitioned by the key), not when an earlier step
//! may have changed the key. The first such keyed step is where the job is cut in two: map
//! tasks (one per input partition) run the steps before it and write into a repartition topic
//! keyed by the key, reduce tasks (one per partition of that topic) run it and the rest; a
//! join cut there sends both its sides through the topic. A later keyed step on a key changed
//! again is a further cut, with a topic of its own. A count by value is always a cut (records
//! of one value can be in every partition), and so is a step combining every record into one
//! result: each task's partial result goes into one partition of the topic, whose task combines
//! them (docs/SCALE-OUT.md).

use crate::config::{ConfigError, Pipeline, StepOp};
use std::collections::BTreeMap;

/// How a stream's records are spread over the tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Spread {
    /// By the Kafka record key, unchanged since the source.
    ByInputKey,
    /// Otherwise; the step named may have changed the key (`None`: the source has no key).
    Other(Option<String>),
}

/// What a step needs of its input's spread.
enum Needs {
    /// Nothing: it works record by record (or partition by partition) and keeps the key.
    Nothing,
    /// Nothing, but its output's key is the step's own (map, flat-map, map-partitions).
    NothingNewKey,
    /// Every record of a key in one task.
    KeyTogether,
    /// Every record of a value in one task (count-by-value).
    ValueTogether,
    /// Every record in one place (a single result per batch).
    Everything,
}

fn needs(op: StepOp) -> Needs {
    use StepOp::*;
    match op {
        Filter | Window | AssignTimestamps | Repartition | Union => Needs::Nothing,
        Map | FlatMap | MapPartitions => Needs::NothingNewKey,
        ReduceByKey | GroupByKey | Join | LeftOuterJoin | RightOuterJoin | FullOuterJoin
        | Cogroup | ReduceByKeyAndWindow | UpdateStateByKey | MapWithState | EventTimeWindow
        | SumByKey | SumByKeyAndWindow => Needs::KeyTogether,
        CountByValue | CountByValueAndWindow => Needs::ValueTogether,
        Reduce | Count | CountByWindow | ReduceByWindow => Needs::Everything,
    }
}

/// How a scale-out job's steps are spread over tasks.
#[derive(Debug, PartialEq, Eq)]
pub struct Partitioning {
    /// The steps the job is cut at (a repartition topic before each), in order.
    pub cuts: Vec<usize>,
    /// What `spate check` says of it.
    pub said: String,
}

/// Checks that every step of `pipeline` runs within a task, or behind repartition topics,
/// the source's records keyed by the Kafka key when `source_keyed`; says which case applies,
/// or which step cannot run and why.
pub fn check(pipeline: &Pipeline, source_keyed: bool) -> Result<Partitioning, ConfigError> {
    let mut spread: BTreeMap<String, Spread> = BTreeMap::new();
    let source_spread = match source_keyed {
        true => Spread::ByInputKey,
        false => Spread::Other(None),
    };
    // Each stream's stage: 0 before the first cut, n after the n-th; a step reads the streams
    // of its own stage (a cut step those of the stage before it).
    let mut stage: BTreeMap<String, usize> = BTreeMap::new();
    for name in pipeline.file.sources.keys() {
        spread.insert(name.clone(), source_spread.clone());
        stage.insert(name.clone(), 0);
    }
    let mut previous: Vec<String> = pipeline.file.sources.keys().cloned().collect();
    let mut keyed_steps = 0;
    let mut cuts: Vec<usize> = Vec::new();
    for (i, step) in pipeline.file.steps.iter().enumerate() {
        let op = *step.op.get_ref();
        let inputs: Vec<String> = match &step.from {
            Some(from) => from
                .get_ref()
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            None => previous.clone(),
        };
        // A stream the analysis does not know (a step's side output) counts as keyed by
        // something else: refusing is safe, running a keyed step on it would not be.
        let input: Spread = inputs
            .iter()
            .map(|name| {
                spread
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| Spread::Other(Some(name.clone())))
            })
            .find(|s| *s != Spread::ByInputKey)
            .unwrap_or(Spread::ByInputKey);
        let label = format!("steps[{i}] ({})", op.name());
        let refuse = |why: String| {
            pipeline.error_at(
                step.op.span(),
                &format!("steps[{i}].op"),
                format!(
                    "{why}; across processes its input would have to be repartitioned through \
                     a Kafka topic, which scale-out (`job.group`) does not do for it yet: it runs \
                     steps that work record by record, keyed steps that group by the Kafka \
                     record key as read, and keyed steps or joins behind a repartition topic \
                     (docs/SCALE-OUT.md)"
                ),
            )
        };
        let mut is_cut = false;
        let output = match needs(op) {
            Needs::Nothing => input,
            Needs::NothingNewKey => Spread::Other(Some(label)),
            Needs::KeyTogether => match input {
                Spread::ByInputKey => {
                    keyed_steps += 1;
                    Spread::ByInputKey
                }
                // A keyed step on a changed key, reading one stream, or a join's two sides
                // (each side goes through the repartition topic): a cut.
                Spread::Other(Some(_)) if inputs.len() == 1 || two_sided(op) => {
                    is_cut = true;
                    keyed_steps += 1;
                    Spread::ByInputKey
                }
                Spread::Other(None) => {
                    return Err(refuse(format!(
                        "{label} groups by key, and the Kafka source has no `key-type`: records \
                         of one key can be in every partition"
                    )));
                }
                Spread::Other(Some(changer)) => {
                    return Err(refuse(format!(
                        "{label} groups by a key that {changer} may have changed, so records of \
                         one key can be in every partition"
                    )));
                }
            },
            // Records of one value can be in every partition, whatever the key: always a cut,
            // after which the stream is keyed by the value (the counts).
            Needs::ValueTogether => {
                is_cut = true;
                keyed_steps += 1;
                Spread::ByInputKey
            }
            // Each task's partial result goes into one partition of the topic, whose task
            // combines them: after it, every record is in that one task.
            Needs::Everything => {
                is_cut = true;
                Spread::ByInputKey
            }
        };
        // Every input must be of the latest stage: a task runs one stage.
        if let Some((read, _)) = inputs
            .iter()
            .filter_map(|n| stage.get(n).map(|s| (n, *s)))
            .find(|(_, s)| *s < cuts.len())
        {
            return Err(refuse(format!(
                "steps[{i}] ({}) reads '{read}', a stream before the repartition at steps[{}]",
                op.name(),
                cuts.last().copied().unwrap_or_default()
            )));
        }
        if is_cut {
            cuts.push(i);
        }
        let name = step
            .name
            .as_ref()
            .map_or_else(|| format!("steps[{i}]"), |n| n.get_ref().clone());
        spread.insert(name.clone(), output);
        stage.insert(name.clone(), cuts.len());
        previous = vec![name];
    }
    if let Some(&last) = cuts.last() {
        for (i, output) in pipeline.file.outputs.iter().enumerate() {
            if let Some(from) = output
                .from
                .as_ref()
                .filter(|f| stage.get(f.get_ref()).is_some_and(|&s| s < cuts.len()))
            {
                return Err(pipeline.error_at(
                    from.span(),
                    &format!("outputs[{i}].from"),
                    format!(
                        "'{}' is a stream before the repartition at steps[{last}]: a scale-out \
                         job's outputs read the steps after it",
                        from.get_ref()
                    ),
                ));
            }
        }
        let said: Vec<String> = cuts
            .iter()
            .map(|&at| {
                let op = *pipeline.file.steps[at].op.get_ref();
                let what = match (two_sided(op), needs(op)) {
                    (true, _) => "both its sides, each tagged with its stream's name",
                    (false, Needs::ValueTogether) => {
                        "its input's values, counted per batch in the writing tasks and added \
                         up in the reading ones"
                    }
                    (false, Needs::Everything) => {
                        "each writing task's partial result per batch, all into partition 0, \
                         combined by its task (the other tasks of the topic emit nothing)"
                    }
                    (false, _) => "its input",
                };
                format!("steps[{at}] ({}): {what}", op.name())
            })
            .collect();
        return Ok(Partitioning {
            said: format!(
                "{} step(s) group by a key an earlier step may have changed (or by value, or \
                 combine every record), each behind a repartition topic ({}): map tasks (one \
                 per input partition) run the steps before the first and write into its topic, \
                 keyed by that key (map-side combined for reduce-by-key and a count by value, \
                 a partial result per task for a global aggregation); the tasks of each \
                 topic's partitions run its step and those after it up to the next cut (writing into the next topic) or \
                 the end, each batch once every task before it has ended it there",
                cuts.len(),
                said.join("; ")
            ),
            cuts,
        });
    }
    let said = match keyed_steps {
        0 => "no keyed step: each task runs the whole pipeline on its partition".to_owned(),
        n => format!(
            "{n} keyed step(s), each grouping by the Kafka record key as read: the input is \
             co-partitioned by the key, so each task runs them on its partition and no \
             repartition topic is used"
        ),
    };
    Ok(Partitioning { cuts, said })
}

/// A keyed step with two inputs (a join's two sides need the same cut).
pub(super) fn two_sided(op: StepOp) -> bool {
    use StepOp::*;
    matches!(
        op,
        Join | LeftOuterJoin | RightOuterJoin | FullOuterJoin | Cogroup
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(steps: &str, key: bool) -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let key = if key { "key-type = \"text\"" } else { "" };
        std::fs::write(
            &path,
            format!(
                "[sources.in]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:1\"\ntopics = [\"t\"]\n\
                 {key}\n{steps}\n[[outputs]]\ntype = \"print\"\n"
            ),
        )
        .unwrap();
        Pipeline::load(&path, &[]).unwrap()
    }

    #[test]
    fn keyed_steps_on_the_kafka_key_run_per_task() {
        let p = pipeline(
            "[[steps]]\nop = \"filter\"\nplugin = \"x\"\n[[steps]]\nop = \"reduce-by-key\"\n\
             plugin = \"sum\"\n",
            true,
        );
        let said = check(&p, true).unwrap();
        assert!(said.cuts.is_empty());
        assert!(said.said.contains("1 keyed step(s)"), "{said:?}");
        let narrow = pipeline(
            "[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n",
            false,
        );
        assert!(
            check(&narrow, false)
                .unwrap()
                .said
                .contains("no keyed step")
        );
    }

    #[test]
    fn each_keyed_step_on_a_changed_key_is_a_cut_and_reads_only_its_own_stage() {
        let word_count = "[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\nname = \"words\"\n\
             [[steps]]\nop = \"reduce-by-key\"\nplugin = \"sum\"\n[[steps]]\n\
             op = \"update-state-by-key\"\nplugin = \"running-sum\"\n";
        let said = check(&pipeline(word_count, false), false).unwrap();
        assert_eq!(said.cuts, [1]);
        assert!(said.said.contains("repartition topic"), "{said:?}");
        let twice = format!(
            "{word_count}[[steps]]\nop = \"map\"\nplugin = \"x\"\n[[steps]]\n\
             op = \"group-by-key\"\n"
        );
        let said = check(&pipeline(&twice, false), false).unwrap();
        assert_eq!(said.cuts, [1, 4]);
        assert!(
            said.said.contains("2 step(s)")
                && said
                    .said
                    .contains("steps[1] (reduce-by-key): its input; steps[4] (group-by-key)"),
            "{said:?}"
        );
        // A step after the second cut reading a stream of the first stage cannot run.
        let back = format!("{twice}[[steps]]\nop = \"filter\"\nplugin = \"x\"\nfrom = \"words\"\n");
        let e = check(&pipeline(&back, false), false).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("steps[5].op"));
        assert!(
            e.message
                .contains("reads 'words', a stream before the repartition at steps[4]"),
            "{e}"
        );
    }

    #[test]
    fn steps_needing_other_partitions_are_refused_naming_the_step_and_why() {
        let unkeyed = pipeline(
            "[[steps]]\nop = \"reduce-by-key\"\nplugin = \"sum\"\n",
            false,
        );
        let e = check(&unkeyed, false).unwrap_err();
        assert!(e.message.contains("has no `key-type`"), "{e}");
        assert!(e.position.is_some(), "the error points at the step's line");
    }

    #[test]
    fn a_count_by_value_is_a_cut_whatever_the_key() {
        for keyed in [false, true] {
            let said = check(
                &pipeline("[[steps]]\nop = \"count-by-value\"\n", keyed),
                keyed,
            );
            assert_eq!(said.unwrap().cuts, [0], "keyed: {keyed}");
        }
        // Its output is keyed by the value: a keyed step on it runs in the same tasks.
        let then = "[[steps]]\nop = \"count-by-value-and-window\"\nlength = \"2s\"\n\
                    [[steps]]\nop = \"reduce-by-key\"\nplugin = \"x\"\n";
        assert_eq!(check(&pipeline(then, false), false).unwrap().cuts, [0]);
    }

    #[test]
    fn a_global_aggregation_is_a_cut_and_any_step_after_it_runs_in_its_task() {
        let global = "[[steps]]\nop = \"count\"\n[[steps]]\nop = \"map\"\nplugin = \"x\"\n\
                      [[steps]]\nop = \"reduce-by-key\"\nplugin = \"x\"\n";
        let said = check(&pipeline(global, true), true).unwrap();
        // The reduce-by-key after the map is cut again: the analysis does not keep that every
        // record is in one task there (a topic more than needed, not a wrong result).
        assert_eq!(said.cuts, [0, 2]);
        assert!(
            said.said
                .contains("steps[0] (count): each writing task's partial result"),
            "{said:?}"
        );
    }

    #[test]
    fn a_join_of_a_rekeyed_stream_is_the_cut_with_both_sides_through_the_topic() {
        let join = "[[steps]]\nop = \"map\"\nplugin = \"x\"\nname = \"a\"\n[[steps]]\n\
                    op = \"join\"\nfrom = [\"a\", \"in\"]\n";
        let said = check(&pipeline(join, true), true).unwrap();
        assert_eq!(said.cuts, [1]);
        assert!(
            said.said.contains("steps[1] (join)") && said.said.contains("both its sides"),
            "{said:?}"
        );
        // A count by value after it is a second cut: records of one value can be anywhere.
        let by_value = format!("{join}[[steps]]\nop = \"count-by-value\"\n");
        let said = check(&pipeline(&by_value, true), true).unwrap();
        assert_eq!(said.cuts, [1, 2]);
        assert!(
            said.said
                .contains("steps[2] (count-by-value): its input's values, counted"),
            "{said:?}"
        );
        // Both sides keyed by the Kafka key as read: no cut.
        let both = "[[steps]]\nop = \"filter\"\nplugin = \"x\"\nname = \"a\"\n[[steps]]\n\
                    op = \"join\"\nfrom = [\"a\", \"in\"]\n";
        assert!(check(&pipeline(both, true), true).unwrap().cuts.is_empty());
    }
}
