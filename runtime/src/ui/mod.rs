//! The web UI `spate run` serves (like Spark's on port 4040): pages for the jobs, each job's
//! streaming figures and batches, the dashboards of `dashboard` outputs; the JSON API the pages
//! use (`/api/v1/...`); `/metrics` in the Prometheus text format; server-sent events that tell
//! open pages to refresh. It runs on a thread and a one-thread tokio runtime of its own, so it
//! never takes a worker from the jobs, and reads only snapshots of their status.

mod api;
mod pages;
mod prometheus;

pub use crate::config::UiSettings;
use crate::status::Registry;
use anyhow::{Result, anyhow};
pub use api::{Scope, TenantUsage, router};
pub use prometheus::write_family;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// Ports tried after a taken one (Spark's `spark.port.maxRetries` is 16 as well).
const PORT_TRIES: u16 = 16;

/// Binds the first free port from `settings.port` on (16 tried) and serves the UI for the jobs
/// of `registry` until the process ends. Returns the address it listens on.
pub fn start(settings: &UiSettings, registry: Arc<Registry>) -> Result<SocketAddr> {
    let listener = bind(settings)?;
    let address = listener
        .local_addr()
        .map_err(|e| anyhow!("web UI: cannot read its address: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| anyhow!("web UI: {e}"))?;
    let router = router(Arc::new(Scope {
        registry,
        tenant: None,
        base: String::new(),
        tenant_usage: None,
    }));
    std::thread::Builder::new()
        .name("spate-ui".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => return tracing::error!("web UI: cannot start its runtime: {e}"),
            };
            runtime.block_on(async move {
                let served = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => axum::serve(listener, router).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = served {
                    tracing::error!("web UI stopped: {e}");
                }
            });
        })
        .map_err(|e| anyhow!("web UI: cannot start its thread: {e}"))?;
    Ok(address)
}

fn bind(settings: &UiSettings) -> Result<TcpListener> {
    let tries = if settings.port == 0 { 1 } else { PORT_TRIES };
    let mut last = None;
    for i in 0..tries {
        let Some(port) = settings.port.checked_add(i) else {
            break;
        };
        match TcpListener::bind(SocketAddr::new(settings.bind, port)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    let last = last.map_or_else(String::new, |e| format!(": {e}"));
    Err(anyhow!(
        "web UI: no free port on {} from {} to {}{last} (set `[ui] port`, `--ui-port`, or \
         `[ui] enabled = false`)",
        settings.bind,
        settings.port,
        settings.port.saturating_add(tries - 1)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_moves_the_ui_to_the_next_one() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let settings = UiSettings {
            port,
            ..UiSettings::default()
        };
        match bind(&settings) {
            Ok(listener) => assert_ne!(listener.local_addr().unwrap().port(), port),
            // All 16 ports after it taken as well: the error names the range.
            Err(e) => assert!(e.to_string().contains("no free port"), "{e}"),
        }
    }
}
