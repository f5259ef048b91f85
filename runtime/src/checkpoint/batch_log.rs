//! The batch log (Spark's write-ahead log, at batch granularity): each batch's input is written
//! and fsynced as `batches/batch-<time>.log` before the batch runs, so that input accepted
//! before a crash is processed after it, in the same batch, with the same partitions. A log is
//! deleted once every checkpoint kept is newer than its batch.

use super::sealed;
use crate::batch::{BatchInput, Block};
use crate::position::Progress;
use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use spate_guest::{Column, Partition};
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
    /// Per block: source index, value data bytes, value offsets.
    blocks: Vec<(usize, usize, usize)>,
    /// Per block (absent in logs of text sources only): its keys' data bytes and offsets if it
    /// has keys, and its count of event times. They follow the block's values in the payload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys_and_times: Vec<(Option<(usize, usize)>, usize)>,
}

/// A column's offsets as the payload stores them.
fn offset_bytes(column: &Column) -> Vec<u8> {
    column
        .offsets
        .iter()
        .flat_map(|o| o.to_le_bytes())
        .collect()
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
            .map(|b| {
                let values = &b.records.values;
                (b.source, values.data.len(), values.offsets.len())
            })
            .collect(),
        keys_and_times: Vec::new(),
    };
    let mut header = header;
    let plain = |b: &Block| b.records.keys.is_none() && b.records.timestamps.is_empty();
    if !input.blocks.iter().all(plain) {
        header.keys_and_times = input
            .blocks
            .iter()
            .map(|b| {
                let keys = b.records.keys.as_ref();
                let keys = keys.map(|k| (k.data.len(), k.offsets.len()));
                (keys, b.records.timestamps.len())
            })
            .collect();
    }
    let header = serde_json::to_vec(&header).context("encoding a batch log header")?;
    // Owned pieces (offsets, times) first, then the payload borrows them in block order.
    let mut owned: Vec<Vec<u8>> = Vec::new();
    for block in &input.blocks {
        owned.push(offset_bytes(&block.records.values));
        if let Some(keys) = &block.records.keys {
            owned.push(offset_bytes(keys));
        }
        owned.push(
            block
                .records
                .timestamps
                .iter()
                .flat_map(|t| t.to_le_bytes())
                .collect(),
        );
    }
    let mut owned = owned.iter();
    let mut payload: Vec<&[u8]> = Vec::with_capacity(input.blocks.len() * 5);
    for block in &input.blocks {
        payload.push(&block.records.values.data);
        payload.push(owned.next().expect("value offsets"));
        if let Some(keys) = &block.records.keys {
            payload.push(&keys.data);
            payload.push(owned.next().expect("key offsets"));
        }
        payload.push(owned.next().expect("event times"));
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
    let past_end = || anyhow!("{}: blocks past the end of the file", path.display());
    let mut blocks = Vec::with_capacity(header.blocks.len());
    for (i, (source, bytes, offsets)) in header.blocks.into_iter().enumerate() {
        let values = take_column(&mut rest, bytes, offsets).ok_or_else(past_end)?;
        let (keys, times) = header.keys_and_times.get(i).copied().unwrap_or_default();
        let keys = match keys {
            Some((bytes, offsets)) => {
                Some(take_column(&mut rest, bytes, offsets).ok_or_else(past_end)?)
            }
            None => None,
        };
        if rest.len() < times * 8 {
            return Err(past_end());
        }
        let (time_bytes, after) = rest.split_at(times * 8);
        rest = after;
        let timestamps = time_bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        blocks.push(Block {
            source,
            records: Partition {
                keys,
                values,
                timestamps,
            },
            progress: Vec::new(),
        });
    }
    let mut input = BatchInput::new(header.time, blocks, header.end_of_input);
    input.progress = header.progress;
    Ok(input)
}

/// A column of `bytes` data bytes and `offsets` offsets from the front of `rest`.
fn take_column(rest: &mut &[u8], bytes: usize, offsets: usize) -> Option<Column> {
    if rest.len() < bytes + offsets * 4 {
        return None;
    }
    let (data, after) = rest.split_at(bytes);
    let (offset_bytes, after) = after.split_at(offsets * 4);
    *rest = after;
    Some(Column {
        data: data.to_vec(),
        offsets: offset_bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
    })
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
        let block = |source, v: &[&str]| Block {
            source,
            records: Partition::from_lines(v.iter().copied()),
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
        assert_eq!(back.blocks[0].records.values.get(1), b"c");
        assert_eq!(back.blocks[1].source, 1);
        truncate(dir.path(), 1000).unwrap();
        assert_eq!(newer(dir.path(), None).len(), 1);
        assert!(newer(dir.path(), Some(2000)).is_empty());
    }

    #[test]
    fn keys_and_event_times_are_logged_with_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let keyed = Partition {
            keys: Some(Column::from_values([&b"k1"[..], b""])),
            values: Column::from_values([&b"v1"[..], b"v2"]),
            timestamps: vec![1_700_000_000_000, -5],
        };
        let blocks = vec![
            Block {
                source: 0,
                records: Partition::from_lines(["plain"]),
                progress: Vec::new(),
            },
            Block {
                source: 1,
                records: keyed.clone(),
                progress: vec![Progress::Part {
                    name: "t/0".into(),
                    next: 2,
                }],
            },
        ];
        write(dir.path(), &BatchInput::new(3000, blocks, false)).unwrap();
        let back = read(&newer(dir.path(), None)[0].1).unwrap();
        assert_eq!(back.blocks[0].records, Partition::from_lines(["plain"]));
        assert_eq!(back.blocks[1].records, keyed);
        assert_eq!(back.progress.len(), 1);
    }
}
