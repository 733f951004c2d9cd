//! Message delivery and acks (wa-protocol.md §9, §10.8 option (a)): newsletter messages carry a
//! plaintext `waE2E.Message`, so no Signal session is needed.
//!
//! 1. `POST /message` finds the device's live, logged-in connection ([`enqueue`]), builds
//!    `<message from=…@newsletter id server_id t type=text><plaintext>…</plaintext></message>`,
//!    keeps it in the device's outbox and registers a waiter for its id.
//! 2. If the connection is active it gets the stanza now; if it is still passive the stanza
//!    goes out with the outbox after `<active/>` (`login`).
//! 3. The client confirms with `<ack class=message id to=<from>>` or a `<receipt id>`
//!    ([`on_confirmation`]): the stanza leaves the outbox and the waiter learns how (a negative
//!    ack's `error` included).
//! 4. A stanza never confirmed stays in the outbox and is delivered again, marked `offline`,
//!    after the next login's `<active/>`.

use prost::Message as _;
use tokio::sync::oneshot;
use tracing::{debug, warn};
use worker::wa::binary::jid::NEWSLETTER_SERVER;
use worker::wa::binary::{Jid, Node};

use super::connection::Command;
use super::registry::{Confirmation, ConnId, Registry};

/// The channel messages come from.
pub const NEWSLETTER_USER: &str = "120363000000000000";

/// `waE2E.Message` with only `conversation` (field 1).
#[derive(Clone, PartialEq, prost::Message)]
struct TextMessage {
    #[prost(string, optional, tag = "1")]
    conversation: Option<String>,
}

/// No live, logged-in connection for the device.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("no live logged-in connection for this device")]
pub struct NotConnected;

/// The newsletter message stanza (§9.3).
pub(crate) fn newsletter_message(id: &str, server_id: u64, now_unix: u64, text: &str) -> Node {
    let plaintext = TextMessage {
        conversation: Some(text.to_owned()),
    }
    .encode_to_vec();
    Node::new("message")
        .jid_attr("from", Jid::new(NEWSLETTER_USER, NEWSLETTER_SERVER))
        .attr("id", id)
        .attr("server_id", server_id.to_string())
        .attr("t", now_unix.to_string())
        .attr("type", "text")
        .children(vec![Node::new("plaintext").bytes(plaintext)])
}

/// Steps 1 and 2. Returns the message id and what will learn of its confirmation.
///
/// # Errors
/// [`NotConnected`] when the device has no live, logged-in connection.
pub(crate) fn enqueue(
    registry: &mut Registry,
    jid: &Jid,
    text: &str,
    now_unix: u64,
) -> Result<(String, oneshot::Receiver<Confirmation>), NotConnected> {
    let (_, entry) = registry.logged_in(jid).ok_or(NotConnected)?;
    let commands = entry.commands.clone();
    let active = entry.active;
    let server_id = registry.next_id();
    let id = format!("{:016X}", rand::random::<u64>());
    let message = newsletter_message(&id, server_id, now_unix, text);
    let device = registry.device_mut(jid).ok_or(NotConnected)?;
    device.outbox.push(message.clone());
    let confirmed = registry.wait_for(id.clone());
    if active {
        let _ = commands.send(Command::Send {
            node: message,
            written: None,
        });
    }
    Ok((id, confirmed))
}

/// Step 3: an `<ack>` or `<receipt>` from the device on connection `conn`.
pub(crate) fn on_confirmation(registry: &mut Registry, conn: ConnId, node: &Node) {
    let Some(id) = node.attr_str("id").map(|s| s.into_owned()) else {
        return;
    };
    let Some(device) = registry.device_of_conn(conn) else {
        return;
    };
    let Some(position) = device
        .outbox
        .iter()
        .position(|m| m.attr_str("id").as_deref() == Some(id.as_str()))
    else {
        debug!(conn_id = %conn, id, tag = %node.tag, "confirmation for nothing pending");
        return;
    };
    let pending = &device.outbox[position];
    if node.tag == "ack" {
        let class_ok = node.attr_str("class").as_deref() == Some(pending.tag.as_str());
        let to_ok = node.attr_str("to") == pending.attr_str("from");
        if !class_ok || !to_ok {
            warn!(conn_id = %conn, id, class_ok, to_ok, "ack does not match the stanza; still pending");
            return;
        }
    }
    device.outbox.remove(position);
    let confirmation = Confirmation {
        by: if node.tag == "ack" { "ack" } else { "receipt" },
        error: node.attr_str("error").map(|e| e.into_owned()),
    };
    debug!(conn_id = %conn, id, by = confirmation.by, error = ?confirmation.error, "delivery confirmed");
    registry.confirm(&id, confirmation);
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker::wa::binary::encode;

    #[test]
    fn encodes_the_vector_newsletter_message_byte_for_byte() {
        // wa-protocol.md §11.2.3 newsletter_message.
        let node = newsletter_message("ABCDEF0123456789", 100, 1_700_000_100, "hello");
        assert_eq!(
            hex::encode(encode(&node)),
            "00f80c1306faff09120363000000000000fc0a6e6577736c657474657208fb08abcdef0123456789fc097365727665725f6964ec331aff0517000001000438f801f802fc09706c61696e74657874fc070a0568656c6c6f"
        );
    }
}
