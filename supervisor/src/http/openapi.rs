//! `GET /openapi.json`: the admin API as OpenAPI 3.1, generated from the handlers.
//!
//! Each handler carries its own `#[utoipa::path]` (method, path, parameters, body, answers);
//! request bodies and queries are the handlers' own types. [`ApiDoc`] lists the handlers, and
//! [`spec`] completes what follows from the [`ROUTES`] table and the router's layers rather than
//! from one handler: who may call each route (the security schemes), the 401 of every admin
//! route, the 400 and 404 of every route under an account, the 413 and 415 of every JSON body,
//! and the statuses an account can have. A test walks [`ROUTES`] against the spec both ways, so
//! a route cannot be added to one without the other.
//!
//! Adding a route: its `#[utoipa::path]` above the handler, and its handler's name in
//! [`ApiDoc`]'s `paths(…)`.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use ipc_protocol::WorkerStatus;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::{
    accounts, dashboard, events, health, link, login, messages, metrics, qr, settings, webhook,
};
use super::{Access, ROUTES};

/// The handlers the spec is generated from.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wafleet admin API",
        description = "Keeps many WhatsApp accounts online, one worker process each. Every route \
            but /health and the login takes the admin token (Authorization: Bearer, or HTTP Basic \
            with the token as password) or a browser session from /login. Errors are \
            {\"success\": false, \"error\": {\"code\", \"message\"}}; phone numbers are masked.",
        license(name = "MIT", identifier = "MIT")
    ),
    paths(
        health::check,
        login::page,
        login::submit,
        login::logout,
        dashboard::page,
        dashboard::json,
        accounts::list,
        accounts::add,
        qr::show,
        accounts::request_qr,
        accounts::restart,
        accounts::logout,
        accounts::remove,
        messages::send,
        messages::list,
        messages::get,
        webhook::show,
        webhook::set,
        settings::show,
        settings::set,
        events::stream,
        metrics::render,
        spec_json,
        docs,
        accounts::pairing_code,
        link::create,
        link::page,
        link::qr,
        link::pairing_code,
    ),
    components(responses(Error), schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "service", description = "Health, metrics, events and settings"),
        (name = "accounts", description = "Accounts, pairing and per-account actions"),
        (name = "messages", description = "Sending and reading messages"),
        (name = "pages", description = "The pages for people (HTML)"),
    )
)]
struct ApiDoc;

pub use schema::*;

/// The answers the handlers build with `json!`, described for the spec. They are never built:
/// the e2e test `openapi` checks the real answers against them.
#[allow(dead_code)]
mod schema {
    use serde_json::Value;
    use utoipa::{ToResponse, ToSchema};

