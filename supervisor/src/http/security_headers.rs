//! Headers every response carries: no MIME sniffing, no referrer, no framing, and a CSP that
//! allows nothing unless the handler set its own (the HTML pages do, see `page.rs`).

use axum::extract::Request;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The policy of every response that is not one of our pages (JSON, images, errors).
pub const DENY_ALL_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers to whatever the routes answered.
pub async fn add(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    apply(response.headers_mut());
    response
}

/// Sets the headers on `headers`, keeping a CSP that is already there.
pub fn apply(headers: &mut HeaderMap) {
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(DENY_ALL_CSP));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_page_policy_and_fills_in_the_rest() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("script-src 'sha256-x'"),
        );
        apply(&mut headers);
        assert_eq!(headers[CONTENT_SECURITY_POLICY], "script-src 'sha256-x'");
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[REFERRER_POLICY], "no-referrer");

        let mut bare = HeaderMap::new();
        apply(&mut bare);
        assert_eq!(bare[CONTENT_SECURITY_POLICY], DENY_ALL_CSP);
        assert_eq!(bare[X_FRAME_OPTIONS], "DENY");
    }
}
