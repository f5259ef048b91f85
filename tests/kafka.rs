//! Kafka in and out, end to end, against a real Kafka-protocol broker (tansu, installed by
//! `scripts/install-kafka-broker.sh`, started per test on a free 127.0.0.1 port with an empty
//! store): word counts from a topic to a topic, exactly-once across SIGKILLs, the errors a user
//! meets (unknown topic, unreachable broker, bad records), and what `spate check` shows.
//!
//! The test broker does not honour `isolation.level=read_committed` (records of aborted
//! transactions are returned to readers; ../shared/ECOSYSTEM.md). Where a test reads Spate's
//! transactional output it therefore keeps, for each batch time, only the records of the last
//! attempt (`spate-attempt` header), as a consumer of such a broker must; with a real Kafka
//! cluster, read_committed does this. What the broker does guarantee is checked directly: the
//! batch marker committed in each transaction, and that a replayed batch is not written again.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::chaos::*;
use support::kafka::{Broker, Record, counts_of, java_murmur2, java_partition};
use support::*;

/// The records of each batch's last attempt, by batch time: what a read_committed consumer
/// sees of a transactional output whose replays were fenced.
fn last_attempts(records: &[Record]) -> BTreeMap<u64, Vec<Record>> {
    let mut by_batch: BTreeMap<u64, BTreeMap<String, Vec<Record>>> = BTreeMap::new();
    for r in records {
        let time: u64 = r.headers["spate-batch-time"].parse().unwrap();
        assert_eq!(r.headers["spate-task"], "0");
        by_batch
            .entry(time)
            .or_default()
            .entry(r.headers["spate-attempt"].clone())
            .or_default()
            .push(r.clone());
    }
    by_batch
        .into_iter()
        .map(|(time, attempts)| {
            // Attempts are `<pid>-<start time in µs>`: the latest start is the last attempt.
            let last = attempts
                .into_iter()
                .max_by_key(|(a, _)| a.split_once('-').unwrap().1.parse::<u128>().unwrap())
                .unwrap();
            (time, last.1)
        })
        .collect()
}

fn word_count_pipeline(bootstrap: &str, extra_source: &str, outputs: &str) -> String {
    format!(
        r#"
[job]
batch-interval = "200ms"
trigger = "available-now"

[sources.lines]
type = "kafka"
bootstrap = "{bootstrap}"
topics = ["lines"]
starting-offsets = "earliest"
{extra_source}

[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
op = "reduce-by-key"
plugin = "sum"

{outputs}
"#
    )
}

#[test]
fn murmur2_is_javas() {
    // Kafka's own test vectors (clients' UtilsTest) for the default partitioner's hash.
    assert_eq!(java_murmur2(b"21") as i32, -973932308);
    assert_eq!(java_murmur2(b"foobar") as i32, -790332482);
    assert_eq!(java_murmur2(b"a-little-bit-long-string") as i32, -985981536);
    assert_eq!(
        java_murmur2(b"a-little-bit-longer-string") as i32,
        -1486304829
    );
    assert_eq!(
        java_murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
        -58897971
    );
    assert_eq!(java_murmur2(b"abc") as i32, 479470107);
}

#[test]
fn a_word_count_reads_a_topic_and_writes_a_topic_partitioned_as_kafka_clients_do() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    broker.create_topic("counts", 3);
    let text = lines(&mut Rng(7), 3000);
    let records: Vec<(Option<&[u8]>, &[u8])> = text.lines().map(|l| (None, l.as_bytes())).collect();
    broker.produce("lines", &records);
    let dir = tempfile::tempdir().unwrap();
    let outputs = format!(
        "[[outputs]]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"counts\"\n",
        broker.bootstrap()
    );
    let pipeline = pipeline(
        dir.path(),
        &word_count_pipeline(&broker.bootstrap(), "", &outputs),
    );
    // Small batches, 10 s apart: the topic takes several, dated well ahead of the clock.
    let args = [
        "run",
        pipeline.to_str().unwrap(),
        "--set",
        "job.batch-interval=10s",
        "--set",
        "job.max-block-bytes=1 KiB",
        "--set",
        "job.max-batch-bytes=4 KiB",
    ];
    let output = run(&args, Duration::from_secs(120));
    assert!(output.status.success(), "{}", stderr(&output));
    let expected = reference_counts(&text, false, false);
    let written = broker.read_all("counts");
    assert_eq!(counts_of(&written), expected, "{}", stderr(&output));
    for r in &written {
        let key = r.key.as_deref().unwrap();
        assert_eq!(r.partition, java_partition(key, 3), "key {key:?}");
        assert!(r.headers.contains_key("spate-batch-time"));
    }

    // The same job again at once, with more lines (it reads the topic from its start). An
    // available-now run dates its batches one interval apart however fast it goes, so the
    // output's marker may be ahead of the clock: the new batches must come after it, none
    // skipped as committed before.
    let batch_time =
        |r: &support::kafka::Record| -> u64 { r.headers["spate-batch-time"].parse().unwrap() };
    let first_run_last = written.iter().map(batch_time).max().unwrap();
    let more = lines(&mut Rng(8), 1000);
    let records: Vec<(Option<&[u8]>, &[u8])> = more.lines().map(|l| (None, l.as_bytes())).collect();
    broker.produce("lines", &records);
    let log = run_again_after(&args, first_run_last);
    let written = broker.read_all("counts");
    let (before, after): (Vec<_>, Vec<_>) = written
        .into_iter()
        .partition(|r| batch_time(r) <= first_run_last);
    assert_eq!(counts_of(&before), expected);
    let all = format!("{text}{more}");
    assert_eq!(
        counts_of(&after),
        reference_counts(&all, false, false),
        "{log}"
    );
}

