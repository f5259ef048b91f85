//! The `spate` command line.

use crate::bundled;
use crate::client::{Client, ClientTls};
use crate::config::{ConfigError, Pipeline, Policy};
use crate::job::{self, RunOptions};
use crate::plan::Plan;
use crate::scale_out::{self, ScaleOut};
use crate::serve::logs::JobLogs;
use crate::status::Registry;
use crate::wasm::ComponentCache;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Spark Streaming's model, with user operators as sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "spate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run pipelines until their sources end, --max-batches, or Ctrl-C. Several pipelines run
    /// side by side as separate jobs (tenants) of one process, each with its own engine, stores
    /// and workers: one job failing does not stop the others.
    Run {
        /// The pipeline files.
        #[arg(required = true, num_args = 1..)]
        pipelines: Vec<PathBuf>,
        #[command(flatten)]
        options: JobArgs,
    },
    /// Run the multi-tenant service: tenants submit jobs over an HTTP API with their tokens,
    /// each pipeline read under its tenant's policy (docs/SERVE.md).
    Serve {
        /// The server's config: `[server] bind`, `data-dir`, `[defaults]`, `[[tenants]]`.
        #[arg(long, value_name = "server.toml")]
        config: PathBuf,
    },
    /// Submit a pipeline with the plugins it names to a `spate serve`; prints the job's id on
    /// the last line.
    Submit {
        /// The pipeline file.
        pipeline: PathBuf,
        /// A plugin file the pipeline names by its file name (repeatable).
        #[arg(long = "plugin", value_name = "FILE.wasm")]
        plugins: Vec<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the jobs the token's tenant may see: id, name, state.
    Jobs {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a job gracefully (the batch in flight finishes, a last checkpoint is written).
    Stop {
        /// The job: `<tenant>.<name>`, or a name of the token's tenant.
        job: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a job's log.
    Logs {
        /// The job: `<tenant>.<name>`, or a name of the token's tenant.
        job: String,
        /// Keep printing until the job ends.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a job's state and figures (JSON).
    Status {
        /// The job: `<tenant>.<name>`, or a name of the token's tenant.
        job: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print what the token's tenant (an admin's: every tenant) has consumed, against its
    /// quota (JSON).
    Usage {
        /// Count this tenant's usage from zero again and start its paused jobs (an admin's
        /// token).
        #[arg(long, value_name = "TENANT")]
        reset: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Validate a pipeline and its plugins, and print the plan.
    Check {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Override a pipeline field, e.g. --set job.batch-interval=2s (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        overrides: Vec<String>,
        /// Also connect to the outputs' servers and check what they write to (a PostgreSQL
        /// table and its columns).
        #[arg(long)]
        connect: bool,
        /// Check the pipeline as untrusted input under this platform policy (docs/SECURITY.md).
        #[arg(long, value_name = "POLICY.toml")]
        policy: Option<PathBuf>,
    },
    /// Retire a scale-out job's state (stop every process of it first): its tasks'
    /// checkpoints are moved aside and its repartition topic is deleted, so that its next run
    /// starts again from the input's starting offsets (docs/SCALE-OUT.md).
    Reset {
        /// The pipeline file (with `[job] group`).
        pipeline: PathBuf,
        /// Override a pipeline field (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        overrides: Vec<String>,
        /// Read the pipeline under this platform policy (docs/SECURITY.md).
        #[arg(long, value_name = "POLICY.toml")]
        policy: Option<PathBuf>,
    },
    /// Convert the state one step keeps in the newest checkpoint to a new state schema with a
    /// one-shot migration operator, so that the new pipeline resumes with it
    /// (docs/FAULT-TOLERANCE.md, "Upgrades").
    Migrate {
        /// The new pipeline file (with the new version of the step's operator).
        pipeline: PathBuf,
        /// The step whose state is converted: its `name`.
        #[arg(long)]
        step: String,
        /// The migration operator: a state operator (.wasm) declaring the new schema version.
        #[arg(long = "with", value_name = "PLUGIN")]
        migration: PathBuf,
        /// Override a pipeline field (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        overrides: Vec<String>,
    },
    /// Write a ready operator project: source, build, unit test, a pipeline running it over a
    /// sample input, README.
    New {
        /// The language.
        #[arg(value_enum)]
        language: crate::scaffold::Language,
        /// The operator's name (lowercase letters, digits, '-'); also the project directory.
        name: String,
        /// Where to create the project directory (default: here).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Word count over the bundled demo text, printed every second. No setup needed.
    Demo {
        #[command(flatten)]
        options: JobArgs,
    },
}

#[derive(Args)]
struct JobArgs {
    /// Stop after this many batches.
    #[arg(long, value_name = "N")]
    max_batches: Option<u64>,
    /// Override a pipeline field, e.g. --set sources.lines.port=9998 (repeatable).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    overrides: Vec<String>,
    /// Compile plugins without the on-disk cache of compiled components.
    #[arg(long)]
    no_cache: bool,
    /// Start without the state of earlier runs: each job's checkpoint directory is moved
    /// aside (renamed `<dir>.before-<time>`), not deleted.
    #[arg(long)]
    fresh: bool,
    /// Serve the web UI on this port (0: any free port); overrides `[ui] port`.
    #[arg(long, value_name = "PORT")]
    ui_port: Option<u16>,
    /// Do not serve the web UI; overrides `[ui] enabled`.
    #[arg(long)]
    no_ui: bool,
    /// Read every pipeline as untrusted input under this platform policy: paths inside its
    /// data root, endpoints, output types, limits and tenant as it allows (docs/SECURITY.md).
    #[arg(long, value_name = "POLICY.toml")]
    policy: Option<PathBuf>,
    /// A scale-out job's static member id (default: SPATE_MEMBER_ID; without either, the
    /// process is a dynamic member): a process restarted with the same id gets its tasks back
    /// without a rebalance. Give each process its own.
    #[arg(long, value_name = "ID")]
    member_id: Option<String>,
}

/// Which `spate serve` the client commands talk to, and with which token.
#[derive(Args)]
struct ServerArgs {
    /// The server (default: SPATE_SERVER, else http://127.0.0.1:8420).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// A file holding the API token (default: SPATE_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// For an https:// server: the certificate authorities to trust, a PEM file (default:
    /// SPATE_CA_CERT, else the system's).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// For a server that asks for a client certificate (mutual TLS): this client's
    /// certificate chain, a PEM file (default: SPATE_CLIENT_CERT).
    #[arg(long, value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// The private key of --client-cert, a PEM file (default: SPATE_CLIENT_KEY).
    #[arg(long, value_name = "FILE")]
    client_key: Option<PathBuf>,
}

impl ServerArgs {
    fn client(self) -> Result<Client> {
        let tls = ClientTls {
            ca_cert: self.ca_cert,
            client_cert: self.client_cert,
            client_key: self.client_key,
        };
        Client::new(self.server, self.token_file.as_deref(), tls)
    }
}

/// Entry point of the `spate` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let job_logs =
        matches!(cli.command, Command::Serve { .. }).then(|| Arc::new(JobLogs::default()));
    init_logging(job_logs.clone());
    let result = match cli.command {
        Command::Serve { config } => {
            crate::serve::serve(&config, job_logs.expect("made for serve"))
        }
        Command::Submit {
            pipeline,
            plugins,
            server,
        } => server.client().and_then(|c| c.submit(&pipeline, &plugins)),
        Command::Jobs { server } => server.client().and_then(|c| c.jobs()),
        Command::Stop { job, server } => server.client().and_then(|c| c.stop(&job)),
        Command::Logs {
            job,
            follow,
            server,
        } => server.client().and_then(|c| c.logs(&job, follow)),
        Command::Status { job, server } => server.client().and_then(|c| c.status(&job)),
        Command::Usage { reset, server } => server.client().and_then(|c| c.usage(reset.as_deref())),
        Command::Run { pipelines, options } => run(&pipelines, &options),
        Command::Check {
            pipeline,
            overrides,
            connect,
            policy,
        } => check(&pipeline, &overrides, connect, policy.as_deref()),
        Command::Reset {
            pipeline,
            overrides,
            policy,
        } => reset(&pipeline, &overrides, policy.as_deref()),
        Command::Migrate {
            pipeline,
            step,
            migration,
            overrides,
        } => load_plan(&pipeline, &overrides, false).and_then(|plan| {
            let report = crate::migrate::migrate(
                &plan,
                &step,
                &migration,
                &ComponentCache::default_location(),
            )?;
            print_out(&format!("{report}\n"))
        }),
        Command::New {
            language,
            name,
            dir,
        } => crate::scaffold::create(language, &name, &dir).and_then(|project| {
            print_out(&format!(
                "created {}: see its README.md to build, test and run it\n",
                project.display()
            ))
        }),
        Command::Demo { options } => demo(&options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let config = e.downcast_ref::<ConfigError>().is_some();
            eprintln!("error: {e:#}");
            ExitCode::from(if config { 2 } else { 1 })
        }
    }
}

/// Logs to stderr (filtered by SPATE_LOG, default `info`); with `job_logs`, each job's lines
/// also go to its own log (`spate serve`).
fn init_logging(job_logs: Option<Arc<JobLogs>>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(job_logs.map(|logs| logs.layer()))
        .init();
}

/// Loads the pipeline and builds its plan (compiling and checking every plugin).
fn load_plan(path: &Path, overrides: &[String], no_cache: bool) -> Result<Plan> {
    build_plan(&Pipeline::load(path, overrides)?, no_cache)
}

/// The policy of `--policy`, if given.
fn load_policy(path: Option<&Path>) -> Result<Option<Arc<Policy>>> {
    path.map(|path| Policy::load(path).map(Arc::new).map_err(|e| anyhow!(e)))
        .transpose()
}

/// Reads a pipeline file, under `policy` if there is one.
fn load_pipeline(
    path: &Path,
    overrides: &[String],
    policy: Option<&Arc<Policy>>,
) -> Result<Pipeline, ConfigError> {
    let mut pipeline = Pipeline::load(path, overrides)?;
    if let Some(policy) = policy {
        pipeline.confine_to(policy.clone())?;
    }
    Ok(pipeline)
}

/// Builds a loaded pipeline's plan: compiles, links, describes and configures its plugins.
fn build_plan(pipeline: &Pipeline, no_cache: bool) -> Result<Plan> {
    let cache = if no_cache {
        ComponentCache::disabled()
    } else {
        ComponentCache::default_location()
    };
    Ok(Plan::build(pipeline, &cache)?)
}

fn run(paths: &[PathBuf], args: &JobArgs) -> Result<()> {
    // A pipeline that does not load fails alone: the other tenants' jobs still run.
    let mut failures: Vec<anyhow::Error> = Vec::new();
    let report = |e: &anyhow::Error| {
        // With other jobs still to run, say it now rather than only when they end; a lone
        // pipeline's error is printed once, on exit.
        if paths.len() > 1 {
            tracing::error!("{e:#}");
        }
    };
    // Reading the files is quick and runs no tenant code: done first, so that duplicate job
    // names are refused before any job starts.
    let policy = load_policy(args.policy.as_deref())?;
    let mut pipelines: Vec<Pipeline> = Vec::new();
    for path in paths {
        match load_pipeline(path, &args.overrides, policy.as_ref()) {
            Ok(p) if pipelines.iter().any(|q| q.job_name() == p.job_name()) => {
                failures.push(anyhow!(
                    "{}: another pipeline is also named '{}': give each job its own `job.name`",
                    path.display(),
                    p.job_name()
                ));
            }
            Ok(p) => pipelines.push(p),
            Err(e) => {
                let e = anyhow::Error::from(e);
                report(&e);
                failures.push(e);
            }
        }
    }
    let options = RunOptions {
        max_batches: args.max_batches,
        stop: stop_flag(),
        fresh: args.fresh,
        registry: Arc::new(Registry::default()),
        processes: None,
    };
    serve_ui(&pipelines, args, &options.registry);
    // Each job plans (its plugins' describe and configure run tenant code) and runs on its own
    // thread: a slow or failing start delays and fails that job alone.
    std::thread::scope(|scope| {
        let handles: Vec<_> = pipelines
            .iter()
            .map(|pipeline| {
                let name = pipeline.job_name();
                let options = &options;
                let no_cache = args.no_cache;
                let policy = policy.clone();
                std::thread::Builder::new()
                    .name(format!("spate-job-{name}"))
                    .spawn_scoped(scope, move || {
                        let plan = build_plan(pipeline, no_cache).inspect_err(report)?;
                        match ScaleOut::of(pipeline, &plan)? {
                            Some(scale_out) => {
                                drop(plan);
                                run_scaled_out(pipeline, scale_out, args, policy, options)
                            }
                            None => run_job(plan, options),
                        }
                    })
                    .map_err(|e| anyhow!("job '{name}': cannot start its thread: {e}"))
            })
            .collect();
        for handle in handles {
            let result = handle.and_then(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("internal error: a job's thread panicked")))
            });
            if let Err(e) = result {
                failures.push(e);
            }
        }
    });
    let total = paths.len();
    match failures.len() {
        0 => Ok(()),
        // Kept as it is, so that a pipeline-file error still exits with 2.
        1 if total == 1 => Err(failures.remove(0)),
        n => {
            let list: Vec<String> = failures.iter().map(|e| format!("{e:#}")).collect();
            Err(anyhow!(
                "{n} of {total} jobs failed:\n  {}",
                list.join("\n  ")
            ))
        }
    }
}

/// Runs this process's share of a scale-out job: the tasks its consumer group gives it, each
/// planned from the pipeline with the task's overrides.
fn run_scaled_out(
    pipeline: &Pipeline,
    scale_out: ScaleOut,
    args: &JobArgs,
    policy: Option<Arc<Policy>>,
    options: &RunOptions,
) -> Result<()> {
    if args.fresh {
        bail!(
            "{}: --fresh with a scale-out job: the tasks' checkpoints are shared by every \
             process; move {} aside by hand with every process stopped",
            pipeline.path.display(),
            pipeline
                .file
                .job
                .checkpoint_dir
                .as_deref()
                .unwrap_or_default()
        );
    }
    let member = args
        .member_id
        .clone()
        .or_else(|| std::env::var("SPATE_MEMBER_ID").ok())
        .filter(|id| !id.is_empty());
    let (path, overrides, no_cache) =
        (pipeline.path.clone(), args.overrides.clone(), args.no_cache);
    let planner = move |extra: &[String]| {
        let all: Vec<String> = overrides.iter().chain(extra).cloned().collect();
        build_plan(&load_pipeline(&path, &all, policy.as_ref())?, no_cache)
    };
    let span = tracing::info_span!("job", name = %pipeline.job_name());
    let _entered = span.enter();
    scale_out::run(scale_out, member, Arc::new(planner), options)
}

/// Runs one job in its own log span (every line it logs names it) and prints its summary.
fn run_job(plan: Plan, options: &RunOptions) -> Result<()> {
    let span = tracing::info_span!("job", name = %plan.job.name);
    let _entered = span.enter();
    let (name, tenant) = (plan.job.name.clone(), plan.job.tenant.clone());
    tracing::info!(
        "starting for tenant '{tenant}': {} stage(s), {} workers, batch interval {}",
        plan.dataflow.nodes.len(),
        plan.dataflow.tasks.workers,
        humantime::format_duration(plan.job.batch_interval)
    );
    if let Some(checkpoint) = plan.job.checkpoint.as_ref().filter(|_| options.fresh) {
        job::set_aside(&checkpoint.dir, crate::job::now_ms())?;
    }
    let outcome = job::run(plan, options)?;
    eprint!(
        "job '{name}' (tenant '{tenant}'):\n{}",
        outcome.summary.render(outcome.elapsed)
    );
    Ok(())
}

/// Writes to stdout. A reader that went away (`spate check x.toml | head`) is not an error
/// (`print!` would panic on it); any other failure is.
fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow!("cannot write to standard output: {e}"))
        }
        _ => Ok(()),
    }
}

