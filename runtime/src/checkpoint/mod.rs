//! Checkpoint files (the foundation of recovery; not yet wired into the job runner).
//!
//! A checkpoint is one file, `checkpoint-<batch time ms>.spc`:
//!
//! ```text
//! "SPATECK1" | u32 LE metadata length | metadata (JSON) | zstd(state bytes) | blake3(all before)
//! ```
//!
//! It is written under a temporary name, fsynced, renamed into place and its directory fsynced,
//! so a crash leaves either the whole file or none. Reading checks the magic, the length and the
//! checksum before trusting anything, so a truncated or corrupted file is reported and skipped
//! for the previous one.

mod codec;

pub use codec::{Reader, Writer};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SPATECK1";
const HASH: usize = 32;

/// What a checkpoint says about the job it was taken of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The job's name.
    pub job: String,
    /// The last batch completed before the checkpoint.
    pub batch_time: u64,
    /// A fingerprint of the plan (graph, ops, partitions, windows).
    pub plan_fingerprint: String,
    /// Each operator's name, content hash and state schema version (state operators).
    pub operators: Vec<OperatorStamp>,
}

/// One operator as a checkpoint records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStamp {
    /// Display name.
    pub name: String,
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

fn file_name(batch_time: u64) -> String {
    format!("checkpoint-{batch_time:020}.spc")
}

/// Writes a checkpoint into `dir` atomically; returns its path.
pub fn write(dir: &Path, metadata: &Metadata, state: &[u8]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create checkpoint directory {}", dir.display()))?;
    let meta = serde_json::to_vec(metadata).context("encoding checkpoint metadata")?;
    let mut bytes = Vec::with_capacity(state.len() / 3 + meta.len() + 64);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&meta);
    bytes.extend_from_slice(&zstd::bulk::compress(state, 3).context("compressing the state")?);
    let hash = blake3::hash(&bytes);
    bytes.extend_from_slice(hash.as_bytes());
    let path = dir.join(file_name(metadata.batch_time));
    let staged = dir.join(format!(".{}.tmp", file_name(metadata.batch_time)));
    let written =
        File::create(&staged).and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_all()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staged);
        return Err(e).with_context(|| format!("cannot write checkpoint {}", staged.display()));
    }
    std::fs::rename(&staged, &path)
        .with_context(|| format!("cannot rename checkpoint into {}", path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync checkpoint directory {}", dir.display()))?;
    Ok(path)
}

/// Reads and verifies one checkpoint file.
pub fn read(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() < MAGIC.len() + 4 + HASH || &bytes[..MAGIC.len()] != MAGIC {
        bail!("{}: not a Spate checkpoint, or truncated", path.display());
    }
    let (body, hash) = bytes.split_at(bytes.len() - HASH);
    if blake3::hash(body).as_bytes() != hash {
        bail!(
            "{}: checksum mismatch (truncated or corrupted)",
            path.display()
        );
    }
    let meta_len = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    let Some(meta) = body.get(12..12 + meta_len) else {
        bail!("{}: metadata length past the end", path.display());
    };
    let metadata: Metadata = serde_json::from_slice(meta)
        .with_context(|| format!("{}: unreadable metadata", path.display()))?;
    let state = zstd::stream::decode_all(&body[12 + meta_len..])
        .with_context(|| format!("{}: the state does not decompress", path.display()))?;
    Ok(Checkpoint {
        path: path.to_owned(),
        metadata,
        state,
    })
}

/// The checkpoint files in `dir`, newest first.
fn listed(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("checkpoint-") && n.ends_with(".spc"))
        })
        .collect();
    // Zero-padded times: the name order is the time order.
    paths.sort();
    paths.reverse();
    Ok(paths)
}

/// The newest checkpoint of `dir` that verifies, and the reasons newer ones were skipped.
pub fn newest_valid(dir: &Path) -> Result<(Option<Checkpoint>, Vec<String>)> {
    let mut skipped = Vec::new();
    for path in listed(dir)? {
        match read(&path) {
            Ok(checkpoint) => return Ok((Some(checkpoint), skipped)),
            Err(e) => skipped.push(format!("{e:#}")),
        }
    }
    Ok((None, skipped))
}

/// Deletes all but the newest `keep` checkpoints (and staged files of failed writes).
pub fn prune(dir: &Path, keep: usize) -> Result<()> {
    for path in listed(dir)?.into_iter().skip(keep) {
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(batch_time: u64) -> Metadata {
        Metadata {
            job: "wc".into(),
            batch_time,
            plan_fingerprint: "f".into(),
            operators: vec![OperatorStamp {
                name: "running-sum".into(),
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
        let (newest, skipped) = newest_valid(dir.path()).unwrap();
        let newest = newest.unwrap();
        assert!(skipped.is_empty());
        assert_eq!(newest.metadata, metadata(3000));
        assert_eq!(newest.state, vec![3000u64 as u8; 10_000]);
        prune(dir.path(), 2).unwrap();
        assert_eq!(listed(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn a_truncated_or_flipped_newest_checkpoint_falls_back_to_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &metadata(1000), b"old state").unwrap();
        let newest = write(dir.path(), &metadata(2000), b"new state").unwrap();
        let mut bytes = std::fs::read(&newest).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(&newest, &bytes).unwrap();
        let (found, skipped) = newest_valid(dir.path()).unwrap();
        assert_eq!(found.unwrap().state, b"old state");
        assert!(skipped[0].contains("checksum mismatch"), "{skipped:?}");
        std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
        let (found, skipped) = newest_valid(dir.path()).unwrap();
        assert_eq!(found.unwrap().metadata.batch_time, 1000);
        assert_eq!(skipped.len(), 1);
        std::fs::write(&newest, b"SPAT").unwrap();
        assert!(read(&newest).unwrap_err().to_string().contains("truncated"));
    }
}
