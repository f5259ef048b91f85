//! Each submitted job's own log: the lines logged inside its `job` span (its start, every
//! batch line, its errors and summary) go to a file of its own as well as the server's
//! stderr, so `spate logs <job>` shows a tenant its job and nothing of anyone else's.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The name of the span field that names a job's log (`info_span!("job", log = %key)`).
pub const LOG_FIELD: &str = "log";

/// The open job logs, by key.
#[derive(Default)]
pub struct JobLogs {
    files: Mutex<HashMap<String, Arc<Mutex<File>>>>,
}

impl JobLogs {
    /// Lines of spans with `log = key` from now on are appended to `path`.
    pub fn open(&self, key: &str, path: &Path) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        self.lock()
            .insert(key.to_owned(), Arc::new(Mutex::new(file)));
        Ok(())
    }

    /// The log of `key` is closed (its spans already made keep writing until they end).
    pub fn close(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Mutex<File>>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The layer that writes the lines.
    pub fn layer(self: &Arc<Self>) -> JobLogLayer {
        JobLogLayer(self.clone())
    }
}

/// A [`Layer`] writing the events of job spans to their logs.
pub struct JobLogLayer(Arc<JobLogs>);

/// A span's log, kept in its extensions.
struct SpanLog(Arc<Mutex<File>>);

/// Finds one field's value.
struct Find(&'static str, Option<String>);

impl Visit for Find {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == self.0 {
            self.1 = Some(format!("{value:?}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == self.0 {
            self.1 = Some(value.to_owned());
        }
    }
}

/// An event as one line: its message, then its other fields.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S> Layer<S> for JobLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "job" {
            return;
        }
        let mut key = Find(LOG_FIELD, None);
        attrs.record(&mut key);
        let Some(key) = key.1 else { return };
        let Some(file) = self.0.lock().get(&key).cloned() else {
            return;
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanLog(file));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope.from_root() {
            let extensions = span.extensions();
            let Some(SpanLog(file)) = extensions.get::<SpanLog>() else {
                continue;
            };
            let mut line = Line::default();
            event.record(&mut line);
            let when = humantime::format_rfc3339_millis(std::time::SystemTime::now());
            let level = event.metadata().level();
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            // A log that cannot be written (disk full) must not stop the job.
            let _ = writeln!(file, "{when} {level:>5} {}", line.0);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn lines_of_a_job_span_go_to_its_log_only() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Arc::new(JobLogs::default());
        logs.open("a.one", &dir.path().join("one.log")).unwrap();
        logs.open("b.two", &dir.path().join("two.log")).unwrap();
        let subscriber = tracing_subscriber::registry().with(logs.layer());
        tracing::subscriber::with_default(subscriber, || {
            let one = tracing::info_span!("job", name = "one", log = "a.one");
            let two = tracing::info_span!("job", name = "two", log = "b.two");
            one.in_scope(|| {
                tracing::info!("batch {} ms", 1000);
                tracing::info_span!("inner").in_scope(|| tracing::warn!(records = 3, "late"));
            });
            two.in_scope(|| tracing::error!("failed"));
            tracing::info!("the server's own line");
        });
        let one = std::fs::read_to_string(dir.path().join("one.log")).unwrap();
        let two = std::fs::read_to_string(dir.path().join("two.log")).unwrap();
        assert!(one.contains(" INFO batch 1000 ms\n"), "{one}");
        assert!(one.contains(" WARN late records=3\n"), "{one}");
        assert!(
            !one.contains("failed") && !one.contains("server's own"),
            "{one}"
        );
        assert_eq!(two.lines().count(), 1, "{two}");
        assert!(two.contains("ERROR failed"), "{two}");
    }
}
