//! Output operations, run once per batch in batch order.

mod command;
mod print;
mod text_files;

pub use text_files::{partition_text, write_part};

use crate::config::OutputSpec;
use crate::plan::StreamType;
use anyhow::Result;
use spate_guest::Batch;

pub use print::Print;
pub use text_files::TextFiles;

/// An output operation.
pub trait Sink: Send {
    /// Writes one batch's final partitions.
    fn write(&mut self, batch_time_ms: u64, partitions: &[Batch], types: &StreamType)
    -> Result<()>;
}

/// Builds the sink an output spec describes, for job `job`.
pub fn build(spec: &OutputSpec, job: &str) -> Box<dyn Sink> {
    match spec {
        OutputSpec::Print { num } => Box::new(Print::new(*num, Box::new(std::io::stdout()))),
        OutputSpec::TextFiles { prefix, suffix } => {
            Box::new(TextFiles::new(prefix.clone(), suffix.clone()))
        }
        OutputSpec::Command { argv } => Box::new(command::Command::new(argv.clone(), job)),
    }
}
