//! The PostgreSQL output end to end, against a real server (a throwaway cluster on a free
//! 127.0.0.1 port) and the real `spate` binary: word counts accumulated exactly once while
//! `spate run` is killed again and again, upsert and append against references, the database
//! restarted mid-run, and every error a user can meet (server away, wrong password, missing
//! table, a column that does not fit, a constraint of the user's schema).

mod support;

use spate_test_artifacts::postgres::{PASSWORD, PASSWORD_VAR, Server, TLS_USER};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::chaos::*;
use support::*;

/// The `[[outputs]]` table of a postgres output into `table` with `extra` fields.
fn output(server: &Server, from: &str, table: &str, extra: &str) -> String {
    format!(
        "[[outputs]]\nfrom = \"{from}\"\ntype = \"postgres\"\nurl = \"{}\"\npassword = {{ file = \"{}\" }}\ntable = \"{table}\"\n{extra}\n",
        server.url(),
        server.dir().join("password").display()
    )
}

/// Word count from a directory: per-batch counts (`counts`) and running totals (`totals`).
fn word_count(input: &Path, job: &str, outputs: &str) -> String {
    format!(
        r#"
[job]
batch-interval = "200ms"
block-interval = "50ms"
{job}

[sources.files]
type = "directory"
path = "{}"
poll-interval = "50ms"

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

{outputs}
"#,
        input.display()
    )
}

/// The rows of `(text, bigint)` query `sql`, as counts.
fn counts_of(server: &Server, sql: &str) -> Counts {
    server
        .client()
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
        .collect()
}

/// The one value query `sql` returns.
fn value_of<T: postgres::types::FromSqlOwned>(server: &Server, sql: &str) -> T {
    server
        .client()
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Drops `files` into `input` one at a time (each renamed into place), `pause` apart, once
/// `ready` exists (files already there when a job first starts are not new to it).
fn feed(
    input: PathBuf,
    files: Vec<String>,
    ready: PathBuf,
    pause: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        assert!(eventually(Duration::from_secs(60), || ready.exists()));
        for (i, text) in files.iter().enumerate() {
            let staged = input.join(format!(".f{i:03}"));
            std::fs::write(&staged, text).unwrap();
            std::fs::rename(&staged, input.join(format!("f{i:03}.txt"))).unwrap();
            std::thread::sleep(pause);
        }
    })
}

/// A checkpointed word count accumulated into the table `word_counts`, over files fed while
/// it runs.
struct FedJob {
    pipeline: PathBuf,
    /// The counts of every file fed.
    expected: Counts,
    feeder: std::thread::JoinHandle<()>,
    rng: Rng,
}

/// [`FedJob`] with `job` and `columns` added to its job and output tables, fed `files.0`
/// files `files.1` apart.
fn fed_job(
    server: &Server,
    dir: &Path,
    job: &str,
    columns: &str,
    files: (usize, Duration),
    seed: u64,
) -> FedJob {
    let input = dir.join("in");
    std::fs::create_dir(&input).unwrap();
    let checkpoints = dir.join("ck");
    let text = word_count(
        &input,
        &format!("{job}checkpoint-dir = \"{}\"", checkpoints.display()),
        &output(
            server,
            "counts",
            "word_counts",
            &format!("mode = \"accumulate\"\ncreate-table = true\n{columns}"),
        ),
    );
    let mut rng = Rng(seed);
    let texts: Vec<String> = (0..files.0).map(|_| lines(&mut rng, 300)).collect();
    FedJob {
        pipeline: pipeline(dir, &text),
        expected: reference_counts(&texts.concat(), false, false),
        feeder: feed(input, texts, checkpoints, files.1),
        rng,
    }
}

