//! Every error a user can make or meet gives one clear line naming what and where, and a
//! non-zero exit; nothing panics.

mod support;

use std::path::Path;
use std::time::Duration;
use support::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A word count over one file with the given extra job settings, source settings and steps.
fn file_job(dir: &Path, input_text: &[u8], source_extra: &str, steps: &str) -> std::path::PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("data.txt"), input_text).unwrap();
    pipeline(
        dir,
        &format!(
            r#"[job]
trigger = "available-now"

[sources.files]
type = "directory"
path = "{}"
{source_extra}

{steps}

[[outputs]]
type = "print"
num = 100
"#,
            input.display()
        ),
    )
}

const WORD_COUNT: &str = r#"[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
op = "reduce-by-key"
plugin = "sum"
"#;

/// Runs `spate <command> pipeline` and returns (exit code, the error line).
fn fails(command: &str, path: &Path) -> (i32, String) {
    let output = run(&[command, path.to_str().unwrap()], TIMEOUT);
    let log = stderr(&output);
    assert!(!output.status.success(), "expected a failure\n{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("thread '")),
        "the host must not panic\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line\n{log}"));
    (output.status.code().unwrap(), line.to_owned())
}

#[test]
fn an_unknown_field_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_job(
        dir.path(),
        b"x\n",
        "",
        &WORD_COUNT.replace("plugin = \"sum\"", "plugin = \"sum\"\npartitons = 2"),
    );
    let (code, line) = fails("check", &path);
    assert_eq!(code, 2);
    assert!(line.contains("pipeline.toml:16:"), "{line}");
    assert!(
        line.contains("steps[1]") && line.contains("unknown field `partitons`"),
        "{line}"
    );
}

#[test]
fn malformed_toml_and_bad_values_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(dir.path(), "[job\nbatch-interval = \"1s\"\n");
    let (code, line) = fails("run", &path);
    assert_eq!(code, 2);
    assert!(line.contains("pipeline.toml:1:"), "{line}");
    let path = file_job(dir.path(), b"x\n", "poll-interval = \"soon\"", WORD_COUNT);
    let (_, line) = fails("check", &path);
    assert!(
        line.contains("sources.files.poll-interval") && line.contains("invalid duration 'soon'"),
        "{line}"
    );
    assert!(line.contains("pipeline.toml:7:"), "{line}");
}

#[test]
fn a_missing_plugin_file_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_job(
        dir.path(),
        b"x\n",
        "",
        &WORD_COUNT.replace("\"tokenize\"", "\"ops/missing.wasm\""),
    );
    let (code, line) = fails("run", &path);
    assert_eq!(code, 2);
    assert!(
        line.contains("pipeline.toml:11:") && line.contains("steps[0].plugin"),
        "{line}"
    );
    assert!(line.contains("missing.wasm' not found"), "{line}");
}

#[test]
fn a_plugin_of_the_wrong_world_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_job(
        dir.path(),
        b"x\n",
        "",
        &WORD_COUNT.replace("\"tokenize\"", "\"sum\""),
    );
    let (_, line) = fails("check", &path);
    assert!(line.contains("it is a combiner operator"), "{line}");
    assert!(line.contains("spate:operator/transform@0.1.0"), "{line}");
}

#[test]
fn files_that_are_not_components_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("corrupt.wasm"), b"\0asm\x0d\0\x01\0garbage").unwrap();
    std::fs::write(dir.path().join("text.wasm"), b"hello").unwrap();
    for (file, expected) in [
        ("core.wasm", "a core Wasm module, not a component"),
        ("corrupt.wasm", "not a valid Wasm component"),
        ("text.wasm", "not a WebAssembly file"),
    ] {
        let path = file_job(
            dir.path(),
            b"x\n",
            "",
            &WORD_COUNT.replace("\"tokenize\"", &format!("\"{file}\"")),
        );
        let (_, line) = fails("check", &path);
        assert!(line.contains(expected), "{file}: {line}");
    }
}

#[test]
fn bad_parameters_are_refused_before_any_data_flows() {
    let dir = tempfile::tempdir().unwrap();
    let steps = WORD_COUNT.replace(
        "plugin = \"tokenize\"",
        "plugin = \"tokenize\"\nparams = { lowercse = true }",
    );
    let path = file_job(dir.path(), b"x\n", "", &steps);
    let (code, line) = fails("run", &path);
    assert_eq!(code, 2);
    assert!(
        line.contains("unknown parameter 'lowercse' (known: lowercase, strip-punctuation)"),
        "{line}"
    );
    assert!(line.contains("steps[0].params"), "{line}");
}

#[test]
fn a_trapping_plugin_fails_the_job_with_its_panic_message() {
    let dir = tempfile::tempdir().unwrap();
    let panicky = test_plugin("panicky");
    let steps = format!(
        "[[steps]]\nop = \"map\"\nplugin = \"{}\"\n\n{WORD_COUNT}",
        panicky.display()
    );
    let path = file_job(dir.path(), b"fine\nboom\n", "", &steps);
    let (code, line) = fails("run", &path);
    assert_eq!(code, 1);
    assert!(
        line.contains("trapped in spate:operator/transform@0.1.0#process: wasm trap"),
        "{line}"
    );
    assert!(
        line.contains("panicky operator hit its trigger line 'boom'"),
        "{line}"
    );
    assert!(
        line.contains("step 0 'panicky'") && line.contains("partition 0"),
        "{line}"
    );
}