fn reset(path: &Path, overrides: &[String], policy: Option<&Path>) -> Result<()> {
    let policy = load_policy(policy)?;
    let pipeline = load_pipeline(path, overrides, policy.as_ref())?;
    let plan = build_plan(&pipeline, false)?;
    let Some(scale_out) = ScaleOut::of(&pipeline, &plan)? else {
        bail!(
            "{}: `spate reset` is for scale-out jobs (`[job] group`); a job of one process \
             starts afresh with `spate run --fresh`",
            path.display()
        );
    };
    let said = scale_out::reset(&scale_out, crate::wallclock::now_ms())
        .with_context(|| format!("{}: cannot reset the job", path.display()))?;
    print_out(&format!("{said}\n"))
}

fn check(path: &Path, overrides: &[String], connect: bool, policy: Option<&Path>) -> Result<()> {
    let policy = load_policy(policy)?;
    let pipeline = load_pipeline(path, overrides, policy.as_ref())?;
    let plan = build_plan(&pipeline, false)?;
    let mut reached = String::new();
    if let Some(scale_out) = ScaleOut::of(&pipeline, &plan)? {
        reached.push_str(&format!("{}\n", scale_out.describe()));
    }
    if connect {
        for (i, output) in plan.outputs.iter().enumerate() {
            let types = &plan.dataflow.streams[output.stream].types;
            if let Some(found) = output
                .output
                .verify(types)
                .with_context(|| format!("{}: outputs[{i}]", path.display()))?
            {
                reached.push_str(&format!("output {i}: {found}\n"));
            }
        }
    }
    print_out(&format!(
        "{}{reached}ok: {} is valid\n",
        plan.describe(),
        path.display()
    ))
}