#[test]
fn accumulated_word_counts_are_exact_while_spate_is_killed_again_and_again() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let FedJob {
        pipeline,
        expected,
        feeder,
        mut rng,
    } = fed_job(
        &server,
        dir.path(),
        "checkpoint-interval = \"600ms\"\n",
        // Two connections: a kill can also fall between their commits of one batch.
        "key-column = \"word\"\nvalue-column = \"n\"\nconnections = 2",
        (60, Duration::from_millis(200)),
        0x0905_19e5,
    );
    let in_table = || counts_of(&server, "SELECT word, n FROM word_counts");
    let logs = chaos(dir.path(), &pipeline, &mut rng, || {
        feeder.is_finished() && in_table() == expected
    });
    let got = in_table();
    assert!(
        got == expected,
        "the table differs from the input: {}",
        difference(&got, &expected)
    );
    let recoveries = logs.matches("recovered job").count();
    let replays = logs.matches("replaying batch").count();
    assert!(
        recoveries >= kills() && replays > 0,
        "{recoveries} recoveries and {replays} replayed batches: the kills did not test recovery"
    );
    // Batches written before a kill and replayed after it: the markers kept them out.
    let skipped = logs.matches("not written again").count();
    assert!(
        skipped > 0,
        "no replayed batch met its marker: the kills did not test it"
    );
    // One marker row per connection of the job's one output: older markers are not kept.
    let markers: i64 = value_of(&server, "SELECT count(*) FROM spate_progress");
    assert_eq!(markers, 2);
}

#[test]
fn upsert_keeps_each_keys_last_value_and_append_keeps_every_record() {
    let server = Server::start();
    server.execute(
        "CREATE SCHEMA app;
         CREATE TABLE app.totals (word varchar(40) PRIMARY KEY, total bigint, updated timestamptz);
         CREATE TABLE counts (id bigserial PRIMARY KEY, key text NOT NULL, value bigint NOT NULL, batch bigint NOT NULL);",
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let files: Vec<String> = {
        let mut rng = Rng(0x00a9_9e7d);
        (0..6).map(|_| lines(&mut rng, 500)).collect()
    };
    for (i, text) in files.iter().enumerate() {
        std::fs::write(input.join(format!("f{i}.txt")), text).unwrap();
    }
    let out = dir.path().join("out");
    let outputs = [
        output(
            &server,
            "totals",
            "app.totals",
            "mode = \"upsert\"\nkey-column = \"word\"\nvalue-column = \"total\"\nbatch-time-column = \"updated\"\nconnections = 2",
        ),
        output(
            &server,
            "counts",
            "counts",
            "batch-time-column = \"batch\"\nconnections = 3",
        ),
        format!(
            "[[outputs]]\nfrom = \"counts\"\ntype = \"text-files\"\nprefix = \"{}/counts\"\nsuffix = \"txt\"\n",
            out.display()
        ),
    ];
    let text = word_count(
        &input,
        "trigger = \"available-now\"\nmax-block-bytes = \"2 KiB\"\nmax-batch-bytes = \"8 KiB\"",
        &outputs.concat(),
    );
    let path = pipeline(dir.path(), &text);
    let run = run(&["run", path.to_str().unwrap()], Duration::from_secs(120));
    let log = stderr(&run);
    assert!(run.status.success(), "{log}");

    let expected = reference_counts(&files.concat(), false, false);
    let totals = counts_of(&server, "SELECT word::text, total FROM app.totals");
    assert!(
        totals == expected,
        "upsert: {}",
        difference(&totals, &expected)
    );
    // Append: each batch's rows are exactly what the text-files output wrote for that batch.
    let batches = text_outputs(&out, "counts");
    assert!(
        batches.len() >= 3,
        "too few batches: {}\n{log}",
        batches.len()
    );
    for (time, counts) in &batches {
        let rows = counts_of(
            &server,
            &format!("SELECT key, value FROM counts WHERE batch = {time}"),
        );
        assert_eq!(&rows, counts, "batch {time}");
    }
    let rows: i64 = value_of(&server, "SELECT count(*) FROM counts");
    let expected_rows: usize = batches.values().map(|c| c.len()).sum();
    assert_eq!(rows as usize, expected_rows);
    // The upsert's batch time column holds the last batch that changed the row.
    let last: i64 = value_of(
        &server,
        "SELECT (extract(epoch FROM max(updated)) * 1000)::bigint FROM app.totals",
    );
    let last_with_words = batches
        .iter()
        .filter(|(_, c)| !c.is_empty())
        .map(|(t, _)| *t)
        .max();
    assert_eq!(Some(last as u64), last_with_words);

    // The same job again at once. An available-now run dates its batches one interval apart
    // however fast it goes, so the first run's marker may be ahead of the clock: the new run's
    // batches must come after it, none of them skipped as written before. The append output
    // now has one connection fewer: its markers are set again, one per connection.
    let first_run_last = *batches.keys().max().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("connections = 3", "connections = 2")).unwrap();
    let log = run_again_after(&["run", path.to_str().unwrap()], first_run_last);
    assert!(
        log.contains(&format!(
            "written by 3 connection(s) up to batch {first_run_last} ms, now by 2"
        )),
        "{log}"
    );
    assert_eq!(
        value_of::<i64>(&server, "SELECT count(*) FROM counts") as usize,
        2 * expected_rows,
        "{log}"
    );
    assert_eq!(
        value_of::<i64>(
            &server,
            &format!("SELECT count(*) FROM counts WHERE batch > {first_run_last}")
        ) as usize,
        expected_rows,
        "{log}"
    );
}

