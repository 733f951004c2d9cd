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
mod error;
mod events;
mod health;
mod login;
mod messages;
mod metrics;
mod origin;
mod page;
mod phone;
mod qr;
mod security_headers;
mod server;
mod session;
mod webhook;
mod write_stall;

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{middleware, Router};
use ipc_protocol::{AccountId, UnixMillis};
use tokio::time::Instant;
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
}

/// The router with every route of architecture.md.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/", get(dashboard::page))
        .route("/api/status/dashboard", get(dashboard::json))
        .route("/api/whatsapp/accounts", get(accounts::list))
        .route("/api/whatsapp/add-account", post(accounts::add))
        .route(qr::ROUTE, get(qr::show))
        .route(
            "/api/whatsapp/accounts/{account_id}/qr",
            post(accounts::request_qr),
        )
        .route(
            "/api/whatsapp/accounts/{account_id}/restart",
            post(accounts::restart),
        )
        .route(
            "/api/whatsapp/accounts/{account_id}/logout",
            post(accounts::logout),
        )
        .route(
            "/api/whatsapp/accounts/{account_id}",
            delete(accounts::remove),
        )
        .route(
            "/api/whatsapp/accounts/{account_id}/messages",
            post(messages::send)
                .layer(DefaultBodyLimit::max(messages::MAX_SEND_BODY_LEN))
                .get(messages::list),
        )
        .route(
            "/api/whatsapp/accounts/{account_id}/messages/{message_id}",
            get(messages::get),
        )
        .route(
            "/api/whatsapp/accounts/{account_id}/webhook",
            get(webhook::show).put(webhook::set),
        )
        .route("/api/events", get(events::stream))
        .route("/metrics", get(metrics::render))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    Router::new()
        .route("/health", get(health::check))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
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
fn iso(t: UnixMillis) -> String {
    humantime::format_rfc3339_millis(t.as_system_time()).to_string()
}

fn iso_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
