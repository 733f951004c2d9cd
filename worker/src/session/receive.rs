//! Incoming messages, notifications and calls, and the acks every such stanza needs
//! (wa-protocol.md §9, whatsmeow's attribute rules; wa-messaging.md §8).
//!
//! A message, in this order (architecture.md, "order is durability"):
//! 1. decrypt it ([`super::decrypt`]); a message already recorded is only confirmed again;
//! 2. persist the message itself (the inbox), then the Signal state that decrypted it;
//! 3. send the delivery receipt, then the ack.
//!
//! A message that does not decrypt gets a retry receipt (while retries last) and an ack, is
//! logged with its reason and counted; the server then holds nothing for us, and the sender
//! encrypts again.

use ipc_protocol::Direction;
use tracing::{debug, warn};

use super::actions::{Actions, Persist, Report};
use super::decrypt::{self, Own, Routing};
use super::retry::RetryReceipt;
use super::stage::Ctx;
use crate::store::creds::Creds;
use crate::wa::binary::{AttrValue, Jid, Node};

/// `<message>`: steps 1 to 3.
pub(crate) fn on_message(ctx: &mut Ctx<'_>, message: &Node) -> Actions {
    let Some(creds) = ctx.creds.filter(|c| c.is_paired()) else {
        return acked(message);
    };
    let (Some(own), Some(id)) = (Own::of(creds), message.attr_str("id")) else {
        return acked_message(creds, message);
    };
    let Some(routing) = decrypt::routing(&own, message) else {
        warn!(%id, "message without a usable sender; acked");
        return acked_message(creds, message);
    };
    let known = ctx
        .messages
        .and_then(|m| m.get(Direction::In, &id).ok().flatten())
        .is_some();
    if known {
        debug!(%id, "message already recorded; confirming again");
        return confirmed(creds, message, &routing);
    }
    let decrypted = decrypt::decrypt(ctx.keys, creds, &own, message, &routing);
    let mut actions = Actions::none();
    // The message goes first: if the Signal state that decrypted it then fails to persist,
    // nothing is acked, the server delivers it again, and the copy is recognised by its id
    // (above) instead of failing to decrypt with a key already used.
    if decrypted.failure.is_none() {
        if let Some(record) = decrypted.record {
            actions = actions
                .and_persist(Persist::Message(record))
                .and_report(Report::MessageSeen);
        }
    }
    for change in decrypted.persist {
        actions = actions.and_persist(change);
    }
    match decrypted.failure {
        None => actions.merge(confirmed(creds, message, &routing)),
        Some(e) if e.is_duplicate() => actions.merge(confirmed(creds, message, &routing)),
        Some(e) => {
            warn!(%id, device = routing.sender.device, reason = e.retry_reason(), error = %e, "message did not decrypt");
            actions = actions.and_report(Report::DecryptFailed);
            match RetryReceipt::for_stanza(message, e.retry_reason()) {
                Some(retry) if retry.wants_keys() => {
                    actions = actions.and_persist(Persist::RetryReceiptWithKeys(retry));
                }
                Some(retry) => actions = actions.and_send(retry.build(creds, None)),
                None => debug!(%id, "retries spent; acking only"),
            }
            actions.merge(acked_message(creds, message))
        }
    }
}

/// The delivery receipt (§8.4) and the ack of a message handled.
fn confirmed(creds: &Creds, message: &Node, routing: &Routing) -> Actions {
    let mut receipt = Node::new("receipt");
    if let Some(id) = message.get_attr("id") {
        receipt.set_attr("id".into(), id.clone());
    }
    for key in ["from", "participant"] {
        if let Some(v) = message.get_attr(key) {
            receipt.set_attr(if key == "from" { "to" } else { key }.into(), v.clone());
        }
    }
    if message.attr_str("category").as_deref() == Some("peer") {
        receipt = receipt.attr("type", "peer_msg");
    } else if routing.from_me {
        if let Some(recipient) = message.get_attr("recipient") {
            receipt.set_attr("recipient".into(), recipient.clone());
            receipt = receipt.attr("type", "sender");
        }
    }
    Actions::send(receipt).merge(acked_message(creds, message))
}

