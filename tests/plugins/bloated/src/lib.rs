//! A test operator that passes records through but whose component declares a linear memory of
//! over 300 MiB from the start: a large zeroed static lands in the initial memory (`.bss`).
//! Over the default 256 MiB `limits.memory`, it must be refused at load naming that limit.

use spate_guest::{Error, Info, Params, Partition, PartitionBuilder, Transform};
use std::sync::atomic::{AtomicU8, Ordering};

/// Zeroed, so it costs nothing in the file, but the memory must hold it from the start.
/// Atomics, written below, so that the compiler cannot fold it away.
static BALLAST: [AtomicU8; 300 << 20] = [const { AtomicU8::new(0) }; 300 << 20];

/// The operator.
pub struct Bloated;

impl Transform for Bloated {
    fn info() -> Info {
        Info {
            name: "bloated",
            description: "passes records through; declares a 300 MiB memory (sandbox tests)",
            params: &[],
            key_type: None,
            value_type: None,
            monoid: None,
        }
    }

    fn configure(_: &Params) -> Result<Self, Error> {
        Ok(Bloated)
    }

    fn process(&mut self, input: &Partition, out: &mut PartitionBuilder) -> Result<(), Error> {
        // Written, so that the static is kept.
        BALLAST[input.len() % BALLAST.len()].fetch_add(1, Ordering::Relaxed);
        for record in input.records() {
            out.push_record(&record);
        }
        Ok(())
    }
}

spate_guest::export_transform!(Bloated);
