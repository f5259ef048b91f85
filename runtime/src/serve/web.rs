//! The web UI of `spate serve`: each tenant's jobs, batches, sources, operators, checkpoints
//! and dashboards on the same pages as `spate run`'s UI, under `/tenants/<name>/`. A browser
//! signs in once with the tenant's API token (`/login`) and gets a session cookie; scripts
//! (and Prometheus, at `/tenants/<name>/metrics`) send the token as a bearer token instead. A
//! tenant sees only its own pages (403 for another's); an admin sees every tenant's.
//!
//! Sessions are kept in `<data-dir>/sessions.json`, so a restarted server keeps its signed-in
//! browsers; the file holds each session id's SHA-256, never the id a cookie carries.

use super::api::Service;
use super::config::Tenant;
use super::tls::Peer;
use crate::ui;
use axum::Router;
use axum::extract::{ConnectInfo, Form, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The session cookie's name.
const COOKIE: &str = "spate-session";

/// How long a session lasts after sign-in.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// One signed-in browser as `sessions.json` keeps it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Session {
    /// Hex SHA-256 of the session id.
    id_sha256: String,
    tenant: String,
    /// When it ends, in ms since the Unix epoch (a wall-clock time survives a restart).
    ends_ms: u64,
}

/// Signed-in browsers, by the hash of their session id; saved to `file` (when there is one)
/// at every sign-in and sign-out.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
    file: Option<PathBuf>,
}

impl Sessions {
    /// The sessions `file` keeps that have not ended (none if it does not exist yet; an
    /// unreadable one is logged and ignored: its browsers sign in again).
    pub fn load(file: PathBuf) -> Sessions {
        let now = now_ms();
        let kept: Vec<Session> = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("{}: ignored, browsers sign in again: {e}", file.display());
                Vec::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::warn!("{}: ignored, browsers sign in again: {e}", file.display());
                Vec::new()
            }
        };
        let open = kept
            .into_iter()
            .filter(|s| s.ends_ms > now)
            .map(|s| (s.id_sha256.clone(), s))
            .collect();
        Sessions {
            open: Mutex::new(open),
            file: Some(file),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `tenant`: its id (128 random bits, hex).
    fn open(&self, tenant: &str) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        let id = hex(&bytes);
        let now = now_ms();
        let mut open = self.lock();
        open.retain(|_, s| s.ends_ms > now);
        let session = Session {
            id_sha256: hashed(&id),
            tenant: tenant.to_owned(),
            ends_ms: now + SESSION_LIFETIME.as_millis() as u64,
        };
        open.insert(session.id_sha256.clone(), session);
        self.save(&open);
        Ok(id)
    }

    /// The tenant of session `id`, while it lasts.
    fn tenant(&self, id: &str) -> Option<String> {
        let open = self.lock();
        let session = open.get(&hashed(id))?;
        (session.ends_ms > now_ms()).then(|| session.tenant.clone())
    }

    fn close(&self, id: &str) {
        let mut open = self.lock();
        if open.remove(&hashed(id)).is_some() {
            self.save(&open);
        }
    }

    /// Writes `open` to the file, atomically (a killed server leaves the old or the new one).
    /// A failure is logged: the sessions still work until the server stops.
    fn save(&self, open: &HashMap<String, Session>) {
        let Some(file) = &self.file else {
            return;
        };
        let sessions: Vec<&Session> = open.values().collect();
        let staged = file.with_extension("json.staged");
        let written = serde_json::to_vec(&sessions)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&staged, bytes))
            .and_then(|_| std::fs::rename(&staged, file));
        if let Err(e) = written {
            tracing::warn!(
                "cannot keep the sessions in {}: a restart signs browsers out: {e}",
                file.display()
            );
        }
    }
}

fn now_ms() -> u64 {
    crate::wallclock::now_ms()
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex SHA-256 of session id `id`, as the sessions are kept by.
fn hashed(id: &str) -> String {
    hex(&Sha256::digest(id.as_bytes()))
}

/// The session id the request's cookie carries, if any.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The tenant a request comes from: its bearer token's, else its session's.
pub(super) fn caller<'s>(service: &'s Service, headers: &HeaderMap) -> Option<&'s Tenant> {
    match super::api::bearer_token(headers) {
        Some(token) => service.config.tenant_with_token(token),
        None => {
            let tenant = service.sessions.tenant(session_id(headers)?)?;
            service.config.tenant(&tenant)
        }
    }
}

/// The UI's routes: sign-in, sign-out, and every tenant's pages.
pub fn router(service: Arc<Service>) -> Router {
    let mut router = Router::new()
        .route("/", get(home))
        .route("/login", get(|| async { login_page(None) }).post(login))
        .route("/logout", axum::routing::post(logout))
        .with_state(service.clone());
    for tenant in &service.config.tenants {
        let base = format!("/tenants/{}", tenant.name);
        let scope = Arc::new(ui::Scope {
            registry: service.jobs.registry(&tenant.name),
            tenant: Some(tenant.name.clone()),
            base: base.clone(),
            tenant_usage: Some(usage_reader(&service, &tenant.name)),
        });
        let guard =
            middleware::from_fn_with_state((service.clone(), tenant.name.clone()), only_its_tenant);
        let home = base.clone();
        router = router
            .route(
                &format!("{base}/"),
                get(move || async move { Redirect::permanent(&home) }),
            )
            .nest(&base, ui::router(scope).layer(guard));
    }
    router
}

