//! The admin API (axum on hyper). Every route but `/health` and the login needs the admin
//! token or a browser session; handlers read the [`Cache`] and send commands to the fleet, and
//! never wait on a worker.
//!
//! ```text
//!  server.rs          accept loop: connection cap, header/request/write timeouts
//!   └─ router         security_headers.rs   nosniff, no-referrer, CSP on every answer
//!       └─            origin.rs             POST/PUT/DELETE/PATCH from another site: 403
//!           ├─ /health, /login, /logout
//!           └─ auth.rs  token (Bearer, Basic) or session cookie; pages redirect to /login
//!               └─ the routes; JSON bodies only as application/json (content_type.rs)
//! ```

mod accounts;
mod auth;
mod connection_cap;
mod content_type;
mod dashboard;
mod docs;
mod error;
mod events;
mod health;
mod link;
mod login;
mod messages;
mod metrics;
mod openapi;
mod origin;
mod page;
mod phone;
mod qr;
mod security_headers;
mod server;
mod session;
mod settings;
mod webhook;
mod write_stall;

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{middleware, Router};
use ipc_protocol::{AccountId, UnixMillis};
use tokio::time::Instant;
use tower_http::compression::{CompressionLayer, CompressionLevel};
use volume::secret::Secret;

pub use error::ApiError;
pub use health::HealthProbe;
pub use messages::message_json;
pub use phone::mask_reported as mask_reported_phone;
pub use server::{bind, HttpLimits, HttpServer};
pub use session::SessionStore;

use crate::cache::Cache;
use crate::fleet::FleetHandle;
use crate::registry::Registry;

/// Largest request body accepted.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Last known view of every account.
    pub cache: Arc<Cache>,
    /// Commands to the fleet.
    pub fleet: FleetHandle,
    /// The accounts on the volume.
    pub registry: Registry,
    /// The admin token.
    pub admin_token: Arc<Secret<String>>,
    /// The sessions directory's writability, probed in the background.
    pub health: Arc<HealthProbe>,
    /// When the supervisor started.
    pub started: Instant,
    /// Webhook secret and counters.
    pub webhooks: Arc<crate::webhook::Webhooks>,
    /// Browser sessions from `/login`.
    pub sessions: Arc<SessionStore>,
    /// The WhatsApp Web version the workers announce.
    pub versions: Arc<crate::wa_version::WaVersions>,
    /// The longest a handler may hold a request waiting for a state (a QR): half the request
    /// timeout, so the answer always beats the server's own 408.
    pub hold_limit: std::time::Duration,
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Access {
    /// Anyone (`/health`, the login).
    Public,
    /// The admin: token (Bearer, Basic) or browser session.
    Admin,
}

/// One route: method, path template (axum syntax), who may call it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Route {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The path template, e.g. `/api/whatsapp/accounts/{account_id}`.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
    }
}

/// Every route of architecture.md. [`router`] is built from this table and nothing else, so a
/// test that walks it misses none.
pub const ROUTES: &[Route] = &[
    route("GET", "/health", Access::Public),
    route("GET", "/login", Access::Public),
    route("POST", "/login", Access::Public),
    route("POST", "/logout", Access::Public),
    route("GET", "/link/{token}", Access::Public),
    route("GET", "/link/{token}/qr", Access::Public),
    route("POST", "/link/{token}/pairing-code", Access::Public),
    route("GET", "/", Access::Admin),
    route("GET", "/api/status/dashboard", Access::Admin),
    route("GET", "/api/whatsapp/accounts", Access::Admin),
    route("POST", "/api/whatsapp/add-account", Access::Admin),
    route("GET", qr::ROUTE, Access::Admin),
    route(
        "POST",
        "/api/whatsapp/accounts/{account_id}/qr",
        Access::Admin,
    ),
    route(
        "POST",
        "/api/whatsapp/accounts/{account_id}/pairing-code",
        Access::Admin,
    ),
    route(
        "POST",
        "/api/whatsapp/accounts/{account_id}/link-url",
        Access::Admin,
    ),
    route(
        "POST",
        "/api/whatsapp/accounts/{account_id}/restart",
        Access::Admin,
    ),
    route(
        "POST",
        "/api/whatsapp/accounts/{account_id}/logout",
        Access::Admin,
    ),
    route(
        "DELETE",
        "/api/whatsapp/accounts/{account_id}",
        Access::Admin,
    ),
    route(
        "POST",
        "/api/whatsapp/accounts/{account_id}/messages",
        Access::Admin,
    ),
    route(
        "GET",
        "/api/whatsapp/accounts/{account_id}/messages",
        Access::Admin,
    ),
    route(
        "GET",
        "/api/whatsapp/accounts/{account_id}/messages/{message_id}",
        Access::Admin,
    ),
    route(
        "GET",
        "/api/whatsapp/accounts/{account_id}/webhook",
        Access::Admin,
    ),
    route(
        "PUT",
        "/api/whatsapp/accounts/{account_id}/webhook",
        Access::Admin,
    ),
    route("GET", "/api/settings", Access::Admin),
    route("PUT", "/api/settings", Access::Admin),
    route("GET", "/api/events", Access::Admin),
    route("GET", "/metrics", Access::Admin),
    route("GET", "/openapi.json", Access::Admin),
    route("GET", "/docs", Access::Admin),
];

