//! The worker's flags and environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use ipc_protocol::AccountId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor};

/// WhatsApp Web's WebSocket endpoint.
pub const DEFAULT_WS_URL: &str = "wss://web.whatsapp.com/ws/chat";

/// How one worker is started: `supervisor worker --account <id> --sessions <dir> --ipc <socket>`.
#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    /// The account this worker runs.
    #[arg(long)]
    pub account: AccountId,
    /// The sessions directory; the account's files live in `<sessions>/<account>/`.
    #[arg(long)]
    pub sessions: PathBuf,
    /// The supervisor's IPC socket. Without it the worker runs alone and only logs its state.
    #[arg(long)]
    pub ipc: Option<PathBuf>,
    /// The pid of the supervisor that spawned this worker; the worker exits if it is gone.
    #[arg(long, hide = true)]
    pub parent_pid: Option<i32>,
    /// How to reach WhatsApp.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: String,
    /// Seals creds and Signal keys at rest (32 bytes, hex or base64); see `volume::seal`.
    #[arg(long, env = "SESSIONS_KEY", hide_env_values = true)]
    pub sessions_key: Option<String>,
}

/// How a worker reaches WhatsApp. The supervisor flattens the same flags into its own
/// configuration and hands them to every worker it spawns, so both share one set of defaults.
#[derive(Args, Clone, Debug)]
pub struct ConnectionArgs {
    /// WhatsApp Web socket URL.
    #[arg(long, env = "WA_WS_URL", default_value = DEFAULT_WS_URL)]
    pub wa_ws_url: String,
    /// First reconnect delay; it doubles per failed attempt.
    #[arg(long, env = "RECONNECT_BASE_MS", default_value_t = 1000)]
    pub reconnect_base_ms: u64,
    /// Longest reconnect delay.
    #[arg(long, env = "RECONNECT_MAX_MS", default_value_t = 30000)]
    pub reconnect_max_ms: u64,
    /// Failed attempts before the status becomes `disconnected` (then one try every 5 minutes).
    #[arg(long, env = "MAX_RECONNECT_ATTEMPTS", default_value_t = 10)]
    pub max_reconnect_attempts: u32,
    /// A connection that stays logged in this long is stable: the reconnect backoff starts over
    /// (and a 515 restart after it reconnects at once).
    #[arg(long, env = "BACKOFF_RESET_AFTER_MS", default_value_t = 60_000)]
    pub backoff_reset_after_ms: u64,
    /// Hex root public key the server certificate chain must verify under (default:
    /// WhatsApp's; the simulator prints its own).
    #[arg(long, env = "WA_TRUST_ROOT", value_parser = parse_trust_root)]
    pub wa_trust_root: Option<TrustRoot>,
    /// A PEM file of CA certificates `wss://` also trusts, besides the webpki roots: a testing
    /// aid, for a test server's own CA (`wa-sim --tls` prints its `ca_cert_file`). WhatsApp
    /// needs none.
    #[arg(long, env = "WA_TLS_CA_FILE")]
    pub wa_tls_ca_file: Option<PathBuf>,
    /// WhatsApp Web version sent in the user agent, `primary.secondary.tertiary`.
    #[arg(long, env = "WA_VERSION", default_value = DEFAULT_WA_VERSION, value_parser = parse_version)]
    pub wa_version: WaVersion,
    /// How the companion shows under the phone's Linked devices: `Name,Platform,Version`
    /// (Baileys' `browser`), e.g. `Mac OS,Chrome,14.4.1`. The platform is one of WhatsApp's
    /// `DeviceProps.PlatformType` names (Chrome, Firefox, Safari, Edge, Desktop, ...).
    #[arg(long, env = "WA_BROWSER", default_value = DEFAULT_BROWSER, value_parser = Browser::parse)]
    pub wa_browser: Browser,
    /// Lifetime of each QR ref; 0 means the protocol's (60 s for the first, 20 s after).
    #[arg(long, env = "QR_REF_TIMEOUT_MS", default_value_t = 0)]
    pub qr_ref_timeout_ms: u64,
    /// Queued outgoing messages per account before a send is refused (429).
    #[arg(long, env = "OUTBOX_LIMIT", default_value_t = 10_000)]
    pub outbox_limit: u32,
    /// Days a sent or received message is kept.
    #[arg(long, env = "MESSAGE_RETENTION_DAYS", default_value_t = 7)]
    pub message_retention_days: u32,
    /// Sent, and received, messages kept per account (each).
    #[arg(long, env = "MESSAGE_RETENTION_COUNT", default_value_t = 10_000)]
    pub message_retention_count: u32,
    /// How often, at the latest, a worker reports to the supervisor when nothing changes (an
    /// online worker's heartbeat goes with its keepalive ping, every 20 to 30 s); the
    /// supervisor's HEARTBEAT_TIMEOUT_MS must allow for two of these.
    #[arg(
        long,
        env = "HEARTBEAT_INTERVAL_MS",
        default_value_t = 30_000,
        hide = true
    )]
    pub heartbeat_interval_ms: u64,
}

