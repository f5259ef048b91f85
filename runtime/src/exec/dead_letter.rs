//! Where a skipped partition's input goes (`on-task-failure = "skip"`): one text file per
//! partition, a record per line as the text-files output writes them, so that it can be read
//! back by a directory source once the operator is fixed, and the error beside it.

use crate::record::StreamType;
use crate::record::write_part;
use anyhow::{Context, Result};
use spate_guest::Partition;
use std::path::{Path, PathBuf};

/// Writes `inputs` (the task's input partitions) and `error` under `dir`; returns the data file.
pub fn write(
    dir: &Path,
    batch_time: u64,
    stage: usize,
    partition: usize,
    inputs: &[Partition],
    types: &StreamType,
    error: &anyhow::Error,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create dead-letter directory {}", dir.display()))?;
    let name = format!("batch-{batch_time}-stage{stage}-partition{partition}");
    let mut records = Partition::default();
    for input in inputs {
        records.extend_from(input);
    }
    let data = dir.join(format!("{name}.txt"));
    write_part(&data, &records, types)?;
    let reason = dir.join(format!("{name}.error"));
    std::fs::write(&reason, format!("{error:#}\n"))
        .with_context(|| format!("cannot write {}", reason.display()))?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_and_its_error_are_written_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = [
            Partition::from_lines(["a", "b"]),
            Partition::from_lines(["c"]),
        ];
        let types = StreamType::lines();
        let error = anyhow::anyhow!("it trapped");
        let path = write(dir.path(), 1000, 0, 3, &inputs, &types, &error).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
        let reason = std::fs::read_to_string(path.with_extension("error")).unwrap();
        assert_eq!(reason, "it trapped\n");
    }
}
