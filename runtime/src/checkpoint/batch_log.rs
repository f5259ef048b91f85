//! The batch log (Spark's write-ahead log, at batch granularity): each batch's input is written
//! and fsynced as `batches/batch-<time>.log` before the batch runs, so that input accepted
//! before a crash is processed after it, in the same batch, with the same partitions. A log is
//! deleted once every checkpoint kept is newer than its batch.

use super::sealed;
use crate::batch::{BatchInput, Block};
use crate::position::Progress;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use spate_guest::Column;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SPATEBL1";
const PREFIX: &str = "batch-";
const SUFFIX: &str = ".log";

/// The header of a logged batch.
#[derive(Serialize, Deserialize)]
struct Header {
    time: u64,
    end_of_input: bool,
    progress: Vec<(usize, Progress)>,
    /// Per block: source index, data bytes, offsets.
    blocks: Vec<(usize, usize, usize)>,
}

/// Where the logs of a checkpoint directory go.
pub fn dir(checkpoint_dir: &Path) -> PathBuf {
    checkpoint_dir.join("batches")
}

/// Logs `input` durably; returns the bytes of input logged.
pub fn write(dir: &Path, input: &BatchInput) -> Result<usize> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create batch log directory {}", dir.display()))?;
    let header = Header {
        time: input.time_ms,
        end_of_input: input.end_of_input,
        progress: input.progress.clone(),
        blocks: input
            .blocks
            .iter()
            .map(|b| (b.source, b.lines.data.len(), b.lines.offsets.len()))
            .collect(),
    };
    let header = serde_json::to_vec(&header).context("encoding a batch log header")?;
    let offsets: Vec<Vec<u8>> = input
        .blocks
        .iter()
        .map(|b| {
            b.lines
                .offsets
                .iter()
                .flat_map(|o| o.to_le_bytes())
                .collect()
        })
        .collect();
    let mut payload: Vec<&[u8]> = Vec::with_capacity(input.blocks.len() * 2);
    for (block, offsets) in input.blocks.iter().zip(&offsets) {
        payload.push(&block.lines.data);
        payload.push(offsets);
    }
    let path = dir.join(sealed::name(PREFIX, input.time_ms, SUFFIX));
    sealed::write(&path, MAGIC, &header, &payload).context("batch log")?;
    Ok(input.bytes())
}

/// Reads a logged batch back.
pub fn read(path: &Path) -> Result<BatchInput> {
    let file = sealed::read(path, MAGIC)?;
    let header: Header = serde_json::from_slice(&file.header)
        .with_context(|| format!("{}: unreadable header", path.display()))?;
    let mut rest = &file.payload[..];
    let mut blocks = Vec::with_capacity(header.blocks.len());
    for (source, bytes, offsets) in header.blocks {
        if rest.len() < bytes + offsets * 4 {
            bail!("{}: blocks past the end of the file", path.display());
        }
        let (data, after) = rest.split_at(bytes);
        let (offset_bytes, after) = after.split_at(offsets * 4);
        rest = after;
        let lines = Column {
            data: data.to_vec(),
            offsets: offset_bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        };
        blocks.push(Block {
            source,
            lines,
            progress: Vec::new(),
        });
    }
    let mut input = BatchInput::new(header.time, blocks, header.end_of_input);
    input.progress = header.progress;
    Ok(input)
}

/// The logged batches newer than `after`, oldest first.
pub fn newer(dir: &Path, after: Option<u64>) -> Vec<(u64, PathBuf)> {
    let mut logs = sealed::listed(dir, PREFIX, SUFFIX);
    logs.retain(|(time, _)| after.is_none_or(|after| *time > after));
    logs.reverse();
    logs
}

/// Deletes the logs of batches up to `through`.
pub fn truncate(dir: &Path, through: u64) -> Result<()> {
    for (time, path) in sealed::listed(dir, PREFIX, SUFFIX) {
        if time <= through {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_batch_reads_back_whole_and_truncation_drops_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let lines = |v: &[&str]| Column::from_values(v.iter().map(|s| s.as_bytes()));
        let block = |source, v: &[&str]| Block {
            source,
            lines: lines(v),
            progress: vec![Progress::Stream(9)],
        };
        let input = BatchInput::new(2000, vec![block(0, &["a b", "c"]), block(1, &["d"])], true);
        assert_eq!(
            input.progress,
            [(0, Progress::Stream(9)), (1, Progress::Stream(9))]
        );
        write(dir.path(), &input).unwrap();
        write(dir.path(), &BatchInput::new(1000, vec![], false)).unwrap();
        let logs = newer(dir.path(), None);
        assert_eq!(logs.iter().map(|l| l.0).collect::<Vec<_>>(), [1000, 2000]);
        let back = read(&logs[1].1).unwrap();
        assert_eq!((back.time_ms, back.end_of_input), (2000, true));
        assert_eq!(back.progress, input.progress);
        assert_eq!(back.blocks.len(), 2);
        assert_eq!(back.blocks[0].lines.get(1), b"c");
        assert_eq!(back.blocks[1].source, 1);
        truncate(dir.path(), 1000).unwrap();
        assert_eq!(newer(dir.path(), None).len(), 1);
        assert!(newer(dir.path(), Some(2000)).is_empty());
    }
}
