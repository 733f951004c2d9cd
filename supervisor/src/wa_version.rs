//! The WhatsApp Web version the workers announce, owned by the supervisor at run time, so that
//! a version bump (WhatsApp answering `<failure reason="405">`) needs no redeploy.
//!
//! 1. At start the version is the newer of `WA_VERSION` and the one stored in
//!    `<sessions>/.wa-version.json` by an earlier run.
//! 2. `PUT /api/settings {"waVersion"}` sets it; so does a refresh from `WA_VERSION_URL` (at
//!    start, and when an account first reports `client_outdated`), which only ever moves it
//!    forward. Every change is stored atomically before it is used.
//! 3. The fleet gives it to every worker it spawns, tells the running ones, and those stopped as
//!    `client_outdated` dial again (paced like every other dial).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ipc_protocol::UnixMillis;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{info, warn};
use volume::atomic::write_atomic;
use worker::WaVersion;

use crate::webhook::client::Client;
use crate::webhook::url::WebhookUrl;

/// The file that keeps the version across restarts, in the sessions directory.
pub const VERSION_FILE: &str = ".wa-version.json";
/// What WhatsApp Web publishes its current build in (Baileys' `fetchLatestWaWebVersion`).
pub const DEFAULT_VERSION_URL: &str = "https://web.whatsapp.com/sw.js";
/// How long one refresh may take.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest page read while looking for the version.
const MAX_PAGE: usize = 4 << 20;
/// Refreshes after a 405 come at most this often.
const REFRESH_EVERY: Duration = Duration::from_secs(10 * 60);
/// WhatsApp Web's page answers a browser; a bare client may get another page.
const BROWSER_AGENT: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) \
     Chrome/131.0.0.0 Safari/537.36";

/// Where the current version came from.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `WA_VERSION` (or its default).
    Config,
    /// `PUT /api/settings`.
    Api,
    /// Read from `WA_VERSION_URL`.
    Refresh,
}

/// The version and where it came from, as stored.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Current {
    /// The version.
    pub version: WaVersion,
    /// Its origin.
    pub source: Source,
    /// When it was set, unless it is the configured one.
    pub updated_at: Option<UnixMillis>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    wa_version: String,
    source: Source,
    updated_at: UnixMillis,
}

/// The run-time version, shared by the fleet and the API.
#[derive(Debug)]
pub struct WaVersions {
    file: PathBuf,
    url: Option<WebhookUrl>,
    current: Mutex<Current>,
    last_refresh: Mutex<Option<Instant>>,
}

impl WaVersions {
    /// The version for a run: the newer of `configured` and the one stored under `sessions`.
    pub fn load(sessions: &Path, configured: WaVersion, url: Option<WebhookUrl>) -> Self {
        let file = sessions.join(VERSION_FILE);
        let mut current = Current {
            version: configured,
            source: Source::Config,
            updated_at: None,
        };
        match std::fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<Stored>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|s| Ok((parse(&s.wa_version)?, s)))
            {
                Ok((stored, s)) if newer(stored, configured) => {
                    current = Current {
                        version: stored,
                        source: s.source,
                        updated_at: Some(s.updated_at),
                    };
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(file = %file.display(), error = %e, "stored WhatsApp Web version unreadable; using WA_VERSION")
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(file = %file.display(), error = %e, "cannot read the stored WhatsApp Web version; using WA_VERSION")
            }
        }
        info!(version = %current.version, source = ?current.source, "whatsapp web version");
        WaVersions {
            file,
            url,
            current: Mutex::new(current),
            last_refresh: Mutex::new(None),
        }
    }

    /// The version now.
    pub fn current(&self) -> Current {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The URL refreshes read, if any.
    pub fn url(&self) -> Option<&WebhookUrl> {
        self.url.as_ref()
    }

    /// Sets the version: stored durably first, then used. Returns whether it changed.
    ///
    /// # Errors
    /// The write failed; nothing changed.
    pub fn set(&self, version: WaVersion, source: Source) -> io::Result<bool> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.version == version {
            return Ok(false);
        }
        let now = UnixMillis::now();
        let stored = Stored {
            wa_version: version.to_string(),
            source,
            updated_at: now,
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(io::Error::other)?;
        write_atomic(&self.file, &bytes, 0o644)?;
        info!(from = %current.version, to = %version, ?source, "whatsapp web version changed");
        *current = Current {
            version,
            source,
            updated_at: Some(now),
        };
        Ok(true)
    }

    /// Whether a refresh after a 405 may run now (at most one per [`REFRESH_EVERY`]).
    pub fn refresh_due(&self, now: Instant) -> bool {
        if self.url.is_none() {
            return false;
        }
        let mut last = self.last_refresh.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.saturating_duration_since(at) < REFRESH_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Reads the published version and adopts it when it is newer; returns the new version if
    /// it changed.
    pub async fn refresh(&self) -> Option<WaVersion> {
        let url = self.url.as_ref()?;
        let client = Client::new(REFRESH_TIMEOUT);
        let page = match client.get(url, BROWSER_AGENT, MAX_PAGE).await {
            Ok((status, body)) if status.is_success() => body,
            Ok((status, _)) => {
                warn!(%url, %status, "whatsapp web version refresh: unexpected status");
                return None;
            }
            Err(e) => {
                let cause = std::error::Error::source(&e)
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                warn!(%url, error = %format!("{e}{cause}"), "whatsapp web version refresh failed");
                return None;
            }
        };
        let Some(published) = published_version(&String::from_utf8_lossy(&page)) else {
            warn!(%url, "whatsapp web version refresh: no version found in the page");
            return None;
        };
        let current = self.current().version;
        if !newer(published, current) {
            info!(%published, %current, "whatsapp web version is current");
            return None;
        }
        match self.set(published, Source::Refresh) {
            Ok(true) => Some(published),
            Ok(false) => None,
            Err(e) => {
                warn!(error = %e, "cannot store the refreshed whatsapp web version; keeping the old one");
                None
            }
        }
    }
}

/// Parses `2.3000.1027934701`.
///
/// # Errors
/// A message for people.
pub fn parse(s: &str) -> Result<WaVersion, String> {
    let bad = || format!("a WhatsApp Web version looks like 2.3000.1027934701, got {s:?}");
    let parts: Vec<u32> = s
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [a, b, c] if *a > 0 => Ok(WaVersion([*a, *b, *c])),
        _ => Err(bad()),
    }
}