/// Reads tenant `name`'s usage against its quota, for its pages.
fn usage_reader(service: &Arc<Service>, name: &str) -> ui::TenantUsage {
    let (service, name) = (service.clone(), name.to_owned());
    Arc::new(move || {
        let quota = service.config.tenant(&name).and_then(|t| t.quota.as_ref());
        super::quota::report(&service.jobs.usage(&name), quota)
    })
}

/// Lets a request through to tenant `owner`'s pages if it comes from that tenant or an admin:
/// 401 (a page: to the sign-in) without a valid token or session, 403 from another tenant.
async fn only_its_tenant(
    State((service, owner)): State<(Arc<Service>, String)>,
    request: Request,
    next: Next,
) -> Response {
    match caller(&service, request.headers()) {
        Some(tenant) if tenant.admin || tenant.name == owner => next.run(request).await,
        Some(tenant) => (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "error": format!("tenant '{}' may not see tenant '{owner}'s jobs", tenant.name)
            })),
        )
            .into_response(),
        None if wants_page(request.headers()) => Redirect::to("/login").into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({
                "error": "sign in at /login, or send `Authorization: Bearer <token>`"
            })),
        )
            .into_response(),
    }
}

/// Whether the request is a browser's for a page (it accepts HTML).
fn wants_page(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// `/`: the caller's own pages; an admin's: the list of tenants; else the sign-in.
async fn home(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    match caller(&service, &headers) {
        Some(tenant) if tenant.admin => {
            let links: String = service
                .config
                .tenants
                .iter()
                .map(|t| format!("<li><a href=\"/tenants/{0}\">{0}</a></li>", t.name))
                .collect();
            shell(
                "Tenants",
                &format!("<h1>Tenants</h1><ul>{links}</ul>{LOGOUT}"),
            )
        }
        Some(tenant) => Redirect::to(&format!("/tenants/{}", tenant.name)).into_response(),
        None => Redirect::to("/login").into_response(),
    }
}

/// The sign-out button every server-rendered page carries.
const LOGOUT: &str = "<form method=\"post\" action=\"/logout\"><button>Sign out</button></form>";

/// A server-rendered page (tenant names are letters, digits, `-` and `_`: nothing to escape).
fn shell(title: &str, body: &str) -> Response {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - Spate</title></head><body>{body}</body></html>\n"
    ))
    .into_response()
}

/// The sign-in form, with why the last try failed.
fn login_page(error: Option<&str>) -> Response {
    let error = error.map_or(String::new(), |e| format!("<p role=\"alert\">{e}</p>"));
    shell(
        "Sign in",
        &format!(
            "<h1>Spate: sign in</h1>{error}<form method=\"post\" action=\"/login\">\
             <label>API token <input type=\"password\" name=\"token\" autocomplete=\"off\" \
             required></label> <button>Sign in</button></form>"
        ),
    )
}

/// The sign-in form's fields.
#[derive(Deserialize)]
struct Login {
    token: String,
}

/// `POST /login`: a valid token opens a session (an HttpOnly, SameSite=Strict cookie) and
/// leads to the tenant's pages.
async fn login(
    State(service): State<Arc<Service>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Form(form): Form<Login>,
) -> Response {
    let Some(tenant) = service.config.tenant_with_token(form.token.trim()) else {
        let mut page = login_page(Some("That token is not valid."));
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return page;
    };
    if !tenant.takes_certificate(peer.certificate_sha256) {
        let why = super::api::not_bound_certificate(tenant, peer);
        let mut page = login_page(Some(&format!("{why}.")));
        *page.status_mut() = StatusCode::FORBIDDEN;
        return page;
    }
    let id = match service.sessions.open(&tenant.name) {
        Ok(id) => id,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot open a session: {e}"),
            )
                .into_response();
        }
    };
    // Over HTTPS the browser sends it back over HTTPS only.
    let secure = if service.config.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_LIFETIME.as_secs()
    );
    let target = if tenant.admin {
        "/".to_owned()
    } else {
        format!("/tenants/{}", tenant.name)
    };
    ([(header::SET_COOKIE, cookie)], Redirect::to(&target)).into_response()
}

/// `POST /logout`: ends the session.
async fn logout(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        service.sessions.close(id);
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "theme=dark; spate-session=abc123; x=y".parse().unwrap(),
        );
        assert_eq!(session_id(&headers), Some("abc123"));
        headers.insert(header::COOKIE, "spate-sessionx=1".parse().unwrap());
        assert_eq!(session_id(&headers), None);
    }

    #[test]
    fn a_session_names_its_tenant_until_it_is_closed() {
        let sessions = Sessions::default();
        let id = sessions.open("alpha").unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(sessions.tenant(&id).as_deref(), Some("alpha"));
        assert_ne!(sessions.open("alpha").unwrap(), id);
        sessions.close(&id);
        assert_eq!(sessions.tenant(&id), None);
    }

    #[test]
    fn sessions_outlive_a_restart_by_their_hashes_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sessions.json");
        let sessions = Sessions::load(file.clone());
        let kept = sessions.open("alpha").unwrap();
        let closed = sessions.open("beta").unwrap();
        sessions.close(&closed);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains(&kept),
            "the file holds a usable session id: {text}"
        );
        let restarted = Sessions::load(file.clone());
        assert_eq!(restarted.tenant(&kept).as_deref(), Some("alpha"));
        assert_eq!(restarted.tenant(&closed), None);
        // An ended session is not brought back.
        let mut ended: Vec<Session> = serde_json::from_str(&text).unwrap();
        ended[0].ends_ms = now_ms() - 1;
        std::fs::write(&file, serde_json::to_vec(&ended).unwrap()).unwrap();
        assert_eq!(Sessions::load(file).tenant(&kept), None);
    }
}
