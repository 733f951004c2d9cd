//! The WebSocket listener (wa-protocol.md §1.1, §10.1).
//!
//! 1. Accept TCP connections on the configured loopback address until shutdown.
//! 2. Per connection, in its own task: with `--tls`, the TLS handshake first, under its own
//!    deadline (a client that fails it is logged, counted and dropped); then upgrade to a
//!    WebSocket on [`WS_PATH`] (any Origin, no sub-protocol); refuse other paths with 404, and
//!    every upgrade with 503 while the control API's `refuse` switch is on.
//! 3. Register the connection (a fresh `conn_id`, state `handshake`, whether it is TLS) and run
//!    it (`connection`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tracing::{debug, info, warn};

use super::connection::Connection;
use super::tls::TlsStream;
use super::ws::{Stream, WsConnection};
use super::Shared;

/// The WebSocket path, as WhatsApp's (§1.1).
pub const WS_PATH: &str = "/ws/chat";
/// How long a client has to finish the HTTP upgrade.
const UPGRADE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a client has to finish the TLS handshake (`--tls`).
const TLS_DEADLINE: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts WebSocket clients.
#[derive(Debug)]
pub(crate) struct Listener {
    tcp: TcpListener,
    shared: Arc<Shared>,
}

impl Listener {
    /// A listener on a bound socket.
    pub(crate) fn new(tcp: TcpListener, shared: Arc<Shared>) -> Self {
        Self { tcp, shared }
    }

    /// Accepts until shutdown; each connection runs in its own task on the simulator's tracker.
    pub(crate) async fn run(self) {
        let token = self.shared.token.clone();
        loop {
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let shared = self.shared.clone();
                        self.shared.tracker.spawn(upgrade_and_serve(tcp, peer, shared));
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
        debug!("websocket listener stopped");
    }
}

/// Step 2 and 3 for one TCP connection.
async fn upgrade_and_serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let token = shared.token.clone();
    let stream = match shared.tls.as_ref().map(|tls| tls.server_config()) {
        None => Stream::from(tcp),
        Some(config) => {
            let handshake = tokio::select! {
                biased;
                _ = token.cancelled() => return,
                done = tokio::time::timeout(TLS_DEADLINE, TlsStream::accept(tcp, config)) => done,
            };
            match handshake {
                Ok(Ok(tls)) => {
                    shared.registry().stats.tls_handshakes += 1;
                    Stream::from(tls)
                }
                Ok(Err(e)) => {
                    shared.registry().stats.tls_failures += 1;
                    info!(%peer, error = %e, "tls handshake failed; client dropped");
                    return;
                }
                Err(_) => {
                    shared.registry().stats.tls_failures += 1;
                    let deadline_ms = TLS_DEADLINE.as_millis() as u64;
                    info!(%peer, deadline_ms, "tls handshake timed out; client dropped");
                    return;
                }
            }
        }
    };
    let tls = stream.is_tls();
    let refuse = shared.registry().config.refuse;
    let check = move |request: &tokio_tungstenite::tungstenite::handshake::server::Request| {
        if request.uri().path() != WS_PATH {
            Err(StatusCode::NOT_FOUND)
        } else if refuse {
            Err(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            Ok(())
        }
    };
    let upgraded = tokio::select! {
        biased;
        _ = token.cancelled() => return,
        upgraded = tokio::time::timeout(UPGRADE_DEADLINE, WsConnection::accept(stream, check)) => upgraded,
    };
    let ws = match upgraded {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            debug!(%peer, refuse, error = %e, "websocket upgrade refused or failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "websocket upgrade timed out");
            return;
        }
    };
    let (commands, inbox) = mpsc::unbounded_channel();
    let id = shared.registry().open_conn(commands, tls);
    debug!(conn_id = %id, %peer, tls, "websocket accepted");
    Connection::new(id, ws, shared, inbox).run().await;
}
