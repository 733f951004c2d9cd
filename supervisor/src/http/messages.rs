//! Message routes. The worker owns the account's messages; these routes ask it and never write
//! a message themselves.
//!
//! - `POST /api/whatsapp/accounts/:id/messages` `{"to", "text", "id"?}`: 202 once the message is
//!   durable in the account's outbox.
//! - `GET /api/whatsapp/accounts/:id/messages/:messageId`: its status and times.
//! - `GET /api/whatsapp/accounts/:id/messages?direction=in|out&after=<cursor>&limit=N`: oldest
//!   first.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use ipc_protocol::{
    AccountId, Direction, MessageQuery, MessageRecord, OutgoingText, QueryAnswer, SendOutcome,
    SendRefusal,
};
use serde::Deserialize;
use serde_json::json;
use worker::wa::message_id::{id_for_key, random_id};
use worker::wa::recipient::parse_recipient;

use super::content_type::RequireJson;
use super::error::ApiError;
use super::{iso, parse_id, AppState};
use crate::fleet::{Answer, Ask, CommandError};

/// The longest text accepted, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// The body limit of the send route: a maximal text, JSON-escaped, fits.
pub const MAX_SEND_BODY_LEN: usize = 8 * MAX_TEXT_LEN;
/// How long a route waits for the worker's answer (it only writes a file).
const WORKER_ANSWER_DEADLINE: Duration = Duration::from_secs(10);
/// The longest idempotency key.
const MAX_KEY_LEN: usize = 128;
/// Page size when `limit` is not given.
const DEFAULT_PAGE: u32 = 50;

/// The body of a send.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SendBody {
    to: String,
    text: String,
    #[serde(default)]
    id: Option<String>,
}

/// `POST /api/whatsapp/accounts/:id/messages`.
///
/// # Errors
/// 400 for a bad body, recipient, text or id; 404 for an unknown account; 409 when the account
/// was never paired; 429 when its outbox is full; 503 when its worker does not run; 507 when the
/// message could not be made durable; 415 when the body is not declared JSON.
#[utoipa::path(post, path = "/api/whatsapp/accounts/{account_id}/messages", tag = "messages", summary = "Queues a text message",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64")), request_body = SendBody,
    responses((status = 202, description = "Durable in the account's outbox", body = super::openapi::Queued),
        (status = 409, response = super::openapi::Error), (status = 429, response = super::openapi::Error),
        (status = 503, response = super::openapi::Error), (status = 504, response = super::openapi::Error),
        (status = 507, response = super::openapi::Error)))]
pub async fn send(
    State(state): State<AppState>,
    Path(account): Path<String>,
    _json: RequireJson,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = known_account(&state, &account)?;
    let req: SendBody = super::error::json_body(body, MAX_SEND_BODY_LEN)?;
    let to = parse_recipient(&req.to)
        .map_err(|e| ApiError::bad_request("invalid_recipient", e.to_string()))?;
    if req.text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "empty_text",
            "text must not be empty",
        ));
    }
    if req.text.len() > MAX_TEXT_LEN {
        return Err(ApiError::bad_request(
            "text_too_long",
            format!("text must be at most {MAX_TEXT_LEN} bytes"),
        ));
    }
    let message_id = match req.id.as_deref() {
        Some(key)
            if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) =>
        {
            return Err(ApiError::bad_request(
                "invalid_id",
                format!("id must be 1 to {MAX_KEY_LEN} printable characters"),
            ))
        }
        Some(key) => id_for_key(id.as_str(), key),
        None => random_id(),
    };
    if !state.registry.has_creds(&id) {
        return Err(not_paired());
    }
    let message = OutgoingText {
        id: message_id,
        to: to.to_string(),
        text: req.text,
    };
    match ask(&state, id, Ask::Send(message)).await? {
        Answer::Sent(SendOutcome::Accepted { message }) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "success": true,
                "message": { "id": message.id, "status": message.status, "cursor": message.cursor },
            })),
        )),
        Answer::Sent(SendOutcome::Refused { refusal }) => Err(refused(refusal)),
        Answer::Queried(_) | Answer::PairingCode(_) => {
            Err(ApiError::internal("the worker answered another question"))
        }
    }
}

/// `GET /api/whatsapp/accounts/:id/messages/:messageId`.
///
/// # Errors
/// 404 for an unknown account or message; 503 when the worker does not run.
#[utoipa::path(get, path = "/api/whatsapp/accounts/{account_id}/messages/{message_id}", tag = "messages", summary = "One message: its status and times",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64"), ("message_id" = String, Path, description = "The message id")),
    responses((status = 200, description = "The message", body = super::openapi::OneMessage),
        (status = 503, response = super::openapi::Error), (status = 504, response = super::openapi::Error)))]
