//! Server-initiated disconnects (wa-protocol.md §8.5, §8.7, §10.7): what the simulator writes
//! before it closes a connection, and how it closes it.
//!
//! 1. The control API (or the simulator itself: a replaced login, the 515 after pairing) picks a
//!    [`Fault`] and sends it to the connection's task.
//! 2. The task writes [`Ending::stanza`], if any, as its last frame.
//! 3. It then sends a WebSocket close frame, or, for [`Fault::Drop`], drops the TCP stream
//!    without one.

use worker::wa::binary::Node;

/// A way to end a live connection.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Fault {
    /// `<stream:error><conflict type="replaced"/></stream:error>`: another connection took over;
    /// the client must not reconnect.
    Conflict,
    /// `<stream:error code="401"><conflict type="device_removed"/></stream:error>`: unlinked.
    Logout,
    /// No stanza; the TCP stream is dropped.
    Drop,
    /// `<stream:error code="515"/>`: restart required; the client reconnects at once.
    Restart,
    /// `<stream:error code="N"/>`, e.g. 503 (reconnect with backoff).
    Error(u16),
    /// `<xmlstreamend/>`: end of stream.
    End,
}

impl Fault {
    /// How the connection ends for this fault.
    pub fn ending(self) -> Ending {
        match self {
            Fault::Conflict => Ending::with(
                Node::new("stream:error")
                    .children(vec![Node::new("conflict").attr("type", "replaced")]),
                "conflict replaced",
            ),
            Fault::Logout => Ending::with(
                Node::new("stream:error")
                    .attr("code", "401")
                    .children(vec![Node::new("conflict").attr("type", "device_removed")]),
                "logged out",
            ),
            Fault::Drop => Ending {
                stanza: None,
                abort: true,
                reason: "dropped",
            },
            Fault::Restart => Ending::with(stream_error(515), "restart required"),
            Fault::Error(code) => Ending::with(stream_error(code), "stream error"),
            Fault::End => Ending::with(Node::new("xmlstreamend"), "end of stream"),
        }
    }
}

/// `<stream:error code="N"/>`.
fn stream_error(code: u16) -> Node {
    Node::new("stream:error").attr("code", code.to_string())
}

/// How a connection ends: an optional last stanza, then a close.
#[derive(Clone, Debug, PartialEq)]
pub struct Ending {
    /// The last stanza written, if any.
    pub stanza: Option<Node>,
    /// Drop the TCP stream instead of sending a WebSocket close frame.
    pub abort: bool,
    /// For the log.
    pub reason: &'static str,
}

impl Ending {
    /// Write `stanza`, then close normally.
    pub fn with(stanza: Node, reason: &'static str) -> Self {
        Self {
            stanza: Some(stanza),
            abort: false,
            reason,
        }
    }

    /// Close normally without a stanza.
    pub fn close(reason: &'static str) -> Self {
        Self {
            stanza: None,
            abort: false,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker::wa::binary::encode;

    fn wire(fault: Fault) -> String {
        hex::encode(encode(&fault.ending().stanza.expect("has a stanza")))
    }

    #[test]
    fn stanzas_match_the_documented_vectors() {
        // wa-protocol.md §11.2.3.
        assert_eq!(wire(Fault::Restart), "00f8039d70ff82515f");
        assert_eq!(
            wire(Fault::Logout),
            "00f8049d708df801f803ec0e04fc0e6465766963655f72656d6f766564"
        );
        assert_eq!(wire(Fault::Conflict), "00f8029df801f803ec0e04ec11");
        assert_eq!(wire(Fault::End), "00f80102");
    }

    #[test]
    fn drop_writes_nothing_and_aborts() {
        let ending = Fault::Drop.ending();
        assert!(ending.stanza.is_none() && ending.abort);
        let error = Fault::Error(503).ending();
        assert_eq!(
            error
                .stanza
                .and_then(|s| s.attr_str("code").map(|c| c.into_owned())),
            Some("503".into())
        );
    }
}