    /// `{"success": false, "error": {"code", "message"}}`, the answer of every error (`error.rs`).
    #[derive(Debug, ToResponse)]
    #[response(
        description = "An error: `error.code` is stable and machine-readable, \
        `error.message` readable"
    )]
    pub struct Error(#[to_schema] ErrorBody);

    /// The error shape.
    #[derive(Debug, ToSchema)]
    pub struct ErrorBody {
        /// Always `false`.
        success: bool,
        error: ErrorDetail,
    }

    /// What went wrong.
    #[derive(Debug, ToSchema)]
    pub struct ErrorDetail {
        /// Machine-readable, e.g. `account_not_found`, `invalid_json`, `unauthorized`.
        code: String,
        /// For people.
        message: String,
    }

    /// A pairing code.
    #[derive(Debug, ToSchema)]
    pub struct PairingCode {
        success: bool,
        /// Eight characters, `ABCD-EFGH`: type it on the phone under Linked devices, Link with
        /// phone number.
        code: String,
    }

    /// A remote link.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct LinkUrl {
        success: bool,
        /// `/link/<token>`, on this server.
        url: String,
        expires_at: String,
    }

    /// The linked account's status and QR.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct LinkQr {
        success: bool,
        #[schema(value_type = StatusName)]
        status: String,
        qr: Option<String>,
        qr_code: Option<String>,
        expires_at: Option<String>,
        link_expires_at: String,
    }

    /// An account's status.
    #[derive(Debug, ToSchema)]
    #[schema(as = Status)]
    pub struct StatusName(String);

    /// One account in the dashboard.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct DashboardAccount {
        account_id: String,
        /// Since when it waits for a handshake permit.
        dial_queued_since: Option<String>,
        /// The readable error behind `reason`.
        last_error: Option<String>,
        last_event_at: Option<String>,
        last_message_at: Option<String>,
        last_seen: Option<String>,
        name: String,
        #[schema(rename = "needsQR")]
        needs_qr: bool,
        next_retry_at: Option<String>,
        /// Masked, e.g. `+407****97`.
        phone: Option<String>,
        pid: Option<u32>,
        /// Machine-readable: `network`, `crash_loop`, `replaced`, `logged_out`, …
        reason: Option<String>,
        reconnect_attempts: u32,
        reconnect_count: u32,
        restarts: u32,
        started_at: Option<String>,
        #[schema(value_type = StatusName)]
        status: String,
    }

    /// `GET /api/status/dashboard`.
    #[derive(Debug, ToSchema)]
    pub struct Dashboard {
        accounts: Vec<DashboardAccount>,
        /// The handshake budget: `dialsPerMinute`, `grantedTotal`, `inFlight`, `reclaimedTotal`,
        /// `waiting`.
        #[schema(value_type = Object)]
        handshakes: Value,
        /// `status` (`healthy` or `degraded`), `uptime` (s), `version`.
        #[schema(value_type = Object)]
        service: Value,
        /// `path`, `totalAccounts`, `writable`.
        #[schema(value_type = Object)]
        storage: Value,
        /// Accounts per status, and `total`.
        #[schema(value_type = Object)]
        summary: Value,
        timestamp: String,
    }

    /// One account in the list.
    #[derive(Debug, ToSchema)]
    pub struct ListedAccount {
        id: String,
        name: String,
        /// Masked.
        phone: Option<String>,
        #[schema(value_type = StatusName)]
        status: String,
    }

    /// `GET /api/whatsapp/accounts`.
    #[derive(Debug, ToSchema)]
    pub struct AccountList {
        success: bool,
        accounts: Vec<ListedAccount>,
    }

    /// The account just added.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct AddedAccount {
        account_id: String,
        /// `connecting`, or `needs_qr` with `qrCode` when the first QR came within about 3 s.
        status: String,
        /// The first QR as a PNG data URL, when it came in time.
        qr_code: Option<String>,
    }

    /// `POST /api/whatsapp/add-account`'s answer.
    #[derive(Debug, ToSchema)]
    pub struct Added {
        success: bool,
        account: AddedAccount,
    }

    /// An accepted action on an account; it goes on in the background.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Accepted {
        success: bool,
        account_id: String,
        /// `qr_requested`, `restarting`, `logging_out`, `deleting`.
        action: String,
        /// Where the QR shows (for `qr_requested`).
        qr_url: Option<String>,
    }

    /// `GET /api/whatsapp/qr/{account_id}?format=json`.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct QrAnswer {
        account_id: String,
        #[schema(value_type = StatusName)]
        status: String,
        reason: Option<String>,
        /// The text the phone scans, while the account shows a QR.
        qr: Option<String>,
        /// The same as a PNG data URL.
        qr_code: Option<String>,
        expires_at: Option<String>,
    }

    /// A queued message.
    #[derive(Debug, ToSchema)]
    pub struct QueuedMessage {
        id: String,
        /// `queued`.
        status: String,
        /// Its place in the account's outgoing list.
        cursor: u64,
    }

    /// `POST …/messages`'s answer.
    #[derive(Debug, ToSchema)]
    pub struct Queued {
        success: bool,
        message: QueuedMessage,
    }

    /// A message as the API and the events show it.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Message {
        id: String,
        /// `in` or `out`.
        direction: String,
        chat: String,
        from: Option<String>,
        push_name: Option<String>,
        #[schema(rename = "type")]
        kind: String,
        text: Option<String>,
        /// `queued`, `sent`, `delivered`, `read`, `failed`, `received`, …
        status: String,
        timestamp: String,
        sent_at: Option<String>,
        delivered_at: Option<String>,
        read_at: Option<String>,
        error: Option<String>,
        cursor: u64,
    }

    /// `GET …/messages/{message_id}`.
    #[derive(Debug, ToSchema)]
    pub struct OneMessage {
        success: bool,
        message: Message,
    }

    /// `GET …/messages`: one page, oldest first.
    #[derive(Debug, ToSchema)]
    pub struct MessagePage {
        success: bool,
        direction: String,
        messages: Vec<Message>,
        /// The cursor of the next page (`after=`), when there is one.
        next: Option<u64>,
    }

    /// `PUT …/webhook`'s body.
    #[derive(Debug, ToSchema)]
    pub struct WebhookBody {
        /// An `http(s)` URL, or `null` to clear.
        url: Option<String>,
    }

    /// The account's webhook URL.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct WebhookAnswer {
        success: bool,
        account_id: String,
        url: Option<String>,
    }

    /// `PUT /api/settings`'s body.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct SettingsBody {
        /// The WhatsApp Web version every worker announces, e.g. `2.3000.1027934701`.
        wa_version: Option<String>,
    }

    /// The run-time settings.
    #[derive(Debug, ToSchema)]
    #[schema(rename_all = "camelCase")]
    pub struct Settings {
        wa_version: String,
        /// `default`, `env`, `fetched` or `api`.
        wa_version_source: String,
        wa_version_updated_at: Option<String>,
        wa_version_url: Option<String>,
    }
}

