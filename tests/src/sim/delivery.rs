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
//!
//! Relayed stanzas (`relay`) take the same road through [`deliver`]: into the recipient
//! device's outbox (at most [`MAX_OUTBOX`] stanzas; the oldest is dropped beyond that), onto
//! its socket at once when it is logged in and active, and out of the outbox when the device
//! confirms: an `<ack class=<tag> id to=<from>>` for any stanza, or a `<receipt id>` (not a
//! retry receipt) for a `<message>`.

use prost::Message as _;
use tokio::sync::oneshot;
use tracing::{debug, warn};
use worker::wa::binary::jid::NEWSLETTER_SERVER;
use worker::wa::binary::{Jid, Node};

use super::connection::Command;
use super::registry::{Confirmation, ConnId, Registry, RelayedView, MAX_RELAYED_LOG};

/// How many unconfirmed stanzas a device's outbox keeps (wa-messaging.md §10: the server's
/// offline queue is bounded too).
pub const MAX_OUTBOX: usize = 1000;

/// The id prefix of `/flood` stanzas, whose acks are only counted.
pub const FLOOD_ID_PREFIX: &str = "flood-";

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
    registry.logged_in(jid).ok_or(NotConnected)?;
    let server_id = registry.next_id();
    let id = format!("{:016X}", rand::random::<u64>());
    let message = newsletter_message(&id, server_id, now_unix, text);
    let confirmed = registry.wait_for(id.clone());
    if !deliver(registry, jid, message) {
        registry.forget_waiter(&id);
        return Err(NotConnected);
    }
    Ok((id, confirmed))
}

/// Queues `stanza` for the device `jid` and writes it now if the device is logged in and
/// active; a stanza for device 0 goes to the phone's queue (`peer::drain` handles it). Returns
/// false when there is no such device.
pub(crate) fn deliver(registry: &mut Registry, jid: &Jid, stanza: Node) -> bool {
    if jid.device == 0 {
        let Some(phone) = registry.phone_of(jid).map(str::to_owned) else {
            return false;
        };
        registry.phone_queue.push_back((phone, stanza));
        return true;
    }
    let live = registry
        .logged_in(jid)
        .filter(|(_, entry)| entry.active)
        .map(|(_, entry)| entry.commands.clone());
    let Some(device) = registry.device_mut(jid) else {
        return false;
    };
    let mut dropped = 0;
    while device.outbox.len() >= MAX_OUTBOX {
        device.outbox.remove(0);
        dropped += 1;
    }
    device.outbox.push(stanza.clone());
    if device.relayed.len() >= MAX_RELAYED_LOG {
        device.relayed.pop_front();
    }
    device.relayed.push_back(RelayedView::of(&stanza));
    if dropped > 0 {
        warn!(
            device = jid.device,
            dropped, "outbox full; oldest stanzas dropped"
        );
        registry.stats.outbox_overflows += dropped;
    }
    if let Some(commands) = live {
        let _ = commands.send(Command::Send {
            node: stanza,
            written: None,
        });
    }
    true
}

/// Step 3: an `<ack>` or `<receipt>` from the device on connection `conn`. A receipt confirms
/// the `<message>` it names (and those in its `<list>`); a retry receipt confirms nothing (the
/// client acks the message separately).
pub(crate) fn on_confirmation(registry: &mut Registry, conn: ConnId, node: &Node) {
    if node.tag == "receipt" {
        if node.attr_str("type").as_deref() == Some("retry") {
            return;
        }
        for id in receipt_ids(node) {
            confirm_one(registry, conn, node, &id);
        }
        return;
    }
    if let Some(id) = node.attr_str("id").map(|s| s.into_owned()) {
        confirm_one(registry, conn, node, &id);
    }
}

/// The message ids a receipt names: `id`, then each `<list><item id/>`.
pub(crate) fn receipt_ids(receipt: &Node) -> Vec<String> {
    let mut ids: Vec<String> = receipt
        .attr_str("id")
        .map(|s| s.into_owned())
        .into_iter()
        .collect();
    if let Some(list) = receipt.child("list") {
        ids.extend(
            list.children_by_tag("item")
                .filter_map(|i| i.attr_str("id").map(|s| s.into_owned())),
        );
    }
    ids
}

fn confirm_one(registry: &mut Registry, conn: ConnId, node: &Node, id: &str) {
    if node.tag == "ack" && id.starts_with(FLOOD_ID_PREFIX) {
        registry.stats.flood_acked += 1;
        return;
    }
    let Some(device) = registry.device_of_conn(conn) else {
        return;
    };
    let is_ack = node.tag == "ack";
    let class = node.attr_str("class");
    let to = node.attr_str("to");
    let mut mismatch = false;
    let position = device.outbox.iter().position(|m| {
        if m.attr_str("id").as_deref() != Some(id) {
            return false;
        }
        if !is_ack {
            return m.tag == "message";
        }
        let matches = class.as_deref() == Some(m.tag.as_str()) && to == m.attr_str("from");
        mismatch |= !matches;
        matches
    });
    let Some(position) = position else {
        if mismatch {
            warn!(conn_id = %conn, id, "ack does not match the stanza; still pending");
        } else {
            debug!(conn_id = %conn, id, tag = %node.tag, "confirmation for nothing pending");
        }
        return;
    };
    device.outbox.remove(position);
    if is_ack {
        registry.stats.client_acks += 1;
    }
    let id = id.to_owned();
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

    #[test]
    fn an_offline_devices_queue_is_bounded_and_drops_the_oldest() {
        use super::super::pairing::RegistrationKeys;
        use super::super::registry::{Device, DeviceState, LiveConfig};
        use worker::wa::binary::jid::DEFAULT_USER_SERVER;

        let mut registry = Registry::new(LiveConfig::default());
        registry.account_or_create("15551234567", 1).devices.insert(
            1,
            Device {
                id: 1,
                key_index: 1,
                state: DeviceState::Paired,
                noise_public: [0; 32],
                keys: RegistrationKeys {
                    registration_id: [0; 4],
                    identity: [0; 32],
                    skey_id: [0; 3],
                    skey_value: [0; 32],
                    skey_signature: [0; 64],
                    companion: Default::default(),
                },
                prekeys: Default::default(),
                uploaded: false,
                signed_identity: None,
                outbox: Vec::new(),
                relayed: Default::default(),
            },
        );
        let jid = Jid::device("15551234567", DEFAULT_USER_SERVER, 1);
        for n in 0..=MAX_OUTBOX {
            assert!(deliver(
                &mut registry,
                &jid,
                Node::new("message").attr("id", n.to_string())
            ));
        }
        let device = registry.device_mut(&jid).expect("device");
        assert_eq!(device.outbox.len(), MAX_OUTBOX);
        assert_eq!(device.outbox[0].attr_str("id").as_deref(), Some("1"));
        assert_eq!(registry.stats.outbox_overflows, 1);
        assert!(!deliver(
            &mut registry,
            &Jid::device("15551234567", DEFAULT_USER_SERVER, 2),
            Node::new("message")
        ));
    }
}
