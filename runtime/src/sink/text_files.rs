//! Spark's `saveAsTextFiles(prefix, suffix)`: each batch becomes a directory
//! `<prefix>-<batch time ms>[.<suffix>]` holding `part-NNNNN` files (one per partition, a record
//! per line) and `_SUCCESS`. The directory is written under a temporary name, fsynced, and renamed
//! into place, so a reader sees a batch whole or not at all; a replayed batch replaces its
//! directory instead of adding a second copy, swapped in at once (a reader sees the old copy or
//! the new one). A scale-out task writes its part of a batch as
//! `<prefix>-<batch time ms>[.<suffix>]/<task>/` the same way, so tasks in different processes
//! never write the same file.

use super::{Output, OutputContext, Replay, Sink};
use crate::config::{ConfigError, ConnectorTable};
use crate::record::{StreamType, write_part};
use anyhow::{Context, Result};
use serde::Deserialize;
use spate_guest::Partition;
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
    table.required("prefix", &fields.prefix)?;
    let prefix = fields
        .prefix
        .as_ref()
        .map(|p| table.host_path("prefix", p))
        .transpose()?
        .unwrap_or_default();
    Ok(Box::new(TextFiles::new(prefix, fields.suffix)))
}

/// The text-files output.
#[derive(Clone, Debug)]
pub struct TextFiles {
    prefix: String,
    suffix: Option<String>,
    /// The scale-out task writing, whose part of each batch is a directory of its own.
    task: Option<String>,
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

    fn open(&self, context: &OutputContext<'_>, _types: &StreamType) -> Result<Box<dyn Sink>> {
        match self.remove_leftovers() {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "text-files output {}: removed {n} staging directories a killed run left",
                self.prefix
            ),
            Err(e) => tracing::warn!(
                "text-files output {}: cannot clean up after an earlier run: {e}",
                self.prefix
            ),
        }
        Ok(Box::new(TextFiles {
            task: context.task.map(str::to_owned),
            ..self.clone()
        }))
    }
}

impl TextFiles {
    /// Writes under `prefix`, with an optional `suffix`.
    pub fn new(prefix: String, suffix: Option<String>) -> Self {
        TextFiles {
            prefix,
            suffix,
            task: None,
        }
    }

    /// The parent directory of the batches' directories and their names' start.
    fn parent_and_stem(&self) -> (PathBuf, String) {
        let prefix = Path::new(&self.prefix);
        let parent = prefix
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let stem = prefix
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (parent.to_owned(), stem)
    }

