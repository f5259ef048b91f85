//! Workload: rows into PostgreSQL, against a throwaway server (Debian's package, on a free
//! 127.0.0.1 port, started by the harness).
//!
//! - Append: Spate reads the corpus's first lines (available-now), tokenizes them and appends
//!   every (word, 1) record as a row, exactly-once (COPY in one transaction per batch with its
//!   marker), once with one connection (the default) and once with `connections = 2` (each
//!   batch shared out over two connections, a transaction and a marker each). Baseline:
//!   server-side `COPY ... FROM '<file>'` of the same rows from a text file, into the same
//!   kind of table.
//! - Upsert: the same input counted per batch (reduce-by-key) and upserted into a table keyed
//!   by word. Its rows, as a text-files output beside it wrote them, are the baseline's file.
//!
//! Spate's time is `spate run` from process start to exit (start-up, reading and tokenizing
//! included), so the ratio is what a user sees end to end; the baseline is the COPY alone.

use crate::process;
use crate::stats::median;
use anyhow::{Context, Result, bail};
use spate_test_artifacts::postgres::Server;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// The workload's figures.
#[derive(Debug, serde::Serialize)]
pub struct PostgresFigures {
    /// Rows appended per run (one per word of the input).
    pub append_rows: u64,
    /// Server-side COPY of those rows from a file, rows/s (median of runs).
    pub copy_rows_s: f64,
    /// Spate's append, rows/s (median).
    pub append_rows_s: f64,
    /// `append_rows_s / copy_rows_s`.
    pub append_ratio: f64,
    /// Spate's append with `connections = 2`, rows/s (median).
    pub append_2_rows_s: f64,
    /// `append_2_rows_s / copy_rows_s`.
    pub append_2_ratio: f64,
    /// Rows upserted per run (one per word per batch).
    pub upsert_rows: u64,
    /// Server-side COPY of the upserted rows from a file, rows/s (median).
    pub upsert_copy_rows_s: f64,
    /// Spate's upsert, rows/s (median).
    pub upsert_rows_s: f64,
    /// `upsert_rows_s / upsert_copy_rows_s`.
    pub upsert_ratio: f64,
}

/// The pipeline: the input directory's lines tokenized into `outputs`.
fn pipeline(input: &Path, counted: bool, outputs: &str) -> String {
    let count = match counted {
        true => "[[steps]]\nop = \"reduce-by-key\"\nplugin = \"sum\"\n",
        false => "",
    };
    format!(
        r#"[job]
name = "bench-postgres"
trigger = "available-now"
max-batch-bytes = "1 MiB"

[sources.corpus]
type = "directory"
path = "{}"
include-existing = true

[[steps]]
op = "flat-map"
plugin = "tokenize"

{count}
{outputs}"#,
        input.display()
    )
}

/// A postgres output into `table` with `mode`, writing with `connections` connections.
fn output(server: &Server, table: &str, mode: &str, connections: usize) -> String {
    format!(
        "[[outputs]]\ntype = \"postgres\"\nurl = \"{}\"\npassword = {{ file = \"{}\" }}\ntable = \"{table}\"\nmode = \"{mode}\"\nconnections = {connections}\n",
        server.url(),
        server.dir().join("password").display()
    )
}

/// The bytes free for an unprivileged writer on the file system of `dir`, if it can be read.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid NUL-terminated string and `stats` a writable statvfs that
    // statvfs(3) fills in; both outlive the call.
    let stats = unsafe {
        let mut stats: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(path.as_ptr(), &mut stats) == 0).then_some(stats)
    }?;
    Some(stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// Runs `COPY table FROM file` on the server; its seconds.
fn copy_from_file(server: &Server, table: &str, file: &Path) -> Result<f64> {
    let mut client = server.client();
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "COPY {table} (key, value) FROM '{}'",
            file.display()
        ))
        .with_context(|| format!("COPY from {}", file.display()))?;
    Ok(started.elapsed().as_secs_f64())
}

fn count_rows(server: &Server, table: &str) -> Result<u64> {
    let n: i64 = server
        .client()
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
        .get(0);
    Ok(n as u64)
}

/// Runs `spate run` on `text`; its seconds.
fn spate_run(text: &str, name: &str, cache: &Path, work: &Path) -> Result<f64> {
    let path = work.join(format!("{name}.toml"));
    std::fs::write(&path, text)?;
    let finished =
        process::start(&["run", path.to_str().context("UTF-8 path")?], cache)?.finish()?;
    std::fs::write(work.join(format!("{name}.log")), finished.stderr.join("\n"))?;
    Ok(finished.wall.as_secs_f64())
}