#[test]
fn invalid_utf8_fails_naming_file_and_line_or_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_job(
        dir.path(),
        b"good line\nbad \xff line\nlast\n",
        "",
        WORD_COUNT,
    );
    let (code, line) = fails("run", &path);
    assert_eq!(code, 1);
    assert!(
        line.contains("data.txt line 2 (byte offset 10): invalid UTF-8 at byte 4"),
        "{line}"
    );

    let path = file_job(
        dir.path(),
        b"good line\nbad \xff line\nlast\n",
        "on-bad-line = \"skip\"",
        WORD_COUNT,
    );
    let output = run(&["run", path.to_str().unwrap()], TIMEOUT);
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("skipping file") && log.contains("1 bad lines skipped"),
        "{log}"
    );
    let counts = printed_counts(&output.stdout);
    assert_eq!(counts, reference_counts("good line\nlast\n", false, false));
}

#[test]
fn a_line_over_the_maximum_fails_or_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = b"short\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 5000));
    input.extend(b"\nafter\n");
    let path = file_job(dir.path(), &input, "max-line-length = 1000", WORD_COUNT);
    let (_, line) = fails("run", &path);
    assert!(
        line.contains(
            "data.txt line 2 (byte offset 6): line longer than max-line-length (1000 bytes)"
        ),
        "{line}"
    );
    let path = file_job(
        dir.path(),
        &input,
        "max-line-length = 1000\non-bad-line = \"skip\"",
        WORD_COUNT,
    );
    let output = run(&["run", path.to_str().unwrap()], TIMEOUT);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("(short,1)") && printed.contains("(after,1)"),
        "{printed}"
    );
}

#[test]
fn reduce_by_key_over_unkeyed_records_is_a_plan_error() {
    let dir = tempfile::tempdir().unwrap();
    let steps = "[[steps]]\nop = \"reduce-by-key\"\nplugin = \"sum\"\n";
    let path = file_job(dir.path(), b"x\n", "", steps);
    let (_, line) = fails("check", &path);
    assert!(
        line.contains(
            "steps[0].op: reduce-by-key needs (key, value) records, but stream 'files' holds unkeyed records"
        ),
        "{line}"
    );
}

#[test]
fn check_prints_the_plan_and_set_overrides_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_job(dir.path(), b"x\n", "", WORD_COUNT);
    let output = run(
        &[
            "check",
            path.to_str().unwrap(),
            "--set",
            "job.workers=3",
            "--set",
            "steps.1.partitions=5",
        ],
        TIMEOUT,
    );
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(plan.contains("3 workers"), "{plan}");
    assert!(
        plan.contains("map side, one task per worker over its partitions of 'files'"),
        "{plan}"
    );
    assert!(
        plan.contains("flat-map: 'tokenize' [plugin tokenize (bundled)"),
        "{plan}"
    );
    assert!(
        plan.contains(
            "pre-combined by the transform over all of the task's partitions, then hash of key \
             -> 5 partitions"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("reduce side, 5 tasks: combine per key with 'sum'"),
        "{plan}"
    );
    assert!(plan.contains("-> 'steps[1]' (text, i64)"), "{plan}");

    let output = run(
        &[
            "check",
            path.to_str().unwrap(),
            "--set",
            "job.batch-interval=fast",
        ],
        TIMEOUT,
    );
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.contains("(with --set overrides)") && log.contains("job.batch-interval"),
        "{log}"
    );
}

#[test]
fn demo_runs_with_no_setup() {
    let output = run(&["demo", "--max-batches", "2"], TIMEOUT);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert_eq!(printed.matches("Time: ").count(), 2, "{printed}\n{log}");
    // Each batch: at most 10 (word,count) pairs of the lowercased text, then "..." for more.
    let pairs: Vec<&str> = printed.lines().filter(|l| l.starts_with('(')).collect();
    assert!(!pairs.is_empty() && pairs.len() <= 20, "{printed}");
    for pair in pairs {
        let (word, count) = pair[1..pair.len() - 1].rsplit_once(',').unwrap();
        assert!(
            word.chars().all(|c| !c.is_uppercase()) && count.parse::<u32>().unwrap() >= 1,
            "{pair}"
        );
    }
    assert!(
        printed.contains("\n...\n"),
        "the demo's batches hold more than 10 words\n{printed}"
    );
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `true` exits without reading: spate's output meets a closed pipe.
    let script = format!(
        "\"{}\" check \"{}\" | true",
        env!("CARGO_BIN_EXE_spate"),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/windowed-wordcount.toml")
            .display()
    );
    let output = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    let log = stderr(&output);
    assert!(!log.contains("panicked"), "{log}");
}
