//! The service's HTTP API (JSON): every request names its tenant by a bearer token (401
//! without a valid one); a tenant sees, stops and reads the logs of its own jobs only (403
//! for another's), an admin tenant of every job. A tenant bound to client certificates is
//! refused (403) over a connection without one of them, whatever the request.
//!
//! | request | answer |
//! |---|---|
//! | `POST /api/v1/jobs` | submits a job (`Submission`): 201 with its record, 400 naming what the policy refuses, 409 if it runs |
//! | `GET /api/v1/jobs` | the records the tenant may see |
//! | `GET /api/v1/jobs/<id>` | one record with `status`: what the job is doing (the web UI's job figures) |
//! | `POST /api/v1/jobs/<id>/stop` | stops it gracefully |
//! | `GET /api/v1/jobs/<id>/logs?from=N` | its log from byte N; header `spate-job-state` |
//! | `GET /api/v1/usage` | per tenant (its own; an admin: all), what its jobs consumed |
//! | `POST /api/v1/usage/<tenant>/reset` | (an admin) counts the tenant's usage from zero, starts its paused jobs |
//! | `GET /metrics` | the same in the Prometheus text format (`spate_tenant_*{tenant}`) |

use super::config::{ServerConfig, Tenant};
use super::jobs::{JobRecord, Jobs, Refusal, Submission};
use super::quota::TenantUsage;
use super::tls::Peer;
use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::sync::Arc;

/// What the handlers share.
pub struct Service {
    /// The server's config (tenants and their tokens).
    pub config: ServerConfig,
    /// The jobs.
    pub jobs: Arc<Jobs>,
    /// The web UI's signed-in browsers.
    pub sessions: super::web::Sessions,
}

/// The largest submission (pipeline and plugins, base64) accepted.
const MAX_SUBMISSION_BYTES: usize = 256 << 20;

/// The API's routes.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/api/v1/jobs", post(submit).get(list))
        .route("/api/v1/jobs/{id}", get(status))
        .route("/api/v1/jobs/{id}/stop", post(stop))
        .route("/api/v1/jobs/{id}/logs", get(logs))
        .route("/api/v1/usage", get(usage))
        .route("/api/v1/usage/{tenant}/reset", post(reset_usage))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_SUBMISSION_BYTES))
        .with_state(service)
}

/// A refusal as an HTTP answer: the status and `{"error": reason}`.
fn refused(refusal: Refusal) -> Response {
    let (status, reason) = match refusal {
        Refusal::Invalid(r) => (StatusCode::BAD_REQUEST, r),
        Refusal::Forbidden(r) => (StatusCode::FORBIDDEN, r),
        Refusal::NotFound(r) => (StatusCode::NOT_FOUND, r),
        Refusal::Conflict(r) => (StatusCode::CONFLICT, r),
        Refusal::Internal(r) => (StatusCode::INTERNAL_SERVER_ERROR, r),
    };
    (status, Json(serde_json::json!({ "error": reason }))).into_response()
}

/// The bearer token of a request's `Authorization` header, if it has one.
pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The tenant the request's bearer token belongs to, or a 401.
fn tenant<'s>(service: &'s Service, headers: &HeaderMap) -> Result<&'s Tenant, Box<Response>> {
    let reason = match bearer_token(headers) {
        None => "no API token: send `Authorization: Bearer <token>` (SPATE_TOKEN for the client)",
        Some(token) => match service.config.tenant_with_token(token) {
            Some(tenant) => return Ok(tenant),
            None => "the API token is not valid",
        },
    };
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({ "error": reason })),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    Err(Box::new(response))
}

/// Refuses (403) a request whose tenant (by its token or session) is bound to client
/// certificates (`client-cert-sha256`) and which comes over a connection without one of them:
/// a token or session cookie that leaked is of no use without the certificate's key.
pub(super) async fn only_bound_clients(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    match super::web::caller(&service, request.headers()) {
        Some(tenant) if !tenant.takes_certificate(peer.certificate_sha256) => {
            refused(Refusal::Forbidden(not_bound_certificate(tenant, peer)))
        }
        _ => next.run(request).await,
    }
}

/// Why `tenant`, bound to client certificates, is refused over the connection of `peer`.
pub(super) fn not_bound_certificate(tenant: &Tenant, peer: Peer) -> String {
    let shown = match peer.certificate_sha256 {
        Some(sha256) => format!(
            "this client's certificate (SHA-256 {}) is not one of them",
            sha256.map(|b| format!("{b:02x}")).concat()
        ),
        None => "this client showed none".to_owned(),
    };
    format!(
        "tenant '{}' is taken only from the client certificates its client-cert-sha256 names; \
         {shown}",
        tenant.name
    )
}

/// Runs `work` (which may block: files, plugin compiles) off the server's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|_| Err(Refusal::Internal("a request's work panicked".into())))
}

async fn submit(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let name = match tenant(&service, &headers) {
        Ok(tenant) => tenant.name.clone(),
        Err(response) => return *response,
    };
    let submission: Submission = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return refused(Refusal::Invalid(format!("not a submission: {e}"))),
    };
    let worker = service.clone();
    let result = blocking(move || {
        let tenant = worker.config.tenant(&name).expect("authenticated");
        worker.jobs.submit(tenant, submission)
    })
    .await;
    match result {
        Ok(record) => (StatusCode::CREATED, Json(record)).into_response(),
        Err(refusal) => refused(refusal),
    }
}

