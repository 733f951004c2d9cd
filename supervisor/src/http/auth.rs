//! The admin token: Bearer, or HTTP Basic with the token as password; compared in constant time.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

/// Lets the request through only with the admin token.
///
/// # Errors
/// 401 in the JSON error shape.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_from_header);
    match presented {
        Some(token) if matches(&token, state.admin_token.expose()) => Ok(next.run(request).await),
        _ => Err(ApiError::unauthorized()),
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

fn matches(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
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
        assert!(matches("abc", "abc"));
        assert!(!matches("ab", "abc"));
        assert!(!matches("abd", "abc"));
        assert!(!matches("", "abc"));
    }
}
