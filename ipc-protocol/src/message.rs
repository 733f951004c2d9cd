//! The messages of the link, in both directions, and the types they carry.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::messaging::{MessageQuery, MessageRecord, OutgoingText, QueryAnswer, SendOutcome};

/// A message from a worker to the supervisor.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToSupervisor {
    /// The first frame on every link: who is speaking, and in which protocol version.
    Hello {
        /// The account this worker runs.
        account_id: AccountId,
        /// The worker's process id, checked against the child the supervisor spawned.
        pid: u32,
        /// Must equal [`crate::PROTOCOL_VERSION`].
        version: u32,
    },
    /// A full snapshot of the worker's state, sent on every change.
    State(WorkerState),
    /// Sent every 15 s (and in answer to `Ping`) so the supervisor knows the worker is alive.
    Heartbeat {
        /// When the worker last received a frame from WhatsApp.
        last_frame_at: Option<UnixMillis>,
    },
    /// The worker has proven its credentials durable and is about to exit.
    Flushed,
    /// The worker's last words before it closes the link.
    Goodbye {
        /// Why it is leaving, for the log.
        reason: String,
    },
    /// The answer to `Send`.
    SendAnswer {
        /// The `request` of the `Send`.
        request: u64,
        /// Queued or refused.
        outcome: SendOutcome,
    },
    /// The answer to `Query`.
    QueryAnswer {
        /// The `request` of the `Query`.
        request: u64,
        /// What the store holds.
        answer: QueryAnswer,
    },
    /// A message arrived (status `received`), or one of ours moved on; already durable.
    Message(MessageRecord),
    /// A `<call>` stanza arrived: someone rings, or a call changed. Sent before the stanza is
    /// acknowledged, so a crash in between reports it again at the next login.
    Call(CallEvent),
    /// The worker wants to dial WhatsApp: it waits for `DialGranted` with the same `seq`.
    DialRequest {
        /// Names this request; a newer one replaces an older one.
        seq: u64,
    },
    /// The handshake of the dial `seq` has ended (or the request is withdrawn): the permit goes
    /// back to the fleet's budget.
    DialDone {
        /// The `seq` of the `DialRequest`.
        seq: u64,
        /// How it ended.
        outcome: DialOutcome,
    },
    /// The answer to `RequestPairingCode`.
    PairingCodeAnswer {
        /// The `request` of the `RequestPairingCode`.
        request: u64,
        /// The code, or why there is none.
        outcome: PairingCodeOutcome,
    },
}

/// What became of a request for a pairing code (wa-protocol.md §7).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PairingCodeOutcome {
    /// The server took the companion's hello: the user types `code` on the phone.
    Code {
        /// Eight characters of `123456789ABCDEFGHJKLMNPQRSTVWXYZ`, without the dash.
        code: String,
    },
    /// No code.
    Refused {
        /// Why.
        refusal: PairingCodeRefusal,
    },
}

/// Why a worker gave no pairing code.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "refusal", content = "detail", rename_all = "snake_case")]
pub enum PairingCodeRefusal {
    /// The account is paired already: log it out first.
    AlreadyPaired,
    /// The worker has no registration connection and could not open one (it retries, or
    /// waits for a QR request).
    NotConnected,
    /// The phone number is not 7 to 15 digits in international form.
    InvalidPhone,
    /// WhatsApp answered the hello with an error (its text).
    ServerRefused(String),
    /// The registration connection ended before WhatsApp answered.
    ConnectionLost,
}

/// What a `<call>` stanza says (wa-protocol.md §9.2): who, which call, what happened.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct CallEvent {
    /// The call's id (`call-id`), the same in every stanza of one call.
    pub call_id: String,
    /// The caller's JID without device (`call-creator`, else the stanza's `from`), as incoming
    /// messages name their sender.
    pub from: String,
    /// What happened: `offer`, `offer_notice`, `preaccept`, `accept`, `reject` or `terminate`.
    pub kind: String,
    /// A video call (the offer carries `<video/>`).
    pub video: bool,
    /// When the server stamped it (`t`), or when it arrived.
    pub at: UnixMillis,
    /// Delivered from the offline queue (`offline` present): the call may be long over.
    pub offline: bool,
}

/// How a dial's handshake ended, as a worker reports it in `DialDone`.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DialOutcome {
    /// Logged in (`<success>`), or the registration handshake is done and pairing waits for a
    /// scan.
    Success,
    /// WhatsApp refused or ended the connection before `<success>`.
    Failure,
    /// The dial or the Noise handshake failed (network, certificate).
    Error,
    /// The worker no longer wants to dial (a logout, a shutdown) before or after the grant.
    Withdrawn,
}

