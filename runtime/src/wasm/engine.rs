//! The wasmtime engine of a job: compilation settings, the pooling allocator, and which
//! sandbox mechanisms (epoch deadlines, fuel) its code is compiled with.

use super::ticker;
use anyhow::{Context, Result};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// What an engine must support for the operators it will run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_instances: 16,
            max_memory: 1 << 30,
            max_table_elements: 50_000,
            epoch_deadlines: true,
            fuel: false,
        }
    }
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
        .max_memory_size(settings.max_memory);
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