/// The WhatsApp Web version whatsmeow sends (wa-protocol.md §0).
pub const DEFAULT_WA_VERSION: &str = "2.3000.1045649367";

/// The companion identity Baileys gives by default (`Browsers.macOS('Chrome')`): a desktop
/// browser, like most linked devices, not an unusual name on platform UNKNOWN.
pub const DEFAULT_BROWSER: &str = "Mac OS,Chrome,14.4.1";

/// `DeviceProps.PlatformType` by name, as WhatsApp's protobuf names them (Baileys maps
/// `browser[1]` through the same table, upper-cased).
const PLATFORM_TYPES: [(&str, i32); 25] = [
    ("UNKNOWN", 0),
    ("CHROME", 1),
    ("FIREFOX", 2),
    ("IE", 3),
    ("OPERA", 4),
    ("SAFARI", 5),
    ("EDGE", 6),
    ("DESKTOP", 7),
    ("IPAD", 8),
    ("ANDROID_TABLET", 9),
    ("OHANA", 10),
    ("ALOHA", 11),
    ("CATALINA", 12),
    ("TCL_TV", 13),
    ("IOS_PHONE", 14),
    ("IOS_CATALYST", 15),
    ("ANDROID_PHONE", 16),
    ("ANDROID_AMBIGUOUS", 17),
    ("WEAR_OS", 18),
    ("AR_WRIST", 19),
    ("AR_DEVICE", 20),
    ("UWP", 21),
    ("VR", 22),
    ("CLOUD_API", 23),
    ("SMARTGLASSES", 24),
];

/// Longest device name accepted (the phone shows it in one line).
const MAX_BROWSER_NAME: usize = 64;

/// How the companion describes itself when it registers (wa-protocol.md §4.6): the name the
/// phone lists under Linked devices, the platform (its icon), and a version.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Browser {
    /// `DeviceProps.os`: the name shown on the phone.
    pub name: String,
    /// The platform's name as given (for display).
    pub platform: String,
    /// `DeviceProps.platformType`.
    pub platform_type: i32,
    /// `DeviceProps.version`.
    pub version: [u32; 3],
}

impl Browser {
    /// Parses `Name,Platform[,Version]`: the name is 1 to 64 printable characters, the platform
    /// a `PlatformType` name in any case, the version up to three numbers (`14.4.1`; missing
    /// parts are 0; default `0.1.0`).
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(s: &str) -> Result<Browser, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let (name, platform, version) = match parts.as_slice() {
            [name, platform] => (*name, *platform, None),
            [name, platform, version] => (*name, *platform, Some(*version)),
            _ => {
                return Err(format!(
                    "WA_BROWSER must be \"Name,Platform,Version\", like \"{DEFAULT_BROWSER}\", got {s:?}"
                ))
            }
        };
        if name.is_empty()
            || name.chars().count() > MAX_BROWSER_NAME
            || name.chars().any(char::is_control)
        {
            return Err(format!(
                "WA_BROWSER's name must be 1 to {MAX_BROWSER_NAME} printable characters, got {name:?}"
            ));
        }
        let upper = platform.to_ascii_uppercase().replace([' ', '-'], "_");
        let Some(&(_, platform_type)) = PLATFORM_TYPES.iter().find(|(n, _)| *n == upper) else {
            let known: Vec<&str> = PLATFORM_TYPES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "WA_BROWSER's platform {platform:?} is not one of {}",
                known.join(", ")
            ));
        };
        let version = match version.filter(|v| !v.is_empty()) {
            None => [0, 1, 0],
            Some(v) => {
                let numbers: Vec<u32> = v
                    .split('.')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|_| {
                        format!("WA_BROWSER's version must be numbers like 14.4.1, got {v:?}")
                    })?;
                if numbers.is_empty() || numbers.len() > 3 {
                    return Err(format!(
                        "WA_BROWSER's version must be numbers like 14.4.1, got {v:?}"
                    ));
                }
                let mut version = [0; 3];
                version[..numbers.len()].copy_from_slice(&numbers);
                version
            }
        };
        Ok(Browser {
            name: name.to_owned(),
            platform: platform.to_owned(),
            platform_type,
            version,
        })
    }
}

