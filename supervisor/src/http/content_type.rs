//! Routes that read a JSON body take only `Content-Type: application/json` (parameters such as
//! `charset` allowed). A form or `text/plain` post, which any other site can make a browser
//! send without asking, gets 415 before the body is read.

use axum::extract::FromRequestParts;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::error::ApiError;

/// An extractor that lets the request through only when its body is declared JSON.
#[derive(Debug)]
pub struct RequireJson;

impl<S: Send + Sync> FromRequestParts<S> for RequireJson {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if declares_json(&parts.headers) {
            Ok(RequireJson)
        } else {
            Err(ApiError::unsupported_media_type())
        }
    }
}

/// Whether `Content-Type` is `application/json`, with or without parameters.
fn declares_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, value.parse().expect("value"));
        h
    }

    #[test]
    fn json_with_or_without_parameters_and_nothing_else() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            " application/json ",
        ] {
            assert!(declares_json(&with(ok)), "{ok}");
        }
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/json-seq",
            "text/json",
            "",
        ] {
            assert!(!declares_json(&with(refused)), "{refused}");
        }
        assert!(!declares_json(&HeaderMap::new()));
    }
}
