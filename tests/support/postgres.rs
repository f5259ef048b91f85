//! A real PostgreSQL server for the tests: the throwaway cluster the benchmark uses too.

pub use spate_test_artifacts::postgres::*;
