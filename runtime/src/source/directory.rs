//! New text files in a directory, like Spark's `textFileStream`: each file that appears is read
//! once, whole. Files should be moved in atomically (written elsewhere, then renamed), as Spark
//! requires; names starting with `.` or `_` are ignored (temporary and marker files).

use super::lines::{LineRules, LineSplitter};
use super::{ReceiverContext, Source};
use crate::config::{BadLinePolicy, ByteSize, ConfigError, ConnectorTable, Interval, Trigger};
use crate::position::{Progress, SourcePosition};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

const READ_CHUNK: usize = 256 << 10;

/// `type = "directory"`: the fields of the table.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Fields {
    /// The directory watched.
    path: Option<Spanned<String>>,
    /// Also read the files present at start (default false).
    include_existing: Option<bool>,
    /// How often it is listed (default 200ms).
    poll_interval: Option<Interval>,
    /// Longest accepted line (default 1 MiB).
    max_line_length: Option<ByteSize>,
    /// `fail` (default) or `skip`.
    on_bad_line: Option<BadLinePolicy>,
}

/// New text files in a directory, like Spark's `textFileStream`.
#[derive(Debug)]
pub struct Directory {
    path: String,
    /// Also read the files present at start (as Spark's `newFilesOnly = false`).
    include_existing: bool,
    poll_interval: Interval,
    lines: LineRules,
}

/// Reads a directory source's table; the directory must exist.
pub fn build(table: &ConnectorTable<'_>) -> Result<Box<dyn Source>, ConfigError> {
    let fields: Fields = table.fields()?;
    table.required("path", &fields.path)?;
    let path = &fields
        .path
        .as_ref()
        .map(|p| table.host_path("path", p))
        .transpose()?
        .unwrap_or_default();
    if !Path::new(path).is_dir() {
        let span = fields.path.as_ref().map_or(0..0, Spanned::span);
        return Err(table.error_at(
            span,
            "path",
            format!("directory '{path}' does not exist (create it first)"),
        ));
    }
    Ok(Box::new(Directory {
        path: path.clone(),
        include_existing: fields.include_existing.unwrap_or(false),
        poll_interval: fields
            .poll_interval
            .unwrap_or(Interval(Duration::from_millis(200))),
        lines: LineRules::new(fields.max_line_length, fields.on_bad_line),
    }))
}

impl Source for Directory {
    fn describe(&self) -> String {
        format!(
            "new text files in {}{} (polled every {}, {})",
            self.path,
            if self.include_existing {
                ", existing files too"
            } else {
                ""
            },
            self.poll_interval,
            self.lines.describe()
        )
    }

    /// Files present when a new job starts count as read when the source only takes new files
    /// (`include-existing = false`, processing time): recorded in the job's first checkpoint,
    /// they stay "not new" across restarts.
    fn start(&self, trigger: Trigger) -> Result<Vec<Progress>> {
        if self.include_existing || trigger == Trigger::AvailableNow {
            return Ok(Vec::new());
        }
        Ok(list(Path::new(&self.path))?
            .into_iter()
            .map(|file| Progress::File {
                name: file_name(&file),
                offset: std::fs::metadata(&file).map_or(0, |m| m.len()),
            })
            .collect())
    }

    /// A position only needs the files a listing can still return.
    fn prune(&self, position: &mut SourcePosition) {
        let dir = Path::new(&self.path);
        position.files.retain(|name, _| dir.join(name).exists());
    }

    fn receive(&self, context: &ReceiverContext) -> Result<()> {
        run(context, self)
    }
}

/// Runs until the job stops (or, with `available-now`, once every present file is read).
fn run(context: &ReceiverContext, spec: &Directory) -> Result<()> {
    let Directory {
        path,
        poll_interval,
        lines: rules,
        ..
    } = spec;
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
            context.gauges.add_known_bytes(whole);
            if start < whole || start == 0 {
                let mut splitter = rules.splitter(format!("file {}", file.display()), start);
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
