//! The DStream vocabulary end to end: one pipeline with every keyed, windowed and stateful
//! operator runs over many batches of files (keys entering and leaving, empty batches, a batch
//! slower than the interval), and each operator's output, batch by batch, is checked against a
//! reference the test computes from the input each batch really received (the pipeline also
//! writes its raw input streams).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use support::*;

/// Batch interval, window length and slide, and the map-with-state timeout, in ms.
const BATCH: u64 = 100;
const LENGTH: u64 = 300;
const SLIDE: u64 = 200;
const TIMEOUT: u64 = 250;

/// The text-files outputs under `dir` named `<stem>-<time>`: batch time -> its sorted lines.
fn batches(dir: &Path, stem: &str) -> BTreeMap<u64, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(time) = name.strip_prefix(&format!("{stem}-")) else {
            continue;
        };
        let Ok(time) = time.parse::<u64>() else {
            continue;
        };
        assert!(
            entry.path().join("_SUCCESS").exists(),
            "{name} has no _SUCCESS"
        );
        let mut lines = Vec::new();
        for part in std::fs::read_dir(entry.path()).unwrap() {
            let part = part.unwrap().path();
            if part
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
            {
                let text = std::fs::read_to_string(&part).unwrap();
                lines.extend(text.lines().map(str::to_owned));
            }
        }
        lines.sort();
        out.insert(time, lines);
    }
    out
}

type Counts = BTreeMap<String, i64>;

fn word_counts<'a>(lines: impl IntoIterator<Item = &'a String>) -> Counts {
    let mut counts = Counts::new();
    for line in lines {
        for word in line.split_whitespace() {
            *counts.entry(word.to_owned()).or_default() += 1;
        }
    }
    counts
}

fn sorted(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut lines: Vec<String> = lines.into_iter().collect();
    lines.sort();
    lines
}

fn pairs(counts: &Counts) -> Vec<String> {
    sorted(counts.iter().map(|(k, v)| format!("({k},{v})")))
}

/// A repeatable stream of numbers below `n` (a linear congruential generator from `seed`).
fn numbers(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    }
}

/// The batch times in (t - LENGTH, t].
fn window_of(times: &[u64], t: u64) -> impl Iterator<Item = &u64> {
    times.iter().filter(move |&&b| b + LENGTH > t && b <= t)
}

const PIPELINE: &str = r#"
[job]
batch-interval = "100ms"
block-interval = "50ms"
workers = 2

[sources.lines]
type = "directory"
path = "in"

[sources.more]
type = "directory"
path = "more"

[[steps]]
name = "words"
op = "flat-map"
from = "lines"
plugin = "tokenize"

[[steps]]
name = "counts"
op = "reduce-by-key"
plugin = "sum"
partitions = 3

[[steps]]
name = "windowed"
op = "reduce-by-key-and-window"
from = "words"
plugin = "sum"
inverse-plugin = "subtract"
length = "300ms"
slide = "200ms"

[[steps]]
name = "summed"
op = "sum-by-key"
from = "words"

[[steps]]
name = "summed-window"
op = "sum-by-key-and-window"
from = "words"
length = "300ms"
slide = "200ms"

[[steps]]
name = "windowed-plain"
op = "reduce-by-key-and-window"
from = "words"
plugin = "sum"
length = "300ms"
slide = "200ms"

[[steps]]
name = "totals"
op = "map-with-state"
from = "words"
plugin = "running-sum"
timeout = "250ms"
snapshots = "snapshots"

[[steps]]
name = "state"
op = "update-state-by-key"
from = "words"
plugin = "running-sum"
initial-state = "initial.tsv"

[[steps]]
name = "line-counts"
op = "count-by-value"
from = "lines"

[[steps]]
name = "word-total"
op = "reduce"
from = "counts"
plugin = "sum"

[[steps]]
name = "lines-window"
op = "window"
from = "lines"
length = "300ms"
slide = "200ms"

[[steps]]
name = "window-total"
op = "reduce-by-window"
from = "counts"
plugin = "sum"
length = "300ms"
slide = "200ms"

[[steps]]
name = "lines-count"
op = "count"
from = "lines"

[[steps]]
name = "lines-window-count"
op = "count-by-window"
from = "lines"
length = "300ms"
slide = "200ms"

[[steps]]
name = "line-values"
op = "count-by-value-and-window"
from = "lines"
length = "300ms"
slide = "200ms"

[[steps]]
name = "groups"
op = "group-by-key"
from = "words"

[[steps]]
name = "a-counts"
op = "filter"
from = "counts"
plugin = "filter"
params = { field = "key", prefix = "a" }

