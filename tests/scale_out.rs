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
use support::kafka::{Broker, Record, counts_of, java_partition};
use support::*;

const PARTITIONS: i32 = 4;

/// The text-files outputs written per task: (batch time, task) -> counts.
fn task_outputs(dir: &Path) -> BTreeMap<(u64, String), Counts> {
    task_texts(dir)
        .into_iter()
        .map(|(batch, text)| {
            let mut counts = Counts::new();
            parse_pairs(&text, &mut counts);
            (batch, counts)
        })
        .collect()
}

/// The text the text-files output wrote per task: (batch time, task) -> its parts' lines.
fn task_texts(dir: &Path) -> BTreeMap<(u64, String), String> {
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
            let text: String = parts
                .iter()
                .map(|part| std::fs::read_to_string(part).unwrap())
                .collect();
            outputs.insert((time, task_name), text);
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
        panic!("{what} (owned: {:?})\n{}", owned_now(), whole(logs));
    }
}

/// The logs `logs`, each under its path, for a failure to show.
fn whole(logs: &[&Path]) -> String {
    let texts: Vec<String> = logs
        .iter()
        .map(|l| {
            let text = std::fs::read_to_string(l).unwrap_or_default();
            format!("{}:\n{text}", l.display())
        })
        .collect();
    texts.join("\n")
}

/// Waits until a batch line that one of `logs` got after its first `from[i]` bytes says that
/// `n` processes take part in the job; fails saying `what`, with the logs, if none does
/// within 30 s.
fn wait_for_processes(logs: &[&Path], from: &[usize], n: usize, what: &str) {
    let said = format!("; {n} processes in the job");
    let seen = || {
        logs.iter().zip(from).any(|(log, &from)| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            text.get(from..).is_some_and(|new| {
                new.lines()
                    .any(|l| l.contains(": batch ") && l.contains(&said))
            })
        })
    };
    if !eventually(Duration::from_secs(30), seen) {
        panic!("{what}: no batch says '{said}'\n{}", whole(logs));
    }
}

/// How long the files `logs` are now.
fn lengths(logs: &[&Path]) -> Vec<usize> {
    logs.iter()
        .map(|l| std::fs::metadata(l).map_or(0, |m| m.len() as usize))
        .collect()
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

/// Produces 1000 unkeyed lines of words (chosen by `rng`) into the topic `lines`; adds
/// their word counts to `expected`.
fn produce_lines(broker: &Broker, rng: &mut support::chaos::Rng, expected: &mut Counts) {
    let text = support::chaos::lines(rng, 1000);
    let records: Vec<(Option<&[u8]>, &[u8])> = text.lines().map(|l| (None, l.as_bytes())).collect();
    broker.produce("lines", &records);
    add(expected, &reference_counts(&text, false, false));
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

/// The word counts of unkeyed lines in the topic `lines` (flat-map, then reduce-by-key
/// behind the repartition topic, text-files out): see [`scale_out_job`].
fn repartition_word_count_job(dir: &Path) -> (Broker, PathBuf, PathBuf) {
    scale_out_job(
        dir,
        "lines",
        "",
        "[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n\n\
         [[steps]]\nop = \"reduce-by-key\"\nplugin = \"sum\"",
    )
}

/// A broker with `topic` (4 partitions) and, in `dir`, a scale-out job reading it (its source
/// table ending with `source`) through `steps` into text-files; returns the pipeline's path
/// and the output directory.
fn scale_out_job(dir: &Path, topic: &str, source: &str, steps: &str) -> (Broker, PathBuf, PathBuf) {
    let broker = Broker::start();
    broker.create_topic(topic, PARTITIONS);
    let out = dir.join("out");
    let outputs = format!(
        "[[outputs]]\ntype = \"text-files\"\nprefix = \"{}/wc\"\nsuffix = \"txt\"\n",
        out.display()
    );
    let pipeline = scale_out_pipeline(dir, &broker, topic, source, steps, &outputs);
    (broker, pipeline, out)
}

/// In `dir`, a scale-out job (group `spate.wc.members`, 1 s batches, checkpoints in
/// `dir/shared`) reading `topic` from `broker` (its source table ending with `source`)
/// through `steps` into `outputs`; returns the pipeline's path.
fn scale_out_pipeline(
    dir: &Path,
    broker: &Broker,
    topic: &str,
    source: &str,
    steps: &str,
    outputs: &str,
) -> PathBuf {
    pipeline(
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

{outputs}
"#,
            shared = dir.join("shared").display(),
            bootstrap = broker.bootstrap(),
        ),
    )
}

/// [`scale_out_job`] of unkeyed records in `topic` through `steps`, checked to be cut as
/// `said` says (`spate check`).
fn checked_job(dir: &Path, topic: &str, steps: &str, said: &str) -> (Broker, PathBuf, PathBuf) {
    let job = scale_out_job(dir, topic, "", steps);
    let checked = checked(&job.1);
    assert!(checked.contains(said), "{checked}");
    job
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

/// `started` members (a, b, ...) share the job's `tasks` tasks; a is SIGKILLed mid-stream and
/// the others take its tasks; one more member joins and takes some over. `produce` feeds a
/// wave of input before each step. Returns the members running at the end.
fn kill_one_and_join_one(
    dir: &Path,
    pipeline: &Path,
    tasks: usize,
    started: usize,
    mut produce: impl FnMut(),
) -> Vec<Child> {
    let logs: Vec<PathBuf> = ["a", "b", "c", "d", "e"][..=started]
        .iter()
        .map(|id| dir.join(format!("{id}.log")))
        .collect();
    let log_refs: Vec<&Path> = logs.iter().map(PathBuf::as_path).collect();
    produce();
    let mut members: Vec<Child> = logs[..started]
        .iter()
        .map(|log| member(pipeline, log))
        .collect();
    wait_for_tasks(
        &log_refs[..started],
        "the members did not share the tasks",
        |o| o.iter().all(|&n| n > 0) && o.iter().sum::<usize>() == tasks,
    );
    // Every batch says how many processes take part in the job.
    let everything = vec![0; started];
    wait_for_processes(&log_refs[..started], &everything, started, "all started");
    produce();
    std::thread::sleep(Duration::from_millis(700));
    let mut killed = members.remove(0);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let after_kill = lengths(&log_refs[1..started]);
    produce();
    wait_for_tasks(
        &log_refs[1..started],
        "the others did not take a's tasks",
        |o| o.iter().sum::<usize>() == tasks,
    );
    wait_for_processes(
        &log_refs[1..started],
        &after_kill,
        started - 1,
        "after the kill",
    );
    members.push(member(pipeline, &logs[started]));
    wait_for_tasks(
        &log_refs[1..],
        "the new member did not take tasks over",
        |o| o[o.len() - 1] > 0 && o.iter().sum::<usize>() == tasks,
    );
    wait_for_processes(&log_refs[started..], &[0], started, "after the join");
    produce();
    members
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
    let members = kill_one_and_join_one(dir.path(), &pipeline, PARTITIONS as usize, 2, || {
        wave += 1;
        add(&mut expected, &produce_words(&broker, wave, 2000));
    });
    // A reset while the job runs is refused, changing nothing.
    let refused = reset(&pipeline);
    assert!(
        !refused.status.success() && stderr(&refused).contains("stop every process of the job"),
        "{}",
        stderr(&refused)
    );
    finish_and_verify(&out, &broker, &expected, members, "words");
    let topics = broker.topics();
    assert!(
        !topics.iter().any(|t| t.contains("repartition")),
        "co-partitioned, yet: {topics:?}"
    );
    let said = reset_done(&pipeline);
    assert!(
        said.contains(&format!("moved the checkpoints of {PARTITIONS} task(s)")),
        "{said}"
    );
    assert!(!dir.path().join("shared/tasks").exists());
}

/// `spate reset` of `pipeline`.
fn reset(pipeline: &Path) -> std::process::Output {
    run(
        &["reset", pipeline.to_str().unwrap()],
        Duration::from_secs(60),
    )
}

/// [`reset`], which must succeed; what it printed.
fn reset_done(pipeline: &Path) -> String {
    let output = reset(pipeline);
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every task's outputs added up.
fn totals(outputs: &BTreeMap<(u64, String), Counts>) -> Counts {
    let mut sum = Counts::new();
    for counts in outputs.values() {
        add(&mut sum, counts);
    }
    sum
}

/// Waits up to three minutes for `done`, then stops `members` gracefully; returns whether it
/// came, how the members ended, and the notable lines of their logs (the `.log` files in
/// `dir`) for a failure to show.
fn stop_when(
    dir: &Path,
    broker: &Broker,
    members: Vec<Child>,
    done: impl FnMut() -> bool,
) -> (bool, Vec<std::process::Output>, String) {
    let done = eventually(Duration::from_secs(180), done);
    for member in &members {
        interrupt(member);
    }
    let ended: Vec<_> = members
        .into_iter()
        .map(|m| wait(m, Duration::from_secs(60)))
        .collect();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    let logs = files
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
        .join("\n");
    let logs = match done {
        true => logs,
        false => format!(
            "(whole logs, outputs and topics kept in {})\n{logs}",
            keep(dir, broker).display()
        ),
    };
    (done, ended, logs)
}

/// Copies the test's directory `dir` (the members' logs, the outputs, the tasks' checkpoints and
/// batch logs) to one the test does not remove, with every record of every topic of `broker`
/// (`topics/<topic>.txt`: partition, offset, headers, key, value), for a failure to be looked
/// into; returns it.
fn keep(dir: &Path, broker: &Broker) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                copy(&path, &to.join(name));
            } else {
                let _ = std::fs::copy(&path, to.join(name));
            }
        }
    }
    let kept = std::env::temp_dir().join(format!(
        "spate-scale-out-failed-{}",
        dir.file_name().unwrap().to_string_lossy()
    ));
    copy(dir, &kept);
    let topics = kept.join("topics");
    std::fs::create_dir_all(&topics).unwrap();
    for topic in broker.topics() {
        let text: String = broker
            .read_all(&topic)
            .iter()
            .map(|r| {
                format!(
                    "{} {} {:?} {:?} {:?}\n",
                    r.partition,
                    r.offset,
                    r.headers,
                    r.key.as_deref().map(String::from_utf8_lossy),
                    String::from_utf8_lossy(&r.value)
                )
            })
            .collect();
        let _ = std::fs::write(topics.join(format!("{topic}.txt")), text);
    }
    kept
}

