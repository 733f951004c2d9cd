//! `wa-sim`: WhatsApp's edge and the phone that scans QR codes, on loopback, for end-to-end
//! tests, demos and benchmarks (wa-protocol.md §10, the mock checklist).
//!
//! ```text
//!  Sim::start ─┬─ server::Listener      ws://127.0.0.1:P/ws/chat (wss:// with `tls`: a CA
//!              │                          and a leaf made at start), one task per connection:
//!              │    connection            intro, Noise XX, IK or XXfallback (pki's certificate
//!              │                          chain, `handshake`), ClientPayload, `policy` (version
//!              │                          minimum, failures played, silence)
//!              │    session               node loop: pairing (refs, pair-success, 515) or
//!              │                          login (success, IQs, acks); commands from other tasks
//!              ├─ control               http://127.0.0.1:Q: /scan /enter-code (phone), /message (delivery),
//!              │                          /conflict /logout /drop /restart /error /end (faults),
//!              │                          /silence /failure /version /sw.js (policy),
//!              │                          /group, /config, /sessions, /stats, /relayed,
//!              │                          /send /inbox /read (the phones as Signal peers),
//!              │                          /push /pushes (server pushes and their answers)
//!              │                          /dials /after-login /drop-all (pacing)
//!              └─ registry (one mutex)  accounts (PN and LID), devices, groups, live
//!                                         connections, counters
//! ```
//!
//! Between logged-in clients the simulator is WhatsApp's relay: `directory` answers device lists
//! (usync) and hands out prekey bundles, `relay` fans `<message>`/`<receipt>` stanzas out to
//! devices (opaque `<enc>` payloads, server acks with phash), `groups` keeps group membership,
//! `peer` makes every account's phone (device 0) a Signal peer that sends (`POST /send`), decrypts
//! and answers receipts, and `delivery` queues every copy per device until it is confirmed,
//! replaying the queue as offline stanzas at the next login.
//!
//! A pairing, end to end:
//!
//! 1. A client connects and registers (ClientPayload with `devicePairingData`); the simulator
//!    checks its signed prekey and sends six refs (`pairing`).
//! 2. `POST /scan` gives the phone the QR; the phone checks the ref and the keys against that
//!    connection and sends `pair-success` with a fresh device id and ADV signatures (`phone`).
//! 3. The client answers `pair-device-sign`; its device signature must verify; the device is
//!    paired and the connection ends with `<stream:error code="515"/>`.
//! 4. The client logs in with `username` + `device`; the noise key must be the one that paired;
//!    it gets `<success>` (`login`), and from then on pings, prekeys, delivery and faults.

mod account;
mod connection;
mod control;
mod delivery;
mod digest;
mod directory;
pub mod error;
pub mod faults;
mod groups;
mod handshake;
mod iq;
pub mod link_code;
mod login;
pub mod pacing;
mod pairing;
mod peer;
pub mod phone;
mod pki;
pub mod policy;
mod pushes;
pub mod registry;
mod relay;
mod server;
mod session;
pub mod tls;
pub mod ws;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use error::{Error, Result};
pub use pki::Pki;
pub use registry::{ConnState, LiveConfig, Registry, RelayedView, SessionView, Stats};
pub use server::WS_PATH;
pub use tls::{TlsIdentity, TlsSetupError};

/// Where and how the simulator runs.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SimConfig {
    /// The WebSocket listener; must be a loopback address (port 0 picks one).
    pub listen: SocketAddr,
    /// The control API listener; must be a loopback address (port 0 picks one).
    pub control: SocketAddr,
    /// Every ref lives this long instead of the protocol's 60 s then 20 s.
    pub ref_timeout: Option<Duration>,
    /// Delay before each ServerHello.
    pub handshake_delay: Duration,
    /// Delay between the ClientFinish and the first stanza (`success` or `pair-device`): the
    /// round trip to a real edge. Baileys needs it: it switches to transport keys only after its
    /// ClientFinish write completes, so a stanza that arrives sooner is lost to it.
    pub edge_latency: Duration,
    /// The WhatsApp Web version `/sw.js` publishes (default: the worker's default `WA_VERSION`).
    pub version: policy::Version,
    /// Logins and registrations below this get `<failure reason="405"/>`.
    pub min_version: Option<policy::Version>,
    /// Serve `wss://` with a certificate chain made at start (`Sim::tls_ca_pem` is its CA).
    pub tls: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            listen: loopback,
            control: loopback,
            ref_timeout: None,
            handshake_delay: Duration::ZERO,
            edge_latency: Duration::ZERO,
            version: policy::DEFAULT_VERSION,
            min_version: None,
            tls: false,
        }
    }
}

