//! What an output knows about its writes beyond the records it wrote: how often a write failed
//! and was tried again (a broker or database away for a while), and the last such failure.
//! The one backoff loop ([`super::retry::retrying`]) counts them; the UI and `/metrics` read
//! them, so a struggling output shows before it fails the job.

use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One output's gauges.
#[derive(Debug, Default)]
pub struct OutputGauges {
    retries: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// An output's gauges at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OutputGaugeReading {
    /// Writes (or connections, or transaction starts) that failed and were tried again.
    pub retries: u64,
    /// The last of those failures.
    pub last_error: Option<String>,
}

impl OutputGauges {
    /// A try failed with `error` and will be made again.
    pub fn retried(&self, error: String) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// The gauges now.
    pub fn read(&self) -> OutputGaugeReading {
        OutputGaugeReading {
            retries: self.retries.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