/// Waits for the outputs in `out` to add up to `expected`, stops `members` gracefully, and
/// checks that they did, exactly, with every word counted only by the task of its partition
/// of `topic` (as Kafka's clients partition by key).
fn finish_and_verify(
    out: &Path,
    broker: &Broker,
    expected: &Counts,
    members: Vec<Child>,
    topic: &str,
) {
    let (done, ended, logs) = stop_when(out.parent().unwrap(), broker, members, || {
        totals(&task_outputs(out)) == *expected
    });
    let outputs = task_outputs(out);
    assert!(
        done,
        "outputs differ from what was produced: {}\n{}",
        support::chaos::difference(&totals(&outputs), expected),
        logs
    );
    for output in &ended {
        assert!(output.status.success(), "{logs}");
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

/// Three members of the job `pipeline` (writing into `out`); at least ten times (fewer if
/// `SPATE_CHAOS_KILLS` asks: each kill costs a session timeout) `produce` feeds a wave of
/// input (given the wave's number; it returns the wave's word counts) and a random member is
/// SIGKILLed and started again. The outputs must add up to the input exactly, each word
/// counted by its partition of `topic`.
fn random_kills(
    dir: &Path,
    broker: &Broker,
    (pipeline, out): (&Path, &Path),
    topic: &str,
    mut produce: impl FnMut(u64) -> Counts,
) {
    let mut expected = Counts::new();
    let mut rng = support::chaos::Rng(25);
    let log = |slot: usize, run: usize| dir.join(format!("member-{slot}-{run}.log"));
    let mut members: Vec<Child> = (0..3).map(|slot| member(pipeline, &log(slot, 0))).collect();
    let mut runs = [0; 3];
    let kills = support::chaos::kills().clamp(1, 10);
    for kill in 1..=kills {
        add(&mut expected, &produce(kill as u64));
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
        members[slot] = member(pipeline, &log(slot, kill));
    }
    add(&mut expected, &produce(999));
    finish_and_verify(out, broker, &expected, members, topic);
}

/// A member stopped gracefully (SIGINT) finishes its tasks' batches and leaves the group; the
/// one left takes every task over and the outputs stay exact. With `joining`, a new member
/// starts at the moment the other is told to leave (what the benchmark's rebalance does).
///
/// The member that leaves is never the group's leader (the first to join, `a` here): when
/// the leader leaves while a rebalance is forming (a member joining), the test broker (tansu
/// 0.6) keeps naming the departed member as leader in every later generation, so no member
/// computes an assignment and every SyncGroup fails with REBALANCE_IN_PROGRESS for good (seen
/// in librdkafka's `debug = "cgrp"` log, 1 run in 3; a Kafka cluster elects a new leader).
fn a_member_leaves_gracefully(joining: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (broker, pipeline, out) = word_count_job(dir.path());
    let logs: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|id| dir.path().join(format!("{id}.log")))
        .collect();
    let log_refs: Vec<&Path> = logs.iter().map(PathBuf::as_path).collect();
    let mut expected = produce_words(&broker, 1, 1000);
    let mut members = vec![member(&pipeline, &logs[0])];
    wait_for_tasks(&log_refs[..1], "a did not get the tasks", |o| {
        o[0] == PARTITIONS as usize
    });
    members.push(member(&pipeline, &logs[1]));
    wait_for_tasks(&log_refs[..2], "the members did not share the tasks", |o| {
        o.iter().all(|&n| n > 0) && o.iter().sum::<usize>() == PARTITIONS as usize
    });
    add(&mut expected, &produce_words(&broker, 2, 1000));
    std::thread::sleep(Duration::from_millis(1500));
    let leaving = members.remove(1);
    interrupt(&leaving);
    if joining {
        members.push(member(&pipeline, &logs[2]));
    }
    let left = wait(leaving, Duration::from_secs(30));
    assert!(left.status.success(), "{}", stderr(&left));
    add(&mut expected, &produce_words(&broker, 3, 1000));
    let staying: Vec<&Path> = if joining {
        vec![log_refs[0], log_refs[2]]
    } else {
        vec![log_refs[0]]
    };
    wait_for_tasks(&staying, "the leaver's tasks were not taken over", |o| {
        o.iter().sum::<usize>() == PARTITIONS as usize
    });
    finish_and_verify(&out, &broker, &expected, members, "words");
}

#[test]
fn a_member_that_leaves_gracefully_hands_its_tasks_over() {
    a_member_leaves_gracefully(false);
}

#[test]
fn a_member_leaving_while_another_joins_hands_its_tasks_over() {
    a_member_leaves_gracefully(true);
}

#[test]
fn random_members_killed_again_and_again_leave_the_outputs_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, pipeline, out) = word_count_job(dir.path());
    random_kills(dir.path(), &broker, (&pipeline, &out), "words", |wave| {
        produce_words(&broker, 100 + wave, 500)
    });
}

