//! The Wasm side of the host: engine, compiled-component cache, operator loading and instances.
//!
//! Lifecycle (DESIGN.md section 3): a component is compiled once per job (or loaded from the
//! on-disk cache), linked once into an `InstancePre`, instantiated once per (operator, worker)
//! and reused for every partition of every batch. Each instance runs in a sandbox: WASI with
//! only the operator's grants, and the limits of `limits.rs` on every call.

mod bindings;
mod bounded_wasi;
mod cache;
pub mod cpu_share;
mod engine;
mod guest_output;
pub mod guest_text;
mod host;
mod instance;
mod limits;
mod operator;
mod ticker;
mod usage;

pub use cache::ComponentCache;
pub use engine::{EngineSettings, new_engine};
pub use guest_output::GuestOutput;
pub use host::{DirGrant, Grants, HostState, new_linker, new_store};
pub use instance::{CombinerInstance, OperatorInstance, StateInstance, TransformInstance};
pub use limits::{LimitExceeded, LimitKind, Limits, bytes};
pub use operator::{OperatorHost, OperatorKind, OperatorSpec, PluginOrigin, PreparedOperator};
pub use usage::{Usage, UsageReport, thread_wasm_time};
