//! Account routes: list, add, and the per-account actions (qr, pairing code, restart, logout,
//! delete).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use std::time::Duration;

use ipc_protocol::{AccountId, PairingCodeOutcome, PairingCodeRefusal, UnixMillis, WorkerStatus};
use serde::Deserialize;
use serde_json::json;
use tracing::info;
use worker::Browser;

use super::content_type::RequireJson;
use super::dashboard::masked_phone;
use super::error::ApiError;
use super::{parse_id, phone, qr, AppState};
use crate::fleet::{Answer, Ask, Command, CommandError};
use crate::registry::{generate_id, Account, RegistryError};
use crate::sessions_dir;

const MAX_NAME_LEN: usize = 100;
/// How long add-account waits for the first QR to put it in its answer (`qrCode`).
const FIRST_QR_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

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
    let req: AddAccount = super::error::json_body(body, super::MAX_BODY_LEN)?;
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
    // As the seed did: the first QR, when the worker shows one soon enough.
    let view = qr::wait_for_qr(&state, &id, FIRST_QR_WAIT.min(state.hold_limit)).await;
    let status = view
        .as_ref()
        .map_or(WorkerStatus::Connecting, |v| v.state.status);
    let qr_code = match view.as_ref().and_then(|v| v.state.qr.as_deref()) {
        Some(qr) => Some(qr::data_url(qr)?),
        None => None,
    };
    let mut account = json!({ "accountId": id, "status": status });
    if let Some(qr_code) = qr_code {
        account["qrCode"] = qr_code.into();
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "success": true, "account": account })),
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

/// How long the pairing-code route waits for the worker: it may have to dial and register
/// first, then WhatsApp answers the hello.
const PAIRING_CODE_DEADLINE: Duration = Duration::from_secs(30);

/// The body of `POST /api/whatsapp/accounts/:id/pairing-code`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PairingCodeBody {
    pub(super) phone: String,
}

/// `POST /api/whatsapp/accounts/:id/pairing-code` `{"phone"}`: a code to type on the phone
/// (WhatsApp > Linked devices > Link with phone number), `{"success":true,"code":"ABCD-EFGH"}`.
///
/// # Errors
/// 400 for a bad body or phone, 404 for an unknown account, 409 when it is paired already,
/// 415 when the body is not declared JSON, 502 when WhatsApp refused, 503 when its worker does
/// not run or has no connection, 504 when no answer came in time.
#[utoipa::path(post, path = "/api/whatsapp/accounts/{account_id}/pairing-code", tag = "accounts", summary = "A code to link the account by phone number",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64")), request_body = PairingCodeBody,
    responses((status = 200, description = "The code to type on the phone", body = super::openapi::PairingCode),
        (status = 409, response = super::openapi::Error), (status = 502, response = super::openapi::Error),
        (status = 503, response = super::openapi::Error), (status = 504, response = super::openapi::Error)))]
pub async fn pairing_code(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    _json: RequireJson,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = known(&state, &raw)?;
    let req: PairingCodeBody = super::error::json_body(body, super::MAX_BODY_LEN)?;
    code_for(&state, id, &req.phone).await.map(Json)
}

/// Asks `id`'s worker for a pairing code for `raw_phone`: the answer body, or the error.
///
/// # Errors
/// As [`pairing_code`].
pub(super) async fn code_for(
    state: &AppState,
    id: AccountId,
    raw_phone: &str,
) -> Result<serde_json::Value, ApiError> {
    let phone = pairing_phone(raw_phone).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_phone",
            "phone must be 7 to 15 digits in international form (country code first, no \
             leading 0); +, spaces and dashes are ignored",
        )
    })?;
    if state
        .cache
        .read_one(&id, |v| v.state.jid.is_some())
        .unwrap_or(false)
    {
        return Err(already_paired());
    }
    info!(account = %id, phone = %super::phone::mask(&format!("+{phone}")), "pairing code requested");
    let asked = state.fleet.ask(id.clone(), Ask::PairingCode(phone));
    let outcome = match tokio::time::timeout(PAIRING_CODE_DEADLINE, asked).await {
        Ok(Ok(Answer::PairingCode(outcome))) => outcome,
        Ok(Ok(_)) => return Err(ApiError::internal("the worker answered another question")),
        Ok(Err(CommandError::NotRunning)) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "worker_not_running",
                "no worker runs for this account; restart it",
            ))
        }
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "worker_timeout",
                "the account's worker did not get a code from WhatsApp in time",
            ))
        }
    };
    match outcome {
        PairingCodeOutcome::Code { code } => {
            info!(account = %id, "pairing code issued");
            Ok(json!({ "success": true, "code": worker::wa::link_code::display_code(&code) }))
        }
        PairingCodeOutcome::Refused { refusal } => Err(match refusal {
            PairingCodeRefusal::AlreadyPaired => already_paired(),
            PairingCodeRefusal::InvalidPhone => {
                ApiError::bad_request("invalid_phone", "WhatsApp does not take this phone number")
            }
            PairingCodeRefusal::NotConnected => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_connected",
                "the account's worker has no connection to WhatsApp yet; try again shortly",
            ),
            PairingCodeRefusal::ConnectionLost => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "connection_lost",
                "the connection to WhatsApp ended before it answered (or a newer code request \
                 replaced this one); try again",
            ),
            PairingCodeRefusal::ServerRefused(text) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "whatsapp_refused",
                format!("WhatsApp refused the pairing code request: {text}"),
            ),
        }),
    }
}

fn already_paired() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "already_paired",
        "this account is paired already; log it out first",
    )
}

/// A phone for the pairing code: `+`, spaces and dashes dropped, then 7 to 15 digits without a
/// leading 0.
fn pairing_phone(raw: &str) -> Option<String> {
    let digits: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, '+' | ' ' | '-'))
        .collect();
    ((7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0'))
    .then_some(digits)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_phones_are_digits_in_international_form() {
        assert_eq!(
            pairing_phone(" +40 712-345-678 ").as_deref(),
            Some("40712345678")
        );
        assert_eq!(pairing_phone("15551234567").as_deref(), Some("15551234567"));
        for bad in [
            "",
            "+",
            "123456",
            "0712345678",
            "+40 (712) 345",
            "4071234567890123",
            "40712a45678",
        ] {
            assert_eq!(pairing_phone(bad), None, "{bad}");
        }
    }
}