/// The word count of the fault tests: per-batch counts to a Kafka topic (exactly-once) and to
/// text files, running totals (map-with-state) to text files, with checkpoints.
fn counting_pipeline(dir: &Path, bootstrap: &str) -> PathBuf {
    let (out, checkpoints) = (dir.join("out"), dir.join("ck"));
    let text_output = |from: &str| {
        format!(
            "[[outputs]]\nfrom = \"{from}\"\ntype = \"text-files\"\nprefix = \"{}/{from}\"\n\
             suffix = \"txt\"\n",
            out.display()
        )
    };
    pipeline(
        dir,
        &format!(
            r#"
[job]
batch-interval = "200ms"
block-interval = "100ms"
checkpoint-dir = "{}"
checkpoint-interval = "600ms"

[sources.lines]
type = "kafka"
bootstrap = "{bootstrap}"
topics = ["lines"]
starting-offsets = "earliest"
group = "counting"

[[steps]]
name = "words"
op = "flat-map"
plugin = "tokenize"

[[steps]]
name = "counts"
op = "reduce-by-key"
plugin = "sum"
from = "words"

[[steps]]
name = "totals"
op = "map-with-state"
plugin = "running-sum"
from = "words"

[[outputs]]
from = "counts"
type = "kafka"
bootstrap = "{bootstrap}"
topic = "counts"
delivery = "exactly-once"

{}
{}
"#,
            checkpoints.display(),
            text_output("counts"),
            text_output("totals"),
        ),
    )
}

