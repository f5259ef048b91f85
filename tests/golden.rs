//! Operator semantics in-process, on a virtual clock: every case under `examples/golden/` is a
//! pipeline (`pipeline.toml`), its input batches (`input.txt`) and what each output's stream
//! holds after each batch (`expected.txt`). The harness plans the pipeline as `spate run` does,
//! then runs each batch through the dataflow at the batch time the input gives, with no
//! receiver, clock or wall time involved (the sources in the files are never started), and
//! compares with `expected.txt`. Records are sorted within a batch: their order across
//! partitions is not part of the semantics (Spark's test suites compare the same way).
//!
//! `input.txt`: `# batch <time ms> [source <name>] [end]` starts a block of the named source
//! (default: the first) in the batch of that time; the lines after it are the block's records.
//! Several headers with one time make several blocks (partitions). `end` marks the last batch
//! of bounded input (event-time windows then close). Batches run in the order of their times.
//!
//! `expected.txt`: `# batch <time> output <i> '<stream>'`, then the records, for every output
//! whose stream has a batch at that time. Run with `SPATE_BLESS=1` to rewrite it from the run
//! after a deliberate change, and read the diff.
//!
//! Every case runs twice: as is, and with the job's state encoded as a checkpoint encodes it
//! and restored into fresh state after every batch, which must change nothing.

use spate::batch::Block;
use spate::config::Pipeline;
use spate::exec::{InputRelease, WorkerPool, run_batch};
use spate::plan::Plan;
use spate::record::write_record;
use spate::wasm::ComponentCache;
use spate_guest::Partition;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One batch of input: its blocks, each (source index, lines), and whether it is the last.
#[derive(Default)]
struct InputBatch {
    blocks: Vec<(usize, Vec<String>)>,
    end: bool,
}

/// Reads `input.txt` against the plan's sources.
fn read_input(path: &Path, sources: &[String]) -> BTreeMap<u64, InputBatch> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut batches: BTreeMap<u64, InputBatch> = BTreeMap::new();
    let mut current: Option<(u64, usize)> = None;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), n + 1);
        if let Some(header) = line.strip_prefix("# batch ") {
            let words: Vec<&str> = header.split_whitespace().collect();
            let time: u64 = words[0]
                .parse()
                .unwrap_or_else(|_| panic!("{}: batch time", at()));
            let source = match words.iter().position(|w| *w == "source") {
                Some(i) => {
                    let name = words
                        .get(i + 1)
                        .unwrap_or_else(|| panic!("{}: source name", at()));
                    sources
                        .iter()
                        .position(|s| s == name)
                        .unwrap_or_else(|| panic!("{}: no source '{name}'", at()))
                }
                None => 0,
            };
            let batch = batches.entry(time).or_default();
            batch.end |= words.contains(&"end");
            batch.blocks.push((source, Vec::new()));
            current = Some((time, batch.blocks.len() - 1));
        } else if let Some((time, block)) = current {
            let batch = batches.get_mut(&time).expect("made by its header");
            batch.blocks[block].1.push(line.to_owned());
        } else if !line.trim().is_empty() {
            panic!("{}: a record before the first `# batch` header", at());
        }
    }
    batches
}

/// Runs a case and returns what its outputs saw, in `expected.txt`'s format; with
/// `round_trip`, the state goes through a checkpoint's encoding after every batch.
fn run_case(dir: &Path, round_trip: bool) -> String {
    let pipeline = Pipeline::load(&dir.join("pipeline.toml"), &[])
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let plan = Plan::build(&pipeline, &ComponentCache::disabled())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let sources: Vec<String> = plan.sources.iter().map(|s| s.name.clone()).collect();
    let input = read_input(&dir.join("input.txt"), &sources);
    let dataflow = &plan.dataflow;
    let pool = WorkerPool::new(dataflow.tasks.workers, dataflow.operators.clone()).unwrap();
    let first = input.keys().next().copied().unwrap_or(0);
    let mut state = Arc::new(dataflow.new_state(first).unwrap());
    let mut out = String::new();
    for (time, batch) in input {
        let blocks = batch
            .blocks
            .into_iter()
            .map(|(source, lines)| Block {
                source,
                records: Partition::from_lines(lines.iter().map(String::as_str)),
                progress: Vec::new(),
            })
            .collect();
        let release = InputRelease::new(|_| {});
        let output = run_batch(&pool, dataflow, &state, blocks, (time, batch.end), &release)
            .unwrap_or_else(|e| panic!("{}: batch {time}: {e:#}", dir.display()));
        if round_trip {
            let mut restored = dataflow.new_state(first).unwrap();
            restored.restore(&state.encode()).unwrap();
            state = Arc::new(restored);
        }
        for (i, o) in plan.outputs.iter().enumerate() {
            let Some(parts) = &output.streams[o.stream] else {
                continue;
            };
            let stream = &dataflow.streams[o.stream];
            let _ = writeln!(out, "# batch {time} output {i} '{}'", stream.name);
            let mut records: Vec<String> = parts
                .iter()
                .flat_map(|p| p.records())
                .map(|r| {
                    let mut text = String::new();
                    write_record(&mut text, &r, &stream.types);
                    text
                })
                .collect();
            records.sort();
            for record in records {
                let _ = writeln!(out, "{record}");
            }
        }
    }
    out
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("pipeline.toml").is_file())
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_golden_case_matches() {
    let bless = std::env::var_os("SPATE_BLESS").is_some();
    let mut failed = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 8, "the golden cases are missing");
    for case in cases {
        let got = run_case(&case, false);
        let expected_path = case.join("expected.txt");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        for (how, got) in [
            ("", got),
            (" (state restored after every batch)", run_case(&case, true)),
        ] {
            if got != expected {
                failed.push(format!(
                    "{}{how}: output differs from expected.txt\n--- expected\n{expected}--- got\n{got}",
                    case.display()
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn input_headers_name_time_source_and_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.txt");
    std::fs::write(
        &path,
        "# batch 2000 source b\nx\n# batch 1000\ny\nz\n# batch 2000 end\nw\n",
    )
    .unwrap();
    let batches = read_input(&path, &["a".into(), "b".into()]);
    let times: Vec<u64> = batches.keys().copied().collect();
    assert_eq!(times, [1000, 2000]);
    assert_eq!(batches[&1000].blocks, [(0, vec!["y".into(), "z".into()])]);
    assert_eq!(batches[&2000].blocks.len(), 2);
    assert!(batches[&2000].end && !batches[&1000].end);
}
