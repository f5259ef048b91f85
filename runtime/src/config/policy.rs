//! A platform policy: what a pipeline file written by a tenant may ask for. With a policy, the
//! pipeline file is untrusted input: every path it names must resolve inside the tenant's data
//! root (no `..`, no absolute path elsewhere, no symlink leading out), only the source and
//! output types the policy lists are built (`command` never unless listed), every socket,
//! Kafka or PostgreSQL endpoint must be on the policy's list, secrets come only from files in
//! the root or from variables the policy names, limits stay on and under the policy's caps,
//! and the tenant is the policy's, never the file's.
//!
//! `spate run --policy policy.toml` applies one to every pipeline it runs; `spate serve`
//! builds one per tenant from its config.

use super::schema::LimitsTable;
use super::units::{ByteSize, Interval};
use crate::wasm::Limits;
use serde::Deserialize;
use std::path::{Component, Path, PathBuf};

/// A policy file (`--policy`), or one tenant's policy in `spate serve`'s config.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policy {
    /// Every path a pipeline names resolves inside this directory; relative paths are taken
    /// from it.
    pub data_root: PathBuf,
    /// The tenant every job runs for (default: the job's name, as without a policy). A
    /// pipeline naming another `job.tenant` is refused.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Source types a pipeline may use (default: all).
    #[serde(default)]
    pub source_types: Option<Vec<String>>,
    /// Output types a pipeline may use (default: all but `command`, which runs host programs).
    #[serde(default)]
    pub output_types: Option<Vec<String>>,
    /// `host:port` a pipeline may connect to (sockets, Kafka bootstrap brokers, PostgreSQL
    /// servers); `*` stands for any host or any port, `*.example.com` for its subdomains.
    /// Default: none.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Environment variables a pipeline may read secrets from (`{ env = "VAR" }`). Default:
    /// none (secrets come from files in the data root).
    #[serde(default)]
    pub secret_env: Vec<String>,
    /// Whether operators may be granted the host's real clocks (default: no).
    #[serde(default)]
    pub clock_grants: bool,
    /// Whether operators may be granted real randomness (default: yes).
    #[serde(default = "yes")]
    pub random_grants: bool,
    /// The tenant's CPU weight relative to other tenants' (default 1); a pipeline cannot set
    /// its own.
    #[serde(default = "one")]
    pub cpu_weight: f64,
    /// The most worker threads a job may use (default: no cap but the machine's cores).
    #[serde(default)]
    pub max_workers: Option<usize>,
    /// The most input a job may buffer (`job.max-buffered-bytes`).
    #[serde(default)]
    pub max_buffered_bytes: Option<ByteSize>,
    /// The most host memory a job's state may hold (`job.max-state-bytes`, which defaults to
    /// it under the policy): 1 GiB unless set. Keyed state lives in the host, outside every
    /// operator's `limits.memory`; without a cap one tenant's keys could exhaust the host.
    #[serde(default = "state_cap")]
    pub max_state_bytes: ByteSize,
    /// Caps on each operator's limits: a pipeline may ask for less, never more; where it asks
    /// nothing, the smaller of the default and the cap applies.
    #[serde(default)]
    pub limits: LimitsTable,
}

/// The output type that runs host programs: off unless a policy lists it.
const COMMAND_OUTPUT: &str = "command";

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

fn state_cap() -> ByteSize {
    ByteSize(1 << 30)
}