/// The handler of one table entry.
///
/// # Panics
/// On an entry without a handler: a programming error that every test run catches at start.
fn handler(route: &Route) -> MethodRouter<AppState> {
    match (route.method, route.path) {
        ("GET", "/health") => get(health::check),
        ("GET", "/login") => get(login::page),
        ("POST", "/login") => post(login::submit),
        ("POST", "/logout") => post(login::logout),
        ("GET", "/link/{token}") => get(link::page),
        ("GET", "/link/{token}/qr") => get(link::qr),
        ("POST", "/link/{token}/pairing-code") => post(link::pairing_code),
        ("GET", "/") => get(dashboard::page),
        ("GET", "/api/status/dashboard") => compressed(get(dashboard::json)),
        ("GET", "/api/whatsapp/accounts") => compressed(get(accounts::list)),
        ("POST", "/api/whatsapp/add-account") => post(accounts::add),
        ("GET", qr::ROUTE) => get(qr::show),
        ("POST", "/api/whatsapp/accounts/{account_id}/qr") => post(accounts::request_qr),
        ("POST", "/api/whatsapp/accounts/{account_id}/pairing-code") => {
            post(accounts::pairing_code)
        }
        ("POST", "/api/whatsapp/accounts/{account_id}/link-url") => post(link::create),
        ("POST", "/api/whatsapp/accounts/{account_id}/restart") => post(accounts::restart),
        ("POST", "/api/whatsapp/accounts/{account_id}/logout") => post(accounts::logout),
        ("DELETE", "/api/whatsapp/accounts/{account_id}") => delete(accounts::remove),
        ("POST", "/api/whatsapp/accounts/{account_id}/messages") => {
            post(messages::send).layer(DefaultBodyLimit::max(messages::MAX_SEND_BODY_LEN))
        }
        ("GET", "/api/whatsapp/accounts/{account_id}/messages") => get(messages::list),
        ("GET", "/api/whatsapp/accounts/{account_id}/messages/{message_id}") => get(messages::get),
        ("GET", "/api/whatsapp/accounts/{account_id}/webhook") => get(webhook::show),
        ("PUT", "/api/whatsapp/accounts/{account_id}/webhook") => put(webhook::set),
        ("GET", "/api/settings") => get(settings::show),
        ("PUT", "/api/settings") => put(settings::set),
        ("GET", "/api/events") => get(events::stream),
        ("GET", "/metrics") => compressed(get(metrics::render)),
        ("GET", "/openapi.json") => compressed(get(openapi::spec_json)),
        ("GET", "/docs") => get(openapi::docs),
        (method, path) => panic!("route {method} {path} has no handler"),
    }
}

/// A route whose answer grows with the number of accounts: gzip when the client accepts it
/// (`Accept-Encoding: gzip`), at the fastest level (a thousand accounts' dashboard shrinks
/// about tenfold either way).
fn compressed(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.layer(CompressionLayer::new().quality(CompressionLevel::Fastest))
}

/// The router with every route of [`ROUTES`].
pub fn router(state: AppState) -> Router {
    let mut public = Router::new();
    let mut protected = Router::new();
    let mut paths: Vec<(&str, Access)> = Vec::new();
    for r in ROUTES {
        if !paths.contains(&(r.path, r.access)) {
            paths.push((r.path, r.access));
        }
    }
    for (path, access) in paths {
        let methods = ROUTES
            .iter()
            .filter(|r| r.path == path && r.access == access)
            .map(handler)
            .reduce(MethodRouter::merge)
            .unwrap_or_default();
        match access {
            Access::Public => public = public.route(path, methods),
            Access::Admin => protected = protected.route(path, methods),
        }
    }
    let protected = protected.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_admin,
    ));
    public
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_LEN))
        .layer(middleware::from_fn(origin::refuse_cross_site))
        .layer(middleware::from_fn(security_headers::add))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Parses an account id from a path, answering 400 when it is not one.
fn parse_id(raw: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(raw).map_err(|e| ApiError::bad_request("invalid_account_id", e.to_string()))
}

/// RFC 3339 with milliseconds, e.g. `2025-01-27T12:00:00.000Z`.
pub(crate) fn iso(t: UnixMillis) -> String {
    humantime::format_rfc3339_millis(t.as_system_time()).to_string()
}

fn iso_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
