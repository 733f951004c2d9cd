//! The control API: the phone, the admin hooks and the simulator's state over HTTP (axum).
//! Tools outside the tests rely on these shapes. Every POST takes a JSON body (no content type
//! needed) and answers JSON; every error is `{"error": "…"}` with a 4xx status.
//!
//! ```text
//! POST /scan     {"qr","phone"[,"platform"]}      → {"ok":true,"jid":"<phone>:<device>@s.whatsapp.net"}
//! POST /enter-code {"phone","code"[,"platform"]}   → {"ok":true,"jid":"<phone>:<device>@s.whatsapp.net"}
//!                the code a companion asked for with companion_hello, typed on that phone
//!                (`link_code`); 403 for a wrong code (the companion stays unpaired), 404 when
//!                no companion waits for a code for this phone
//! POST /message  {"jid"[,"text","timeout_ms"]}     → {"ok":true,"acked":true|false,"id"[,"error"]}
//! POST /conflict {"jid"}  stream:error conflict replaced + close          → {"ok":true}
//! POST /logout   {"jid"}  stream:error 401 device_removed + close; removed → {"ok":true}
//! POST /drop     {"jid"}  TCP dropped, no stanza                          → {"ok":true}
//! POST /restart  {"jid"}  stream:error 515 + close                         → {"ok":true}
//! POST /error    {"jid","code"}  stream:error code + close                 → {"ok":true}
//! POST /end      {"jid"}  <xmlstreamend/> + close                          → {"ok":true}
//! POST /silence  {"jid"}  the connection stays open; nothing written or answered → {"ok":true}
//! POST /failure  {"reason":403|405|406|null[,"phone"]}  <failure reason/> at every later login
//!                of that account (or of all without "phone"); null clears   → {"ok":true}
//! GET  /version  → {"current":"2.3000.N","min":"2.3000.M"|null}
//! POST /version  {["current":"2.3000.N"],["min":"2.3000.M"|null]} → {"current","min"}; a
//!                login or registration below "min" gets <failure reason="405"/>
//! GET  /sw.js    → JavaScript carrying \"client_revision\":N of "current", as web.whatsapp.com/sw.js
//! POST /group    {"subject","participants":[phone…][,"addressing_mode":"lid"|"pn"]}
//!                                                  → {"ok":true,"jid":"<id>@g.us"}
//! POST /config   {["handshake_delay_ms"],["edge_latency_ms"],["refuse"],["ref_timeout_ms"],
//!                 ["silent"],["refuse_ik"]} → {"ok":true}; "silent": every later login gets
//!                 <success>, then silence; "refuse_ik": every Noise IK attempt gets XXfallback
//! GET  /sessions → [{"conn_id","jid","state","connected_at","routing_info","tls"}]
//! GET  /stats    → {"registrations","logins","connections","pairings","login_failures",
//!                   "messages_accepted","messages_relayed","receipts_relayed","usync_queries",
//!                   "bundle_fetches","prekeys_consumed","client_acks","outbox_overflows",
//!                   "companions_removed","flood_sent","flood_acked","ik_logins","ik_fallbacks",
//!                   "silenced","client_pings","sw_js_served","tls_handshakes","tls_failures",
//!                   "live","pushes_unacked"}
//! POST /flood    {"jid","count","per_second"} → server_sync notifications to the device, paced
//! GET  /dials    → [{"conn_id","accepted_at_ms","jid","logged_in_at_ms"}]  (pacing.rs)
//! POST /after-login {"fault":"end"|"drop"|"restart"|"error"|null[,"code"]} → {"ok":true}
//! POST /drop-all {}  every logged-in connection dropped at once → {"ok":true,"dropped":N}
//! GET  /relayed?jid=<device> → [{"tag","id","from","type","participant","encs","pending"}]
//! POST /send     {"from":<phone>,"to":<jid or phone>,"text"}   → {"ok":true,"id"}
//! GET  /inbox?jid=<phone or user jid>
//!                → {"messages":[{"id","from","chat","text","kind","t"[,"error"]}],
//!                   "receipts":[{"id","from","type"}]}
//! POST /read     {"phone","id"[,"from"]}           → {"ok":true}
//! POST /push     {"jid","kind"[,"count","from","video"]} → {"ok":true,"id"}  (`pushes`: a ping,
//!                dirty bit, notification, call or undecodable stanza to a logged-in device)
//! GET  /pushes?jid=<device> → what the device answered to pushes, and every ack it sent
//! ```
//!
//! 1. `/scan` returns once `pair-success` is on the socket (not after the 515 reconnect);
//!    `/enter-code` once the companion's `companion_finish` is checked and `pair-success` queued.
//! 2. The disconnect hooks return once the connection is closed; 404 when the device has no
//!    live, logged-in connection (`/logout` also succeeds for a known device that is offline:
//!    the phone unlinks it, and its next login fails with 401).
//! 3. `/message` returns when the device acks (or receipts) the message, or after the timeout
//!    (10 s by default) with `"acked":false`; 404 when the device is not logged in.
//! 4. `/send` makes the phone (device 0) of `from` send, end-to-end encrypted (`peer`); a `from`
//!    without an account becomes a contact (an account with only its phone). `to` is a user JID
//!    (PN or LID), a group JID, or a phone number (PN; an unknown number becomes a contact too).
//!    400 for a bad number or JID or a send to the sender's own account, 404 for an unknown
//!    recipient or group, 403 when the sender is not a group member. `/inbox` lists what that
//!    phone decrypted (`kind`: `text`, `dsm`, `other`, `undecryptable` with `error`), oldest
//!    first, and the receipts its own sends got; `/read` sends a read receipt for a message in
//!    the inbox (404 when it is not there).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};
use worker::wa::binary::{Jid, Node};

