//! Account routes: list, add, and the per-account actions (qr, restart, logout, delete).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use ipc_protocol::{AccountId, UnixMillis};
use serde::Deserialize;
use serde_json::json;
use tracing::info;
use worker::Browser;

use super::content_type::RequireJson;
use super::dashboard::masked_phone;
use super::error::ApiError;
use super::{parse_id, phone, AppState};
use crate::fleet::Command;
use crate::registry::{generate_id, Account, RegistryError};
use crate::sessions_dir;

const MAX_NAME_LEN: usize = 100;

/// `GET /api/whatsapp/accounts`.
#[utoipa::path(get, path = "/api/whatsapp/accounts", tag = "accounts", summary = "Lists the accounts",
    responses((status = 200, description = "Every account (gzip when asked)", body = super::openapi::AccountList)))]
pub async fn list(State(state): State<AppState>) -> impl IntoResponse {
    let accounts: Vec<_> = state.cache.read_all(|views, _| {
        views
            .map(|v| {
                json!({
                    "id": v.account.id,
                    "name": v.account.name,
                    "phone": masked_phone(v),
                    "status": v.state.status,
                })
            })
            .collect()
    });
    Json(json!({ "success": true, "accounts": accounts }))
}

/// The body of `POST /api/whatsapp/add-account`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddAccount {
    name: String,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default, rename = "accountId")]
    account_id: Option<String>,
    /// The companion identity for this account: `"Name,Platform,Version"` or the seed's
    /// `["Name", "Platform", "Version"]`.
    #[serde(default)]
    browser: Option<BrowserField>,
}

/// `browser` as a string or as the seed's (Baileys') array.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum BrowserField {
    Text(String),
    Parts(Vec<String>),
}

impl BrowserField {
    /// The validated identity, in its `Name,Platform,Version` form.
    fn parse(self) -> Result<String, ApiError> {
        let text = match self {
            BrowserField::Text(text) => text,
            BrowserField::Parts(parts) => {
                if parts.iter().any(|p| p.contains(',')) {
                    return Err(ApiError::bad_request(
                        "invalid_browser",
                        "browser parts must not contain commas",
                    ));
                }
                parts.join(",")
            }
        };
        Browser::parse(&text).map(|b| b.to_string()).map_err(|e| {
            ApiError::bad_request("invalid_browser", e.replace("WA_BROWSER", "browser"))
        })
    }
}

/// `POST /api/whatsapp/add-account`: writes the account, then starts its worker so pairing can
/// begin.
///
/// # Errors
/// 400 for a bad body, name, phone or id; 409 for a duplicate; 413 for a body over 64 KiB;
/// 415 when the body is not declared JSON.
#[utoipa::path(post, path = "/api/whatsapp/add-account", tag = "accounts", summary = "Adds an account and starts pairing it",
    request_body = AddAccount,
    responses((status = 201, description = "Added; its worker starts", body = super::openapi::Added),
        (status = 409, response = super::openapi::Error), (status = 507, response = super::openapi::Error)))]
pub async fn add(
    State(state): State<AppState>,
    _json: RequireJson,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = super::error::body_or_error(body, super::MAX_BODY_LEN)?;
    let req: AddAccount = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid request body: {e}")))?;
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("name must be 1 to {MAX_NAME_LEN} printable characters"),
        ));
    }
    let phone = match req
        .phone
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        Some(p) => Some(phone::normalize(p).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_phone",
                "phone must be 6 to 20 digits, optionally starting with +",
            )
        })?),
        None => None,
    };
    let browser = req.browser.map(BrowserField::parse).transpose()?;
    let id = match req.account_id.as_deref() {
        Some(raw) => parse_id(raw)?,
        None => generate_id(),
    };
    let account = Account {
        id: id.clone(),
        name,
        phone,
        created_at: UnixMillis::now(),
        enabled: true,
        webhook_url: None,
        browser,
        conflict_since: None,
    };
    let registry = state.registry.clone();
    let to_add = account.clone();
    tokio::task::spawn_blocking(move || registry.add(&to_add))
        .await
        .map_err(|_| ApiError::internal("account write was interrupted"))?
        .map_err(|e| match e {
            RegistryError::Duplicate(id) => ApiError::new(
                StatusCode::CONFLICT,
                "account_exists",
                format!("account {id} already exists"),
            ),
            RegistryError::Io { source, .. } if sessions_dir::is_storage_trouble(&source) => {
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    format!("the sessions volume refused the write: {source}"),
                )
            }
            other => ApiError::internal(format!("{other}: {}", source_text(&other))),
        })?;
    info!(account = %id, "account added");
    state.fleet.command(Command::Added(account)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "success": true,
            "account": { "accountId": id, "status": "connecting" },
        })),
    ))
}

