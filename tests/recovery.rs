//! Fault tolerance, end to end: the real `spate` binary is killed with SIGKILL at random
//! moments and restarted, over a directory source and over a socket source whose producer
//! speaks the resume protocol. At the end, every word's total (map-with-state), every batch's
//! counts (reduce-by-key, one output directory per batch) and every window (reduce-by-key-and-
//! window with its inverse) must equal what a reference computes from what the producer sent:
//! nothing lost, nothing counted twice. `SPATE_CHAOS_KILLS` raises the number of kills (the
//! default, 20, is what CI runs).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::chaos::*;
use support::*;

const WINDOW_MS: u64 = 1000;

fn pipeline_text(out: &Path, checkpoints: &Path, source: &str) -> String {
    pipeline_with(out, checkpoints, source, "tokenize", "running-sum")
}

/// The test pipeline with `tokenize` splitting lines and `state_plugin` keeping the totals.
fn pipeline_with(
    out: &Path,
    checkpoints: &Path,
    source: &str,
    tokenize: &str,
    state_plugin: &str,
) -> String {
    let output = |from: &str| {
        format!(
            "[[outputs]]\nfrom = \"{from}\"\ntype = \"text-files\"\nprefix = \"{}/{from}\"\nsuffix = \"txt\"\n",
            out.display()
        )
    };
    format!(
        r#"
[job]
batch-interval = "100ms"
block-interval = "50ms"
checkpoint-dir = "{}"
checkpoint-interval = "500ms"

{source}

[[steps]]
name = "words"
op = "flat-map"
plugin = "{tokenize}"

[[steps]]
name = "counts"
op = "reduce-by-key"
plugin = "sum"
from = "words"

[[steps]]
name = "totals"
op = "map-with-state"
plugin = "{state_plugin}"
from = "words"

[[steps]]
name = "windowed"
op = "reduce-by-key-and-window"
plugin = "sum"
inverse-plugin = "subtract"
length = "{WINDOW_MS}ms"
slide = "200ms"
from = "words"

{}
{}
{}
# Exactly-once through a command: each partition's records replace the file named by the
# batch time and partition.
[[outputs]]
from = "counts"
type = "command"
command = ["sh", "-c", "mkdir -p {out}/by-command && cat > {out}/by-command/.$$ && mv {out}/by-command/.$$ {out}/by-command/$SPATE_BATCH_TIME-$SPATE_PARTITION"]
"#,
        checkpoints.display(),
        output("counts"),
        output("totals"),
        output("windowed"),
        out = out.display(),
    )
}

/// Checks the three outputs against the reference counts of everything sent.
fn verify(out: &Path, expected: &Counts, logs: &str) {
    let counts = text_outputs(out, "counts");
    let added_up = total(&counts);
    assert!(
        &added_up == expected,
        "per-batch counts, added up, differ from the input: {}",
        difference(&added_up, expected)
    );
    let mut by_command = Counts::new();
    for file in std::fs::read_dir(out.join("by-command")).unwrap() {
        let path = file.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
            parse_pairs(&std::fs::read_to_string(path).unwrap(), &mut by_command);
        }
    }
    assert!(
        &by_command == expected,
        "the command output's files differ from the input: {}",
        difference(&by_command, expected)
    );
    let mut last_totals = Counts::new();
    for batch in text_outputs(out, "totals").values() {
        last_totals.extend(batch.iter().map(|(w, n)| (w.clone(), *n)));
    }
    assert!(
        &last_totals == expected,
        "the running totals differ from the input: {}",
        difference(&last_totals, expected)
    );
    let windows = text_outputs(out, "windowed");
    assert!(windows.len() > 20, "too few windows: {}", windows.len());
    for (time, window) in &windows {
        let mut reference = Counts::new();
        for (_, batch) in counts.range(time.saturating_sub(WINDOW_MS) + 1..=*time) {
            for (w, n) in batch {
                *reference.entry(w.clone()).or_default() += n;
            }
        }
        assert_eq!(window, &reference, "window ending at {time}");
    }
    let recoveries = logs.matches("recovered job").count();
    let replays = logs.matches("replaying batch").count();
    assert!(
        recoveries >= kills() && replays > 0,
        "{recoveries} recoveries and {replays} replayed batches: the kills did not test recovery"
    );
}

