//! Spark's `foreachRDD { rdd.foreachPartition(...) }`, as a program: for each partition of
//! each batch that holds records, the command runs with the records on its stdin (a record per
//! line, as text-files writes them) and, in its environment, `SPATE_JOB`, `SPATE_BATCH_TIME`
//! (ms), `SPATE_PARTITION`, `SPATE_PARTITIONS` and `SPATE_RECORDS`. A replayed batch runs it
//! again with the same batch time, partition and records, so a command that writes under
//! (job, batch time, partition), replacing what is there (an upsert, a file rename), has an
//! exactly-once effect. A non-zero exit fails the batch, naming the command and its stderr.

use super::{Output, OutputContext, Replay, Sink};
use crate::config::{ConfigError, ConnectorTable};
use crate::record::StreamType;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use spate_guest::Partition;
use std::io::Write;
use std::process::Stdio;

/// `type = "command"`: the fields of the table.
#[derive(Deserialize)]
struct Fields {
    /// The program and its arguments, run once per partition of each batch.
    command: Option<toml::Spanned<Vec<String>>>,
}

/// A program run for each partition of each batch.
#[derive(Debug)]
struct CommandOutput {
    argv: Vec<String>,
}

/// Reads a command output's table; the command must name a program.
pub fn build(table: &ConnectorTable<'_>) -> Result<Box<dyn Output>, ConfigError> {
    let fields: Fields = table.fields()?;
    let argv = table.required("command", &fields.command)?;
    if argv.is_empty() {
        let span = fields.command.as_ref().map_or(0..0, toml::Spanned::span);
        return Err(table.error_at(
            span,
            "command",
            "needs the program to run, e.g. [\"sh\", \"-c\", \"...\"]",
        ));
    }
    Ok(Box::new(CommandOutput { argv: argv.clone() }))
}

impl Output for CommandOutput {
    fn describe(&self, stream: &str) -> String {
        format!(
            "command '{stream}': {:?} per partition of each batch",
            self.argv
        )
    }

    /// The command runs again with the same batch time, partition and records.
    fn replay(&self) -> Replay {
        Replay::Repeats
    }

    fn open(&self, context: &OutputContext<'_>, _types: &StreamType) -> Result<Box<dyn Sink>> {
        Ok(Box::new(Command::new(self.argv.clone(), context.job)))
    }
}

/// The command output.
struct Command {
    argv: Vec<String>,
    job: String,
}

impl Command {
    /// Runs `argv` (program first) for job `job`.
    fn new(argv: Vec<String>, job: &str) -> Self {
        Command {
            argv,
            job: job.to_owned(),
        }
    }

    fn run(
        &self,
        time: u64,
        partition: usize,
        count: usize,
        records: usize,
        text: &str,
    ) -> Result<()> {
        let mut child = std::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .env("SPATE_JOB", &self.job)
            .env("SPATE_BATCH_TIME", time.to_string())
            .env("SPATE_PARTITION", partition.to_string())
            .env("SPATE_PARTITIONS", count.to_string())
            .env("SPATE_RECORDS", records.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {:?}", self.argv[0]))?;
        let mut stdin = child.stdin.take().expect("piped");
        // A command that exits without reading everything closes the pipe: its exit status
        // says whether that was a failure.
        let written = stdin.write_all(text.as_bytes());
        drop(stdin);
        let output = child
            .wait_with_output()
            .context("waiting for the command")?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: String = stderr
                .chars()
                .rev()
                .take(500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!(
                "{:?} exited with {} for partition {partition}: {}",
                self.argv,
                output.status,
                tail.trim()
            );
        }
        written.with_context(|| format!("{:?} did not read its input", self.argv))
    }
}

impl Sink for Command {
    fn write(
        &mut self,
        batch_time_ms: u64,
        partitions: &[Partition],
        types: &StreamType,
    ) -> Result<()> {
        for (i, partition) in partitions.iter().enumerate() {
            if partition.is_empty() {
                continue;
            }
            let text = crate::record::partition_text(partition, types);
            self.run(batch_time_ms, i, partitions.len(), partition.len(), &text)
                .context("command output")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Shape;
    use spate_guest::PartitionBuilder;

    fn partitions() -> Vec<Partition> {
        let mut b = PartitionBuilder::new();
        b.emit(b"x", &2i64);
        b.emit(b"y", &3i64);
        vec![Partition::default(), b.finish()]
    }

    #[test]
    fn the_command_gets_the_records_and_the_batch_identity() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "cat > {}/$SPATE_JOB-$SPATE_BATCH_TIME-$SPATE_PARTITION-of-$SPATE_PARTITIONS-$SPATE_RECORDS",
            dir.path().display()
        );
        let mut sink = Command::new(vec!["sh".into(), "-c".into(), script], "wc");
        let types = StreamType::keyed(Shape::TEXT, Shape::I64);
        sink.write(5000, &partitions(), &types).unwrap();
        let written = dir.path().join("wc-5000-1-of-2-2");
        assert_eq!(std::fs::read_to_string(written).unwrap(), "(x,2)\n(y,3)\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "empty partitions are skipped"
        );
    }

    #[test]
    fn a_failing_command_fails_the_batch_with_its_stderr() {
        let mut sink = Command::new(
            vec![
                "sh".into(),
                "-c".into(),
                "echo 'table is locked' >&2; exit 3".into(),
            ],
            "wc",
        );
        let types = StreamType::keyed(Shape::TEXT, Shape::I64);
        let err = format!("{:#}", sink.write(5000, &partitions(), &types).unwrap_err());
        assert!(
            err.contains("exit status: 3") && err.contains("table is locked"),
            "{err}"
        );
        let mut missing = Command::new(vec!["/no/such/program".into()], "wc");
        let err = format!(
            "{:#}",
            missing.write(5000, &partitions(), &types).unwrap_err()
        );
        assert!(err.contains("cannot start \"/no/such/program\""), "{err}");
    }
}
