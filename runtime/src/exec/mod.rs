//! Running a batch: the worker pool and the tasks of each stage.

mod pool;
mod tasks;

pub use pool::{Worker, WorkerPool};
pub use tasks::run_batch;
