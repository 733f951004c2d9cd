//! Remote linking: a signed, expiring URL that lets someone without the admin token link one
//! account's phone (its live QR, or a pairing code), and nothing else.
//!
//! - `POST /api/whatsapp/accounts/:id/link-url` `{"ttlSeconds"}` (admin) →
//!   `{"success":true,"url":"/link/<token>","expiresAt"}`.
//! - `GET /link/:token`: the page (`link.html`); `GET /link/:token/qr`: the account's QR as
//!   JSON; `POST /link/:token/pairing-code` `{"phone"}`: a pairing code. Public: the token is
//!   the credential, and it names its account, so no route under it reaches another.
//!
//! The token is `<account>.<expires, unix s>.<issued, unix ms>.<HMAC-SHA256, base64url>`, keyed
//! by a random secret kept in `$SESSIONS/link-secret` (mode 0600, written atomically; never
//! the admin token), compared in constant time. A link is refused once expired, and once used:
//! the first time a request under it finds the account paired, the link is recorded in
//! `$SESSIONS/link-used.json` (atomically), so it stays refused after a restart and after a
//! later logout.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ipc_protocol::{AccountId, UnixMillis};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use std::sync::LazyLock;
use tracing::{info, warn};
use volume::atomic::write_atomic;
use volume::secret::Secret;

use super::content_type::RequireJson;
use super::error::ApiError;
use super::page::Page;
use super::{accounts, iso, parse_id, AppState};

/// The secret's file under `$SESSIONS`.
pub const SECRET_FILE: &str = "link-secret";
/// The used links' file under `$SESSIONS`.
pub const USED_FILE: &str = "link-used.json";
/// The shortest and longest lifetime of a link.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Seven days.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// What the signature covers before the token's fields.
const DOMAIN: &str = "wafleet-link-v1";

/// Creating the secret and rewriting the used list, one at a time in this process.
static FILES: Mutex<()> = Mutex::new(());

/// A link's contents, once its signature holds.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Link {
    /// The one account it reaches.
    pub account: AccountId,
    /// Unix seconds after which it is refused.
    pub expires: u64,
    /// Unix milliseconds it was made at (names it in the used list).
    pub issued: u64,
}

/// Why a link is refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Not a token we signed (malformed, tampered, or signed under another secret).
    #[error("this link is not valid")]
    Invalid,
    /// Past its expiry.
    #[error("this link has expired; ask for a new one")]
    Expired,
    /// The account was paired through it (or since it was made).
    #[error("this link has been used: the account is linked")]
    Used,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::Invalid => StatusCode::NOT_FOUND,
            Refusal::Expired | Refusal::Used => StatusCode::GONE,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Refusal::Invalid => "link_invalid",
            Refusal::Expired => "link_expired",
            Refusal::Used => "link_used",
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::new(r.status(), r.code(), r.to_string())
    }
}

fn mac(secret: &[u8], account: &str, expires: u64, issued: u64) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(format!("{DOMAIN}|{account}|{expires}|{issued}").as_bytes());
    mac
}

/// The token of `link` under `secret`.
pub fn sign(secret: &[u8], link: &Link) -> String {
    let tag = mac(secret, link.account.as_str(), link.expires, link.issued)
        .finalize()
        .into_bytes();
    format!(
        "{}.{}.{}.{}",
        link.account,
        link.expires,
        link.issued,
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// Checks `token`'s signature (in constant time) and expiry at `now` (unix seconds).
///
/// # Errors
/// [`Refusal::Invalid`] or [`Refusal::Expired`].
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<Link, Refusal> {
    let mut parts = token.split('.');
    let (Some(account), Some(expires), Some(issued), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Refusal::Invalid);
    };
    let account = AccountId::parse(account).map_err(|_| Refusal::Invalid)?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (Some(expires), Some(issued)) = (number(expires), number(issued)) else {
        return Err(Refusal::Invalid);
    };
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| Refusal::Invalid)?;
    mac(secret, account.as_str(), expires, issued)
        .verify_slice(&tag)
        .map_err(|_| Refusal::Invalid)?;
    if now >= expires {
        return Err(Refusal::Expired);
    }
    Ok(Link {
        account,
        expires,
        issued,
    })
}

