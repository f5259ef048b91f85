//! Checkpoints and the batch log: what recovery resumes from.
//!
//! A checkpoint is one sealed file, `checkpoint-<batch time ms>.spc`: JSON metadata (plan
//! layout and fingerprint, operator hashes, state schema versions, source positions, pending
//! batches) and the zstd-compressed state. A truncated or corrupted one is reported and skipped
//! for the previous one. The batch log ([`batch_log`]) holds every batch's input from the moment
//! it is formed until a checkpoint covers it.

pub mod batch_log;
mod codec;
pub mod compat;
mod sealed;

pub use codec::{Reader, Writer};

use crate::position::Positions;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SPATECK1";
const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".spc";

/// What a checkpoint says about the job it was taken of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The job's name.
    pub job: String,
    /// The last batch completed before the checkpoint.
    pub batch_time: u64,
    /// blake3 of `layout`.
    pub plan_fingerprint: String,
    /// The stateful nodes, in state order, as [`crate::plan::Plan::state_layout`] describes them.
    pub layout: Vec<String>,
    /// Each operator's name, content hash and state schema version (state operators).
    pub operators: Vec<OperatorStamp>,
    /// Where the sources stood after `batch_time`'s input.
    pub positions: Positions,
    /// Batches logged but not yet processed when the checkpoint was taken.
    pub pending_batches: Vec<u64>,
}

/// One operator as a checkpoint records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStamp {
    /// The step and plugin (`step 2 'totals' (plugin running-sum)`).
    pub name: String,
    /// The step alone (`step 2 'totals'`): what matches an operator across versions.
    pub step: String,
    /// blake3 of the plugin's bytes.
    pub hash: String,
    /// The state layout version a state operator declares.
    pub schema_version: Option<u32>,
}

/// A checkpoint read back and verified.
#[derive(Debug)]
pub struct Checkpoint {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its metadata.
    pub metadata: Metadata,
    /// The state bytes, decompressed.
    pub state: Vec<u8>,
}

/// A checkpoint directory another live process holds (its lock).
#[derive(Debug, thiserror::Error)]
#[error(
    "checkpoint directory {dir} is in use by another spate process ({holder}); one run per \
     checkpoint directory"
)]
pub struct DirInUse {
    /// The directory.
    pub dir: String,
    /// What the holder wrote in the lock file (its process id).
    pub holder: String,
}

/// Locks the checkpoint directory for this process (released when it exits, however it
/// exits): two runs of a job writing the same checkpoints and logs would corrupt each other.
pub fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create checkpoint directory {}", dir.display()))?;
    let path = dir.join("LOCK");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(DirInUse {
            dir: dir.display().to_string(),
            holder: holder.trim().to_owned(),
        }
        .into());
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "pid {}", std::process::id())?;
    Ok(file)
}

/// Writes a checkpoint into `dir` atomically; returns its path.
pub fn write(dir: &Path, metadata: &Metadata, state: &[u8]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create checkpoint directory {}", dir.display()))?;
    let header = serde_json::to_vec(metadata).context("encoding checkpoint metadata")?;
    let compressed = zstd::bulk::compress(state, 3).context("compressing the state")?;
    let path = dir.join(sealed::name(PREFIX, metadata.batch_time, SUFFIX));
    sealed::write(&path, MAGIC, &header, &[&compressed]).context("checkpoint")?;
    Ok(path)
}

/// Reads and verifies one checkpoint file.
pub fn read(path: &Path) -> Result<Checkpoint> {
    let file = sealed::read(path, MAGIC)?;
    let metadata: Metadata = serde_json::from_slice(&file.header)
        .with_context(|| format!("{}: unreadable metadata", path.display()))?;
    let state = zstd::stream::decode_all(&file.payload[..])
        .with_context(|| format!("{}: the state does not decompress", path.display()))?;
    Ok(Checkpoint {
        path: path.to_owned(),
        metadata,
        state,
    })
}

fn listed(dir: &Path) -> Vec<(u64, PathBuf)> {
    sealed::listed(dir, PREFIX, SUFFIX)
}

/// The newest checkpoint of `dir` that verifies, and the reasons newer ones were skipped.
pub fn newest_valid(dir: &Path) -> (Option<Checkpoint>, Vec<String>) {
    let mut skipped = Vec::new();
    for (_, path) in listed(dir) {
        match read(&path) {
            Ok(checkpoint) => return (Some(checkpoint), skipped),
            Err(e) => skipped.push(format!("{e:#}")),
        }
    }
    (None, skipped)
}

/// Deletes all but the newest `keep` checkpoints; returns the time of the oldest one kept
/// (the batch log must reach back to it).
pub fn prune(dir: &Path, keep: usize) -> Result<Option<u64>> {
    let files = listed(dir);
    for (_, path) in files.iter().skip(keep) {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(files.iter().take(keep).next_back().map(|(time, _)| *time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(batch_time: u64) -> Metadata {
        Metadata {
            job: "wc".into(),
            batch_time,
            plan_fingerprint: "f".into(),
            layout: vec!["totals".into()],
            positions: Positions::default(),
            pending_batches: vec![],
            operators: vec![OperatorStamp {
                name: "running-sum".into(),
                step: "step 1 'totals'".into(),
                hash: "h".into(),
                schema_version: Some(1),
            }],
        }
    }

    #[test]
    fn checkpoints_round_trip_and_prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for t in [1000, 2000, 3000] {
            write(dir.path(), &metadata(t), &vec![t as u8; 10_000]).unwrap();
        }
        let (newest, skipped) = newest_valid(dir.path());
        let newest = newest.unwrap();
        assert!(skipped.is_empty());
        assert_eq!(newest.metadata, metadata(3000));
        assert_eq!(newest.state, vec![3000u64 as u8; 10_000]);
        assert_eq!(prune(dir.path(), 2).unwrap(), Some(2000));
        assert_eq!(listed(dir.path()).len(), 2);
    }

    #[test]
    fn a_truncated_or_flipped_newest_checkpoint_falls_back_to_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &metadata(1000), b"old state").unwrap();
        let newest = write(dir.path(), &metadata(2000), b"new state").unwrap();
        let mut bytes = std::fs::read(&newest).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(&newest, &bytes).unwrap();
        let (found, skipped) = newest_valid(dir.path());
        assert_eq!(found.unwrap().state, b"old state");
        assert!(skipped[0].contains("checksum mismatch"), "{skipped:?}");
        std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
        let (found, skipped) = newest_valid(dir.path());
        assert_eq!(found.unwrap().metadata.batch_time, 1000);
        assert_eq!(skipped.len(), 1);
        std::fs::write(&newest, b"SPAT").unwrap();
        assert!(read(&newest).unwrap_err().to_string().contains("truncated"));
    }
}
