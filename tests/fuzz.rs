//! Property-based fuzzing, bounded to run in CI (a few seconds): the pipeline-file parser and
//! the connectors' field parsing over generated and mutated pipeline files, and the host's
//! checks of what a guest returns (columns, batches, composite values), over arbitrary bytes.
//! The property is the same everywhere: bad input gets an error, never a panic, and what the
//! checks accept can be read without one. Failing inputs are shrunk and printed by proptest.
//! More cases: `PROPTEST_CASES=100000 cargo test --release --test fuzz`.

use proptest::prelude::*;
use spate::config::Pipeline;
use spate::record::{Shape, StreamType, write_record, write_value};
use spate_guest::{Column, Partition, ValueType, nested};

/// Cases per property: `default`, or `PROPTEST_CASES` for a longer run.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Field names and values that pipeline files use, so that generated files reach deep into
/// the parser and the connectors rather than failing at the first line.
fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "type",
        "host",
        "port",
        "path",
        "include-existing",
        "poll-interval",
        "max-line-length",
        "on-bad-line",
        "lines-per-second",
        "reconnect-max",
        "resume-protocol",
        "num",
        "prefix",
        "suffix",
        "command",
        "from",
        "op",
        "plugin",
        "name",
        "partitions",
        "length",
        "slide",
        "timeout",
        "params",
        "batch-interval",
        "block-interval",
        "workers",
        "trigger",
        "max-block-bytes",
        "checkpoint-dir",
        "x-unknown",
    ])
    .prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"socket\"",
            "\"directory\"",
            "\"bundled\"",
            "\"print\"",
            "\"text-files\"",
            "\"command\"",
            "\"kafka\"",
            "\"1s\"",
            "\"0ms\"",
            "\"-1s\"",
            "\"1 MiB\"",
            "\"lots\"",
            "\"skip\"",
            "\"fail\"",
            "\"/tmp\"",
            "\"\"",
            "[]",
            "[\"sh\", \"-c\", \"true\"]",
            "{ a = 1 }",
            "true",
            "0",
            "-1",
            "70000",
            "18446744073709551616",
            "1.5",
            "\"\\u0000\"",
            "\"\\n[job]\"",
        ])
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
    ]
}

fn table() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "[job]",
            "[job.limits]",
            "[sources.a]",
            "[sources.b]",
            "[[steps]]",
            "[[outputs]]",
            "[steps.grants]",
            "[unknown]",
        ]),
        prop::collection::vec((key(), value()), 0..6),
    )
        .prop_map(|(header, fields)| {
            let mut text = format!("{header}\n");
            for (k, v) in fields {
                text.push_str(&format!("{k} = {v}\n"));
            }
            text
        })
}

/// A generated pipeline file, then possibly damaged: bytes cut out or overwritten.
fn pipeline_text() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(table(), 1..7),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        prop::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(tables, flips, cut)| {
            let mut bytes = tables.concat().into_bytes();
            for (at, byte) in flips {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            if let Some(at) = cut {
                bytes.truncate(at.index(bytes.len() + 1));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1500), ..ProptestConfig::default() })]

    #[test]
    fn pipeline_files_get_errors_never_panics(text in pipeline_text()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, &text).unwrap();
        if let Ok(pipeline) = Pipeline::load(&path, &[]) {
            for (_, table) in pipeline.source_tables() {
                let _ = spate::source::configure(&table).map(|s| s.describe());
            }
            for table in pipeline.output_tables() {
                let _ = spate::sink::configure(&table).map(|o| o.describe("s"));
            }
        }
    }

    #[test]
    fn overrides_get_errors_never_panics(set in "[a-z.\\[\\]0-9-]{0,20}=[ -~]{0,12}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "[sources.a]\ntype = \"bundled\"\n[[outputs]]\ntype = \"print\"\n").unwrap();
        let _ = Pipeline::load(&path, &[set]);
    }
}

fn column() -> impl Strategy<Value = Column> {
    (
        prop::collection::vec(any::<u8>(), 0..48),
        prop::collection::vec(0u32..56, 0..8),
    )
        .prop_map(|(data, offsets)| Column { data, offsets })
}

fn shape() -> impl Strategy<Value = Shape> {
    let scalar = prop::sample::select(vec![
        ValueType::Bytes,
        ValueType::Text,
        ValueType::I64,
        ValueType::F64,
    ])
    .prop_map(Shape::Scalar);
    scalar.prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(Shape::list),
            inner.clone().prop_map(Shape::maybe),
            (inner.clone(), inner).prop_map(|(a, b)| Shape::pair(a, b)),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4000), ..ProptestConfig::default() })]

    /// What the host checks a guest's batch with (`Partition::validate`, before it reads it) never
    /// panics, and a batch it accepts can be read and rendered whole.
    #[test]
    fn guest_batches_are_checked_before_use(
        keys in prop::option::of(column()),
        values in column(),
        timestamps in prop::collection::vec(any::<i64>(), 0..6),
        key_shape in shape(),
        value_shape in shape(),
    ) {
        let batch = Partition { keys, values, timestamps };
        if batch.validate().is_ok() {
            let types = StreamType { key: batch.keys.as_ref().map(|_| key_shape), value: value_shape };
            let mut text = String::new();
            for record in batch.records() {
                write_record(&mut text, &record, &types);
            }
        }
    }

    /// Composite values (groups, pairs, outer joins' sides) decode and print from any bytes.
    #[test]
    fn composite_values_print_from_any_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        shape in shape(),
    ) {
        let mut text = String::new();
        write_value(&mut text, &bytes, &shape);
        for item in nested::items(&bytes) {
            let _ = item;
        }
    }
}
