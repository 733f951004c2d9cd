//! The node pipe a session talks through, and how a session gets one.
//!
//! In production a [`Socket`] is the Noise-encrypted WebSocket of [`crate::transport`], dialled
//! by [`connect`]. Unit tests swap both for in-memory channels ([`memory`]), so the session's
//! whole life (pairing, login, keepalive, reconnects) runs without a network and under paused
//! time.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tracing::debug;

use super::connect::{self, ConnectError, Dial};
use crate::transport::{Connection, TransportError};
use crate::wa::binary::Node;

/// The longest a dial plus the Noise handshake may take (wa-protocol.md §2.7).
const CONNECT_DEADLINE: Duration = Duration::from_secs(20);
/// How long the close frame may take.
const CLOSE_DEADLINE: Duration = Duration::from_secs(1);

/// A dial in progress.
pub(crate) type DialFuture = Pin<Box<dyn Future<Output = Result<Socket, ConnectError>> + Send>>;

/// One open, handshaken connection carrying nodes.
#[derive(Debug)]
pub(crate) enum Socket {
    /// The WebSocket to WhatsApp (or wa-sim).
    Ws(Box<Connection>),
    /// A test's in-memory server.
    #[cfg(test)]
    Memory(memory::ClientEnd),
}

impl Socket {
    /// Reads the next node.
    ///
    /// # Cancel safety
    /// Cancel safe: partial frames stay in the connection's buffer.
    ///
    /// # Errors
    /// The socket failed or closed.
    pub(crate) async fn read_node(&mut self) -> Result<Node, TransportError> {
        match self {
            Socket::Ws(conn) => conn.read_node().await,
            #[cfg(test)]
            Socket::Memory(end) => end.read_node().await,
        }
    }

    /// Sends one node.
    ///
    /// # Errors
    /// The socket failed or closed.
    pub(crate) async fn send_node(&mut self, node: &Node) -> Result<(), TransportError> {
        match self {
            Socket::Ws(conn) => conn.send_node(node).await,
            #[cfg(test)]
            Socket::Memory(end) => {
                end.send_node(node)?;
                // Let the test's server look at the world as it is when the node leaves, so
                // it can check that what had to be durable first already is.
                tokio::task::yield_now().await;
                Ok(())
            }
        }
    }

    /// Sends a close and waits briefly for it to go out.
    pub(crate) async fn close(&mut self) {
        match self {
            Socket::Ws(conn) => {
                if tokio::time::timeout(CLOSE_DEADLINE, conn.close())
                    .await
                    .is_err()
                {
                    debug!("socket close timed out");
                }
            }
            #[cfg(test)]
            Socket::Memory(end) => end.close(),
        }
    }
}

/// How a session opens connections.
#[derive(Debug)]
pub(crate) enum Dialer {
    /// Dial the WebSocket and run the Noise handshake.
    Network,
    /// Hand each dial to a test's in-memory server.
    #[cfg(test)]
    Memory(memory::Dials),
}

impl Dialer {
    /// Starts one connection attempt; the future owns everything it needs.
    pub(crate) fn dial(&self, dial: Dial) -> DialFuture {
        match self {
            Dialer::Network => Box::pin(async move {
                let connect = crate::transport::on_heap(|| connect::connect(dial));
                match tokio::time::timeout(CONNECT_DEADLINE, connect).await {
                    Ok(result) => result.map(|conn| Socket::Ws(Box::new(conn))),
                    Err(_) => Err(ConnectError::TimedOut),
                }
            }),
            #[cfg(test)]
            Dialer::Memory(dials) => dials.dial(dial),
        }
    }
}

#[cfg(test)]
pub(crate) mod memory {
    //! In-memory connections: the session's end ([`ClientEnd`]) and the test's ([`ServerEnd`]),
    //! and the queue of dials a test answers ([`Dials`], [`DialRequest`]).

    use tokio::sync::{mpsc, oneshot};

    use super::{ConnectError, Dial, DialFuture, Socket};
    use crate::transport::TransportError;
    use crate::wa::binary::Node;

    /// The session's end of an in-memory connection.
    #[derive(Debug)]
    pub(crate) struct ClientEnd {
        from_server: mpsc::UnboundedReceiver<Node>,
        to_server: Option<mpsc::UnboundedSender<Node>>,
    }

    /// The test's end: what the session sent, and a way to push stanzas to it.
    #[derive(Debug)]
    pub(crate) struct ServerEnd {
        /// Nodes the session sent, in order.
        pub(crate) from_client: mpsc::UnboundedReceiver<Node>,
        to_client: Option<mpsc::UnboundedSender<Node>>,
    }

    /// A pair of connected ends.
    pub(crate) fn pair() -> (ClientEnd, ServerEnd) {
        let (to_client, from_server) = mpsc::unbounded_channel();
        let (to_server, from_client) = mpsc::unbounded_channel();
        (
            ClientEnd {
                from_server,
                to_server: Some(to_server),
            },
            ServerEnd {
                from_client,
                to_client: Some(to_client),
            },
        )
    }

    // The error type is the production socket's; its size does not matter in tests.
    #[allow(clippy::result_large_err)]
    impl ClientEnd {
        pub(crate) async fn read_node(&mut self) -> Result<Node, TransportError> {
            self.from_server
                .recv()
                .await
                .ok_or(TransportError::Closed(None))
        }

        pub(crate) fn send_node(&mut self, node: &Node) -> Result<(), TransportError> {
            self.to_server
                .as_ref()
                .and_then(|tx| tx.send(node.clone()).ok())
                .ok_or(TransportError::Closed(None))
        }

        pub(crate) fn close(&mut self) {
            self.to_server = None;
        }
    }

    impl ServerEnd {
        /// Pushes a stanza to the session.
        pub(crate) fn push(&self, node: Node) {
            if let Some(tx) = &self.to_client {
                let _ = tx.send(node);
            }
        }

        /// The next node the session sent; `None` once it closed the connection.
        pub(crate) async fn next(&mut self) -> Option<Node> {
            self.from_client.recv().await
        }
    }

    /// One dial the session made, waiting for the test to answer it.
    #[derive(Debug)]
    pub(crate) struct DialRequest {
        /// What the session dialled with (payload, routing info).
        pub(crate) dial: Dial,
        answer: oneshot::Sender<Result<Socket, ConnectError>>,
    }

    impl DialRequest {
        /// Completes the handshake; returns the server's end.
        pub(crate) fn accept(self) -> ServerEnd {
            let (client, server) = pair();
            let _ = self.answer.send(Ok(Socket::Memory(client)));
            server
        }

        /// Fails the dial as a refused connection would.
        pub(crate) fn refuse(self) {
            let _ = self.answer.send(Err(ConnectError::TimedOut));
        }
    }

    /// The session's side of the dial queue.
    #[derive(Debug)]
    pub(crate) struct Dials(mpsc::UnboundedSender<DialRequest>);

    /// A dial queue: the session dials into the first, the test answers from the second.
    pub(crate) fn dials() -> (Dials, mpsc::UnboundedReceiver<DialRequest>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Dials(tx), rx)
    }

    impl Dials {
        pub(crate) fn dial(&self, dial: Dial) -> DialFuture {
            let (answer, answered) = oneshot::channel();
            let _ = self.0.send(DialRequest { dial, answer });
            Box::pin(async move { answered.await.unwrap_or(Err(ConnectError::TimedOut)) })
        }
    }
}