/// The same through the repartition topic: a killed member may have been running map tasks
/// (whose batches' partials and end markers the reduce tasks wait for), reduce tasks, or both.
#[test]
fn random_members_killed_again_and_again_across_a_repartition_leave_the_outputs_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, pipeline, out) = repartition_word_count_job(dir.path());
    let mut rng = support::chaos::Rng(26);
    random_kills(
        dir.path(),
        &broker,
        (&pipeline, &out),
        "spate.wc.wc.repartition",
        |_| {
            let mut wave = Counts::new();
            produce_lines(&broker, &mut rng, &mut wave);
            wave
        },
    );
}

#[test]
fn a_word_count_runs_across_members_through_a_repartition_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, pipeline, out) = repartition_word_count_job(dir.path());
    // The topic's settings as Kafka Streams takes them (`topic.*`); its replication the
    // brokers' default.
    let text = std::fs::read_to_string(&pipeline).unwrap().replace(
        "group = \"spate.wc.members\"",
        "group = \"spate.wc.members\"\nrepartition-topic-config = { \"retention.ms\" = 604800000 }",
    );
    std::fs::write(&pipeline, text).unwrap();
    let said = checked(&pipeline);
    assert!(
        said.contains(
            "repartition topic 'spate.wc.wc.repartition' (created with as many partitions as \
             the input has, the brokers' default replication, retention.ms=604800000;"
        ),
        "{said}"
    );
    let mut rng = support::chaos::Rng(7);
    let mut expected = Counts::new();
    // 4 map tasks and 4 reduce tasks.
    let members = kill_one_and_join_one(dir.path(), &pipeline, 2 * PARTITIONS as usize, 2, || {
        produce_lines(&broker, &mut rng, &mut expected);
    });
    finish_and_verify(&out, &broker, &expected, members, "spate.wc.wc.repartition");
    // The map tasks' transactions committed their input offsets to the source's group. Not
    // checked to the end: the test broker sometimes stops applying offsets sent to later
    // transactions (docs/KAFKA.md); each partition has some committed, none past its end.
    let committed = broker.committed_offsets("spate.wc.wc", "lines");
    let ends = broker.partition_ends("lines");
    assert!(
        ends.iter()
            .all(|(p, end)| committed.get(p).is_some_and(|c| (1..=*end).contains(c))),
        "committed {committed:?}, ends {ends:?}"
    );
    // Retired: the internal topic goes, the tasks' checkpoints are moved aside.
    assert!(
        broker
            .topics()
            .contains(&"spate.wc.wc.repartition".to_owned())
    );
    let said = reset_done(&pipeline);
    assert!(
        said.contains("deleted the repartition topic 'spate.wc.wc.repartition'")
            && said.contains(&format!(
                "moved the checkpoints of {} task(s)",
                2 * PARTITIONS
            )),
        "{said}"
    );
    assert!(
        eventually(Duration::from_secs(30), || !broker
            .topics()
            .contains(&"spate.wc.wc.repartition".to_owned())),
        "{:?}",
        broker.topics()
    );
}

/// A count by value of unkeyed words, each produced into a random partition (so that a word
/// is in several), runs across members through a repartition topic: the map tasks count each
/// batch's words, the reduce tasks add up their partition's counts (sum-by-key), so the outputs
/// add up to the words produced, each word counted by one task. A member is killed
/// mid-stream and one joins, as in the word counts.
#[test]
fn a_count_by_value_runs_across_members_through_a_repartition_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, pipeline, out) = checked_job(
        dir.path(),
        "values",
        "[[steps]]\nop = \"count-by-value\"",
        "steps[0] (count-by-value): its input's values, counted per batch in the writing tasks \
         and added up in the reading ones",
    );
    let mut rng = support::chaos::Rng(13);
    let mut expected = Counts::new();
    let members = kill_one_and_join_one(dir.path(), &pipeline, 2 * PARTITIONS as usize, 2, || {
        let text = support::chaos::lines(&mut rng, 300);
        let records: Vec<(Option<&[u8]>, &[u8])> = text
            .split_whitespace()
            .map(|word| (None, word.as_bytes()))
            .collect();
        broker.produce("values", &records);
        add(&mut expected, &reference_counts(&text, false, false));
    });
    finish_and_verify(&out, &broker, &expected, members, "spate.wc.wc.repartition");
}

