//! Progress of an `available-now` run: how much of the input known at the start is done, the
//! rate and the time left. On a terminal, one line on stderr redrawn in place; otherwise a log
//! line every few seconds, and always one at the end.

use crate::status::{JobStatus, SourceView};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How much is done of how much is known, in one unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Amount {
    done: u64,
    known: u64,
}

/// The input done and known: in bytes for sources that know their size (files), in records
/// for those that know where they end (Kafka partitions). Sources that know neither (a
/// socket) are not counted.
fn measure(sources: &[SourceView]) -> (Amount, Amount) {
    let (mut bytes, mut records) = (Amount::default(), Amount::default());
    for s in sources {
        if s.gauges.known_bytes > 0 {
            let done: u64 = s.position.files.values().sum();
            bytes.done += done;
            bytes.known += s.gauges.known_bytes.max(done);
        } else if !s.gauges.ends.is_empty() {
            let left: u64 = s.lag.values().sum();
            records.done += s.records;
            records.known += s.records + left;
        }
    }
    (bytes, records)
}

fn size(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

/// One amount as the line shows it: done of known, share, rate and time left.
fn describe(amount: Amount, elapsed: Duration, show: fn(f64) -> String) -> String {
    let share = if amount.known > 0 {
        amount.done as f64 * 100.0 / amount.known as f64
    } else {
        100.0
    };
    let seconds = elapsed.as_secs_f64().max(1e-3);
    let rate = amount.done as f64 / seconds;
    let left = amount.known.saturating_sub(amount.done);
    let eta = if left == 0 {
        "done".to_owned()
    } else if rate > 0.0 {
        format!(
            "ETA {}",
            humantime::format_duration(Duration::from_secs((left as f64 / rate).ceil() as u64))
        )
    } else {
        "ETA unknown".to_owned()
    };
    format!(
        "{} of {} ({share:.0}%), {}/s, {eta}",
        show(amount.done as f64),
        show(amount.known as f64),
        show(rate)
    )
}

/// The progress line, or None when no source knows how much input there is.
fn line(sources: &[SourceView], elapsed: Duration) -> Option<String> {
    let (bytes, records) = measure(sources);
    let mut parts = Vec::new();
    if bytes.known > 0 {
        parts.push(describe(bytes, elapsed, size));
    }
    if records.known > 0 {
        parts.push(describe(records, elapsed, |n| format!("{n:.0} records")));
    }
    (!parts.is_empty()).then(|| format!("progress: {}", parts.join("; ")))
}

/// Reports the progress of `status`'s job until the returned handle is finished.
pub struct ProgressReport {
    /// Dropped (or sent to) to stop the reporter at once, not at its next tick.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressReport {
    /// Starts reporting.
    pub fn start(status: Arc<JobStatus>) -> ProgressReport {
        let (stop, stopped) = mpsc::channel();
        let terminal = std::io::stderr().is_terminal();
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("spate-progress".into())
            .spawn(move || {
                let _entered = span.enter();
                report(&status, &stopped, terminal)
            })
            .ok();
        ProgressReport {
            stop: Some(stop),
            thread,
        }
    }

    /// Stops reporting, with a last line.
    pub fn finish(mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn report(status: &JobStatus, stopped: &mpsc::Receiver<()>, terminal: bool) {
    let started = Instant::now();
    let every = if terminal {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let mut drawn = false;
    loop {
        let stopping = !matches!(
            stopped.recv_timeout(every),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if let Some(text) = line(&status.sources(), started.elapsed()) {
            if terminal {
                // Redrawn in place: back to the line's start, clear it.
                let mut err = std::io::stderr().lock();
                let job = &status.description.name;
                let _ = write!(err, "\r\x1b[2K{job}: {text}");
                let _ = err.flush();
                drawn = true;
            } else {
                tracing::info!("{text}");
            }
        }
        if stopping {
            break;
        }
    }
    if drawn {
        let _ = writeln!(std::io::stderr());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::SourcePosition;
    use crate::source::GaugeReading;
    use std::collections::BTreeMap;

    fn source(known_bytes: u64, files: &[(&str, u64)], ends: &[(&str, u64)]) -> SourceView {
        let position = SourcePosition {
            files: files.iter().map(|(f, o)| (f.to_string(), *o)).collect(),
            ..SourcePosition::default()
        };
        let ends: BTreeMap<String, u64> = ends.iter().map(|(p, e)| (p.to_string(), *e)).collect();
        SourceView {
            name: "s".into(),
            kind: "directory".into(),
            description: String::new(),
            records: 30,
            bytes: 0,
            lag: ends.iter().map(|(p, e)| (p.clone(), e - 20)).collect(),
            position,
            gauges: GaugeReading {
                known_bytes,
                ends,
                ..GaugeReading::default()
            },
            rates: BTreeMap::new(),
        }
    }

    #[test]
    fn files_count_in_bytes_and_partitions_in_records() {
        let sources = [
            source(4096, &[("a", 1024), ("b", 1024)], &[]),
            source(0, &[], &[("t/0", 50)]),
            source(0, &[], &[]),
        ];
        let (bytes, records) = measure(&sources);
        assert_eq!(
            bytes,
            Amount {
                done: 2048,
                known: 4096
            }
        );
        assert_eq!(
            records,
            Amount {
                done: 30,
                known: 60
            }
        );
        let text = line(&sources, Duration::from_secs(2)).unwrap();
        assert!(
            text.starts_with("progress: 2.0 KiB of 4.0 KiB (50%), 1.0 KiB/s, ETA 2s; 30 records of 60 records (50%)"),
            "{text}"
        );
    }

    #[test]
    fn nothing_known_prints_nothing() {
        assert_eq!(line(&[source(0, &[], &[])], Duration::from_secs(1)), None);
    }
}
