//! New text files in a directory, like Spark's `textFileStream`: each file that appears is read
//! once, whole. Files should be moved in atomically (written elsewhere, then renamed), as Spark
//! requires; names starting with `.` or `_` are ignored (temporary and marker files).

use super::ReceiverContext;
use super::lines::LineSplitter;
use crate::config::{SourceSpec, Trigger};
use anyhow::{Context, Result, bail};
use spate_guest::Column;
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

const READ_CHUNK: usize = 256 << 10;

/// Runs until the job stops (or, with `available-now`, once every present file is read).
pub fn run(context: &ReceiverContext, spec: &SourceSpec) -> Result<()> {
    let SourceSpec::Directory {
        path,
        include_existing,
        poll_interval,
        lines: rules,
    } = spec
    else {
        bail!("not a directory source");
    };
    let dir = Path::new(path);
    let available_now = context.trigger == Trigger::AvailableNow;
    let mut seen: HashSet<PathBuf> = HashSet::new();
    if !include_existing && !available_now {
        seen.extend(list(dir)?);
    }
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        for file in list(dir)? {
            if seen.contains(&file) {
                continue;
            }
            let mut splitter = LineSplitter::new(
                format!("file {}", file.display()),
                rules.max_line_length.get(),
                rules.on_bad_line,
            );
            if !read_file(context, &file, &mut splitter, &mut buf)? {
                return Ok(());
            }
            tracing::debug!("source '{}': read {}", context.name, file.display());
            seen.insert(file);
        }
        if available_now || !context.sleep(poll_interval.0) {
            return Ok(());
        }
    }
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

/// Reads one file into the buffer; false when the job is stopping.
fn read_file(
    context: &ReceiverContext,
    path: &Path,
    splitter: &mut LineSplitter,
    buf: &mut [u8],
) -> Result<bool> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = Column::default();
    loop {
        let n = file
            .read(buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            splitter.finish(&mut lines)?;
            // The rest of the file is delivered even when stopping: a file is read whole.
            context.deliver(&mut lines, splitter);
            return Ok(!context.buffer.is_stopping());
        }
        splitter.feed(&buf[..n], &mut lines)?;
        context.deliver(&mut lines, splitter);
    }
}