/// A global count (the words of each batch) runs across members: each map task counts its
/// batch's words and writes its count into partition 0 of the repartition topic, whose task
/// adds the counts up (a 0 from every map task for a batch without words), so that one task
/// writes one count per batch and the counts add up to the words produced; the other reduce
/// tasks write nothing. A member is killed mid-stream and one joins, as in the word counts.
#[test]
fn a_global_count_runs_across_members_in_one_task() {
    global_word_count(
        "[[steps]]\nop = \"count\"",
        "steps[1] (count): each writing task's partial result per batch",
        1000,
    );
}

/// The same with a count by tumbling window of 2 s: the reading task adds the map tasks'
/// counts up over each window (reduce-by-window with the bundled sum), its window moving with
/// it from the killed member; each batch's words are in one window, so the windows' counts
/// add up to the words produced, one count every 2 s.
#[test]
fn a_count_by_window_runs_across_members_in_one_task() {
    global_word_count(
        "[[steps]]\nop = \"count-by-window\"\nlength = \"2s\"\nslide = \"2s\"",
        "steps[1] (count-by-window): each writing task's partial result per batch",
        2000,
    );
}

/// The words of tokenized lines counted by the global `count_step` across members (`spate
/// check` saying `said`), one count every `every_ms` from task `repartition-0` alone, with a
/// member killed and one joining: the counts add up to the words produced.
fn global_word_count(count_step: &str, said: &str, every_ms: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (broker, pipeline, out) = checked_job(
        dir.path(),
        "lines",
        &format!("[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n\n{count_step}"),
        said,
    );
    let mut rng = support::chaos::Rng(17);
    let mut expected = Counts::new();
    let members = kill_one_and_join_one(dir.path(), &pipeline, 2 * PARTITIONS as usize, 2, || {
        produce_lines(&broker, &mut rng, &mut expected);
    });
    let words: i64 = expected.values().sum();
    let total = |texts: &BTreeMap<(u64, String), String>| -> i64 {
        texts
            .values()
            .flat_map(|t| t.lines())
            .map(|l| l.parse::<i64>().unwrap())
            .sum()
    };
    let (done, ended, logs) = stop_when(dir.path(), &broker, members, || {
        total(&task_texts(&out)) == words
    });
    let texts = task_texts(&out);
    assert!(done, "counted {} of {words} words\n{logs}", total(&texts));
    for output in &ended {
        assert!(output.status.success(), "{logs}");
    }
    let counting = "spate.wc.wc.repartition-0";
    for ((time, task), text) in &texts {
        match task.as_str() {
            t if t == counting => assert_eq!(text.lines().count(), 1, "batch {time}: {text}"),
            _ => assert!(text.is_empty(), "batch {time}: task {task} wrote {text}"),
        }
    }
    // Every batch (or window) of the counting task, empty ones included, has its count.
    let times: Vec<u64> = (texts.keys())
        .filter(|(_, task)| task == counting)
        .map(|(time, _)| *time)
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] == every_ms) && times[0].is_multiple_of(every_ms),
        "{times:?}"
    );
    assert_eq!(
        total(&texts),
        words,
        "a batch was written again after the stop"
    );
}

/// A join of two streams keyed by words the job made (tokenized lines) runs across members:
/// both sides go through the repartition topic, each reduce task joins its partition's keys.
/// The other side is the words containing a 7, so a batch's join holds n * n records of such a
/// word that batch T has n of, whatever task or process read its lines, and none of another
/// word. A member is killed mid-stream and one joins, as in the word counts.
#[test]
fn a_join_of_rekeyed_streams_runs_across_members_through_a_repartition_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, pipeline, out) = checked_job(
        dir.path(),
        "lines",
        "[[steps]]\nname = \"words\"\nop = \"flat-map\"\nplugin = \"tokenize\"\n\n\
         [[steps]]\nname = \"sevens\"\nop = \"filter\"\nplugin = \"filter\"\nfrom = \"words\"\n\
         params = { contains = \"7\" }\n\n\
         [[steps]]\nop = \"join\"\nfrom = [\"words\", \"sevens\"]",
        "steps[2] (join): both its sides",
    );
    let mut rng = support::chaos::Rng(11);
    let mut expected = Counts::new();
    let members = kill_one_and_join_one(dir.path(), &pipeline, 2 * PARTITIONS as usize, 2, || {
        produce_lines(&broker, &mut rng, &mut expected);
    });
    expected.retain(|word, _| word.contains('7'));
    // Per (batch, task): each word's joined records, and the n that makes n * n of them.
    let joined = || -> BTreeMap<(u64, String), Counts> {
        task_texts(&out)
            .into_iter()
            .map(|(batch, text)| {
                let mut counts = Counts::new();
                for line in text.lines().filter(|l| !l.is_empty()) {
                    let word = line
                        .strip_prefix('(')
                        .and_then(|l| l.split_once(','))
                        .map(|(w, _)| w)
                        .unwrap_or_else(|| panic!("not a joined record: {line}"));
                    *counts.entry(word.to_owned()).or_default() += 1;
                }
                (batch, counts)
            })
            .collect()
    };
    let sides = |joined: &BTreeMap<(u64, String), Counts>| -> Counts {
        let mut sum = Counts::new();
        for counts in joined.values() {
            for (word, n) in counts {
                *sum.entry(word.clone()).or_default() += (*n as f64).sqrt().round() as i64;
            }
        }
        sum
    };
    let (done, ended, logs) = stop_when(dir.path(), &broker, members, || {
        sides(&joined()) == expected
    });
    let joined = joined();
    assert!(
        done,
        "the joins differ from what was produced: {}\n{logs}",
        support::chaos::difference(&sides(&joined), &expected)
    );
    for output in &ended {
        assert!(output.status.success(), "{logs}");
    }
    for ((time, task), counts) in &joined {
        for (word, n) in counts {
            let side = (*n as f64).sqrt().round() as i64;
            assert_eq!(
                side * side,
                *n,
                "batch {time}, {task}: '{word}' joined {n} times, not a square: a side lost or \
                 doubled records"
            );
            let partition = java_partition(word.as_bytes(), PARTITIONS);
            assert_eq!(
                task,
                &format!("spate.wc.wc.repartition-{partition}"),
                "batch {time}: '{word}' joined by another task"
            );
        }
    }
    assert_eq!(
        sides(&joined),
        expected,
        "a batch was written again after the stop"
    );
    let tasks: std::collections::BTreeSet<&String> = joined.keys().map(|(_, t)| t).collect();
    assert!(tasks.len() > 1, "{tasks:?}");
}