#[test]
fn composite_values_go_into_json_and_text_columns_and_odd_text_arrives_intact() {
    let server = Server::start();
    server.execute("CREATE TABLE groups_text (key text, value text)");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // A backslash, quotes and non-ASCII text: COPY's escapes and JSON's both get exercised.
    let text = "back\\slash \"quoted\" grüße back\\slash\nx x x\n";
    std::fs::write(input.join("f.txt"), text).unwrap();
    let outputs = [
        output(&server, "groups", "groups_json", "create-table = true"),
        output(&server, "groups", "groups_text", ""),
    ];
    let pipeline_text = format!(
        r#"
[job]
trigger = "available-now"

[sources.files]
type = "directory"
path = "{}"

[[steps]]
name = "words"
op = "flat-map"
plugin = "tokenize"

[[steps]]
name = "groups"
op = "group-by-key"

{}
"#,
        input.display(),
        outputs.concat()
    );
    let path = pipeline(dir.path(), &pipeline_text);
    let run = run(&["run", path.to_str().unwrap()], Duration::from_secs(60));
    assert!(run.status.success(), "{}", stderr(&run));
    let expected = reference_counts(text, false, false);
    let json = counts_of(
        &server,
        "SELECT key, jsonb_array_length(value)::bigint FROM groups_json",
    );
    assert_eq!(json, expected);
    let kind: String = value_of(
        &server,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'groups_json'::regclass AND attname = 'value'",
    );
    assert_eq!(kind, "jsonb");
    let mut printed = server
        .client()
        .query("SELECT key, value FROM groups_text", &[])
        .unwrap()
        .iter()
        .map(|r| format!("({},{})", r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect::<Vec<_>>();
    printed.sort();
    assert_eq!(
        printed,
        [
            "(\"quoted\",[1])",
            "(back\\slash,[1, 1])",
            "(grüße,[1])",
            "(x,[1, 1, 1])"
        ]
    );
}

#[test]
fn bytes_keys_and_float_values_go_into_bytea_and_double_precision_columns() {
    // Bytes and f64 columns from a Kafka topic (key-type bytes, value-type f64).
    let broker = support::kafka::Broker::start();
    broker.create_topic("readings", 1);
    let (a, b): (&[u8], &[u8]) = (&[0, 255, b'\\', b'\t'], b"sensor-b");
    let values = [1.5f64, -0.25, 1e-7, 2.5];
    let encoded: Vec<[u8; 8]> = values.iter().map(|v| v.to_be_bytes()).collect();
    broker.produce(
        "readings",
        &[
            (Some(a), &encoded[0]),
            (Some(b), &encoded[1]),
            (Some(a), &encoded[2]),
            (Some(b), &encoded[3]),
        ],
    );
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[job]
trigger = "available-now"

[sources.readings]
type = "kafka"
bootstrap = "{}"
topics = ["readings"]
starting-offsets = "earliest"
key-type = "bytes"
value-type = "f64"

{}{}"#,
        broker.bootstrap(),
        output(&server, "readings", "every_reading", "create-table = true"),
        output(
            &server,
            "readings",
            "totals",
            "mode = \"accumulate\"\ncreate-table = true\nprogress-table = \"totals_progress\""
        ),
    );
    // The same values into real and numeric columns of the user's tables.
    server.execute("CREATE TABLE as_real (key bytea, value real)");
    server.execute("CREATE TABLE as_numeric (key bytea, value numeric)");
    let text = format!(
        "{text}{}{}",
        output(&server, "readings", "as_real", ""),
        output(&server, "readings", "as_numeric", "")
    );
    let path = pipeline(dir.path(), &text);
    let run = run(&["run", path.to_str().unwrap()], Duration::from_secs(60));
    assert!(run.status.success(), "{}", stderr(&run));
    let rows = |sql: &str| -> Vec<(Vec<u8>, f64)> {
        let mut rows: Vec<(Vec<u8>, f64)> = server
            .client()
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        rows.sort_by(|x, y| x.partial_cmp(y).unwrap());
        rows
    };
    let mut every = vec![
        (a.to_vec(), values[0]),
        (b.to_vec(), values[1]),
        (a.to_vec(), values[2]),
        (b.to_vec(), values[3]),
    ];
    every.sort_by(|x, y| x.partial_cmp(y).unwrap());
    assert_eq!(rows("SELECT key, value FROM every_reading"), every);
    assert_eq!(
        rows("SELECT key, value FROM totals"),
        [
            (a.to_vec(), values[0] + values[2]),
            (b.to_vec(), values[1] + values[3])
        ]
    );
    let types: Vec<String> = server
        .client()
        .query(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = \
             'every_reading'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(types, ["bytea", "double precision"]);
    let as_real: Vec<(Vec<u8>, f64)> = every
        .iter()
        .map(|(k, v)| (k.clone(), f64::from(*v as f32)))
        .collect();
    assert_eq!(rows("SELECT key, value::float8 FROM as_real"), as_real);
    assert_eq!(rows("SELECT key, value::float8 FROM as_numeric"), every);
}

#[test]
fn counts_go_into_integer_smallint_and_numeric_columns() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    for (table, column, mode) in [
        ("as_integer", "integer", "accumulate"),
        ("as_smallint", "smallint", "upsert"),
        ("as_numeric", "numeric", "append"),
    ] {
        let key = if mode == "append" { "" } else { " PRIMARY KEY" };
        server.execute(&format!(
            "CREATE TABLE {table} (key text{key}, value {column})"
        ));
        let path = one_batch(
            &dir.path().join(table),
            &server.url(),
            table,
            &format!("mode = \"{mode}\""),
            "a b a c a\n",
        );
        let run = spate_with_password(&["run", path.to_str().unwrap()], PASSWORD);
        assert!(run.status.success(), "{table}: {}", stderr(&run));
        let got = counts_of(&server, &format!("SELECT key, value::bigint FROM {table}"));
        let expected = Counts::from([("a".into(), 3), ("b".into(), 1), ("c".into(), 1)]);
        assert_eq!(got, expected, "{table}");
    }
    // A column that cannot hold the stream's values is refused at start, naming the ones
    // that can.
    server.execute("CREATE TABLE as_real (key text PRIMARY KEY, value real)");
    let path = one_batch(
        &dir.path().join("as_real"),
        &server.url(),
        "as_real",
        "mode = \"upsert\"",
        "a\n",
    );
    let run = spate_with_password(&["run", path.to_str().unwrap()], PASSWORD);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("bigint, integer, smallint or numeric"),
        "{}",
        stderr(&run)
    );
}

