//! From the flat tables of the file to typed sources and outputs: which fields a `type` takes,
//! which it requires, and the defaults of the others. Errors point at the offending field.

use super::schema::*;
use super::units::{ByteSize, Interval};
use super::{ConfigError, Pipeline};
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// The fields present in a table, with their spans.
type Present = Vec<(&'static str, Range<usize>)>;

fn present<T>(out: &mut Present, name: &'static str, field: &Option<Spanned<T>>) {
    if let Some(f) = field {
        out.push((name, f.span()));
    }
}

fn value<T: Clone>(field: &Option<Spanned<T>>, default: T) -> T {
    field.as_ref().map_or(default, |f| f.get_ref().clone())
}

impl Pipeline {
    /// Refuses fields that `kind` does not take, naming the ones it does.
    fn only(
        &self,
        table: &str,
        kind: &str,
        fields: &Present,
        allowed: &[&str],
    ) -> Result<(), ConfigError> {
        match fields.iter().find(|(name, _)| !allowed.contains(name)) {
            None => Ok(()),
            Some((name, span)) => Err(self.error_at(
                span.clone(),
                &format!("{table}.{name}"),
                format!(
                    "a {kind} does not take `{name}` (it takes: type, {})",
                    allowed.join(", ")
                ),
            )),
        }
    }

    fn required<'a, T>(
        &self,
        table: &str,
        kind: &str,
        span: Range<usize>,
        name: &str,
        field: &'a Option<Spanned<T>>,
    ) -> Result<&'a T, ConfigError> {
        field
            .as_ref()
            .map(Spanned::get_ref)
            .ok_or_else(|| self.error_at(span, table, format!("a {kind} needs `{name}`")))
    }

    /// The sources, typed, with defaults applied.
    pub fn sources(&self) -> Result<Vec<(String, SourceSpec)>, ConfigError> {
        self.file
            .sources
            .iter()
            .map(|(name, t)| Ok((name.clone(), self.source(name, t)?)))
            .collect()
    }

    fn source(&self, name: &str, t: &SourceTable) -> Result<SourceSpec, ConfigError> {
        let table = format!("sources.{name}");
        let mut fields = Present::new();
        present(&mut fields, "host", &t.host);
        present(&mut fields, "port", &t.port);
        present(&mut fields, "reconnect-max", &t.reconnect_max);
        present(&mut fields, "path", &t.path);
        present(&mut fields, "include-existing", &t.include_existing);
        present(&mut fields, "poll-interval", &t.poll_interval);
        present(&mut fields, "max-line-length", &t.max_line_length);
        present(&mut fields, "on-bad-line", &t.on_bad_line);
        present(&mut fields, "lines-per-second", &t.lines_per_second);
        let lines = LineRules {
            max_line_length: value(&t.max_line_length, ByteSize(1 << 20)),
            on_bad_line: value(&t.on_bad_line, BadLinePolicy::Fail),
        };
        let span = t.kind.span();
        Ok(match t.kind.get_ref() {
            SourceKind::Socket => {
                let kind = "socket source";
                self.only(
                    &table,
                    kind,
                    &fields,
                    &[
                        "host",
                        "port",
                        "reconnect-max",
                        "resume-protocol",
                        "max-line-length",
                        "on-bad-line",
                    ],
                )?;
                SourceSpec::Socket {
                    host: self
                        .required(&table, kind, span.clone(), "host", &t.host)?
                        .clone(),
                    port: *self.required(&table, kind, span, "port", &t.port)?,
                    lines,
                    reconnect_max: value(&t.reconnect_max, Interval(Duration::from_secs(5))),
                    resume_protocol: value(&t.resume_protocol, false),
                }
            }
            SourceKind::Directory => {
                let kind = "directory source";
                let allowed = [
                    "path",
                    "include-existing",
                    "poll-interval",
                    "max-line-length",
                    "on-bad-line",
                ];
                self.only(&table, kind, &fields, &allowed)?;
                let path = t.path.as_ref().ok_or_else(|| {
                    self.error_at(span, &table, "a directory source needs `path`")
                })?;
                if !std::path::Path::new(path.get_ref()).is_dir() {
                    return Err(self.error_at(
                        path.span(),
                        &format!("{table}.path"),
                        format!(
                            "directory '{}' does not exist (create it first)",
                            path.get_ref()
                        ),
                    ));
                }
                SourceSpec::Directory {
                    path: path.get_ref().clone(),
                    include_existing: value(&t.include_existing, false),
                    poll_interval: value(&t.poll_interval, Interval(Duration::from_millis(200))),
                    lines,
                }
            }
            SourceKind::Bundled => {
                self.only(&table, "bundled source", &fields, &["lines-per-second"])?;
                SourceSpec::Bundled {
                    lines_per_second: value(&t.lines_per_second, 20),
                }
            }
        })
    }

    /// The outputs, typed, with defaults applied.
    pub fn outputs(&self) -> Result<Vec<OutputSpec>, ConfigError> {
        self.file
            .outputs
            .iter()
            .enumerate()
            .map(|(i, t)| self.output(i, t))
            .collect()
    }

    fn output(&self, index: usize, t: &OutputTable) -> Result<OutputSpec, ConfigError> {
        let table = format!("outputs[{index}]");
        let mut fields = Present::new();
        present(&mut fields, "num", &t.num);
        present(&mut fields, "prefix", &t.prefix);
        present(&mut fields, "suffix", &t.suffix);
        present(&mut fields, "command", &t.command);
        Ok(match t.kind.get_ref() {
            OutputKind::Print => {
                self.only(&table, "print output", &fields, &["num"])?;
                OutputSpec::Print {
                    num: value(&t.num, 10),
                }
            }
            OutputKind::TextFiles => {
                let kind = "text-files output";
                self.only(&table, kind, &fields, &["prefix", "suffix"])?;
                OutputSpec::TextFiles {
                    prefix: self
                        .required(&table, kind, t.kind.span(), "prefix", &t.prefix)?
                        .clone(),
                    suffix: t.suffix.as_ref().map(|s| s.get_ref().clone()),
                }
            }
            OutputKind::Command => {
                let kind = "command output";
                self.only(&table, kind, &fields, &["command"])?;
                let argv = self.required(&table, kind, t.kind.span(), "command", &t.command)?;
                if argv.is_empty() {
                    let span = t.command.as_ref().map_or(t.kind.span(), |c| c.span());
                    return Err(self.error_at(
                        span,
                        &format!("{table}.command"),
                        "needs the program to run, e.g. [\"sh\", \"-c\", \"...\"]",
                    ));
                }
                OutputSpec::Command { argv: argv.clone() }
            }
        })
    }
}
