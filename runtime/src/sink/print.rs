//! Spark's `DStream.print(num)`: a header with the batch time and the first `num` records.

use super::{Output, OutputContext, Replay, Sink};
use crate::config::{ConfigError, ConnectorTable};
use crate::record::StreamType;
use crate::record::write_record;
use anyhow::{Context, Result};
use serde::Deserialize;
use spate_guest::Partition;
use std::io::Write;

/// `type = "print"`: the fields of the table.
#[derive(Deserialize)]
struct Fields {
    /// How many records to show (default 10).
    num: Option<usize>,
}

/// Spark's `print(num)`: the first `num` records of every batch on stdout.
#[derive(Debug)]
struct PrintOutput {
    num: usize,
}

/// Reads a print output's table.
pub fn build(table: &ConnectorTable<'_>) -> Result<Box<dyn Output>, ConfigError> {
    let fields: Fields = table.fields()?;
    Ok(Box::new(PrintOutput {
        num: fields.num.unwrap_or(10),
    }))
}

impl Output for PrintOutput {
    fn describe(&self, stream: &str) -> String {
        format!("print '{stream}': first {} records of each batch", self.num)
    }

    fn replay(&self) -> Replay {
        Replay::Repeats
    }

    fn open(&self, _context: &OutputContext<'_>, _types: &StreamType) -> Result<Box<dyn Sink>> {
        Ok(Box::new(Print::new(self.num, Box::new(std::io::stdout()))))
    }
}

/// The console output.
pub struct Print {
    num: usize,
    out: Box<dyn Write + Send>,
}

impl Print {
    /// Prints the first `num` records of each batch to `out`.
    pub fn new(num: usize, out: Box<dyn Write + Send>) -> Self {
        Print { num, out }
    }
}

/// The text Spark prints for a batch.
pub fn format_batch(
    num: usize,
    batch_time_ms: u64,
    partitions: &[Partition],
    types: &StreamType,
) -> String {
    let mut text = String::new();
    text.push_str("-------------------------------------------\n");
    text.push_str(&format!("Time: {batch_time_ms} ms\n"));
    text.push_str("-------------------------------------------\n");
    let mut records = partitions.iter().flat_map(Partition::records);
    for record in records.by_ref().take(num) {
        write_record(&mut text, &record, types);
        text.push('\n');
    }
    if records.next().is_some() {
        text.push_str("...\n");
    }
    text.push('\n');
    text
}

impl Sink for Print {
    fn write(
        &mut self,
        batch_time_ms: u64,
        partitions: &[Partition],
        types: &StreamType,
    ) -> Result<()> {
        let text = format_batch(self.num, batch_time_ms, partitions, types);
        self.out
            .write_all(text.as_bytes())
            .and_then(|_| self.out.flush())
            .context("print output: cannot write to stdout")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Shape;
    use spate_guest::PartitionBuilder;

    #[test]
    fn matches_sparks_layout_with_ellipsis() {
        let mut b = PartitionBuilder::new();
        for w in ["a", "b", "c"] {
            b.emit(w.as_bytes(), &1i64);
        }
        let types = StreamType::keyed(Shape::TEXT, Shape::I64);
        let text = format_batch(2, 1000, &[b.finish()], &types);
        assert_eq!(
            text,
            "-------------------------------------------\nTime: 1000 ms\n-------------------------------------------\n(a,1)\n(b,1)\n...\n\n"
        );
        let empty = format_batch(10, 2000, &[], &types);
        assert!(empty.ends_with("---\n\n") && !empty.contains("..."));
    }
}
