//! `GET /login`, `POST /login` and `POST /logout`: browser sessions (see `session.rs`).
//!
//! 1. `GET /login?next=/path` shows a form asking for the admin token.
//! 2. `POST /login` (a form: `token`, `next`) compares the token in constant time. Right: a new
//!    session, its cookie, and 303 to `next` (a path on this server, else `/`). Wrong: 401 and
//!    the form again.
//! 3. `POST /logout` ends the session the cookie names, tells the browser to drop the cookie,
//!    and sends it to `/login`.
//!
//! Neither the token nor the session id is ever logged.

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use tracing::{info, warn};

use super::auth::token_matches;
use super::error::ApiError;
use super::origin::is_https;
use super::page::{escape, Page};
use super::{session, AppState};

/// The login page.
static LOGIN_PAGE: LazyLock<Page> = LazyLock::new(|| Page::new(include_str!("login.html")));

/// The query of `GET /login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    /// Where to go after logging in.
    next: Option<String>,
}

/// The form `POST /login` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginForm {
    /// The admin token.
    token: String,
    /// Where to go after logging in.
    #[serde(default)]
    next: Option<String>,
}

/// `GET /login`.
#[utoipa::path(get, path = "/login", tag = "pages", summary = "The login form",
    params(("next" = Option<String>, Query, description = "Where to go after logging in")),
    responses((status = 200, description = "The login page", content_type = "text/html")))]
pub async fn page(Query(query): Query<LoginQuery>) -> Response {
    render(StatusCode::OK, query.next.as_deref(), None)
}

/// `POST /login`.
///
/// # Errors
/// 415 or 400 when the body is not the login form.
#[utoipa::path(post, path = "/login", tag = "pages", summary = "Starts a browser session",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Logged in: the session cookie is set, and Location is `next` or `/`"),
        (status = 401, description = "Not the admin token: the login page again", content_type = "text/html"),
        (status = 400, response = super::openapi::Error), (status = 415, response = super::openapi::Error)))]
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let Form(form) = form.map_err(|e| match e.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the login takes a form (application/x-www-form-urlencoded)",
        ),
        status => ApiError::new(status, "bad_login_form", e.body_text()),
    })?;
    if !token_matches(&form.token, state.admin_token.expose()) {
        warn!("login refused: wrong token");
        return Ok(render(
            StatusCode::UNAUTHORIZED,
            form.next.as_deref(),
            Some("That is not the admin token."),
        ));
    }
    let cookie = state.sessions.create(Instant::now());
    info!("browser session started");
    let target = HeaderValue::from_str(safe_next(form.next.as_deref()))
        .unwrap_or_else(|_| HeaderValue::from_static("/"));
    Ok((
        StatusCode::SEE_OTHER,
        [
            (LOCATION, target),
            (SET_COOKIE, session::set_cookie(&cookie, is_https(&headers))),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// `POST /logout`.
#[utoipa::path(post, path = "/logout", tag = "pages", summary = "Ends the browser session",
    responses((status = 303, description = "The session is ended and its cookie cleared; Location is /login")))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(value) = session::cookie(&headers) {
        state.sessions.revoke(value);
        info!("browser session ended");
    }
    (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, HeaderValue::from_static("/login")),
            (SET_COOKIE, session::clear_cookie(is_https(&headers))),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response()
}

/// `/login?next=<here>`, for a browser that asked for a page without a session.
pub fn location(here: &str) -> String {
    let mut out = String::from("/login?next=");
    for b in safe_next(Some(here)).bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn render(status: StatusCode, next: Option<&str>, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    let html = LOGIN_PAGE
        .template()
        .replace("__NEXT__", &escape(safe_next(next)))
        .replace("__ERROR__", &error);
    LOGIN_PAGE.respond(status, html)
}

/// `next` when it is a path on this server, else `/`: never another host (`//evil`, `/\evil`),
/// never anything that is not printable ASCII.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() <= 2048
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        for ok in [
            "/",
            "/api/whatsapp/qr/acct-a",
            "/api/whatsapp/qr/a?format=html",
        ] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "/a\\b",
            "javascript:alert(1)",
            "/a b",
            "/\u{e9}",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_login_location_carries_the_page_encoded() {
        assert_eq!(location("/"), "/login?next=/");
        assert_eq!(
            location("/api/whatsapp/qr/a-b?format=html&x=1"),
            "/login?next=/api/whatsapp/qr/a-b%3Fformat%3Dhtml%26x%3D1"
        );
        assert_eq!(location("//evil.example"), "/login?next=/");
    }

    #[test]
    fn the_page_escapes_what_it_echoes() {
        let html = LOGIN_PAGE.template().replace(
            "__NEXT__",
            &escape(safe_next(Some("/\"><script>x</script>"))),
        );
        assert!(!html.contains("<script>x"), "{html}");
    }
}