/// A command from the supervisor to a worker.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// Flush credentials, close the connection and exit 0.
    Shutdown,
    /// Unlink this device from the account and report `logged_out`.
    Logout,
    /// Start a new pairing, producing a fresh QR code.
    RequestQr,
    /// Answer with a `Heartbeat`.
    Ping,
    /// Queue a text durably and answer `SendAnswer` once it is (or why not).
    Send {
        /// Echoed in the answer.
        request: u64,
        /// What to send.
        message: OutgoingText,
    },
    /// Answer `QueryAnswer` from the message store.
    Query {
        /// Echoed in the answer.
        request: u64,
        /// The question.
        query: MessageQuery,
    },
    /// The WhatsApp Web version to announce from the next dial on (`2.3000.1027934701`); an
    /// account stopped as `client_outdated` dials again with it.
    SetWaVersion {
        /// The version.
        version: String,
    },
    /// These incoming messages are in the supervisor's hands (durable for the webhooks, or no
    /// webhook wants them): stop reporting them again at the next start.
    Confirm {
        /// Message ids, as reported in `Message`.
        ids: Vec<String>,
    },
    /// The fleet's handshake budget has a permit for the worker's `DialRequest` `seq`: dial now,
    /// and say `DialDone` when the handshake has ended.
    DialGranted {
        /// The `seq` of the `DialRequest`.
        seq: u64,
    },
    /// Start pairing by phone-number code (wa-protocol.md §7) on the registration connection
    /// (dialling one first if none is open), and answer `PairingCodeAnswer` once WhatsApp has
    /// taken the hello.
    RequestPairingCode {
        /// Echoed in the answer.
        request: u64,
        /// The account's phone number: digits only, international form.
        phone: String,
    },
}

/// A full snapshot of one worker's state.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(default)]
pub struct WorkerState {
    /// The lifecycle status.
    pub status: WorkerStatus,
    /// Why the worker is in this status, machine readable.
    pub reason: Option<Reason>,
    /// The QR string to show while pairing.
    pub qr: Option<String>,
    /// When the current QR stops being valid.
    pub qr_expires_at: Option<UnixMillis>,
    /// The device JID once paired.
    pub jid: Option<String>,
    /// The account's phone number once paired (the supervisor masks it on output).
    pub phone: Option<String>,
    /// When anything last happened on this account.
    pub last_event_at: Option<UnixMillis>,
    /// When the last message arrived.
    pub last_message_at: Option<UnixMillis>,
    /// Consecutive failed connection attempts since the last stable connection (one that stayed
    /// up for `BACKOFF_RESET_AFTER_MS`).
    pub reconnect_attempts: u32,
    /// Reconnections made since the worker started. The supervisor shows its own count instead
    /// (returns to `connected` across worker restarts, none for a fresh pairing), and writes it
    /// here in the snapshots it publishes.
    pub reconnect_count: u32,
    /// When the next connection attempt is due, while waiting.
    pub next_retry_at: Option<UnixMillis>,
    /// The last error, for people.
    pub last_error: Option<String>,
    /// Incoming messages that could not be decrypted since the worker started.
    pub decrypt_failures: u32,
    /// While the worker waits for a dial permit from the fleet's handshake budget (status
    /// `connecting`): since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dial_queued_since: Option<UnixMillis>,
}

/// The lifecycle of one account, exactly the strings of `architecture.md`.
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum WorkerStatus {
    /// Dialling WhatsApp or in the handshake.
    #[default]
    Connecting,
    /// Waiting for someone to scan a QR code (or to ask for one).
    NeedsQr,
    /// Logged in and online.
    Connected,
    /// Lost the connection; waiting for the next attempt.
    Reconnecting,
    /// Gave up the fast retries; trying again every 5 minutes.
    Disconnected,
    /// The device was unlinked; a new QR is needed.
    LoggedOut,
    /// WhatsApp refused the account at login: locked (403) or banned (406); a new QR is needed
    /// once the account is usable again.
    Banned,
    /// Another client took over the account; no automatic reconnect.
    Conflict,
    /// The worker keeps crashing; parked until an admin restarts it.
    Failed,
    /// No worker runs for this account.
    Stopped,
}

impl WorkerStatus {
    /// Every status, in declaration order.
    pub const ALL: [WorkerStatus; 10] = [
        WorkerStatus::Connecting,
        WorkerStatus::NeedsQr,
        WorkerStatus::Connected,
        WorkerStatus::Reconnecting,
        WorkerStatus::Disconnected,
        WorkerStatus::LoggedOut,
        WorkerStatus::Banned,
        WorkerStatus::Conflict,
        WorkerStatus::Failed,
        WorkerStatus::Stopped,
    ];