use super::connection::Command;
use super::delivery;
use super::faults::Fault;
use super::groups::{self, GroupRefused};
use super::link_code::{self, EnterError};
use super::peer::{self, SendRefused};
use super::phone::{self, Qr, ScanError, DEFAULT_PLATFORM};
use super::policy;
use super::pushes;
use super::registry::{masked, now, unix_now, LiveConfig};
use super::Shared;

/// How long `/message` waits for the ack by default.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How long a hook waits for the connection to act on a command.
const COMMAND_WAIT: Duration = Duration::from_secs(5);
/// The text of a pushed message unless the request names one.
const DEFAULT_TEXT: &str = "hello from wa-sim";

/// Serves the control API on `listener` until shutdown.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let token = shared.token.clone();
    let app = router(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(token.cancelled_owned())
        .await
    {
        warn!(error = %e, "control api stopped with an error");
    }
    debug!("control api stopped");
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/scan", post(scan))
        .route("/enter-code", post(enter_code))
        .route("/message", post(message))
        .route("/conflict", post(|s, b| hook(s, b, Hook::Conflict)))
        .route("/logout", post(|s, b| hook(s, b, Hook::Logout)))
        .route("/drop", post(|s, b| hook(s, b, Hook::Drop)))
        .route("/restart", post(|s, b| hook(s, b, Hook::Restart)))
        .route("/error", post(|s, b| hook(s, b, Hook::Error)))
        .route("/end", post(|s, b| hook(s, b, Hook::End)))
        .route("/silence", post(|s, b| hook(s, b, Hook::Silence)))
        .route("/failure", post(failure))
        .route("/version", get(version).post(set_version))
        .route("/sw.js", get(sw_js))
        .route("/group", post(group))
        .route("/relayed", get(relayed))
        .route("/config", post(config))
        .route("/sessions", get(sessions))
        .route("/linked-devices", get(linked_devices))
        .route("/stats", get(stats))
        .route("/root-key", get(root_key))
        .route("/send", post(send))
        .route("/inbox", get(inbox))
        .route("/read", post(read))
        .route("/flood", post(flood))
        .route("/push", post(push))
        .route("/pushes", get(pushes_view))
        .route("/dials", get(dials))
        .route("/after-login", post(after_login))
        .route("/drop-all", post(drop_all))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .with_state(shared)
}

