//! What a job's operators consumed: the figures a platform bills and throttles a tenant by.
//! Every instance of an operator adds to its operator's [`Usage`], which adds to the job's;
//! the runner takes both after each batch. Each thread also counts its own time in Wasm, so
//! that a task can tell how much of its time its operators took.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

thread_local! {
    /// Time this thread spent inside operator calls, in nanoseconds.
    static THREAD_WASM_NANOS: Cell<u64> = const { Cell::new(0) };
}

/// Time the current thread has spent inside operator calls so far.
pub fn thread_wasm_time() -> Duration {
    Duration::from_nanos(THREAD_WASM_NANOS.with(Cell::get))
}

/// Counters shared by all instances of one operator (with a parent: the job's counters, which
/// every call also adds to), or of one job.
#[derive(Debug, Default)]
pub struct Usage {
    parent: Option<Arc<Usage>>,
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
    /// Counters that also add to `parent`'s.
    pub fn child_of(parent: Arc<Usage>) -> Usage {
        Usage {
            parent: Some(parent),
            ..Usage::default()
        }
    }

    /// Adds one call made on this thread.
    pub fn add(&self, call: CallUsage) {
        THREAD_WASM_NANOS.with(|n| n.set(n.get() + call.time.as_nanos() as u64));
        self.count(call);
    }

    fn count(&self, call: CallUsage) {
        if let Some(parent) = &self.parent {
            parent.count(call);
        }
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
        if let Some(parent) = &self.parent {
            parent.add_limit_hit();
        }
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

    #[test]
    fn an_operator_adds_to_its_job_and_its_thread() {
        let job = Arc::new(Usage::default());
        let (a, b) = (Usage::child_of(job.clone()), Usage::child_of(job.clone()));
        let before = thread_wasm_time();
        let call = CallUsage {
            time: Duration::from_millis(3),
            fuel: 5,
            ..CallUsage::default()
        };
        a.add(call);
        b.add(call);
        b.add_limit_hit();
        assert_eq!(thread_wasm_time() - before, Duration::from_millis(6));
        assert_eq!((a.take().calls, b.take().limit_hits), (1, 1));
        let total = job.take();
        assert_eq!((total.calls, total.fuel, total.limit_hits), (2, 10, 1));
    }
}