/// The signing secret in `sessions`, generated (32 random bytes, mode 0600, atomic) at first
/// use.
///
/// # Errors
/// When it cannot be read or stored.
pub fn secret(sessions: &Path) -> io::Result<Secret<Vec<u8>>> {
    let _held = FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = sessions.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if let Ok(bytes) = hex::decode(text.trim()) {
                if bytes.len() == 32 {
                    return Ok(Secret::new(bytes));
                }
            }
            warn!(path = %path.display(), "link secret unreadable; a new one replaces it (earlier links stop working)");
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let fresh: [u8; 32] = rand::random();
    write_atomic(&path, format!("{}\n", hex::encode(fresh)).as_bytes(), 0o600)?;
    info!(path = %path.display(), "generated the remote-link signing secret (mode 0600)");
    Ok(Secret::new(fresh.to_vec()))
}

/// The used links: `"<account>.<issued>"` → its expiry (dropped once past it).
fn read_used(sessions: &Path) -> io::Result<BTreeMap<String, u64>> {
    match std::fs::read(sessions.join(USED_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

fn used_key(link: &Link) -> String {
    format!("{}.{}", link.account, link.issued)
}

/// Whether `link` was used.
///
/// # Errors
/// When the used list cannot be read.
pub fn is_used(sessions: &Path, link: &Link) -> io::Result<bool> {
    Ok(read_used(sessions)?.contains_key(&used_key(link)))
}

/// Records `link` as used, durably; expired entries go at the same time.
///
/// # Errors
/// When the used list cannot be read or written.
pub fn mark_used(sessions: &Path, link: &Link, now: u64) -> io::Result<()> {
    let _held = FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut used = read_used(sessions)?;
    used.retain(|_, expires| *expires > now);
    used.insert(used_key(link), link.expires);
    let bytes = serde_json::to_vec_pretty(&used).map_err(io::Error::other)?;
    write_atomic(&sessions.join(USED_FILE), &bytes, 0o600)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn storage(e: &io::Error) -> ApiError {
    ApiError::internal(format!("the link files on the sessions volume failed: {e}"))
}

/// The body of `POST /api/whatsapp/accounts/:id/link-url`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(rename = "ttlSeconds")]
    ttl_seconds: u64,
}

/// `POST /api/whatsapp/accounts/:id/link-url` `{"ttlSeconds"}`.
///
/// # Errors
/// 400 for a bad body or a lifetime outside 60 s to 7 days, 404 for an unknown account, 415
/// when the body is not declared JSON, 500 when the secret cannot be stored.
#[utoipa::path(post, path = "/api/whatsapp/accounts/{account_id}/link-url", tag = "accounts", summary = "A signed, expiring link for this account only",
    params(("account_id" = String, Path, description = "The account id: [a-z0-9][a-z0-9_-]*, at most 64")), request_body = CreateBody,
    responses((status = 200, description = "The link", body = super::openapi::LinkUrl), (status = 500, response = super::openapi::Error)))]
pub async fn create(
    State(state): State<AppState>,
    UrlPath(raw): UrlPath<String>,
    _json: RequireJson,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&raw)?;
    if !state.cache.contains(&id) {
        return Err(ApiError::account_not_found(id.as_str()));
    }
    let req: CreateBody = super::error::json_body(body, super::MAX_BODY_LEN)?;
    if !(MIN_TTL.as_secs()..=MAX_TTL.as_secs()).contains(&req.ttl_seconds) {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            format!(
                "ttlSeconds must be {} to {} (7 days)",
                MIN_TTL.as_secs(),
                MAX_TTL.as_secs()
            ),
        ));
    }
    let secret = secret(state.registry.root()).map_err(|e| storage(&e))?;
    let now = UnixMillis::now();
    let link = Link {
        account: id.clone(),
        expires: now.0 / 1000 + req.ttl_seconds,
        issued: now.0,
    };
    let token = sign(secret.expose(), &link);
    info!(account = %id, ttl_s = req.ttl_seconds, "remote link created");
    Ok(Json(json!({
        "success": true,
        "url": format!("/link/{token}"),
        "expiresAt": iso(UnixMillis(link.expires * 1000)),
    })))
}