#[test]
fn a_database_restart_mid_run_loses_and_doubles_nothing() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let FedJob {
        pipeline,
        expected,
        feeder,
        ..
    } = fed_job(
        &server,
        dir.path(),
        "",
        "",
        (30, Duration::from_millis(100)),
        0x07e5_7a27,
    );
    let log = dir.path().join("run.log");
    let (child, ui) = run_with_ui(&pipeline, &log, std::process::Stdio::null());
    let in_table = || counts_of(&server, "SELECT key, value FROM word_counts");
    assert!(
        eventually(Duration::from_secs(60), || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("postgres output 'word_counts': ready"))),
        "the job did not start:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    std::thread::sleep(Duration::from_millis(1000));
    server.stop();
    std::thread::sleep(Duration::from_secs(3));
    server.run();
    feeder.join().unwrap();
    eventually(Duration::from_secs(60), || in_table() == expected);
    // The UI counts the output's retries: over the run, and per batch.
    let job: serde_json::Value =
        serde_json::from_str(&http_get(&ui, "/api/v1/jobs").unwrap()).unwrap();
    let job = &job[0];
    let batches: serde_json::Value = serde_json::from_str(
        &http_get(
            &ui,
            &format!(
                "/api/v1/jobs/{}/batches?limit=1000",
                job["name"].as_str().unwrap()
            ),
        )
        .unwrap(),
    )
    .unwrap();
    let metrics = http_get(&ui, "/metrics").unwrap();
    interrupt(&child);
    let run = wait(child, Duration::from_secs(30));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(run.status.success(), "{log}");
    let got = in_table();
    assert!(got == expected, "{}\n{log}", difference(&got, &expected));
    let retried_lines = log.matches("retrying in").count() as u64;
    assert!(retried_lines > 0, "the restart was not noticed:\n{log}");
    let gauges = &job["output_gauges"][0];
    assert_eq!(gauges["retries"].as_u64(), Some(retried_lines), "{job}");
    assert!(
        gauges["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("writing batch ")),
        "{job}"
    );
    let per_batch: u64 = batches
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["output_retries"][0].as_u64().unwrap())
        .sum();
    assert!(
        per_batch >= 1 && per_batch <= retried_lines,
        "{per_batch} of {retried_lines}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("spate_output_retries_total{")
                && l.contains("outputs[0] postgres")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// Runs `spate` with the test password in its environment.
fn spate_with_password(args: &[&str], password: &str) -> std::process::Output {
    let child = spate()
        .args(args)
        .env(PASSWORD_VAR, password)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait(child, Duration::from_secs(60))
}

/// A one-batch word count of `line` into `table` (password from the environment).
fn one_batch(dir: &Path, url: &str, table: &str, extra: &str, line: &str) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("f.txt"), line).unwrap();
    let outputs = format!(
        "[[outputs]]\nfrom = \"counts\"\ntype = \"postgres\"\nurl = \"{url}\"\npassword = {{ env = \"{PASSWORD_VAR}\" }}\ntable = \"{table}\"\n{extra}\n"
    );
    let job = format!(
        "trigger = \"available-now\"\ncheckpoint-dir = \"{}\"",
        dir.join("ck").display()
    );
    pipeline(dir, &word_count(&input, &job, &outputs))
}

