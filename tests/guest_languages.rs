//! Operators in Python, JavaScript (on StarlingMonkey, and on QuickJS with
//! `SPATE_JS_ENGINE=quickjs`) and C (guest-sdk/<lang>): each language's toolchain installs
//! through `scripts/install-guest-toolchains.sh`, its SDK passes its own native unit tests, and
//! its tokenize and sum examples, built into components by the SDK's build script, give in
//! real word count pipelines exactly the output of the bundled Rust plugins.
//!
//! The input is the repository's Markdown with Unicode and ASCII edge cases
//! (`scripts/make-docs-corpora.py`), so both the SDKs' ASCII fast paths and their full Unicode
//! paths (lowercasing, final sigma, punctuation) are compared.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use support::*;

/// A language's tokenize and sum components.
struct Built {
    tokenize: PathBuf,
    sum: PathBuf,
}

/// Builds `language`'s tokenize and sum examples once per test process, with
/// `scripts/build-guest-examples.sh` (into `target/guest-examples`).
fn built(language: &'static str) -> Arc<Built> {
    type Cache = Mutex<HashMap<&'static str, Arc<OnceLock<Arc<Built>>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(language)
        .or_default()
        .clone();
    cell.get_or_init(|| {
        // js-quickjs is the JavaScript SDK built with another engine (componentize-qjs).
        install_guest_toolchain(language.strip_suffix("-quickjs").unwrap_or(language));
        script(&repo().join("scripts/build-guest-examples.sh"), &[language]);
        let built = repo().join("target/guest-examples");
        Arc::new(Built {
            tokenize: built.join(format!("{language}-tokenize.wasm")),
            sum: built.join(format!("{language}-sum.wasm")),
        })
    })
    .clone()
}

/// The test inputs (Markdown with Unicode edge cases, and its ASCII-only twin), made once.
fn corpora() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guest-corpora");
        let _ = std::fs::remove_dir_all(&dir);
        script(
            Path::new("python3"),
            &[
                repo()
                    .join("scripts/make-docs-corpora.py")
                    .to_str()
                    .unwrap(),
                dir.to_str().unwrap(),
            ],
        );
        dir
    })
}

/// The second step of a word count pipeline.
#[derive(Clone, Copy)]
enum Count<'a> {
    /// reduce-by-key with this combiner plugin (the upstream tokenize pre-combines).
    Reduce(&'a str),
    /// count-by-value: one record per word crosses the boundary.
    ByValue,
}

/// Runs tokenize `tokenize` with `params` over corpus `corpus`, then `count`; returns every
/// word's count over all batches (how the input is cut into batches depends on timing).
fn word_count(tokenize: &str, params: &str, count: Count, corpus: &str) -> Counts {
    let dir = tempfile::tempdir().unwrap();
    let second = match count {
        Count::Reduce(plugin) => format!("op = \"reduce-by-key\"\nplugin = \"{plugin}\""),
        Count::ByValue => "op = \"count-by-value\"".to_owned(),
    };
    let text = format!(
        r#"
[job]
trigger = "available-now"
max-block-bytes = "128KiB"
max-batch-bytes = "512KiB"

[sources.lines]
type = "directory"
path = "{input}"
include-existing = true

[[steps]]
op = "flat-map"
plugin = "{tokenize}"
params = {params}

[[steps]]
{second}

[[outputs]]
type = "text-files"
prefix = "{out}/counts"
suffix = "txt"
"#,
        input = corpora().join(corpus).display(),
        out = dir.path().display(),
    );
    let path = pipeline(dir.path(), &text);
    let output = run(&["run", path.to_str().unwrap()], Duration::from_secs(180));
    assert!(
        output.status.success(),
        "{tokenize} failed:\n{}",
        stderr(&output)
    );
    let counts = total(&text_outputs(dir.path(), "counts"));
    assert!(!counts.is_empty(), "{tokenize} counted nothing");
    counts
}

/// The tokenize parameters compared.
const VARIANTS: &[&str] = &[
    "{ lowercase = true, strip-punctuation = true }",
    "{}",
    "{ lowercase = true }",
];

/// `language`'s tokenize gives the Rust tokenize's word counts, pre-combined before a
/// reduce-by-key and record by record before count-by-value, on Unicode and ASCII input.
fn tokenize_matches_rust(language: &'static str) {
    let built = built(language);
    let tokenize = built.tokenize.to_str().unwrap();
    for corpus in ["docs", "docsascii"] {
        for params in VARIANTS {
            for count in [Count::Reduce("sum"), Count::ByValue] {
                let label = format!(
                    "{corpus}, params {params}, {}",
                    match count {
                        Count::Reduce(_) => "reduce-by-key",
                        Count::ByValue => "count-by-value",
                    }
                );
                let ours = word_count(tokenize, params, count, corpus);
                let rust = word_count("tokenize", params, count, corpus);
                assert_same(language, &label, &ours, &rust);
            }
        }
    }
}

