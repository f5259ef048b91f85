//! The web UI end to end: `spate run` serves it while a word count runs, a real headless
//! Chromium (driven by Selenium, installed by `scripts/install-ui-test-tools.sh`) opens its
//! pages, and what it shows is compared with the job's own output: the dashboard's top keys
//! with the printed batch, `/metrics` (read with the Prometheus project's parser) and the JSON
//! API with the batch lines of the log. Screenshots go to `target/tmp/ui-screenshots/`.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::*;

const FILES: usize = 14;

/// The records Spark's print shows for batch `time` in `stdout`.
fn printed_batch(stdout: &str, time: u64) -> Vec<(String, i64)> {
    let header = format!("Time: {time} ms\n");
    let at = stdout.find(&header).expect("the batch was printed") + header.len();
    stdout[at..]
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let (word, n) = l
                .trim_start_matches('(')
                .trim_end_matches(')')
                .rsplit_once(',')
                .unwrap();
            (word.to_owned(), n.parse().unwrap())
        })
        .collect()
}

/// Per batch time, (input records, output records) from the log's batch lines.
fn logged_batches(log: &str) -> BTreeMap<u64, (u64, u64)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split("batch ").nth(1)?;
            let (time, rest) = rest.split_once(" ms: ")?;
            let input = rest.split(' ').next()?.parse().ok()?;
            let before = &rest[..rest.find(" output records")?];
            let output = before.rsplit(' ').next()?.parse().ok()?;
            Some((time.parse().ok()?, (input, output)))
        })
        .collect()
}

