//! The service's jobs: what each tenant submitted, kept on disk so that a restarted server
//! resumes every job that was running (from its checkpoints, as `spate run` does), and the
//! threads that run them.
//!
//! A job lives in `<data-dir>/tenants/<tenant>/jobs/<name>/`: the pipeline file
//! (`<name>.toml`), its uploaded plugins, `job.json` (its record) and `job.log`. Its data
//! (inputs, outputs, checkpoints) is in the tenant's data root, under the tenant's policy.

use super::config::{Tenant, is_name, tenant_dir};
use super::logs::JobLogs;
use super::quota::{Ledger, OnExceed, Quota, TenantUsage};
use crate::config::{ConfigError, Pipeline, Policy};
use crate::job::RunOptions;
use crate::plan::Plan;
use crate::status::{JobSnapshot, Registry};
use crate::wallclock::now_ms;
use crate::wasm::ComponentCache;
use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A job as the service records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    /// `<tenant>.<name>`: what the client commands take.
    pub id: String,
    /// The tenant that submitted it (the authenticated one).
    pub tenant: String,
    /// Its name, unique among the tenant's jobs.
    pub name: String,
    /// `starting`, `running`, `stopping`, `stopped`, `finished` or `failed`.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether the job should run: a restarted server starts the jobs that should.
    pub should_run: bool,
    /// When it was (last) submitted, ms since the epoch.
    pub submitted_ms: u64,
    /// The plugin files uploaded with it.
    pub plugins: Vec<String>,
    /// The memory it reserves while it runs, bytes (see [`reserved_memory`]).
    #[serde(default)]
    pub reserved_memory: u64,
}

impl JobRecord {
    /// Whether the job has ended (it runs no more).
    pub fn ended(&self) -> bool {
        matches!(
            self.state.as_str(),
            "stopped" | "paused" | "finished" | "failed"
        )
    }
}

/// What a client submits.
#[derive(Debug, Deserialize)]
pub struct Submission {
    /// The pipeline file's name (its stem names the job unless `job.name` does).
    pub file_name: String,
    /// Its text.
    pub pipeline: String,
    /// Plugin files by name (`upper.wasm`), their bytes base64-encoded.
    #[serde(default)]
    pub plugins: BTreeMap<String, String>,
}

/// Why a request could not be done, as an HTTP status would say it.
#[derive(Debug)]
pub enum Refusal {
    /// 400: the submission is wrong (with what and where).
    Invalid(String),
    /// 403: the job is another tenant's.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 409: a job of that name is running.
    Conflict(String),
    /// 500.
    Internal(String),
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Self {
        Refusal::Internal(format!("{e:#}"))
    }
}