/// Why a request under a link gets no answer.
#[derive(Debug)]
enum Failed {
    /// The link is refused.
    Refused(Refusal),
    /// The link files could not be read or written.
    Storage(io::Error),
}

impl From<Failed> for ApiError {
    fn from(f: Failed) -> Self {
        match f {
            Failed::Refused(r) => r.into(),
            Failed::Storage(e) => storage(&e),
        }
    }
}

/// The link under `token`, if it is good now: signed, not expired, not used, its account
/// known and not paired (a paired account uses the link up).
fn check(state: &AppState, token: &str) -> Result<Link, Failed> {
    let sessions = state.registry.root();
    let secret = secret(sessions).map_err(Failed::Storage)?;
    let now = unix_now();
    let link = verify(secret.expose(), token, now).map_err(Failed::Refused)?;
    if is_used(sessions, &link).map_err(Failed::Storage)? {
        return Err(Failed::Refused(Refusal::Used));
    }
    let Some(paired) = state
        .cache
        .read_one(&link.account, |v| v.state.jid.is_some())
    else {
        return Err(Failed::Refused(Refusal::Invalid));
    };
    if paired {
        mark_used(sessions, &link, now).map_err(Failed::Storage)?;
        info!(account = %link.account, "remote link used up: the account is paired");
        return Err(Failed::Refused(Refusal::Used));
    }
    Ok(link)
}

/// The page.
static LINK_PAGE: LazyLock<Page> = LazyLock::new(|| Page::new(include_str!("link.html")));

/// `GET /link/:token`: the page, or the refusal in the same page.
#[utoipa::path(get, path = "/link/{token}", tag = "pages", summary = "The remote linking page: the account's live QR and a pairing-code form",
    params(("token" = String, Path, description = "The signed link token")),
    responses((status = 200, description = "The page", content_type = "text/html"),
        (status = 404, description = "An invalid link (the page says so)", content_type = "text/html"),
        (status = 410, description = "An expired or used link (the page says so)", content_type = "text/html")))]
pub async fn page(State(state): State<AppState>, UrlPath(token): UrlPath<String>) -> Response {
    let (status, error) = match check(&state, &token) {
        Ok(_) => (StatusCode::OK, String::new()),
        Err(Failed::Refused(r)) => (r.status(), r.to_string()),
        Err(Failed::Storage(e)) => {
            warn!(error = %e, "remote link files unreadable");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "this link cannot be checked right now; try again later".to_owned(),
            )
        }
    };
    // The token is `[a-z0-9_-]`, digits, dots and base64url once it verified; a refused one is
    // not written into the page at all. The error texts are ours.
    let token = if status == StatusCode::OK {
        token
    } else {
        String::new()
    };
    let html = LINK_PAGE
        .template()
        .replace("__TOKEN__", &token)
        .replace("__ERROR__", &error);
    LINK_PAGE.respond(status, html)
}

/// `GET /link/:token/qr`: the account's status and live QR.
///
/// # Errors
/// 404 for an invalid link, 410 once expired or used.
#[utoipa::path(get, path = "/link/{token}/qr", tag = "pages", summary = "The linked account's status and live QR",
    params(("token" = String, Path, description = "The signed link token")),
    responses((status = 200, description = "Status and QR", body = super::openapi::LinkQr),
        (status = 404, response = super::openapi::Error), (status = 410, response = super::openapi::Error)))]
pub async fn qr(
    State(state): State<AppState>,
    UrlPath(token): UrlPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let link = check(&state, &token)?;
    let view = state
        .cache
        .get(&link.account)
        .ok_or(ApiError::from(Refusal::Invalid))?;
    let code = view
        .state
        .qr
        .as_deref()
        .map(super::qr::data_url)
        .transpose()?;
    Ok(Json(json!({
        "success": true,
        "status": view.state.status,
        "qr": view.state.qr,
        "qrCode": code,
        "expiresAt": view.state.qr_expires_at.map(iso),
        "linkExpiresAt": iso(UnixMillis(link.expires * 1000)),
    })))
}

