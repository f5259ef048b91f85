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

/// The address `spate run` printed for its UI.
fn ui_address(log: &str) -> Option<String> {
    let at = log.find("web UI at http://")? + "web UI at ".len();
    Some(log[at..].split('/').take(3).collect::<Vec<_>>().join("/"))
}

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
            input.display()
        ),
    );
    let log = dir.path().join("run.log");
    let child = spate()
        .args(["run", path.to_str().unwrap(), "--ui-port", "0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(30), || ui_address(&read()).is_some()),
        "{}",
        read()
    );
    let base = ui_address(&read()).unwrap();
    // Files of words keep coming while the browser looks.
    let mut rng = chaos::Rng(11);
    let texts: Vec<String> = (0..FILES).map(|_| chaos::lines(&mut rng, 40)).collect();
    let expected: usize = texts.iter().map(|t| t.lines().count()).sum();
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
    for shot in ["jobs", "streaming", "batch", "dashboard"] {
        assert!(shots.join(format!("{shot}.png")).metadata().unwrap().len() > 1000);
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