/// Runs the workload on the corpus's first `max_bytes` of lines, `reps` runs of each side.
pub fn run(
    corpus: &Path,
    max_bytes: usize,
    reps: usize,
    cache: &Path,
    work: &Path,
) -> Result<PostgresFigures> {
    // The server's files on a memory file system when there is one with room: the VM's disk
    // write-back was seen to make the same COPY take from 1.1 s to 3.4 s within minutes, which
    // the ratio would then measure. Each table is dropped once measured, but the server's
    // write-ahead log may still grow to about 1 GiB besides.
    let shm = Path::new("/dev/shm");
    let server = match free_bytes(shm).is_some_and(|free| free >= 4 << 30) {
        true => Server::start_in(shm),
        false => Server::start(),
    };
    let input = work.join("postgres-input");
    let _ = std::fs::remove_dir_all(&input);
    std::fs::create_dir_all(&input)?;
    let text = std::fs::read_to_string(corpus)?;
    let mut taken = 0;
    let lines: String = text
        .lines()
        .take_while(|l| {
            taken += l.len() + 1;
            taken <= max_bytes
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    std::fs::write(input.join("corpus.txt"), &lines)?;

    // The baseline's file: the rows Spate appends, as COPY's text format reads them.
    let tokenizer = spate_plugin_tokenize::Tokenizer {
        lowercase: false,
        strip_punctuation: false,
    };
    let (mut rows_text, mut scratch, mut append_rows) = (String::new(), Vec::new(), 0u64);
    for line in lines.lines() {
        tokenizer
            .for_each_word(line.as_bytes(), &mut scratch, |word| {
                let word = String::from_utf8_lossy(word);
                let _ = writeln!(rows_text, "{}\t1", escape(&word));
                append_rows += 1;
            })
            .map_err(|e| anyhow::anyhow!("tokenizing the corpus: {e:?}"))?;
    }
    let rows_file = server.dir().join("append-rows.txt");
    std::fs::write(&rows_file, &rows_text)?;

    let (mut copy, mut upsert_copy, mut upsert) = (vec![], vec![], vec![]);
    let mut append: [Vec<f64>; 2] = Default::default();
    let mut upsert_rows = 0;
    for rep in 0..reps {
        let base = format!("copy_{rep}");
        server.execute(&format!("CREATE TABLE {base} (key text, value bigint)"));
        copy.push(copy_from_file(&server, &base, &rows_file)?);
        server.execute(&format!("DROP TABLE {base}"));
        for (times, connections) in append.iter_mut().zip([1, 2]) {
            let appended = format!("append_{rep}_{connections}");
            server.execute(&format!("CREATE TABLE {appended} (key text, value bigint)"));
            times.push(spate_run(
                &pipeline(
                    &input,
                    false,
                    &output(&server, &appended, "append", connections),
                ),
                "postgres-append",
                cache,
                work,
            )?);
            let written = count_rows(&server, &appended)?;
            if written != append_rows {
                bail!(
                    "spate appended {written} rows with {connections} connection(s), the input \
                     has {append_rows} words"
                );
            }
            server.execute(&format!("DROP TABLE {appended}"));
        }

        // Upsert, with the rows it upserts kept by a text-files output beside it.
        let (upserted, base) = (format!("upsert_{rep}"), format!("upsert_copy_{rep}"));
        server.execute(&format!(
            "CREATE TABLE {upserted} (key text PRIMARY KEY, value bigint); CREATE TABLE {base} (key text, value bigint)"
        ));
        let files = work.join(format!("postgres-upsert-{rep}"));
        let _ = std::fs::remove_dir_all(&files);
        let outputs = format!(
            "{}\n[[outputs]]\ntype = \"text-files\"\nprefix = \"{}/batch\"\n",
            output(&server, &upserted, "upsert", 1),
            files.display()
        );
        upsert.push(spate_run(
            &pipeline(&input, true, &outputs),
            "postgres-upsert",
            cache,
            work,
        )?);
        let (file, rows) = upserted_rows(&files, &server.dir().join(format!("upsert-{rep}.txt")))?;
        upsert_rows = rows;
        upsert_copy.push(copy_from_file(&server, &base, &file)?);
        server.execute(&format!("DROP TABLE {upserted}; DROP TABLE {base}"));
    }
    let rate = |rows: u64, times: &[f64]| rows as f64 / median(times);
    let copy_rows_s = rate(append_rows, &copy);
    let append_rows_s = rate(append_rows, &append[0]);
    let append_2_rows_s = rate(append_rows, &append[1]);
    let (upsert_copy_rows_s, upsert_rows_s) =
        (rate(upsert_rows, &upsert_copy), rate(upsert_rows, &upsert));
    Ok(PostgresFigures {
        append_rows,
        copy_rows_s,
        append_rows_s,
        append_ratio: append_rows_s / copy_rows_s,
        append_2_rows_s,
        append_2_ratio: append_2_rows_s / copy_rows_s,
        upsert_rows,
        upsert_copy_rows_s,
        upsert_rows_s,
        upsert_ratio: upsert_rows_s / upsert_copy_rows_s,
    })
}

/// The `(word,count)` lines of every batch directory under `dir`, as COPY text rows in `to`;
/// how many.
fn upserted_rows(dir: &Path, to: &Path) -> Result<(std::path::PathBuf, u64)> {
    let mut rows = String::new();
    let mut n = 0;
    for batch in std::fs::read_dir(dir)? {
        let batch = batch?.path();
        for part in std::fs::read_dir(&batch)? {
            let part = part?.path();
            if !part
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("part-"))
            {
                continue;
            }
            for line in std::fs::read_to_string(&part)?.lines() {
                let pair = line
                    .strip_prefix('(')
                    .and_then(|l| l.strip_suffix(')'))
                    .and_then(|l| l.rsplit_once(','))
                    .with_context(|| format!("not a (word,count) line in {}", part.display()))?;
                let _ = writeln!(rows, "{}\t{}", escape(pair.0), pair.1);
                n += 1;
            }
        }
    }
    std::fs::write(to, rows)?;
    Ok((to.to_owned(), n))
}

/// Text as COPY's text format reads it (backslash, tab, newline escaped).
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}
