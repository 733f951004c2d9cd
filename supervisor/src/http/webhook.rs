//! `GET` and `PUT /api/whatsapp/accounts/:id/webhook`: the account's own webhook URL.
//!
//! An account's events go to its own URL when one is set, and also to the global `WEBHOOK_URL`
//! when that is set (two deliveries, each signed with the same secret). `{"url": null}` clears
//! the account's URL. The URL lives in the account's `account.json`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use tracing::info;

use super::content_type::RequireJson;
use super::error::ApiError;
use super::{parse_id, AppState};
use crate::fleet::Command;
use crate::registry::RegistryError;
use crate::webhook::url::WebhookUrl;

/// `GET /api/whatsapp/accounts/:id/webhook`.
///
/// # Errors
/// 400 for an invalid id, 404 for an unknown account.
#[utoipa::path(get, path = "/api/whatsapp/accounts/{account_id}/webhook", tag = "accounts", summary = "The account's own webhook URL",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64")),
    responses((status = 200, description = "The URL, or null", body = super::openapi::WebhookAnswer)))]
pub async fn show(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&raw)?;
    let view = state
        .cache
        .get(&id)
        .ok_or_else(|| ApiError::account_not_found(id.as_str()))?;
    Ok(Json(answer(&id, view.account.webhook_url.as_ref())))
}

/// `PUT /api/whatsapp/accounts/:id/webhook` with `{"url": "https://…"}` or `{"url": null}`.
///
/// # Errors
/// 400 for an invalid id, body or URL (or any field but `url`), 404 for an unknown account,
/// 415 when the body is not declared JSON, 500 when `account.json` or the generated secret
/// cannot be written.
#[utoipa::path(put, path = "/api/whatsapp/accounts/{account_id}/webhook", tag = "accounts", summary = "Sets or clears the account's webhook URL",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64")), request_body = super::openapi::WebhookBody,
    responses((status = 200, description = "Stored", body = super::openapi::WebhookAnswer), (status = 500, response = super::openapi::Error)))]
pub async fn set(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    _json: RequireJson,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&raw)?;
    let body = super::error::body_or_error(body, super::MAX_BODY_LEN)?;
    let url = parse_body(&body)?;
    if !state.cache.contains(&id) {
        return Err(ApiError::account_not_found(id.as_str()));
    }
    let hooks = state.webhooks.clone();
    let _serial = hooks.account_writes.lock().await;
    if url.is_some() {
        // The secret exists before the first event goes to the new URL.
        let hub = hooks.clone();
        tokio::task::spawn_blocking(move || hub.ensure_secret())
            .await
            .map_err(|_| ApiError::internal("webhook secret setup was interrupted"))?
            .map_err(|e| ApiError::internal(format!("cannot store the webhook secret: {e}")))?;
    }
    let registry = state.registry.clone();
    let (write_id, write_url) = (id.clone(), url.clone());
    let saved = tokio::task::spawn_blocking(move || registry.set_webhook_url(&write_id, write_url))
        .await
        .map_err(|_| ApiError::internal("account write was interrupted"))?
        .map_err(|e| match e {
            RegistryError::NotFound(id) => ApiError::account_not_found(id.as_str()),
            other => ApiError::internal(other.to_string()),
        })?;
    // The fleet is the one writer of the account view.
    state.fleet.command(Command::AccountSaved(saved)).await?;
    match &url {
        Some(u) => info!(account = %id, target = %u, "account webhook url set"),
        None => info!(account = %id, "account webhook url cleared"),
    }
    Ok(Json(answer(&id, url.as_ref())))
}

/// `{"url": "<http(s) url>"}` or `{"url": null}`, nothing else.
fn parse_body(body: &[u8]) -> Result<Option<WebhookUrl>, ApiError> {
    let value: Value = super::error::parse_json(body)?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "body must be an object like {\"url\": \"https://…\"}",
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| k.as_str() != "url") {
        return Err(ApiError::bad_request(
            "invalid_json",
            format!("unknown field `{unknown}`, expected `url`"),
        ));
    }
    match fields.get("url") {
        None => Err(ApiError::bad_request(
            "invalid_json",
            "missing field `url` (use null to clear)",
        )),
        Some(Value::Null) => Ok(None),
        Some(Value::String(raw)) => WebhookUrl::parse(raw)
            .map(Some)
            .map_err(|e| ApiError::bad_request("invalid_url", e.to_string())),
        Some(_) => Err(ApiError::bad_request(
            "invalid_url",
            "url must be a string or null",
        )),
    }
}

fn answer(id: &ipc_protocol::AccountId, url: Option<&WebhookUrl>) -> Value {
    json!({ "success": true, "accountId": id, "url": url })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_a_url_or_null_and_nothing_else() {
        let set = parse_body(br#"{"url":"https://example.com/h"}"#).expect("set");
        assert_eq!(
            set.map(|u| u.as_str().to_owned()).as_deref(),
            Some("https://example.com/h")
        );
        assert_eq!(parse_body(br#"{"url":null}"#).expect("clear"), None);
        for bad in [
            &br#"{}"#[..],
            br#"{"url":"ftp://x"}"#,
            br#"{"url":"https://x","extra":1}"#,
            br#"{"url":5}"#,
            br#"["https://x"]"#,
            b"not json",
        ] {
            let err = parse_body(bad).expect_err("refused");
            let text = format!("{err:?}");
            assert!(text.contains("400"), "{text}");
        }
    }
}