impl Policy {
    /// Reads a policy file; relative `data-root`s are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Policy, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the policy: {e}", path.display()))?;
        let mut policy: Policy =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        if policy.data_root.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            policy.data_root = base.join(&policy.data_root);
        }
        policy
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(policy)
    }

    /// The data root must exist: paths are checked against where it really is.
    pub fn check(&self) -> Result<(), String> {
        if !self.data_root.is_dir() {
            return Err(format!(
                "data-root: '{}' is not a directory",
                self.data_root.display()
            ));
        }
        Ok(())
    }

    /// Where `raw`, a path a pipeline names, is on the host: inside the data root (relative
    /// paths are taken from it), or why not. The part of the path that exists is resolved
    /// with its symlinks, so a link inside the root to somewhere outside is refused.
    pub fn confine(&self, raw: &str) -> Result<PathBuf, String> {
        let path = Path::new(raw);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(format!(
                "'{raw}' contains `..`: paths must stay inside the data root"
            ));
        }
        let root = self
            .data_root
            .canonicalize()
            .map_err(|e| format!("the data root cannot be read: {e}"))?;
        let full = if path.is_absolute() {
            path.to_owned()
        } else {
            root.join(path)
        };
        // The deepest part that exists, with its links resolved, must be inside the root.
        let mut existing = full.as_path();
        let real = loop {
            match existing.canonicalize() {
                Ok(real) => break real,
                Err(_) => match existing.parent() {
                    Some(parent) => existing = parent,
                    None => return Err(format!("'{raw}' cannot be resolved")),
                },
            }
        };
        if !real.starts_with(&root) {
            let named_inside = full.starts_with(&root) || full.starts_with(&self.data_root);
            let how = if !named_inside {
                "is outside".to_owned()
            } else {
                format!(
                    "leads outside (through '{}', which is {})",
                    existing.display(),
                    real.display()
                )
            };
            return Err(format!(
                "'{raw}' {how} the data root {}",
                self.data_root.display()
            ));
        }
        Ok(full)
    }

    /// Whether a pipeline may read from a source of `type` `kind`, or why not. The
    /// `repartition` source (a scale-out job's reduce tasks read their internal topic with
    /// it) reads Kafka: it is allowed where `kafka` is.
    pub fn source_type(&self, kind: &str) -> Result<(), String> {
        let counted_as = if kind == "repartition" { "kafka" } else { kind };
        match &self.source_types {
            Some(allowed) if !allowed.iter().any(|t| t == counted_as) => Err(format!(
                "source type `{kind}` is not allowed by the policy (allowed: {})",
                allowed.join(", ")
            )),
            _ => Ok(()),
        }
    }

    /// Whether a pipeline may write to an output of `type` `kind`, or why not.
    pub fn output_type(&self, kind: &str) -> Result<(), String> {
        let allowed = match &self.output_types {
            Some(allowed) => allowed.iter().any(|t| t == kind),
            None => kind != COMMAND_OUTPUT,
        };
        if allowed {
            return Ok(());
        }
        Err(match &self.output_types {
            Some(list) => format!(
                "output type `{kind}` is not allowed by the policy (allowed: {})",
                list.join(", ")
            ),
            None => format!(
                "output type `{kind}` runs host programs and is off unless the policy's \
                 output-types lists it"
            ),
        })
    }

    /// Whether the pipeline may connect to `host:port`, or why not.
    pub fn endpoint(&self, host: &str, port: u16) -> Result<(), String> {
        let allowed = self.endpoints.iter().any(|pattern| {
            let Some((host_pattern, port_pattern)) = pattern.rsplit_once(':') else {
                return false;
            };
            let port_ok = port_pattern == "*" || port_pattern.parse() == Ok(port);
            let host = host.to_ascii_lowercase();
            let host_pattern = host_pattern.to_ascii_lowercase();
            let host_ok = match host_pattern.strip_prefix("*.") {
                _ if host_pattern == "*" => true,
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == host_pattern,
            };
            port_ok && host_ok
        });
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "{host}:{port} is not an endpoint the policy allows (allowed: {})",
                if self.endpoints.is_empty() {
                    "none".to_owned()
                } else {
                    self.endpoints.join(", ")
                }
            ))
        }
    }

    /// The limits `requested` capped by the policy: a field over its cap is an error naming
    /// it (`explicit` says which fields the pipeline set); a default over its cap is lowered.
    pub fn cap(&self, requested: Limits, explicit: &ExplicitLimits) -> Result<Limits, String> {
        let caps = &self.limits;
        let mut limits = requested;
        let bytes = |n: usize| ByteSize(n as u64).to_string();
        let size = |cap: Option<ByteSize>| cap.map(ByteSize::get);
        cap_one(
            ("memory", explicit.memory),
            &mut limits.memory,
            size(caps.memory),
            bytes,
        )?;
        cap_one(
            ("table-elements", explicit.table_elements),
            &mut limits.table_elements,
            caps.table_elements,
            |n| n.to_string(),
        )?;
        cap_one(
            ("call-time", explicit.call_time),
            &mut limits.call_time,
            caps.call_time.map(|t| t.0),
            |t| Interval(t).to_string(),
        )?;
        cap_one(
            ("output-records", explicit.output_records),
            &mut limits.output_records,
            caps.output_records,
            |n| n.to_string(),
        )?;
        cap_one(
            ("output-bytes", explicit.output_bytes),
            &mut limits.output_bytes,
            size(caps.output_bytes),
            bytes,
        )?;
        cap_one(
            ("log-bytes", explicit.log_bytes),
            &mut limits.log_bytes,
            size(caps.log_bytes),
            bytes,
        )?;
        // With a fuel cap, metering is on for every step: one not asking gets the cap.
        if let Some(cap) = caps.fuel {
            let mut fuel = limits.fuel.unwrap_or(cap);
            cap_one(("fuel", limits.fuel.is_some()), &mut fuel, Some(cap), |n| {
                n.to_string()
            })?;
            limits.fuel = Some(fuel);
        }
        Ok(limits)
    }
}