/// Per word, the groups (count, task) of one batch it is in.
type Groups = BTreeMap<String, Vec<(i64, String)>>;

/// Two cuts: a word count (flat-map, reduce-by-key behind the first repartition topic), then
/// its words grouped by their count in the batch (a map to (count, word), group-by-key behind
/// the second). Three kinds of task run across the members (12 tasks); a member is killed
/// mid-stream and one joins. Each batch's groups give back that batch's word counts: every
/// word in one group only, the counts adding up to the input's.
#[test]
fn a_job_cut_twice_runs_across_members_through_two_repartition_topics() {
    let dir = tempfile::tempdir().unwrap();
    let steps = format!(
        "[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n\n\
         [[steps]]\nop = \"reduce-by-key\"\nplugin = \"sum\"\n\n\
         [[steps]]\nop = \"map\"\nplugin = \"{}\"\n\n\
         [[steps]]\nop = \"group-by-key\"",
        test_plugin("by-count").display()
    );
    let (broker, pipeline, out) = scale_out_job(dir.path(), "lines", "", &steps);
    let said = checked(&pipeline);
    assert!(
        said.contains("2 step(s) group by a key")
            && said.contains(
                "repartition topics 'spate.wc.wc.repartition', 'spate.wc.wc.repartition-2' \
                 (created with as many partitions as the input has"
            ),
        "{said}"
    );
    let mut rng = support::chaos::Rng(5);
    let mut expected = Counts::new();
    let members = kill_one_and_join_one(dir.path(), &pipeline, 3 * PARTITIONS as usize, 2, || {
        produce_lines(&broker, &mut rng, &mut expected);
    });
    // Per batch: each word's count, from the groups; the tasks that grouped it.
    let counted = || -> BTreeMap<u64, Groups> {
        let mut batches: BTreeMap<u64, Groups> = BTreeMap::new();
        for ((time, task), text) in task_texts(&out) {
            for line in text.lines().filter(|l| !l.is_empty()) {
                let (count, words) = line
                    .strip_prefix('(')
                    .and_then(|l| l.strip_suffix("])"))
                    .and_then(|l| l.split_once(",["))
                    .unwrap_or_else(|| panic!("not a group: {line}"));
                let count: i64 = count.parse().unwrap();
                for word in words.split(", ") {
                    let seen = batches.entry(time).or_default();
                    seen.entry(word.to_owned())
                        .or_default()
                        .push((count, task.clone()));
                }
            }
        }
        batches
    };
    let totals = |batches: &BTreeMap<u64, Groups>| -> Counts {
        let mut sum = Counts::new();
        for words in batches.values() {
            for (word, counts) in words {
                *sum.entry(word.clone()).or_default() += counts.iter().map(|(c, _)| c).sum::<i64>();
            }
        }
        sum
    };
    let (done, ended, logs) = stop_when(dir.path(), &broker, members, || {
        totals(&counted()) == expected
    });
    let batches = counted();
    assert!(
        done,
        "the groups differ from what was produced: {}\n{logs}",
        support::chaos::difference(&totals(&batches), &expected)
    );
    for output in &ended {
        assert!(output.status.success(), "{logs}");
    }
    for (time, words) in &batches {
        for (word, counts) in words {
            let [(count, task)] = &counts[..] else {
                panic!("batch {time}: '{word}' in more than one group: {counts:?}");
            };
            // Grouped by the task of its count's partition (the i64 as Kafka writes it).
            let partition = java_partition(&count.to_be_bytes(), PARTITIONS);
            assert_eq!(
                task,
                &format!("spate.wc.wc.repartition-2-{partition}"),
                "batch {time}: count {count} grouped by another task"
            );
        }
    }
    assert_eq!(
        totals(&batches),
        expected,
        "a batch was written again after the stop"
    );
    let said = reset_done(&pipeline);
    assert!(
        said.contains("deleted the repartition topic 'spate.wc.wc.repartition'")
            && said.contains("deleted the repartition topic 'spate.wc.wc.repartition-2'")
            && said.contains(&format!(
                "moved the checkpoints of {} task(s)",
                3 * PARTITIONS
            )),
        "{said}"
    );
}