    /// The wire string, e.g. `needs_qr`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Connecting => "connecting",
            WorkerStatus::NeedsQr => "needs_qr",
            WorkerStatus::Connected => "connected",
            WorkerStatus::Reconnecting => "reconnecting",
            WorkerStatus::Disconnected => "disconnected",
            WorkerStatus::LoggedOut => "logged_out",
            WorkerStatus::Banned => "banned",
            WorkerStatus::Conflict => "conflict",
            WorkerStatus::Failed => "failed",
            WorkerStatus::Stopped => "stopped",
        }
    }
}

impl fmt::Display for WorkerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an account is in its status (mautrix style), serialized as one string.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum Reason {
    /// The device was unlinked (401 or `device_removed`).
    LoggedOut,
    /// Another client replaced this one (`conflict type=replaced`).
    Replaced,
    /// The account is temporarily banned (402).
    TempBanned,
    /// WhatsApp refused the login as locked (`<failure reason="403">`).
    AccountLocked,
    /// WhatsApp refused the login as banned (`<failure reason="406">`).
    Banned,
    /// WhatsApp refuses this client version (405).
    ClientOutdated,
    /// Every QR ref expired without a scan.
    QrExhausted,
    /// The socket could not be opened or was lost.
    Network,
    /// WhatsApp stopped answering pings.
    KeepaliveTimeout,
    /// WhatsApp answered with this stream error code.
    ServerError(u16),
    /// The worker crashed too often and was parked.
    CrashLoop,
    /// The worker process exited unexpectedly and is being restarted.
    WorkerCrashed,
    /// The worker stopped sending heartbeats and was restarted.
    Hung,
    /// The stored credentials could not be read; they were kept aside.
    CredsCorrupt,
    /// The server's certificate chain did not verify under the trusted root.
    CertificateRejected,
    /// The account was never paired.
    NotPaired,
    /// An admin stopped the account.
    AdminStopped,
    /// A write to the volume failed: no space left (or over quota).
    StorageFull,
    /// A write to the volume failed: the file system is read-only (or denies writing).
    StorageReadonly,
    /// A write to the volume failed for another I/O reason.
    StorageError,
    /// `creds.json` has a newer format version than this build knows (a rollback); untouched.
    CredsNewerVersion,
    /// Another worker process holds the account's lock.
    Locked,
    /// The worker and the supervisor speak different IPC protocol versions.
    ProtocolMismatch,
    /// The worker process could not be started; retried with backoff.
    SpawnFailed,
    /// The account's keys are sealed and `SESSIONS_KEY` is missing or wrong; files untouched.
    SessionsKey,
    /// A reason this build does not know, kept verbatim.
    Other(String),
}

impl Reason {
    /// The wire string, e.g. `server_error_503`.
    pub fn as_string(&self) -> String {
        match self {
            Reason::LoggedOut => "logged_out".into(),
            Reason::Replaced => "replaced".into(),
            Reason::TempBanned => "temp_banned".into(),
            Reason::AccountLocked => "account_locked".into(),
            Reason::Banned => "banned".into(),
            Reason::ClientOutdated => "client_outdated".into(),
            Reason::QrExhausted => "qr_exhausted".into(),
            Reason::Network => "network".into(),
            Reason::KeepaliveTimeout => "keepalive_timeout".into(),
            Reason::ServerError(code) => format!("server_error_{code}"),
            Reason::CrashLoop => "crash_loop".into(),
            Reason::WorkerCrashed => "worker_crashed".into(),
            Reason::Hung => "hung".into(),
            Reason::CredsCorrupt => "creds_corrupt".into(),
            Reason::CertificateRejected => "certificate_rejected".into(),
            Reason::NotPaired => "not_paired".into(),
            Reason::AdminStopped => "admin_stopped".into(),
            Reason::StorageFull => "storage_full".into(),
            Reason::StorageReadonly => "storage_readonly".into(),
            Reason::StorageError => "storage_error".into(),
            Reason::CredsNewerVersion => "creds_newer_version".into(),
            Reason::Locked => "locked".into(),
            Reason::ProtocolMismatch => "protocol_mismatch".into(),
            Reason::SpawnFailed => "spawn_failed".into(),
            Reason::SessionsKey => "sessions_key".into(),
            Reason::Other(s) => s.clone(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}

impl FromStr for Reason {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "logged_out" => Reason::LoggedOut,
            "replaced" => Reason::Replaced,
            "temp_banned" => Reason::TempBanned,
            "account_locked" => Reason::AccountLocked,
            "banned" => Reason::Banned,
            "client_outdated" => Reason::ClientOutdated,
            "qr_exhausted" => Reason::QrExhausted,
            "network" => Reason::Network,
            "keepalive_timeout" => Reason::KeepaliveTimeout,
            "crash_loop" => Reason::CrashLoop,
            "worker_crashed" => Reason::WorkerCrashed,
            "hung" => Reason::Hung,
            "creds_corrupt" => Reason::CredsCorrupt,
            "certificate_rejected" => Reason::CertificateRejected,
            "not_paired" => Reason::NotPaired,
            "admin_stopped" => Reason::AdminStopped,
            "storage_full" => Reason::StorageFull,
            "storage_readonly" => Reason::StorageReadonly,
            "storage_error" => Reason::StorageError,
            "creds_newer_version" => Reason::CredsNewerVersion,
            "locked" => Reason::Locked,
            "protocol_mismatch" => Reason::ProtocolMismatch,
            "spawn_failed" => Reason::SpawnFailed,
            "sessions_key" => Reason::SessionsKey,
            other => match other
                .strip_prefix("server_error_")
                .and_then(|code| code.parse::<u16>().ok())
            {
                Some(code) if other == format!("server_error_{code}") => Reason::ServerError(code),
                _ => Reason::Other(other.to_owned()),
            },
        })
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_string())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(s.parse().unwrap_or_else(|never| match never {}))
    }
}