/// An error answer: `{"error": message}` with a 4xx status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<ScanError> for ApiError {
    fn from(e: ScanError) -> Self {
        let status = match e {
            ScanError::MalformedQr(_) | ScanError::BadPhone => StatusCode::BAD_REQUEST,
            ScanError::UnknownRef => StatusCode::NOT_FOUND,
            ScanError::ExpiredRef | ScanError::ConnectionGone => StatusCode::GONE,
            ScanError::KeyMismatch(_) => StatusCode::FORBIDDEN,
            ScanError::AlreadyScanned => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.to_string())
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad json body: {e}")))
}

fn parse_jid(text: &str) -> Result<Jid, ApiError> {
    text.parse::<Jid>()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad jid: {e}")))
}

/// A number given as a JSON number or as a string of digits.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Number {
    Int(u64),
    Text(String),
}

impl Number {
    fn text(&self) -> String {
        match self {
            Number::Int(n) => n.to_string(),
            Number::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanBody {
    qr: String,
    phone: Number,
    platform: Option<String>,
}

async fn scan(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: ScanBody = parse(&body)?;
    let qr = Qr::parse(&body.qr)?;
    let phone = body.phone.text();
    let platform = body.platform.as_deref().unwrap_or(DEFAULT_PLATFORM);
    let plan = phone::scan(
        &mut shared.registry(),
        &qr,
        &phone,
        platform,
        now(),
        unix_now(),
    )?;
    let (written, sent) = oneshot::channel();
    plan.commands
        .send(Command::Send {
            node: plan.pair_success,
            written: Some(written),
        })
        .map_err(|_| ScanError::ConnectionGone)?;
    match tokio::time::timeout(COMMAND_WAIT, sent).await {
        Ok(Ok(())) => {
            info!(conn_id = %plan.conn, phone = %masked(&phone), device = plan.jid.device, "pair-success sent");
            Ok(Json(json!({ "ok": true, "jid": plan.jid.to_string() })))
        }
        _ => Err(ScanError::ConnectionGone.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnterCodeBody {
    phone: Number,
    code: String,
    platform: Option<String>,
}

/// How long `/enter-code` waits for the companion's `companion_finish` (it derives a key with
/// 2^17 PBKDF2 rounds first).
const FINISH_WAIT: Duration = Duration::from_secs(60);

impl From<EnterError> for ApiError {
    fn from(e: EnterError) -> Self {
        let status = match e {
            EnterError::BadCode | EnterError::BadPhone => StatusCode::BAD_REQUEST,
            EnterError::NoCompanion => StatusCode::NOT_FOUND,
            EnterError::InProgress => StatusCode::CONFLICT,
            EnterError::WrongCode | EnterError::BundleMismatch(_) => StatusCode::FORBIDDEN,
            EnterError::NoFinish(_) => StatusCode::GONE,
        };
        ApiError::new(status, e.to_string())
    }
}

async fn enter_code(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: EnterCodeBody = parse(&body)?;
    let phone = body.phone.text();
    let code = worker::wa::link_code::normalize_code(&body.code).ok_or(EnterError::BadCode)?;
    let platform = body.platform.unwrap_or_else(|| DEFAULT_PLATFORM.to_owned());
    let entry = link_code::enter(&mut shared.registry(), &phone, now(), unix_now())?;
    // The phone's key derivations (PBKDF2, 2^17 rounds each) run off the async threads.
    let wrapped = entry.wrapped_companion().to_vec();
    use worker::wa::{link_code as lc, xeddsa};
    let primary = xeddsa::generate_private();
    let own = xeddsa::public_key(&primary);
    let typed = code.clone();
    let unwrapped = tokio::task::spawn_blocking(move || lc::unwrap(&typed, &wrapped));
    let wrapping = tokio::task::spawn_blocking(move || lc::wrap(&code, &own));
    let failed = |_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "key derivation failed");
    let companion = unwrapped
        .await
        .map_err(failed)?
        .map_err(|_| EnterError::NoCompanion)?;
    let wrapped_primary = wrapping.await.map_err(failed)?;
    let outcome = link_code::deliver(
        &mut shared.registry(),
        entry,
        companion,
        primary,
        wrapped_primary,
        &platform,
        unix_now(),
    )?;
    match tokio::time::timeout(FINISH_WAIT, outcome).await {
        Ok(Ok(Ok(jid))) => Ok(Json(json!({ "ok": true, "jid": jid.to_string() }))),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(_)) => Err(EnterError::NoFinish("its registration connection closed").into()),
        Err(_) => {
            link_code::abandon(&mut shared.registry(), &phone);
            Err(EnterError::NoFinish("no companion_finish in time").into())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    jid: String,
    text: Option<String>,
    timeout_ms: Option<u64>,
}

async fn message(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: MessageBody = parse(&body)?;
    let jid = parse_jid(&body.jid)?;
    let text = body.text.as_deref().unwrap_or(DEFAULT_TEXT);
    let (id, confirmed) = delivery::enqueue(&mut shared.registry(), &jid, text, unix_now())
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    let wait = body.timeout_ms.map_or(ACK_WAIT, Duration::from_millis);
    let token = shared.token.clone();
    let outcome = tokio::select! {
        _ = token.cancelled() => None,
        confirmed = tokio::time::timeout(wait, confirmed) => confirmed.ok().and_then(Result::ok),
    };
    match outcome {
        Some(confirmation) => {
            let mut answer = json!({ "ok": true, "acked": true, "id": id });
            if let Some(error) = confirmation.error {
                answer["error"] = json!(error);
            }
            Ok(Json(answer))
        }
        None => {
            shared.registry().forget_waiter(&id);
            Ok(Json(json!({ "ok": true, "acked": false, "id": id })))
        }
    }
}

/// Which disconnect hook.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Hook {
    Conflict,
    Logout,
    Drop,
    Restart,
    Error,
    End,
    Silence,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookBody {
    jid: String,
    code: Option<Number>,
}

async fn hook(State(shared): State<Arc<Shared>>, body: Bytes, hook: Hook) -> ApiResult {
    let body: HookBody = parse(&body)?;
    let jid = parse_jid(&body.jid)?;
    let fault: Option<Fault> = match hook {
        Hook::Silence => None,
        Hook::Conflict => Fault::Conflict.into(),
        Hook::Logout => Fault::Logout.into(),
        Hook::Drop => Fault::Drop.into(),
        Hook::Restart => Fault::Restart.into(),
        Hook::End => Fault::End.into(),
        Hook::Error => {
            let code = body
                .code
                .as_ref()
                .and_then(|c| c.text().parse::<u16>().ok())
                .ok_or_else(|| {
                    ApiError::new(StatusCode::BAD_REQUEST, "code must be a number up to 65535")
                })?;
            Fault::Error(code).into()
        }
    };
    let (done, closed) = oneshot::channel();
    {
        let mut registry = shared.registry();
        let removed = hook == Hook::Logout && registry.remove_device(&jid);
        let live = registry.logged_in(&jid).map(|(_, c)| c.commands.clone());
        match live {
            Some(commands) => {
                let _ = commands.send(match fault {
                    Some(fault) => Command::Fault {
                        fault,
                        done: Some(done),
                    },
                    None => Command::Silence { done: Some(done) },
                });
            }
            None if removed => {
                info!(device = jid.device, "offline device removed");
                return Ok(Json(json!({ "ok": true })));
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no live logged-in connection for this device",
                ))
            }
        }
    }
    let _ = tokio::time::timeout(COMMAND_WAIT, closed).await;
    info!(?hook, device = jid.device, "hook applied");
    Ok(Json(json!({ "ok": true })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    handshake_delay_ms: Option<u64>,
    edge_latency_ms: Option<u64>,
    refuse: Option<bool>,
    ref_timeout_ms: Option<u64>,
    silent: Option<bool>,
    refuse_ik: Option<bool>,
}

async fn config(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: ConfigBody = parse(&body)?;
    let mut registry = shared.registry();
    let config: &mut LiveConfig = &mut registry.config;
    if let Some(ms) = body.handshake_delay_ms {
        config.handshake_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = body.edge_latency_ms {
        config.edge_latency = Duration::from_millis(ms);
    }
    if let Some(refuse) = body.refuse {
        config.refuse = refuse;
    }
    if let Some(ms) = body.ref_timeout_ms {
        config.ref_timeout = (ms > 0).then(|| Duration::from_millis(ms));
    }
    info!(?config, "config changed");
    if let Some(silent) = body.silent {
        registry.policy.silent = silent;
        info!(silent, "silent server");
    }
    if let Some(refuse_ik) = body.refuse_ik {
        registry.policy.refuse_ik = refuse_ik;
        info!(refuse_ik, "noise IK refused with XXfallback");
    }
    Ok(Json(json!({ "ok": true })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    subject: String,
    participants: Vec<Number>,
    addressing_mode: Option<String>,
}

async fn group(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: GroupBody = parse(&body)?;
    let phones: Vec<String> = body.participants.iter().map(Number::text).collect();
    let jid = groups::create(
        &mut shared.registry(),
        &body.subject,
        &phones,
        body.addressing_mode.as_deref(),
        unix_now(),
    )
    .map_err(|e| {
        let status = match e {
            GroupRefused::UnknownPhone(_) => StatusCode::NOT_FOUND,
            GroupRefused::NoParticipants | GroupRefused::BadAddressing => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    })?;
    info!(members = phones.len(), "group created");
    Ok(Json(json!({ "ok": true, "jid": jid.to_string() })))
}

/// `?jid=<device>`, required.
#[derive(Debug, Deserialize)]
struct JidQuery {
    jid: Option<String>,
}

impl JidQuery {
    /// The device named, or 400.
    fn device(&self) -> Result<Jid, ApiError> {
        self.jid
            .as_deref()
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "jid is required"))
            .and_then(parse_jid)
    }
}

async fn relayed(State(shared): State<Arc<Shared>>, Query(query): Query<JidQuery>) -> ApiResult {
    let jid = query.device()?;
    let views = shared
        .registry()
        .relayed(&jid)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such device"))?;
    Ok(Json(json!(views)))
}

#[derive(Deserialize)]
struct PhoneQuery {
    phone: String,
}

/// `GET /linked-devices?phone=…`: the companions the phone lists, with how each described
/// itself (`os`, `platform_type`, `version`).
async fn linked_devices(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<PhoneQuery>,
) -> Result<Json<Value>, ApiError> {
    let phone = phone_number(&q.phone)?;
    shared
        .registry()
        .linked_devices(&phone)
        .map(|d| Json(json!(d)))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such account"))
}

async fn sessions(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(shared.registry().sessions()))
}

/// `GET /root-key`: the root public key, in hex, as plain text (what `WA_TRUST_ROOT` takes), so
/// a shell can read it: `WA_TRUST_ROOT=$(curl -s localhost:7002/root-key)`.
async fn root_key(State(shared): State<Arc<Shared>>) -> String {
    hex::encode(shared.pki.root_public())
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let registry = shared.registry();
    let mut stats = json!(registry.stats);
    stats["live"] = json!(registry.sessions().len());
    stats["pushes_unacked"] = json!(registry.pushes.unacked());
    Json(stats)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailureBody {
    reason: Option<Number>,
    phone: Option<Number>,
}

/// `POST /failure {"reason":403|405|406|null[,"phone"]}`: every later login of `phone` (or of
/// every account) gets `<failure reason=…/>`; `null` clears it.
async fn failure(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: FailureBody = parse(&body)?;
    let reason = match &body.reason {
        None => None,
        Some(reason) => Some(
            reason
                .text()
                .parse::<u16>()
                .ok()
                .filter(|r| policy::PLAYABLE_FAILURES.contains(r))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "reason must be 403, 405, 406 or null",
                    )
                })?,
        ),
    };
    let phone = body
        .phone
        .as_ref()
        .map(|p| phone_number(&p.text()))
        .transpose()?;
    let mut registry = shared.registry();
    let policy = &mut registry.policy;
    match (&phone, reason) {
        (Some(phone), Some(reason)) => {
            policy.fail_account.insert(phone.clone(), reason);
        }
        (Some(phone), None) => {
            policy.fail_account.remove(phone);
        }
        (None, reason) => policy.fail_all = reason,
    }
    info!(
        ?reason,
        phone = phone.as_deref().map(masked),
        "login failure set"
    );
    Ok(Json(json!({ "ok": true })))
}

/// `{"current","min"}` as `GET /version` and `POST /version` answer.
fn version_json(policy: &policy::Policy) -> Value {
    json!({
        "current": policy.current.to_string(),
        "min": policy.min.map(|m| m.to_string()),
    })
}

async fn version(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(version_json(&shared.registry().policy))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionBody {
    current: Option<String>,
    #[serde(default, deserialize_with = "present")]
    min: Option<Option<String>>,
}

/// A field that may be `null`: `Some(None)` when present as `null`, `None` when absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `POST /version {["current"],["min"]}`: sets the published version and the minimum (`null`
/// removes it); answers the new `{"current","min"}`.
async fn set_version(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: VersionBody = parse(&body)?;
    let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, e);
    let current = body
        .current
        .as_deref()
        .map(str::parse::<policy::Version>)
        .transpose()
        .map_err(bad)?;
    let min = body
        .min
        .map(|m| m.as_deref().map(str::parse::<policy::Version>).transpose())
        .transpose()
        .map_err(bad)?;
    let mut registry = shared.registry();
    if let Some(current) = current {
        registry.policy.current = current;
    }
    if let Some(min) = min {
        registry.policy.min = min;
    }
    let answer = version_json(&registry.policy);
    info!(%answer, "version policy changed");
    Ok(Json(answer))
}

/// `GET /sw.js`: WhatsApp Web's service worker stand-in carrying `client_revision`.
async fn sw_js(State(shared): State<Arc<Shared>>) -> Response {
    let body = {
        let mut registry = shared.registry();
        registry.stats.sw_js_served += 1;
        policy::sw_js(registry.policy.current)
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A phone number as `/scan` takes it (400 otherwise).
fn phone_number(text: &str) -> Result<String, ApiError> {
    phone::check_phone(text)?;
    Ok(text.to_owned())
}

impl From<SendRefused> for ApiError {
    fn from(e: SendRefused) -> Self {
        let status = match &e {
            SendRefused::UnknownRecipient => StatusCode::NOT_FOUND,
            SendRefused::NotMember => StatusCode::FORBIDDEN,
            SendRefused::ToSelf | SendRefused::Refused(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    from: Number,
    to: Number,
    text: String,
}

async fn send(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: SendBody = parse(&body)?;
    let from = phone_number(&body.from.text())?;
    let to = body.to.text();
    let now = unix_now();
    let mut registry = shared.registry();
    let to = if to.contains('@') {
        parse_jid(&to)?
    } else {
        let phone = phone_number(&to)?;
        registry.account_or_create(&phone, now);
        Jid::new(phone, worker::wa::binary::jid::DEFAULT_USER_SERVER)
    };
    let id = peer::send_text(&mut registry, &from, &to, &body.text, now)?;
    info!(from = %masked(&from), "phone sent a message");
    Ok(Json(json!({ "ok": true, "id": id })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FloodBody {
    jid: String,
    count: u64,
    per_second: u64,
}

/// `POST /flood {jid, count, per_second}`: writes `count` `server_sync` notifications (each
/// needing an ack) to the device's live connection, `per_second` a second in 10 ms batches, in
/// the background; `/stats` counts them (`flood_sent`, `flood_acked`).
async fn flood(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: FloodBody = parse(&body)?;
    let jid = parse_jid(&body.jid)?;
    if body.per_second == 0 || body.count == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "count and per_second must be positive",
        ));
    }
    let commands = shared
        .registry()
        .logged_in(&jid)
        .map(|(_, c)| c.commands.clone())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no live logged-in connection for this device",
            )
        })?;
    let per_batch = body.per_second.div_ceil(100).max(1);
    let (count, shared) = (body.count, shared.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut sent = 0u64;
        while sent < count {
            tick.tick().await;
            let batch = per_batch.min(count - sent);
            for _ in 0..batch {
                let node = Node::new("notification")
                    .jid_attr("from", Jid::server_jid())
                    .attr("type", "server_sync")
                    .attr("id", format!("{}{sent}", delivery::FLOOD_ID_PREFIX))
                    .attr("t", unix_now().to_string())
                    .children(vec![Node::new("collection")
                        .attr("name", "regular")
                        .attr("version", "1")]);
                if commands
                    .send(Command::Send {
                        node,
                        written: None,
                    })
                    .is_err()
                {
                    return;
                }
                sent += 1;
            }
            shared.registry().stats.flood_sent += batch;
        }
    });
    Ok(Json(json!({ "ok": true })))
}

async fn dials(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(shared.registry().pacing.dials()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AfterLoginBody {
    fault: Option<String>,
    code: Option<u16>,
}

/// `POST /after-login`: every later login ends right after `<success>` with this fault.
async fn after_login(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: AfterLoginBody = parse(&body)?;
    let fault = super::pacing::parse_fault(body.fault.as_deref(), body.code)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    shared.registry().pacing.set_after_login(fault);
    info!(?fault, "after-login fault set");
    Ok(Json(json!({ "ok": true })))
}

/// `POST /drop-all`: `/drop` for every logged-in device at once.
async fn drop_all(State(shared): State<Arc<Shared>>) -> ApiResult {
    let closed = super::pacing::drop_all(&mut shared.registry());
    let dropped = closed.len();
    for done in closed {
        let _ = tokio::time::timeout(COMMAND_WAIT, done).await;
    }
    info!(dropped, "every logged-in connection dropped");
    Ok(Json(json!({ "ok": true, "dropped": dropped })))
}

#[derive(Debug, Deserialize)]
struct InboxQuery {
    jid: Option<String>,
}

async fn inbox(State(shared): State<Arc<Shared>>, Query(query): Query<InboxQuery>) -> ApiResult {
    let text = query
        .jid
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "jid is required"))?;
    let jid = if text.contains('@') {
        parse_jid(&text)?
    } else {
        Jid::new(
            phone_number(&text)?,
            worker::wa::binary::jid::DEFAULT_USER_SERVER,
        )
    };
    let (messages, receipts) = peer::inbox(&shared.registry(), &jid)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such account"))?;
    Ok(Json(json!({ "messages": messages, "receipts": receipts })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    phone: Number,
    id: String,
    #[allow(dead_code)]
    from: Option<String>,
}

async fn read(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: ReadBody = parse(&body)?;
    let phone = phone_number(&body.phone.text())?;
    peer::read(&mut shared.registry(), &phone, &body.id, unix_now())?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    jid: String,
    kind: String,
    count: Option<u64>,
    from: Option<String>,
    video: Option<bool>,
}

/// `POST /push`: writes one server push to the device's live, logged-in connection and returns
/// once it is on the socket (`pushes`).
async fn push(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let body: PushBody = parse(&body)?;
    let jid = parse_jid(&body.jid)?;
    let from = match body.from.as_deref() {
        Some(text) if text.contains('@') => Some(parse_jid(text)?),
        Some(text) => Some(Jid::new(
            phone_number(text)?,
            worker::wa::binary::jid::DEFAULT_USER_SERVER,
        )),
        None => None,
    };
    let options = pushes::PushOptions {
        count: body.count,
        from,
        video: body.video.unwrap_or(false),
    };
    let (written, sent) = oneshot::channel();
    let id = {
        let mut registry = shared.registry();
        let commands = registry
            .logged_in(&jid)
            .map(|(_, c)| c.commands.clone())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no live logged-in connection for this device",
                )
            })?;
        let (id, push) = pushes::build(&mut registry, &jid, &body.kind, &options)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        let written = Some(written);
        let command = match push {
            pushes::Push::Node(node) => Command::Send { node, written },
            pushes::Push::Raw(plaintext) => Command::SendRaw { plaintext, written },
        };
        commands
            .send(command)
            .map_err(|_| ApiError::new(StatusCode::GONE, "the connection closed"))?;
        id
    };
    match tokio::time::timeout(COMMAND_WAIT, sent).await {
        Ok(Ok(())) => {
            info!(kind = %body.kind, device = jid.device, "pushed");
            Ok(Json(json!({ "ok": true, "id": id })))
        }
        _ => Err(ApiError::new(StatusCode::GONE, "the connection closed")),
    }
}

/// `GET /pushes?jid=<device>`: what the device answered to pushes, and every ack it sent.
async fn pushes_view(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<JidQuery>,
) -> ApiResult {
    let jid = query.device()?;
    let view = shared.registry().pushes.view(&jid).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "nothing pushed to or acked by this device",
        )
    })?;
    Ok(Json(json!(view)))
}
