//! What one operator instance may consume, and the store-side enforcement of it: linear memory
//! and table growth through a [`ResourceLimiter`], a CPU deadline per call through epoch
//! interruption, optional fuel, and caps on what one call may emit.

use std::fmt;
use std::time::Duration;
use wasmtime::ResourceLimiter;

/// The limits of one operator instance. Every call is checked against them; hitting one fails
/// that call with a [`LimitExceeded`] error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest size of each linear memory, in bytes.
    pub memory: usize,
    /// Most elements of each table.
    pub table_elements: usize,
    /// Longest a single call may run (wall clock, checked at epoch ticks).
    pub call_time: Duration,
    /// Fuel (roughly: Wasm instructions) one call may burn; `None` leaves fuel unmetered.
    pub fuel: Option<u64>,
    /// Most records one call may return.
    pub output_records: usize,
    /// Most bytes (keys and values) one call may return.
    pub output_bytes: usize,
    /// Most bytes of stdout/stderr an instance may log per batch; the rest is dropped.
    pub log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 256 << 20,
            table_elements: 50_000,
            call_time: Duration::from_secs(10),
            fuel: None,
            output_records: 16 << 20,
            output_bytes: 256 << 20,
            log_bytes: 16 << 10,
        }
    }
}

/// Which limit was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// `limits.memory`.
    Memory,
    /// `limits.table-elements`.
    TableElements,
    /// `limits.call-time`.
    CallTime,
    /// `limits.fuel`.
    Fuel,
    /// `limits.output-records`.
    OutputRecords,
    /// `limits.output-bytes`.
    OutputBytes,
}

impl LimitKind {
    /// The field that sets it, as pipeline files spell it.
    pub fn field(self) -> &'static str {
        match self {
            LimitKind::Memory => "memory",
            LimitKind::TableElements => "table-elements",
            LimitKind::CallTime => "call-time",
            LimitKind::Fuel => "fuel",
            LimitKind::OutputRecords => "output-records",
            LimitKind::OutputBytes => "output-bytes",
        }
    }
}

/// A limit an instance hit: the error a call fails with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitExceeded {
    /// Which limit.
    pub kind: LimitKind,
    /// Its value, readable (`64 MiB`, `10s`).
    pub limit: String,
    /// What the operator attempted (`grow linear memory to 80 MiB`).
    pub attempted: String,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exceeded its {} limit of {} (it tried to {}); raise `limits.{}` in [job.limits] or \
             the step's [steps.limits] if this is expected",
            self.kind.field(),
            self.limit,
            self.attempted,
            self.kind.field()
        )
    }
}

impl std::error::Error for LimitExceeded {}

/// Bytes, readable: `512 B`, `64 KiB`, `80 MiB`, `1.5 GiB`.
pub fn bytes(n: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The store's [`ResourceLimiter`]: refuses growth past the limits with a [`LimitExceeded`]
/// trap (rather than a failed `memory.grow` the guest might misreport), and remembers the
/// largest memory the instance reached, for the tenant's figures.
#[derive(Debug)]
pub struct Limiter {
    memory: usize,
    table_elements: usize,
    peak_memory: usize,
}

impl Limiter {
    /// A limiter for `limits`.
    pub fn new(limits: &Limits) -> Self {
        Limiter {
            memory: limits.memory,
            table_elements: limits.table_elements,
            peak_memory: 0,
        }
    }

    /// The largest linear memory this instance has had, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.peak_memory
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            return Err(wasmtime::Error::new(LimitExceeded {
                kind: LimitKind::Memory,
                limit: bytes(self.memory),
                attempted: format!("grow a linear memory to {}", bytes(desired)),
            }));
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(wasmtime::Error::new(LimitExceeded {
                kind: LimitKind::TableElements,
                limit: self.table_elements.to_string(),
                attempted: format!("grow a table to {desired} elements"),
            }));
        }
        Ok(true)
    }
}

/// Checks a call's output against the output caps.
pub fn check_output(
    limits: &Limits,
    records: usize,
    bytes_out: usize,
) -> Result<(), LimitExceeded> {
    if records > limits.output_records {
        return Err(LimitExceeded {
            kind: LimitKind::OutputRecords,
            limit: limits.output_records.to_string(),
            attempted: format!("return {records} records from one call"),
        });
    }
    if bytes_out > limits.output_bytes {
        return Err(LimitExceeded {
            kind: LimitKind::OutputBytes,
            limit: bytes(limits.output_bytes),
            attempted: format!("return {} from one call", bytes(bytes_out)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn growth_past_the_memory_limit_is_refused_with_the_limit_named() {
        let mut limiter = Limiter::new(&Limits {
            memory: 1 << 20,
            ..Limits::default()
        });
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        let error = limiter.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        let hit = error.downcast_ref::<LimitExceeded>().unwrap();
        assert_eq!(hit.kind, LimitKind::Memory);
        assert!(hit.to_string().contains("memory limit of 1 MiB"), "{hit}");
        assert!(
            hit.to_string().contains("grow a linear memory to 2 MiB"),
            "{hit}"
        );
        assert_eq!(limiter.peak_memory(), 1 << 20);
    }

    #[test]
    fn output_caps_name_the_cap_hit() {
        let limits = Limits {
            output_records: 10,
            output_bytes: 100,
            ..Limits::default()
        };
        assert!(check_output(&limits, 10, 100).is_ok());
        assert_eq!(
            check_output(&limits, 11, 0).unwrap_err().kind,
            LimitKind::OutputRecords
        );
        assert_eq!(
            check_output(&limits, 1, 101).unwrap_err().kind,
            LimitKind::OutputBytes
        );
    }
}