/// `language`'s sum, as the reduce-by-key combiner after the shuffle, gives the Rust sum's
/// totals, behind the Rust tokenize and behind the language's own tokenize (which pre-combines
/// with the monoid the sum declares).
fn sum_matches_rust(language: &'static str) {
    let built = built(language);
    let sum = built.sum.to_str().unwrap();
    let params = VARIANTS[0];
    let rust = word_count("tokenize", params, Count::Reduce("sum"), "docs");
    let behind_rust = word_count("tokenize", params, Count::Reduce(sum), "docs");
    assert_same(
        language,
        "sum behind the Rust tokenize",
        &behind_rust,
        &rust,
    );
    let own = word_count(
        built.tokenize.to_str().unwrap(),
        params,
        Count::Reduce(sum),
        "docs",
    );
    assert_same(language, "sum behind its own tokenize", &own, &rust);
    // And both equal the tokenizer run natively, so the comparison is not of two wrong runs.
    let text = std::fs::read_to_string(corpora().join("docs/docs.txt")).unwrap();
    assert_eq!(rust, reference_counts(&text, true, true));
}

/// Fails naming the first words whose counts differ.
fn assert_same(language: &str, what: &str, ours: &Counts, rust: &Counts) {
    if ours == rust {
        return;
    }
    let differing: Vec<_> = rust
        .keys()
        .chain(ours.keys())
        .filter(|w| ours.get(*w) != rust.get(*w))
        .take(10)
        .map(|w| {
            format!(
                "{w:?}: {language} {:?}, rust {:?}",
                ours.get(w),
                rust.get(w)
            )
        })
        .collect();
    panic!(
        "{language} ({what}): {} words, rust {}; first differences:\n{}",
        ours.len(),
        rust.len(),
        differing.join("\n")
    );
}

/// Runs `language`'s SDK unit tests natively.
fn sdk_unit_tests(language: &str) {
    install_guest_toolchain(language);
    let sdk = repo().join("guest-sdk").join(language);
    match language {
        "python" => {
            let python = repo().join("target/guest-tools/py/bin/python3");
            script(
                &python,
                &[
                    "-m",
                    "unittest",
                    "discover",
                    "-s",
                    sdk.join("tests").to_str().unwrap(),
                ],
            );
        }
        "js" => {
            script(
                Path::new("node"),
                &["--test", sdk.join("test").to_str().unwrap()],
            );
        }
        _ => {
            script(&sdk.join("tests/run.sh"), &[]);
        }
    }
}

#[test]
fn python_tokenize_matches_rust() {
    tokenize_matches_rust("python");
}

#[test]
fn python_sum_combiner_matches_rust() {
    sum_matches_rust("python");
}

#[test]
fn python_sdk_unit_tests_pass() {
    sdk_unit_tests("python");
}

#[test]
fn js_tokenize_matches_rust() {
    tokenize_matches_rust("js");
}

#[test]
fn js_sum_combiner_matches_rust() {
    sum_matches_rust("js");
}

#[test]
fn js_sdk_unit_tests_pass() {
    sdk_unit_tests("js");
}

#[test]
fn js_quickjs_tokenize_matches_rust() {
    tokenize_matches_rust("js-quickjs");
}

#[test]
fn js_quickjs_sum_combiner_matches_rust() {
    sum_matches_rust("js-quickjs");
}

#[test]
fn c_tokenize_matches_rust() {
    tokenize_matches_rust("c");
}

#[test]
fn c_sum_combiner_matches_rust() {
    sum_matches_rust("c");
}

#[test]
fn c_sdk_unit_tests_pass() {
    sdk_unit_tests("c");
}

#[test]
fn a_missing_toolchain_is_named_with_its_install_command() {
    // The build scripts find the tools under SPATE_GUEST_TOOLS: point it at an empty directory.
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(repo().join("guest-sdk/python/build.sh"))
        .args(["transform", "guest-sdk/python/examples/tokenize", "x.wasm"])
        .current_dir(repo())
        .env("SPATE_GUEST_TOOLS", empty.path())
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        message.contains(&format!(
            "componentize-py is missing: run {}/scripts/install-guest-toolchains.sh python",
            repo().canonicalize().unwrap().display()
        )),
        "{message}"
    );
}
