//! Browser sessions: what `/login` hands out in place of HTTP Basic.
//!
//! A session id is 32 random bytes from the OS, sent once in the cookie (base64url) and kept
//! here only as its SHA-256, with a fixed expiry [`SESSION_LIFETIME`] after login (a dashboard
//! left open does not keep it alive). At most [`MAX_SESSIONS`] live at once; a new login past
//! that pushes out the one closest to expiring. The store lives in memory: a restart logs every
//! browser out, never a token client.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's request
//! carries it), `Path=/`, and `Secure` when the client came over TLS.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use volume::secret::Secret;

/// The cookie's name.
pub const COOKIE_NAME: &str = "wafleet_session";
/// How long a session lasts after login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions alive at once.
pub const MAX_SESSIONS: usize = 64;

/// The live sessions, by the SHA-256 of their id.
#[derive(Debug, Default)]
pub struct SessionStore {
    expiries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl SessionStore {
    /// Starts a session at `now`; returns the cookie value.
    pub fn create(&self, now: Instant) -> Secret<String> {
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        let value = URL_SAFE_NO_PAD.encode(id);
        let mut expiries = self.lock();
        expiries.retain(|_, expiry| *expiry > now);
        while expiries.len() >= MAX_SESSIONS {
            let Some(oldest) = expiries.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k) else {
                break;
            };
            expiries.remove(&oldest);
        }
        expiries.insert(digest(&value), now + SESSION_LIFETIME);
        Secret::new(value)
    }

    /// Whether `value` names a session alive at `now`.
    pub fn is_valid(&self, value: &str, now: Instant) -> bool {
        let key = digest(value);
        let mut expiries = self.lock();
        match expiries.get(&key) {
            Some(expiry) if *expiry > now => true,
            Some(_) => {
                expiries.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Ends the session `value` names, if any.
    pub fn revoke(&self, value: &str) {
        self.lock().remove(&digest(value));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.expiries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// The session cookie's value in the request, if it sent one.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE_NAME && !value.is_empty())
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &Secret<String>, secure: bool) -> HeaderValue {
    cookie_header(value.expose(), SESSION_LIFETIME.as_secs(), secure)
}

/// `Set-Cookie` that makes the browser forget the session.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    cookie_header("", 0, secure)
}

fn cookie_header(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    // A base64url value and fixed text: always a valid header value.
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("wafleet_session=; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_until_it_expires_or_is_revoked() {
        let store = SessionStore::default();
        let t0 = Instant::now();
        let a = store.create(t0);
        let b = store.create(t0);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(
            URL_SAFE_NO_PAD.decode(a.expose()).expect("base64url").len(),
            32
        );
        assert!(store.is_valid(a.expose(), t0 + SESSION_LIFETIME - Duration::from_secs(1)));
        assert!(!store.is_valid(a.expose(), t0 + SESSION_LIFETIME));
        assert!(
            !store.is_valid(a.expose(), t0),
            "an expired session is gone for good"
        );
        store.revoke(b.expose());
        assert!(!store.is_valid(b.expose(), t0));
        assert!(!store.is_valid("made-up", t0));
        assert!(!store.is_valid("", t0));
    }

    #[test]
    fn the_store_is_bounded_and_drops_the_oldest_first() {
        let store = SessionStore::default();
        let t0 = Instant::now();
        let first = store.create(t0);
        let rest: Vec<_> = (1..=MAX_SESSIONS)
            .map(|i| store.create(t0 + Duration::from_secs(i as u64)))
            .collect();
        let now = t0 + Duration::from_secs(MAX_SESSIONS as u64 + 1);
        assert!(!store.is_valid(first.expose(), now), "the oldest made room");
        assert!(rest.iter().all(|s| store.is_valid(s.expose(), now)));
        assert_eq!(store.lock().len(), MAX_SESSIONS);
    }

    #[test]
    fn ids_are_stored_hashed() {
        let store = SessionStore::default();
        let s = store.create(Instant::now());
        let keys: Vec<_> = store.lock().keys().copied().collect();
        assert_eq!(keys, [digest(s.expose())]);
        assert_ne!(&keys[0][..], s.expose().as_bytes());
    }

    #[test]
    fn reads_our_cookie_among_others_and_writes_the_flags() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("theme=dark; wafleet_session=abc; x=y"),
        );
        assert_eq!(cookie(&h), Some("abc"));
        let mut other = HeaderMap::new();
        other.append(
            COOKIE,
            HeaderValue::from_static("wafleet_session_old=zzz; wafleet_session="),
        );
        assert_eq!(cookie(&other), None);

        let set = set_cookie(&Secret::new("v".to_owned()), true);
        assert_eq!(
            set,
            "wafleet_session=v; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200; Secure"
        );
        assert_eq!(
            clear_cookie(false),
            "wafleet_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        );
    }
}
