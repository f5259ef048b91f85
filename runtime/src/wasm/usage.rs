//! What a job's operators consumed: the figures a platform bills and throttles a tenant by.
//! Every instance of a job adds to one shared [`Usage`]; the runner takes the figures after
//! each batch.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Counters shared by all instances of one job.
#[derive(Debug, Default)]
pub struct Usage {
    calls: AtomicU64,
    wasm_nanos: AtomicU64,
    fuel: AtomicU64,
    traps: AtomicU64,
    limit_hits: AtomicU64,
    peak_memory: AtomicUsize,
}

/// One call's consumption.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallUsage {
    /// Wall time inside the call.
    pub time: Duration,
    /// Fuel burnt (0 when fuel is not metered).
    pub fuel: u64,
    /// The instance's largest linear memory so far.
    pub peak_memory: usize,
    /// The call trapped.
    pub trapped: bool,
    /// The call hit a limit.
    pub limit_hit: bool,
}

impl Usage {
    /// Adds one call.
    pub fn add(&self, call: CallUsage) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.wasm_nanos
            .fetch_add(call.time.as_nanos() as u64, Ordering::Relaxed);
        self.fuel.fetch_add(call.fuel, Ordering::Relaxed);
        self.traps
            .fetch_add(u64::from(call.trapped), Ordering::Relaxed);
        self.limit_hits
            .fetch_add(u64::from(call.limit_hit), Ordering::Relaxed);
        self.peak_memory
            .fetch_max(call.peak_memory, Ordering::Relaxed);
    }

    /// Counts a limit hit found after a call returned (an output cap), the call itself being
    /// counted already.
    pub fn add_limit_hit(&self) {
        self.limit_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// The figures since the last take (peak memory: since the start).
    pub fn take(&self) -> UsageReport {
        UsageReport {
            calls: self.calls.swap(0, Ordering::Relaxed),
            wasm_time: Duration::from_nanos(self.wasm_nanos.swap(0, Ordering::Relaxed)),
            fuel: self.fuel.swap(0, Ordering::Relaxed),
            traps: self.traps.swap(0, Ordering::Relaxed),
            limit_hits: self.limit_hits.swap(0, Ordering::Relaxed),
            peak_memory: self.peak_memory.load(Ordering::Relaxed),
        }
    }
}

/// A job's consumption over a span of time (one batch, or a whole run when summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageReport {
    /// Operator calls.
    pub calls: u64,
    /// Wall time spent inside operator calls, summed over workers.
    pub wasm_time: Duration,
    /// Fuel burnt (0 unless `limits.fuel` is set).
    pub fuel: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls that hit a limit.
    pub limit_hits: u64,
    /// Largest linear memory of any instance, in bytes.
    pub peak_memory: usize,
}

impl UsageReport {
    /// Adds `other` (peak memory: the larger).
    pub fn merge(&mut self, other: &UsageReport) {
        self.calls += other.calls;
        self.wasm_time += other.wasm_time;
        self.fuel += other.fuel;
        self.traps += other.traps;
        self.limit_hits += other.limit_hits;
        self.peak_memory = self.peak_memory.max(other.peak_memory);
    }
}

impl fmt::Display for UsageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calls, {:.1} ms in Wasm, fuel {}, peak memory {}, {} traps, {} limit hits",
            self.calls,
            self.wasm_time.as_secs_f64() * 1000.0,
            self.fuel,
            super::limits::bytes(self.peak_memory),
            self.traps,
            self.limit_hits
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_resets_counters_but_keeps_the_peak() {
        let usage = Usage::default();
        usage.add(CallUsage {
            time: Duration::from_millis(2),
            fuel: 10,
            peak_memory: 1 << 20,
            trapped: true,
            limit_hit: false,
        });
        let first = usage.take();
        assert_eq!((first.calls, first.fuel, first.traps), (1, 10, 1));
        let second = usage.take();
        assert_eq!((second.calls, second.fuel), (0, 0));
        assert_eq!(second.peak_memory, 1 << 20);
    }
}
