//! One worker link.
//!
//! 1. Read the first frame within [`HELLO_DEADLINE`]; it must be `Hello` with our
//!    `PROTOCOL_VERSION`, and its pid must be the socket peer's pid.
//! 2. Ask the fleet whether that pid is the child it spawned for that account; if not, drop the
//!    link and log it.
//! 3. A writer task sends the fleet's commands; this task forwards every message to the fleet.
//! 4. EOF or a broken frame ends the link; the fleet hears `LinkDown`.

use std::time::Duration;

use interprocess::local_socket::tokio::{prelude::*, Stream};
use ipc_protocol::{FrameReader, FrameWriter, Reason, ToSupervisor, ToWorker, PROTOCOL_VERSION};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::fleet::FleetMsg;

/// How long a new link has to say Hello.
const HELLO_DEADLINE: Duration = Duration::from_secs(5);

/// Serves one link until it closes. Links outlive the shutdown signal on purpose: a worker's
/// `Flushed` arrives after SIGTERM.
pub async fn run(stream: Stream, fleet: mpsc::UnboundedSender<FleetMsg>) {
    let peer_pid = stream.peer_creds().ok().and_then(|c| c.pid());
    // Each half goes to its own task; the writer shuts the stream down explicitly at the end.
    #[allow(deprecated)]
    let (recv, send) = stream.split();
    let mut reader = FrameReader::new(recv);

    let hello = tokio::time::timeout(HELLO_DEADLINE, reader.read::<ToSupervisor>()).await;
    let (id, pid) = match hello {
        Ok(Ok(Some(ToSupervisor::Hello {
            account_id,
            pid,
            version,
        }))) => {
            if version != PROTOCOL_VERSION {
                warn!(account = %account_id, pid, version, expected = PROTOCOL_VERSION, "ipc hello with another protocol version; link refused");
                if peer_pid.is_none_or(|p| i64::from(p) == i64::from(pid)) {
                    let _ = fleet.send(FleetMsg::LinkRefused {
                        id: account_id,
                        pid,
                        reason: Reason::ProtocolMismatch,
                    });
                }
                return;
            }
            if peer_pid.is_some_and(|p| i64::from(p) != i64::from(pid)) {
                warn!(account = %account_id, pid, ?peer_pid, "ipc hello pid is not the socket peer's; link refused");
                return;
            }
            (account_id, pid)
        }
        Ok(Ok(Some(other))) => {
            warn!(?other, "ipc link did not start with hello; dropped");
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            warn!(error = %e, "ipc link sent a bad first frame; dropped");
            return;
        }
        Err(_) => {
            warn!("ipc link said no hello in time; dropped");
            return;
        }
    };

    let (tx, mut commands) = mpsc::unbounded_channel::<ToWorker>();
    let (reply, accepted) = oneshot::channel();
    if fleet
        .send(FleetMsg::LinkUp {
            id: id.clone(),
            pid,
            tx,
            reply,
        })
        .is_err()
        || !accepted.await.unwrap_or(false)
    {
        warn!(account = %id, pid, "ipc hello does not match a worker we spawned; link dropped");
        return;
    }
    info!(account = %id, pid, "worker linked");

    let mut writer = FrameWriter::new(send);
    let writer_task = tokio::spawn(async move {
        while let Some(cmd) = commands.recv().await {
            if let Err(e) = writer.write(&cmd).await {
                debug!(error = %e, "ipc write failed");
                return;
            }
        }
        let _ = writer.shutdown().await;
    });

    loop {
        match reader.read::<ToSupervisor>().await {
            Ok(Some(msg)) => {
                let _ = fleet.send(FleetMsg::FromWorker {
                    id: id.clone(),
                    pid,
                    msg,
                });
            }
            Ok(None) => break,
            Err(e) => {
                warn!(account = %id, pid, error = %e, "ipc link broken");
                break;
            }
        }
    }
    let _ = fleet.send(FleetMsg::LinkDown { id, pid });
    writer_task.abort();
}