async fn list(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    match tenant(&service, &headers) {
        Ok(tenant) => Json(service.jobs.list(tenant)).into_response(),
        Err(response) => *response,
    }
}

/// A record with what the job is doing.
#[derive(serde::Serialize)]
struct Status {
    #[serde(flatten)]
    record: JobRecord,
    status: Option<crate::status::JobSnapshot>,
}

async fn status(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let tenant = match tenant(&service, &headers) {
        Ok(tenant) => tenant,
        Err(response) => return *response,
    };
    match service.jobs.visible(tenant, &id) {
        Ok(record) => {
            let status = service.jobs.snapshot(&record);
            Json(Status { record, status }).into_response()
        }
        Err(refusal) => refused(refusal),
    }
}

async fn stop(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let tenant = match tenant(&service, &headers) {
        Ok(tenant) => tenant,
        Err(response) => return *response,
    };
    match service.jobs.stop(tenant, &id) {
        Ok(record) => Json(record).into_response(),
        Err(refusal) => refused(refusal),
    }
}

/// The usage of the tenants the caller may see.
fn usages(service: &Service, tenant: &Tenant) -> Vec<TenantUsage> {
    service
        .config
        .tenants
        .iter()
        .filter(|t| tenant.admin || t.name == tenant.name)
        .map(|t| service.jobs.usage(&t.name))
        .collect()
}

async fn usage(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    match tenant(&service, &headers) {
        Ok(tenant) => Json(usages(&service, tenant)).into_response(),
        Err(response) => *response,
    }
}

async fn reset_usage(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    match tenant(&service, &headers) {
        Ok(caller) if !caller.admin => refused(Refusal::Forbidden(format!(
            "tenant '{}' is not an admin: only an admin resets usage",
            caller.name
        ))),
        Ok(_) => {
            let worker = service.clone();
            let result = blocking(move || match worker.config.tenant(&name) {
                Some(tenant) => worker.jobs.reset_usage(tenant),
                None => Err(Refusal::NotFound(format!("no tenant '{name}'"))),
            })
            .await;
            match result {
                Ok(usage) => Json(usage).into_response(),
                Err(refusal) => refused(refusal),
            }
        }
        Err(response) => *response,
    }
}

/// A `/metrics` family of tenant usage.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TenantUsage) -> f64,
);

/// The `/metrics` families: name, type, help, value.
const FAMILIES: [Family; 11] = [
    ("spate_tenant_running_jobs", "gauge", "Jobs running.", |u| {
        u.running_jobs as f64
    }),
    (
        "spate_tenant_batches_total",
        "counter",
        "Batches completed.",
        |u| u.batches as f64,
    ),
    (
        "spate_tenant_wasm_calls_total",
        "counter",
        "Operator calls.",
        |u| u.calls as f64,
    ),
    (
        "spate_tenant_wasm_seconds_total",
        "counter",
        "Time in operator calls.",
        |u| u.wasm_seconds,
    ),
    ("spate_tenant_fuel_total", "counter", "Fuel burnt.", |u| {
        u.fuel as f64
    }),
    (
        "spate_tenant_peak_memory_bytes",
        "gauge",
        "Largest linear memory of an instance.",
        |u| u.peak_memory as f64,
    ),
    (
        "spate_tenant_traps_total",
        "counter",
        "Calls that trapped.",
        |u| u.traps as f64,
    ),
    (
        "spate_tenant_limit_hits_total",
        "counter",
        "Calls that hit a limit.",
        |u| u.limit_hits as f64,
    ),
    (
        "spate_tenant_input_records_total",
        "counter",
        "Records read.",
        |u| u.input_records as f64,
    ),
    (
        "spate_tenant_output_records_total",
        "counter",
        "Records handed to outputs.",
        |u| u.output_records as f64,
    ),
    (
        "spate_tenant_output_bytes_total",
        "counter",
        "Bytes (keys and values) of the records handed to outputs.",
        |u| u.output_bytes as f64,
    ),
];

async fn metrics(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let tenant = match tenant(&service, &headers) {
        Ok(tenant) => tenant,
        Err(response) => return *response,
    };
    let usages = usages(&service, tenant);
    let mut out = String::new();
    for (name, kind, help, value) in FAMILIES {
        let samples = usages
            .iter()
            .map(|u| (vec![("tenant", u.tenant.as_str())], value(u)));
        crate::ui::write_family(&mut out, (name, kind, help), samples);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

#[derive(Deserialize)]
struct From {
    #[serde(default)]
    from: u64,
}

async fn logs(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(from): Query<From>,
) -> Response {
    let tenant = match tenant(&service, &headers) {
        Ok(tenant) => tenant,
        Err(response) => return *response,
    };
    let record = match service.jobs.visible(tenant, &id) {
        Ok(record) => record,
        Err(refusal) => return refused(refusal),
    };
    match service.jobs.log(&record, from.from) {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
                (
                    header::HeaderName::from_static("spate-job-state"),
                    record.state.clone(),
                ),
            ],
            text,
        )
            .into_response(),
        Err(refusal) => refused(refusal),
    }
}