fn source_text(e: &RegistryError) -> String {
    std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// `POST /api/whatsapp/accounts/:id/qr`.
///
/// # Errors
/// 400 for an invalid id, 404 for an unknown account.
#[utoipa::path(post, path = "/api/whatsapp/accounts/{account_id}/qr", tag = "accounts", summary = "Asks for a fresh QR",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64")),
    responses((status = 202, description = "Asked; the QR shows at qrUrl", body = super::openapi::Accepted)))]
pub async fn request_qr(
    state: State<AppState>,
    Path(raw): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = known(&state, &raw)?;
    state.fleet.command(Command::RequestQr(id.clone())).await?;
    Ok(accepted(
        &id,
        "qr_requested",
        Some(format!("/api/whatsapp/qr/{id}")),
    ))
}

/// `POST /api/whatsapp/accounts/:id/restart`.
///
/// # Errors
/// 400 for an invalid id, 404 for an unknown account.
#[utoipa::path(post, path = "/api/whatsapp/accounts/{account_id}/restart", tag = "accounts", summary = "Restarts the account's worker",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64")),
    responses((status = 202, description = "Restarting", body = super::openapi::Accepted)))]
pub async fn restart(
    state: State<AppState>,
    Path(raw): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = known(&state, &raw)?;
    state.fleet.command(Command::Restart(id.clone())).await?;
    Ok(accepted(&id, "restarting", None))
}

/// `POST /api/whatsapp/accounts/:id/logout`.
///
/// # Errors
/// 400 for an invalid id, 404 for an unknown account, 409 when no worker runs.
#[utoipa::path(post, path = "/api/whatsapp/accounts/{account_id}/logout", tag = "accounts", summary = "Unlinks the device, keeps the account",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64")),
    responses((status = 202, description = "Logging out", body = super::openapi::Accepted), (status = 409, response = super::openapi::Error)))]
pub async fn logout(
    state: State<AppState>,
    Path(raw): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = known(&state, &raw)?;
    state.fleet.command(Command::Logout(id.clone())).await?;
    Ok(accepted(&id, "logging_out", None))
}

/// `DELETE /api/whatsapp/accounts/:id`.
///
/// # Errors
/// 400 for an invalid id, 404 for an unknown account.
#[utoipa::path(delete, path = "/api/whatsapp/accounts/{account_id}", tag = "accounts", summary = "Unlinks, stops and archives the account",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64")),
    responses((status = 202, description = "Deleting", body = super::openapi::Accepted)))]
pub async fn remove(
    state: State<AppState>,
    Path(raw): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = known(&state, &raw)?;
    state.fleet.command(Command::Delete(id.clone())).await?;
    Ok(accepted(&id, "deleting", None))
}

fn known(state: &AppState, raw: &str) -> Result<AccountId, ApiError> {
    let id = parse_id(raw)?;
    if state.cache.contains(&id) {
        Ok(id)
    } else {
        Err(ApiError::account_not_found(id.as_str()))
    }
}

fn accepted(
    id: &AccountId,
    action: &str,
    qr_url: Option<String>,
) -> (StatusCode, Json<serde_json::Value>) {
    let mut body = json!({ "success": true, "accountId": id, "action": action });
    if let Some(url) = qr_url {
        body["qrUrl"] = json!(url);
    }
    (StatusCode::ACCEPTED, Json(body))
}
