//! Execution: the worker pool and the tasks of a batch.

mod dead_letter;
mod input_release;
mod keyed;
mod narrow;
mod pool;
mod run;
mod tasks;

pub use input_release::InputRelease;
pub use keyed::group_values;
pub use pool::{Worker, WorkerPool};
pub use run::{BatchOutput, run_batch};
pub use tasks::TaskFigures;
