//! The benchmark workloads, each a function returning its figures.

pub mod ingest;
pub mod kafka;
pub mod postgres;
pub mod sandbox;
pub mod scale_out;
pub mod startup;
pub mod state;
pub mod tenants;
pub mod ui;
pub mod wordcount;

use std::path::Path;

/// The job name of [`wordcount_pipeline`], as its log lines carry it.
pub const WORDCOUNT_JOB: &str = "bench-wordcount";

/// The word count pipeline over a directory, as the benchmarks run it.
pub fn wordcount_pipeline(source: &str, trigger: &str) -> String {
    wordcount_job(
        &format!("name = \"{WORDCOUNT_JOB}\"\ntrigger = \"{trigger}\""),
        source,
    )
}

/// The word count's steps: tokenize, then count by word (reduce-by-key with `sum`).
pub const WORDCOUNT_STEPS: &str = r#"[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
op = "reduce-by-key"
plugin = "sum"
"#;

/// The word count (tokenize, reduce-by-key, print) with `job`'s lines in its `[job]` table
/// and the source table `source`.
pub fn wordcount_job(job: &str, source: &str) -> String {
    format!(
        r#"[job]
{job}

{source}

{WORDCOUNT_STEPS}
[[outputs]]
type = "print"
num = 1
"#
    )
}

/// A directory source table.
pub fn directory_source(dir: &Path) -> String {
    format!(
        "[sources.corpus]\ntype = \"directory\"\npath = \"{}\"\ninclude-existing = true\n",
        dir.display()
    )
}