#[test]
fn a_browser_sees_the_job_live_and_the_ui_agrees_with_the_jobs_output() {
    let python = installed("install-ui-test-tools.sh");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let path = pipeline(
        dir.path(),
        &format!(
            r#"
[job]
name = "wordcount"
batch-interval = "1s"
checkpoint-dir = "{}"
checkpoint-interval = "2s"

[sources.lines]
type = "directory"
path = "{}"

[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
op = "reduce-by-key"
plugin = "sum"

[[outputs]]
type = "dashboard"
name = "words"
title = "Word counts"
top = 5

[[outputs]]
type = "print"
num = 100000
"#,
            dir.path().join("checkpoints").display(),
            input.display()
        ),
    );
    let log = dir.path().join("run.log");
    let (child, base) = run_with_ui(&path, &log, Stdio::piped());
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    // The UI is up before the job has started; a file there before the directory source first
    // looks would count as existing and not be read (no `include-existing`). The first batch
    // line says the source is looking.
    assert!(
        eventually(Duration::from_secs(60), || read().contains(" ms: ")),
        "{}",
        read()
    );
    // Files of words keep coming while the browser looks.
    let mut rng = chaos::Rng(11);
    let texts: Vec<String> = (0..FILES).map(|_| chaos::lines(&mut rng, 40)).collect();
    let expected: usize = texts.iter().map(|t| t.lines().count()).sum();
    let lengths: Vec<usize> = texts.iter().map(String::len).collect();
    let feeder = {
        let input = input.clone();
        std::thread::spawn(move || {
            for (i, text) in texts.iter().enumerate() {
                let staged = input.join(format!(".f{i}"));
                std::fs::write(&staged, text).unwrap();
                std::fs::rename(&staged, input.join(format!("f{i}.txt"))).unwrap();
                std::thread::sleep(Duration::from_millis(700));
            }
        })
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let browsed = std::process::Command::new(&python)
        .arg(repo().join("tests/ui/browse.py"))
        .args([&base, "wordcount", "words", &expected.to_string()])
        .arg(&shots)
        .arg(FILES.to_string())
        .output()
        .unwrap();
    feeder.join().unwrap();
    interrupt(&child);
    let output = wait(child, Duration::from_secs(30));
    let log = read();
    assert!(
        browsed.status.success(),
        "{}\n{log}",
        String::from_utf8_lossy(&browsed.stderr)
    );
    assert!(output.status.success(), "{log}");
    let seen: serde_json::Value = serde_json::from_slice(&browsed.stdout).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);

    // Jobs page.
    let row = &seen["jobs_row"];
    assert_eq!(row[0], "wordcount");
    assert_eq!(row[1], "wordcount", "the tenant defaults to the job's name");
    assert_eq!(row[2], "running");
    assert!(
        seen["dashboard_links"][0]
            .as_str()
            .unwrap()
            .ends_with("/dashboards/words")
    );
    // Streaming page: charts drawn, live without a reload.
    let live = &seen["live"];
    assert_eq!(live["reloaded"], false);
    assert!(live["versions"][1].as_u64() > live["versions"][0].as_u64());
    assert_ne!(live["first_batch"], live["later_batch"]);
    for chart in [
        "input-rate",
        "scheduling-delay",
        "processing-time",
        "total-delay",
    ] {
        assert!(seen["charts"][chart].as_u64().unwrap() >= 2, "{chart}");
    }
    assert_eq!(seen["stability_line"], 1);
    assert_eq!(seen["histogram_bars"], 10);
    assert!(
        seen["plan"]
            .as_str()
            .unwrap()
            .contains("reduce-by-key 'sum'")
    );
    assert!(seen["batch_page"]["Batch time"].as_str().is_some());
    check_plan_graph(&seen);
    check_batch_tasks(&seen);

    // Dashboard: its top keys are the printed batch's, largest first.
    let board = &seen["dashboard"];
    assert_eq!(board["title"], "Word counts");
    let time = board["batch_time_ms"].as_u64().unwrap();
    let mut printed = printed_batch(&stdout, time);
    printed.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let top: Vec<serde_json::Value> = printed
        .iter()
        .take(5)
        .map(|(w, n)| serde_json::json!([w, n.to_string()]))
        .collect();
    assert!(!top.is_empty(), "batch {time} printed nothing:\n{stdout}");
    assert_eq!(board["rows"].as_array().unwrap(), &top);
    assert_eq!(board["bars"].as_array().unwrap(), &top);
    if board["api_batch_time_ms"] == board["batch_time_ms"] {
        assert_eq!(board["api_rows"], board["rows"]);
    }
    assert!(board["lines"].as_u64().unwrap() >= 1);

    // /metrics and the JSON API against the log's batch lines.
    let logged = logged_batches(&log);
    let metrics = &seen["metrics"];
    let labels = "job=wordcount,tenant=wordcount";
    let metric = |name: &str, labels: &str| {
        metrics[format!("{name}{{{labels}}}")]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}{{{labels}}} missing"))
    };
    assert_eq!(
        metric(
            "spate_input_records_total",
            "job=wordcount,source=lines,tenant=wordcount"
        ),
        expected as f64
    );
    let logged_output: u64 = logged.values().map(|(_, out)| out).sum();
    assert_eq!(
        metric("spate_output_records_total", labels),
        logged_output as f64
    );
    // A word count keeps no state across batches.
    assert_eq!(metric("spate_state_bytes", labels), 0.0);
    let batches = metric("spate_batches_total", labels);
    assert!(batches >= 2.0 && batches <= logged.len() as f64);
    assert_eq!(
        metric("spate_batch_total_delay_seconds_count", labels),
        batches
    );
    assert_eq!(
        metric(
            "spate_batch_processing_seconds_bucket",
            "job=wordcount,le=+Inf,tenant=wordcount"
        ),
        batches
    );
    let api = seen["batches"].as_array().unwrap();
    assert!(api.len() >= batches as usize);
    for batch in api {
        let time = batch["time_ms"].as_u64().unwrap();
        let (input, output) = logged[&time];
        assert_eq!(batch["input_records"].as_u64(), Some(input), "batch {time}");
        assert_eq!(
            batch["output_records"].as_u64(),
            Some(output),
            "batch {time}"
        );
    }
    // Per operator and per output, and the checkpoints.
    for operator in ["tokenize", "sum"] {
        let calls = metric(
            "spate_operator_calls_total",
            &format!("job=wordcount,operator={operator},tenant=wordcount"),
        );
        assert!(calls > 0.0, "{operator}");
    }
    let written: f64 = ["outputs[0] dashboard", "outputs[1] print"]
        .iter()
        .map(|prefix| {
            let (key, value) = metrics
                .as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| {
                    k.starts_with("spate_output_written_records_total") && k.contains(prefix)
                })
                .unwrap_or_else(|| panic!("{prefix} missing"));
            assert!(key.contains("job=wordcount"), "{key}");
            value.as_f64().unwrap()
        })
        .sum();
    assert_eq!(written, logged_output as f64);
    assert!(metric("spate_checkpoints_total", labels) >= 1.0);
    // Per plan node: the word count's keyed node was busy and read every word the tokenizer
    // emitted (records in: lines into its map side, plus the map side's output into its reduce
    // side, so at least the input's lines).
    let (node_key, busy) = metrics
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| {
            k.starts_with("spate_node_busy_seconds_total") && k.contains("reduce-by-key")
        })
        .expect("a busy-time sample for the reduce-by-key node");
    assert!(busy.as_f64().unwrap() > 0.0, "{node_key}");
    let node_in = metrics[node_key.replace(
        "spate_node_busy_seconds_total",
        "spate_node_records_in_total",
    )]
    .as_f64()
    .unwrap();
    assert!(
        node_in >= expected as f64,
        "{node_key}: {node_in} < {expected}"
    );

    // Sources, operators and checkpoints pages.
    let positions = &seen["positions"];
    for (i, length) in lengths.iter().enumerate() {
        assert_eq!(
            positions[format!("f{i}.txt")][0],
            length.to_string(),
            "{positions}"
        );
    }
    // Each file's rate over the last batches, in bytes; the last file was read within them.
    let rate = |i: usize| -> f64 {
        let cell = positions[format!("f{i}.txt")][1].as_str().unwrap();
        let number = cell
            .strip_suffix(" bytes/s")
            .unwrap_or_else(|| panic!("{cell}"));
        number.parse().unwrap()
    };
    for i in 0..FILES {
        assert!(rate(i) >= 0.0);
    }
    assert!(rate(FILES - 1) > 0.0, "{positions}");
    for operator in ["tokenize", "sum"] {
        let table = &seen["operators"][operator];
        let hash = table["Version (blake3)"][0].as_str().unwrap();
        assert!(
            hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{table}"
        );
        let over_run = table["Over the run"][0].as_str().unwrap();
        assert!(
            over_run.starts_with("Calls ") && !over_run.starts_with("Calls 0 "),
            "{table}"
        );
        assert!(table["Limits"][0].as_str().unwrap().contains("call-time"));
    }
    let checkpoints = seen["checkpoints"].as_array().unwrap();
    assert!(!checkpoints.is_empty());
    assert!(
        checkpoints[0][2]
            .as_str()
            .unwrap()
            .contains(dir.path().join("checkpoints").to_str().unwrap()),
        "{checkpoints:?}"
    );

    for shot in [
        "jobs",
        "streaming",
        "batch",
        "dashboard",
        "sources",
        "operators",
        "checkpoints",
    ] {
        assert!(shots.join(format!("{shot}.png")).metadata().unwrap().len() > 1000);
    }
}

