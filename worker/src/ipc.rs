//! Our end of the supervisor link.
//!
//! 1. Connect to the socket the supervisor named with `--ipc`.
//! 2. Send `Hello { account_id, pid, version }` before anything else.
//! 3. A writer task owns the send half: every message goes through one channel, so a cancelled
//!    caller never leaves half a frame on the socket.
//! 4. A reader task forwards commands; EOF or a broken link cancels the worker's token, so a
//!    worker whose supervisor vanished shuts itself down.

use std::io;
use std::path::Path;

use interprocess::local_socket::tokio::{prelude::*, Stream};
use interprocess::local_socket::GenericFilePath;
use ipc_protocol::{AccountId, FrameReader, FrameWriter, ToSupervisor, ToWorker, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The sending side of the link, cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    tx: Option<mpsc::UnboundedSender<ToSupervisor>>,
    /// Dials wait for a permit from the supervisor's handshake budget.
    paced: bool,
    /// Keeps a detached worker's command channel open.
    _keep_commands_open: Option<mpsc::UnboundedSender<ToWorker>>,
}

impl Link {
    /// Whether every dial must first get the supervisor's permit (`DialRequest`, then
    /// `DialGranted`). A worker without a supervisor dials freely.
    pub(crate) fn paced(&self) -> bool {
        self.paced
    }

    /// Queues `msg` for the supervisor; a detached worker logs it instead.
    pub(crate) fn send(&self, msg: ToSupervisor) {
        match &self.tx {
            Some(tx) => {
                if tx.send(msg).is_err() {
                    debug!("ipc link closed; message dropped");
                }
            }
            // The QR carries the adv secret: a detached worker logs what happened, not the QR.
            None => match msg {
                ToSupervisor::State(state) => info!(
                    status = %state.status,
                    reason = state.reason.map(|r| r.as_string()),
                    has_qr = state.qr.is_some(),
                    "state (no supervisor link)"
                ),
                other => debug!(?other, "no supervisor link"),
            },
        }
    }
}

/// What [`connect`] hands back: the link, the command stream and the writer task to await at exit.
pub(crate) type LinkParts = (
    Link,
    mpsc::UnboundedReceiver<ToWorker>,
    Option<JoinHandle<()>>,
);

/// Connects to the supervisor at `path` and says Hello.
///
/// # Errors
/// Any I/O error from connecting or sending Hello.
pub(crate) async fn connect(
    path: &Path,
    account: &AccountId,
    token: CancellationToken,
) -> io::Result<LinkParts> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    let stream = Stream::connect(name).await?;
    // Each half goes to its own task; the writer shuts the stream down explicitly at the end.
    #[allow(deprecated)]
    let (recv, send) = stream.split();
    let mut writer = FrameWriter::new(send);
    writer
        .write(&ToSupervisor::Hello {
            account_id: account.clone(),
            pid: std::process::id(),
            version: PROTOCOL_VERSION,
        })
        .await
        .map_err(io::Error::other)?;

    let (tx, mut rx) = mpsc::unbounded_channel::<ToSupervisor>();
    let writer_task = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if let Err(e) = writer.write(&msg).await {
                warn!(error = %e, "ipc write failed");
                return;
            }
        }
        let _ = writer.shutdown().await;
    });

    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = FrameReader::new(recv);
        loop {
            match reader.read::<ToWorker>().await {
                Ok(Some(cmd)) => {
                    if cmd_tx.send(cmd).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    info!("supervisor closed the link; shutting down");
                    token.cancel();
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "ipc link broken; shutting down");
                    token.cancel();
                    return;
                }
            }
        }
    });
    Ok((
        Link {
            tx: Some(tx),
            paced: true,
            _keep_commands_open: None,
        },
        cmd_rx,
        Some(writer_task),
    ))
}

/// A link to nobody, for a worker run by hand without a supervisor.
pub(crate) fn detached() -> LinkParts {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    (
        Link {
            tx: None,
            paced: false,
            _keep_commands_open: Some(cmd_tx),
        },
        cmd_rx,
        None,
    )
}

/// A link whose messages a test reads; its dials need no permit.
#[cfg(test)]
pub(crate) fn for_test() -> (Link, mpsc::UnboundedReceiver<ToSupervisor>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Link {
            tx: Some(tx),
            paced: false,
            _keep_commands_open: None,
        },
        rx,
    )
}

/// A link whose messages a test reads, whose dials wait for the test's `DialGranted`.
#[cfg(test)]
pub(crate) fn for_test_paced() -> (Link, mpsc::UnboundedReceiver<ToSupervisor>) {
    let (mut link, rx) = for_test();
    link.paced = true;
    (link, rx)
}
