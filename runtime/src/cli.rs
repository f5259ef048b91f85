//! The `spate` command line.

use crate::bundled;
use crate::config::{ConfigError, Pipeline};
use crate::job::{self, RunOptions};
use crate::plan::{Plan, worker_count};
use crate::wasm::{ComponentCache, new_engine};
use anyhow::Result;
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
    /// Run a pipeline until its sources end, --max-batches, or Ctrl-C.
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        #[command(flatten)]
        options: JobArgs,
    },
    /// Validate a pipeline and its plugins, and print the plan.
    Check {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Override a pipeline field, e.g. --set job.batch-interval=2s (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        overrides: Vec<String>,
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
}

/// Entry point of the `spate` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run { pipeline, options } => run(&pipeline, &options),
        Command::Check {
            pipeline,
            overrides,
        } => check(&pipeline, &overrides),
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Loads the pipeline and builds its plan (compiling and checking every plugin).
fn load_plan(path: &Path, overrides: &[String], no_cache: bool) -> Result<Plan> {
    let pipeline = Pipeline::load(path, overrides)?;
    let workers = worker_count(pipeline.file.job.workers);
    let operators = pipeline.file.steps.len() as u32;
    // Instances: one per (operator, worker), plus room for checks and trap replacements.
    let engine = new_engine(((workers as u32 + 2) * operators + 8).max(16))?;
    let cache = if no_cache {
        ComponentCache::disabled()
    } else {
        ComponentCache::default_location()
    };
    Ok(Plan::build(&pipeline, &engine, &cache)?)
}

fn run(path: &Path, args: &JobArgs) -> Result<()> {
    let plan = load_plan(path, &args.overrides, args.no_cache)?;
    tracing::info!(
        "job '{}' starting: {} stage(s), {} workers, batch interval {}",
        plan.job.name,
        plan.stages.len(),
        plan.job.workers,
        humantime::format_duration(plan.job.batch_interval)
    );
    let options = RunOptions {
        max_batches: args.max_batches,
        stop: ctrl_c_flag(),
    };
    let outcome = job::run(plan, &options)?;
    eprint!("{}", outcome.summary.render(outcome.elapsed));
    Ok(())
}

fn check(path: &Path, overrides: &[String]) -> Result<()> {
    let plan = load_plan(path, overrides, false)?;
    print!("{}", plan.describe());
    println!("ok: {} is valid", path.display());
    Ok(())
}

fn demo(args: &JobArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("spate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("demo-wordcount.toml");
    std::fs::write(&path, bundled::DEMO_PIPELINE)?;
    let result = run(&path, args);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A flag set by the first Ctrl-C (graceful stop); a second Ctrl-C exits at once.
fn ctrl_c_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let setter = flag.clone();
    let spawned = std::thread::Builder::new()
        .name("spate-signals".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("\nstopping gracefully (Ctrl-C again to abort)");
                    setter.store(true, Ordering::SeqCst);
                }
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("aborted");
                    std::process::exit(130);
                }
            });
        });
    if let Err(e) = spawned {
        tracing::warn!("Ctrl-C handling unavailable: {e}");
    }
    flag
}
