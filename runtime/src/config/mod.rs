//! The pipeline file: reading, `--set` overrides, and errors that name file, line and field.

mod confine;
mod connector;
mod overrides;
pub mod policy;
mod sandbox;
pub mod schema;
pub mod units;

pub use connector::{ConnectorTable, TableKey};
pub use policy::Policy;
pub use sandbox::UNLIMITED;
pub use schema::*;
pub use units::{ByteSize, Interval};

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A pipeline file read and checked for shape (not yet resolved into a plan).
#[derive(Debug)]
pub struct Pipeline {
    /// The parsed content.
    pub file: PipelineFile,
    /// Where it was read from.
    pub path: PathBuf,
    /// The text parsed (after overrides), to turn spans into line numbers.
    text: String,
    /// Whether `--set` changed the text.
    overridden: bool,
    /// The platform policy the file is read under (`Pipeline::confine_to`), if any.
    policy: Option<Arc<Policy>>,
}

/// A problem in a pipeline file, located as precisely as known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The pipeline file.
    pub file: PathBuf,
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
    /// Dotted path of the field (`steps[1].plugin`).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// True when `--set` overrides were applied (lines refer to the overridden text).
    pub overridden: bool,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if self.overridden {
            f.write_str(" (with --set overrides)")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// 1-based (line, column) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The first line of a toml error's message (the rest repeats the source snippet).
fn short_message(e: &toml::de::Error) -> String {
    e.message()
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .to_owned()
}

impl Pipeline {
    /// Reads `path`, applies `overrides` (`field.path=value`) and deserializes it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Pipeline, ConfigError> {
        let error = |message: String| ConfigError {
            file: path.to_owned(),
            position: None,
            field: None,
            message,
            overridden: false,
        };
        let original = std::fs::read(path)
            .map_err(|e| error(format!("cannot read the pipeline file: {e}")))?;
        let original = String::from_utf8(original)
            .map_err(|e| error(format!("the pipeline file is not UTF-8: {e}")))?;
        let text = overrides::apply(&original, overrides).map_err(error)?;
        let overridden = !overrides.is_empty();
        let deserializer = toml::Deserializer::parse(&text).map_err(|e| ConfigError {
            position: e.span().map(|s| line_column(&text, s.start)),
            message: short_message(&e),
            overridden,
            ..error(String::new())
        })?;
        let file: PipelineFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            // Spanned fields add serde_spanned's private field name to the path.
            let path = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            ConfigError {
                position: inner.span().map(|s| line_column(&text, s.start)),
                field: (path != ".").then_some(path),
                message: short_message(&inner),
                overridden,
                ..error(String::new())
            }
        })?;
        let pipeline = Pipeline {
            file,
            path: path.to_owned(),
            text,
            overridden,
            policy: None,
        };
        pipeline.check_shape()?;
        Ok(pipeline)
    }

    /// An error at a span of the file, for checks made after deserializing.
    pub fn error_at(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            position: Some(line_column(&self.text, span.start)),
            field: Some(field.to_owned()),
            message: message.into(),
            overridden: self.overridden,
        }
    }

    /// An error about the file as a whole.
    pub fn error(&self, field: Option<&str>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            position: None,
            field: field.map(str::to_owned),
            message: message.into(),
            overridden: self.overridden,
        }
    }

    /// The text parsed (after `--set` overrides).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The directory relative paths in the file are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The job name: `job.name`, else the file's stem.
    pub fn job_name(&self) -> String {
        self.file.job.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "job".to_owned())
        })
    }

    /// Each source's name and table, for its connector to read.
    pub fn source_tables(&self) -> impl Iterator<Item = (&str, ConnectorTable<'_>)> {
        self.file.sources.iter().map(|(name, table)| {
            let key = TableKey::Source(name.clone());
            (
                name.as_str(),
                ConnectorTable::new(self, key, table.kind.clone()),
            )
        })
    }

    /// Each output's table, for its connector to read.
    pub fn output_tables(&self) -> impl Iterator<Item = ConnectorTable<'_>> {
        self.file
            .outputs
            .iter()
            .enumerate()
            .map(|(i, table)| ConnectorTable::new(self, TableKey::Output(i), table.kind.clone()))
    }

    /// Checks relations between fields that serde cannot.
    fn check_shape(&self) -> Result<(), ConfigError> {
        let job = &self.file.job;
        if self.file.sources.is_empty() {
            return Err(self.error(Some("sources"), "the pipeline needs at least one source"));
        }
        let (batch, block) = (
            job.batch_interval.as_millis(),
            job.block_interval.as_millis(),
        );
        if block > batch || batch % block != 0 {
            return Err(self.error(
                Some("job.block-interval"),
                format!(
                    "must divide the batch interval ({}) evenly, got {}",
                    job.batch_interval, job.block_interval
                ),
            ));
        }
        if let Some(every) = &job.checkpoint_interval
            && (every.as_millis() == 0 || every.as_millis() % batch != 0)
        {
            return Err(self.error(
                Some("job.checkpoint-interval"),
                format!(
                    "must be a multiple of the batch interval ({}), got {every}",
                    job.batch_interval
                ),
            ));
        }
        if job.checkpoints_kept == 0 {
            return Err(self.error(
                Some("job.checkpoints-kept"),
                "must be at least 1 (the checkpoint recovery starts from)",
            ));
        }
        if job.max_block_bytes.0 == 0 || job.max_block_bytes.0 > u32::MAX as u64 / 2 {
            return Err(self.error(
                Some("job.max-block-bytes"),
                "must be between 1 byte and 2 GiB (partitions use 32-bit offsets)",
            ));
        }
        if job.max_buffered_bytes.0 < 2 * job.max_block_bytes.0 {
            return Err(self.error(
                Some("job.max-buffered-bytes"),
                format!(
                    "must be at least twice max-block-bytes ({})",
                    job.max_block_bytes
                ),
            ));
        }
        if job.max_batch_bytes.0 < job.max_block_bytes.0 {
            return Err(self.error(
                Some("job.max-batch-bytes"),
                format!("must be at least max-block-bytes ({})", job.max_block_bytes),
            ));
        }
        if self.file.outputs.is_empty() {
            return Err(self.error(
                Some("outputs"),
                "the pipeline has no outputs; add [[outputs]] type = \"print\" (Spark needs an output operation too)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Pipeline, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        Pipeline::load(&path, &[])
    }

    const MINIMAL: &str = "[sources.lines]\ntype = \"bundled\"\n\n[[outputs]]\ntype = \"print\"\n";

    #[test]
    fn a_minimal_file_gets_defaults() {
        let p = load(MINIMAL).unwrap();
        let (name, source) = p.source_tables().next().unwrap();
        assert_eq!(
            (name, source.kind(), source.path()),
            ("lines", "bundled", "sources.lines".into())
        );
        assert_eq!(p.output_tables().next().unwrap().what(), "print output");
        assert_eq!(p.file.job.batch_interval.as_millis(), 1000);
        assert_eq!(p.file.job.trigger, Trigger::ProcessingTime);
        assert_eq!(p.job_name(), "p");
    }

    #[test]
    fn unknown_fields_name_line_and_field() {
        let err = load(&format!("{MINIMAL}\n[job]\nbatch-intervl = \"1s\"\n")).unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(8));
        assert!(
            err.message.contains("unknown field `batch-intervl`"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_field_path() {
        let text = format!(
            "{MINIMAL}\n[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\npartitions = \"x\"\n"
        );
        let err = load(&text).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("steps[0].partitions"), "{err}");
        assert_eq!(err.position.map(|p| p.0), Some(10), "{err}");
        let err = load(&format!("[job]\nbatch-interval = \"1x\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("job.batch-interval"), "{err}");
        assert!(err.to_string().contains("p.toml:2:"), "{err}");
    }

    #[test]
    fn connector_fields_are_checked_at_their_line() {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "kebab-case")]
        struct Socket {
            host: Option<toml::Spanned<String>>,
            #[allow(dead_code)]
            port: Option<u16>,
            #[allow(dead_code)]
            poll_interval: Option<Interval>,
        }
        let fields = |text: &str| {
            let p = load(text).unwrap();
            let (_, table) = p.source_tables().next().unwrap();
            table
                .fields::<Socket>()
                .map(|s| table.required("host", &s.host).cloned())
        };
        let text = "[sources.s]\ntype = \"socket\"\nhost = \"h\"\nport = 1\npath = \"x\"\n[[outputs]]\ntype = \"print\"\n";
        let err = fields(text).unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(5), "{err}");
        assert!(
            err.to_string().contains(
                "sources.s.path: a socket source does not take `path` (it takes: type, host, port, poll-interval)"
            ),
            "{err}"
        );
        let err =
            fields("[sources.s]\ntype = \"socket\"\nport = 1\n[[outputs]]\ntype = \"print\"\n")
                .unwrap()
                .unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(2), "{err}");
        assert!(
            err.to_string()
                .contains("sources.s: a socket source needs `host`"),
            "{err}"
        );
        let text = "[sources.s]\ntype = \"socket\"\nport = 1\npoll-interval = \"soon\"\n[[outputs]]\ntype = \"print\"\n";
        let err = fields(text).unwrap_err();
        assert_eq!(
            err.field.as_deref(),
            Some("sources.s.poll-interval"),
            "{err}"
        );
        assert_eq!(err.position.map(|p| p.0), Some(4), "{err}");
        let text = "[sources.s]\ntype = \"socket\"\nport = 70000\n[[outputs]]\ntype = \"print\"\n";
        let err = fields(text).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("sources.s.port"), "{err}");
        assert_eq!(err.position.map(|p| p.0), Some(3), "{err}");
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let err = load("[job\nx = 1\n").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(1), "{err}");
    }

    #[test]
    fn relations_between_fields_are_checked() {
        let err = load(&format!("[job]\nblock-interval = \"300ms\"\n{MINIMAL}")).unwrap_err();
        assert!(
            err.to_string().contains("job.block-interval: must divide"),
            "{err}"
        );
        let err = load("[sources.a]\ntype = \"bundled\"\n").unwrap_err();
        assert!(err.message.contains("no outputs"), "{err}");
    }
}