impl std::fmt::Display for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.version;
        write!(f, "{},{},{a}.{b}.{c}", self.name, self.platform)
    }
}

/// A 32-byte root public key given in hex.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct TrustRoot(pub [u8; 32]);

/// A WhatsApp Web version, `primary.secondary.tertiary`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct WaVersion(pub [u32; 3]);

impl std::fmt::Display for TrustRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Display for WaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{a}.{b}.{c}")
    }
}

fn parse_trust_root(s: &str) -> Result<TrustRoot, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "WA_TRUST_ROOT must be 64 hex characters (a 32-byte public key), got {} characters",
            s.len()
        )
    };
    if s.len() != 64 {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte =
            u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(TrustRoot(key))
}

impl std::str::FromStr for WaVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_version(s)
    }
}

fn parse_version(s: &str) -> Result<WaVersion, String> {
    let parts: Vec<u32> = s
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("WA_VERSION must look like 2.3000.1045649367, got {s:?}"))?;
    match parts.as_slice() {
        [a, b, c] => Ok(WaVersion([*a, *b, *c])),
        _ => Err(format!(
            "WA_VERSION must have three parts, like 2.3000.1045649367, got {s:?}"
        )),
    }
}

impl ConnectionArgs {
    /// The same flags as environment variables, for a spawned worker.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("WA_WS_URL", self.wa_ws_url.clone()),
            ("RECONNECT_BASE_MS", self.reconnect_base_ms.to_string()),
            ("RECONNECT_MAX_MS", self.reconnect_max_ms.to_string()),
            (
                "MAX_RECONNECT_ATTEMPTS",
                self.max_reconnect_attempts.to_string(),
            ),
            (
                "BACKOFF_RESET_AFTER_MS",
                self.backoff_reset_after_ms.to_string(),
            ),
            ("WA_VERSION", self.wa_version.to_string()),
            ("WA_BROWSER", self.wa_browser.to_string()),
            ("QR_REF_TIMEOUT_MS", self.qr_ref_timeout_ms.to_string()),
            ("OUTBOX_LIMIT", self.outbox_limit.to_string()),
            (
                "MESSAGE_RETENTION_DAYS",
                self.message_retention_days.to_string(),
            ),
            (
                "MESSAGE_RETENTION_COUNT",
                self.message_retention_count.to_string(),
            ),
            (
                "HEARTBEAT_INTERVAL_MS",
                self.heartbeat_interval_ms.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(root) = self.wa_trust_root {
            env.push(("WA_TRUST_ROOT".into(), root.to_string()));
        }
        if let Some(file) = &self.wa_tls_ca_file {
            // `tls_ca_certs` refused a path that is not UTF-8 at start.
            env.push(("WA_TLS_CA_FILE".into(), file.to_string_lossy().into_owned()));
        }
        env
    }

    /// The trust anchors of `WA_TLS_CA_FILE`'s certificates, each checked to be usable as one;
    /// none without it. The supervisor calls this at start (and refuses to start on an error),
    /// each worker again before it dials and keeps the anchors for its TLS configuration.
    ///
    /// # Errors
    /// A message naming `WA_TLS_CA_FILE` and the file: unreadable, not PEM, no certificate in
    /// it, or a certificate that cannot be a CA. It never quotes the file's contents.
    pub fn tls_ca_certs(&self) -> Result<Vec<TrustAnchor<'static>>, String> {
        match &self.wa_tls_ca_file {
            None => Ok(Vec::new()),
            Some(path) => read_ca_file(path),
        }
    }
}

/// Reads the PEM file `WA_TLS_CA_FILE` names (see [`ConnectionArgs::tls_ca_certs`]).
fn read_ca_file(path: &Path) -> Result<Vec<TrustAnchor<'static>>, String> {
    let shown = path.display();
    if path.to_str().is_none() {
        return Err(format!("WA_TLS_CA_FILE {shown} must be a UTF-8 path"));
    }
    let pem =
        std::fs::read(path).map_err(|e| format!("WA_TLS_CA_FILE {shown} cannot be read: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("WA_TLS_CA_FILE {shown} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "WA_TLS_CA_FILE {shown} holds no certificate (no PEM `CERTIFICATE` block)"
        ));
    }
    let mut anchors = rustls::RootCertStore::empty();
    let count = certs.len();
    for (n, cert) in certs.into_iter().enumerate() {
        anchors.add(cert).map_err(|e| {
            format!(
                "WA_TLS_CA_FILE {shown}: certificate {} of {count} cannot be a trust anchor: {e}",
                n + 1
            )
        })?;
    }
    Ok(anchors.roots)
}

