//! Where a connection stands, named for what it waits for, and what handlers see of it.
//!
//! ```text
//!  unpaired:  ExpectPairDevice ──pair-device──▶ ExpectScan ──pair-success──▶ ExpectRestart ─(515)─▶ new connection
//!                                              (a pairing code rides along: pair_code.rs)
//!  paired:    ExpectSuccess ──success──▶ Online ──admin logout──▶ ExpectLogoutConfirmation ─▶ logged_out
//! ```

use std::time::Duration;

use tokio::time::Instant;

use super::keepalive::Keepalive;
use super::pair::QrRotation;
use super::pair_code::LinkCode;
use super::request::Requests;
use super::send::Outbound;
use super::socket::Socket;
use crate::store::creds::Creds;
use crate::store::devices::DeviceCache;
use crate::store::groups::GroupStore;
use crate::store::messages::MessageStore;
use crate::store::signal::KeyStore;

/// The stage of one open connection.
#[derive(Debug)]
pub(crate) enum Stage {
    /// A registration connection, before the server's `pair-device` refs.
    ExpectPairDevice,
    /// Showing QR refs until the phone scans one, or takes the pairing code if one was asked
    /// for.
    ExpectScan(QrRotation, Option<Box<LinkCode>>),
    /// The pairing is answered; the server will end the stream with a 515.
    ExpectRestart,
    /// A login connection, before `<success>`.
    ExpectSuccess,
    /// Logged in and kept alive.
    Online(Keepalive),
    /// The admin asked to log out; the unlink IQ is out.
    ExpectLogoutConfirmation {
        /// Give up waiting then, and log out anyway.
        deadline: Instant,
    },
}

impl Stage {
    /// The stage a fresh connection starts in.
    pub(crate) fn first(paired: bool) -> Self {
        if paired {
            Stage::ExpectSuccess
        } else {
            Stage::ExpectPairDevice
        }
    }

    /// The next instant a timer must fire in this stage.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            // Once the refs have run out, a code still good keeps the connection.
            Stage::ExpectScan(qr, code) => qr.deadline().or(code.as_ref().map(|c| c.expires)),
            Stage::Online(keepalive) => Some(keepalive.deadline()),
            Stage::ExpectLogoutConfirmation { deadline } => Some(*deadline),
            Stage::ExpectPairDevice | Stage::ExpectRestart | Stage::ExpectSuccess => None,
        }
    }

    /// Whether the account is logged in on this connection.
    pub(crate) fn is_online(&self) -> bool {
        matches!(self, Stage::Online(_))
    }
}

/// One open, handshaken connection and what rides on it.
#[derive(Debug)]
pub(crate) struct Live {
    /// The socket.
    pub(crate) socket: Socket,
    /// IQ ids and the answers awaited on this connection.
    pub(crate) requests: Requests,
    /// Where the connection stands.
    pub(crate) stage: Stage,
    /// The message being sent, if one is.
    pub(crate) outbound: Option<Outbound>,
}

impl Live {
    /// A fresh connection.
    pub(crate) fn new(socket: Socket, paired: bool) -> Self {
        Live {
            socket,
            requests: Requests::new(),
            stage: Stage::first(paired),
            outbound: None,
        }
    }

    /// The next instant a timer must fire on this connection.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let outbound = self.outbound.as_ref().map(|o| o.deadline);
        match (self.stage.deadline(), outbound) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Settings the handlers read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    /// Replaces the protocol's QR ref lifetimes (tests, `QR_REF_TIMEOUT_MS`).
    pub(crate) qr_lifetime: Option<Duration>,
    /// `companion_platform_id` of a pairing code hello: `DeviceProps.platformType` in decimal
    /// (Baileys' choice; Chrome is `1`).
    pub(crate) platform_id: String,
    /// `companion_platform_display`: `Browser (OS)`, e.g. `Chrome (Mac OS)`.
    pub(crate) platform_display: String,
}

/// What a handler may read, and the connection state it may change in memory. Everything
/// durable or visible goes through the [`super::actions::Actions`] it returns.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    /// The credentials, if any.
    pub(crate) creds: Option<&'a Creds>,
    /// The Signal key store, to read (writes go through `Persist`).
    pub(crate) keys: &'a KeyStore,
    /// The device-list cache, to read.
    pub(crate) devices: &'a DeviceCache,
    /// What we remember of groups, to read.
    pub(crate) groups: &'a GroupStore,
    /// The message store, to read; `None` when it could not be opened.
    pub(crate) messages: Option<&'a MessageStore>,
    /// The session's settings.
    pub(crate) settings: &'a Settings,
    /// IQ ids and the answers awaited.
    pub(crate) requests: &'a mut Requests,
    /// Where the connection stands; handlers move it on.
    pub(crate) stage: &'a mut Stage,
    /// The message being sent, if one is.
    pub(crate) outbound: &'a mut Option<Outbound>,
    /// The time of the event being handled.
    pub(crate) now: Instant,
}
