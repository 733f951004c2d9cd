//! The node loop after the handshake: one task, one socket, three sources of work
//! (wa-protocol.md §10.3, §10.5, §10.7).
//!
//! 1. Wait for whichever comes first: shutdown, a [`Command`] from another task (a stanza to
//!    push, a fault to inject), a node from the client, or the session's deadline (ref expiry
//!    while pairing).
//! 2. Ask the session's handler (`pairing` or `login`) what to do, under the registry lock; it
//!    answers with a [`Step`]: stanzas to write and perhaps an [`Ending`].
//! 3. Write the step's stanzas, tell whoever asked, and end the connection if the step says so.
//!
//! A silenced session (`/silence`, or `/config` `silent`) keeps reading so it notices the
//! client leave, but drops what it reads and every push: only a fault (e.g. `/drop`) ends it.
//!
//! # Cancel safety
//! Every branch of the `select!` is cancel safe: reading keeps partial frames in the
//! connection's buffers, the command channel and the deadline lose nothing when dropped.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::debug;
use worker::wa::binary::Node;

use super::connection::{Command, NodeIo};
use super::error::Result;
use super::faults::Ending;
use super::registry::{ConnId, ConnState};
use super::{login, pairing, Shared};

/// Which handler a session's nodes go to.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Kind {
    /// Registration (`pairing`).
    Pairing,
    /// Logged in (`login`).
    LoggedIn,
}

/// What a handler wants done with the socket.
#[derive(Debug, Default)]
pub(crate) struct Step {
    /// Stanzas to write, in order.
    pub(crate) send: Vec<Node>,
    /// End the connection after writing them.
    pub(crate) end: Option<Ending>,
}

impl Step {
    /// Write one stanza.
    pub(crate) fn send(node: Node) -> Self {
        Self {
            send: vec![node],
            end: None,
        }
    }

    /// End the connection.
    pub(crate) fn end(ending: Ending) -> Self {
        Self {
            send: Vec::new(),
            end: Some(ending),
        }
    }
}

/// A connection after its handshake.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: ConnId,
    pub(crate) kind: Kind,
    pub(crate) io: NodeIo,
    pub(crate) shared: Arc<Shared>,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    /// Silenced: the client's stanzas are read and dropped, pushes are dropped, nothing is
    /// written until a fault ends the connection or the client leaves.
    pub(crate) silent: bool,
}

impl Session {
    /// Runs the loop until the client leaves, a handler or command ends it, or shutdown.
    pub(crate) async fn run(mut self) -> Result<&'static str> {
        let token = self.shared.token.clone();
        if self.silent {
            self.shared.registry().stats.silenced += 1;
            debug!(conn_id = %self.id, "silent from the start");
        }
        loop {
            let deadline = match self.kind {
                Kind::Pairing => pairing::deadline(&self.shared.registry(), self.id),
                Kind::LoggedIn => None,
            };
            let mut notify: Option<oneshot::Sender<()>> = None;
            let step = tokio::select! {
                biased;
                _ = token.cancelled() => Step::end(Ending::close("shutdown")),
                Some(command) = self.commands.recv() => match command {
                    Command::Send { node, written } => {
                        if self.silent {
                            debug!(conn_id = %self.id, tag = %node.tag, "silent: push dropped");
                            Step::default()
                        } else {
                            notify = written;
                            Step::send(node)
                        }
                    }
                    Command::Silence { done } => {
                        notify = done;
                        if !self.silent {
                            self.silent = true;
                            self.shared.registry().stats.silenced += 1;
                            debug!(conn_id = %self.id, "silenced");
                        }
                        Step::default()
                    }
                    Command::SendRaw { plaintext, written } => {
                        if !self.silent {
                            notify = written;
                            self.io.write_plaintext(&plaintext).await?;
                        }
                        Step::default()
                    }
                    Command::Fault { fault, done } => {
                        notify = done;
                        self.shared.registry().set_state(self.id, ConnState::Closing);
                        Step::end(fault.ending())
                    }
                },
                node = self.io.read() => match node? {
                    None => return Ok("closed by the client"),
                    Some(node) if self.silent => {
                        debug!(conn_id = %self.id, tag = %node.tag, "silent: dropped");
                        Step::default()
                    }
                    Some(node) => {
                        let mut registry = self.shared.registry();
                        match self.kind {
                            Kind::Pairing => pairing::on_node(&mut registry, self.id, &node),
                            Kind::LoggedIn => login::on_node(&mut registry, self.id, &node),
                        }
                    }
                },
                _ = sleep_until(deadline), if deadline.is_some() && !self.silent => {
                    pairing::on_deadline(&mut self.shared.registry(), self.id)
                }
            };
            for node in &step.send {
                self.io.write(node).await?;
            }
            if let Some(ending) = step.end {
                let reason = ending.reason;
                debug!(conn_id = %self.id, reason, "ending the connection");
                self.io.end(ending, notify).await;
                return Ok(reason);
            }
            if let Some(notify) = notify {
                let _ = notify.send(());
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
