//! Who may call the protected routes: the admin token (`Authorization: Bearer`, or HTTP Basic
//! with the token as password, for scripts and curl) or a browser session from `/login`.
//!
//! 1. A token in `Authorization` that matches, or else a live session cookie, authenticates.
//!    Tokens are compared in constant time (over their SHA-256, so not even the length leaks).
//! 2. Nothing valid: a browser asking for a page (`/`, the QR page) is sent to `/login` (303);
//!    every other route answers 401 in the JSON error shape. No Basic challenge is sent, so
//!    browsers never start caching credentials they would then attach to other sites' requests.
//! 3. A session-authenticated request that changes state must carry an `Origin` (which
//!    `origin.rs` has already checked, like every state-changing request's): 403 otherwise.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, LOCATION, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::origin::is_state_changing;
use super::{login, qr, session, AppState};

/// How the request proved it comes from the admin.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Credential {
    /// The admin token in `Authorization`.
    Token,
    /// A browser session cookie.
    Session,
}

/// Lets the request through only from the admin.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match credential(&state, request.headers()) {
        None => unauthenticated(&request),
        Some(Credential::Session)
            if is_state_changing(request.method()) && !request.headers().contains_key(ORIGIN) =>
        {
            ApiError::cross_origin(
                "a browser session must send an Origin header on requests that change anything",
            )
            .into_response()
        }
        Some(_) => next.run(request).await,
    }
}

fn credential(state: &AppState, headers: &HeaderMap) -> Option<Credential> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_from_header);
    if token.is_some_and(|t| token_matches(&t, state.admin_token.expose())) {
        return Some(Credential::Token);
    }
    session::cookie(headers)
        .filter(|value| state.sessions.is_valid(value, Instant::now()))
        .map(|_| Credential::Session)
}

/// The page routes send a browser to the login page; the rest answer 401.
fn unauthenticated(request: &Request) -> Response {
    let here = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    // The location is printable ASCII by construction (`login::location` encodes the rest).
    match HeaderValue::from_str(&login::location(here)) {
        Ok(location) if wants_page(request) => {
            (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
        }
        _ => ApiError::unauthorized().into_response(),
    }
}

/// Whether the request asks for one of the HTML pages.
fn wants_page(request: &Request) -> bool {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return false;
    }
    match request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
    {
        Some("/" | "/docs") => true,
        Some(qr::ROUTE) => qr::is_page_query(request.uri().query()),
        _ => false,
    }
}

fn token_from_header(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

/// Whether `presented` is the admin token, in time independent of both.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(presented.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    bool::from(a.ct_eq(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_and_basic() {
        assert_eq!(token_from_header("Bearer abc").as_deref(), Some("abc"));
        let basic = format!("Basic {}", STANDARD.encode("admin:s3cret"));
        assert_eq!(token_from_header(&basic).as_deref(), Some("s3cret"));
        assert_eq!(token_from_header("Digest x"), None);
        assert_eq!(token_from_header("Basic !!!"), None);
    }

    #[test]
    fn compares_whole_tokens_only() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("abcd", "abc"));
        assert!(!token_matches("", "abc"));
    }
}
