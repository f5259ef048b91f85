//! Benchmark support: the reference corpus (../shared/bench/README.md's specification) made in
//! Rust, so that anyone can run the benchmarks from a clone.

pub mod corpus;
pub mod native;