/// The plan graph has the job's nodes, linked, and shows where time went.
fn check_plan_graph(seen: &serde_json::Value) {
    let graph = seen["graph"].as_array().unwrap();
    let labels: Vec<&str> = graph.iter().map(|n| n[0].as_str().unwrap()).collect();
    assert!(labels.len() >= 2, "{labels:?}");
    assert!(
        labels.iter().any(|l| l.contains("reduce-by-key")),
        "{labels:?}"
    );
    assert!(seen["graph_edges"].as_u64().unwrap() as usize >= labels.len() - 1);
    assert!(
        graph.iter().any(|n| n[1].as_f64().unwrap() > 0.0),
        "no busy time: {graph:?}"
    );
}

/// The batch page's task tables add up to the batch's own figures: the first stage's tasks
/// read the batch's input, and the last stage's write what each output got.
fn check_batch_tasks(seen: &serde_json::Value) {
    let tables = seen["batch_tasks"].as_object().unwrap();
    assert!(!tables.is_empty(), "no task tables");
    let stage = |id: &str| -> usize { id.split('-').nth(1).unwrap().parse().unwrap() };
    let column = |id: &str, c: usize| -> u64 {
        tables[id]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[c].as_str().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let first = tables.keys().min_by_key(|id| stage(id)).unwrap();
    let input: u64 = seen["batch_page"]["Input"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(column(first, 3), input, "records in of {first}: {tables:?}");
    let last = tables
        .keys()
        .filter(|id| id.ends_with("-reduce"))
        .max_by_key(|id| stage(id))
        .expect("a reduce side");
    // What the map side wrote into the shuffle is what the reduce side read from it.
    let map_side = last.replace("-reduce", "-map");
    assert_eq!(column(&map_side, 4), column(last, 3), "{tables:?}");
    for row in tables[last.as_str()].as_array().unwrap() {
        assert!(row[5].as_str().unwrap().ends_with('B'), "bytes in: {row:?}");
    }
    let outputs = seen["batch_outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    for output in outputs {
        assert_eq!(
            output[1].as_str().unwrap(),
            column(last, 4).to_string(),
            "{output:?} {tables:?}"
        );
        assert_eq!(output[3], "0", "retries: {output:?}");
    }
    // The streaming page lists the outputs with what they wrote over the run.
    let outputs = seen["streaming_outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    for (output, name) in outputs.iter().zip(["dashboard", "print"]) {
        assert!(output[0].as_str().unwrap().contains(name), "{output:?}");
        assert!(
            output[1].as_str().unwrap().parse::<u64>().unwrap() > 0,
            "{output:?}"
        );
        assert_eq!(output[3], "0", "retries: {output:?}");
    }
}

#[test]
fn a_pipeline_can_switch_the_ui_off_or_move_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[job]\ntrigger = \"available-now\"\n\n[sources.text]\ntype = \"bundled\"\n\n\
                [[outputs]]\ntype = \"print\"\nnum = 1\n";
    let off = pipeline(dir.path(), &format!("{text}\n[ui]\nenabled = false\n"));
    let output = run(&["run", off.to_str().unwrap()], Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("web UI at"),
        "{}",
        stderr(&output)
    );
    let bad = pipeline(dir.path(), &format!("{text}\n[ui]\nport = \"x\"\n"));
    let output = run(&["run", bad.to_str().unwrap()], Duration::from_secs(60));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("ui.port"), "{}", stderr(&output));
}

