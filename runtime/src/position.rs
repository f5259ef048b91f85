//! How far each source has been read: what a receiver reports with the lines it delivers, what
//! the batch log and checkpoints record, and where a restarted receiver resumes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A receiver's position after some lines, always at a line end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Progress {
    /// Bytes of a socket stream (lines of the bundled text) consumed, across connections.
    Stream(u64),
    /// Bytes of a file consumed.
    File {
        /// The file's name in the watched directory.
        name: String,
        /// Bytes consumed.
        offset: u64,
    },
    /// The next record of a numbered part of the source (a Kafka topic's partition, named
    /// `topic/partition`): everything before offset `next` is consumed.
    Part {
        /// The part's name.
        name: String,
        /// The offset of the next record to read.
        next: u64,
    },
}

impl Progress {
    /// True when `self` supersedes `earlier` (same stream or file, further on).
    pub fn replaces(&self, earlier: &Progress) -> bool {
        match (self, earlier) {
            (Progress::Stream(_), Progress::Stream(_)) => true,
            (Progress::File { name, .. }, Progress::File { name: old, .. }) => name == old,
            (Progress::Part { name, .. }, Progress::Part { name: old, .. }) => name == old,
            _ => false,
        }
    }
}

/// Appends `progress` to a block's list, replacing the entry it supersedes.
pub fn record(list: &mut Vec<Progress>, progress: Progress) {
    match list.last_mut() {
        Some(last) if progress.replaces(last) => *last = progress,
        _ => list.push(progress),
    }
}

/// Where one source stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePosition {
    /// Stream offset (socket bytes, bundled lines).
    #[serde(default)]
    pub stream: u64,
    /// Bytes consumed per file (a file read whole has its length).
    #[serde(default)]
    pub files: BTreeMap<String, u64>,
    /// The next offset per part (Kafka: `topic/partition` -> offset of the next record).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parts: BTreeMap<String, u64>,
}

impl SourcePosition {
    /// Moves the position on by `progress`.
    pub fn apply(&mut self, progress: &Progress) {
        match progress {
            Progress::Stream(offset) => self.stream = self.stream.max(*offset),
            Progress::File { name, offset } => {
                let at = self.files.entry(name.clone()).or_default();
                *at = (*at).max(*offset);
            }
            Progress::Part { name, next } => {
                let at = self.parts.entry(name.clone()).or_default();
                *at = (*at).max(*next);
            }
        }
    }
}

/// Every source's position, by source name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions(pub BTreeMap<String, SourcePosition>);

impl Positions {
    /// Moves source `name` on by `progress`.
    pub fn apply(&mut self, name: &str, progress: &Progress) {
        self.0.entry(name.to_owned()).or_default().apply(progress);
    }

    /// The position of source `name` (the start if it never delivered).
    pub fn of(&self, name: &str) -> SourcePosition {
        self.0.get(name).cloned().unwrap_or_default()
    }

    /// One line for the recovery report.
    pub fn summary(&self) -> String {
        if self.0.is_empty() {
            return "every source from its start".to_owned();
        }
        self.0
            .iter()
            .map(|(name, p)| {
                if !p.parts.is_empty() {
                    let parts: Vec<String> = p
                        .parts
                        .iter()
                        .map(|(part, next)| format!("{part}@{next}"))
                        .collect();
                    format!("'{name}' at {}", parts.join(" "))
                } else if p.files.is_empty() {
                    format!("'{name}' at offset {}", p.stream)
                } else {
                    format!("'{name}' past {} files", p.files.len())
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_folds_per_stream_and_file() {
        let mut list = Vec::new();
        record(&mut list, Progress::Stream(5));
        record(&mut list, Progress::Stream(9));
        let file = |name: &str, offset| Progress::File {
            name: name.into(),
            offset,
        };
        record(&mut list, file("a", 3));
        record(&mut list, file("a", 7));
        record(&mut list, file("b", 1));
        assert_eq!(list, [Progress::Stream(9), file("a", 7), file("b", 1)]);
        let mut positions = Positions::default();
        for p in &list {
            positions.apply("s", p);
        }
        positions.apply("s", &file("a", 2));
        let at = positions.of("s");
        assert_eq!((at.stream, at.files["a"], at.files["b"]), (9, 7, 1));
        assert_eq!(positions.of("other"), SourcePosition::default());
    }
}
