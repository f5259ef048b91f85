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
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::*;

const WINDOW_MS: u64 = 1000;

/// A small deterministic generator (xorshift), so that runs can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` lines of words from a 300-word vocabulary, skewed so that some words are frequent.
fn lines(rng: &mut Rng, n: usize) -> String {
    let mut text = String::new();
    for _ in 0..n {
        let words = 1 + rng.below(8);
        for w in 0..words {
            let skewed = rng.below(300).min(rng.below(300));
            if w > 0 {
                text.push(' ');
            }
            text.push_str(&format!("w{skewed}"));
        }
        text.push('\n');
    }
    text
}

fn kills() -> usize {
    std::env::var("SPATE_CHAOS_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20)
}

fn pipeline_text(out: &Path, checkpoints: &Path, source: &str) -> String {
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
"#,
        checkpoints.display(),
        output("counts"),
        output("totals"),
        output("windowed"),
    )
}

/// Starts one run of the job, its log going to `log`.
fn start(pipeline: &Path, log: &Path) -> Child {
    spate()
        .args(["run", pipeline.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn spate")
}

/// Kills the job `kills` times at random moments, restarting it each time, then lets a last
/// run finish the input (`done` tells when the outputs hold everything) and stops it
/// gracefully. Returns the logs of every run, concatenated.
fn chaos(dir: &Path, pipeline: &Path, rng: &mut Rng, done: impl Fn() -> bool) -> String {
    let mut logs = Vec::new();
    for kill in 0..kills() {
        let log = dir.join(format!("run-{kill}.log"));
        let mut child = start(pipeline, &log);
        std::thread::sleep(Duration::from_millis(150 + rng.below(900)));
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "run {kill} ended on its own ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        logs.push(log);
    }
    let log = dir.join("run-last.log");
    let child = start(pipeline, &log);
    // When this times out, `verify` says what differs.
    eventually(Duration::from_secs(30), &done);
    interrupt(&child);
    let output = wait(child, Duration::from_secs(30));
    logs.push(log);
    let all: String = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap())
        .collect();
    assert!(
        output.status.success(),
        "the last run failed:\n{}",
        std::fs::read_to_string(dir.join("run-last.log")).unwrap()
    );
    all
}

/// The words whose counts differ, and the totals: a readable account of a mismatch.
fn difference(got: &Counts, expected: &Counts) -> String {
    let words: std::collections::BTreeSet<&String> = got.keys().chain(expected.keys()).collect();
    let differing: Vec<String> = words
        .into_iter()
        .filter(|w| got.get(*w) != expected.get(*w))
        .take(10)
        .map(|w| format!("{w}: {:?} instead of {:?}", got.get(w), expected.get(w)))
        .collect();
    format!(
        "{} words counted, {} sent; first differences: {}",
        got.values().sum::<i64>(),
        expected.values().sum::<i64>(),
        differing.join(", ")
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
