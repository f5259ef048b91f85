//! A tenant's pipeline file under a platform policy (`spate run --policy`, `spate check
//! --policy`): a well-behaved pipeline runs inside its data root, and each hostile one (a
//! command output, `..` and absolute paths, a symlink out of the root, limits off or over the
//! cap, another tenant's paths, a forged tenant, endpoints, secrets and client settings the
//! policy does not allow) is refused before anything runs, with an error naming the field,
//! and nothing is created outside the root.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

/// Two tenants' data roots, a directory outside both, and tenant a's policy.
struct Platform {
    dir: tempfile::TempDir,
    policy: PathBuf,
}

impl Platform {
    fn new() -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for sub in ["tenants/a/in", "tenants/b/in", "outside"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        std::fs::write(base.join("tenants/a/in/words.txt"), "to be or not to be\n").unwrap();
        std::fs::write(base.join("tenants/a/kafka.pw"), "secret\n").unwrap();
        std::os::unix::fs::symlink(base.join("outside"), base.join("tenants/a/link")).unwrap();
        let policy = base.join("policy-a.toml");
        std::fs::write(
            &policy,
            "data-root = \"tenants/a\"\ntenant = \"a\"\nendpoints = [\"127.0.0.1:*\"]\n\
             max-workers = 2\n\n[limits]\nmemory = \"64 MiB\"\ncall-time = \"5s\"\n",
        )
        .unwrap();
        Platform { dir, policy }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// Every path under the temporary directory except tenant a's root.
    fn outside_root(&self) -> BTreeSet<PathBuf> {
        fn walk(dir: &Path, skip: &Path, found: &mut BTreeSet<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path == skip {
                    continue;
                }
                found.insert(path.clone());
                if path.is_dir() && !path.is_symlink() {
                    walk(&path, skip, found);
                }
            }
        }
        let mut found = BTreeSet::new();
        walk(self.dir.path(), &self.path("tenants/a"), &mut found);
        found
    }