/// `<notification>`: a `devices` one drops the user's cached device list (under both its
/// names), an `encrypt` one with `<identity/>` the user's sessions and identity too, an
/// `encrypt` one with `<count value=N/>` refills the server's prekeys when it runs low (as the
/// count IQ does at login, [`super::login::prekeys_needed`]); every one is acknowledged, with
/// its `type` (`server_sync`, `account_sync`, `picture`, `status`, … need nothing else).
pub(crate) fn on_notification(ctx: &mut Ctx<'_>, notification: &Node) -> Actions {
    let mut actions = Actions::none();
    let kind = notification.attr_str("type");
    if kind.as_deref() == Some("encrypt") && notification.child("count").is_some() {
        actions = actions.merge(super::login::on_prekey_count(ctx, notification));
    }
    if kind.as_deref() == Some("encrypt") && notification.child("identity").is_some() {
        // The contact reinstalled: its sessions and identity are dead (whatsmeow's reaction).
        for key in ["from", "lid"] {
            if let Some(user) = notification.attr_jid(key) {
                actions = actions
                    .and_persist(Persist::ForgetUser {
                        user: user.to_non_ad(),
                    })
                    .and_persist(Persist::ForgetDevices {
                        user: user.to_non_ad(),
                    });
            }
        }
    }
    if kind.as_deref() == Some("link_code_companion_reg") {
        actions = actions.merge(super::pair_code::on_notification(ctx, notification));
    }
    if kind.as_deref() == Some("devices") {
        for key in ["from", "lid"] {
            if let Some(user) = notification.attr_jid(key) {
                actions = actions.and_persist(Persist::ForgetDevices {
                    user: user.to_non_ad(),
                });
            }
        }
    }
    actions.merge(acked(notification))
}

/// A top-level `<status>` stanza (some accounts receive them since late 2025,
/// wa-messaging.md §8.4): acknowledged with `class="status"`, or the server redelivers it.
pub(crate) fn on_status(_ctx: &mut Ctx<'_>, status: &Node) -> Actions {
    acked(status)
}

/// Sends the ack of a `<message>`, naming our own device in `from` as Baileys and
/// whatsapp-rust do (whatsmeow leaves it out; wa-protocol.md §9.1).
fn acked_message(creds: &Creds, message: &Node) -> Actions {
    let Some(mut ack) = ack_for(message) else {
        return Actions::none();
    };
    if let Some(own) = creds.me.as_ref().and_then(|me| me.jid.parse::<Jid>().ok()) {
        ack.set_attr("from".into(), AttrValue::Jid(own));
    }
    Actions::send(ack)
}

/// Sends the ack of `stanza`, if it has one.
pub(crate) fn acked(stanza: &Node) -> Actions {
    ack_for(stanza).map_or_else(Actions::none, Actions::send)
}

/// The stanzas the server keeps until we acknowledge them.
const ACKED: [&str; 5] = ["message", "receipt", "notification", "call", "status"];

/// The `<ack>` for `stanza`, if it needs one: `class`, `id`, `to` = its `from`, `participant`
/// and `recipient` copied, `type` copied except for messages, each only when present
/// (wa-protocol.md §9.1: whatsmeow's rules; Baileys also copies a message's `type`, and
/// whatsapp-rust leaves out `recipient`; Baileys and whatsapp-rust add `from` to message acks).
pub(crate) fn ack_for(stanza: &Node) -> Option<Node> {
    if !ACKED.contains(&stanza.tag.as_str()) {
        return None;
    }
    let id = stanza.get_attr("id")?.clone();
    let mut ack = Node::new("ack").attr("class", stanza.tag.clone());
    // Copied as it came, bytes that are not UTF-8 included: the server matches them exactly.
    ack.set_attr("id".into(), id);
    if let Some(from) = stanza.get_attr("from") {
        ack.set_attr("to".into(), from.clone());
    }
    for key in ["participant", "recipient"] {
        if let Some(value) = stanza.get_attr(key) {
            ack.set_attr(key.into(), value.clone());
        }
    }
    if stanza.tag != "message" {
        if let Some(kind) = stanza.get_attr("type") {
            ack.set_attr("type".into(), kind.clone());
        }
    }
    Some(ack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::binary::{decode, encode};

    #[test]
    fn acks_the_vector_newsletter_message_byte_for_byte() {
        // wa-protocol.md §11.2.3: newsletter_message and ack_message.
        let message = decode(&hex::decode("00f80c1306faff09120363000000000000fc0a6e6577736c657474657208fb08abcdef0123456789fc097365727665725f6964ec331aff0517000001000438f801f802fc09706c61696e74657874fc070a0568656c6c6f").expect("hex")).expect("node");
        let ack = ack_for(&message).expect("messages are acked");
        assert_eq!(
            hex::encode(encode(&ack)),
            "00f8071b151308fb08abcdef012345678911faff09120363000000000000fc0a6e6577736c6574746572"
        );
        assert!(ack.get_attr("type").is_none(), "no type on message acks");
    }

    #[test]
    fn copies_type_for_other_classes_and_ignores_the_rest() {
        let n = Node::new("notification")
            .attr("id", "7")
            .attr("type", "devices");
        let ack = ack_for(&n).expect("acked");
        assert_eq!(ack.attr_str("type").as_deref(), Some("devices"));
        assert_eq!(ack.attr_str("class").as_deref(), Some("notification"));
        assert!(ack_for(&Node::new("presence").attr("id", "1")).is_none());
        assert!(
            ack_for(&Node::new("receipt")).is_none(),
            "no id, nothing to ack"
        );
    }
}