/// What every task of the simulator shares.
#[derive(Debug)]
pub(crate) struct Shared {
    registry: Mutex<Registry>,
    pki: Pki,
    /// The certificate chain `wss://` serves; `None` for `ws://`.
    tls: Option<TlsIdentity>,
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shared {
    /// The registry, locked. Hold it for synchronous steps only, never across an `await`.
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves data a test can still read.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct Sim {
    ws_addr: SocketAddr,
    control_addr: SocketAddr,
    shared: Arc<Shared>,
}

/// The first line the `wa-sim` binary prints.
#[derive(Debug, Serialize)]
struct ReadyLine<'a> {
    ws_url: &'a str,
    control_url: &'a str,
    root_public_key: &'a str,
    /// Only with TLS: absent, not `null`, without it, so a plain line is as it always was.
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_cert_file: Option<&'a str>,
}

impl Sim {
    /// Binds both listeners and starts serving; stops when `token` is cancelled.
    ///
    /// # Errors
    /// [`Error::NotLoopback`] for an address off loopback, [`Error::Bind`] when a port is taken,
    /// [`Error::Tls`] when the certificate chain cannot be made.
    pub async fn start(config: SimConfig, token: CancellationToken) -> Result<Self> {
        for addr in [config.listen, config.control] {
            if !addr.ip().is_loopback() {
                return Err(Error::NotLoopback(addr));
            }
        }
        let bind = |what: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { what, addr, source })
        };
        let tls = config.tls.then(TlsIdentity::generate).transpose()?;
        let ws_listener = bind("websocket", config.listen).await?;
        let control_listener = bind("control", config.control).await?;
        let ws_addr = ws_listener.local_addr()?;
        let control_addr = control_listener.local_addr()?;
        let mut registry = Registry::new(LiveConfig {
            handshake_delay: config.handshake_delay,
            edge_latency: config.edge_latency,
            refuse: false,
            ref_timeout: config.ref_timeout,
        });
        registry.policy.current = config.version;
        registry.policy.min = config.min_version;
        let shared = Arc::new(Shared {
            registry: Mutex::new(registry),
            pki: Pki::generate(),
            tls,
            token,
            tracker: TaskTracker::new(),
        });
        shared
            .tracker
            .spawn(server::Listener::new(ws_listener, shared.clone()).run());
        shared
            .tracker
            .spawn(control::serve(control_listener, shared.clone()));
        info!(%ws_addr, %control_addr, tls = config.tls, "wa-sim listening");
        Ok(Self {
            ws_addr,
            control_addr,
            shared,
        })
    }

    /// `ws://127.0.0.1:P/ws/chat`, or `wss://…` with TLS.
    pub fn ws_url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}{WS_PATH}", self.ws_addr)
    }

    /// The PEM of the CA `wss://` chains to; `None` without TLS.
    pub fn tls_ca_pem(&self) -> Option<&str> {
        self.shared.tls.as_ref().map(TlsIdentity::ca_pem)
    }

    /// The certificate chain `wss://` serves; `None` without TLS.
    pub fn tls_identity(&self) -> Option<&TlsIdentity> {
        self.shared.tls.as_ref()
    }

    /// `http://127.0.0.1:Q`.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// The control API's address.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The WebSocket listener's address.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// The root public key clients must trust.
    pub fn root_public_key(&self) -> [u8; 32] {
        self.shared.pki.root_public()
    }

    /// `{"ws_url","control_url","root_public_key"}` on one line, and `"ca_cert_file"` when
    /// the CA certificate was written there (TLS).
    pub fn ready_line(&self, ca_cert_file: Option<&str>) -> String {
        let line = ReadyLine {
            ws_url: &self.ws_url(),
            control_url: &self.control_url(),
            root_public_key: &hex::encode(self.root_public_key()),
            ca_cert_file,
        };
        serde_json::to_string(&line).expect("a struct of strings serializes")
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.shared.registry().stats
    }

    /// The live connections.
    pub fn sessions(&self) -> Vec<SessionView> {
        self.shared.registry().sessions()
    }

    /// Waits until every task has finished; call after cancelling the token.
    pub async fn stopped(&self) {
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}