#[test]
fn every_failure_has_a_clear_error_and_loses_nothing() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let run_it = |path: &Path, password: &str| {
        spate_with_password(&["run", path.to_str().unwrap()], password)
    };
    let failed = |output: &std::process::Output, wanted: &[&str]| {
        let log = stderr(output);
        assert!(!output.status.success(), "should have failed:\n{log}");
        for w in wanted {
            assert!(log.contains(w), "no {w:?} in:\n{log}");
        }
        assert!(!log.contains("panicked"), "{log}");
    };

    // Nothing listens there.
    let closed = free_port();
    let url = format!("postgresql://spate@127.0.0.1:{closed}/postgres");
    let path = one_batch(&dir.path().join("away"), &url, "t", "", "a b");
    failed(
        &run_it(&path, PASSWORD),
        &[
            &format!("cannot connect to PostgreSQL at spate@127.0.0.1:{closed}/postgres"),
            "is the server running",
        ],
    );

    // Wrong password; then a password variable that is not set.
    let path = one_batch(&dir.path().join("pw"), &server.url(), "t", "", "a b");
    failed(
        &run_it(&path, "not-the-password"),
        &[
            "password authentication failed",
            "are the user and `password` right?",
        ],
    );
    let unset = spate()
        .args(["check", path.to_str().unwrap()])
        .env_remove(PASSWORD_VAR)
        .output()
        .unwrap();
    failed(
        &unset,
        &[&format!("environment variable {PASSWORD_VAR} is not set")],
    );

    // A table that does not exist.
    failed(
        &run_it(&path, PASSWORD),
        &["table t does not exist", "create-table = true"],
    );

    // A column that does not fit the stream, found by `spate check --connect`.
    server.execute("CREATE TABLE wrong (key text PRIMARY KEY, value text)");
    let path = one_batch(
        &dir.path().join("types"),
        &server.url(),
        "wrong",
        "mode = \"upsert\"",
        "a b",
    );
    let check = spate_with_password(&["check", path.to_str().unwrap()], PASSWORD);
    assert!(check.status.success(), "{}", stderr(&check));
    failed(
        &spate_with_password(&["check", "--connect", path.to_str().unwrap()], PASSWORD),
        &["column \"value\" of table wrong is text: a i64 needs bigint"],
    );
    server.execute("CREATE TABLE fine (key text PRIMARY KEY, value bigint)");
    let path = one_batch(
        &dir.path().join("fine"),
        &server.url(),
        "fine",
        "mode = \"upsert\"",
        "a b",
    );
    let check = spate_with_password(&["check", "--connect", path.to_str().unwrap()], PASSWORD);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("table fine at spate@127.0.0.1"),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // A missing table with create-table: the check says what the start will create, and
    // creates nothing.
    let path = one_batch(
        &dir.path().join("later"),
        &server.url(),
        "later",
        "mode = \"accumulate\"\ncreate-table = true",
        "a b",
    );
    let check = spate_with_password(&["check", "--connect", path.to_str().unwrap()], PASSWORD);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains(
            "table later at spate@127.0.0.1:"
        ) && String::from_utf8_lossy(&check.stdout)
            .contains("the job will create it: CREATE TABLE IF NOT EXISTS \"later\" (\"key\" text PRIMARY KEY, \"value\" bigint)"),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let exists: bool = value_of(&server, "SELECT to_regclass('later') IS NOT NULL");
    assert!(!exists, "a check created the table");

    // Upsert without a unique key; accumulate of an unkeyed stream (refused without a server).
    server.execute("CREATE TABLE loose (key text, value bigint)");
    let path = one_batch(
        &dir.path().join("loose"),
        &server.url(),
        "loose",
        "mode = \"upsert\"",
        "a b",
    );
    failed(
        &run_it(&path, PASSWORD),
        &["needs a unique index or primary key on exactly column \"key\""],
    );
    let unkeyed = one_batch(
        &dir.path().join("unkeyed"),
        &server.url(),
        "x",
        "mode = \"accumulate\"",
        "a b",
    );
    let text = std::fs::read_to_string(&unkeyed).unwrap().replace(
        "from = \"counts\"\ntype = \"postgres\"",
        "from = \"files\"\ntype = \"postgres\"",
    );
    std::fs::write(&unkeyed, text).unwrap();
    failed(
        &spate_with_password(&["check", unkeyed.to_str().unwrap()], PASSWORD),
        &["outputs[0]", "needs a keyed stream"],
    );

    // Two outputs of one job into one table would share its marker: refused.
    server.execute("CREATE TABLE shared (key text, value bigint)");
    let path = one_batch(
        &dir.path().join("shared"),
        &server.url(),
        "shared",
        "",
        "a b",
    );
    let twice = std::fs::read_to_string(&path).unwrap();
    let second = twice[twice.find("[[outputs]]").unwrap()..].replace("\"counts\"", "\"words\"");
    std::fs::write(&path, format!("{twice}\n{second}")).unwrap();
    failed(
        &run_it(&path, PASSWORD),
        &["writes table shared", "its own `progress-table`"],
    );

    // More connections than the output allows.
    let path = one_batch(
        &dir.path().join("many"),
        &server.url(),
        "t",
        "connections = 1000",
        "a b",
    );
    failed(
        &spate_with_password(&["check", path.to_str().unwrap()], PASSWORD),
        &["outputs[0]", "connections", "must be 1 to 32, not 1000"],
    );

    // A run with two connections stopped between their commits of one batch; with another
    // number of connections the batch's records would be shared out differently: refused
    // until it is finished with two.
    server.execute("CREATE TABLE split (key text PRIMARY KEY, value bigint)");
    let path = one_batch(
        &dir.path().join("split"),
        &server.url(),
        "split",
        "mode = \"accumulate\"\nconnections = 2",
        "a b c d",
    );
    let first = run_it(&path, PASSWORD);
    assert!(first.status.success(), "{}", stderr(&first));
    server.execute(
        "UPDATE spate_progress SET batch_time = batch_time - 1 WHERE output = 'split' AND task = 0",
    );
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("connections = 2", "connections = 1")).unwrap();
    failed(
        &run_it(&path, PASSWORD),
        &[
            "table split: an earlier run writing with `connections = 2` stopped part way",
            "run the job with `connections = 2` until it is recovered",
            "DELETE FROM spate_progress WHERE job = '",
        ],
    );
    // Once both markers are at the batch, one connection takes over from there.
    server.execute(
        "UPDATE spate_progress SET batch_time = batch_time + 1 WHERE output = 'split' AND task = 0",
    );
    let regrouped = run_it(&path, PASSWORD);
    let log = stderr(&regrouped);
    assert!(regrouped.status.success(), "{log}");
    assert!(
        log.contains("written by 2 connection(s) up to batch"),
        "{log}"
    );
    let markers: i64 = value_of(
        &server,
        "SELECT count(*) FROM spate_progress WHERE output = 'split' AND tasks = 1",
    );
    assert_eq!(markers, 1);
    let got = counts_of(&server, "SELECT key, value FROM split");
    assert_eq!(got.values().sum::<i64>(), 4);

    // A constraint of the user's schema refuses a batch: the job stops naming the batch, and
    // once the schema is mended the batch is written from the batch log, not lost.
    server.execute(
        "CREATE TABLE limited (key text PRIMARY KEY, value bigint CONSTRAINT small CHECK (value < 3))",
    );
    let path = one_batch(
        &dir.path().join("constraint"),
        &server.url(),
        "limited",
        "mode = \"accumulate\"",
        "a a a b\n",
    );
    failed(
        &run_it(&path, PASSWORD),
        &[
            "was refused by table limited",
            "constraint small",
            "SQLSTATE 23514",
        ],
    );
    server.execute("ALTER TABLE limited DROP CONSTRAINT small");
    let mended = run_it(&path, PASSWORD);
    assert!(mended.status.success(), "{}", stderr(&mended));
    let got = counts_of(&server, "SELECT key, value FROM limited");
    assert_eq!(got, Counts::from([("a".into(), 3), ("b".into(), 1)]));
}

