//! Benchmark support: the reference corpus (../shared/bench/README.md's specification) made in
//! Rust, the native baseline, and the workloads `bench` runs (see docs/BENCHMARKS.md).

pub mod corpus;
pub mod criterion_results;
pub mod native;
pub mod process;
pub mod stats;
pub mod workloads;