/// The spec, built once.
static SPEC: LazyLock<Value> = LazyLock::new(spec);
/// The spec as JSON.
static SPEC_JSON: LazyLock<String> = LazyLock::new(|| SPEC.to_string());

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "service", summary = "This API as OpenAPI 3.1",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)))]
pub async fn spec_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        SPEC_JSON.as_str(),
    )
        .into_response()
}

/// `GET /docs`: every operation with its parameters, bodies and answers, as a page.
#[utoipa::path(get, path = "/docs", tag = "pages", summary = "This API as a page",
    responses((status = 200, description = "The API's documentation", content_type = "text/html"),
        (status = 303, description = "A browser without a session goes to /login")))]
pub async fn docs() -> Response {
    super::docs::page(&SPEC)
}

/// The spec: the handlers' operations, completed from [`ROUTES`].
pub fn spec() -> Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut spec = serde_json::to_value(&doc).unwrap_or_else(|_| json!({}));
    complete(&mut spec);
    spec
}

/// Fills in what the table and the layers decide for every route.
fn complete(spec: &mut Value) {
    let statuses: Vec<&str> = WorkerStatus::ALL.iter().map(|s| s.as_str()).collect();
    spec["components"]["schemas"]["Status"] = json!({
        "type": "string",
        "enum": statuses,
        "description": "An account's status",
    });
    spec["components"]["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer", "description": "The admin token"},
        "basic": {"type": "http", "scheme": "basic", "description": "Any user name, the admin token as password"},
        "session": {"type": "apiKey", "in": "cookie", "name": "wafleet_session",
                    "description": "A browser session from POST /login"},
    });
    let Some(paths) = spec["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let access = ROUTES
                .iter()
                .find(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
                .map(|r| r.access);
            let op = match op.as_object_mut() {
                Some(op) => op,
                None => continue,
            };
            // Handlers of different modules share names (`list`, `show`, `set`): the id comes
            // from the route, unique like it.
            op.insert("operationId".into(), json!(operation_id(method, path)));
            if let Some(Value::String(text)) = op.get_mut("description") {
                *text = text.replace("# Errors\n", "Errors: ");
            }
            let json_body = op
                .get("requestBody")
                .and_then(|b| b["content"].get("application/json"))
                .is_some();
            let html_only = op["responses"]["200"]["content"]
                .as_object()
                .is_some_and(|c| c.len() == 1 && c.contains_key("text/html"));
            let responses = op
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            let Some(responses) = responses else {
                continue;
            };
            let mut error = |status: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| json!({"$ref": "#/components/responses/Error"}));
            };
            if path.contains("{account_id}") {
                error("400");
                error("404");
            }
            if json_body {
                error("400");
                error("413");
                error("415");
            }
            if access == Some(Access::Admin) {
                // A page sends a browser without a session to /login (303) instead.
                if !html_only {
                    error("401");
                }
                op.insert(
                    "security".into(),
                    json!([{"bearer": []}, {"basic": []}, {"session": []}]),
                );
            }
        }
    }
    sort_responses(spec);
}

