//! Running a batch: the worker pool and the tasks of each stage.

mod dead_letter;
mod pool;
mod tasks;

pub use pool::{Worker, WorkerPool};
pub use tasks::{TaskFigures, run_batch};