/// The issue's job: three members run a word count (flat-map, then reduce-by-key and
/// update-state-by-key behind the repartition topic) from an 8-partition topic to a Kafka
/// output; one is SIGKILLed mid-stream and the other two take its tasks, then a fourth joins.
/// Every reduce task's output of every batch equals what a single process gives for the same
/// batches (the running totals of the batches the map tasks committed up to it), and the
/// totals equal the input's.
#[test]
fn a_stateful_word_count_to_kafka_survives_a_kill_and_a_join_batch_for_batch() {
    const INPUT_PARTITIONS: i32 = 8;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic("lines", INPUT_PARTITIONS);
    broker.create_topic("counts", 4);
    let outputs = format!(
        "[[outputs]]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"counts\"\n\
         delivery = \"exactly-once\"\n",
        broker.bootstrap()
    );
    let pipeline = scale_out_pipeline(
        dir.path(),
        &broker,
        "lines",
        "",
        "[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n\n\
         [[steps]]\nop = \"reduce-by-key\"\nplugin = \"sum\"\n\n\
         [[steps]]\nop = \"update-state-by-key\"\nplugin = \"running-sum\"",
        &outputs,
    );
    let said = checked(&pipeline);
    assert!(
        said.contains("repartition topic 'spate.wc.wc.repartition'"),
        "{said}"
    );
    let mut rng = support::chaos::Rng(8);
    let mut expected = Counts::new();
    // 8 map tasks and 8 reduce tasks among a, b and c; then b, c and d.
    let members = kill_one_and_join_one(
        dir.path(),
        &pipeline,
        2 * INPUT_PARTITIONS as usize,
        3,
        || {
            produce_lines(&broker, &mut rng, &mut expected);
        },
    );
    // Done when the reduce tasks' latest states add up to the input's counts.
    let latest_states = || -> Counts {
        let mut sum = Counts::new();
        for per_batch in last_attempts_by_task(&broker.read_all("counts")).values() {
            if let Some((_, state)) = per_batch.last_key_value() {
                add(&mut sum, state);
            }
        }
        sum
    };
    let (done, ended, logs) = stop_when(dir.path(), &broker, members, || {
        std::thread::sleep(Duration::from_millis(500));
        latest_states() == expected
    });
    assert!(
        done,
        "the states differ from the input's counts: {}\n{logs}",
        support::chaos::difference(&latest_states(), &expected),
    );
    for output in &ended {
        assert!(output.status.success(), "{logs}");
    }

    // What each map task committed per batch and reduce partition, through the repartition
    // topic: the batches a single process would have run.
    let partials = committed_partials(&broker.read_all("spate.wc.wc.repartition"));
    let mut mapped = Counts::new();
    for counts in partials.values() {
        add(&mut mapped, counts);
    }
    assert!(
        mapped == expected,
        "the map tasks' batches, added up: {}",
        support::chaos::difference(&mapped, &expected)
    );
    let outputs = last_attempts_by_task(&broker.read_all("counts"));
    assert_eq!(
        outputs.len(),
        INPUT_PARTITIONS as usize,
        "{:?}",
        outputs.keys()
    );
    for (task, per_batch) in &outputs {
        let partition: i32 = task
            .strip_prefix("spate.wc.wc.repartition-")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("output task {task}"));
        let times: Vec<u64> = per_batch.keys().copied().collect();
        let first_input = partials
            .range((partition, 0)..=(partition, u64::MAX))
            .find(|(_, counts)| !counts.is_empty())
            .map(|((_, time), _)| *time);
        // Its first output is at the map tasks' first batch with records for it: a reduce
        // task starting behind them does not fold their earlier batches into its first.
        assert_eq!(times.first().copied(), first_input, "{task}");
        for pair in times.windows(2) {
            assert_eq!(
                pair[1] - pair[0],
                1000,
                "{task}: batches missing in {times:?}"
            );
        }
        for (time, state) in per_batch {
            let mut reference = Counts::new();
            for ((_, _), counts) in partials.range((partition, 0)..=(partition, *time)) {
                add(&mut reference, counts);
            }
            assert!(
                *state == reference,
                "{task}, batch {time}: {}",
                support::chaos::difference(state, &reference)
            );
            for word in state.keys() {
                assert_eq!(java_partition(word.as_bytes(), INPUT_PARTITIONS), partition);
            }
        }
    }
}

/// Per writing task and batch time, the counts its last attempt wrote: what a read_committed
/// consumer sees (the test broker shows aborted transactions' records too; tests/kafka.rs).
fn last_attempts_by_task(records: &[Record]) -> BTreeMap<String, BTreeMap<u64, Counts>> {
    let mut attempts: BTreeMap<(String, u64), BTreeMap<u128, Vec<&Record>>> = BTreeMap::new();
    for r in records {
        let time: u64 = r.headers["spate-batch-time"].parse().unwrap();
        // Attempts are `<pid>-<start time in µs>`: the latest start is the last attempt.
        let started: u128 = r.headers["spate-attempt"]
            .split_once('-')
            .and_then(|(_, t)| t.parse().ok())
            .expect("an attempt");
        attempts
            .entry((r.headers["spate-task"].clone(), time))
            .or_default()
            .entry(started)
            .or_default()
            .push(r);
    }
    let mut outputs: BTreeMap<String, BTreeMap<u64, Counts>> = BTreeMap::new();
    for ((task, time), tries) in attempts {
        let (_, last) = tries.into_iter().next_back().unwrap();
        outputs
            .entry(task)
            .or_default()
            .insert(time, counts_of(last));
    }
    outputs
}

/// Per repartition-topic partition and batch time, the counts the map tasks wrote there in
/// their attempts that ended the batch (every such attempt of a task must hold the same: a
/// replay writes what the first try did).
fn committed_partials(records: &[Record]) -> BTreeMap<(i32, u64), Counts> {
    /// One attempt of a writer at a batch in a partition: its records, and whether it ended.
    type Attempt<'a> = (Vec<&'a Record>, bool);
    // (partition, time, writer) -> attempt -> what it wrote
    let mut tries: BTreeMap<(i32, u64, String), BTreeMap<String, Attempt>> = BTreeMap::new();
    for r in records {
        let time: u64 = r.headers["spate-batch-time"].parse().unwrap();
        let attempt = tries
            .entry((r.partition, time, r.headers["spate-task"].clone()))
            .or_default()
            .entry(r.headers["spate-attempt"].clone())
            .or_default();
        match r.headers.contains_key("spate-end") {
            true => attempt.1 = true,
            false => attempt.0.push(r),
        }
    }
    let mut partials: BTreeMap<(i32, u64), Counts> = BTreeMap::new();
    for ((partition, time, writer), attempts) in tries {
        let ended: Vec<Counts> = attempts
            .values()
            .filter(|(_, ended)| *ended)
            .map(|(records, _)| counts_of(records.iter().copied()))
            .collect();
        let Some(first) = ended.first() else {
            continue;
        };
        assert!(
            ended.iter().all(|c| c == first),
            "partition {partition}, batch {time}: {writer}'s attempts differ"
        );
        add(partials.entry((partition, time)).or_default(), first);
    }
    partials
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
op = "count-by-value"

[[outputs]]
type = "print"
"#,
    );
    // The counts (word, n) are keyed: pairs cannot be the topic's keys.
    let said = refused(&pipeline);
    assert!(
        said.contains("steps[2].op") && said.contains("must be unkeyed"),
        "{said}"
    );
    let edit = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&pipeline).unwrap();
        std::fs::write(&pipeline, text.replace(from, to)).unwrap();
    };
    edit("checkpoint-dir = \"ck\"\n", "");
    let said = refused(&pipeline);
    assert!(
        said.contains("job.group") && said.contains("needs `checkpoint-dir`"),
        "{said}"
    );
    edit("[job]\n", "[job]\ncheckpoint-dir = \"ck\"\n");
    edit("type = \"print\"", "type = \"dashboard\"");
    let said = refused(&pipeline);
    assert!(
        said.contains("outputs[0].type") && said.contains("a dashboard shows one process's"),
        "{said}"
    );
    // Cut at a repartition topic (the count step gone), available-now is refused.
    edit("type = \"dashboard\"", "type = \"print\"");
    edit("[[steps]]\nop = \"count-by-value\"\n", "");
    edit("[job]\n", "[job]\ntrigger = \"available-now\"\n");
    let said = refused(&pipeline);
    assert!(
        said.contains("job.trigger") && said.contains("cut at a repartition topic"),
        "{said}"
    );
}

