//! Requests that change state come from our own pages or from non-browser clients, never from
//! another site.
//!
//! A browser attaches our cookie, or credentials it cached, to a form another site submits; it
//! also says where the request came from. So, for every POST, PUT, DELETE and PATCH, whatever
//! the credentials:
//!
//! 1. `Sec-Fetch-Site: cross-site` or `same-site` is refused (a sibling subdomain is another
//!    party too).
//! 2. An `Origin` is compared with the origin this request was sent to: `X-Forwarded-Proto`
//!    (else `http`) and `X-Forwarded-Host` (else `Host`), default ports dropped. Any other
//!    origin, `null` included, is refused.
//!
//! A request authenticated by the session cookie must carry an `Origin` too (auth.rs): browsers
//! send one on every such request, while `curl` and scripts use a token and send none.

use axum::extract::Request;
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Whether `method` can change state (everything but GET, HEAD, OPTIONS, TRACE).
pub fn is_state_changing(method: &Method) -> bool {
    !method.is_safe()
}

/// Refuses state-changing requests from another site with 403 `cross_origin`.
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    if is_state_changing(request.method()) {
        if let Err(why) = check(request.headers()) {
            return ApiError::cross_origin(why).into_response();
        }
    }
    next.run(request).await
}

/// Whether the request's headers say it comes from another site, and why.
///
/// # Errors
/// The reason, for the error message.
pub fn check(headers: &HeaderMap) -> Result<(), &'static str> {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if fetch_site.is_some_and(|s| {
        s.eq_ignore_ascii_case("cross-site") || s.eq_ignore_ascii_case("same-site")
    }) {
        return Err("requests from other sites cannot change anything here");
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().ok().and_then(normalize);
    match (origin, own_origin(headers)) {
        (Some(origin), Some(own)) if origin == own => Ok(()),
        _ => Err("the request's Origin is not this server"),
    }
}

/// Whether the client reached us over TLS (a proxy in front says so in `X-Forwarded-Proto`).
pub fn is_https(headers: &HeaderMap) -> bool {
    scheme(headers) == "https"
}

/// The origin this request was sent to, normalized.
fn own_origin(headers: &HeaderMap) -> Option<String> {
    let host =
        first_value(headers, "x-forwarded-host").or_else(|| first_value(headers, HOST.as_str()))?;
    normalize(&format!("{}://{host}", scheme(headers)))
}

fn scheme(headers: &HeaderMap) -> String {
    first_value(headers, "x-forwarded-proto")
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_else(|| "http".to_owned())
}

/// The first of a header's comma-separated values (proxies append theirs).
fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `scheme://host[:port]` in lowercase, without the scheme's default port; `None` for anything
/// else (`null`, paths, credentials, unknown schemes).
fn normalize(origin: &str) -> Option<String> {
    let origin = origin.trim().to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    if authority.is_empty()
        || authority.contains(['/', '@', '?', '#'])
        || authority.contains(char::is_whitespace)
    {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn same_origin_passes_and_anything_else_is_refused() {
        let ok = [
            headers(&[("host", "127.0.0.1:8080")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ]),
            headers(&[
                ("host", "Admin.Example:80"),
                ("origin", "http://admin.example"),
            ]),
            headers(&[("host", "localhost"), ("origin", "http://localhost:80")]),
            headers(&[
                ("host", "x"),
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://x"),
            ]),
            headers(&[("host", "x"), ("sec-fetch-site", "none")]),
        ];
        for h in ok {
            assert_eq!(check(&h), Ok(()), "{h:?}");
        }
        let refused = [
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://evil.example"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8081"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://127.0.0.1:8080"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[("host", "a.example"), ("origin", "http://a.example.evil")]),
            headers(&[("host", "a.example"), ("origin", "http://user@a.example")]),
            headers(&[("origin", "http://a.example")]),
            headers(&[("host", "x"), ("sec-fetch-site", "cross-site")]),
            headers(&[
                ("host", "x"),
                ("sec-fetch-site", "same-site"),
                ("origin", "http://x"),
            ]),
        ];
        for h in refused {
            assert!(check(&h).is_err(), "{h:?}");
        }
    }

    #[test]
    fn behind_a_tls_proxy_the_forwarded_headers_name_the_origin() {
        let railway = headers(&[
            ("host", "app.up.railway.app"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://app.up.railway.app"),
        ]);
        assert_eq!(check(&railway), Ok(()));
        assert!(is_https(&railway));
        let forwarded_host = headers(&[
            ("host", "10.0.0.7:8080"),
            ("x-forwarded-host", "admin.example, proxy.internal"),
            ("x-forwarded-proto", "https,http"),
            ("origin", "https://admin.example:443"),
        ]);
        assert_eq!(check(&forwarded_host), Ok(()));
        let plain_page_on_tls_host = headers(&[
            ("host", "app.up.railway.app"),
            ("x-forwarded-proto", "https"),
            ("origin", "http://app.up.railway.app"),
        ]);
        assert!(check(&plain_page_on_tls_host).is_err());
        assert!(!is_https(&headers(&[("host", "x")])));
    }

    #[test]
    fn only_methods_that_change_state_are_checked() {
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(is_state_changing(&m), "{m}");
        }
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!is_state_changing(&m), "{m}");
        }
    }
}
