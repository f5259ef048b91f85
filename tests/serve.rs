//! `spate serve` end to end, over real HTTP with the real client commands: tokens (401),
//! tenants' jobs kept apart (403), submit, list, status, logs, stop; pipelines refused by the
//! tenant's policy; and a server killed with SIGKILL that resumes its jobs with exact outputs.

mod support;

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;
use support::chaos::{Rng, lines};
use support::*;

/// A server's directory: its config (tenants a, b and an admin) and data.
struct Server {
    dir: tempfile::TempDir,
    child: Option<Child>,
    url: String,
}

const TOKENS: [(&str, &str); 6] = [
    ("a", "token-a"),
    ("b", "token-b"),
    ("ops", "token-ops"),
    ("q", "token-q"),
    ("p", "token-p"),
    ("m", "token-m"),
];

impl Server {
    fn new() -> Server {
        Server::with(|_| String::new())
    }

    /// A server whose `[server]` table also has the lines `more` gives for its directory.
    fn with(more: impl FnOnce(&Path) -> String) -> Server {
        Server::with_tenant_lines(|dir| (more(dir), Vec::new()))
    }

    /// A server whose `[server]` table also has the first lines `more` gives for its
    /// directory, and whose tenants named in the second have those lines too.
    fn with_tenant_lines(
        more: impl FnOnce(&Path) -> (String, Vec<(&'static str, String)>),
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (server_lines, tenant_lines) = more(dir.path());
        let mut config = format!(
            "[server]\nbind = \"127.0.0.1:0\"\ndata-dir = \"data\"\n{server_lines}\n[defaults]\nmax-workers = 2\n\n[defaults.limits]\ncall-time = \"5s\"\n",
        );
        for (tenant, token) in TOKENS {
            let hash = format!("{:x}", Sha256::digest(token.as_bytes()));
            let own: String = (tenant_lines.iter())
                .filter(|(t, _)| *t == tenant)
                .map(|(_, lines)| lines.as_str())
                .collect();
            config.push_str(&format!(
                "\n[[tenants]]\nname = \"{tenant}\"\ntoken-sha256 = \"{hash}\"\n{own}{}",
                match tenant {
                    "ops" => "admin = true\n",
                    // Tenant q may make 20 operator calls; then its jobs stop.
                    "q" => "\n[tenants.quota]\ncalls = 20\n",
                    // Tenant p runs one job at a time, of at most 3 output records a batch.
                    "p" => "\n[tenants.quota]\nrunning-jobs = 1\n\n[tenants.quota.per-batch]\noutput-records = 3\n",
                    // Tenant m's jobs may reserve 1 MiB, less than any job does.
                    "m" => "\n[tenants.quota]\nmemory = \"1 MiB\"\n",
                    _ => "",
                }
            ));
        }
        std::fs::write(dir.path().join("server.toml"), config).unwrap();
        let mut server = Server {
            dir,
            child: None,
            url: String::new(),
        };
        server.start();
        server
    }

    /// Starts `spate serve` and waits for its address.
    fn start(&mut self) {
        let log = self.dir.path().join("server.log");
        let child = spate()
            .args(["serve", "--config"])
            .arg(self.dir.path().join("server.toml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            eventually(Duration::from_secs(30), || read().contains("API at http")),
            "{}",
            read()
        );
        let text = read();
        let at = text.find("API at ").unwrap() + "API at ".len();
        self.url = text[at..].split("/api").next().unwrap().to_owned();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Tenant `tenant`'s data root.
    fn root(&self, tenant: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/tenants")
            .join(tenant)
            .join("data")
    }

    /// Runs a client command as `tenant` (None: without a token).
    fn client(&self, tenant: Option<&str>, args: &[&str]) -> Output {
        let mut command = spate();
        command
            .args(args)
            .args(["--server", &self.url])
            .env_remove("SPATE_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(tenant) = tenant {
            let token = TOKENS
                .iter()
                .find(|(t, _)| *t == tenant)
                .map_or(tenant, |t| t.1);
            command.env("SPATE_TOKEN", token);
        }
        wait(command.spawn().unwrap(), Duration::from_secs(120))
    }

    /// Tenant `tenant`'s jobs as `spate jobs` prints them.
    fn jobs(&self, tenant: &str) -> String {
        let output = self.client(Some(tenant), &["jobs"]);
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    }

    /// Writes a pipeline file for submission.
    fn pipeline(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `GET path` of the API as `tenant`: the status and the body.
    fn get(&self, tenant: &str, path: &str) -> (u16, String) {
        let token = TOKENS.iter().find(|(t, _)| *t == tenant).unwrap().1;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .get(&format!("{}{path}", self.url))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    /// Waits until `tenant`'s job `job` has completed a batch: its directory source has
    /// looked, so files dropped from now on are new (those there before it first looks count
    /// as existing and are not read, as Spark's `textFileStream` does).
    fn wait_for_a_batch(&self, tenant: &str, job: &str) {
        let done = || {
            let (_, body) = self.get(tenant, &format!("/tenants/{tenant}/api/v1/jobs/{job}"));
            let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            status["batches_done"].as_u64().unwrap_or(0) > 0
        };
        assert!(
            eventually(Duration::from_secs(60), done),
            "{tenant}.{job} completed no batch\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A checkpointed word count of the directory `in` of the tenant's root into `out/counts`.
const WORD_COUNT: &str = r#"
[job]
batch-interval = "500ms"
block-interval = "100ms"
checkpoint-dir = "ck"

[sources.lines]
type = "directory"
path = "in"
poll-interval = "100ms"

[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
op = "reduce-by-key"
plugin = "sum"

[[outputs]]
type = "text-files"
prefix = "out/counts"
suffix = "txt"
"#;

/// Drops `text` into `dir` as file `name` (written aside, then renamed in).
fn drop_file(dir: &Path, name: &str, text: &str) {
    let staged = dir.join(format!(".{name}"));
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, dir.join(name)).unwrap();
}

fn submitted_id(output: &Output) -> String {
    assert!(output.status.success(), "{}", stderr(output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.lines().last().unwrap().to_owned()
}

#[test]
fn tenants_reach_their_own_jobs_only() {
    let server = Server::new();
    let input = server.root("a").join("in");
    std::fs::create_dir_all(&input).unwrap();
    let path = server.pipeline("wc", WORD_COUNT);
    let id = submitted_id(&server.client(Some("a"), &["submit", path.to_str().unwrap()]));
    assert_eq!(id, "a.wc");
    assert!(
        server.jobs("a").contains("a.wc wc running"),
        "{}",
        server.jobs("a")
    );

    // Without a token, or with a wrong one: 401.
    let none = server.client(None, &["jobs"]);
    assert!(!none.status.success());
    assert!(stderr(&none).contains("SPATE_TOKEN"), "{}", stderr(&none));
    let wrong = server.client(Some("not-a-token"), &["jobs"]);
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("HTTP 401"), "{}", stderr(&wrong));
    // Tenant b neither sees, stops, reads nor inspects a's job: 403.
    assert!(!server.jobs("b").contains("a.wc"));
    for command in ["stop", "logs", "status"] {
        let refused = server.client(Some("b"), &[command, "a.wc"]);
        assert!(!refused.status.success(), "{command}");
        assert!(
            stderr(&refused).contains("HTTP 403"),
            "{command}: {}",
            stderr(&refused)
        );
    }
    // b's own job of the same name is b's: job names are per tenant.
    std::fs::create_dir_all(server.root("b").join("in")).unwrap();
    let b_id = submitted_id(&server.client(Some("b"), &["submit", path.to_str().unwrap()]));
    assert_eq!(b_id, "b.wc");
    // The admin sees both.
    let all = server.jobs("ops");
    assert!(all.contains("a.wc") && all.contains("b.wc"), "{all}");

    // a's job counts what a drops in its root.
    let mut rng = Rng(7);
    let text = lines(&mut rng, 200);
    server.wait_for_a_batch("a", "wc");
    drop_file(&input, "f1.txt", &text);
    let out = server.root("a").join("out");
    let expected = reference_counts(&text, false, false);
    assert!(
        eventually(Duration::from_secs(60), || total(&text_outputs(
            &out, "counts"
        )) == expected),
        "{}",
        server.log()
    );
    let status = server.client(Some("a"), &["status", "wc"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["state"], "running");
    assert_eq!(status["tenant"], "a");
    assert!(
        status["status"]["batches_done"].as_u64().unwrap() > 0,
        "{status}"
    );
    let logs = server.client(Some("a"), &["logs", "wc"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("starting for tenant 'a'") && logs.contains(" ms: "),
        "{logs}"
    );
    assert!(!logs.contains("b.wc"), "a's log holds b's lines: {logs}");

    // Stop, and follow the log to the job's end.
    let stopped = server.client(Some("a"), &["stop", "wc"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let followed = server.client(Some("a"), &["logs", "--follow", "wc"]);
    assert!(followed.status.success());
    assert!(String::from_utf8_lossy(&followed.stdout).ends_with("stopped\n"));
    assert!(
        server.jobs("a").contains("a.wc wc stopped"),
        "{}",
        server.jobs("a")
    );
    assert!(server.jobs("b").contains("b.wc wc running"));
    // Submitted again, the job resumes, and its status is the new run's (the old run's says
    // `finished`).
    let again = submitted_id(&server.client(Some("a"), &["submit", path.to_str().unwrap()]));
    assert_eq!(again, "a.wc");
    let status = server.client(Some("a"), &["status", "wc"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["state"], "running", "{status}");
    assert_ne!(status["status"]["state"], "finished", "{status}");
}

#[test]
fn the_tenants_policy_refuses_a_hostile_pipeline_naming_the_field() {
    let server = Server::new();
    let cases = [
        (
            "[sources.l]\ntype = \"bundled\"\n\n[[outputs]]\ntype = \"command\"\ncommand = [\"sh\", \"-c\", \"id\"]\n",
            &["evil.toml", "outputs[0].type", "host programs"][..],
        ),
        (
            "[job]\ntenant = \"b\"\n\n[sources.l]\ntype = \"bundled\"\n\n[[outputs]]\ntype = \"print\"\n",
            &["evil.toml", "job.tenant", "tenant 'a'"][..],
        ),
        (
            "[sources.l]\ntype = \"directory\"\npath = \"../../b/data\"\n\n[[outputs]]\ntype = \"print\"\n",
            &["sources.l.path", "`..`"][..],
        ),
        (
            "[job.limits]\ncall-time = \"1h\"\n\n[sources.l]\ntype = \"bundled\"\n\n[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n\n[[outputs]]\ntype = \"print\"\n",
            &["job.limits", "call-time", "cap of 5s"][..],
        ),
    ];
    for (text, expected) in cases {
        let path = server.pipeline("evil", text);
        let output = server.client(Some("a"), &["submit", path.to_str().unwrap()]);
        let error = stderr(&output);
        assert!(!output.status.success(), "{text}");
        assert!(error.contains("HTTP 400"), "{error}");
        for part in expected {
            assert!(error.contains(part), "no '{part}' in {error}");
        }
    }
    assert_eq!(server.jobs("a"), "", "no refused job is recorded");
    // A plugin that does not load is the submission's error too.
    let path = server.pipeline(
        "broken",
        "[sources.l]\ntype = \"bundled\"\n\n[[steps]]\nop = \"map\"\nplugin = \"missing.wasm\"\n\n[[outputs]]\ntype = \"print\"\n",
    );
    let output = server.client(Some("a"), &["submit", path.to_str().unwrap()]);
    assert!(
        stderr(&output).contains("missing.wasm"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_killed_server_resumes_its_jobs_and_the_outputs_are_exact() {
    let mut server = Server::new();
    let input = server.root("a").join("in");
    std::fs::create_dir_all(&input).unwrap();
    let path = server.pipeline("wc", WORD_COUNT);
    let id = submitted_id(&server.client(Some("a"), &["submit", path.to_str().unwrap()]));
    assert_eq!(id, "a.wc");
    server.wait_for_a_batch("a", "wc");
    let out = server.root("a").join("out");
    let mut rng = Rng(0x5e7e);
    let mut all = String::new();
    for round in 0..3 {
        for i in 0..4 {
            let text = lines(&mut rng, 150);
            all.push_str(&text);
            drop_file(&input, &format!("r{round}-{i}.txt"), &text);
            std::thread::sleep(Duration::from_millis(150));
        }
        // Mid-stream: this round's batches have begun to come out.
        let written = text_outputs(&out, "counts").len();
        assert!(
            eventually(Duration::from_secs(30), || text_outputs(&out, "counts")
                .len()
                > written),
            "{}",
            server.log()
        );
        // Killed mid-stream, then started again: the job resumes from its checkpoint and
        // batch log by itself.
        server.kill();
        server.start();
        assert!(
            eventually(Duration::from_secs(30), || server
                .jobs("a")
                .contains("a.wc wc running")),
            "{}",
            server.log()
        );
    }
    let expected = reference_counts(&all, false, false);
    let exact = eventually(Duration::from_secs(60), || {
        total(&text_outputs(&out, "counts")) == expected
    });
    if !exact {
        let batches = text_outputs(&out, "counts");
        let got = total(&batches);
        let differ: Vec<_> = expected
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(*v))
            .take(5)
            .map(|(k, v)| (k.clone(), *v, got.get(k).copied()))
            .collect();
        let per_batch: Vec<_> = batches
            .iter()
            .map(|(t, c)| (t, c.values().sum::<i64>()))
            .collect();
        let jobs_dir = server.dir.path().join("data/tenants/a/jobs/wc/job.log");
        panic!(
            "not exact: (word, expected, got) {differ:?}; records per batch {per_batch:?}; words \
             expected {}\n{}",
            expected.values().sum::<i64>(),
            std::fs::read_to_string(jobs_dir).unwrap_or_default()
        );
    }
    assert!(
        server.log().contains("job a.wc: resuming"),
        "{}",
        server.log()
    );
    // A second server on the same data directory is refused.
    let second = spate()
        .args(["serve", "--config"])
        .arg(server.dir.path().join("server.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let second = wait(second, Duration::from_secs(30));
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("another spate serve uses"),
        "{}",
        stderr(&second)
    );
}

#[test]
fn a_tenant_over_its_quota_has_its_jobs_stopped_saying_why() {
    let mut server = Server::new();
    let input = server.root("q").join("in");
    std::fs::create_dir_all(&input).unwrap();
    let path = server.pipeline("wc", WORD_COUNT);
    let id = submitted_id(&server.client(Some("q"), &["submit", path.to_str().unwrap()]));
    assert_eq!(id, "q.wc");
    let mut rng = Rng(3);
    let stopped = |jobs: &str| jobs.contains("q.wc wc stopped (quota exceeded: calls ");
    for i in 0..60 {
        if stopped(&server.jobs("q")) {
            break;
        }
        drop_file(&input, &format!("f{i}.txt"), &lines(&mut rng, 20));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        eventually(Duration::from_secs(30), || stopped(&server.jobs("q"))),
        "{}\n{}",
        server.jobs("q"),
        server.log()
    );
    // The usage says so, for q alone; the admin sees every tenant.
    let (status, body) = server.get("q", "/api/v1/usage");
    assert_eq!(status, 200, "{body}");
    let usage: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(usage.as_array().unwrap().len(), 1, "{usage}");
    assert_eq!(usage[0]["tenant"], "q");
    assert!(usage[0]["calls"].as_u64().unwrap() > 20, "{usage}");
    assert!(usage[0]["output_bytes"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(usage[0]["running_jobs"], 0, "{usage}");
    let (_, all) = server.get("ops", "/api/v1/usage");
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all.as_array().unwrap().len(), TOKENS.len(), "{all}");
    let (_, metrics) = server.get("q", "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("spate_tenant_wasm_calls_total{tenant=\"q\"} ")),
        "{metrics}"
    );
    assert!(!metrics.contains("tenant=\"a\""), "{metrics}");
    // No new job runs while the tenant is over its quota.
    let refused = server.client(Some("q"), &["submit", path.to_str().unwrap()]);
    let error = stderr(&refused);
    assert!(!refused.status.success());
    assert!(
        error.contains("over its quota") && error.contains("HTTP 403"),
        "{error}"
    );

    // The usage is kept across a kill of the server: q stays over its quota.
    let kept = server.dir.path().join("data/tenants/q/usage.json");
    let kept_calls = || -> u64 {
        let text = std::fs::read_to_string(&kept).unwrap_or_default();
        let usage: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        usage["calls"].as_u64().unwrap_or(0)
    };
    assert!(eventually(Duration::from_secs(10), || kept_calls() > 20));
    server.kill();
    server.start();
    let usage = server.client(Some("q"), &["usage"]);
    let usage: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
    assert!(usage[0]["calls"].as_u64().unwrap() > 20, "{usage}");
    let refused = server.client(Some("q"), &["submit", path.to_str().unwrap()]);
    assert!(
        stderr(&refused).contains("over its quota"),
        "{}",
        stderr(&refused)
    );
    // Only an admin resets it; then q runs again.
    let not_admin = server.client(Some("q"), &["usage", "--reset", "q"]);
    assert!(
        stderr(&not_admin).contains("HTTP 403"),
        "{}",
        stderr(&not_admin)
    );
    let reset = server.client(Some("ops"), &["usage", "--reset", "q"]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let reset: serde_json::Value = serde_json::from_slice(&reset.stdout).unwrap();
    assert_eq!(reset[0]["calls"], 0, "{reset}");
    submitted_id(&server.client(Some("q"), &["submit", path.to_str().unwrap()]));
}

#[test]
fn a_tenants_running_jobs_memory_and_batches_are_held_to_its_quota() {
    let server = Server::new();
    let input = server.root("p").join("in");
    std::fs::create_dir_all(&input).unwrap();
    let path = server.pipeline("wc", WORD_COUNT);
    // Two submissions of one name at once: one runs, the other is refused.
    let (first, second) = std::thread::scope(|scope| {
        let submit = || server.client(Some("p"), &["submit", path.to_str().unwrap()]);
        let first = scope.spawn(submit);
        let second = scope.spawn(submit);
        (first.join().unwrap(), second.join().unwrap())
    });
    let outcomes = [&first, &second].map(|o| o.status.success());
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "{} / {}",
        stderr(&first),
        stderr(&second)
    );
    let loser = if outcomes[0] { &second } else { &first };
    assert!(stderr(loser).contains("HTTP 409"), "{}", stderr(loser));
    server.wait_for_a_batch("p", "wc");
    // A second job beside it is over running-jobs = 1.
    let other = server.pipeline("other", WORD_COUNT);
    let refused = server.client(Some("p"), &["submit", other.to_str().unwrap()]);
    assert!(
        stderr(&refused).contains("running-jobs = 1") && stderr(&refused).contains("HTTP 403"),
        "{}",
        stderr(&refused)
    );
    // A batch of more than 3 output records stops the job, naming the batch.
    drop_file(&input, "f.txt", "one two three four five\n");
    let stopped = |jobs: &str| {
        jobs.contains("p.wc wc stopped (quota exceeded: batch ")
            && jobs.contains("output-records 5 of 3 per batch")
    };
    assert!(
        eventually(Duration::from_secs(30), || stopped(&server.jobs("p"))),
        "{}\n{}",
        server.jobs("p"),
        server.log()
    );
    // Tenant m's 1 MiB of memory holds no job.
    std::fs::create_dir_all(server.root("m").join("in")).unwrap();
    let refused = server.client(Some("m"), &["submit", path.to_str().unwrap()]);
    let error = stderr(&refused);
    assert!(
        error.contains("HTTP 403") && error.contains("more than its quota's 1 MiB"),
        "{error}"
    );
}

/// A word count over the last 5 minutes of the directory `in`, shown on a dashboard named
/// `words`.
const WINDOWED_WORD_COUNT: &str = r#"
[job]
batch-interval = "500ms"
block-interval = "100ms"
checkpoint-dir = "ck"

[sources.lines]
type = "directory"
path = "in"
poll-interval = "100ms"

[[steps]]
op = "flat-map"
plugin = "tokenize"

[[steps]]
op = "reduce-by-key-and-window"
plugin = "sum"
length = "300s"
slide = "500ms"

[[outputs]]
type = "dashboard"
name = "words"
"#;

#[test]
fn each_tenant_browses_its_own_pages_only() {
    let python = installed("install-ui-test-tools.sh");
    let server = Server::new();
    // Both tenants run a job `wc` with a dashboard `words`: names are per tenant.
    let path = server.pipeline("wc", WINDOWED_WORD_COUNT);
    for (tenant, text) in [("a", "alpha alpha beta\n"), ("b", "gamma delta\n")] {
        let input = server.root(tenant).join("in");
        std::fs::create_dir_all(&input).unwrap();
        let id = submitted_id(&server.client(Some(tenant), &["submit", path.to_str().unwrap()]));
        assert_eq!(id, format!("{tenant}.wc"));
        server.wait_for_a_batch(tenant, "wc");
        drop_file(&input, "f.txt", text);
    }
    let keys = |tenant: &str| -> Vec<String> {
        let (_, body) = server.get(
            tenant,
            &format!("/tenants/{tenant}/api/v1/dashboards/words"),
        );
        let view: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut keys: Vec<String> = view["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| r["key"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    };
    assert!(
        eventually(Duration::from_secs(60), || keys("a") == ["alpha", "beta"]
            && keys("b") == ["delta", "gamma"]),
        "{:?} {:?}\n{}",
        keys("a"),
        keys("b"),
        server.log()
    );

    // Over HTTP: no token 401, another tenant's 403, the admin's 200; each tenant lists only
    // its own dashboards and jobs.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let anonymous = agent
        .get(&format!("{}/tenants/a/api/v1/jobs", server.url))
        .call()
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let (status, body) = server.get("b", "/tenants/a/api/v1/jobs");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("may not see"), "{body}");
    let (status, body) = server.get("ops", "/tenants/a/api/v1/jobs");
    assert_eq!(status, 200, "{body}");
    let (_, boards) = server.get("a", "/tenants/a/api/v1/dashboards");
    let boards: serde_json::Value = serde_json::from_str(&boards).unwrap();
    assert_eq!(boards.as_array().unwrap().len(), 1, "{boards}");
    let (_, metrics) = server.get("a", "/tenants/a/metrics");
    assert!(metrics.contains("job=\"wc\""), "{metrics}");

    // In a browser: sign in, see a's pages, not b's; sign out.
    let browsed = std::process::Command::new(&python)
        .arg(repo().join("tests/ui/serve_browse.py"))
        .args([&server.url, "a", "token-a", "b", "wc", "words"])
        .output()
        .unwrap();
    assert!(
        browsed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&browsed.stdout),
        String::from_utf8_lossy(&browsed.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&browsed.stdout).unwrap();
    assert_eq!(seen["first_page"], "/login", "{seen}");
    assert!(
        seen["wrong_token"].as_str().unwrap().contains("not valid"),
        "{seen}"
    );
    assert_eq!(seen["signed_in_at"], "/tenants/a", "{seen}");
    let jobs = seen["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{seen}");
    assert_eq!(jobs[0][0], "wc");
    assert_eq!(jobs[0][1], "a");
    assert_eq!(
        seen["dashboards"],
        serde_json::json!(["/tenants/a/dashboards/words"])
    );
    // The tenant's usage against its quota (a has none): calls made, one job running.
    let usage: BTreeMap<String, Vec<String>> = seen["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let cells: Vec<String> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            (cells[0].clone(), cells[1..].to_vec())
        })
        .collect();
    assert!(usage["calls"][0].parse::<u64>().unwrap() > 0, "{seen}");
    assert_eq!(usage["running-jobs"], ["1", "none", "none"], "{seen}");
    assert_eq!(usage["output-bytes"][1], "none", "{seen}");
    assert!(
        seen["batch_links"][0]
            .as_str()
            .unwrap()
            .starts_with("/tenants/a/jobs/wc/batches/"),
        "{seen}"
    );
    let mut shown: Vec<&str> = seen["dashboard_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    shown.sort();
    assert_eq!(shown, ["alpha", "beta"], "{seen}");
    assert!(
        seen["other_tenant"]
            .as_str()
            .unwrap()
            .contains("tenant 'a' may not see tenant 'b'"),
        "{seen}"
    );
    assert_eq!(seen["after_sign_out"], "/login", "{seen}");
}

/// A job that loops in every call until its 1 s call-time limit, skipping the partition, on
/// the files of the directory `in`.
const BURNER: &str = r#"
[job]
batch-interval = "500ms"
block-interval = "100ms"
workers = 2
task-retries = 0
on-task-failure = "skip"
dead-letter-dir = "dead"

[job.limits]
call-time = "1s"

[sources.lines]
type = "directory"
path = "in"
poll-interval = "100ms"

[[steps]]
op = "map-partitions"
plugin = "hostile.wasm"
params = { attack = "loop" }

[[outputs]]
type = "print"
num = 1
"#;

/// Signs in to `server`'s web UI with `token` through `agent`: the session cookie it sets, with
/// its attributes.
fn sign_in(agent: &ureq::Agent, server: &Server, token: &str) -> String {
    let signed_in = agent
        .post(&format!("{}/login", server.url))
        .send_form([("token", token)])
        .unwrap();
    signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned()
}

#[test]
fn a_signed_in_browser_stays_signed_in_across_a_kill_of_the_server() {
    let mut server = Server::new();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let cookie = sign_in(&agent, &server, "token-a");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let jobs_page = |server: &Server, cookie: &str| {
        agent
            .get(&format!("{}/tenants/a/api/v1/jobs", server.url))
            .header("Cookie", cookie)
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(jobs_page(&server, &cookie), 200);
    let kept = std::fs::read_to_string(server.dir.path().join("data/sessions.json")).unwrap();
    let id = cookie.split_once('=').unwrap().1;
    assert!(
        !kept.contains(id),
        "the session id itself is on disk: {kept}"
    );
    server.kill();
    server.start();
    assert_eq!(jobs_page(&server, &cookie), 200, "{}", server.log());
    // Signed out, it stays signed out after the next restart.
    let signed_out = agent
        .post(&format!("{}/logout", server.url))
        .header("Cookie", &cookie)
        .send_empty()
        .unwrap();
    assert_eq!(signed_out.status().as_u16(), 303);
    assert_eq!(jobs_page(&server, &cookie), 401);
    server.kill();
    server.start();
    assert_eq!(jobs_page(&server, &cookie), 401);
}

/// A new key and a certificate for it, named `cn`, for 127.0.0.1, valid for a day: a
/// certificate authority's own when `issuer` is none, else signed by `issuer` (certificate and
/// key). Both written to `dir` as `<file>.pem` and `<file>-key.pem` (PKCS#8).
fn certificate(
    dir: &Path,
    file: &str,
    cn: &str,
    issuer: Option<(&Path, &Path)>,
) -> (PathBuf, PathBuf) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509, X509NameBuilder};
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let issuer = issuer.map(|(cert, key)| {
        (
            X509::from_pem(&std::fs::read(cert).unwrap()).unwrap(),
            PKey::private_key_from_pem(&std::fs::read(key).unwrap()).unwrap(),
        )
    });
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand_serial())
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    cert.set_serial_number(&serial).unwrap();
    cert.set_subject_name(&name).unwrap();
    match &issuer {
        Some((issuer, _)) => cert.set_issuer_name(issuer.subject_name()).unwrap(),
        None => cert.set_issuer_name(&name).unwrap(),
    }
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    let constraints = match issuer {
        Some(_) => BasicConstraints::new().critical().build(),
        None => BasicConstraints::new().critical().ca().build(),
    };
    cert.append_extension(constraints.unwrap()).unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&cert.x509v3_context(issuer.as_ref().map(|(c, _)| c.as_ref()), None))
        .unwrap();
    cert.append_extension(san).unwrap();
    let signer = issuer.as_ref().map_or(&key, |(_, k)| k);
    cert.sign(signer, MessageDigest::sha256()).unwrap();
    let cert_path = dir.join(format!("{file}.pem"));
    let key_path = dir.join(format!("{file}-key.pem"));
    std::fs::write(&cert_path, cert.build().to_pem().unwrap()).unwrap();
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert_path, key_path)
}

/// A certificate serial number unlikely to repeat (a client must not see two certificates of
/// one issuer with the same serial).
fn rand_serial() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos | 1
}

/// A self-signed server certificate for 127.0.0.1 and its key, as `cert.pem` and `key.pem`.
fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = certificate(dir, "cert", "spate test server", None);
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::rename(key, &key_path).unwrap();
    assert_eq!(cert, cert_path);
    (cert_path, key_path)
}

/// Certificate and key files.
type Pair = (PathBuf, PathBuf);

/// A server speaking mutual TLS (its certificate self-signed, the clients' authority
/// `clients-ca`), with client certificates signed by that authority.
struct MutualTls {
    server: Server,
    /// The server's directory, where the certificates are.
    dir: PathBuf,
    /// The server's certificate, which the clients trust.
    server_cert: PathBuf,
    /// The clients' authority: certificate and key.
    ca: Pair,
    /// The client certificates and keys, in the order named.
    clients: Vec<Pair>,
}

impl MutualTls {
    /// Starts it with client certificates for the common names `clients`; `more` gives
    /// further `[server]` lines and tenants' lines, knowing the directory, the authority and
    /// the client certificates.
    fn start(
        clients: &[&str],
        more: impl FnOnce(&Path, &Pair, &[Pair]) -> (String, Vec<(&'static str, String)>),
    ) -> MutualTls {
        let mut files = None;
        let server = Server::with_tenant_lines(|dir| {
            let (cert, key) = self_signed_certificate(dir);
            let ca = certificate(dir, "clients-ca", "spate test clients", None);
            let signed: Vec<Pair> = (clients.iter().enumerate())
                .map(|(i, cn)| certificate(dir, &format!("client-{i}"), cn, Some((&ca.0, &ca.1))))
                .collect();
            let (more_server, tenants) = more(dir, &ca, &signed);
            let config = format!(
                "tls-cert = \"{}\"\ntls-key = \"{}\"\ntls-client-ca = \"clients-ca.pem\"\n\
                 {more_server}",
                cert.display(),
                key.display()
            );
            files = Some((dir.to_owned(), cert, ca, signed));
            (config, tenants)
        });
        let (dir, server_cert, ca, clients) = files.unwrap();
        MutualTls {
            server,
            dir,
            server_cert,
            ca,
            clients,
        }
    }

    /// `spate jobs` as `tenant` trusting the server's certificate, showing the client
    /// certificate `shown` (with its key) if given, with the further arguments `more`.
    fn jobs(&self, tenant: &str, shown: Option<&Pair>, more: &[&str]) -> Output {
        let mut args = vec!["jobs", "--ca-cert", self.server_cert.to_str().unwrap()];
        if let Some((cert, key)) = shown {
            let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
            args.extend(["--client-cert", cert, "--client-key", key]);
        }
        args.extend(more);
        self.server.client(Some(tenant), &args)
    }

    /// An HTTP agent trusting the server's certificate and showing the client certificate
    /// `shown`, as a browser holding it would; it follows no redirects.
    fn agent(&self, shown: &Pair) -> ureq::Agent {
        use ureq::tls::{ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};
        let certificates = |path: &Path| {
            let pem = std::fs::read(path).unwrap();
            let certificates: Vec<_> = (ureq::tls::parse_pem(&pem))
                .filter_map(|item| match item.unwrap() {
                    PemItem::Certificate(cert) => Some(cert.to_owned()),
                    _ => None,
                })
                .collect();
            certificates
        };
        let key = PrivateKey::from_pem(&std::fs::read(&shown.1).unwrap())
            .unwrap()
            .to_owned();
        let tls = TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(RootCerts::new_with_certs(&certificates(&self.server_cert)))
            .client_cert(Some(ClientCert::new_with_certs(
                &certificates(&shown.0),
                key,
            )))
            .build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into()
    }
}

#[test]
fn with_a_client_ca_only_clients_showing_a_certificate_it_signed_are_answered() {
    let tls = MutualTls::start(&["tenant a"], |_, _, _| (String::new(), Vec::new()));
    let client = &tls.clients[0];
    let stranger = certificate(&tls.dir, "stranger", "tenant a", None);
    // A certificate the clients' authority signed: answered.
    let listed = tls.jobs("a", Some(client), &[]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    // The same from the environment.
    let mut command = spate();
    let from_env = command
        .args(["jobs", "--server", &tls.server.url, "--ca-cert"])
        .arg(&tls.server_cert)
        .env("SPATE_TOKEN", "token-a")
        .env("SPATE_CLIENT_CERT", &client.0)
        .env("SPATE_CLIENT_KEY", &client.1)
        .output()
        .unwrap();
    assert!(from_env.status.success(), "{}", stderr(&from_env));
    // No certificate: refused, the client saying what is missing.
    let bare = tls.jobs("a", None, &[]);
    let said = stderr(&bare);
    assert!(!bare.status.success(), "{said}");
    assert!(said.contains("--client-cert"), "{said}");
    // A certificate of another authority: refused.
    let strange = tls.jobs("a", Some(&stranger), &[]);
    assert!(!strange.status.success(), "{}", stderr(&strange));
    // The certificate opens the connection, not the API: a token is still needed.
    let tokenless = tls.jobs("nobody", Some(client), &[]);
    let said = stderr(&tokenless);
    assert!(!tokenless.status.success(), "{said}");
    assert!(said.contains("HTTP 401"), "{said}");
    // A certificate without its key is a mistake the client names.
    let half = tls.jobs("a", None, &["--client-cert", client.0.to_str().unwrap()]);
    let said = stderr(&half);
    assert!(!half.status.success(), "{said}");
    assert!(
        said.contains("--client-cert and --client-key go together"),
        "{said}"
    );
}

/// Writes `clients-crl.pem` in `dir`: the revocation list of the authority `ca` (certificate
/// and key files) revoking the certificates in `revoked`.
fn revocation_list(dir: &Path, (ca, ca_key): (&Path, &Path), revoked: &[&Path]) -> PathBuf {
    use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::x509::{X509, X509CrlBuilder, X509Extension, X509Revoked};
    let read = |path: &Path| std::fs::read(path).unwrap();
    let ca = X509::from_pem(&read(ca)).unwrap();
    let mut list = X509CrlBuilder::new().unwrap();
    list.set_issuer_name(ca.subject_name()).unwrap();
    list.set_last_update(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    list.set_next_update(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    // DER by hand: the crate builds no extension a list needs, nor a revoked entry.
    let extension = |oid: &str, der: &[u8]| {
        let oid = Asn1Object::from_str(oid).unwrap();
        let der = Asn1OctetString::new_from_bytes(der).unwrap();
        X509Extension::new_from_der(&oid, false, &der).unwrap()
    };
    // Authority key identifier (any key id: the test authority has no subject key id) and
    // CRL number 1.
    let mut key_id = vec![0x30, 22, 0x80, 20];
    key_id.extend([7u8; 20]);
    list.append_extension(extension("2.5.29.35", &key_id))
        .unwrap();
    list.append_extension(extension("2.5.29.20", &[0x02, 0x01, 0x01]))
        .unwrap();
    for cert in revoked {
        let cert = X509::from_pem(&read(cert)).unwrap();
        let mut serial = cert.serial_number().to_bn().unwrap().to_vec();
        if serial[0] & 0x80 != 0 {
            serial.insert(0, 0);
        }
        // SEQUENCE { INTEGER serial, UTCTime 2025-01-01 }
        let mut entry = vec![0x02, serial.len() as u8];
        entry.extend(&serial);
        entry.extend([0x17, 13]);
        entry.extend(b"250101000000Z");
        let mut der = vec![0x30, entry.len() as u8];
        der.extend(entry);
        list.add_revoked(X509Revoked::from_der(&der).unwrap())
            .unwrap();
    }
    let key = PKey::private_key_from_pem(&read(ca_key)).unwrap();
    list.sign(&key, MessageDigest::sha256()).unwrap();
    let path = dir.join("clients-crl.pem");
    // Written aside and renamed over: a server reading it sees the old list or the new one.
    let staged = dir.join("clients-crl.pem.new");
    std::fs::write(&staged, list.build().unwrap().to_pem().unwrap()).unwrap();
    std::fs::rename(staged, &path).unwrap();
    path
}

#[test]
fn a_client_certificate_its_authority_revoked_is_refused() {
    let tls = MutualTls::start(&["kept", "revoked"], |dir, ca, clients| {
        revocation_list(dir, (&ca.0, &ca.1), &[&clients[1].0]);
        let crl = "tls-client-crl = \"clients-crl.pem\"\n".to_owned();
        (crl, Vec::new())
    });
    let (kept, revoked) = (&tls.clients[0], &tls.clients[1]);
    let listed = tls.jobs("a", Some(kept), &[]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let refused = tls.jobs("a", Some(revoked), &[]);
    assert!(!refused.status.success(), "{}", stderr(&refused));
    // A new list, revoking the other certificate too, applies without a restart.
    std::thread::sleep(Duration::from_millis(1100));
    revocation_list(&tls.dir, (&tls.ca.0, &tls.ca.1), &[&revoked.0, &kept.0]);
    assert!(
        eventually(Duration::from_secs(10), || !tls
            .jobs("a", Some(kept), &[])
            .status
            .success()),
        "a certificate revoked since is still answered"
    );
}

/// The SHA-256 fingerprint of the certificate in `cert` as `openssl x509 -fingerprint -sha256`
/// prints it (`AB:CD:...`), and as the server names it (lowercase hex).
fn fingerprint(cert: &Path) -> (String, String) {
    let cert = openssl::x509::X509::from_pem(&std::fs::read(cert).unwrap()).unwrap();
    let digest = cert.digest(openssl::hash::MessageDigest::sha256()).unwrap();
    let bytes: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    (bytes.join(":"), bytes.concat().to_lowercase())
}

#[test]
fn a_tenant_bound_to_a_client_certificate_is_taken_only_over_it() {
    let tls = MutualTls::start(&["tenant a", "tenant b"], |_, _, clients| {
        let own = fingerprint(&clients[0].0).0;
        (
            String::new(),
            vec![("a", format!("client-cert-sha256 = [\"{own}\"]\n"))],
        )
    });
    let (own, other) = (&tls.clients[0], &tls.clients[1]);
    // Tenant a over its own certificate: answered.
    let listed = tls.jobs("a", Some(own), &[]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    // Over another certificate of the same authority: its token is refused, naming why.
    let elsewhere = tls.jobs("a", Some(other), &[]);
    let said = stderr(&elsewhere);
    assert!(!elsewhere.status.success(), "{said}");
    assert!(
        said.contains("HTTP 403")
            && said.contains("client-cert-sha256")
            && said.contains(&fingerprint(&other.0).1),
        "{said}"
    );
    // A tenant not bound to certificates is taken over any the authority signed.
    for cert in [own, other] {
        let listed = tls.jobs("b", Some(cert), &[]);
        assert!(listed.status.success(), "{}", stderr(&listed));
    }
    // The web UI: signing in over another certificate is refused, naming why; a session
    // signed in over its own certificate is refused over another.
    let (own, other) = (tls.agent(own), tls.agent(other));
    let mut refused = (other.post(&format!("{}/login", tls.server.url)))
        .send_form([("token", "token-a")])
        .unwrap();
    let page = refused.body_mut().read_to_string().unwrap();
    assert_eq!(refused.status().as_u16(), 403, "{page}");
    assert!(page.contains("client-cert-sha256"), "{page}");
    let cookie = sign_in(&own, &tls.server, "token-a");
    let cookie = cookie.split(';').next().unwrap();
    let jobs_page = |agent: &ureq::Agent| {
        (agent.get(&format!("{}/tenants/a/api/v1/jobs", tls.server.url)))
            .header("Cookie", cookie)
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(jobs_page(&own), 200);
    assert_eq!(jobs_page(&other), 403);
}

#[test]
fn the_api_speaks_https_with_the_configured_certificate() {
    let mut ca = PathBuf::new();
    let server = Server::with(|dir| {
        let (cert, key) = self_signed_certificate(dir);
        ca = cert.clone();
        format!(
            "tls-cert = \"{}\"\ntls-key = \"{}\"\n",
            cert.display(),
            key.display()
        )
    });
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let ca = ca.to_str().unwrap();
    let first_certificate = std::fs::read(ca).unwrap();
    // Trusting the server's certificate: the API answers over HTTPS.
    let listed = server.client(Some("a"), &["jobs", "--ca-cert", ca]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    // Trusting only the system's authorities: the certificate is refused, saying so.
    let untrusted = server.client(Some("a"), &["jobs"]);
    let said = stderr(&untrusted);
    assert!(!untrusted.status.success(), "{said}");
    assert!(said.contains("certificate"), "{said}");
    // Plain HTTP on the HTTPS port gets no answer; the client says what may be wrong.
    let plain = server.url.replacen("https://", "http://", 1);
    let spoken = spate()
        .args(["jobs", "--server", &plain])
        .env("SPATE_TOKEN", "token-a")
        .output()
        .unwrap();
    let said = stderr(&spoken);
    assert!(!spoken.status.success(), "{said}");
    assert!(said.contains("does the server speak HTTPS"), "{said}");
    // The session cookie is for HTTPS only.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::NativeTls)
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[
                    ureq::tls::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap(),
                ]))
                .build(),
        )
        .build()
        .into();
    let cookie = sign_in(&agent, &server, "token-a");
    assert!(cookie.contains("; Secure"), "{cookie}");
    // A renewed certificate (and key) put in place is served without a restart: clients
    // trusting only the new one get answers, those trusting only the old one are refused.
    let renewed = Path::new(ca).parent().unwrap().join("renewed");
    std::fs::create_dir_all(&renewed).unwrap();
    let (new_cert, new_key) = self_signed_certificate(&renewed);
    std::fs::rename(&new_key, Path::new(ca).with_file_name("key.pem")).unwrap();
    std::fs::rename(&new_cert, ca).unwrap();
    let new_ca = renewed.join("ca.pem");
    std::fs::copy(ca, &new_ca).unwrap();
    let old_ca = Path::new(ca).with_file_name("old-ca.pem");
    std::fs::write(&old_ca, &first_certificate).unwrap();
    let new_ca = new_ca.to_str().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || server
            .client(Some("a"), &["jobs", "--ca-cert", new_ca])
            .status
            .success()),
        "the renewed certificate is not served"
    );
    let stale = server.client(Some("a"), &["jobs", "--ca-cert", old_ca.to_str().unwrap()]);
    assert!(!stale.status.success(), "{}", stderr(&stale));
}

#[test]
fn a_burner_tenant_leaves_a_good_tenants_outputs_exact() {
    let server = Server::new();
    let (good, burning) = (server.root("a").join("in"), server.root("b").join("in"));
    std::fs::create_dir_all(&good).unwrap();
    std::fs::create_dir_all(&burning).unwrap();
    let burner = server.pipeline("burner", BURNER);
    let hostile = test_plugin("hostile");
    let submitted = server.client(
        Some("b"),
        &[
            "submit",
            burner.to_str().unwrap(),
            "--plugin",
            hostile.to_str().unwrap(),
        ],
    );
    assert_eq!(submitted_id(&submitted), "b.burner");
    let path = server.pipeline("wc", WORD_COUNT);
    assert_eq!(
        submitted_id(&server.client(Some("a"), &["submit", path.to_str().unwrap()])),
        "a.wc"
    );
    server.wait_for_a_batch("a", "wc");
    server.wait_for_a_batch("b", "burner");
    // Files keep coming to both: b's keep its calls looping.
    let mut rng = Rng(5);
    let mut text = String::new();
    for i in 0..20 {
        let lines = lines(&mut rng, 50);
        drop_file(&good, &format!("f{i}.txt"), &lines);
        drop_file(&burning, &format!("f{i}.txt"), &lines);
        text.push_str(&lines);
        std::thread::sleep(Duration::from_millis(300));
    }
    let expected = reference_counts(&text, false, false);
    let out = server.root("a").join("out");
    assert!(
        eventually(Duration::from_secs(90), || total(&text_outputs(
            &out, "counts"
        )) == expected),
        "{}",
        server.log()
    );
    // The burner burnt: its calls hit their limit, and it runs on.
    let log =
        String::from_utf8_lossy(&server.client(Some("b"), &["logs", "burner"]).stdout).into_owned();
    assert!(log.contains("call-time"), "{log}");
    assert!(server.jobs("b").contains("b.burner burner running"));
}