[[steps]]
name = "joined"
op = "join"
from = ["counts", "a-counts"]

[[steps]]
name = "left-joined"
op = "left-outer-join"
from = ["counts", "a-counts"]

[[steps]]
name = "cogrouped"
op = "cogroup"
from = ["a-counts", "counts"]

[[steps]]
name = "right-joined"
op = "right-outer-join"
from = ["a-counts", "counts"]

[[steps]]
name = "full-joined"
op = "full-outer-join"
from = ["a-counts", "counts"]

[[steps]]
name = "more-words"
op = "flat-map"
from = "more"
plugin = "tokenize"

[[steps]]
name = "all-words"
op = "union"
from = ["words", "more-words"]

[[steps]]
name = "all-counts"
op = "reduce-by-key"
plugin = "sum"

[[steps]]
name = "spread"
op = "repartition"
from = "lines"
partitions = 3

[[steps]]
name = "spread-count"
op = "count"
"#;

/// Outputs: every stream above, as text files `out/<name>-<time>`.
const STREAMS: &[&str] = &[
    "lines",
    "more",
    "counts",
    "summed",
    "windowed",
    "summed-window",
    "windowed-plain",
    "totals",
    "snapshots",
    "state",
    "line-counts",
    "word-total",
    "lines-window",
    "window-total",
    "right-joined",
    "full-joined",
    "lines-count",
    "lines-window-count",
    "line-values",
    "groups",
    "joined",
    "left-joined",
    "cogrouped",
    "all-counts",
    "spread-count",
];

/// Moves files of words into `in` and `more` at uneven times: the vocabulary shifts (keys enter
/// and leave), some batches get nothing, one gets a file large enough to make its batch slower
/// than the interval.
fn feed(dir: &Path) {
    let mut next = numbers(7);
    for step in 0..30u64 {
        let mut text = String::new();
        for _ in 0..1 + next(4) {
            let words: Vec<String> = (0..1 + next(5))
                .map(|_| {
                    let w = step / 3 + next(4);
                    format!("{}{w}", if next(2) == 0 { "a" } else { "b" })
                })
                .collect();
            text.push_str(&words.join(" "));
            text.push('\n');
        }
        if step == 12 {
            // About 8 MB of words in one batch: slower than the 100 ms interval.
            text.push_str(&"a1 b2 a3 b4 a5 b6 a7 b8\n".repeat(350_000));
        }
        let target = if next(3) == 0 { "more" } else { "in" };
        let staged = dir.join(format!("staged-{step}"));
        std::fs::File::create(&staged)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        std::fs::rename(&staged, dir.join(target).join(format!("f{step}.txt"))).unwrap();
        std::thread::sleep(Duration::from_millis(next(150)));
    }
}