/// A wall-clock instant as milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// This instant plus `d`.
    pub fn after(self, d: Duration) -> Self {
        UnixMillis(
            self.0
                .saturating_add(d.as_millis().try_into().unwrap_or(u64::MAX)),
        )
    }

    /// As a `SystemTime`.
    pub fn as_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

impl From<SystemTime> for UnixMillis {
    fn from(t: SystemTime) -> Self {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        UnixMillis(ms.try_into().unwrap_or(u64::MAX))
    }
}

/// An account id: `^[a-z0-9][a-z0-9_-]{0,63}$`. It names a directory on the volume, so it is
/// validated wherever it is made.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

/// The text given is not a valid account id.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("invalid account id: must match ^[a-z0-9][a-z0-9_-]{{0,63}}$")]
pub struct InvalidAccountId;

impl AccountId {
    /// The longest id allowed.
    pub const MAX_LEN: usize = 64;

    /// Validates `s` as an account id.
    ///
    /// # Errors
    /// [`InvalidAccountId`] when `s` does not match `^[a-z0-9][a-z0-9_-]{0,63}$`.
    pub fn parse(s: &str) -> Result<Self, InvalidAccountId> {
        let bytes = s.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if first_ok && rest_ok && bytes.len() <= Self::MAX_LEN {
            Ok(AccountId(s.to_owned()))
        } else {
            Err(InvalidAccountId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AccountId {
    type Err = InvalidAccountId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountId::parse(s)
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        AccountId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_id_accepts_the_documented_alphabet() {
        for ok in ["a", "0", "acct-01", "a_b-c", &"a".repeat(64)] {
            assert!(AccountId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn account_id_refuses_paths_and_odd_characters() {
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a/b",
            "..",
            ".a",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reason_round_trips_through_its_string() {
        for r in [
            Reason::LoggedOut,
            Reason::ServerError(503),
            Reason::CrashLoop,
            Reason::Other("something_new".into()),
        ] {
            assert_eq!(r.as_string().parse::<Reason>().ok(), Some(r));
        }
        assert_eq!(
            "server_error_0503".parse::<Reason>().ok(),
            Some(Reason::Other("server_error_0503".into()))
        );
    }

    #[test]
    fn pairing_code_frames_have_their_documented_json() {
        let ask = ToWorker::RequestPairingCode {
            request: 3,
            phone: "15551234567".into(),
        };
        assert_eq!(
            serde_json::to_value(&ask).expect("json"),
            serde_json::json!({"type": "request_pairing_code", "request": 3, "phone": "15551234567"})
        );
        let code = ToSupervisor::PairingCodeAnswer {
            request: 3,
            outcome: PairingCodeOutcome::Code {
                code: "ABCDEFGH".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&code).expect("json"),
            serde_json::json!({"type": "pairing_code_answer", "request": 3,
                "outcome": {"outcome": "code", "code": "ABCDEFGH"}})
        );
        for refusal in [
            PairingCodeRefusal::AlreadyPaired,
            PairingCodeRefusal::NotConnected,
            PairingCodeRefusal::InvalidPhone,
            PairingCodeRefusal::ServerRefused("400 bad-request".into()),
            PairingCodeRefusal::ConnectionLost,
        ] {
            let frame = ToSupervisor::PairingCodeAnswer {
                request: 1,
                outcome: PairingCodeOutcome::Refused { refusal },
            };
            let text = serde_json::to_string(&frame).expect("json");
            assert_eq!(
                serde_json::from_str::<ToSupervisor>(&text).expect("parses"),
                frame
            );
        }
    }
}
