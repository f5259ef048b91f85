//! `spate serve`: a long-running service that runs tenants' jobs. Tenants authenticate with
//! API tokens (`config`), submit pipelines with their plugins over an HTTP API (`api`), and
//! each pipeline is read under its tenant's policy (paths in its data root, endpoints, limits:
//! `crate::config::Policy`). Jobs run in the server's process on threads of their own, each
//! with its own engine, workers and stores as in `spate run`; their records are kept on disk
//! (`jobs`), so a server killed and started again resumes every job from its checkpoints;
//! each job's lines also go to a log of its own (`logs`). Browsers sign in to each tenant's
//! pages of the web UI (`web`).

pub mod api;
pub mod config;
pub mod jobs;
pub mod logs;
pub mod quota;
pub mod tls;
pub mod web;

use anyhow::{Context, Result, anyhow};
use std::path::Path;
use std::sync::Arc;

/// Runs the service of `config_path` until SIGINT or SIGTERM; `logs` is the logging layer's
/// registry of job logs.
pub fn serve(config_path: &Path, logs: Arc<logs::JobLogs>) -> Result<()> {
    let config = config::ServerConfig::load(config_path)?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let jobs = jobs::Jobs::load(&config.data_dir, &config.tenants, logs)?;
    let listener = std::net::TcpListener::bind(config.bind)
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let certificates = match &config.tls {
        Some(files) => Some(Arc::new(tls::Certificates::load(files)?)),
        None if !address.ip().is_loopback() => {
            tracing::warn!(
                "the API listens on {address}, beyond this machine, without TLS: tokens travel \
                 in clear unless a TLS reverse proxy is in front ([server] tls-cert and tls-key, \
                 docs/SERVE.md)"
            );
            None
        }
        None => None,
    };
    let scheme = if certificates.is_some() {
        "https"
    } else {
        "http"
    };
    jobs.resume(&config.tenants);
    tracing::info!(
        "spate serve: API at {scheme}://{address}/api/v1/jobs, web UI at {scheme}://{address}/ \
         ({} tenants, data in {})",
        config.tenants.len(),
        config.data_dir.display()
    );
    let sessions = web::Sessions::load(config.data_dir.join("sessions.json"));
    let service = Arc::new(api::Service {
        config,
        jobs: jobs.clone(),
        sessions,
    });
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (service, watching) = (service.clone(), watching.clone());
        std::thread::Builder::new()
            .name("spate-quotas".into())
            .spawn(move || {
                while watching.load(std::sync::atomic::Ordering::SeqCst) {
                    service.jobs.enforce_quotas(&service.config.tenants);
                    std::thread::sleep(QUOTA_CHECK_INTERVAL);
                }
            })
            .context("cannot start the quota watcher")?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let routes = (api::router(service.clone()).merge(web::router(service.clone())))
            .layer(axum::middleware::from_fn_with_state(
                service,
                api::only_bound_clients,
            ))
            .into_make_service_with_connect_info::<tls::Peer>();
        let served = match certificates {
            Some(certificates) => {
                axum::serve(tls::TlsListener::new(listener, certificates)?, routes)
                    .with_graceful_shutdown(stop_signal())
                    .await
            }
            None => {
                axum::serve(listener, routes)
                    .with_graceful_shutdown(stop_signal())
                    .await
            }
        };
        served.map_err(|e| anyhow!("the API server stopped: {e}"))
    })?;
    tracing::info!("spate serve: stopping every job");
    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = watcher.join();
    jobs.shut_down();
    Ok(())
}

/// How often tenants' usage is held against their quotas.
const QUOTA_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// One server per data directory: a second one would run the same jobs twice.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("server.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; the lock ends when the file closes.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        return Err(anyhow!(
            "another spate serve uses {} (it holds {})",
            dir.display(),
            path.display()
        ));
    }
    Ok(file)
}
