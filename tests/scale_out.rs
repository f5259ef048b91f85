//! Scale-out, end to end: several `spate run` processes share one job through a Kafka consumer
//! group (a real broker, real processes, loopback). Each process runs the tasks (input
//! partitions) the group gives it; a SIGKILLed member's tasks move to the others and resume
//! from their own checkpoints; a member that joins takes some over. The outputs are exact: each
//! task's part of each batch is written once, every record counted once in total.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;
use support::kafka::{Broker, java_partition};
use support::*;

const PARTITIONS: i32 = 4;

/// The text-files outputs written per task: (batch time, task) -> counts.
fn task_outputs(dir: &Path) -> BTreeMap<(u64, String), Counts> {
    let mut outputs = BTreeMap::new();
    let Ok(batches) = std::fs::read_dir(dir) else {
        return outputs;
    };
    for batch in batches {
        let batch = batch.unwrap();
        let name = batch.file_name().to_string_lossy().into_owned();
        let Some(time) = name
            .strip_prefix("wc-")
            .and_then(|n| n.strip_suffix(".txt"))
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        for task in std::fs::read_dir(batch.path()).unwrap() {
            let task = task.unwrap();
            let task_name = task.file_name().to_string_lossy().into_owned();
            if task_name.starts_with('.') {
                continue;
            }
            assert!(
                task.path().join("_SUCCESS").exists(),
                "{name}/{task_name} has no _SUCCESS"
            );
            let mut counts = Counts::new();
            let mut parts: Vec<_> = std::fs::read_dir(task.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("part-")
                })
                .collect();
            parts.sort();
            for part in parts {
                parse_pairs(&std::fs::read_to_string(part).unwrap(), &mut counts);
            }
            outputs.insert((time, task_name), counts);
        }
    }
    outputs
}