/// TLS as libpq's `sslmode` says: `require` encrypts (the server accepts this user only over
/// TLS), `verify-full` checks the certificate against `sslrootcert` and the host name, a
/// certificate from another CA is refused, and a plain connection the server refuses says to
/// ask for TLS.
#[test]
fn tls_is_used_and_checked_as_sslmode_says() {
    let server = Server::start();
    let ca = server.enable_tls();
    let dir = tempfile::tempdir().unwrap();
    let port = server.port();
    let url =
        |host: &str, query: &str| format!("postgresql://{TLS_USER}@{host}:{port}/postgres?{query}");
    let run_with = |name: &str, url: &str, line: &str| {
        let path = one_batch(
            &dir.path().join(name),
            url,
            name,
            "create-table = true",
            line,
        );
        spate_with_password(&["run", path.to_str().unwrap()], PASSWORD)
    };
    let required = run_with("encrypted", &url("127.0.0.1", "sslmode=require"), "a b a\n");
    assert!(required.status.success(), "{}", stderr(&required));
    assert_eq!(
        counts_of(&server, "SELECT key, value FROM encrypted"),
        Counts::from([("a".into(), 2), ("b".into(), 1)])
    );
    let checked = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    let verified = run_with("verified", &url("localhost", &checked), "c\n");
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert_eq!(
        counts_of(&server, "SELECT key, value FROM verified"),
        Counts::from([("c".into(), 1)])
    );

    let (other, other_key) = (dir.path().join("other.crt"), dir.path().join("other.key"));
    spate_test_artifacts::postgres::self_signed(&other, &other_key, "localhost");
    let wrong_ca = format!("sslmode=verify-ca&sslrootcert={}", other.display());
    let refused = run_with("unverified", &url("127.0.0.1", &wrong_ca), "d\n");
    let log = stderr(&refused);
    assert!(!refused.status.success());
    assert!(
        log.contains("certificate verify failed") && log.contains("sslrootcert"),
        "{log}"
    );
    let plain = run_with("plain", &url("127.0.0.1", "sslmode=disable"), "e\n");
    let log = stderr(&plain);
    assert!(!plain.status.success());
    assert!(
        log.contains("pg_hba.conf") && log.contains("sslmode=require"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
