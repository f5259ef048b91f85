//! The wasmtime engine shared by every operator of a process.

use anyhow::{Context, Result};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Largest linear memory an operator instance may grow to.
pub const MAX_INSTANCE_MEMORY: usize = 1 << 30;

/// An engine with the pooling allocator sized for `max_instances` live operator instances, so
/// that (re)instantiation takes microseconds instead of mmap calls.
pub fn new_engine(max_instances: u32) -> Result<Engine> {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(max_instances)
        // A Rust guest built for wasip2 is a few core modules (the program and adapters).
        .total_core_instances(max_instances * 4)
        .total_memories(max_instances * 2)
        .total_tables(max_instances * 4)
        .max_memory_size(MAX_INSTANCE_MEMORY);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the Wasm engine")
}
