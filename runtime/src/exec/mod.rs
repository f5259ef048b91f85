//! Execution: the dataflow a batch runs through, the worker pool, and the tasks of a batch
//! (narrow steps fused per partition, the map side and exchange of a shuffle, retries and
//! dead letters). What each node computes is its op family's (`ops`), behind the traits of
//! `dataflow`.

mod dataflow;
mod dead_letter;
mod input_release;
mod keyed;
mod narrow;
mod pool;
mod run;
mod tasks;

pub use dataflow::*;
pub use input_release::InputRelease;
pub use pool::{Worker, WorkerPool};
pub use run::{BatchOutput, GlobalTask, run_batch, single};
pub use tasks::{TaskFigures, TaskRecord};