#[test]
fn a_directory_job_killed_again_and_again_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir(&input).unwrap();
    let source = format!(
        "[sources.files]\ntype = \"directory\"\npath = \"{}\"\npoll-interval = \"50ms\"",
        input.display()
    );
    let pipeline = pipeline(
        dir.path(),
        &pipeline_text(&out, &dir.path().join("ck"), &source),
    );
    let mut rng = Rng(0x5eed_d1e5);
    let files: Vec<String> = (0..60).map(|_| lines(&mut rng, 400)).collect();
    let expected = reference_counts(&files.concat(), false, false);
    let feeder = {
        let (files, input) = (files.clone(), input.clone());
        let started = dir.path().join("ck");
        std::thread::spawn(move || {
            // Files present before the job first starts are not new: they are not read.
            assert!(eventually(Duration::from_secs(30), || started.exists()));
            for (i, text) in files.iter().enumerate() {
                let staged = input.join(format!(".f{i:03}"));
                std::fs::write(&staged, text).unwrap();
                std::fs::rename(&staged, input.join(format!("f{i:03}.txt"))).unwrap();
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let logs = chaos(dir.path(), &pipeline, &mut rng, || {
        feeder.is_finished() && total(&text_outputs(&out, "counts")) == expected
    });
    verify(&out, &expected, &logs);
}

/// A producer speaking the resume protocol: on each connection it reads `RESUME <offset>` and
/// sends its text from that byte, about 100 KB/s, then idles; `ACK` lines are read and ignored.
fn resume_protocol_producer(text: Arc<Vec<u8>>, stop: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let (text, stop) = (text.clone(), stop.clone());
                    std::thread::spawn(move || serve(stream, &text, &stop));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    port
}

fn serve(stream: TcpStream, text: &[u8], stop: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let offset: usize = first
        .strip_prefix("RESUME ")
        .and_then(|o| o.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected RESUME, got {first:?}"));
    assert!(offset <= text.len(), "resume past the end: {offset}");
    assert!(
        offset == 0 || text[offset - 1] == b'\n',
        "resume offset {offset} is not at a line start"
    );
    std::thread::spawn(move || for _ in reader.lines().map_while(Result::ok) {});
    let mut stream = stream;
    for chunk in text[offset..].chunks(1000) {
        if stop.load(Ordering::SeqCst) || stream.write_all(chunk).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    while !stop.load(Ordering::SeqCst) && stream.write_all(b"").is_ok() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_socket_job_killed_again_and_again_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut rng = Rng(0xfeed_beef);
    let text = lines(&mut rng, 40_000);
    let expected = reference_counts(&text, false, false);
    let stop = Arc::new(AtomicBool::new(false));
    let port = resume_protocol_producer(Arc::new(text.into_bytes()), stop.clone());
    let source = format!(
        "[sources.lines]\ntype = \"socket\"\nhost = \"127.0.0.1\"\nport = {port}\nresume-protocol = true\nreconnect-max = \"200ms\""
    );
    let pipeline = pipeline(
        dir.path(),
        &pipeline_text(&out, &dir.path().join("ck"), &source),
    );
    let logs = chaos(dir.path(), &pipeline, &mut rng, || {
        total(&text_outputs(&out, "counts")) == expected
    });
    stop.store(true, Ordering::SeqCst);
    verify(&out, &expected, &logs);
}

/// A job over `in/`, reading the files already there, with its checkpoints in `ck/`.
struct FileJob {
    dir: tempfile::TempDir,
    sent: String,
    files: usize,
}

impl FileJob {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        FileJob {
            dir,
            sent: String::new(),
            files: 0,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn add_file(&mut self, rng: &mut Rng, lines_count: usize) {
        let text = lines(rng, lines_count);
        std::fs::write(self.path(&format!("in/f{}.txt", self.files)), &text).unwrap();
        self.sent.push_str(&text);
        self.files += 1;
    }

    fn pipeline(&self, state_plugin: &str) -> std::path::PathBuf {
        self.pipeline_with("tokenize", state_plugin)
    }

    fn pipeline_with(&self, tokenize: &str, state_plugin: &str) -> std::path::PathBuf {
        let source = format!(
            "[sources.files]\ntype = \"directory\"\npath = \"{}\"\ninclude-existing = true\npoll-interval = \"50ms\"",
            self.path("in").display()
        );
        pipeline(
            self.dir.path(),
            &pipeline_with(
                &self.path("out"),
                &self.path("ck"),
                &source,
                tokenize,
                state_plugin,
            ),
        )
    }

    /// Runs `batches` batches; returns the output.
    fn run(&self, state_plugin: &str, extra: &[&str], batches: u32) -> std::process::Output {
        self.run_with("tokenize", state_plugin, extra, batches)
    }

    /// Runs `batches` batches with these plugins; returns the output.
    fn run_with(
        &self,
        tokenize: &str,
        state_plugin: &str,
        extra: &[&str],
        batches: u32,
    ) -> std::process::Output {
        let pipeline = self.pipeline_with(tokenize, state_plugin);
        let batches = batches.to_string();
        let mut args = vec!["run", pipeline.to_str().unwrap(), "--max-batches", &batches];
        args.extend_from_slice(extra);
        run(&args, Duration::from_secs(60))
    }

    fn checkpoints(&self) -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(self.path("ck"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "spc"))
            .collect();
        found.sort();
        found
    }

    /// Every word's last running total, against the reference of everything sent.
    fn assert_totals(&self) {
        let mut last = Counts::new();
        for batch in text_outputs(&self.path("out"), "totals").values() {
            last.extend(batch.iter().map(|(w, n)| (w.clone(), *n)));
        }
        let expected = reference_counts(&self.sent, false, false);
        assert!(last == expected, "{}", difference(&last, &expected));
        let added_up = total(&text_outputs(&self.path("out"), "counts"));
        assert!(added_up == expected, "{}", difference(&added_up, &expected));
    }
}

fn succeeded(output: &std::process::Output) -> String {
    let log = stderr(output);
    assert!(output.status.success(), "spate failed:\n{log}");
    log
}

#[test]
fn a_damaged_newest_checkpoint_is_skipped_for_the_previous_one() {
    let mut job = FileJob::new();
    let mut rng = Rng(0xc0ff_ee11);
    job.add_file(&mut rng, 500);
    let log = succeeded(&job.run("running-sum", &[], 12));
    assert!(log.contains("no checkpoint in"), "{log}");
    for damage in ["flip", "truncate"] {
        let newest = job.checkpoints().pop().unwrap();
        let mut bytes = std::fs::read(&newest).unwrap();
        if damage == "flip" {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x5a;
        } else {
            bytes.truncate(bytes.len() / 2);
        }
        std::fs::write(&newest, &bytes).unwrap();
        job.add_file(&mut rng, 500);
        let log = succeeded(&job.run("running-sum", &[], 12));
        let name = newest.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            log.contains("skipping a damaged checkpoint")
                && log.contains(&name)
                && log.contains("checksum mismatch"),
            "{damage}: {log}"
        );
        assert!(
            log.contains("recovered job 'pipeline' from checkpoint"),
            "{log}"
        );
        job.assert_totals();
    }
}

#[test]
fn a_state_operator_upgrade_keeps_the_state_under_the_same_schema_version_or_after_a_migration() {
    let mut job = FileJob::new();
    let mut rng = Rng(0xab5e_1100);
    job.add_file(&mut rng, 400);
    succeeded(&job.run("running-sum", &[], 8));
    job.assert_totals();
    // Another build of tokenize (its bytes differ: a custom section is appended): it keeps no
    // state, so the change is only reported and the totals go on.
    let mut rebuilt = spate::bundled::plugin("tokenize").unwrap().to_vec();
    rebuilt.extend_from_slice(&[0, 9, 8]);
    rebuilt.extend_from_slice(b"rebuilt!");
    let rebuilt_path = job.path("tokenize-rebuilt.wasm");
    std::fs::write(&rebuilt_path, rebuilt).unwrap();
    job.add_file(&mut rng, 400);
    let log = succeeded(&job.run_with(rebuilt_path.to_str().unwrap(), "running-sum", &[], 8));
    assert!(
        log.contains("upgrade: step 0 'words'")
            && log.contains("it keeps no state, so its new code simply runs"),
        "{log}"
    );
    job.assert_totals();
    // New code, same state schema: the totals go on from the checkpoint.
    let patched = test_plugin("running-sum-patched");
    job.add_file(&mut rng, 400);
    let log = succeeded(&job.run(patched.to_str().unwrap(), &[], 8));
    assert!(
        log.contains("upgrade: the state operator of step 2 'totals'")
            && log.contains("same state schema version 1: it resumes with its state"),
        "{log}"
    );
    job.assert_totals();
    // Another state schema version: refused, saying what changed and what can be done.
    let v2 = test_plugin("running-sum-v2");
    let output = job.run(v2.to_str().unwrap(), &[], 8);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("changed its state schema version from 1 to 2")
            && log.contains("spate migrate")
            && log.contains("--fresh"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // A one-shot migration operator converts the state; version 2 then goes on from it.
    let v2_pipeline = job.pipeline(v2.to_str().unwrap());
    let migration = test_plugin("running-sum-migrate-v2");
    let output = run(
        &[
            "migrate",
            v2_pipeline.to_str().unwrap(),
            "--step",
            "totals",
            "--with",
            migration.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        report.contains("from schema version 1 to 2")
            && report.contains("keys converted, 0 dropped"),
        "{report}"
    );
    job.add_file(&mut rng, 400);
    succeeded(&job.run(v2.to_str().unwrap(), &[], 8));
    job.assert_totals();
    // --fresh starts over with the old checkpoints kept aside.
    let log = succeeded(&job.run(v2.to_str().unwrap(), &["--fresh"], 4));
    assert!(log.contains("moved to"), "{log}");
    let aside = std::fs::read_dir(job.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("ck.before-")
        })
        .count();
    assert_eq!(aside, 1);
}

#[test]
fn a_changed_state_layout_is_refused_naming_the_change() {
    let mut job = FileJob::new();
    let mut rng = Rng(0x001a_4007);
    job.add_file(&mut rng, 100);
    succeeded(&job.run("running-sum", &[], 4));
    let pipeline = job.pipeline("running-sum");
    let output = run(
        &[
            "run",
            pipeline.to_str().unwrap(),
            "--max-batches",
            "2",
            "--set",
            "steps.3.length=2s",
        ],
        Duration::from_secs(60),
    );
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("state layout changed")
            && log.contains("was 'windowed': reduce-by-key-and-window, window 1000 ms")
            && log.contains("is now 'windowed': reduce-by-key-and-window, window 2000 ms"),
        "{log}"
    );
}

#[test]
fn a_full_disk_fails_the_job_clearly_and_leaves_nothing_recovery_would_trust() {
    let mut job = FileJob::new();
    let mut rng = Rng(0xd15c_f011);
    job.add_file(&mut rng, 20_000);
    let ck = job.path("ck");
    std::fs::create_dir(&ck).unwrap();
    let pipeline = job.pipeline("running-sum");
    // A 256 KiB tmpfs holds the first checkpoint but not the first batch's input. It is
    // mounted in a private user and mount namespace, so the test needs no privileges; the
    // second run sees the same mount, made larger, as an operator freeing space would.
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs {ck} || exit 90
         \"$SPATE\" run {pipeline} --max-batches 20; echo \"first exit $?\" >&2
         ls -a {ck} {ck}/batches | sed 's/^/listed: /' >&2
         mount -o remount,size=64m {ck} || exit 91
         \"$SPATE\" run {pipeline} --max-batches 20; echo \"second exit $?\" >&2",
        ck = ck.display(),
        pipeline = pipeline.display()
    );
    let output = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .env("SPATE", env!("CARGO_BIN_EXE_spate"))
        .env(
            "SPATE_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("spate-cache"),
        )
        .env("SPATE_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("unshare (util-linux) runs the test in its own mount namespace");
    let log = stderr(&output);
    assert!(
        output.status.success(),
        "the namespace script failed:\n{log}"
    );
    assert!(
        log.contains("No space left on device") && log.contains("batch log"),
        "{log}"
    );
    assert!(log.contains("first exit 1"), "{log}");
    let listed: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("listed: "))
        .collect();
    assert!(
        !listed
            .iter()
            .any(|f| f.ends_with(".tmp") || f.ends_with(".log")),
        "a staged file or a batch log was left behind: {listed:?}"
    );
    assert_eq!(
        listed.iter().filter(|f| f.ends_with(".spc")).count(),
        1,
        "only the first checkpoint: {listed:?}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("second exit 0"), "{log}");
    job.assert_totals();
}

#[test]
fn a_second_run_of_a_job_is_refused_while_the_first_holds_its_checkpoints() {
    let mut job = FileJob::new();
    job.add_file(&mut Rng(0x0fff_1234), 10);
    let pipeline = job.pipeline("running-sum");
    let first = spate()
        .args(["run", pipeline.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(20), || job
        .path("ck/LOCK")
        .exists()));
    let second = job.run("running-sum", &[], 5);
    let log = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{log}");
    assert!(
        log.contains("is in use by another spate process")
            && log.contains(&format!("pid {}", first.id())),
        "{log}"
    );
    interrupt(&first);
    let output = wait(first, Duration::from_secs(20));
    assert!(output.status.success(), "{}", stderr(&output));
}
