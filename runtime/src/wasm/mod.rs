//! The Wasm side of the host: engine, compiled-component cache, operator loading and instances.
//!
//! Lifecycle (DESIGN.md section 3): a component is compiled once per job (or loaded from the
//! on-disk cache), linked once into an `InstancePre`, instantiated once per (operator, worker)
//! and reused for every partition of every batch.

mod bindings;
mod cache;
mod engine;
mod guest_output;
mod host;
mod instance;
mod operator;

pub use cache::ComponentCache;
pub use engine::new_engine;
pub use guest_output::GuestOutput;
pub use host::{HostState, new_linker, new_store};
pub use instance::{CombinerInstance, OperatorInstance, TransformInstance};
pub use operator::{OperatorKind, OperatorSpec, PluginOrigin, PreparedOperator};
