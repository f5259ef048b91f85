//! # Spate: Spark Streaming's model with sandboxed WebAssembly operators
//!
//! The host owns sources, batch slicing, partitioning, shuffles and sinks; user transformations
//! are Wasm components (see `wit/operator.wit`) called once per partition per batch.
//!
//! Module map (dependencies point down the list):
//! - [`cli`]: the `spate` command.
//! - [`serve`]: `spate serve`, the multi-tenant service (tokens, policies, durable jobs);
//!   [`client`]: its client commands.
//! - [`job`]: runs a plan: receivers, batch clock, stage execution, outputs, metrics.
//! - [`plan`]: the validated job: the stream graph, its nodes of fused operators, outputs.
//! - [`config`]: the pipeline file, `--set` overrides, errors with file, line and field.
//! - [`exec`]: the worker pool and the per-partition tasks.
//! - [`state`]: what stateful nodes keep across batches (windows, keyed state, event time).
//! - [`checkpoint`]: checkpoint files (atomic, checksummed, zstd) and the state encoding.
//! - [`shuffle`]: key hashing, map-side combine, hash partitioning.
//! - [`wasm`]: engine, compiled-component cache, operator instances.
//! - [`batch`]: block buffering, backpressure and the batch grid.
//! - [`source`]: receivers (socket, directory, bundled text, Kafka) and line cutting.
//! - [`sink`]: outputs (console print, text files, command, Kafka, PostgreSQL).
//! - [`kafka`]: what the Kafka source and output share (client settings, encodings).
//! - [`secret`]: secrets named by the pipeline file (an environment variable or a file).
//! - [`metrics`]: per-batch figures and the run summary.
//! - [`fault`]: whose fault a failed task is (guest: retried and dead-lettered; host: stops).

pub mod batch;
pub mod bundled;
pub mod checkpoint;
pub mod cli;
pub mod client;
pub mod config;
pub mod exec;
pub mod fault;
pub mod job;
pub mod kafka;
pub mod metrics;
pub mod migrate;
pub mod ops;
pub mod plan;
pub mod position;
pub mod record;
pub mod scaffold;
pub mod scale_out;
pub mod secret;
pub mod serve;
pub mod shuffle;
pub mod sink;
pub mod source;
pub mod state;
pub mod status;
pub mod ui;
pub mod wallclock;
pub mod wasm;
