//! Helpers shared by the end-to-end tests: run the real `spate` binary, read its outputs, and
//! compute reference word counts with the same tokenizer the plugin uses.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Word counts.
pub type Counts = BTreeMap<String, i64>;

/// The `spate` binary with a shared compiled-component cache and quiet-ish logs.
pub fn spate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spate"));
    command
        .env(
            "SPATE_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("spate-cache"),
        )
        // `info` unless the one running the tests asks for more (SPATE_LOG_TESTS), to look
        // into a failure: tests read the lines they check from `info`.
        .env(
            "SPATE_LOG",
            std::env::var("SPATE_LOG_TESTS").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null());
    command
}

/// Where the test operators were built.
pub fn test_plugin(name: &str) -> PathBuf {
    spate_test_artifacts::plugin(name)
}

/// Writes a pipeline file into `dir`.
pub fn pipeline(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `spate` with `args` to completion (killed after `timeout`).
pub fn run(args: &[&str], timeout: Duration) -> Output {
    let child = spate()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spate");
    wait(child, timeout)
}

/// Waits for `child` with a deadline, killing it when the deadline passes.
pub fn wait(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "spate did not finish within {timeout:?}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Sends SIGINT (what Ctrl-C sends) to `child`.
pub fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The captured stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Word counts of `text` under the tokenize plugin's rules.
pub fn reference_counts(text: &str, lowercase: bool, strip_punctuation: bool) -> Counts {
    let tokenizer = spate_plugin_tokenize::Tokenizer {
        lowercase,
        strip_punctuation,
    };
    let mut counts = Counts::new();
    let mut scratch = Vec::new();
    for line in text.lines() {
        tokenizer
            .for_each_word(line.as_bytes(), &mut scratch, |word| {
                *counts
                    .entry(String::from_utf8(word.to_vec()).unwrap())
                    .or_default() += 1;
            })
            .expect("test texts are UTF-8");
    }
    counts
}

/// Parses `(word,count)` lines.
pub fn parse_pairs(text: &str, into: &mut Counts) {
    for line in text.lines().filter(|l| !l.is_empty()) {
        let inner = line
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .unwrap_or_else(|| panic!("not a pair: {line}"));
        let (word, count) = inner.rsplit_once(',').unwrap();
        *into.entry(word.to_owned()).or_default() += count.parse::<i64>().unwrap();
    }
}

/// The counts of the `(word,count)` lines among what the print output wrote to stdout.
pub fn printed_counts(stdout: &[u8]) -> Counts {
    let printed = String::from_utf8_lossy(stdout);
    let pairs: Vec<&str> = printed.lines().filter(|l| l.starts_with('(')).collect();
    let mut counts = Counts::new();
    parse_pairs(&pairs.join("\n"), &mut counts);
    counts
}

/// The text-files outputs under `dir` named `<stem>-<time>.txt`: batch time -> counts.
pub fn text_outputs(dir: &Path, stem: &str) -> BTreeMap<u64, Counts> {
    let mut batches = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return batches;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(time) = name
            .strip_prefix(&format!("{stem}-"))
            .and_then(|n| n.strip_suffix(".txt"))
        else {
            continue;
        };
        assert!(
            entry.path().join("_SUCCESS").exists(),
            "{name} has no _SUCCESS"
        );
        let mut counts = Counts::new();
        let mut parts: Vec<_> = std::fs::read_dir(entry.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        parts.sort();
        for part in parts.iter().filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        }) {
            let mut text = String::new();
            std::fs::File::open(part)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            parse_pairs(&text, &mut counts);
        }
        batches.insert(time.parse().unwrap(), counts);
    }
    batches
}

/// All batches' counts added up.
pub fn total(batches: &BTreeMap<u64, Counts>) -> Counts {
    let mut sum = Counts::new();
    for counts in batches.values() {
        for (word, n) in counts {
            *sum.entry(word.clone()).or_default() += n;
        }
    }
    sum
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// The Spate source tree.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Runs a command of the repository's scripts, failing with its output.
pub fn script(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{}\n{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A port nothing listens on at the moment (for a server to take, or to find closed).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs one of the repository's install scripts (`scripts/<name>`), which prints the path of
/// what it installed on its last line, and returns that path.
pub fn installed(name: &str) -> PathBuf {
    let out = script(&repo().join("scripts").join(name), &[]);
    PathBuf::from(
        out.trim()
            .lines()
            .last()
            .unwrap_or_else(|| panic!("scripts/{name} printed no path")),
    )
}

/// Installs `language`'s toolchain once per test process (the script leaves what is already
/// installed at the pinned version alone).
pub fn install_guest_toolchain(language: &str) {
    static DONE: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let done = DONE.get_or_init(Default::default);
    // One install at a time: apt and npm do not share well, and the machine has 2 cores.
    let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
    if !done.contains(language) {
        script(
            &repo().join("scripts/install-guest-toolchains.sh"),
            &[language],
        );
        done.insert(language.to_owned());
    }
}

pub mod chaos;
pub mod kafka;

/// The address `spate run` printed for its web UI (`http://127.0.0.1:port`), once it has.
pub fn ui_address(log: &str) -> Option<String> {
    let at = log.find("web UI at http://")? + "web UI at ".len();
    Some(log[at..].split('/').take(3).collect::<Vec<_>>().join("/"))
}

/// The body of `GET path` from the HTTP server at `base` (`http://host:port`), or None if it
/// cannot be read or the status is not 200.
pub fn http_get(base: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let host = base.strip_prefix("http://")?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// Starts `spate run pipeline` with its web UI on any free port, stderr into `log` and stdout
/// to `stdout`; returns the process and the UI's address once it has printed it.
pub fn run_with_ui(pipeline: &Path, log: &Path, stdout: Stdio) -> (Child, String) {
    let child = spate()
        .args(["run", pipeline.to_str().unwrap(), "--ui-port", "0"])
        .stdout(stdout)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(30), || ui_address(&read()).is_some()),
        "{}",
        read()
    );
    let base = ui_address(&read()).unwrap();
    (child, base)
}

/// Runs `args` again after a run whose output's last batch time was `last_batch_ms`: the run
/// must succeed, skip no batch as written before, and, when that time was still ahead of the
/// clock, say that its batch times start after it. Its log.
pub fn run_again_after(args: &[&str], last_batch_ms: u64) -> String {
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let again = run(args, Duration::from_secs(120));
    let log = stderr(&again);
    assert!(again.status.success(), "{log}");
    assert!(!log.contains("not written again"), "{log}");
    if last_batch_ms >= started_ms {
        assert!(
            log.contains(&format!(
                "recorded as written by an earlier run ({last_batch_ms} ms)"
            )),
            "{log}"
        );
    }
    log
}