pub async fn get(
    State(state): State<AppState>,
    Path((account, message_id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id = known_account(&state, &account)?;
    match ask(
        &state,
        id,
        Ask::Query(MessageQuery::Get {
            id: message_id.clone(),
        }),
    )
    .await?
    {
        Answer::Queried(QueryAnswer::One {
            message: Some(message),
        }) => Ok(Json(
            json!({ "success": true, "message": message_json(&message) }),
        )),
        Answer::Queried(QueryAnswer::One { message: None }) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "message_not_found",
            format!("no message {message_id} on this account"),
        )),
        other => Err(query_failed(other)),
    }
}

/// The query string of the list route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    direction: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// `GET /api/whatsapp/accounts/:id/messages?direction=in|out&after=<cursor>&limit=N`.
///
/// # Errors
/// 400 for a bad direction, cursor or limit; 404 for an unknown account; 503 when the worker
/// does not run.
#[utoipa::path(get, path = "/api/whatsapp/accounts/{account_id}/messages", tag = "messages", summary = "A page of messages, oldest first",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64"),
        ("direction" = Option<String>, Query, description = "in (the default) or out"),
        ("after" = Option<String>, Query, description = "A cursor from a previous page (its `next`)"),
        ("limit" = Option<u32>, Query, description = "1 to 500, 50 by default")),
    responses((status = 200, description = "One page", body = super::openapi::MessagePage),
        (status = 503, response = super::openapi::Error), (status = 504, response = super::openapi::Error)))]
pub async fn list(
    State(state): State<AppState>,
    Path(account): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let id = known_account(&state, &account)?;
    let direction = match q.direction.as_deref() {
        None | Some("in") => Direction::In,
        Some("out") => Direction::Out,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_direction",
                "direction must be in or out",
            ))
        }
    };
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                "after must be a cursor from a previous page",
            )
        })?),
    };
    let limit = match q.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::bad_request("invalid_limit", "limit must be 1 to 500"))?,
    };
    let query = MessageQuery::List {
        direction,
        after,
        limit,
    };
    match ask(&state, id, Ask::Query(query)).await? {
        Answer::Queried(QueryAnswer::Page { messages, next }) => Ok(Json(json!({
            "success": true,
            "direction": direction.as_str(),
            "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
            "next": next,
        }))),
        other => Err(query_failed(other)),
    }
}

/// A message as the API and the events show it.
pub fn message_json(m: &MessageRecord) -> serde_json::Value {
    json!({
        "id": m.id,
        "direction": m.direction.as_str(),
        "chat": m.chat,
        "from": m.sender,
        "pushName": m.push_name,
        "type": m.kind,
        "text": m.text,
        "status": m.status,
        "timestamp": iso(m.timestamp),
        "sentAt": m.sent_at.map(iso),
        "deliveredAt": m.delivered_at.map(iso),
        "readAt": m.read_at.map(iso),
        "error": m.error,
        "cursor": m.cursor,
    })
}

fn known_account(state: &AppState, raw: &str) -> Result<AccountId, ApiError> {
    let id = parse_id(raw)?;
    if state.cache.contains(&id) {
        Ok(id)
    } else {
        Err(ApiError::account_not_found(id.as_str()))
    }
}

async fn ask(state: &AppState, id: AccountId, question: Ask) -> Result<Answer, ApiError> {
    match tokio::time::timeout(WORKER_ANSWER_DEADLINE, state.fleet.ask(id, question)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(CommandError::NotRunning)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "worker_not_running",
            "no worker runs for this account; restart it",
        )),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "worker_timeout",
            "the account's worker did not answer in time",
        )),
    }
}

fn not_paired() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_paired",
        "this account has never been paired: scan its QR first",
    )
}

fn refused(refusal: SendRefusal) -> ApiError {
    match refusal {
        SendRefusal::NotPaired => not_paired(),
        SendRefusal::OutboxFull { limit } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "outbox_full",
            format!("the account's outbox holds its limit of {limit} queued messages"),
        ),
        SendRefusal::InvalidRecipient(why) => ApiError::bad_request("invalid_recipient", why),
        SendRefusal::Storage(why) => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_failed",
            format!("the message could not be stored: {why}"),
        ),
    }
}

fn query_failed(answer: Answer) -> ApiError {
    match answer {
        Answer::Queried(QueryAnswer::Failed { error }) => {
            ApiError::internal(format!("the message store could not be read: {error}"))
        }
        _ => ApiError::internal("the worker answered another question"),
    }
}