/// Caps one limit: over `cap` is an error when the pipeline asked for it (`field.1`), and
/// lowered to the cap when it is a default.
fn cap_one<T: PartialOrd + Copy>(
    (field, asked): (&str, bool),
    limit: &mut T,
    cap: Option<T>,
    show: impl Fn(T) -> String,
) -> Result<(), String> {
    let Some(cap) = cap else { return Ok(()) };
    if *limit > cap {
        if asked {
            return Err(format!(
                "{field} = {} is over the policy's cap of {}",
                show(*limit),
                show(cap)
            ));
        }
        *limit = cap;
    }
    Ok(())
}

/// Which limit fields a pipeline set itself (in `[job.limits]` or the step's).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExplicitLimits {
    /// `memory`.
    pub memory: bool,
    /// `table-elements`.
    pub table_elements: bool,
    /// `call-time`.
    pub call_time: bool,
    /// `output-records`.
    pub output_records: bool,
    /// `output-bytes`.
    pub output_bytes: bool,
    /// `log-bytes`.
    pub log_bytes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(root: &Path) -> Policy {
        toml::from_str(&format!(
            "data-root = \"{}\"\nendpoints = [\"127.0.0.1:9092\", \"*.kafka.test:*\", \"db:5432\"]\n\n[limits]\nmemory = \"64 MiB\"\ncall-time = \"2s\"\nfuel = 1000\n",
            root.display()
        ))
        .unwrap()
    }

    #[test]
    fn paths_stay_inside_the_data_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("in")).unwrap();
        std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), root.join("link")).unwrap();
        let p = policy(&root);
        let real_root = root.canonicalize().unwrap();
        assert_eq!(p.confine("in").unwrap(), real_root.join("in"));
        assert_eq!(
            p.confine("out/counts").unwrap(),
            real_root.join("out/counts")
        );
        let inside = real_root.join("in/x");
        assert_eq!(p.confine(inside.to_str().unwrap()).unwrap(), inside);
        assert!(p.confine("../x").unwrap_err().contains("`..`"));
        assert!(p.confine("in/../../x").unwrap_err().contains("`..`"));
        assert!(p.confine("/etc/passwd").unwrap_err().contains("is outside"));
        let through = p.confine("link/x").unwrap_err();
        assert!(through.contains("leads outside"), "{through}");
    }

    #[test]
    fn endpoints_must_be_listed() {
        let p = policy(Path::new("/"));
        assert!(p.endpoint("127.0.0.1", 9092).is_ok());
        assert!(p.endpoint("127.0.0.1", 9093).is_err());
        assert!(p.endpoint("b1.kafka.test", 1234).is_ok());
        assert!(p.endpoint("kafka.test", 1234).is_err());
        assert!(p.endpoint("DB", 5432).is_ok());
        let refused = p.endpoint("10.0.0.1", 22).unwrap_err();
        assert!(refused.contains("10.0.0.1:22") && refused.contains("db:5432"));
    }

    #[test]
    fn limits_over_a_cap_are_refused_and_defaults_lowered() {
        let p = policy(Path::new("/"));
        let capped = p
            .cap(Limits::default(), &ExplicitLimits::default())
            .unwrap();
        assert_eq!(capped.memory, 64 << 20);
        assert_eq!(capped.call_time, Duration::from_secs(2));
        assert_eq!(capped.fuel, Some(1000), "metering is switched on");
        let asked = Limits {
            memory: 128 << 20,
            ..Limits::default()
        };
        let explicit = ExplicitLimits {
            memory: true,
            ..ExplicitLimits::default()
        };
        assert!(p.cap(asked, &explicit).unwrap_err().contains("memory"));
        let fuel = Limits {
            fuel: Some(5000),
            ..Limits::default()
        };
        let error = p.cap(fuel, &ExplicitLimits::default()).unwrap_err();
        assert!(error.contains("fuel = 5000"), "{error}");
    }

    #[test]
    fn command_outputs_are_off_unless_listed() {
        let mut p = policy(Path::new("/"));
        assert!(
            p.output_type("command")
                .unwrap_err()
                .contains("host programs")
        );
        assert!(p.output_type("print").is_ok() && p.source_type("kafka").is_ok());
        assert!(!p.clock_grants && p.random_grants);
        p.source_types = Some(vec!["kafka".into()]);
        assert!(p.source_type("repartition").is_ok() && p.source_type("socket").is_err());
        p.source_types = Some(vec!["socket".into()]);
        assert!(p.source_type("repartition").is_err());
        p.output_types = Some(vec!["command".into()]);
        assert!(p.output_type("command").is_ok());
        assert!(
            p.output_type("print")
                .unwrap_err()
                .contains("allowed: command")
        );
    }
}