/// `get_api_whatsapp_accounts_account_id_messages` for `GET
/// /api/whatsapp/accounts/{account_id}/messages`; `get_root` for `GET /`.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.chars()
                .filter(|c| *c != '{' && *c != '}')
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        })
        .collect();
    if words.is_empty() {
        format!("{method}_root")
    } else {
        format!("{method}_{}", words.join("_"))
    }
}

/// Each operation's answers in the order of their status codes.
fn sort_responses(spec: &mut Value) {
    let Some(paths) = spec["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                let mut sorted: Vec<(String, Value)> =
                    std::mem::take(responses).into_iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                *responses = sorted.into_iter().collect::<Map<String, Value>>();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

    /// Every `(METHOD, path)` the spec documents.
    fn documented(spec: &Value) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in METHODS {
                if item.get(method).is_some() {
                    ops.insert((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        ops
    }

    #[test]
    fn every_route_of_the_router_is_in_the_spec_and_nothing_else() {
        let spec = spec();
        let documented = documented(&spec);
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routes without a #[utoipa::path] in ApiDoc: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "operations the router does not serve: {extra:?}"
        );
    }

    #[test]
    fn the_spec_is_openapi_3_1_with_the_shared_error_and_security() {
        let spec = spec();
        assert_eq!(spec["openapi"], "3.1.0");
        assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));
        let error = &spec["components"]["responses"]["Error"];
        assert!(
            error["content"]["application/json"]["schema"].is_object(),
            "{error}"
        );
        for r in ROUTES {
            let op = &spec["paths"][r.path][r.method.to_ascii_lowercase()];
            let secured = op.get("security").is_some();
            assert_eq!(
                secured,
                r.access == Access::Admin,
                "{} {}",
                r.method,
                r.path
            );
            if r.access == Access::Admin {
                let unauthenticated = if op["responses"]["401"].is_object() {
                    &op["responses"]["401"]["$ref"]
                } else {
                    &op["responses"]["303"]["description"]
                };
                assert!(unauthenticated.is_string(), "{} {}", r.method, r.path);
            }
            assert!(
                op["responses"]
                    .as_object()
                    .is_some_and(|m| m.keys().any(|k| k.starts_with('2') || k.starts_with('3'))),
                "{} {} documents its success",
                r.method,
                r.path
            );
            for name in r
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{} {} documents {name}",
                    r.method,
                    r.path
                );
            }
        }
        let statuses = spec["components"]["schemas"]["Status"]["enum"]
            .as_array()
            .expect("statuses")
            .len();
        assert_eq!(statuses, WorkerStatus::ALL.len());
    }

    #[test]
    fn operation_ids_are_unique() {
        let spec = spec();
        let mut ids = BTreeSet::new();
        for item in spec["paths"].as_object().expect("paths").values() {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    let id = op["operationId"].as_str().expect("an id").to_owned();
                    assert!(ids.insert(id.clone()), "{id} twice");
                }
            }
        }
        assert!(
            ids.contains("get_root") && ids.contains("get_openapi_json"),
            "{ids:?}"
        );
    }

    #[test]
    fn every_reference_points_at_a_component() {
        let spec = spec();
        let mut refs = Vec::new();
        collect_refs(&spec, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').expect("local ref");
            assert!(spec.pointer(pointer).is_some(), "dangling {r}");
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
