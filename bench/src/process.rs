//! Running the real `spate` binary: wall time, peak RSS (from `wait4`), and its stderr lines.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// The `spate` binary built beside this harness (same target directory and profile).
pub fn spate_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the benchmark harness")?;
    let path = exe.with_file_name("spate");
    if !path.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p spate`",
            path.display()
        );
    }
    Ok(path)
}

/// A finished run.
pub struct Finished {
    /// Wall time from spawn to exit.
    pub wall: Duration,
    /// Peak resident set size in bytes.
    pub peak_rss: u64,
    /// Everything written to stderr.
    pub stderr: Vec<String>,
}

/// A running `spate`, with its stderr lines arriving on a channel.
pub struct Running {
    child: Child,
    started: Instant,
    /// stderr lines, with the time each arrived.
    pub lines: Receiver<(Instant, String)>,
    peak: Arc<AtomicU64>,
}

/// Starts `spate` with `args`, stdout discarded, cache in `cache_dir`.
pub fn start(args: &[&str], cache_dir: &Path) -> Result<Running> {
    start_on(None, args, cache_dir)
}

/// [`start`], pinned to CPU `core` when given (through `taskset`, which execs spate: the pid
/// is spate's).
pub fn start_on(core: Option<usize>, args: &[&str], cache_dir: &Path) -> Result<Running> {
    let mut command = match core {
        Some(core) => {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", &core.to_string()]).arg(spate_binary()?);
            taskset
        }
        None => Command::new(spate_binary()?),
    };
    let mut child = command
        .args(args)
        .env("SPATE_CACHE_DIR", cache_dir)
        .env("SPATE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting spate")?;
    let started = Instant::now();
    let stderr = child.stderr.take().expect("piped");
    let (send, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    // The process's resident set, sampled every 10 ms until it exits. Neither wait4's
    // ru_maxrss nor VmHWM is used: both can carry this harness's own high-water mark (it reads
    // the whole corpus) into the child through the shared address space before exec.
    let peak = Arc::new(AtomicU64::new(0));
    let (pid, sampled) = (child.id(), peak.clone());
    std::thread::spawn(move || {
        while Path::new(&format!("/proc/{pid}")).exists() {
            let rss = proc_status_kib(pid, "VmRSS:") * 1024;
            sampled.fetch_max(rss, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    Ok(Running {
        child,
        started,
        lines,
        peak,
    })
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When it was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Sends SIGINT (a graceful stop).
    pub fn interrupt(&self) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
    }

    /// Peak resident set size so far in bytes (from /proc), 0 if unknown.
    pub fn rss(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Waits for exit; fails when spate failed.
    pub fn finish(self) -> Result<Finished> {
        let pid = self.child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: pid is our child, not yet reaped; the pointer is to a live local.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        let wall = self.started.elapsed();
        std::mem::forget(self.child);
        let stderr: Vec<String> = self.lines.iter().map(|(_, l)| l).collect();
        if waited != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bail!("spate failed (status {status}):\n{}", stderr.join("\n"));
        }
        Ok(Finished {
            wall,
            peak_rss: self.peak.load(Ordering::Relaxed),
            stderr,
        })
    }
}

/// Reads a `VmXxx:` field of /proc/<pid>/status, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU time (user and system, all threads) process `pid` has used so far, in seconds; 0 if
/// unknown.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may hold spaces, in parentheses): utime and stime are
    // the 14th and 15th of the line, in clock ticks.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / per_second
}

/// A batch line of spate's log, parsed.
#[derive(Clone, Debug)]
pub struct BatchLine {
    /// The job that logged it.
    pub job: String,
    /// The batch time, ms.
    pub time_ms: u64,
    /// Input records.
    pub records: u64,
    /// Input bytes.
    pub bytes: u64,
    /// Scheduling delay in ms.
    pub scheduling_ms: f64,
    /// Processing time in ms.
    pub processing_ms: f64,
    /// Total delay in ms.
    pub total_ms: f64,
}

fn number_after<T: std::str::FromStr>(line: &str, marker: &str) -> Option<T> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Parses `batch <t> ms: <n> input records (<b> bytes, ...), ... scheduling delay <x> ms,
/// processing time <y> ms, total delay <z> ms`.
pub fn parse_batch_line(line: &str) -> Option<BatchLine> {
    if !line.contains(" INFO ") || !line.contains(": batch ") {
        return None;
    }
    let job = line.split("job{name=").nth(1)?.split('}').next()?;
    Some(BatchLine {
        job: job.to_owned(),
        time_ms: number_after(line, ": batch ")?,
        records: number_after(line, " ms: ")?,
        bytes: number_after(line, "input records (")?,
        scheduling_ms: number_after(line, "scheduling delay ")?,
        processing_ms: number_after(line, "processing time ")?,
        total_ms: number_after(line, "total delay ")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_batch_log_line() {
        let line = "2026-11-24T03:39:14.001713Z  INFO job{name=wc}: batch 1795491554000 ms: 20 input records (1380 bytes, 5 partitions), 141 output records, scheduling delay 0.3 ms, processing time 0.7 ms, total delay 1.0 ms; wasm: 7 calls";
        let b = parse_batch_line(line).unwrap();
        assert_eq!((b.job.as_str(), b.time_ms), ("wc", 1795491554000));
        assert_eq!((b.records, b.bytes), (20, 1380));
        assert_eq!(
            (b.scheduling_ms, b.processing_ms, b.total_ms),
            (0.3, 0.7, 1.0)
        );
        assert!(parse_batch_line("INFO job starting").is_none());
    }
}