/// Produces `chunks` of lines to topic `lines`, one every 200 ms, once the job has started
/// (its checkpoint directory exists).
fn feed(broker: &Broker, dir: &Path, chunks: &[String]) -> std::thread::JoinHandle<()> {
    let (chunks, address, started) = (chunks.to_vec(), broker.bootstrap(), dir.join("ck"));
    std::thread::spawn(move || {
        assert!(eventually(Duration::from_secs(30), || started.exists()));
        let producer = Broker::producer_for(&address);
        for chunk in &chunks {
            let records: Vec<(Option<&[u8]>, &[u8])> =
                chunk.lines().map(|l| (None, l.as_bytes())).collect();
            Broker::produce_with(&producer, "lines", &records);
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// Checks [`counting_pipeline`]'s outputs against the reference: per-batch counts in text
/// files and in Kafka (the last attempt of each batch) batch by batch, and the totals.
fn verify_counts(broker: &Broker, out: &Path, expected: &Counts) {
    let per_batch = text_outputs(out, "counts");
    let added_up = total(&per_batch);
    assert!(
        &added_up == expected,
        "text-files counts, added up: {}",
        difference(&added_up, expected)
    );
    let mut last_totals = Counts::new();
    for batch in text_outputs(out, "totals").values() {
        last_totals.extend(batch.iter().map(|(w, n)| (w.clone(), *n)));
    }
    assert!(
        &last_totals == expected,
        "running totals: {}",
        difference(&last_totals, expected)
    );
    let committed = last_attempts(&broker.read_all("counts"));
    let kafka_total = counts_of(committed.values().flatten());
    assert!(
        &kafka_total == expected,
        "the Kafka output's batches, added up: {}",
        difference(&kafka_total, expected)
    );
    for (time, records) in &committed {
        assert_eq!(
            counts_of(records),
            per_batch.get(time).cloned().unwrap_or_default(),
            "batch {time} in Kafka and in text files"
        );
    }
    let nonempty = per_batch.values().filter(|c| !c.is_empty()).count();
    assert_eq!(
        committed.len(),
        nonempty,
        "every batch with counts is in Kafka once"
    );
}

#[test]
fn kafka_to_kafka_text_files_and_state_killed_again_and_again_is_exact() {
    let broker = Broker::start();
    broker.create_topic("lines", 8);
    broker.create_topic("counts", 4);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let pipeline = counting_pipeline(dir.path(), &broker.bootstrap());
    let mut rng = Rng(0x0ca_fca);
    let chunks: Vec<String> = (0..50).map(|_| lines(&mut rng, 300)).collect();
    let expected = reference_counts(&chunks.concat(), false, false);
    let feeder = feed(&broker, dir.path(), &chunks);
    let logs = chaos(dir.path(), &pipeline, &mut rng, || {
        feeder.is_finished() && total(&text_outputs(&out, "counts")) == expected
    });
    verify_counts(&broker, &out, &expected);
    let recoveries = logs.matches("recovered job").count();
    let skipped = logs.matches("was committed before the restart").count();
    // A run killed before the job's first checkpoint (connecting to the broker comes first)
    // leaves nothing to recover: the next starts afresh from the same starting offsets.
    assert!(
        recoveries * 4 >= kills() * 3 && skipped > 0,
        "{recoveries} recoveries, {skipped} replayed batches found committed: the kills did not \
         test the transactional output's recovery"
    );
    // The source's offsets went to its group in the Kafka output's transactions (the source
    // commits nothing itself then), and the group holds the end of every partition.
    assert!(
        logs.contains(
            "each batch's transaction also commits the input offsets of group 'counting'"
        ),
        "{logs}"
    );
    assert_eq!(
        broker.committed_offsets("counting", "lines"),
        broker.partition_ends("lines")
    );
}

#[test]
fn the_broker_away_mid_run_delays_the_job_and_loses_or_doubles_nothing() {
    let broker = Broker::start_behind_proxy();
    broker.create_topic("lines", 4);
    broker.create_topic("counts", 2);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let pipeline = counting_pipeline(dir.path(), &broker.bootstrap());
    let mut rng = Rng(0xb0_0b5);
    let chunks: Vec<String> = (0..30).map(|_| lines(&mut rng, 200)).collect();
    let expected = reference_counts(&chunks.concat(), false, false);
    let log = dir.path().join("run.log");
    let child = start(&pipeline, &log);
    let feeder = feed(&broker, dir.path(), &chunks);
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        broker.cut_for(Duration::from_secs(3));
    }
    let done = || feeder.is_finished() && total(&text_outputs(&out, "counts")) == expected;
    eventually(Duration::from_secs(60), done);
    interrupt(&child);
    let output = wait(child, Duration::from_secs(60));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(output.status.success(), "{log}");
    verify_counts(&broker, &out, &expected);
}

/// A free port nothing listens on.
fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("127.0.0.1:{port}")
}

#[test]
fn kafka_mistakes_are_reported_naming_the_topic_the_broker_or_the_record() {
    let broker = Broker::start();
    broker.create_topic("lines", 2);
    broker.create_topic("numbers", 1);
    broker.produce("numbers", &[(None, &7i64.to_be_bytes()), (None, b"42")]);
    let dir = tempfile::tempdir().unwrap();
    let print = "[[outputs]]\ntype = \"print\"\n";
    let run_pipeline = |text: &str| {
        let path = pipeline(dir.path(), text);
        run(&["run", path.to_str().unwrap()], Duration::from_secs(60))
    };
    let failed = |output: &std::process::Output, needle: &str| {
        let log = stderr(output);
        assert!(!output.status.success(), "should fail: {log}");
        assert!(log.contains(needle), "expected {needle:?} in:\n{log}");
    };

    // A source topic that does not exist.
    let source = |bootstrap: &str, topic: &str, extra: &str| {
        format!(
            "[job]\ntrigger = \"available-now\"\n\n[sources.in]\ntype = \"kafka\"\n\
             bootstrap = \"{bootstrap}\"\ntopics = [\"{topic}\"]\nstarting-offsets = \
             \"earliest\"\n{extra}\n"
        )
    };
    let output = run_pipeline(&format!(
        "{}{print}",
        source(&broker.bootstrap(), "nope", "")
    ));
    failed(&output, "topic 'nope' does not exist at");

    // No broker at the address: a bounded wait, then a clear error.
    let dead = dead_address();
    let output = run_pipeline(&format!(
        "{}{print}",
        source(&dead, "lines", "connect-timeout = \"2s\"")
    ));
    failed(
        &output,
        &format!("cannot reach the Kafka brokers at {dead} within 2s"),
    );

    // An output topic that does not exist.
    let output = run_pipeline(&format!(
        "{}[[outputs]]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"missing\"\n",
        source(&broker.bootstrap(), "lines", ""),
        broker.bootstrap()
    ));
    failed(&output, "topic 'missing' does not exist at");

    // Two exactly-once outputs to one topic would share a transactional id and fence each
    // other: the second is refused.
    let to_lines = format!(
        "[[outputs]]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"lines\"\n",
        broker.bootstrap()
    );
    let output = run_pipeline(&format!(
        "{}{to_lines}{to_lines}",
        source(&broker.bootstrap(), "numbers", "")
    ));
    failed(&output, "give one of them its own `transactional-id`");

    // `partition`: every record into that one partition, which the topic must have.
    broker.create_topic("fixed", 3);
    let into = |partition: i32| {
        format!(
            "[[outputs]]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"fixed\"\n\
             partition = {partition}\n",
            broker.bootstrap()
        )
    };
    let numbers_in = source(&broker.bootstrap(), "numbers", "");
    let output = run_pipeline(&format!("{numbers_in}{}", into(2)));
    assert!(output.status.success(), "{}", stderr(&output));
    let written = broker.read_all("fixed");
    assert_eq!(written.len(), 2, "{written:?}");
    assert!(written.iter().all(|r| r.partition == 2), "{written:?}");
    let output = run_pipeline(&format!("{numbers_in}{}", into(3)));
    failed(&output, "partition 3: topic 'fixed' has 3 partition(s)");
    let output = run_pipeline(&format!("{numbers_in}{}", into(-1)));
    failed(&output, "a partition is 0 or more, not -1");

    // A record that is not an 8-byte integer: named by partition and offset, or skipped.
    let numbers = |policy: &str| {
        format!(
            "{}{print}",
            source(
                &broker.bootstrap(),
                "numbers",
                &format!("value-type = \"i64\"\non-bad-record = \"{policy}\"")
            )
        )
    };
    let output = run_pipeline(&numbers("fail"));
    failed(
        &output,
        "bad record at partition numbers/0 offset 1: value: 2 bytes, not the 8 of a big-endian i64",
    );
    let output = run_pipeline(&numbers("skip"));
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("\n7\n"), "{printed}");
    // A line of its own: the batch time printed above may hold "42" too.
    assert!(!printed.lines().any(|l| l == "42"), "{printed}");
    assert!(stderr(&output).contains("skipped partition numbers/0 offset 1"));

    // A client setting Spate owns is refused at its line.
    let output = run_pipeline(&format!(
        "{}{print}",
        source(
            &broker.bootstrap(),
            "lines",
            "[sources.in.client]\n\"enable.auto.commit\" = true"
        )
    ));
    failed(
        &output,
        "client setting \"enable.auto.commit\" is set by Spate",
    );
}

#[test]
fn check_shows_topics_partitions_starting_offsets_and_guarantees() {
    let broker = Broker::start();
    broker.create_topic("lines", 3);
    broker.create_topic("counts", 2);
    let dir = tempfile::tempdir().unwrap();
    let outputs = format!(
        "[[outputs]]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"counts\"\n",
        broker.bootstrap()
    );
    let path = pipeline(
        dir.path(),
        &word_count_pipeline(
            &broker.bootstrap(),
            "max-records-per-partition = 1000",
            &outputs,
        ),
    );
    let output = run(&["check", path.to_str().unwrap()], Duration::from_secs(60));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    for needle in [
        "kafka topics [\"lines\"]",
        "partitions lines/0 lines/1 lines/2 (3)",
        "new job starts at earliest",
        "at most 1000 records",
        "exactly-once input with a checkpoint-dir",
        "to topic 'counts'",
        "exactly-once: one transaction per batch",
    ] {
        assert!(printed.contains(needle), "{needle:?} not in:\n{printed}");
    }
    // --connect reaches the brokers: the output's topic and its partitions; a missing topic
    // is an error naming it.
    let output = run(
        &["check", "--connect", path.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        printed.contains(&format!(
            "output 0: topic 'counts' at {}: 2 partitions",
            broker.bootstrap()
        )),
        "{printed}"
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("topic = \"counts\"", "topic = \"nowhere\"");
    std::fs::write(&path, text).unwrap();
    let output = run(
        &["check", "--connect", path.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("topic 'nowhere' does not exist"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn record_timestamps_are_event_times_and_keys_a_key_column() {
    let broker = Broker::start();
    broker.create_topic("clicks", 2);
    // Minute 0 and minute 1 of 2026-12-01, in ms; keys are users, values pages.
    let base: i64 = 1_796_083_200_000;
    let producer = broker.producer();
    let clicks = [
        ("ann", "home", base + 1_000),
        ("bob", "home", base + 2_000),
        ("ann", "cart", base + 59_000),
        ("ann", "home", base + 61_000),
        ("bob", "pay", base + 90_000),
    ];
    for (user, page, time) in clicks {
        let record = rdkafka::producer::BaseRecord::to("clicks")
            .key(user)
            .payload(page)
            .timestamp(time);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(
        dir.path(),
        &format!(
            r#"
[job]
trigger = "available-now"

[sources.clicks]
type = "kafka"
bootstrap = "{}"
topics = ["clicks"]
starting-offsets = "earliest"
key-type = "text"

[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
op = "event-time-window"
plugin = "sum"
length = "1m"

[[outputs]]
type = "print"
num = 100

[[outputs]]
type = "print"
from = "clicks"
num = 100
"#,
            broker.bootstrap()
        ),
    );
    let output = run(&["run", path.to_str().unwrap()], Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    let minute = |m: i64| base + m * 60_000;
    // Pages per minute of event time (tokenize reads values), and the source's (key, value).
    for expected in [
        format!("(({},home),2)", minute(0)),
        format!("(({},cart),1)", minute(0)),
        format!("(({},home),1)", minute(1)),
        format!("(({},pay),1)", minute(1)),
        "(ann,cart)".to_owned(),
        "(bob,pay)".to_owned(),
    ] {
        assert!(printed.contains(&expected), "{expected} not in:\n{printed}");
    }
}

#[test]
fn a_per_batch_limit_spreads_a_backlog_over_batches_and_at_least_once_copies_it_whole() {
    let broker = Broker::start();
    broker.create_topic("backlog", 1);
    broker.create_topic("copy", 2);
    let values: Vec<String> = (0..1000).map(|i| format!("record {i}")).collect();
    let records: Vec<(Option<&[u8]>, &[u8])> =
        values.iter().map(|v| (None, v.as_bytes())).collect();
    broker.produce("backlog", &records);
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(
        dir.path(),
        &format!(
            r#"
[job]
batch-interval = "200ms"
block-interval = "100ms"

[sources.in]
type = "kafka"
bootstrap = "{b}"
topics = ["backlog"]
starting-offsets = "earliest"
max-records-per-partition = 100

[[outputs]]
type = "kafka"
bootstrap = "{b}"
topic = "copy"
delivery = "at-least-once"
"#,
            b = broker.bootstrap()
        ),
    );
    let output = run(
        &["run", path.to_str().unwrap(), "--max-batches", "25"],
        Duration::from_secs(60),
    );
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    let per_batch: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split(" ms: ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .filter(|n| *n > 0)
        .collect();
    assert_eq!(per_batch.iter().sum::<u64>(), 1000, "{log}");
    // 100 records per partition and interval: the backlog takes ten intervals, never one.
    // (A record read just before an interval ends can land in the next batch: at most 200.)
    assert!(per_batch.len() >= 9, "{per_batch:?}");
    assert!(per_batch.iter().all(|n| *n <= 200), "{per_batch:?}");
    let mut copied: Vec<String> = broker
        .read_all("copy")
        .into_iter()
        .map(|r| {
            assert!(r.headers.contains_key("spate-batch-time"));
            String::from_utf8(r.value).unwrap()
        })
        .collect();
    copied.sort();
    let mut expected = values.clone();
    expected.sort();
    assert_eq!(copied, expected);
}

#[test]
fn an_offset_out_of_range_fails_naming_the_partition_or_resets_by_policy() {
    let broker = Broker::start();
    broker.create_topic("short", 1);
    let records: Vec<(Option<&[u8]>, &[u8])> = (0..10).map(|_| (None, &b"x"[..])).collect();
    broker.produce("short", &records);
    let dir = tempfile::tempdir().unwrap();
    let pipeline_with = |policy: &str| {
        pipeline(
            dir.path(),
            &format!(
                "[job]\ntrigger = \"available-now\"\n\n[sources.in]\ntype = \"kafka\"\n\
                 bootstrap = \"{}\"\ntopics = [\"short\"]\nstarting-offsets = {{ \"short/0\" = \
                 5000 }}\non-offset-out-of-range = \"{policy}\"\n\n[[steps]]\nop = \"count\"\n\n\
                 [[outputs]]\ntype = \"print\"\n",
                broker.bootstrap()
            ),
        )
    };
    let output = run(
        &["run", pipeline_with("fail").to_str().unwrap()],
        Duration::from_secs(60),
    );
    let log = stderr(&output);
    assert!(!output.status.success(), "{log}");
    assert!(
        log.contains("partition short/0: offset 5000 is out of range (the broker holds 0 to 10"),
        "{log}"
    );
    let output = run(
        &["run", pipeline_with("earliest").to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("\n10\n"));
}

#[test]
fn new_topics_of_a_pattern_and_their_partitions_are_read_while_the_job_runs() {
    // The test broker cannot add partitions to a topic (CreatePartitions is not supported):
    // new partitions are exercised through a new topic matching the source's pattern, which
    // the same discovery picks up. Deleting a topic a job reads is not tested: against this
    // broker it crashes librdkafka's metadata cache (docs/KAFKA.md, "The test broker").
    let broker = Broker::start();
    broker.create_topic("grow-a", 1);
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(
        dir.path(),
        &format!(
            r#"
[job]
batch-interval = "200ms"

[sources.in]
type = "kafka"
bootstrap = "{}"
topics = ["grow-*"]
starting-offsets = "earliest"
partition-discovery-interval = "200ms"

[[steps]]
op = "count"

[[outputs]]
type = "print"
"#,
            broker.bootstrap()
        ),
    );
    let log = dir.path().join("run.log");
    let child = spate()
        .args(["run", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(eventually(Duration::from_secs(20), || read()
        .contains("reading 1 partitions")));
    broker.create_topic("grow-b", 2);
    assert!(
        eventually(Duration::from_secs(20), || read()
            .contains("new partition grow-b/1")),
        "{}",
        read()
    );
    let producer = broker.producer();
    for (topic, partition) in [("grow-a", 0), ("grow-b", 0), ("grow-b", 1)] {
        for _ in 0..10 {
            let record = rdkafka::producer::BaseRecord::<(), _>::to(topic)
                .payload("x")
                .partition(partition);
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    let counted = || {
        read()
            .lines()
            .filter_map(|l| l.split(" ms: ").nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
            .sum::<usize>()
    };
    assert!(
        eventually(Duration::from_secs(20), || counted() == 30),
        "{}",
        read()
    );
    interrupt(&child);
    let output = wait(child, Duration::from_secs(30));
    assert!(output.status.success(), "{}", read());
}

#[test]
fn a_job_starts_at_a_time_or_where_its_group_left_off_and_lag_tools_see_its_commits() {
    let broker = Broker::start();
    broker.create_topic("events", 2);
    // Records carry the time they are produced (Kafka's default): a time between two waves
    // starts a job at the second. (The test broker looks times up by when it stored each
    // batch, a real one by record timestamps; with producer-set times the two agree.)
    let producer = broker.producer();
    let send = |wave: &str, n: usize| {
        for i in 0..n {
            let (key, value) = (i.to_string(), format!("{wave}{i}"));
            let record = rdkafka::producer::BaseRecord::to("events")
                .key(&key)
                .payload(&value);
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    };
    send("a", 20);
    std::thread::sleep(Duration::from_millis(500));
    let between = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(500));
    send("b", 20);
    let dir = tempfile::tempdir().unwrap();
    let run_from = |start: &str| {
        let path = pipeline(
            dir.path(),
            &format!(
                "[job]\ntrigger = \"available-now\"\n\n[sources.in]\ntype = \"kafka\"\n\
                 bootstrap = \"{}\"\ntopics = [\"events\"]\ngroup = \"lag-test\"\n\
                 starting-offsets = \"{start}\"\n\n[[outputs]]\ntype = \"print\"\nnum = 1000\n",
                broker.bootstrap()
            ),
        );
        let output = run(&["run", path.to_str().unwrap()], Duration::from_secs(60));
        assert!(output.status.success(), "{}", stderr(&output));
        let mut values: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !(l.is_empty() || l.starts_with('-') || l.starts_with("Time: ")))
            .map(str::to_owned)
            .collect();
        values.sort();
        values
    };
    let wave = |w: &str, n: usize| {
        let mut v: Vec<String> = (0..n).map(|i| format!("{w}{i}")).collect();
        v.sort();
        v
    };
    assert_eq!(run_from(&between), wave("b", 20));

    // The group holds the end of each partition, as a lag tool reads it (the source commits
    // them itself: its only output, print, commits no offsets).
    assert_eq!(
        broker.committed_offsets("lag-test", "events"),
        broker.partition_ends("events")
    );

    // A new run of the group from its committed offsets reads only what came since.
    send("c", 10);
    assert_eq!(run_from("committed"), wave("c", 10));
}

/// The UI's sources page (its JSON API) shows where each partition ends and how far behind the
/// job is: while a per-batch limit spreads a backlog over batches the lag is above 0 and the
/// end is the partition's record count; caught up, the lag is 0; `/metrics` has it too.
#[test]
fn the_sources_page_shows_each_partitions_end_and_the_lag() {
    let broker = Broker::start();
    broker.create_topic("backlog", 2);
    let values: Vec<String> = (0..1000).map(|i| format!("record {i}")).collect();
    let records: Vec<(Option<&[u8]>, &[u8])> = values
        .iter()
        .map(|v| (Some(&v.as_bytes()[v.len() - 1..]), v.as_bytes()))
        .collect();
    broker.produce("backlog", &records);
    // Keyed records go where Kafka's default partitioner puts them.
    let mut ends: BTreeMap<i32, u64> = BTreeMap::new();
    for (key, _) in &records {
        *ends.entry(java_partition(key.unwrap(), 2)).or_default() += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(
        dir.path(),
        &format!(
            r#"
[job]
name = "lagging"
batch-interval = "400ms"

[sources.in]
type = "kafka"
bootstrap = "{}"
topics = ["backlog"]
starting-offsets = "earliest"
max-records-per-partition = 40

[[outputs]]
type = "print"
num = 1
"#,
            broker.bootstrap()
        ),
    );
    let log = dir.path().join("run.log");
    let (child, base) = run_with_ui(&path, &log, std::process::Stdio::null());
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let source = || -> Option<serde_json::Value> {
        let body = http_get(&base, "/api/v1/jobs/lagging/sources")?;
        serde_json::from_str::<serde_json::Value>(&body).ok()?[0]
            .take()
            .into()
    };
    let lag_of = |s: &serde_json::Value| -> u64 {
        s["lag"]
            .as_object()
            .map_or(0, |l| l.values().map(|v| v.as_u64().unwrap()).sum())
    };
    let ends_of = |s: &serde_json::Value| -> BTreeMap<String, u64> {
        s["gauges"]["ends"]
            .as_object()
            .map(|e| {
                e.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let expected_ends: BTreeMap<String, u64> = ends
        .iter()
        .map(|(p, end)| (format!("backlog/{p}"), *end))
        .collect();
    let mut behind = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            let Some(s) = source() else { return false };
            if behind.is_none() && lag_of(&s) > 0 && ends_of(&s) == expected_ends {
                behind = Some(s.clone());
            }
            behind.is_some() && lag_of(&s) == 0 && s["records"] == 1000
        }),
        "never seen behind then caught up: {behind:?}\n{}",
        read()
    );
    let behind = behind.unwrap();
    // Behind: each part's lag is its end less its position.
    for (part, end) in &expected_ends {
        let at = behind["position"]["parts"][part].as_u64().unwrap_or(0);
        assert_eq!(behind["lag"][part].as_u64(), Some(end - at), "{behind}");
    }
    let caught_up = source().unwrap();
    for (part, end) in &expected_ends {
        assert_eq!(caught_up["position"]["parts"][part].as_u64(), Some(*end));
    }
    // Each partition is rated in records (offsets per second); each was read within the last
    // batches, so its rate is not 0.
    for (part, end) in &expected_ends {
        let rate = &caught_up["rates"][part];
        assert_eq!(rate["unit"], "records", "{caught_up}");
        let per_second = rate["per_second"].as_f64().unwrap();
        assert!(per_second > 0.0 || *end == 0, "{caught_up}");
    }
    let metrics = http_get(&base, "/metrics").unwrap();
    assert!(
        metrics.contains(
            "spate_source_lag_records{job=\"lagging\",tenant=\"lagging\",part=\"in:backlog/0\"} 0"
        ),
        "{metrics}"
    );
    interrupt(&child);
    let output = wait(child, Duration::from_secs(30));
    assert!(output.status.success(), "{}", read());
}