/// `POST /link/:token/pairing-code` `{"phone"}`: as the admin route, for this link's account.
///
/// # Errors
/// 404 for an invalid link, 410 once expired or used, then as the admin route.
#[utoipa::path(post, path = "/link/{token}/pairing-code", tag = "pages", summary = "A pairing code for the linked account",
    params(("token" = String, Path, description = "The signed link token")), request_body = accounts::PairingCodeBody,
    responses((status = 200, description = "The code to type on the phone", body = super::openapi::PairingCode),
        (status = 404, response = super::openapi::Error), (status = 410, response = super::openapi::Error),
        (status = 409, response = super::openapi::Error), (status = 502, response = super::openapi::Error),
        (status = 503, response = super::openapi::Error), (status = 504, response = super::openapi::Error)))]
pub async fn pairing_code(
    State(state): State<AppState>,
    UrlPath(token): UrlPath<String>,
    _json: RequireJson,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let link = check(&state, &token)?;
    let req: accounts::PairingCodeBody = super::error::json_body(body, super::MAX_BODY_LEN)?;
    accounts::code_for(&state, link.account, &req.phone)
        .await
        .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn link(account: &str, expires: u64) -> Link {
        Link {
            account: AccountId::parse(account).expect("id"),
            expires,
            issued: 1_000,
        }
    }

    #[test]
    fn a_signed_link_verifies_until_its_expiry_and_names_its_account() {
        let secret = [7u8; 32];
        let token = sign(&secret, &link("shop-a", 2_000));
        assert!(token.starts_with("shop-a.2000.1000."), "{token}");
        assert_eq!(verify(&secret, &token, 1_999), Ok(link("shop-a", 2_000)));
        assert_eq!(verify(&secret, &token, 2_000), Err(Refusal::Expired));
        assert_eq!(verify(&secret, &token, 9_999), Err(Refusal::Expired));
    }

    #[test]
    fn tampered_tokens_and_other_secrets_are_invalid() {
        let secret = [7u8; 32];
        let token = sign(&secret, &link("shop-a", 2_000));
        assert_eq!(verify(&[8u8; 32], &token, 0), Err(Refusal::Invalid));
        // Another account, a later expiry, a flipped signature character: all invalid.
        for forged in [
            token.replacen("shop-a", "shop-b", 1),
            token.replacen(".2000.", ".9000.", 1),
            {
                let mut t = token.clone();
                let last = t.pop().expect("char");
                t.push(if last == 'A' { 'B' } else { 'A' });
                t
            },
            format!("{token}.x"),
            "shop-a.2000.1000".to_owned(),
            String::new(),
            "../..".to_owned(),
        ] {
            assert_eq!(
                verify(&secret, &forged, 0),
                Err(Refusal::Invalid),
                "{forged}"
            );
        }
    }

    #[test]
    fn the_secret_is_made_once_with_mode_0600_and_used_links_stay_used() {
        let dir = tempfile::tempdir().expect("dir");
        let first = secret(dir.path()).expect("made");
        assert_eq!(first.expose().len(), 32);
        let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
            .expect("stored")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(secret(dir.path()).expect("read").expose(), first.expose());

        let a = link("shop-a", 2_000);
        let old = Link {
            issued: 5,
            expires: 100,
            ..link("shop-b", 0)
        };
        assert!(!is_used(dir.path(), &a).expect("read"));
        mark_used(dir.path(), &old, 50).expect("write");
        mark_used(dir.path(), &a, 150).expect("write");
        assert!(is_used(dir.path(), &a).expect("read"));
        assert!(
            !is_used(dir.path(), &old).expect("read"),
            "expired entries are pruned"
        );
        let mode = std::fs::metadata(dir.path().join(USED_FILE))
            .expect("stored")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