    /// Removes the staging directories (`.<name>.tmp-<pid>`) that a run killed mid-write left,
    /// those of processes that no longer run: a live process's are its own. Returns how many.
    fn remove_leftovers(&self) -> std::io::Result<usize> {
        let (parent, stem) = self.parent_and_stem();
        let entries = match std::fs::read_dir(&parent) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mine = std::process::id();
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = staging_pid(&name, &stem) else {
                continue;
            };
            if pid == mine || Path::new("/proc").join(pid.to_string()).exists() {
                continue;
            }
            std::fs::remove_dir_all(entry.path())?;
            removed += 1;
        }
        Ok(removed)
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

/// The process id in the name of a staging directory of batches named `<stem>-<time>...`.
fn staging_pid(name: &str, stem: &str) -> Option<u32> {
    let rest = name
        .strip_prefix('.')?
        .strip_prefix(stem)?
        .strip_prefix('-')?;
    let time_end = rest.find(|c: char| !c.is_ascii_digit())?;
    let (time, rest) = rest.split_at(time_end);
    if time.is_empty() {
        return None;
    }
    let (_, pid) = rest.rsplit_once(".tmp-")?;
    pid.parse().ok()
}

/// Swaps the directories `a` and `b` in one step (Linux's `renameat2` with
/// `RENAME_EXCHANGE`); an error where the file system cannot.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    match done {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

impl Sink for TextFiles {
    fn write(
        &mut self,
        batch_time_ms: u64,
        partitions: &[Partition],
        types: &StreamType,
    ) -> Result<()> {
        let batch = self.batch_dir(batch_time_ms);
        let (parent, _) = self.parent_and_stem();
        let parent = parent.as_path();
        let mut name = batch
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = match &self.task {
            Some(task) => {
                name = format!("{name}.{task}");
                batch.join(task)
            }
            None => batch.clone(),
        };
        let made = target.parent().unwrap_or(parent);
        std::fs::create_dir_all(made)
            .with_context(|| format!("text-files output: cannot create {}", made.display()))?;
        // Staged beside the batches (where a later run finds what a killed one left).
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
        // A replayed batch replaces the old copy rather than keep two: swapped in at once
        // where the file system can, so that a reader sees the old copy or the new one, never
        // none or one half removed; the old copy is then removed under the staging name.
        let replaced = target.exists() && exchange(&staging, &target).is_ok();
        if replaced {
            std::fs::remove_dir_all(&staging).with_context(|| {
                format!("text-files output: cannot remove {}", staging.display())
            })?;
        } else {
            if target.exists() {
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
        }
        File::open(made).and_then(|d| d.sync_all()).ok();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Shape;
    use spate_guest::PartitionBuilder;

    #[test]
    fn staging_leftovers_of_dead_processes_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("out/wc").display().to_string();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        // A process id no process can have, init's (alive), and names that are not staging.
        let dead = out.join(".wc-1000.txt.tmp-4294967295");
        let live = out.join(".wc-2000.txt.tmp-1");
        let other = out.join(".wcx-1000.txt.tmp-4294967295");
        let done = out.join("wc-1000.txt");
        for d in [&dead, &live, &other, &done] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("part-00000"), "x\n").unwrap();
        }
        let sink = TextFiles::new(prefix, Some("txt".into()));
        assert_eq!(sink.remove_leftovers().unwrap(), 1);
        assert!(!dead.exists() && live.exists() && other.exists() && done.exists());
        assert_eq!(staging_pid(".wc-1000.tmp-42", "wc"), Some(42));
        assert_eq!(staging_pid(".wc-.tmp-42", "wc"), None);
        assert_eq!(staging_pid("wc-1000.tmp-42", "wc"), None);
    }

    #[test]
    fn writes_one_directory_per_batch_and_replaces_on_replay() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("out/wc").to_string_lossy().into_owned();
        let mut sink = TextFiles::new(prefix, Some("txt".into()));
        let types = StreamType::keyed(Shape::TEXT, Shape::I64);
        let mut b = PartitionBuilder::new();
        b.emit(b"x", &2i64);
        let partitions = [b.finish(), Partition::default()];
        let mut first = PartitionBuilder::new();
        first.emit(b"y", &1i64);
        sink.write(5000, &[first.finish()], &types).unwrap();
        // Replayed: the second copy replaces the first.
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

    #[test]
    fn scale_out_tasks_write_their_parts_of_a_batch_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("out/wc").to_string_lossy().into_owned();
        let types = StreamType::keyed(Shape::TEXT, Shape::I64);
        for (task, word) in [("in-0", b"x"), ("in-1", b"y")] {
            let mut sink = TextFiles {
                task: Some(task.to_owned()),
                ..TextFiles::new(prefix.clone(), None)
            };
            let mut b = PartitionBuilder::new();
            b.emit(word, &1i64);
            let partitions = [b.finish()];
            sink.write(5000, &partitions, &types).unwrap();
            // A replay of the task's batch replaces its part only.
            sink.write(5000, &partitions, &types).unwrap();
        }
        let batch = dir.path().join("out/wc-5000");
        let read = |task: &str| std::fs::read_to_string(batch.join(task).join("part-00000"));
        assert_eq!(read("in-0").unwrap(), "(x,1)\n");
        assert_eq!(read("in-1").unwrap(), "(y,1)\n");
        assert!(batch.join("in-1/_SUCCESS").exists());
        let entries: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
        assert_eq!(entries.len(), 1, "no staging directory left behind");
    }
}
