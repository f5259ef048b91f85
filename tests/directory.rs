//! The directory source end to end: files moved in while the job runs, and available-now over
//! the files already there.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn pipeline_text(input: &Path, prefix: &Path, job: &str, source: &str) -> String {
    format!(
        r#"
[job]
batch-interval = "500ms"
block-interval = "100ms"
{job}

[sources.files]
type = "directory"
path = "{}"
poll-interval = "50ms"
{source}

[[steps]]
op = "flat-map"
plugin = "tokenize"
params = {{ lowercase = true, strip-punctuation = true }}

[[steps]]
op = "reduce-by-key"
plugin = "sum"

[[outputs]]
type = "text-files"
prefix = "{}"
suffix = "txt"
"#,
        input.display(),
        prefix.display()
    )
}

/// Writes a file next to the watched directory, then renames it in (an atomic appearance).
fn drop_file(staging: &Path, input: &Path, name: &str, text: &str) {
    let tmp = staging.join(name);
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, input.join(name)).unwrap();
}

#[test]
fn files_appearing_while_the_job_runs_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let (input, staging) = (dir.path().join("in"), dir.path().join("staging"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(input.join("old.txt"), "present before the start\n").unwrap();
    let prefix = dir.path().join("out/wc");
    let path = pipeline(dir.path(), &pipeline_text(&input, &prefix, "", ""));
    let child = spate()
        .args(["run", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let texts = [
        "To be, or not to be: that is the question.\n",
        "Whether 'tis nobler in the mind to suffer\nthe slings",
    ];
    std::thread::sleep(Duration::from_millis(800));
    drop_file(&staging, &input, "a.txt", texts[0]);
    std::thread::sleep(Duration::from_millis(1200));
    drop_file(&staging, &input, "b.txt", texts[1]);
    drop_file(&staging, &input, ".hidden", "ignored hidden file\n");

    let expected = reference_counts(&texts.concat(), true, true);
    let out_dir = prefix.parent().unwrap().to_owned();
    let complete = eventually(Duration::from_secs(10), || {
        total(&text_outputs(&out_dir, "wc")) == expected
    });
    // Let a few more batches pass: nothing may be counted twice.
    std::thread::sleep(Duration::from_millis(1200));
    interrupt(&child);
    let output = wait(child, Duration::from_secs(20));
    let log = stderr(&output);
    assert!(complete, "totals never matched\n{log}");
    assert_eq!(total(&text_outputs(&out_dir, "wc")), expected, "{log}");
    assert!(output.status.success(), "{log}");
}

#[test]
fn available_now_reads_existing_files_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut all = String::new();
    for i in 0..5 {
        // Many small blocks: 2 KiB blocks over ~20 KiB files make several partitions per batch.
        let text: String = (0..400)
            .map(|j| format!("Word{} w{} shared line {i}\n", j % 17, j % 5))
            .collect();
        std::fs::write(input.join(format!("f{i}.txt")), &text).unwrap();
        all.push_str(&text);
    }
    std::fs::write(input.join("last.txt"), "no trailing newline").unwrap();
    all.push_str("no trailing newline\n");
    let prefix = dir.path().join("out/wc");
    let text = pipeline_text(
        &input,
        &prefix,
        "trigger = \"available-now\"\nmax-block-bytes = \"2 KiB\"\nmax-batch-bytes = \"16 KiB\"",
        "",
    );
    let path = pipeline(dir.path(), &text);
    let output = run(&["run", path.to_str().unwrap()], Duration::from_secs(60));
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    let batches = text_outputs(prefix.parent().unwrap(), "wc");
    assert!(
        batches.len() >= 5,
        "16 KiB batches over ~100 KiB: several batches, got {}\n{log}",
        batches.len()
    );
    assert_eq!(total(&batches), reference_counts(&all, true, true));
    assert!(log.contains("summary:"), "{log}");
}