    /// Writes tenant a's pipeline (outside the root, as an operator's CLI would keep it).
    fn pipeline(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(&format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }
}

const SOURCE: &str = "[sources.lines]\ntype = \"directory\"\npath = \"in\"\n";
const STEPS: &str = "[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n\n[[steps]]\nop = \"reduce-by-key\"\nplugin = \"sum\"\n";
const OUTPUT: &str = "[[outputs]]\ntype = \"text-files\"\nprefix = \"out/counts\"\n";

#[test]
fn a_pipeline_under_a_policy_runs_inside_its_data_root() {
    let platform = Platform::new();
    let path = platform.pipeline(
        "good",
        &format!(
            "[job]\ntrigger = \"available-now\"\ncheckpoint-dir = \"ck\"\n\n{SOURCE}\n{STEPS}\n{OUTPUT}"
        ),
    );
    let before = platform.outside_root();
    let policy = platform.policy.to_str().unwrap();
    let output = run(
        &["run", "--no-ui", "--policy", policy, path.to_str().unwrap()],
        Duration::from_secs(120),
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("starting for tenant 'a'"), "{log}");
    assert!(
        log.contains("2 workers") || log.contains("1 workers"),
        "{log}"
    );
    let root = platform.path("tenants/a");
    let written: Vec<String> = std::fs::read_dir(root.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        written.iter().any(|name| name.starts_with("counts-")),
        "{written:?}"
    );
    assert!(root.join("ck").is_dir(), "checkpoints go inside the root");
    assert_eq!(
        platform.outside_root(),
        before,
        "nothing created outside the root"
    );
}

#[test]
fn a_job_whose_state_outgrows_its_cap_fails_naming_the_step() {
    let platform = Platform::new();
    // 3000 distinct words: about 50 KiB of keys and sums in update-state-by-key's state.
    let words: Vec<String> = (0..3000).map(|i| format!("word{i:05}")).collect();
    std::fs::write(
        platform.path("tenants/a/in/words.txt"),
        words.join(" ") + "\n",
    )
    .unwrap();
    let job = |cap: &str| {
        platform.pipeline(
            "stateful",
            &format!(
                "[job]\ntrigger = \"available-now\"\nmax-state-bytes = \"{cap}\"\n\n{SOURCE}\n{STEPS}\n\
                 [[steps]]\nop = \"update-state-by-key\"\nplugin = \"running-sum\"\n\n{OUTPUT}"
            ),
        )
    };
    let policy = platform.policy.to_str().unwrap();
    let run_with = |cap: &str| {
        let path = job(cap);
        run(
            &["run", "--no-ui", "--policy", policy, path.to_str().unwrap()],
            Duration::from_secs(120),
        )
    };
    // `spate check` says the cap.
    let path = job("16 KiB");
    let checked = run(
        &["check", "--policy", policy, path.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{}", stderr(&checked));
    assert!(
        said.contains("state: at most 16 KiB of host memory"),
        "{said}"
    );
    let failed = run_with("16 KiB");
    let log = stderr(&failed);
    assert!(!failed.status.success(), "{log}");
    assert!(
        log.contains("over job.max-state-bytes (16 KiB)")
            && log.contains("steps[2] update-state-by-key"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // The batch that went over was not written.
    let out = platform.path("tenants/a/out");
    let written = std::fs::read_dir(&out).map_or(0, |d| d.count());
    assert_eq!(written, 0, "outputs of a batch over the cap");
    // Under a cap it fits, the same input runs.
    let ran = run_with("1 MiB");
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert!(std::fs::read_dir(&out).unwrap().count() > 0);
}

#[test]
fn hostile_pipelines_are_refused_naming_the_field() {
    let platform = Platform::new();
    let other = platform.path("tenants/b/out/counts");
    let outside = platform.path("outside/ck");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "command output",
            format!(
                "{SOURCE}\n[[outputs]]\ntype = \"command\"\ncommand = [\"sh\", \"-c\", \"id\"]\n"
            ),
            &["outputs[0].type", "host programs"],
        ),
        (
            "a path with ..",
            format!("[sources.lines]\ntype = \"directory\"\npath = \"../b/in\"\n\n{OUTPUT}"),
            &["sources.lines.path", "`..`"],
        ),
        (
            "an absolute path elsewhere",
            format!("{SOURCE}\n[[outputs]]\ntype = \"text-files\"\nprefix = \"/etc/spate-out\"\n"),
            &["outputs[0].prefix", "outside the data root"],
        ),
        (
            "a symlink out of the root",
            format!("[sources.lines]\ntype = \"directory\"\npath = \"link\"\n\n{OUTPUT}"),
            &["sources.lines.path", "leads outside"],
        ),
        (
            "limits off",
            format!("[job]\nenforce-limits = false\n\n{SOURCE}\n{STEPS}\n{OUTPUT}"),
            &["job.enforce-limits", "cannot be switched off"],
        ),
        (
            "limits over the cap",
            format!("[job.limits]\nmemory = \"512 MiB\"\n\n{SOURCE}\n{STEPS}\n{OUTPUT}"),
            &["job.limits", "memory", "over the policy's cap of 64 MiB"],
        ),
        (
            "a step's call-time over the cap",
            format!(
                "{SOURCE}\n[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n\n[steps.limits]\ncall-time = \"1h\"\n\n{OUTPUT}"
            ),
            &["steps[0].limits", "call-time"],
        ),
        (
            "another tenant's output path",
            format!(
                "{SOURCE}\n[[outputs]]\ntype = \"text-files\"\nprefix = \"{}\"\n",
                other.display()
            ),
            &["outputs[0].prefix", "outside the data root"],
        ),
        (
            "checkpoints outside the root",
            format!(
                "[job]\ncheckpoint-dir = \"{}\"\n\n{SOURCE}\n{OUTPUT}",
                outside.display()
            ),
            &["job.checkpoint-dir", "outside the data root"],
        ),
        (
            "a forged tenant",
            format!("[job]\ntenant = \"b\"\n\n{SOURCE}\n{OUTPUT}"),
            &["job.tenant", "tenant 'a'"],
        ),
        (
            "its own CPU weight",
            format!("[job]\ncpu-weight = 8\n\n{SOURCE}\n{OUTPUT}"),
            &["job.cpu-weight", "platform's"],
        ),
        (
            "state over the cap",
            format!("[job]\nmax-state-bytes = \"2 GiB\"\n\n{SOURCE}\n{STEPS}\n{OUTPUT}"),
            &["job.max-state-bytes", "over the policy's cap of 1 GiB"],
        ),
        (
            "more workers than the cap",
            format!("[job]\nworkers = 16\n\n{SOURCE}\n{OUTPUT}"),
            &["job.workers", "cap of 2"],
        ),
        (
            "the UI",
            format!("{SOURCE}\n{OUTPUT}\n[ui]\nbind = \"0.0.0.0\"\n"),
            &["ui", "the platform's"],
        ),
        (
            "an endpoint not on the list",
            format!(
                "[sources.lines]\ntype = \"socket\"\nhost = \"10.1.2.3\"\nport = 22\n\n{OUTPUT}"
            ),
            &["sources.lines.host", "10.1.2.3:22", "not an endpoint"],
        ),
        (
            "a secret from the server's environment",
            format!(
                "{SOURCE}\n[[outputs]]\ntype = \"postgres\"\nurl = \"postgres://u@127.0.0.1:5432/db\"\npassword = {{ env = \"HOME\" }}\ntable = \"t\"\n"
            ),
            &["outputs[0].password", "HOME", "secret-env"],
        ),
        (
            "a secret from a file outside the root",
            format!(
                "{SOURCE}\n[[outputs]]\ntype = \"postgres\"\nurl = \"postgres://u@127.0.0.1:5432/db\"\npassword = {{ file = \"/etc/shadow\" }}\ntable = \"t\"\n"
            ),
            &[
                "outputs[0].password",
                "/etc/shadow",
                "outside the data root",
            ],
        ),
        (
            "a database over a Unix socket",
            format!(
                "{SOURCE}\n[[outputs]]\ntype = \"postgres\"\nurl = \"host=/var/run/postgresql user=u dbname=db\"\ntable = \"t\"\n"
            ),
            &["outputs[0].url", "Unix socket"],
        ),
        (
            "a Kafka client setting that loads a library",
            format!(
                "[sources.k]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9092\"\ntopics = [\"t\"]\n\n[sources.k.client]\n\"plugin.library.paths\" = \"/tmp/evil.so\"\n\n{OUTPUT}"
            ),
            &[
                "sources.k",
                "plugin.library.paths",
                "not allowed under the policy",
            ],
        ),
        (
            "a Kafka broker not on the list",
            format!(
                "[sources.k]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9092,kafka.example.com:9092\"\ntopics = [\"t\"]\n\n{OUTPUT}"
            ),
            &["sources.k.bootstrap", "kafka.example.com:9092"],
        ),
        (
            "another tenant's Kafka consumer group",
            format!(
                "[sources.k]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9092\"\ntopics = [\"t\"]\ngroup = \"spate.b.wc\"\n\n{OUTPUT}"
            ),
            &[
                "sources.k.group",
                "spate.b.wc",
                "must start with 'spate.a.'",
            ],
        ),
        (
            "another tenant's Kafka transactional id",
            format!(
                "{SOURCE}\n[[outputs]]\ntype = \"kafka\"\nbootstrap = \"127.0.0.1:9092\"\ntopic = \"t\"\ntransactional-id = \"spate.b.wc.t\"\n"
            ),
            &["outputs[0].transactional-id", "must start with 'spate.a.'"],
        ),
        (
            "another tenant's scale-out group",
            format!("[job]\ngroup = \"spate.b.members\"\n\n{SOURCE}\n{OUTPUT}"),
            &["job.group", "spate.b.members", "must start with 'spate.a.'"],
        ),
        (
            "a clock grant",
            format!(
                "{SOURCE}\n[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n\n[steps.grants]\nclocks = true\n\n{OUTPUT}"
            ),
            &["steps[0].grants.clocks", "clocks"],
        ),
        (
            "a granted directory outside the root",
            format!(
                "{SOURCE}\n[[steps]]\nop = \"flat-map\"\nplugin = \"tokenize\"\n\n[[steps.grants.dirs]]\npath = \"/etc\"\n\n{OUTPUT}"
            ),
            &["steps[0].grants.dirs[0].path", "outside the data root"],
        ),
    ];
    let policy = platform.policy.to_str().unwrap();
    platform.pipeline("hostile", "");
    let before = platform.outside_root();
    for (what, text, expected) in &cases {
        let path = platform.pipeline("hostile", text);
        for command in ["check", "run"] {
            let mut args = vec![command, "--policy", policy, path.to_str().unwrap()];
            if command == "run" {
                args.insert(1, "--no-ui");
            }
            let output = run(&args, Duration::from_secs(60));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{what} ({command}): {stderr}"
            );
            for part in *expected {
                assert!(
                    stderr.contains(part),
                    "{what} ({command}): no '{part}' in {stderr}"
                );
            }
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        }
    }
    assert_eq!(
        platform.outside_root(),
        before,
        "nothing created outside the root"
    );
    assert!(
        !platform.path("tenants/a/out").exists(),
        "no refused job ran"
    );
    // The same files without the policy are what a trusted operator may run: the policy is
    // what refuses them.
    let path = platform.pipeline(
        "trusted",
        &format!("[job]\ntenant = \"b\"\n\n{SOURCE}\n{OUTPUT}"),
    );
    let output = run(&["check", path.to_str().unwrap()], Duration::from_secs(60));
    assert!(
        output.status.code() == Some(2)
            && String::from_utf8_lossy(&output.stderr).contains("directory 'in' does not exist"),
        "without a policy, relative paths are the working directory's: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_policy_file_with_mistakes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let path = pipeline(dir.path(), &format!("{SOURCE}\n{OUTPUT}"));
    for (text, expected) in [
        ("data-root = \"missing\"\n", "is not a directory"),
        (
            "data-root = \".\"\nendpionts = []\n",
            "unknown field `endpionts`",
        ),
    ] {
        std::fs::write(&policy, text).unwrap();
        let output = run(
            &[
                "check",
                "--policy",
                policy.to_str().unwrap(),
                path.to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains(expected) && stderr.contains("policy.toml"),
            "{stderr}"
        );
    }
}