/// An `available-now` run shows how much of its input is done: redrawn in place on a terminal
/// (a pseudo-terminal from `script`), a plain log line otherwise; both end at 100%.
#[test]
fn an_available_now_run_shows_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut rng = chaos::Rng(5);
    let mut total = 0;
    for i in 0..3 {
        let text = chaos::lines(&mut rng, 2000);
        total += text.len();
        std::fs::write(input.join(format!("f{i}.txt")), text).unwrap();
    }
    let path = pipeline(
        dir.path(),
        &format!(
            "[job]\ntrigger = \"available-now\"\n\n[sources.text]\ntype = \"directory\"\n\
             path = \"{}\"\n\n[[outputs]]\ntype = \"print\"\nnum = 1\n",
            input.display()
        ),
    );
    let done = format!("of {:.1} KiB (100%)", total as f64 / 1024.0);
    let output = run(
        &["run", path.to_str().unwrap(), "--no-ui"],
        Duration::from_secs(60),
    );
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("progress: "))
        .unwrap_or_else(|| panic!("no progress line\n{log}"));
    assert!(line.contains(&done) && line.contains("done"), "{line}");
    assert!(!log.contains('\r'), "redrawn off a terminal\n{log}");

    let command = format!(
        "{} run {} --no-ui",
        env!("CARGO_BIN_EXE_spate"),
        path.display()
    );
    let on_terminal = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env(
            "SPATE_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("spate-cache"),
        )
        .env("SPATE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(on_terminal.status.success(), "{shown}");
    assert!(
        shown.contains("\r\x1b[2K") && shown.contains(&done),
        "no progress line redrawn on the terminal:\n{shown:?}"
    );
}