/// Starts a member process logging to `log`. Dynamic members: with static ones
/// (`--member-id`) the test broker (tansu 0.6) never completes the follow-up round of a
/// cooperative rebalance for a member that joins (it is left with no tasks), which a Kafka
/// cluster does (docs/SCALE-OUT.md).
fn member(pipeline: &Path, log: &Path) -> Child {
    spate()
        .args(["run", pipeline.to_str().unwrap(), "--no-ui"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn spate")
}

/// How many tasks the member logging to `log` owned after its latest rebalance.
fn owned(log: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("task(s) after a rebalance"))?;
    let (_, rest) = line.split_once(": owns ")?;
    rest.split(' ').next()?.parse().ok()
}

/// Waits until the numbers of tasks the members logging to `logs` own satisfy `wanted`;
/// fails saying `what`, with their logs, if they do not within a minute.
fn wait_for_tasks(logs: &[&Path], what: &str, wanted: impl Fn(&[usize]) -> bool) {
    let owned_now = || -> Vec<usize> { logs.iter().map(|l| owned(l).unwrap_or(0)).collect() };
    if !eventually(Duration::from_secs(60), || wanted(&owned_now())) {
        let texts: Vec<String> = logs
            .iter()
            .map(|l| format!("{}:\n{}", l.display(), std::fs::read_to_string(l).unwrap()))
            .collect();
        panic!("{what} (owned: {:?})\n{}", owned_now(), texts.join("\n"));
    }
}

/// Produces `n` records of words keyed by the word (value 1, as an i64), the word chosen by
/// `seed`; returns the counts produced.
fn produce_words(broker: &Broker, seed: u64, n: usize) -> Counts {
    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    let mut counts = Counts::new();
    let mut rng = support::chaos::Rng(seed);
    let one = 1i64.to_be_bytes();
    let keys: Vec<&str> = (0..n)
        .map(|_| words[rng.below(words.len() as u64) as usize])
        .collect();
    let records: Vec<(Option<&[u8]>, &[u8])> = keys
        .iter()
        .map(|k| (Some(k.as_bytes()), &one[..]))
        .collect();
    broker.produce("words", &records);
    for k in keys {
        *counts.entry(k.to_owned()).or_default() += 1;
    }
    counts
}

fn add(into: &mut Counts, more: &Counts) {
    for (word, n) in more {
        *into.entry(word.clone()).or_default() += n;
    }
}

/// The word counts of words keyed by themselves in the topic `words` (a reduce-by-key on
/// the Kafka key, text-files out): see [`scale_out_job`].
fn word_count_job(dir: &Path) -> (Broker, PathBuf, PathBuf) {
    scale_out_job(
        dir,
        "words",
        "key-type = \"text\"\nvalue-type = \"i64\"",
        "[[steps]]\nop = \"reduce-by-key\"\nplugin = \"sum\"",
    )
}

/// A broker with `topic` (4 partitions) and, in `dir`, a scale-out job reading it (its source
/// table ending with `source`) through `steps` into text-files; returns the pipeline's path
/// and the output directory.
fn scale_out_job(dir: &Path, topic: &str, source: &str, steps: &str) -> (Broker, PathBuf, PathBuf) {
    let broker = Broker::start();
    broker.create_topic(topic, PARTITIONS);
    let out = dir.join("out");
    let pipeline = pipeline(
        dir,
        &format!(
            r#"
[job]
name = "wc"
batch-interval = "1s"
workers = 1
checkpoint-dir = "{shared}"
group = "spate.wc.members"

[sources.{topic}]
type = "kafka"
bootstrap = "{bootstrap}"
topics = ["{topic}"]
starting-offsets = "earliest"
{source}

[sources.{topic}.client]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500

{steps}

[[outputs]]
type = "text-files"
prefix = "{out}/wc"
suffix = "txt"
"#,
            shared = dir.join("shared").display(),
            bootstrap = broker.bootstrap(),
            out = out.display(),
        ),
    );
    (broker, pipeline, out)
}

/// What `spate check` prints of `pipeline` (which must be valid).
fn checked(pipeline: &Path) -> String {
    let checked = run(
        &["check", pipeline.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(checked.status.success(), "{}", stderr(&checked));
    String::from_utf8_lossy(&checked.stdout).into_owned()
}

/// Members a and b share the job's `tasks` tasks; a is SIGKILLed mid-stream and b takes its
/// tasks; c joins and takes some over. `produce` feeds a wave of input before each step.
/// Returns b and c, running.
fn kill_one_and_join_one(
    dir: &Path,
    pipeline: &Path,
    tasks: usize,
    mut produce: impl FnMut(),
) -> Vec<Child> {
    let logs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| dir.join(format!("{id}.log")))
        .collect();
    produce();
    let mut a = member(pipeline, &logs[0]);
    let b = member(pipeline, &logs[1]);
    wait_for_tasks(
        &[&logs[0], &logs[1]],
        "a and b did not share the tasks",
        |o| o[0] > 0 && o[1] > 0 && o[0] + o[1] == tasks,
    );
    produce();
    std::thread::sleep(Duration::from_millis(700));
    a.kill().unwrap();
    a.wait().unwrap();
    produce();
    wait_for_tasks(&[&logs[0], &logs[1]], "b did not take a's tasks", |o| {
        o[1] == tasks
    });
    let c = member(pipeline, &logs[2]);
    wait_for_tasks(&[&logs[1], &logs[2]], "c did not take tasks over", |o| {
        o[1] > 0 && o[0] + o[1] == tasks
    });
    produce();
    vec![b, c]
}

#[test]
fn members_share_a_job_and_take_over_a_killed_ones_tasks_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, pipeline, out) = word_count_job(dir.path());
    let said = checked(&pipeline);
    assert!(
        said.contains("consumer group 'spate.wc.members'") && said.contains("no repartition topic"),
        "{said}"
    );
    let mut expected = Counts::new();
    let mut wave = 0;
    let members = kill_one_and_join_one(dir.path(), &pipeline, PARTITIONS as usize, || {
        wave += 1;
        add(&mut expected, &produce_words(&broker, wave, 2000));
    });
    finish_and_verify(&out, &expected, members, "words");
}

/// Every task's outputs added up.
fn totals(outputs: &BTreeMap<(u64, String), Counts>) -> Counts {
    let mut sum = Counts::new();
    for counts in outputs.values() {
        add(&mut sum, counts);
    }
    sum
}

/// Waits for the outputs in `out` to add up to `expected`, stops `members` gracefully, and
/// checks that they did, exactly, with every word counted only by the task of its partition
/// of `topic` (as Kafka's clients partition by key).
fn finish_and_verify(out: &Path, expected: &Counts, members: Vec<Child>, topic: &str) {
    let done = eventually(Duration::from_secs(180), || {
        totals(&task_outputs(out)) == *expected
    });
    for member in &members {
        interrupt(member);
    }
    let ended: Vec<_> = members
        .into_iter()
        .map(|m| wait(m, Duration::from_secs(60)))
        .collect();
    // The members log into files beside the outputs.
    let logs = || -> String {
        let dir = out.parent().unwrap();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f).unwrap_or_default();
                let notable: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.contains(" INFO ") || !l.contains(": batch "))
                    .collect();
                let tail = &notable[notable.len().saturating_sub(60)..];
                format!("{}:\n{}", f.display(), tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let outputs = task_outputs(out);
    assert!(
        done,
        "outputs differ from what was produced: {}\n{}",
        support::chaos::difference(&totals(&outputs), expected),
        logs()
    );
    for output in &ended {
        assert!(output.status.success(), "{}", logs());
    }
    assert_eq!(
        &totals(&outputs),
        expected,
        "a batch was written again after the stop"
    );
    // Each task counted the words of its own partition only (murmur2, as Kafka's producers
    // partition by key): the input topic's when co-partitioned, else the repartition topic's.
    for ((time, task), counts) in &outputs {
        for word in counts.keys() {
            let partition = java_partition(word.as_bytes(), PARTITIONS);
            assert_eq!(
                task,
                &format!("{topic}-{partition}"),
                "batch {time}: '{word}' counted by another task"
            );
        }
    }
    let tasks: std::collections::BTreeSet<&String> = outputs.keys().map(|(_, t)| t).collect();
    assert!(tasks.len() > 1, "{tasks:?}");
}