#[test]
fn an_available_now_run_across_members_reads_what_is_there_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, pipeline, out) = word_count_job(dir.path());
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replace("[job]\n", "[job]\ntrigger = \"available-now\"\n"),
    )
    .unwrap();
    let mut expected = produce_words(&broker, 1, 3000);
    // Two members share the input present when they start and end by themselves once it is
    // read; the second run reads only what came since (a task resumes from its checkpoints).
    for (run, members) in [(1, 2), (2, 1)] {
        let children: Vec<Child> = (0..members)
            .map(|m| member(&pipeline, &dir.path().join(format!("run{run}-{m}.log"))))
            .collect();
        for (m, child) in children.into_iter().enumerate() {
            let ended = wait(child, Duration::from_secs(120));
            let log = dir.path().join(format!("run{run}-{m}.log"));
            assert!(ended.status.success(), "{}", whole(&[&log]));
        }
        let outputs = task_outputs(&out);
        assert!(
            totals(&outputs) == expected,
            "run {run}: {}",
            support::chaos::difference(&totals(&outputs), &expected)
        );
        for ((time, task), counts) in &outputs {
            for word in counts.keys() {
                let partition = java_partition(word.as_bytes(), PARTITIONS);
                assert_eq!(
                    task,
                    &format!("words-{partition}"),
                    "batch {time}: '{word}'"
                );
            }
        }
        add(&mut expected, &produce_words(&broker, 2, 1000));
    }
}

/// What `spate check` says of `pipeline`, which it must refuse (exit 2).
fn refused(pipeline: &Path) -> String {
    let checked = run(
        &["check", pipeline.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let said = stderr(&checked);
    assert_eq!(checked.status.code(), Some(2), "{said}");
    said
}

/// Writes, as map tasks do, `writer`'s batch `time` into partition 0 of `topic`: its (word,
/// count) records, then its end-of-batch marker counting them.
fn write_batch(broker: &Broker, topic: &str, writer: &str, time: u64, counts: &[(&str, i64)]) {
    write_attempt(
        broker,
        topic,
        (writer, "1-1"),
        (time, None),
        counts,
        counts.len(),
    );
}

/// [`write_batch`] as `attempt` of `writer`, its marker naming the batch `previous` as the
/// writer's one before `time` (if some) and counting `counted` records (a torn attempt counts
/// more than it holds).
fn write_attempt(
    broker: &Broker,
    topic: &str,
    (writer, attempt): (&str, &str),
    (time, previous): (u64, Option<u64>),
    counts: &[(&str, i64)],
    counted: usize,
) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, Producer};
    let producer = broker.producer();
    let (time_text, counted) = (time.to_string(), counted.to_string());
    let previous = previous.map(|t| t.to_string());
    let headers = |end: bool| {
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "spate-batch-time",
                value: Some(time_text.as_str()),
            })
            .insert(Header {
                key: "spate-task",
                value: Some(writer),
            })
            .insert(Header {
                key: "spate-attempt",
                value: Some(attempt),
            });
        if end {
            headers = headers
                .insert(Header {
                    key: "spate-end",
                    value: Some(""),
                })
                .insert(Header {
                    key: "spate-records",
                    value: Some(counted.as_str()),
                });
            if let Some(previous) = &previous {
                headers = headers.insert(Header {
                    key: "spate-previous",
                    value: Some(previous.as_str()),
                });
            }
        }
        headers
    };
    for (word, count) in counts {
        let value = count.to_be_bytes();
        let record = BaseRecord::to(topic)
            .partition(0)
            .key(*word)
            .payload(&value[..])
            .headers(headers(false));
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    let marker: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic)
        .partition(0)
        .payload(&[][..])
        .headers(headers(true));
    producer.send(marker).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// In `dir`, the job of a reduce task reading partition 0 of the topic `shuffle` (ended by
/// `writers` writers), summing by word into text-files; returns the pipeline and the output
/// directory.
fn reduce_task_job(dir: &Path, broker: &Broker, writers: usize) -> (PathBuf, PathBuf) {
    let out = dir.join("out");
    let pipeline = pipeline(
        dir,
        &format!(
            r#"
[job]
name = "reduce"
batch-interval = "1s"
checkpoint-dir = "{checkpoints}"
checkpoint-interval = "1h"

[sources.shuffle]
type = "repartition"
bootstrap = "{bootstrap}"
topic = "shuffle"
partition = 0
writers = {writers}
key-type = "text"
value-type = "i64"

[[steps]]
op = "reduce-by-key"
plugin = "sum"

[[outputs]]
type = "text-files"
prefix = "{out}/counts"
suffix = "txt"
"#,
            checkpoints = dir.join("checkpoints").display(),
            bootstrap = broker.bootstrap(),
            out = out.display(),
        ),
    );
    (pipeline, out)
}

/// The job of [`reduce_task_job`] (`writers` writers) started on `broker`, its log in
/// `dir/run.log`; with a reader of that log.
fn start_reduce_task(
    dir: &Path,
    broker: &Broker,
    writers: usize,
) -> (Child, PathBuf, impl Fn() -> String) {
    let (pipeline, out) = reduce_task_job(dir, broker, writers);
    let log = dir.join("run.log");
    let job = spate()
        .args(["run", pipeline.to_str().unwrap(), "--no-ui"])
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (job, out, move || {
        std::fs::read_to_string(&log).unwrap_or_default()
    })
}

/// The grid batch time (1 s batches) `seconds` back.
fn batch_time_back(seconds: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    (now / 1000 - seconds) * 1000
}