/// Whether `a` is a later version than `b`.
pub fn newer(a: WaVersion, b: WaVersion) -> bool {
    a.0 > b.0
}

/// The version a page publishes: WhatsApp Web's `sw.js` carries `"client_revision":N` (the
/// version is then `2.3000.N`, as Baileys reads it); a JSON answer may carry
/// `"currentVersion":"2.3000.N"` (the check-update endpoint) or `"version":[2,3000,N]`.
pub fn published_version(page: &str) -> Option<WaVersion> {
    if let Some(at) = page.find("client_revision") {
        let rest = &page[at + "client_revision".len()..];
        let rest = rest.trim_start_matches(['\\', '"', ':', ' ', '\t', '\n', '\r']);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(revision) = digits.parse::<u32>() {
            return Some(WaVersion([2, 3000, revision]));
        }
    }
    let json: serde_json::Value = serde_json::from_str(page.trim()).ok()?;
    if let Some(v) = json.get("currentVersion").and_then(|v| v.as_str()) {
        return parse(v).ok();
    }
    let parts = json.get("version")?.as_array()?;
    match parts
        .iter()
        .map(|p| p.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect::<Option<Vec<u32>>>()?
        .as_slice()
    {
        [a, b, c] => Some(WaVersion([*a, *b, *c])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_as_whatsapp_web_publishes_it() {
        let sw = r#"self.__swData=JSON.parse(/*BTDS*/"{\"dynamic_data\":{\"SiteData\":{\"server_revision\":1027934701,\"client_revision\":1027934701}}}");"#;
        assert_eq!(
            published_version(sw),
            Some(WaVersion([2, 3000, 1_027_934_701]))
        );
        assert_eq!(
            published_version(r#"{"client_revision": 1030000000}"#),
            Some(WaVersion([2, 3000, 1_030_000_000]))
        );
        assert_eq!(
            published_version(r#"{"isBroken":false,"currentVersion":"2.3000.1031000000"}"#),
            Some(WaVersion([2, 3000, 1_031_000_000]))
        );
        assert_eq!(
            published_version(r#"{"version":[2,3000,1015901307]}"#),
            Some(WaVersion([2, 3000, 1_015_901_307]))
        );
        assert_eq!(published_version("<html>nothing</html>"), None);
        assert_eq!(published_version(r#"{"client_revision":"x"}"#), None);
    }

    #[test]
    fn parses_and_orders_versions() {
        assert_eq!(
            parse(" 2.3000.1027934701 "),
            Ok(WaVersion([2, 3000, 1_027_934_701]))
        );
        for bad in ["", "2.3000", "2.3000.x", "0.0.0", "2.3000.1.4", "-2.1.1"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(newer(WaVersion([2, 3000, 2]), WaVersion([2, 3000, 1])));
        assert!(newer(WaVersion([2, 3001, 0]), WaVersion([2, 3000, 9])));
        assert!(!newer(WaVersion([2, 3000, 1]), WaVersion([2, 3000, 1])));
    }

    #[test]
    fn the_newer_of_configured_and_stored_wins_and_a_change_is_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = WaVersion([2, 3000, 1]);
        let new = WaVersion([2, 3000, 2]);
        let versions = WaVersions::load(dir.path(), old, None);
        assert_eq!(versions.current().source, Source::Config);
        assert!(versions.set(new, Source::Api).expect("stored"));
        assert!(!versions.set(new, Source::Api).expect("same"));
        // The next run keeps the stored version over an older configured one...
        let again = WaVersions::load(dir.path(), old, None);
        assert_eq!(again.current().version, new);
        assert_eq!(again.current().source, Source::Api);
        // ...and a redeploy with a newer WA_VERSION wins over the stored one.
        let newest = WaVersion([2, 3000, 3]);
        let redeployed = WaVersions::load(dir.path(), newest, None);
        assert_eq!(redeployed.current().version, newest);
        assert_eq!(redeployed.current().source, Source::Config);
        // Without a URL, nothing refreshes.
        assert!(!redeployed.refresh_due(Instant::now()));
    }
}