impl WorkerArgs {
    /// The account's directory on the volume.
    pub fn account_dir(&self) -> PathBuf {
        self.sessions.join(self.account.as_str())
    }

    /// The reconnect policy these flags describe.
    pub(crate) fn backoff(&self) -> crate::session::reconnect::Backoff {
        let c = &self.connection;
        crate::session::reconnect::Backoff {
            base: Duration::from_millis(c.reconnect_base_ms.max(1)),
            max: Duration::from_millis(c.reconnect_max_ms.max(c.reconnect_base_ms).max(1)),
            max_attempts: c.max_reconnect_attempts,
            reset_after: Duration::from_millis(c.backoff_reset_after_ms.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_trust_root_and_version() {
        let hex = "142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b";
        let root = parse_trust_root(hex).expect("valid");
        assert_eq!(root.0, crate::wa::noise::cert::WA_ROOT_KEY);
        assert_eq!(root.to_string(), hex);
        assert!(parse_trust_root("abcd").is_err());
        assert!(parse_trust_root(&"zz".repeat(32)).is_err());
        assert_eq!(
            parse_version("2.3000.1045649367")
                .expect("valid")
                .to_string(),
            "2.3000.1045649367"
        );
        assert!(parse_version("2.3000").is_err());
        let seed = Browser::parse("SuperParty, Chrome, 2.0.0").expect("the seed's browser");
        assert_eq!(
            (seed.name.as_str(), seed.platform_type, seed.version),
            ("SuperParty", 1, [2, 0, 0])
        );
        assert_eq!(seed.to_string(), "SuperParty,Chrome,2.0.0");
        let default = Browser::parse(DEFAULT_BROWSER).expect("default");
        assert_eq!(
            (default.name.as_str(), default.platform_type),
            ("Mac OS", 1)
        );
        assert_eq!(
            Browser::parse("Shop,desktop").expect("valid").platform_type,
            7
        );
        assert_eq!(
            Browser::parse("Shop,Android Phone,1")
                .expect("valid")
                .version,
            [1, 0, 0]
        );
        for bad in [
            "",
            "Shop",
            "Shop,Toaster,1.0",
            ",Chrome,1.0",
            "Shop,Chrome,1.x",
            "a,b,c,d",
        ] {
            assert!(Browser::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_version("2.x.1").is_err());
    }

    #[test]
    fn a_tls_ca_file_that_is_missing_empty_or_holds_no_usable_certificate_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let check = |file: &Path| read_ca_file(file).expect_err("refused");
        let missing = check(&dir.path().join("absent.pem"));
        assert!(
            missing.starts_with("WA_TLS_CA_FILE ") && missing.contains("cannot be read"),
            "{missing}"
        );
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA==";
        for (name, text, says) in [
            ("empty.pem", "", "holds no certificate"),
            (
                "key-only.pem",
                &format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"),
                "holds no certificate",
            ),
            (
                "prose.pem",
                "not a certificate at all\n",
                "holds no certificate",
            ),
            (
                "garbage.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "certificate 1 of 1 cannot be a trust anchor",
            ),
            (
                "cut.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n",
                "is not valid PEM",
            ),
        ] {
            let e = check(&write(name, text));
            assert!(
                e.starts_with("WA_TLS_CA_FILE ") && e.contains(name) && e.contains(says),
                "{name}: {e}"
            );
            assert!(!e.contains(secret), "contents are never quoted: {e}");
        }
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            connection: ConnectionArgs,
        }
        let parse = |args: &[&str]| <Cli as clap::Parser>::parse_from(args).connection;
        let none = parse(&["worker"]);
        assert!(none.wa_tls_ca_file.is_none());
        assert_eq!(none.tls_ca_certs(), Ok(Vec::new()));
        assert!(!none.to_env().iter().any(|(k, _)| k == "WA_TLS_CA_FILE"));
        let set = parse(&["worker", "--wa-tls-ca-file", "/tmp/ca.pem"]);
        assert!(set
            .to_env()
            .contains(&("WA_TLS_CA_FILE".to_owned(), "/tmp/ca.pem".to_owned())));
    }
}
