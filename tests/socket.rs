//! The classic job end to end: a TCP text server started here, `spate run` on the socket
//! word count, outputs compared with counts computed here from what was sent.

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;
use support::*;

const GROUPS: [&str; 3] = [
    "the quick brown fox\njumps over the lazy dog\n",
    "the dog barks\r\nthe fox runs away\n",
    "Hello, World! hello again\nand again\n",
];

#[test]
fn socket_word_count_is_exact_per_batch_and_survives_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    // Find a free port, then leave it closed so that spate first has to retry.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prefix = dir.path().join("out/wc");
    let path = pipeline(
        dir.path(),
        &format!(
            r#"
[job]
batch-interval = "500ms"
block-interval = "100ms"

[sources.lines]
type = "socket"
host = "127.0.0.1"
port = {port}
reconnect-max = "200ms"

[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
op = "reduce-by-key"
plugin = "sum"
partitions = 3

[[outputs]]
type = "text-files"
prefix = "{}"
suffix = "txt"

[[outputs]]
type = "print"
"#,
            prefix.display()
        ),
    );
    let child = spate()
        .args(["run", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();

    // Two groups on a first connection, spaced by more than a batch interval; the server then
    // hangs up, and the third group goes over the connection spate makes again.
    let (mut first, _) = listener.accept().unwrap();
    for group in &GROUPS[..2] {
        first.write_all(group.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(1300));
    }
    drop(first);
    let (mut second, _) = listener.accept().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    second.write_all(GROUPS[2].as_bytes()).unwrap();

    let expected = reference_counts(&GROUPS.concat(), false, false);
    let out_dir = prefix.parent().unwrap().to_owned();
    let complete = eventually(Duration::from_secs(15), || {
        total(&text_outputs(&out_dir, "wc")) == expected
    });
    interrupt(&child);
    let output = wait(child, Duration::from_secs(20));
    let log = stderr(&output);
    assert!(complete, "totals never matched the reference\n{log}");
    assert!(output.status.success(), "graceful stop must exit 0\n{log}");

    // Each group was sent in one write within one batch interval: it is exactly one batch.
    let batches: Vec<Counts> = text_outputs(&out_dir, "wc")
        .into_values()
        .filter(|c| !c.is_empty())
        .collect();
    let per_group: Vec<Counts> = GROUPS
        .iter()
        .map(|g| reference_counts(g, false, false))
        .collect();
    assert_eq!(batches, per_group, "{log}");

    assert!(
        log.contains("cannot connect to 127.0.0.1"),
        "the failed first connection is logged\n{log}"
    );
    assert!(
        log.contains("the server closed the connection; reconnecting"),
        "{log}"
    );
    assert!(
        log.contains("summary:"),
        "a summary is printed at stop\n{log}"
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("-------------------------------------------\nTime: "),
        "{printed}"
    );
    assert!(printed.contains("(fox,1)"), "{printed}");
}

/// A bad line names its line in the connection and its byte offset in the source's whole
/// stream, which stays the same across reconnects and restarts (what a producer speaking the
/// resume protocol resends from).
#[test]
fn a_bad_line_after_a_reconnect_names_its_stream_offset() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let path = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.lines]
type = "socket"
host = "127.0.0.1"
port = {port}
reconnect-max = "200ms"

[[outputs]]
type = "print"
"#
        ),
    );
    let child = spate()
        .args(["run", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut first, _) = listener.accept().unwrap();
    first.write_all(b"first line\nsecond\n").unwrap();
    drop(first);
    let (mut second, _) = listener.accept().unwrap();
    second.write_all(b"fine\nbad \xff\n").unwrap();
    let output = wait(child, Duration::from_secs(20));
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    // 18 bytes on the first connection, then "fine\n": the bad line starts at byte 23.
    assert!(
        log.contains("(connection 2) line 2 (byte offset 23): invalid UTF-8"),
        "{log}"
    );
}
