//! What a receiver knows about its input beyond the records it delivers: where each part of
//! the input ends (a Kafka partition's high watermark, so the UI can show the lag), how much
//! input is known to be there (the files of an `available-now` run, for its progress), and
//! how often it had to reconnect or met an error. Receivers set them; the UI reads them.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One source's gauges.
#[derive(Debug, Default)]
pub struct SourceGauges {
    ends: Mutex<BTreeMap<String, u64>>,
    known_bytes: AtomicU64,
    reconnects: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A source's gauges at one moment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GaugeReading {
    /// Where each part ends now (Kafka: `topic/partition` -> high watermark).
    pub ends: BTreeMap<String, u64>,
    /// Input bytes known to be there at the start (0: unknown).
    pub known_bytes: u64,
    /// Reconnections after a lost or refused connection.
    pub reconnects: u64,
    /// Errors met and recovered from (connections refused or lost, fetch errors).
    pub errors: u64,
    /// The last of them.
    pub last_error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SourceGauges {
    /// Part `part` ends at `end` now.
    pub fn set_end(&self, part: &str, end: u64) {
        let mut ends = lock(&self.ends);
        match ends.get_mut(part) {
            Some(at) => *at = end,
            None => {
                ends.insert(part.to_owned(), end);
            }
        }
    }

    /// `bytes` more input is known to be there.
    pub fn add_known_bytes(&self, bytes: u64) {
        self.known_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The receiver connected again after losing its connection.
    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The receiver met `error` and goes on.
    pub fn error(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(error);
    }

    /// The gauges now.
    pub fn read(&self) -> GaugeReading {
        GaugeReading {
            ends: lock(&self.ends).clone(),
            known_bytes: self.known_bytes.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_show_what_receivers_set() {
        let gauges = SourceGauges::default();
        gauges.set_end("t/0", 10);
        gauges.set_end("t/0", 12);
        gauges.add_known_bytes(5);
        gauges.add_known_bytes(7);
        gauges.error("connection lost".into());
        gauges.reconnected();
        let r = gauges.read();
        assert_eq!(r.ends.get("t/0"), Some(&12));
        assert_eq!((r.known_bytes, r.reconnects, r.errors), (12, 1, 1));
        assert_eq!(r.last_error.as_deref(), Some("connection lost"));
    }
}
