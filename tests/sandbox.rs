//! The hostile plugin suite: each misbehaving operator runs as a real job next to a
//! well-behaved word count in one `spate run` process. Every test asserts the hostile job's
//! clear error, the host's survival (a normal exit, no host panic), and the well-behaved job's
//! exact output.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use support::*;

const GOOD_TEXT: &str = "the quick brown fox\njumps over the lazy dog\nthe dog sleeps\n";

/// A temporary directory holding the well-behaved job and whatever a hostile job needs.
struct Arena {
    dir: tempfile::TempDir,
}

impl Arena {
    fn new() -> Arena {
        let arena = Arena {
            dir: tempfile::tempdir().unwrap(),
        };
        let input = arena.path().join("good-in");
        std::fs::create_dir(&input).unwrap();
        std::fs::write(input.join("text.txt"), GOOD_TEXT).unwrap();
        std::fs::create_dir(arena.path().join("hostile-in")).unwrap();
        std::fs::write(
            arena.path().join("hostile-in/lines.txt"),
            "one line\nanother\n",
        )
        .unwrap();
        std::fs::write(
            arena.path().join("good.toml"),
            format!(
                r#"[job]
name = "good"
trigger = "available-now"
workers = 2

[sources.text]
type = "directory"
path = "{input}"
include-existing = true

[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
op = "reduce-by-key"
plugin = "sum"

[[outputs]]
type = "text-files"
prefix = "{out}/wc"
suffix = "txt"
"#,
                input = input.display(),
                out = arena.path().join("good-out").display()
            ),
        )
        .unwrap();
        arena
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes the hostile job: one map-partitions step with `plugin` and `step_extra` (params,
    /// limits, grants), and `job_extra` in its [job] table.
    fn hostile(&self, plugin: &Path, job_extra: &str, step_extra: &str) -> PathBuf {
        let path = self.path().join("hostile.toml");
        std::fs::write(
            &path,
            format!(
                r#"[job]
name = "hostile"
trigger = "available-now"
workers = 2
{retries}{job_extra}

[sources.lines]
type = "directory"
path = "{input}"
include-existing = true

[[steps]]
op = "map-partitions"
plugin = "{plugin}"
{step_extra}

[[outputs]]
type = "print"
num = 1000
"#,
                input = self.path().join("hostile-in").display(),
                plugin = plugin.display(),
                // Retries only repeat a deterministic failure: off unless a test sets them.
                retries = if job_extra.contains("task-retries") {
                    ""
                } else {
                    "task-retries = 0\n"
                },
            ),
        )
        .unwrap();
        path
    }

    /// Runs the well-behaved job and `hostile` in one process.
    fn run_side_by_side(&self, hostile: &Path) -> Output {
        // A test may run several hostile jobs in one arena: each run counts from scratch.
        let _ = std::fs::remove_dir_all(self.path().join("good-out"));
        let good = self.path().join("good.toml");
        let output = run(
            &["run", good.to_str().unwrap(), hostile.to_str().unwrap()],
            Duration::from_secs(120),
        );
        assert_host_survived(&output);
        self.assert_good_output();
        output
    }

    /// The well-behaved job counted exactly the words of its input.
    fn assert_good_output(&self) {
        let counts = total(&text_outputs(&self.path().join("good-out"), "wc"));
        assert_eq!(counts, reference_counts(GOOD_TEXT, true, true));
    }
}

/// The process ended on its own with exit code 1 (a job failed), without a host panic.
fn assert_host_survived(output: &Output) {
    let log = stderr(output);
    assert_eq!(output.status.code(), Some(1), "exit status\n{log}");
    // Host code lives under runtime/src; a guest's panic message names its own sources.
    assert!(
        !log.contains("panicked at runtime/"),
        "the host panicked\n{log}"
    );
    assert!(
        log.contains("1 of 2 jobs failed") && !log.contains("job 'good' failed"),
        "only the hostile job fails\n{log}"
    );
}

/// Runs the hostile plugin with `attack` next to the good job and returns the log.
fn attack(arena: &Arena, attack: &str, job_extra: &str, step_extra: &str) -> String {
    let hostile = arena.hostile(
        &test_plugin("hostile"),
        job_extra,
        &format!("params = {{ attack = \"{attack}\" {step_extra} }}"),
    );
    stderr(&arena.run_side_by_side(&hostile))
}

/// The one-line error of the failed hostile job, in the list of failed jobs.
fn failure_line(log: &str) -> &str {
    log.lines()
        .skip_while(|l| !l.contains("jobs failed:"))
        .find(|l| l.contains("job 'hostile' failed") || l.contains("hostile.toml"))
        .unwrap_or_else(|| panic!("no failure line\n{log}"))
}

#[test]
fn an_infinite_loop_hits_the_call_time_limit() {
    let arena = Arena::new();
    let hostile = arena.hostile(
        &test_plugin("hostile"),
        "[job.limits]\ncall-time = \"300ms\"",
        "params = { attack = \"loop\" }",
    );
    let log = stderr(&arena.run_side_by_side(&hostile));
    let line = failure_line(&log);
    assert!(
        line.contains("exceeded its call-time limit of 300ms")
            && line.contains("step 0 'hostile'")
            && line.contains("spate:operator/transform@0.1.0#process"),
        "{line}"
    );
}

#[test]
fn a_memory_bomb_is_refused_at_the_memory_limit() {
    let arena = Arena::new();
    let hostile = arena.hostile(
        &test_plugin("hostile"),
        "",
        "params = { attack = \"memory-bomb\" }\nlimits = { memory = \"32 MiB\" }",
    );
    let log = stderr(&arena.run_side_by_side(&hostile));
    let line = failure_line(&log);
    assert!(
        line.contains("exceeded its memory limit of 32 MiB")
            && line.contains("grow a linear memory to"),
        "{line}"
    );
}

#[test]
fn unbounded_recursion_overflows_the_wasm_stack() {
    let arena = Arena::new();
    let log = attack(&arena, "recursion", "", "");
    let line = failure_line(&log);
    // Rust keeps its stack in linear memory: the overflow runs off its bottom, a memory trap
    // the host explains; a language using the Wasm stack exhausts that one instead.
    assert!(
        line.contains("trapped in spate:operator/transform@0.1.0#process")
            && line.contains("unbounded recursion?"),
        "{line}"
    );
}

#[test]
fn a_flat_map_without_end_is_stopped_by_a_limit() {
    let arena = Arena::new();
    let hostile = arena.hostile(
        &test_plugin("hostile"),
        "[job.limits]\nmemory = \"64 MiB\"\ncall-time = \"5s\"",
        "params = { attack = \"flood\" }",
    );
    let log = stderr(&arena.run_side_by_side(&hostile));
    let line = failure_line(&log);
    assert!(
        line.contains("exceeded its memory limit of 64 MiB")
            || line.contains("exceeded its call-time limit"),
        "{line}"
    );
}

#[test]
fn output_past_the_per_call_cap_fails_the_call() {
    let arena = Arena::new();
    let log = attack(
        &arena,
        "emit",
        "[job.limits]\noutput-records = 1000",
        ", copies = 600",
    );
    let line = failure_line(&log);
    assert!(
        line.contains("exceeded its output-records limit of 1000")
            && line.contains("return 1200 records from one call"),
        "{line}"
    );
}

#[test]
fn host_files_and_the_working_directory_are_out_of_reach() {
    let arena = Arena::new();
    let log = attack(&arena, "read-file", "", ", path = \"/etc/passwd\"");
    assert!(
        failure_line(&log).contains("read-file /etc/passwd refused"),
        "{log}"
    );
    assert!(!log.contains("root:"), "/etc/passwd leaked\n{log}");
    let log = attack(&arena, "list-dir", "", ", path = \".\"");
    assert!(failure_line(&log).contains("list-dir . refused"), "{log}");
}

#[test]
fn sockets_are_refused() {
    let arena = Arena::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let log = attack(&arena, "connect", "", &format!(", address = \"{address}\""));
    assert!(
        failure_line(&log).contains(&format!("connect {address} refused")),
        "{log}"
    );
    assert!(
        listener.accept().is_err(),
        "the operator reached the listener"
    );
}

#[test]
fn the_environment_and_arguments_are_invisible() {
    let arena = Arena::new();
    let good = arena.path().join("good.toml");
    let hostile = arena.hostile(&test_plugin("hostile"), "", "params = { attack = \"env\" }");
    let output = support::spate()
        .env("SPATE_TEST_SECRET", "hunter2")
        .args(["run", good.to_str().unwrap(), hostile.to_str().unwrap()])
        .output()
        .unwrap();
    assert_host_survived(&output);
    arena.assert_good_output();
    let log = stderr(&output);
    assert!(
        failure_line(&log).contains("env refused: no environment variables or arguments"),
        "{log}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("hunter2"));
}

/// A granted directory `granted/` with a file inside, a secret beside it, and a symlink
/// from inside to the secret.
fn granted_tree(arena: &Arena) -> String {
    let granted = arena.path().join("granted");
    std::fs::create_dir(&granted).unwrap();
    std::fs::write(granted.join("inside.txt"), "visible line\n").unwrap();
    std::fs::write(arena.path().join("secret.txt"), "the secret\n").unwrap();
    std::os::unix::fs::symlink(arena.path().join("secret.txt"), granted.join("link")).unwrap();
    format!(
        "[[steps.grants.dirs]]\npath = \"{}\"\nguest-path = \"/granted\"",
        granted.display()
    )
}

#[test]
fn dot_dot_and_symlinks_cannot_leave_a_granted_directory() {
    let arena = Arena::new();
    let grant = granted_tree(&arena);
    for path in ["/granted/../secret.txt", "/granted/link"] {
        let hostile = arena.hostile(
            &test_plugin("hostile"),
            "",
            &format!("params = {{ attack = \"read-file\", path = \"{path}\" }}\n{grant}"),
        );
        let output = arena.run_side_by_side(&hostile);
        let log = stderr(&output);
        assert!(
            failure_line(&log).contains(&format!("read-file {path} refused")),
            "{log}"
        );
        assert!(!String::from_utf8_lossy(&output.stdout).contains("the secret"));
    }
}

#[test]
fn a_read_only_grant_reads_but_does_not_write() {
    let arena = Arena::new();
    let grant = granted_tree(&arena);
    let read = arena.hostile(
        &test_plugin("hostile"),
        "",
        &format!("params = {{ attack = \"read-file\", path = \"/granted/inside.txt\" }}\n{grant}"),
    );
    let output = run(&["run", read.to_str().unwrap()], Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("visible line"));

    let write = arena.hostile(
        &test_plugin("hostile"),
        "",
        &format!("params = {{ attack = \"write-file\", path = \"/granted/new.txt\" }}\n{grant}"),
    );
    let log = stderr(&arena.run_side_by_side(&write));
    assert!(
        failure_line(&log).contains("write-file /granted/new.txt refused"),
        "{log}"
    );
    assert!(!arena.path().join("granted/new.txt").exists());
}

/// A FIFO in a granted directory: opening it to read waits for a writer, and opening it to
/// write waits for a reader, inside the host (where `call-time` used to reach no further than
/// the Wasm code), holding the worker and a host thread for ever. Both opens are refused at
/// once, and the good job beside it is untouched.
#[test]
fn a_fifo_in_a_granted_directory_is_refused_not_waited_on() {
    let arena = Arena::new();
    let granted = arena.path().join("granted");
    std::fs::create_dir(&granted).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(granted.join("fifo"))
        .status()
        .unwrap();
    assert!(made.success());
    for (attack, mode) in [("read-file", "read-only"), ("write-file", "read-write")] {
        let hostile = arena.hostile(
            &test_plugin("hostile"),
            // A wait that is bounded but not refused would end at this limit, and say so.
            "[job.limits]\ncall-time = \"20s\"",
            &format!(
                "params = {{ attack = \"{attack}\", path = \"/granted/fifo\" }}\n\
                 [[steps.grants.dirs]]\npath = \"{}\"\nguest-path = \"/granted\"\nmode = \"{mode}\"",
                granted.display()
            ),
        );
        let log = stderr(&arena.run_side_by_side(&hostile));
        let line = failure_line(&log);
        // Refused, not ended by the call-time limit (a bounded but endless wait).
        assert!(
            line.contains(&format!("{attack} /granted/fifo refused"))
                && line.to_lowercase().contains("permission denied"),
            "{log}"
        );
    }
}

#[test]
fn a_panic_fails_the_task_with_its_message() {
    let arena = Arena::new();
    let log = attack(&arena, "panic", "", "");
    let line = failure_line(&log);
    assert!(
        line.contains("trapped in spate:operator/transform@0.1.0#process")
            && line.contains("hostile operator panicked on purpose"),
        "{line}"
    );
}

#[test]
fn a_malformed_batch_is_refused() {
    let arena = Arena::new();
    let hostile = arena.hostile(&test_plugin("malformed"), "", "");
    let log = stderr(&arena.run_side_by_side(&hostile));
    let line = failure_line(&log);
    assert!(
        line.contains("returned a malformed batch from spate:operator/transform@0.1.0#process"),
        "{line}"
    );
}

#[test]
fn unloadable_plugins_fail_their_own_job_only() {
    let arena = Arena::new();
    let core_module = arena.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let mut corrupt = std::fs::read(test_plugin("hostile")).unwrap();
    corrupt.truncate(corrupt.len() / 2);
    let corrupt_path = arena.path().join("corrupt.wasm");
    std::fs::write(&corrupt_path, corrupt).unwrap();
    let cases = [
        (
            test_plugin("wit-mismatch"),
            "exports spate:operator/transform@0.2.0, built against another version",
        ),
        (core_module, "a core Wasm module, not a component"),
        (corrupt_path, "the plugin is not a valid Wasm component"),
    ];
    for (plugin, expected) in cases {
        let hostile = arena.hostile(&plugin, "", "");
        let log = stderr(&arena.run_side_by_side(&hostile));
        let line = failure_line(&log);
        assert!(
            line.contains("hostile.toml") && line.contains(expected),
            "{plugin:?}: {line}"
        );
    }
}

/// Runs the `clock` attack alone and returns its two output lines.
fn clock_readings(arena: &Arena, grants: &str) -> Vec<String> {
    let hostile = arena.hostile(
        &test_plugin("hostile"),
        "",
        &format!("params = {{ attack = \"clock\" }}\n{grants}"),
    );
    let output = run(&["run", hostile.to_str().unwrap()], Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut readings: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("wall=") || l.starts_with("random="))
        .map(str::to_owned)
        .collect();
    readings.sort();
    readings.dedup();
    readings
}

#[test]
fn clocks_and_randomness_are_deterministic_unless_granted() {
    let arena = Arena::new();
    let first = clock_readings(&arena, "");
    assert!(first.contains(&"wall=0".to_owned()), "{first:?}");
    assert_eq!(first, clock_readings(&arena, ""), "a replay reads the same");
    let granted = clock_readings(&arena, "[steps.grants]\nclocks = true\nrandom = true");
    let wall: i64 = granted
        .iter()
        .find_map(|l| l.strip_prefix("wall="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(wall > 1_700_000_000_000, "{granted:?}");
}

#[test]
fn skip_policy_dead_letters_the_failed_partition_and_goes_on() {
    let arena = Arena::new();
    let dead = arena.path().join("dead");
    let hostile = arena.hostile(
        &test_plugin("panicky"),
        &format!(
            // Tiny blocks: each line is a partition of its own, so only the bad one is skipped.
            "task-retries = 1\non-task-failure = \"skip\"\ndead-letter-dir = \"{}\"\n\
             max-block-bytes = 4\nmax-buffered-bytes = 1024",
            dead.display()
        ),
        "",
    );
    std::fs::write(arena.path().join("hostile-in/boom.txt"), "boom\n").unwrap();
    let output = run(&["run", hostile.to_str().unwrap()], Duration::from_secs(60));
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("1 task retries"), "{log}");
    assert!(log.contains("input records dead-lettered"), "{log}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("one line") && stdout.contains("another"),
        "{stdout}"
    );
    let letters: Vec<String> = std::fs::read_dir(&dead)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(letters.iter().any(|t| t.contains("boom")), "{letters:?}");
    assert!(
        letters
            .iter()
            .any(|t| t.contains("panicky operator hit its trigger line")),
        "{letters:?}"
    );
}

/// The tokenize plugin holds its pre-combined output over all of a worker's partitions of a
/// batch (WIT `deferred-combine`). When one of those partitions fails, the share runs again
/// partition by partition: only the bad one is retried and skipped, and the words held from the
/// others are neither lost nor counted twice. Tokenize is a `map` step here (one word per line):
/// its output, combined per key on request, has fewer records than lines without breaking the
/// map's one-record-per-record promise.
#[test]
fn a_failure_while_output_is_held_reruns_the_partitions_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let (input, dead) = (dir.path().join("in"), dir.path().join("dead"));
    std::fs::create_dir_all(&input).unwrap();
    let mut files: Vec<String> = (0..40).map(|i| format!("word{}\n", i % 7)).collect();
    // A partition repeating a word: combined, it leaves fewer records than it has lines.
    files.push("word1\nword1\nword2\n".into());
    let good = files.concat();
    files.insert(23, "boom\n".into());
    // A file each: with tiny blocks, each becomes a partition of its own.
    for (i, text) in files.iter().enumerate() {
        std::fs::write(input.join(format!("{i:02}.txt")), text).unwrap();
    }
    let path = pipeline(
        dir.path(),
        &format!(
            r#"[job]
trigger = "available-now"
workers = 1
# Tiny blocks: every line is a partition, and all of them one worker's share of one batch.
max-block-bytes = 4
max-buffered-bytes = 4096
task-retries = 1
on-task-failure = "skip"
dead-letter-dir = "{dead}"

[sources.files]
type = "directory"
path = "{input}"
include-existing = true

[[steps]]
op = "map"
plugin = "{panicky}"

[[steps]]
op = "map"
plugin = "tokenize"

[[steps]]
op = "reduce-by-key"
plugin = "sum"

[[outputs]]
type = "print"
num = 1000
"#,
            dead = dead.display(),
            input = input.display(),
            panicky = test_plugin("panicky").display(),
        ),
    );
    let plan = run(&["check", path.to_str().unwrap()], Duration::from_secs(60));
    let described = String::from_utf8_lossy(&plan.stdout);
    assert!(
        described.contains("one task per worker over its partitions"),
        "{described}"
    );
    let output = run(&["run", path.to_str().unwrap()], Duration::from_secs(60));
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("running them one at a time"), "{log}");
    assert!(log.contains("1 task retries"), "{log}");
    assert_eq!(
        printed_counts(&output.stdout),
        reference_counts(&good, false, false)
    );
    let letters: Vec<String> = std::fs::read_dir(&dead)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(letters.iter().any(|t| t == "boom\n"), "{letters:?}");
    assert!(
        !letters.iter().any(|t| t.contains("word")),
        "only the bad partition is dead-lettered: {letters:?}"
    );
}

#[test]
fn check_prints_grants_and_limits_and_refuses_a_missing_granted_directory() {
    let arena = Arena::new();
    let grant = granted_tree(&arena);
    let pipeline = arena.hostile(
        &test_plugin("hostile"),
        "[job.limits]\nmemory = \"64 MiB\"",
        &format!("params = {{ attack = \"none\" }}\n{grant}"),
    );
    let output = run(
        &["check", pipeline.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout.contains("granted") && stdout.contains("as /granted (read-only)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("limits: memory 64 MiB, call-time 10s"),
        "{stdout}"
    );

    std::fs::remove_dir_all(arena.path().join("granted")).unwrap();
    let output = run(
        &["check", pipeline.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.contains("steps[0].grants.dirs[0].path: granted directory")
            && log.contains("does not exist"),
        "{log}"
    );
}

/// An operator's text reaches the log, the summary and the dead letters as one escaped,
/// capped line: a forged batch line of another job never starts a line of the log, no terminal
/// escape gets through, and a 1 MiB error message, repeated per retry and partition, stays
/// short everywhere it is shown.
#[test]
fn guest_text_can_neither_forge_log_lines_nor_flood_them() {
    let arena = Arena::new();
    let dead = arena.path().join("dead");
    let hostile = arena.hostile(
        &test_plugin("hostile"),
        &format!(
            "task-retries = 1\non-task-failure = \"skip\"\ndead-letter-dir = \"{}\"",
            dead.display()
        ),
        "params = { attack = \"forge\" }",
    );
    let output = run(&["run", hostile.to_str().unwrap()], Duration::from_secs(60));
    let raw = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{raw}");
    assert!(
        !raw.contains('\u{1b}') && !raw.contains('\r'),
        "escapes got through"
    );
    assert!(
        !raw.contains('\u{202e}'),
        "a bidirectional override got through"
    );
    for line in raw.lines() {
        assert!(
            !line.starts_with("2026-12-03T00:00:00Z") && !line.trim_start().starts_with("FORGED"),
            "a forged line: {line}"
        );
    }
    assert!(
        raw.contains("FORGED-LINE"),
        "the guest's text is shown, escaped\n{raw}"
    );
    assert!(raw.contains("more bytes cut"), "the message is cut\n{raw}");
    // Two attempts of one partition, each logged with its message: far below the 2 MiB sent.
    assert!(raw.len() < 64 << 10, "the log holds {} bytes", raw.len());
    let letters: Vec<(String, String)> = std::fs::read_dir(&dead)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    let errors: Vec<&(String, String)> = letters
        .iter()
        .filter(|(p, _)| p.ends_with(".error"))
        .collect();
    assert!(!errors.is_empty(), "{letters:?}");
    for (path, text) in errors {
        assert!(text.len() < 16 << 10, "{path} holds {} bytes", text.len());
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{path}");
        assert!(text.contains("FORGED-LINE"), "{path}: {text}");
    }
}

/// Jobs start on their own: one whose operator never finishes `configure` (until its
/// call-time limit) delays and fails only itself, while the other job runs to its end.
#[test]
fn a_stalled_start_delays_and_fails_its_own_job_only() {
    let arena = Arena::new();
    let hostile = arena.hostile(
        &test_plugin("hostile"),
        "",
        "params = { stall = \"configure\" }\nlimits = { call-time = \"4s\" }",
    );
    let output = arena.run_side_by_side(&hostile);
    let log = stderr(&output);
    let good_done = log
        .find("job{name=good}")
        .and_then(|_| log.find("summary:"))
        .unwrap_or_else(|| panic!("the good job never finished\n{log}"));
    let hostile_failed = log
        .find("exceeded its call-time limit")
        .unwrap_or_else(|| panic!("the stalled start did not hit its limit\n{log}"));
    assert!(
        good_done < hostile_failed,
        "the good job waited for the stalled one\n{log}"
    );
    assert!(failure_line(&log).contains("#configure"), "{log}");
}

/// A guest that sleeps waits inside a host call (WASI poll on a clock subscription), where
/// epoch interruption does not reach: the wait still ends at the call's deadline, the call fails
/// with the call-time limit, and the process does not hang.
#[test]
fn a_sleep_inside_a_host_call_ends_at_the_call_time_limit() {
    let arena = Arena::new();
    let hostile = arena.hostile(
        &test_plugin("hostile"),
        "[job.limits]\ncall-time = \"500ms\"",
        "params = { attack = \"sleep\" }",
    );
    let log = stderr(&arena.run_side_by_side(&hostile));
    let line = failure_line(&log);
    assert!(
        line.contains("exceeded its call-time limit of 500ms")
            && line.contains("pollable.block")
            && line.contains("#process"),
        "{line}"
    );
}

/// A component that declares, from the start, more memory than its limit is refused when it is
/// loaded, naming `limits.memory` and how to raise it, not in the pooling allocator's words;
/// with the limit raised, the same component runs.
#[test]
fn a_declared_memory_over_the_limit_names_the_limit() {
    let arena = Arena::new();
    let hostile = arena.hostile(&test_plugin("bloated"), "", "");
    let output = run(
        &["check", hostile.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{log}");
    assert!(
        log.contains(
            "exceeded its memory limit of 256 MiB (it tried to start with a linear memory of \
             301.1 MiB, as the component declares)"
        ) && log.contains("raise `limits.memory`"),
        "{log}"
    );
    let raised = arena.hostile(
        &test_plugin("bloated"),
        "[job.limits]\nmemory = \"512 MiB\"",
        "",
    );
    let output = run(&["run", raised.to_str().unwrap()], Duration::from_secs(60));
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("one line"),
        "{log}"
    );
}
