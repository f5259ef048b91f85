//! Chaos runs shared by the fault-tolerance tests: a job killed with SIGKILL at random moments
//! and restarted, then finished gracefully; and readable accounts of count mismatches.

use super::*;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

/// A small deterministic generator (xorshift), so that runs can be repeated.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` lines of words from a 300-word vocabulary, skewed so that some words are frequent.
pub fn lines(rng: &mut Rng, n: usize) -> String {
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

/// How many kills a chaos run makes: `SPATE_CHAOS_KILLS`, or the 20 CI runs.
pub fn kills() -> usize {
    std::env::var("SPATE_CHAOS_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20)
}

/// Starts one run of the job, its log going to `log`.
pub fn start(pipeline: &Path, log: &Path) -> Child {
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
pub fn chaos(dir: &Path, pipeline: &Path, rng: &mut Rng, done: impl Fn() -> bool) -> String {
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
    // Its signal handler is installed by then, so SIGINT is a graceful stop.
    let recovering = || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("recovered job"));
    assert!(
        eventually(Duration::from_secs(30), recovering),
        "the last run did not recover"
    );
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
pub fn difference(got: &Counts, expected: &Counts) -> String {
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