/// Starts the web UI as the first pipeline's `[ui]` and the flags say. A UI that cannot start
/// is logged, and the jobs run without it.
fn serve_ui(pipelines: &[Pipeline], args: &JobArgs, registry: &Arc<Registry>) {
    let mut settings = pipelines
        .iter()
        .find_map(|p| p.file.ui.clone())
        .unwrap_or_default();
    if let Some(port) = args.ui_port {
        settings.port = port;
    }
    if args.no_ui || !settings.enabled {
        return;
    }
    match crate::ui::start(&settings, registry.clone()) {
        Ok(address) => tracing::info!(
            "web UI at http://{address}/ (JSON API under /api/v1, Prometheus metrics at /metrics)"
        ),
        Err(e) => tracing::warn!("{e:#}; the jobs run without it"),
    }
}

fn demo(args: &JobArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("spate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("demo-wordcount.toml");
    std::fs::write(&path, bundled::DEMO_PIPELINE)?;
    let result = run(&[path], args);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A flag set by Ctrl-C or SIGTERM (a graceful stop); a second one aborts.
fn stop_flag() -> Arc<AtomicBool> {
    use tokio::signal::unix::{SignalKind, signal};
    let flag = Arc::new(AtomicBool::new(false));
    let setter = flag.clone();
    // Returns once the handlers are in place, so that a signal arriving right after start is a
    // graceful stop and not the default (immediate) termination.
    let (ready, registered) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("spate-signals".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            else {
                let _ = ready.send(());
                return;
            };
            runtime.block_on(async {
                let signals = signal(SignalKind::interrupt())
                    .and_then(|int| Ok((int, signal(SignalKind::terminate())?)));
                let _ = ready.send(());
                let Ok((mut int, mut term)) = signals else {
                    return;
                };
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                eprintln!("\nstopping gracefully (Ctrl-C again to abort)");
                setter.store(true, Ordering::SeqCst);
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                eprintln!("aborted");
                std::process::exit(130);
            });
        });
    match spawned {
        Ok(_) => {
            let _ = registered.recv();
        }
        Err(e) => tracing::warn!("Ctrl-C handling unavailable: {e}"),
    }
    flag
}