/// One job's record and, while it runs, its stop flag.
struct Entry {
    record: JobRecord,
    stop: Option<Arc<AtomicBool>>,
    /// Why the server stopped it (a quota), and the state it ends in (`stopped`, `paused`).
    halted: Option<(String, &'static str)>,
}

/// Every tenant's jobs.
pub struct Jobs {
    data_dir: PathBuf,
    logs: Arc<JobLogs>,
    cache: ComponentCache,
    entries: Mutex<BTreeMap<String, Entry>>,
    registries: BTreeMap<String, Arc<Registry>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Each tenant's usage across restarts.
    ledger: Ledger,
    /// Per job id, the last batch time held against its tenant's per-batch quota.
    batches_checked: Mutex<HashMap<String, u64>>,
}

/// How long a submission waits for its job to plan (plugins compile) before answering.
const PLANNING_WAIT: Duration = Duration::from_secs(120);

impl Jobs {
    /// The jobs recorded under `data_dir` for `tenants`; none is started yet.
    pub fn load(data_dir: &Path, tenants: &[Tenant], logs: Arc<JobLogs>) -> Result<Arc<Jobs>> {
        let mut entries = BTreeMap::new();
        for tenant in tenants {
            let dir = tenant_dir(data_dir, &tenant.name).join("jobs");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path().join("job.json");
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let record: JobRecord = serde_json::from_str(&text)
                    .with_context(|| format!("{} is damaged", path.display()))?;
                entries.insert(
                    record.id.clone(),
                    Entry {
                        record,
                        stop: None,
                        halted: None,
                    },
                );
            }
        }
        Ok(Arc::new(Jobs {
            data_dir: data_dir.to_owned(),
            logs,
            cache: ComponentCache::default_location(),
            entries: Mutex::new(entries),
            registries: tenants
                .iter()
                .map(|t| (t.name.clone(), Arc::new(Registry::default())))
                .collect(),
            threads: Mutex::new(Vec::new()),
            ledger: Ledger::load(data_dir, tenants)?,
            batches_checked: Mutex::new(HashMap::new()),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn job_dir(&self, tenant: &str, name: &str) -> PathBuf {
        tenant_dir(&self.data_dir, tenant).join("jobs").join(name)
    }

    /// Starts every job that was running when the server last stopped (or was killed).
    pub fn resume(self: &Arc<Self>, tenants: &[Tenant]) {
        let due: Vec<JobRecord> = self
            .lock()
            .values()
            .filter(|e| {
                e.record.should_run && !matches!(&e.record.state[..], "finished" | "failed")
            })
            .map(|e| e.record.clone())
            .collect();
        for record in due {
            let Some(tenant) = tenants.iter().find(|t| t.name == record.tenant) else {
                tracing::warn!(
                    "job {}: its tenant is no longer in the config; not resumed",
                    record.id
                );
                continue;
            };
            tracing::info!("job {}: resuming", record.id);
            let _ = self.start(tenant, record);
        }
    }

    /// Accepts `submission` from `tenant`: checks the pipeline under the tenant's policy,
    /// keeps it with its plugins, and starts the job; answers once the job runs (or failed
    /// to plan).
    pub fn submit(
        self: &Arc<Self>,
        tenant: &Tenant,
        submission: Submission,
    ) -> Result<JobRecord, Refusal> {
        let stem = Path::new(&submission.file_name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(reason) = tenant
            .quota
            .as_ref()
            .and_then(|quota| quota.exceeded(&self.usage(&tenant.name)))
        {
            return Err(Refusal::Forbidden(format!(
                "tenant '{}' is over its quota ({reason}): no new job runs until it is raised",
                tenant.name
            )));
        }
        let mut plugins = Vec::new();
        for (name, data) in &submission.plugins {
            let plain = name.strip_suffix(".wasm").is_some_and(is_name);
            if !plain {
                return Err(Refusal::Invalid(format!(
                    "plugin file name '{name}': use letters, digits, '-', '_' and .wasm"
                )));
            }
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| Refusal::Invalid(format!("plugin '{name}': not base64: {e}")))?;
            plugins.push((name.clone(), bytes));
        }
        // Read once in a scratch directory, to learn the job's name and refuse a pipeline
        // the policy does not allow before anything of the tenant's changes.
        let scratch = tempfile::Builder::new()
            .prefix(".submission-")
            .tempdir_in(tenant_dir(&self.data_dir, &tenant.name))
            .map_err(|e| anyhow!("cannot make a scratch directory: {e}"))?;
        let file_name = if is_name(&stem) { stem } else { "job".into() };
        let staged = scratch.path().join(format!("{file_name}.toml"));
        std::fs::write(&staged, &submission.pipeline).context("cannot keep the pipeline")?;
        for (name, bytes) in &plugins {
            std::fs::write(scratch.path().join(name), bytes).context("cannot keep a plugin")?;
        }
        let pipeline = read_pipeline(&staged, &tenant.policy, &submission.file_name)
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        // Planning reads every connector's fields (paths, endpoints) and loads the plugins:
        // a pipeline that cannot plan is refused here, not recorded as a failed job.
        let plan = Plan::build(&pipeline, &self.cache).map_err(|mut e| {
            e.file = PathBuf::from(&submission.file_name);
            Refusal::Invalid(e.to_string())
        })?;
        let name = pipeline.job_name();
        if !is_name(&name) {
            return Err(Refusal::Invalid(format!(
                "{}: job.name '{name}': use letters, digits, '-' and '_'",
                submission.file_name
            )));
        }
        let id = format!("{}.{name}", tenant.name);
        let record = JobRecord {
            id: id.clone(),
            tenant: tenant.name.clone(),
            name: name.clone(),
            state: "starting".into(),
            error: None,
            should_run: true,
            submitted_ms: now_ms(),
            plugins: plugins.iter().map(|(name, _)| name.clone()).collect(),
            reserved_memory: reserved_memory(&plan),
        };
        drop(plan);
        // The name is taken from here on: a second submission of it while this one keeps its
        // files and starts is refused, and its reservation counts against the next one's.
        let previous = self.reserve(tenant, &record)?;
        let started = self.keep_and_start(tenant, record, &staged, &plugins);
        if started.is_err() {
            let mut entries = self.lock();
            match previous {
                Some(previous) => entries.insert(id.clone(), previous),
                None => entries.remove(&id),
            };
        }
        let planned = started?;
        // Planning compiles the plugins: its errors are the submission's.
        let _ = planned.recv_timeout(PLANNING_WAIT);
        let record = self.record(&id)?;
        match (&record.state[..], &record.error) {
            ("failed", Some(error)) => Err(Refusal::Invalid(error.clone())),
            _ => Ok(record),
        }
    }

    /// Takes the name of `record` for its tenant if no job of that name runs and the
    /// tenant's quota lets one more job reserve its memory; returns the entry it replaces.
    fn reserve(&self, tenant: &Tenant, record: &JobRecord) -> Result<Option<Entry>, Refusal> {
        let mut entries = self.lock();
        if let Some(entry) = entries.get(&record.id)
            && !entry.record.ended()
        {
            return Err(Refusal::Conflict(format!(
                "job '{}' is {}: stop it before submitting it again",
                record.name, entry.record.state
            )));
        }
        let running = entries
            .values()
            .filter(|e| e.record.tenant == tenant.name && !e.record.ended());
        let (jobs, reserved) = running.fold((0, 0), |(n, bytes), e| {
            (n + 1, bytes + e.record.reserved_memory)
        });
        if let Some(reason) = tenant
            .quota
            .as_ref()
            .and_then(|q| admits(q, jobs, reserved, record.reserved_memory))
        {
            return Err(Refusal::Forbidden(format!(
                "tenant '{}': {reason}",
                tenant.name
            )));
        }
        let placeholder = Entry {
            record: record.clone(),
            stop: None,
            halted: None,
        };
        Ok(entries.insert(record.id.clone(), placeholder))
    }

    /// Puts the submission's pipeline (`staged`) and its plugins (beside it) in the job's
    /// directory, in place of the old ones, and starts the job.
    fn keep_and_start(
        self: &Arc<Self>,
        tenant: &Tenant,
        record: JobRecord,
        staged: &Path,
        plugins: &[(String, Vec<u8>)],
    ) -> Result<std::sync::mpsc::Receiver<()>, Refusal> {
        let name = &record.name;
        // The job's files: the new pipeline and plugins replace the old ones; its log stays.
        let dir = self.job_dir(&tenant.name, name);
        std::fs::create_dir_all(&dir).context("cannot make the job's directory")?;
        for entry in std::fs::read_dir(&dir).context("cannot read the job's directory")? {
            let path = entry.context("cannot read the job's directory")?.path();
            if path.file_name().is_some_and(|n| n != "job.log") {
                std::fs::remove_file(&path).context("cannot replace the job's files")?;
            }
        }
        std::fs::rename(staged, dir.join(format!("{name}.toml")))
            .context("cannot keep the pipeline")?;
        for (plugin, _) in plugins {
            std::fs::rename(staged.with_file_name(plugin), dir.join(plugin))
                .context("cannot keep a plugin")?;
        }
        self.start(tenant, record)
    }

    /// Starts the job of `record` on a thread of its own; the receiver hears once it has
    /// planned (or failed to).
    fn start(
        self: &Arc<Self>,
        tenant: &Tenant,
        mut record: JobRecord,
    ) -> Result<std::sync::mpsc::Receiver<()>, Refusal> {
        let dir = self.job_dir(&record.tenant, &record.name);
        let pipeline_path = dir.join(format!("{}.toml", record.name));
        self.logs
            .open(&record.id, &dir.join("job.log"))
            .context("cannot open the job's log")?;
        let stop = Arc::new(AtomicBool::new(false));
        record.state = "starting".into();
        record.error = None;
        record.should_run = true;
        self.save(&record)?;
        self.lock().insert(
            record.id.clone(),
            Entry {
                record: record.clone(),
                stop: Some(stop.clone()),
                halted: None,
            },
        );
        let (planned, heard) = std::sync::mpsc::channel();
        let jobs = self.clone();
        let policy = tenant.policy.clone();
        let registry = self.registries[&record.tenant].clone();
        let id = record.id.clone();
        let thread = std::thread::Builder::new()
            .name(format!("spate-job-{}", record.name))
            .spawn(move || {
                let span = tracing::info_span!("job", name = %id, log = %id);
                let _entered = span.enter();
                let plan = read_pipeline(&pipeline_path, &policy, "")
                    .map_err(anyhow::Error::from)
                    .and_then(|pipeline| Ok(Plan::build(&pipeline, &jobs.cache)?));
                let outcome = match plan {
                    Ok(plan) => {
                        jobs.set_state(&id, "running", None);
                        let _ = planned.send(());
                        tracing::info!(
                            "starting for tenant '{}': {} stage(s), {} workers",
                            plan.job.tenant,
                            plan.dataflow.nodes.len(),
                            plan.dataflow.tasks.workers
                        );
                        let options = RunOptions {
                            max_batches: None,
                            stop: stop.clone(),
                            fresh: false,
                            registry,
                            processes: None,
                        };
                        crate::job::run(plan, &options).map(|outcome| {
                            tracing::info!("{}", outcome.summary.render(outcome.elapsed));
                        })
                    }
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(()) if stop.load(Ordering::SeqCst) => match jobs.halted(&id) {
                        Some((reason, state)) => {
                            tracing::warn!("{state}: {reason}");
                            jobs.set_state(&id, state, Some(reason));
                        }
                        None => {
                            tracing::info!("stopped");
                            jobs.set_state(&id, "stopped", None);
                        }
                    },
                    Ok(()) => {
                        tracing::info!("finished");
                        jobs.set_state(&id, "finished", None);
                    }
                    Err(e) => {
                        tracing::error!("{e:#}");
                        jobs.set_state(&id, "failed", Some(format!("{e:#}")));
                    }
                }
                let _ = planned.send(());
                jobs.logs.close(&id);
            })
            .map_err(|e| anyhow!("cannot start the job's thread: {e}"))?;
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
        Ok(heard)
    }

    /// Why the server stopped job `id`, if it did.
    fn halted(&self, id: &str) -> Option<(String, &'static str)> {
        self.lock().get(id).and_then(|e| e.halted.clone())
    }

    /// What this run of the server's jobs of tenant `tenant` have reported.
    fn live_usage(&self, tenant: &str) -> TenantUsage {
        let mut usage = TenantUsage {
            tenant: tenant.to_owned(),
            ..TenantUsage::default()
        };
        if let Some(registry) = self.registries.get(tenant) {
            for job in registry.jobs() {
                let (totals, batches) = job.totals();
                usage.add((&totals, batches));
            }
        }
        usage.running_jobs = self
            .lock()
            .values()
            .filter(|e| e.record.tenant == tenant && !e.record.ended())
            .count() as u64;
        usage
    }

    /// What tenant `tenant`'s jobs have consumed since its usage was last reset (across
    /// restarts of the server).
    pub fn usage(&self, tenant: &str) -> TenantUsage {
        self.ledger.total(self.live_usage(tenant))
    }

    /// Counts tenant `tenant`'s usage from zero again and starts its paused jobs.
    pub fn reset_usage(self: &Arc<Self>, tenant: &Tenant) -> Result<TenantUsage, Refusal> {
        self.ledger.reset(&self.live_usage(&tenant.name))?;
        let paused: Vec<JobRecord> = self
            .lock()
            .values()
            .filter(|e| e.record.tenant == tenant.name && e.record.state == "paused")
            .map(|e| e.record.clone())
            .collect();
        for record in paused {
            tracing::info!("job {}: its tenant's usage was reset; resuming", record.id);
            let _ = self.start(tenant, record)?;
        }
        Ok(self.usage(&tenant.name))
    }

    /// Keeps every tenant's usage on disk, and stops (or pauses) the running jobs of a tenant
    /// over its quota, or a job whose batch went over the tenant's per-batch quota, saying
    /// why.
    pub fn enforce_quotas(&self, tenants: &[Tenant]) {
        for tenant in tenants {
            let usage = self.usage(&tenant.name);
            if let Err(e) = self.ledger.keep(&usage) {
                tracing::error!("tenant '{}': {e:#}", tenant.name);
            }
            let Some(quota) = &tenant.quota else { continue };
            if let Some(reason) = quota.exceeded(&usage) {
                self.halt(&tenant.name, None, &reason, quota.on_exceed);
            }
            for (job, reason) in self.batches_over(&tenant.name, quota) {
                self.halt(&tenant.name, Some(&job), &reason, quota.on_exceed);
            }
        }
    }

    /// The jobs of `tenant` with a batch over the per-batch quota since the last look, and
    /// why.
    fn batches_over(&self, tenant: &str, quota: &Quota) -> Vec<(String, String)> {
        let Some(registry) = self.registries.get(tenant) else {
            return Vec::new();
        };
        if quota.per_batch.is_none() {
            return Vec::new();
        }
        let mut checked = self
            .batches_checked
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut over = Vec::new();
        for job in registry.jobs() {
            let name = &job.description.name;
            let last = checked.entry(format!("{tenant}.{name}")).or_insert(0);
            let batches = job.batches_after(*last);
            if let Some(batch) = batches.last() {
                *last = batch.time_ms;
            }
            if let Some(reason) = batches.iter().find_map(|b| quota.batch_exceeded(name, b)) {
                over.push((name.clone(), reason));
            }
        }
        over
    }

    /// Stops (or pauses) tenant `tenant`'s running jobs (only job `only`, if given) for
    /// `reason`.
    fn halt(&self, tenant: &str, only: Option<&str>, reason: &str, on_exceed: OnExceed) {
        let state = match on_exceed {
            OnExceed::Stop => "stopped",
            OnExceed::Pause => "paused",
        };
        let halted: Vec<JobRecord> = self
            .lock()
            .values_mut()
            .filter(|e| e.record.tenant == tenant && e.halted.is_none())
            .filter(|e| only.is_none_or(|name| e.record.name == name))
            .filter_map(|e| {
                let stop = e.stop.as_ref()?;
                stop.store(true, Ordering::SeqCst);
                e.halted = Some((reason.to_owned(), state));
                e.record.state = "stopping".into();
                e.record.should_run = on_exceed == OnExceed::Pause;
                Some(e.record.clone())
            })
            .collect();
        for record in halted {
            tracing::warn!("job {}: {reason}; the job is {state}", record.id);
            let _ = self.save(&record);
        }
    }

    fn set_state(&self, id: &str, state: &str, error: Option<String>) {
        let record = {
            let mut entries = self.lock();
            let Some(entry) = entries.get_mut(id) else {
                return;
            };
            entry.record.state = state.into();
            entry.record.error = error;
            if entry.record.ended() {
                entry.stop = None;
            }
            entry.record.clone()
        };
        if let Err(e) = self.save(&record) {
            tracing::error!("job {id}: {e:#}");
        }
    }

    /// Writes `record` to its `job.json` (atomically: a killed server leaves the old or the
    /// new one).
    fn save(&self, record: &JobRecord) -> Result<()> {
        let dir = self.job_dir(&record.tenant, &record.name);
        let text = serde_json::to_string_pretty(record)?;
        let staged = dir.join(".job.json");
        std::fs::write(&staged, text)
            .and_then(|_| std::fs::rename(&staged, dir.join("job.json")))
            .with_context(|| format!("cannot record job {} in {}", record.id, dir.display()))
    }

    /// The record of job `id`.
    pub fn record(&self, id: &str) -> Result<JobRecord, Refusal> {
        self.lock()
            .get(id)
            .map(|e| e.record.clone())
            .ok_or_else(|| Refusal::NotFound(format!("no job '{id}'")))
    }

    /// The record of job `id` (`<tenant>.<name>`, or the tenant's own job `<name>`) if
    /// `tenant` may see it (its own, or any for an admin).
    pub fn visible(&self, tenant: &Tenant, id: &str) -> Result<JobRecord, Refusal> {
        let record = match id.contains('.') {
            true => self.record(id)?,
            false => self.record(&format!("{}.{id}", tenant.name))?,
        };
        if record.tenant != tenant.name && !tenant.admin {
            return Err(Refusal::Forbidden(format!(
                "job '{id}' is not tenant '{}''s",
                tenant.name
            )));
        }
        Ok(record)
    }

    /// The jobs `tenant` may see.
    pub fn list(&self, tenant: &Tenant) -> Vec<JobRecord> {
        self.lock()
            .values()
            .filter(|e| tenant.admin || e.record.tenant == tenant.name)
            .map(|e| e.record.clone())
            .collect()
    }

    /// Asks job `id` to stop (gracefully: the batch in flight finishes, a last checkpoint is
    /// written); a restarted server does not start it again.
    pub fn stop(&self, tenant: &Tenant, id: &str) -> Result<JobRecord, Refusal> {
        let id = self.visible(tenant, id)?.id;
        let record = {
            let mut entries = self.lock();
            let entry = entries
                .get_mut(&id)
                .ok_or_else(|| Refusal::NotFound(format!("no job '{id}'")))?;
            entry.record.should_run = false;
            if let Some(stop) = &entry.stop {
                stop.store(true, Ordering::SeqCst);
                if !entry.record.ended() {
                    entry.record.state = "stopping".into();
                }
            }
            entry.record.clone()
        };
        self.save(&record)?;
        Ok(record)
    }

    /// The status registry of tenant `tenant`'s jobs (what its web UI shows).
    pub fn registry(&self, tenant: &str) -> Arc<Registry> {
        self.registries[tenant].clone()
    }

    /// What the job is doing now, as the web UI's API says it (none before it has planned).
    pub fn snapshot(&self, record: &JobRecord) -> Option<JobSnapshot> {
        self.registries
            .get(&record.tenant)?
            .job(&record.name)
            .map(|status| status.snapshot())
    }

    /// Job `id`'s log from byte `from` on.
    pub fn log(&self, record: &JobRecord, from: u64) -> Result<Vec<u8>, Refusal> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.job_dir(&record.tenant, &record.name).join("job.log");
        let Ok(mut file) = std::fs::File::open(&path) else {
            return Ok(Vec::new());
        };
        let mut text = Vec::new();
        file.seek(SeekFrom::Start(from))
            .and_then(|_| file.read_to_end(&mut text))
            .map_err(|e| Refusal::Internal(format!("cannot read the job's log: {e}")))?;
        Ok(text)
    }

    /// Stops every job (the server is stopping) and waits for them; they stay due to run, so
    /// the next start of the server resumes them.
    pub fn shut_down(&self) {
        for entry in self.lock().values() {
            if let Some(stop) = &entry.stop {
                stop.store(true, Ordering::SeqCst);
            }
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        // A job stopped by the server's own end is to run again on its next start.
        let records: Vec<JobRecord> = self
            .lock()
            .values_mut()
            .filter(|e| e.record.should_run && e.record.state == "stopped")
            .map(|e| {
                e.record.state = "running".into();
                e.record.clone()
            })
            .collect();
        for record in records {
            let _ = self.save(&record);
        }
    }
}

/// Reads the pipeline at `path` under `policy`; errors name `shown_as` (the file the client
/// sent) rather than the server's copy.
fn read_pipeline(
    path: &Path,
    policy: &Arc<Policy>,
    shown_as: &str,
) -> Result<Pipeline, ConfigError> {
    let rename = |mut e: ConfigError| {
        if !shown_as.is_empty() {
            e.file = PathBuf::from(shown_as);
        }
        e
    };
    let mut pipeline = Pipeline::load(path, &[]).map_err(rename)?;
    pipeline.confine_to(policy.clone()).map_err(rename)?;
    Ok(pipeline)
}

/// The memory a job reserves while it runs: each worker's instance of each operator at its
/// memory limit, its input buffer (`max-buffered-bytes`) and its state (`max-state-bytes`,
/// which a policy always sets).
fn reserved_memory(plan: &Plan) -> u64 {
    let operators: u64 = plan
        .dataflow
        .operators
        .iter()
        .map(|o| o.spec.limits.memory as u64)
        .sum();
    plan.dataflow.tasks.workers as u64 * operators
        + plan.job.max_buffered_bytes as u64
        + plan.job.max_state_bytes.unwrap_or(0) as u64
}

/// Whether `quota` lets one more job reserving `more` bytes run beside `jobs` running jobs
/// reserving `reserved`; if not, why.
fn admits(quota: &Quota, jobs: u64, reserved: u64, more: u64) -> Option<String> {
    if let Some(most) = quota.running_jobs
        && jobs >= most
    {
        return Some(format!(
            "{jobs} jobs run, the most its quota allows (running-jobs = {most})"
        ));
    }
    let most = quota.memory?.0;
    (reserved + more > most).then(|| {
        format!(
            "this job reserves {} MiB of memory and its running jobs {} MiB: more than its \
             quota's {} MiB (memory; a job reserves its operators' memory limit per worker, \
             its max-buffered-bytes and its max-state-bytes)",
            more >> 20,
            reserved >> 20,
            most >> 20
        )
    })
}
