//! The UI's routes: pages, the JSON API (`/api/v1/...`), `/metrics`, and the event stream
//! that tells open pages something changed.

use super::{pages, prometheus};
use crate::sink::dashboard;
use crate::status::{BatchSummary, JobSnapshot, Registry};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// What one UI shows: the jobs of a registry and the dashboards of a tenant, at an address.
pub struct Scope {
    /// The jobs shown.
    pub registry: Arc<Registry>,
    /// The tenant whose dashboards are shown (`None`: every dashboard of the process).
    pub tenant: Option<String>,
    /// The path the UI's addresses start with (empty: the root; `spate serve`:
    /// `/tenants/<name>`).
    pub base: String,
    /// What the tenant has consumed against its quota (`spate serve`), as JSON.
    pub tenant_usage: Option<TenantUsage>,
}

/// Reads a tenant's usage and quota now (see [`Scope::tenant_usage`]).
pub type TenantUsage = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

impl Scope {
    /// The shell of a page of kind `kind` titled `title`, its links under this UI's base.
    fn page(&self, kind: &str, title: &str) -> Response {
        pages::page(kind, title, &self.base).into_response()
    }

    /// The dashboards this UI shows.
    fn boards(&self) -> Vec<Arc<dashboard::Board>> {
        let mut boards = dashboard::boards();
        if let Some(tenant) = &self.tenant {
            boards.retain(|b| b.tenant.as_ref() == Some(tenant));
        }
        boards
    }
}

/// The UI's routes over what `scope` shows (its base is where the router is nested).
pub fn router(scope: Arc<Scope>) -> Router {
    Router::new()
        .route("/", get(|State(scope): Shared| async move { scope.page("jobs", "Spate") }))
        .route(
            "/jobs/{name}",
            get(|State(scope): Shared, Path(name): Path<String>| async move {
                scope.page("job", &name)
            }),
        )
        .route(
            "/jobs/{name}/batches/{time}",
            get(
                |State(scope): Shared, Path((name, _)): Path<(String, u64)>| async move {
                    scope.page("batch", &name)
                },
            ),
        )
        .route(
            "/jobs/{name}/{view}",
            get(
                |State(scope): Shared, Path((name, view)): Path<(String, String)>| async move {
                    match view.as_str() {
                        "sources" | "operators" | "checkpoints" => scope.page(&view, &name),
                        _ => not_found(format!("no page '{view}'")),
                    }
                },
            ),
        )
        .route(
            "/dashboards/{name}",
            get(|State(scope): Shared, Path(name): Path<String>| async move {
                scope.page("dashboard", &name)
            }),
        )
        .route("/assets/{file}", get(asset))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/{name}", get(job))
        .route("/api/v1/jobs/{name}/batches", get(batches))
        .route("/api/v1/jobs/{name}/batches/{time}", get(batch))
        .route("/api/v1/jobs/{name}/sources", get(sources))
        .route("/api/v1/jobs/{name}/operators", get(operators))
        .route("/api/v1/jobs/{name}/checkpoints", get(checkpoints))
        .route("/api/v1/dashboards", get(dashboards))
        .route("/api/v1/dashboards/{name}", get(dashboard))
        .route("/api/v1/tenant", get(tenant_usage))
        .route("/api/v1/events", get(events))
        .route("/metrics", get(metrics))
        .with_state(scope)
}

type Shared = State<Arc<Scope>>;

fn not_found(what: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": what })),
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match pages::asset(&file) {
        Some((mime, body)) => ([(header::CONTENT_TYPE, mime)], body).into_response(),
        None => not_found(format!("no asset '{file}'")),
    }
}

async fn jobs(State(scope): Shared) -> Json<Vec<JobSnapshot>> {
    Json(scope.registry.jobs().iter().map(|j| j.snapshot()).collect())
}

async fn job(State(scope): Shared, Path(name): Path<String>) -> Response {
    match scope.registry.job(&name) {
        Some(job) => Json(job.snapshot()).into_response(),
        None => not_found(format!("no job '{name}'")),
    }
}

/// `?limit=N`: the last N batches (default 100, at most every one kept).
#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn batches(
    State(scope): Shared,
    Path(name): Path<String>,
    Query(limit): Query<Limit>,
) -> Response {
    match scope.registry.job(&name) {
        Some(job) => {
            let batches: Vec<BatchSummary> = job.recent(limit.limit.unwrap_or(100));
            Json(batches).into_response()
        }
        None => not_found(format!("no job '{name}'")),
    }
}

async fn batch(State(scope): Shared, Path((name, time)): Path<(String, u64)>) -> Response {
    let Some(job) = scope.registry.job(&name) else {
        return not_found(format!("no job '{name}'"));
    };
    match job.batch(time) {
        Some(batch) => Json(batch).into_response(),
        None => not_found(format!(
            "job '{name}' has no batch {time} ms (the last {} are kept)",
            crate::status::RETAINED_BATCHES
        )),
    }
}

/// Where each source is: position, rate, lag, reconnects, errors.
async fn sources(State(scope): Shared, Path(name): Path<String>) -> Response {
    match scope.registry.job(&name) {
        Some(job) => Json(job.sources()).into_response(),
        None => not_found(format!("no job '{name}'")),
    }
}

/// Each operator with what it consumed, per batch over the last `?limit=N` (default 100).
async fn operators(
    State(scope): Shared,
    Path(name): Path<String>,
    Query(limit): Query<Limit>,
) -> Response {
    match scope.registry.job(&name) {
        Some(job) => Json(job.operators(limit.limit.unwrap_or(100))).into_response(),
        None => not_found(format!("no job '{name}'")),
    }
}

/// The checkpoints written and the recoveries.
async fn checkpoints(State(scope): Shared, Path(name): Path<String>) -> Response {
    match scope.registry.job(&name) {
        Some(job) => Json(job.checkpoints()).into_response(),
        None => not_found(format!("no job '{name}'")),
    }
}

async fn dashboards(State(scope): Shared) -> Json<Vec<serde_json::Value>> {
    Json(
        scope
            .boards()
            .iter()
            .map(|b| {
                serde_json::json!({
                    "name": b.settings.name,
                    "title": b.settings.title,
                    "job": b.job,
                })
            })
            .collect(),
    )
}

async fn dashboard(State(scope): Shared, Path(name): Path<String>) -> Response {
    match scope.boards().into_iter().find(|b| b.settings.name == name) {
        Some(board) => Json(board.view()).into_response(),
        None => not_found(format!("no dashboard '{name}'")),
    }
}

/// The tenant's usage against its quota, where the UI has a tenant (`spate serve`).
async fn tenant_usage(State(scope): Shared) -> Response {
    match &scope.tenant_usage {
        Some(read) => Json(read()).into_response(),
        None => not_found("this UI shows no tenant's usage".into()),
    }
}

/// An event named `change` (its data: a version number) whenever a job changes; several
/// changes within a quarter second make one event, so a page refreshes at most 4 times a second.
async fn events(
    State(scope): Shared,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let changes = scope.registry.subscribe();
    let stream = futures_util::stream::unfold(changes, |mut changes| async move {
        changes.changed().await.ok()?;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let version = *changes.borrow_and_update();
        Some((
            Ok(Event::default().event("change").data(version.to_string())),
            changes,
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn metrics(State(scope): Shared) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus::render(&scope.registry),
    )
}