#[test]
fn random_members_killed_again_and_again_leave_the_outputs_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, pipeline, out) = word_count_job(dir.path());
    let mut rng = support::chaos::Rng(25);
    let log = |slot: usize, run: usize| dir.path().join(format!("member-{slot}-{run}.log"));
    let mut members: Vec<Child> = (0..3)
        .map(|slot| member(&pipeline, &log(slot, 0)))
        .collect();
    let mut runs = [0; 3];
    let mut expected = Counts::new();
    // At least ten kills, fewer if SPATE_CHAOS_KILLS asks (each costs a session timeout).
    let kills = support::chaos::kills().clamp(1, 10);
    for kill in 1..=kills {
        add(
            &mut expected,
            &produce_words(&broker, 100 + kill as u64, 500),
        );
        std::thread::sleep(Duration::from_millis(1000 + rng.below(3000)));
        let slot = rng.below(3) as usize;
        if let Some(status) = members[slot].try_wait().unwrap() {
            panic!(
                "member {slot} ended on its own ({status}):\n{}",
                std::fs::read_to_string(log(slot, runs[slot])).unwrap_or_default()
            );
        }
        members[slot].kill().unwrap();
        members[slot].wait().unwrap();
        runs[slot] = kill;
        members[slot] = member(&pipeline, &log(slot, kill));
    }
    add(&mut expected, &produce_words(&broker, 999, 500));
    finish_and_verify(&out, &expected, members, "words");
}

#[test]
fn a_word_count_runs_across_members_through_a_repartition_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, pipeline, out) = scale_out_job(
        dir.path(),
        "lines",
        "",
        "[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n\n\
         [[steps]]\nop = \"reduce-by-key\"\nplugin = \"sum\"",
    );
    let said = checked(&pipeline);
    assert!(
        said.contains("repartition topic 'spate.wc.wc.repartition'"),
        "{said}"
    );
    let mut rng = support::chaos::Rng(7);
    let mut expected = Counts::new();
    // 4 map tasks and 4 reduce tasks.
    let members = kill_one_and_join_one(dir.path(), &pipeline, 2 * PARTITIONS as usize, || {
        let text = support::chaos::lines(&mut rng, 1000);
        let records: Vec<(Option<&[u8]>, &[u8])> =
            text.lines().map(|l| (None, l.as_bytes())).collect();
        broker.produce("lines", &records);
        add(&mut expected, &reference_counts(&text, false, false));
    });
    finish_and_verify(&out, &expected, members, "spate.wc.wc.repartition");
}

#[test]
fn a_step_needing_other_partitions_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(
        dir.path(),
        r#"
[job]
checkpoint-dir = "ck"
group = "spate.wc.members"

[sources.lines]
type = "kafka"
bootstrap = "127.0.0.1:1"
topics = ["lines"]

[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
op = "reduce-by-key"
plugin = "sum"

[[steps]]
op = "count"

[[outputs]]
type = "print"
"#,
    );
    let checked = run(
        &["check", pipeline.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let said = stderr(&checked);
    assert_eq!(checked.status.code(), Some(2), "{said}");
    assert!(
        said.contains("steps[2].op")
            && said.contains("combines the records of every partition into one result"),
        "{said}"
    );
    let without_checkpoints = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("checkpoint-dir = \"ck\"\n", "");
    std::fs::write(&pipeline, without_checkpoints).unwrap();
    let checked = run(
        &["check", pipeline.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let said = stderr(&checked);
    assert_eq!(checked.status.code(), Some(2), "{said}");
    assert!(
        said.contains("job.group") && said.contains("needs `checkpoint-dir`"),
        "{said}"
    );
}