#[test]
fn dstream_operators_match_a_reference_over_many_batches() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["in", "more", "out"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    let mut text = PIPELINE.to_owned();
    for stream in STREAMS {
        text.push_str(&format!(
            "\n[[outputs]]\ntype = \"text-files\"\nfrom = \"{stream}\"\nprefix = \"{}/out/{stream}\"\n",
            root.display()
        ));
    }
    let text = text
        .replace(
            "path = \"in\"",
            &format!("path = \"{}/in\"", root.display()),
        )
        .replace(
            "path = \"more\"",
            &format!("path = \"{}/more\"", root.display()),
        );
    // update-state-by-key starts from these (a0 also arrives; zz never does).
    std::fs::write(root.join("initial.tsv"), "a0\t100\nzz\t5\n").unwrap();
    let path = pipeline(root, &text);
    // The log goes to a file: a pipe nobody reads while the job runs could fill and block it.
    let log_path = root.join("log");
    let child = spate()
        .args(["run", path.to_str().unwrap(), "--max-batches", "70"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    feed(root);
    let output = wait(child, Duration::from_secs(120));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(output.status.success(), "{log}");
    // The state's records and the host memory they take.
    assert!(log.contains(" records in state ("), "{log}");

    let out = root.join("out");
    let lines = batches(&out, "lines");
    let more = batches(&out, "more");
    let times: Vec<u64> = lines.keys().copied().collect();
    assert!(
        times.len() >= 60,
        "every batch writes its input, even empty: {}",
        times.len()
    );
    assert!(
        times.windows(2).all(|w| w[1] - w[0] == BATCH),
        "one batch per interval"
    );
    assert!(
        lines.values().filter(|l| l.is_empty()).count() > 5,
        "empty batches were tested"
    );
    let total_lines: usize = lines.values().chain(more.values()).map(Vec::len).sum();
    assert!(total_lines > 350_000, "every line arrived: {total_lines}");
    let slow = log
        .lines()
        .filter(|l| l.contains("processing time"))
        .any(|l| {
            l.contains("scheduling delay")
                && !l.contains("scheduling delay 0.")
                && !l.contains("scheduling delay 1.")
        });
    assert!(slow, "some batch waited for a slower one:\n{log}");

    let counts: BTreeMap<u64, Counts> = lines.iter().map(|(t, l)| (*t, word_counts(l))).collect();
    let at = |stream: &str| batches(&out, stream);

    // reduce-by-key, sum-by-key, count, repartition, union.
    let (got_counts, got_n, got_spread, got_all) = (
        at("counts"),
        at("lines-count"),
        at("spread-count"),
        at("all-counts"),
    );
    let summed = at("summed");
    for &t in &times {
        assert_eq!(got_counts[&t], pairs(&counts[&t]), "counts at {t}");
        assert_eq!(summed[&t], pairs(&counts[&t]), "sum-by-key at {t}");
        assert_eq!(got_n[&t], vec![lines[&t].len().to_string()], "count at {t}");
        assert_eq!(
            got_spread[&t], got_n[&t],
            "repartition keeps every record at {t}"
        );
        let all = word_counts(lines[&t].iter().chain(&more[&t]));
        assert_eq!(got_all[&t], pairs(&all), "union at {t}");
    }

    // Windows, with and without the inverse function, exactly at the slide times.
    let slides: Vec<u64> = times.iter().copied().filter(|t| t % SLIDE == 0).collect();
    let (windowed, plain) = (at("windowed"), at("windowed-plain"));
    let summed_window = at("summed-window");
    assert_eq!(summed_window.keys().copied().collect::<Vec<_>>(), slides);
    let (window_counts, line_values) = (at("lines-window-count"), at("line-values"));
    let (lines_window, window_total) = (at("lines-window"), at("window-total"));
    assert_eq!(lines_window.keys().copied().collect::<Vec<_>>(), slides);
    assert_eq!(windowed.keys().copied().collect::<Vec<_>>(), slides);
    assert_eq!(plain.keys().copied().collect::<Vec<_>>(), slides);
    for &t in &slides {
        let mut expected = Counts::new();
        let mut lines_in_window = 0;
        let mut values = Counts::new();
        for b in window_of(&times, t) {
            for (k, v) in &counts[b] {
                *expected.entry(k.clone()).or_default() += v;
            }
            lines_in_window += lines[b].len();
            for line in &lines[b] {
                *values.entry(line.clone()).or_default() += 1;
            }
        }
        assert_eq!(windowed[&t], pairs(&expected), "window with inverse at {t}");
        assert_eq!(
            summed_window[&t],
            pairs(&expected),
            "sum-by-key-and-window at {t}"
        );
        assert_eq!(
            plain[&t], windowed[&t],
            "with and without the inverse at {t}"
        );
        assert_eq!(
            window_counts[&t],
            vec![lines_in_window.to_string()],
            "count-by-window at {t}"
        );
        assert_eq!(
            line_values[&t],
            pairs(&values),
            "count-by-value-and-window at {t}"
        );
        let window_lines = sorted(window_of(&times, t).flat_map(|b| lines[b].clone()));
        assert_eq!(lines_window[&t], window_lines, "window at {t}");
        let words: i64 = expected.values().sum();
        let expected_total = if words == 0 {
            vec![]
        } else {
            vec![words.to_string()]
        };
        assert_eq!(window_total[&t], expected_total, "reduce-by-window at {t}");
    }

    // map-with-state with timeouts, its snapshots, and update-state-by-key.
    let (totals, snapshots, state) = (at("totals"), at("snapshots"), at("state"));
    let mut live: HashMap<String, (i64, u64)> = HashMap::new();
    let mut all_time: Counts = [("a0".to_owned(), 100), ("zz".to_owned(), 5)].into();
    let mut timeouts = 0;
    for &t in &times {
        let before = live.len();
        live.retain(|k, (_, updated)| counts[&t].contains_key(k) || t - *updated <= TIMEOUT);
        timeouts += before - live.len();
        let mut emitted = Counts::new();
        for (k, n) in &counts[&t] {
            let entry = live.entry(k.clone()).or_insert((0, t));
            entry.0 += n;
            entry.1 = t;
            emitted.insert(k.clone(), entry.0);
            *all_time.entry(k.clone()).or_default() += n;
        }
        assert_eq!(totals[&t], pairs(&emitted), "map-with-state output at {t}");
        let snapshot: Counts = live.iter().map(|(k, (v, _))| (k.clone(), *v)).collect();
        assert_eq!(
            snapshots[&t],
            pairs(&snapshot),
            "map-with-state snapshot at {t}"
        );
        assert_eq!(state[&t], pairs(&all_time), "update-state-by-key at {t}");
    }
    assert!(timeouts > 5, "keys timed out: {timeouts}");

    // group-by-key, joins, cogroup.
    let (groups, joined, left, cogrouped) = (
        at("groups"),
        at("joined"),
        at("left-joined"),
        at("cogrouped"),
    );
    let (right, full) = (at("right-joined"), at("full-joined"));
    for &t in &times {
        let c = &counts[&t];
        let ones = |n: i64| vec!["1"; n as usize].join(", ");
        assert_eq!(
            groups[&t],
            sorted(c.iter().map(|(k, n)| format!("({k},[{}])", ones(*n)))),
            "groups at {t}"
        );
        let a: Vec<(&String, &i64)> = c.iter().filter(|(k, _)| k.starts_with('a')).collect();
        assert_eq!(
            joined[&t],
            sorted(a.iter().map(|(k, n)| format!("({k},({n},{n}))"))),
            "join at {t}"
        );
        let expected_left = c.iter().map(|(k, n)| {
            if k.starts_with('a') {
                format!("({k},({n},Some({n})))")
            } else {
                format!("({k},({n},None))")
            }
        });
        assert_eq!(left[&t], sorted(expected_left), "left outer join at {t}");
        // a-counts is the left side now, a subset of counts: right and full outer agree.
        let expected_right = sorted(c.iter().map(|(k, n)| {
            if k.starts_with('a') {
                format!("({k},(Some({n}),{n}))")
            } else {
                format!("({k},(None,{n}))")
            }
        }));
        assert_eq!(right[&t], expected_right, "right outer join at {t}");
        let expected_full = sorted(c.iter().map(|(k, n)| {
            if k.starts_with('a') {
                format!("({k},(Some({n}),Some({n})))")
            } else {
                format!("({k},(None,Some({n})))")
            }
        }));
        assert_eq!(full[&t], expected_full, "full outer join at {t}");
        let expected_cogroup = c.iter().map(|(k, n)| {
            let a_side = if k.starts_with('a') {
                n.to_string()
            } else {
                String::new()
            };
            format!("({k},([{a_side}],[{n}]))")
        });
        assert_eq!(cogrouped[&t], sorted(expected_cogroup), "cogroup at {t}");
    }
}

#[test]
fn event_time_windows_close_with_the_watermark_and_count_late_records() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["in", "out"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    // "k<n> <event time ms>": mostly in order with jitter, every 17th one far behind.
    let mut next = numbers(3);
    // One file per 15 events: a file is read in one piece, so each makes its own block, and
    // with max-batch-bytes below two blocks, its own batch.
    for file in 0..20u64 {
        let mut text = String::new();
        for j in 0..15u64 {
            let i = file * 15 + j;
            let mut ts = 1_000_000 + i * 100 + next(900);
            if i % 17 == 16 {
                ts -= 6_000;
            }
            text.push_str(&format!("k{} {ts}\n", next(4)));
        }
        std::fs::write(root.join(format!("in/events-{file:02}.txt")), text).unwrap();
    }
    let pipeline_text = format!(
        r#"
[job]
trigger = "available-now"
max-block-bytes = "200B"
max-batch-bytes = "200B"
max-buffered-bytes = "1MiB"

[sources.events]
type = "directory"
path = "{root}/in"
include-existing = true

[[steps]]
op = "assign-timestamps"
time-field = 1
separator = " "

[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
op = "filter"
plugin = "filter"
params = {{ field = "key", prefix = "k" }}

[[steps]]
name = "per-window"
op = "event-time-window"
plugin = "sum"
length = "4s"
slide = "2s"
allowed-lateness = "1s"
late = "late"

[[outputs]]
type = "text-files"
from = "events"
prefix = "{root}/out/events"

[[outputs]]
type = "text-files"
from = "per-window"
prefix = "{root}/out/windows"

[[outputs]]
type = "text-files"
from = "late"
prefix = "{root}/out/late"
"#,
        root = root.display()
    );
    let path = pipeline(root, &pipeline_text);
    let output = run(&["run", path.to_str().unwrap()], Duration::from_secs(60));
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");

    let (length, slide, lateness) = (4000i64, 2000i64, 1000i64);
    let events = batches(&root.join("out"), "events");
    let (windows, late) = (
        batches(&root.join("out"), "windows"),
        batches(&root.join("out"), "late"),
    );
    assert!(events.len() >= 8, "several batches: {}", events.len());
    let mut newest: Option<i64> = None;
    let mut open: BTreeMap<(i64, String), i64> = BTreeMap::new();
    let mut late_total = 0;
    for (t, lines) in &events {
        let before = newest.map_or(i64::MIN, |n| n - lateness);
        let mut late_here = Vec::new();
        for line in lines {
            let (key, ts) = line.split_once(' ').unwrap();
            let ts: i64 = ts.parse().unwrap();
            let mut start = ts.div_euclid(slide) * slide;
            let mut any = false;
            while start > ts - length {
                if start + length > before {
                    *open.entry((start, key.to_owned())).or_default() += 1;
                    any = true;
                }
                start -= slide;
            }
            if !any {
                late_here.push(format!("({key},1)"));
            }
            newest = newest.max(Some(ts));
        }
        // The last batch of bounded input closes every window (Flink's final watermark).
        let after = if Some(t) == events.keys().last() {
            i64::MAX
        } else {
            newest.map_or(i64::MIN, |n| n - lateness)
        };
        let closed: Vec<String> = open
            .iter()
            .filter(|((start, _), _)| start.saturating_add(length) <= after)
            .map(|((start, key), n)| format!("(({start},{key}),{n})"))
            .collect();
        open.retain(|(start, _), _| start.saturating_add(length) > after);
        late_total += late_here.len();
        assert_eq!(windows[t], sorted(closed), "closed windows at batch {t}");
        assert_eq!(late[t], sorted(late_here), "late records at batch {t}");
    }
    assert!(late_total > 5, "late records were tested: {late_total}");
    assert!(open.is_empty(), "the end of input closed every window");
    assert!(log.contains("late records"), "{log}");
}

#[test]
fn graph_mistakes_are_named_with_their_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let head = format!(
        "[sources.a]\ntype = \"directory\"\npath = \"{}/in\"\n[[outputs]]\ntype = \"print\"\n",
        dir.path().display()
    );
    let cases = [
        (
            "[[steps]]\nop = \"window\"\nlength = \"1500ms\"\n",
            "steps[0].length: must be a multiple of the batch interval (1000 ms), got 1500 ms",
        ),
        (
            "[[steps]]\nop = \"union\"\nfrom = [\"a\", \"nope\"]\n",
            "steps[0].from: no stream named 'nope' before this point (sources and earlier steps' names: a)",
        ),
        (
            "[[steps]]\nop = \"join\"\nfrom = \"a\"\n",
            "steps[0].from: join reads 2 streams",
        ),
        (
            "[[steps]]\nop = \"count\"\nplugin = \"sum\"\n",
            "steps[0].plugin: count does not take `plugin`",
        ),
        (
            "[[steps]]\nop = \"map-with-state\"\nplugin = \"sum\"\n",
            "map-with-state needs (key, value) records, but stream 'a' holds unkeyed records",
        ),
        (
            "[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n[[steps]]\nop = \"map-with-state\"\nplugin = \"sum\"\n",
            "it is a combiner operator (exports spate:operator/combiner@0.1.0), but this step needs one exporting spate:operator/state@0.1.0",
        ),
        (
            "[[steps]]\nop = \"repartition\"\n",
            "steps[0].partitions: repartition needs `partitions`",
        ),
        (
            "[[steps]]\nop = \"sum-by-key\"\n",
            "sum-by-key needs (key, value) records, but stream 'a' holds unkeyed records",
        ),
        (
            "[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n[[steps]]\nname = \"g\"\nop = \"group-by-key\"\n[[steps]]\nop = \"sum-by-key-and-window\"\nlength = \"2s\"\n",
            "steps[2].op: sum-by-key-and-window adds up i64 values, but stream 'g' holds list<i64> values",
        ),
        (
            "[[steps]]\nname = \"w\"\nop = \"window\"\nlength = \"2s\"\nslide = \"2s\"\n[[steps]]\nop = \"union\"\nfrom = [\"a\", \"w\"]\n",
            "the streams read must have batches at the same times",
        ),
    ];
    for (steps, expected) in cases {
        let path = pipeline(dir.path(), &format!("{head}{steps}"));
        let output = run(&["check", path.to_str().unwrap()], Duration::from_secs(30));
        let log = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{steps}: {log}");
        assert!(
            log.contains(expected),
            "{steps}\nexpected: {expected}\ngot: {log}"
        );
        assert!(
            log.contains("pipeline.toml:"),
            "the error names the file and line: {log}"
        );
    }
}
