//! Spark's `saveAsTextFiles(prefix, suffix)`: each batch becomes a directory
//! `<prefix>-<batch time ms>[.<suffix>]` holding `part-NNNNN` files (one per partition, a record
//! per line) and `_SUCCESS`. The directory is written under a temporary name, fsynced, and renamed
//! into place, so a reader sees a batch whole or not at all; a replayed batch replaces its
//! directory instead of adding a second copy.

use super::{Output, Replay, Sink};
use crate::config::{ConfigError, ConnectorTable};
use crate::record::{StreamType, write_part};
use anyhow::{Context, Result};
use serde::Deserialize;
use spate_guest::Batch;
use std::fs::File;
use std::path::{Path, PathBuf};

/// `type = "text-files"`: the fields of the table.
#[derive(Deserialize)]
struct Fields {
    /// Path prefix, relative to the working directory.
    prefix: Option<toml::Spanned<String>>,
    /// Optional suffix of each batch's directory name.
    suffix: Option<String>,
}

/// Reads a text-files output's table.
pub fn build(table: &ConnectorTable<'_>) -> Result<Box<dyn Output>, ConfigError> {
    let fields: Fields = table.fields()?;
    let prefix = table.required("prefix", &fields.prefix)?.clone();
    Ok(Box::new(TextFiles::new(prefix, fields.suffix)))
}

/// The text-files output.
#[derive(Clone, Debug)]
pub struct TextFiles {
    prefix: String,
    suffix: Option<String>,
}

impl Output for TextFiles {
    fn describe(&self, stream: &str) -> String {
        format!(
            "text-files '{stream}': {}-<batch time ms>{} per batch (written atomically)",
            self.prefix,
            self.suffix
                .as_ref()
                .map(|s| format!(".{s}"))
                .unwrap_or_default()
        )
    }

    fn replay(&self) -> Replay {
        Replay::Replaces
    }

    fn open(&self, _job: &str) -> Box<dyn Sink> {
        Box::new(self.clone())
    }
}

impl TextFiles {
    /// Writes under `prefix`, with an optional `suffix`.
    pub fn new(prefix: String, suffix: Option<String>) -> Self {
        TextFiles { prefix, suffix }
    }

    /// The directory of a batch.
    pub fn batch_dir(&self, batch_time_ms: u64) -> PathBuf {
        let suffix = self
            .suffix
            .as_ref()
            .map(|s| format!(".{s}"))
            .unwrap_or_default();
        PathBuf::from(format!("{}-{batch_time_ms}{suffix}", self.prefix))
    }
}

impl Sink for TextFiles {
    fn write(
        &mut self,
        batch_time_ms: u64,
        partitions: &[Batch],
        types: &StreamType,
    ) -> Result<()> {
        let target = self.batch_dir(batch_time_ms);
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("text-files output: cannot create {}", parent.display()))?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir(&staging)
            .with_context(|| format!("text-files output: cannot create {}", staging.display()))?;
        for (i, partition) in partitions.iter().enumerate() {
            write_part(&staging.join(format!("part-{i:05}")), partition, types)
                .context("text-files output")?;
        }
        File::create(staging.join("_SUCCESS"))
            .context("text-files output: cannot write _SUCCESS")?;
        File::open(&staging).and_then(|d| d.sync_all()).ok();
        if target.exists() {
            // A replayed batch: replace the old copy rather than keep two.
            std::fs::remove_dir_all(&target).with_context(|| {
                format!("text-files output: cannot replace {}", target.display())
            })?;
        }
        std::fs::rename(&staging, &target).with_context(|| {
            format!(
                "text-files output: cannot rename {} to {}",
                staging.display(),
                target.display()
            )
        })?;
        File::open(parent).and_then(|d| d.sync_all()).ok();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Shape;
    use spate_guest::BatchBuilder;

    #[test]
    fn writes_one_directory_per_batch_and_replaces_on_replay() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("out/wc").to_string_lossy().into_owned();
        let mut sink = TextFiles::new(prefix, Some("txt".into()));
        let types = StreamType::keyed(Shape::TEXT, Shape::I64);
        let mut b = BatchBuilder::new();
        b.emit(b"x", &2i64);
        let partitions = [b.finish(), Batch::default()];
        sink.write(5000, &partitions, &types).unwrap();
        sink.write(5000, &partitions, &types).unwrap();
        let batch = dir.path().join("out/wc-5000.txt");
        assert_eq!(
            std::fs::read_to_string(batch.join("part-00000")).unwrap(),
            "(x,2)\n"
        );
        assert_eq!(
            std::fs::read_to_string(batch.join("part-00001")).unwrap(),
            ""
        );
        assert!(batch.join("_SUCCESS").exists());
        let entries: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
        assert_eq!(entries.len(), 1, "no staging directory left behind");
    }
}
