//! `GET` and `PUT /api/settings`: the settings that change at run time, without a redeploy.
//!
//! Today one: `waVersion`, the WhatsApp Web version the workers announce (see
//! [`crate::wa_version`]). A change is stored on the volume before it is used, reaches every
//! running worker at once, and accounts stopped as `client_outdated` dial again with it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::content_type::RequireJson;
use super::error::ApiError;
use super::{iso, AppState};
use crate::fleet::FleetMsg;
use crate::wa_version::{self, Source};

/// `GET /api/settings`.
#[utoipa::path(get, path = "/api/settings", tag = "service", summary = "The run-time settings",
    responses((status = 200, description = "The settings", body = super::openapi::Settings)))]
pub async fn show(State(state): State<AppState>) -> Json<Value> {
    Json(answer(&state))
}

/// `PUT /api/settings` with `{"waVersion": "2.3000.1027934701"}`.
///
/// # Errors
/// 400 for a bad body, an unknown field or a malformed version, 413 for a body over 64 KiB,
/// 415 when the body is not declared JSON, 507 or 500 when the volume refuses the write (then
/// nothing changed).
#[utoipa::path(put, path = "/api/settings", tag = "service", summary = "Changes run-time settings",
    request_body = super::openapi::SettingsBody,
    responses((status = 200, description = "Stored and in use", body = super::openapi::Settings),
        (status = 500, response = super::openapi::Error), (status = 507, response = super::openapi::Error)))]
pub async fn set(
    State(state): State<AppState>,
    _json: RequireJson,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let value: Value = super::error::json_body(body, super::MAX_BODY_LEN)?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "body must be an object like {\"waVersion\": \"2.3000.1027934701\"}",
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| k.as_str() != "waVersion") {
        return Err(ApiError::bad_request(
            "invalid_json",
            format!("unknown field `{unknown}`, expected `waVersion`"),
        ));
    }
    let Some(raw) = fields.get("waVersion") else {
        return Ok(Json(answer(&state)));
    };
    let version = raw
        .as_str()
        .ok_or_else(|| "waVersion must be a string".to_owned())
        .and_then(wa_version::parse)
        .map_err(|e| ApiError::bad_request("invalid_wa_version", e))?;
    let versions = state.versions.clone();
    let changed = tokio::task::spawn_blocking(move || versions.set(version, Source::Api))
        .await
        .map_err(|_| ApiError::internal("settings write was interrupted"))?
        .map_err(|e| {
            if crate::sessions_dir::is_storage_trouble(&e) {
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    format!("the sessions volume refused the write: {e}"),
                )
            } else {
                ApiError::internal(format!("cannot store the settings: {e}"))
            }
        })?;
    if changed {
        let _ = state.fleet.sender().send(FleetMsg::WaVersion(version));
    }
    Ok(Json(answer(&state)))
}

fn answer(state: &AppState) -> Value {
    let current = state.versions.current();
    json!({
        "waVersion": current.version.to_string(),
        "waVersionSource": current.source,
        "waVersionUpdatedAt": current.updated_at.map(iso),
        "waVersionUrl": state.versions.url().map(ToString::to_string),
    })
}