/// A map task's attempt at a batch whose end marker counts more records than were read of it
/// (the test broker's fetch skipping records) is not taken: the partition is read again, and
/// while the records are not there the batch waits for a whole attempt of that writer, and
/// holds what that one wrote.
#[test]
fn a_torn_attempt_is_not_taken_and_the_batch_waits_for_a_whole_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic("shuffle", 1);
    let first = batch_time_back(3);
    // Counts three records; one of them never shows.
    let (a, b, c) = (("a", 1), ("b", 1), ("c", 1));
    let w0 = |attempt| ("w0", attempt);
    write_attempt(&broker, "shuffle", w0("1-1"), (first, None), &[a, b], 3);
    let (job, out, said) = start_reduce_task(dir.path(), &broker, 1);
    let torn = format!(
        "writer w0: attempt 1-1 ended batch {first} with 3 records, of which 2 were read: not \
         taken; reading the partition again from offset 0"
    );
    assert!(
        eventually(Duration::from_secs(30), || said().contains(
            "not taken; the batch waits for a whole attempt of that writer"
        )),
        "{}",
        said()
    );
    assert_eq!(said().matches(&torn).count(), 3, "{}", said());
    // The writer's whole attempt at the batch, then its next batches.
    write_attempt(&broker, "shuffle", w0("2-1"), (first, None), &[a, b, c], 3);
    let second = (first + 1000, Some(first));
    write_attempt(&broker, "shuffle", w0("2-1"), second, &[c], 1);
    let third = (first + 2000, Some(first + 1000));
    write_attempt(&broker, "shuffle", w0("2-1"), third, &[a], 1);
    let written = || -> BTreeMap<u64, Counts> {
        text_outputs(&out, "counts")
            .into_iter()
            .filter(|(_, c)| !c.is_empty())
            .collect()
    };
    let done = eventually(Duration::from_secs(60), || written().len() >= 3);
    interrupt(&job);
    let ended = wait(job, Duration::from_secs(60));
    assert!(
        done && ended.status.success(),
        "{:?}\n{}",
        written(),
        said()
    );
    let counts = |pairs: &[(&str, i64)]| -> Counts {
        pairs.iter().map(|(w, n)| (w.to_string(), *n)).collect()
    };
    let expected = BTreeMap::from([
        (first, counts(&[a, b, c])),
        (first + 1000, counts(&[c])),
        (first + 2000, counts(&[a])),
    ]);
    assert_eq!(written(), expected, "{}", said());
}

/// A writer's batch whose marker names a batch before it that was never read here is not
/// handed over without it: the partition is read again, and when the batch before is not in
/// the topic the task fails naming the writer and both batches, rather than lose it. So
/// whether the task has handed a batch over before the gap (one writer) or not (a second
/// writer not heard from yet).
#[test]
fn a_writers_batch_missing_from_the_topic_fails_the_task_naming_it() {
    for writers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start();
        broker.create_topic("shuffle", 1);
        let first = batch_time_back(3);
        write_batch(&broker, "shuffle", "w0", first, &[("a", 1)]);
        // Its batch first + 1000 is not in the topic.
        let third = (first + 2000, Some(first + 1000));
        write_attempt(&broker, "shuffle", ("w0", "1-1"), third, &[("b", 1)], 1);
        let (job, out, said) = start_reduce_task(dir.path(), &broker, writers);
        let ended = wait(job, Duration::from_secs(60));
        let said = said();
        assert!(!ended.status.success(), "{writers} writers: {said}");
        let gap = format!(
            "writer w0: its batch {} follows its batch {}, which was not read here",
            first + 2000,
            first + 1000
        );
        assert!(
            said.contains(&format!(
                "{gap}, still after reading the partition again 3 times: the writer's records \
                 are not in the topic"
            )),
            "{writers} writers: {said}"
        );
        let reads_again = format!("{gap}; reading the partition again");
        assert_eq!(
            said.matches(&reads_again).count(),
            3,
            "{writers} writers: {said}"
        );
        // The batch after the gap was not handed over.
        let written = text_outputs(&out, "counts");
        assert!(!written.contains_key(&(first + 2000)), "{written:?}");
    }
}

/// A reduce task that starts fresh while its writers (map tasks) are batches ahead of it runs
/// each of their batches as a batch of its own, at the writers' batch times, as a single
/// process would have: none is folded into its first batch. Killed before its first regular
/// checkpoint and started again, it recovers them from its batch log and goes on.
#[test]
fn a_reduce_task_starting_behind_its_writers_runs_their_batches_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic("shuffle", 1);
    let first = batch_time_back(6);
    // `w1` starts one batch after `w0` (so has nothing in the first).
    write_batch(&broker, "shuffle", "w0", first, &[("a", 1)]);
    write_batch(&broker, "shuffle", "w0", first + 1000, &[("a", 2)]);
    write_batch(&broker, "shuffle", "w1", first + 1000, &[("b", 10)]);
    write_batch(
        &broker,
        "shuffle",
        "w0",
        first + 2000,
        &[("a", 3), ("c", 1)],
    );
    write_batch(&broker, "shuffle", "w1", first + 2000, &[("b", 20)]);
    let (pipeline, out) = reduce_task_job(dir.path(), &broker, 2);
    let counts = |pairs: &[(&str, i64)]| -> Counts {
        pairs.iter().map(|(w, n)| (w.to_string(), *n)).collect()
    };
    let mut expected = BTreeMap::from([
        (first, counts(&[("a", 1)])),
        (first + 1000, counts(&[("a", 2), ("b", 10)])),
        (first + 2000, counts(&[("a", 3), ("b", 20), ("c", 1)])),
    ]);
    let written = || -> BTreeMap<u64, Counts> {
        text_outputs(&out, "counts")
            .into_iter()
            .filter(|(_, c)| !c.is_empty())
            .collect()
    };
    let log = dir.path().join("run.log");
    let start = || {
        spate()
            .args(["run", pipeline.to_str().unwrap(), "--no-ui"])
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut job = start();
    let done = eventually(Duration::from_secs(60), || written().len() >= 3);
    job.kill().unwrap();
    job.wait().unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(done, "{:?}\n{said}", written());
    assert_eq!(written(), expected, "{said}");

    // Killed before any checkpoint but the first: the batch log has the batches.
    let later = first + 5000;
    write_batch(&broker, "shuffle", "w0", later, &[("a", 5)]);
    write_batch(&broker, "shuffle", "w1", later, &[]);
    expected.insert(later, counts(&[("a", 5)]));
    let mut job = start();
    let done = eventually(Duration::from_secs(60), || written().len() >= 4);
    interrupt(&job);
    let ended = job.wait().unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(done && ended.success(), "{:?}\n{said}", written());
    assert!(said.contains("recovered job 'reduce'"), "{said}");
    assert_eq!(written(), expected, "{said}");
}
