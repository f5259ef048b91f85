//! New text files in a directory, like Spark's `textFileStream`: each file that appears is read
//! once, whole. Files should be moved in atomically (written elsewhere, then renamed), as Spark
//! requires; names starting with `.` or `_` are ignored (temporary and marker files).

use super::ReceiverContext;
use super::lines::LineSplitter;
use super::position::Progress;
use crate::config::{SourceSpec, Trigger};
use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const READ_CHUNK: usize = 256 << 10;

/// Runs until the job stops (or, with `available-now`, once every present file is read).
pub fn run(context: &ReceiverContext, spec: &SourceSpec) -> Result<()> {
    let SourceSpec::Directory {
        path,
        poll_interval,
        lines: rules,
        ..
    } = spec
    else {
        bail!("not a directory source");
    };
    let dir = Path::new(path);
    let available_now = context.trigger == Trigger::AvailableNow;
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        for file in list(dir)? {
            if seen.contains(&file) {
                continue;
            }
            let name = file_name(&file);
            let start = context.resume.files.get(&name).copied().unwrap_or(0);
            let whole = std::fs::metadata(&file).map_or(0, |m| m.len());
            if start < whole || start == 0 {
                let mut splitter = LineSplitter::new(
                    format!("file {}", file.display()),
                    rules.max_line_length.get(),
                    rules.on_bad_line,
                );
                let mut reader = FileReader {
                    name,
                    start,
                    splitter: &mut splitter,
                };
                if !reader.read(context, &file, &mut buf)? {
                    return Ok(());
                }
                tracing::debug!("source '{}': read {}", context.name, file.display());
            }
            seen.insert(file);
        }
        if available_now || !context.sleep(poll_interval.0) {
            return Ok(());
        }
    }
}

/// Files present when a job first starts, recorded as read when the source only takes new
/// files (`include-existing = false`, processing time): recorded in the job's first
/// checkpoint, they stay "not new" across restarts.
pub fn existing(spec: &SourceSpec, trigger: Trigger) -> Result<Vec<Progress>> {
    let SourceSpec::Directory {
        path,
        include_existing: false,
        ..
    } = spec
    else {
        return Ok(Vec::new());
    };
    if trigger == Trigger::AvailableNow {
        return Ok(Vec::new());
    }
    Ok(list(Path::new(path))?
        .into_iter()
        .map(|file| Progress::File {
            name: file_name(&file),
            offset: std::fs::metadata(&file).map_or(0, |m| m.len()),
        })
        .collect())
}

/// The regular, visible files of `dir`, oldest first (by modification time, then name).
fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list directory {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list directory {}", dir.display()))?;
        let name = entry.file_name();
        let hidden = name.to_string_lossy().starts_with(['.', '_']);
        let Ok(meta) = entry.metadata() else { continue };
        if hidden || !meta.is_file() {
            continue;
        }
        files.push((meta.modified().ok(), entry.path()));
    }
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One file being read from `start` (0, or where a recovered job had got to).
struct FileReader<'a> {
    name: String,
    start: u64,
    splitter: &'a mut LineSplitter,
}

impl FileReader<'_> {
    fn progress(&self) -> Option<Progress> {
        Some(Progress::File {
            name: self.name.clone(),
            offset: self.start + self.splitter.consumed(),
        })
    }

    /// Reads the file into the buffer; false when the job is stopping.
    fn read(&mut self, context: &ReceiverContext, path: &Path, buf: &mut [u8]) -> Result<bool> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        file.seek(SeekFrom::Start(self.start))
            .with_context(|| format!("cannot seek in {}", path.display()))?;
        let mut lines = context.buffer.block_column(buf.len());
        loop {
            let n = file
                .read(buf)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                self.splitter.finish(&mut lines)?;
                // The rest of the file is delivered even when stopping: a file is read whole.
                context.deliver(&mut lines, self.splitter, self.progress());
                return Ok(!context.buffer.is_stopping());
            }
            self.splitter.feed(&buf[..n], &mut lines)?;
            if n == buf.len() {
                context.deliver_blocks(&mut lines, self.splitter, self.progress());
            } else {
                context.deliver(&mut lines, self.splitter, self.progress());
            }
        }
    }
}
