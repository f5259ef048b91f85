//! `spate new`: a project written for each language (its toolchain installed by
//! scripts/install-guest-toolchains.sh) builds to a component with its own build
//! command, passes its own unit test, passes `spate check`, and runs its pipeline unedited.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::*;

/// Runs a build or test command of a generated project, failing with its output.
fn in_project(project: &Path, program: &str, args: &[&str]) {
    // A project script runs by its full path (a relative program path and current_dir mix
    // differently across platforms).
    let path = match program.strip_prefix("./") {
        Some(script) => project.join(script),
        None => program.into(),
    };
    let output = Command::new(path)
        .args(args)
        .current_dir(project)
        // The project's own target directory, whatever the outer build uses.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates project `name` in `language`, checks its pipeline and runs it from its directory;
/// returns the word counts it printed.
fn new_project(dir: &Path, language: &str, name: &str, build: &[&[&str]]) -> Counts {
    let output = run(
        &["new", language, name, "--dir", dir.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let project = dir.join(name);
    for command in build {
        in_project(&project, command[0], &command[1..]);
    }
    let check = spate()
        .args(["check", "pipeline.toml"])
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    let ran = spate()
        .args(["run", "pipeline.toml"])
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", stderr(&ran));
    printed_counts(&ran.stdout)
}

/// What the template's operator gives over the template's sample input: words split on
/// whitespace, lowercased.
fn expected() -> Counts {
    let sample = include_str!("../runtime/templates/common/sample.txt");
    let mut counts = Counts::new();
    for word in sample.split_whitespace() {
        *counts.entry(word.to_lowercase()).or_default() += 1;
    }
    counts
}

#[test]
fn a_new_rust_operator_builds_tests_checks_and_runs_unedited() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let counts = new_project(
        dir.path(),
        "rust",
        "word-split",
        &[
            &[&cargo, "test", "--quiet"],
            &[&cargo, "build", "--release", "--target", "wasm32-wasip2"],
        ],
    );
    assert_eq!(counts, expected());
    let again = run(
        &[
            "new",
            "rust",
            "word-split",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    let bad = run(&["new", "rust", "Bad Name"], Duration::from_secs(30));
    assert!(
        stderr(&bad).contains("not a valid operator name"),
        "{}",
        stderr(&bad)
    );
}

/// Installs `language`'s toolchain with the project's script, then checks a new project.
fn new_guest_project(language: &str, build: &[&[&str]]) {
    install_guest_toolchain(language);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        new_project(dir.path(), language, "word-split", build),
        expected()
    );
}

#[test]
fn a_new_python_operator_builds_tests_checks_and_runs_unedited() {
    new_guest_project(
        "python",
        &[&["python3", "-m", "unittest", "--quiet"], &["./build.sh"]],
    );
}

#[test]
fn a_new_js_operator_builds_tests_checks_and_runs_unedited() {
    new_guest_project("js", &[&["node", "--test"], &["./build.sh"]]);
}

#[test]
fn a_new_c_operator_builds_tests_checks_and_runs_unedited() {
    new_guest_project("c", &[&["./test.sh"], &["./build.sh"]]);
}
