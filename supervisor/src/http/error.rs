//! API errors in the seed's shape: `{"success":false,"error":{"code","message"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::fleet::CommandError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 for an account.
    pub fn account_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "account_not_found",
            format!("account {id} not found"),
        )
    }

    /// 401 with a Bearer challenge, never a Basic one: browsers would cache Basic
    /// credentials and attach them to other sites' requests.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong admin token: send Authorization: Bearer <token>, or Basic auth with the token as password, or log in at /login",
        )
    }

    /// 403 for a request that changes state on behalf of another site.
    pub fn cross_origin(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "cross_origin", message)
    }

    /// 415 for a JSON route sent something else.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        )
    }

    /// 500, for failures of the volume.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let (status, code) = match e {
            CommandError::NotFound => (StatusCode::NOT_FOUND, "account_not_found"),
            CommandError::NotRunning => (StatusCode::CONFLICT, "worker_not_running"),
            CommandError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "success": false,
            "error": { "code": self.code, "message": self.message },
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"wafleet\""),
            );
        }
        response
    }
}

/// A JSON route's body, or the answer for a body that could not be read: 413 over `limit`
/// bytes, 400 otherwise.
///
/// # Errors
/// The [`ApiError`] to answer.
pub fn body_or_error(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body exceeds {limit} bytes"),
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })
}

/// A JSON route's body parsed as `T`: as [`body_or_error`], then 400 `invalid_json` naming what
/// does not parse.
///
/// # Errors
/// The [`ApiError`] to answer.
pub fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    parse_json(&body_or_error(body, limit)?)
}

/// `bytes` parsed as JSON `T`, or 400 `invalid_json` naming what does not parse.
///
/// # Errors
/// The [`ApiError`] to answer.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid request body: {e}")))
}
