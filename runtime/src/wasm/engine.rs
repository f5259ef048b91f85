//! The wasmtime engine of a job: compilation settings, the pooling allocator, and which
//! sandbox mechanisms (epoch deadlines, fuel) its code is compiled with.

use super::ticker;
use anyhow::{Context, Result};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// What an engine must support for the operators it will run.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineSettings {
    /// Live operator instances to size the pool for.
    pub max_instances: u32,
    /// Largest linear memory any instance may have (the pool's slot size).
    pub max_memory: usize,
    /// Largest table any instance may have.
    pub max_table_elements: usize,
    /// Compile in epoch checks, so calls can be given a deadline.
    pub epoch_deadlines: bool,
    /// Compile in fuel metering.
    pub fuel: bool,
    /// The tenant whose CPU share the engine's calls use (`cpu_share`).
    pub tenant: String,
    /// The tenant's CPU weight relative to other tenants'.
    pub cpu_weight: f64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_instances: 16,
            max_memory: 1 << 30,
            max_table_elements: 50_000,
            epoch_deadlines: true,
            fuel: false,
            tenant: "default".into(),
            cpu_weight: 1.0,
        }
    }
}

/// How much of a freed linear memory stays resident for the next instance: a Rust guest's
/// 1 MiB stack, its data and the start of its heap.
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
/// The same for tables (a few thousand function references at most in practice).
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Whether the running Linux kernel has the PAGEMAP_SCAN ioctl (6.7 and later).
fn kernel_has_pagemap_scan() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| kernel_version(&release))
        .is_some_and(|version| version >= (6, 7))
}

/// (major, minor) of a kernel release string such as `6.18.0-1-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// An engine with the pooling allocator sized for `settings.max_instances` live instances, so
/// that (re)instantiation takes microseconds instead of mmap calls. With epoch deadlines on,
/// the process's epoch ticker starts advancing it.
pub fn new_engine(settings: &EngineSettings) -> Result<Engine> {
    let instances = settings.max_instances;
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(instances)
        // A Rust guest built for wasip2 is a few core modules (the program and adapters).
        .total_core_instances(instances * 4)
        .total_memories(instances * 2)
        .total_tables(instances * 4)
        .table_elements(settings.max_table_elements)
        .max_memory_size(settings.max_memory)
        // Reset a freed slot by rewriting the pages the instance dirtied (found with Linux's
        // PAGEMAP_SCAN where the kernel has it) instead of madvise: the next instance then
        // takes no page faults and no TLB shootdowns on them.
        .pagemap_scan(wasmtime::Enabled::Auto);
    // Without PAGEMAP_SCAN wasmtime would memset the whole resident part instead: slower than
    // madvise for a mostly clean 2 MiB (32 us against 27 us per instantiation, measured).
    if kernel_has_pagemap_scan() {
        pooling
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
            .table_keep_resident(KEEP_RESIDENT_TABLE);
    }
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        .epoch_interruption(settings.epoch_deadlines)
        .consume_fuel(settings.fuel)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    let engine = Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the Wasm engine")?;
    if settings.epoch_deadlines {
        ticker::register(&engine);
    }
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_are_read_from_release_strings() {
        assert_eq!(kernel_version("6.18.0-1-amd64\n"), Some((6, 18)));
        assert_eq!(kernel_version("5.15.0"), Some((5, 15)));
        assert_eq!(kernel_version("garbage"), None);
        assert!((6, 18) >= (6, 7) && (5, 15) < (6, 7));
    }
}
