//! Incoming messages, notifications and calls, and the acks every such stanza needs
//! (wa-protocol.md §9, whatsmeow's attribute rules).

use super::actions::{Actions, Report};
use super::stage::Ctx;
use crate::wa::binary::Node;

/// `<message>`: acknowledged so the server stops redelivering it.
pub(crate) fn on_message(_ctx: &mut Ctx<'_>, message: &Node) -> Actions {
    acked(message).and_report(Report::MessageSeen)
}

/// `<notification>`: acknowledged.
pub(crate) fn on_notification(_ctx: &mut Ctx<'_>, notification: &Node) -> Actions {
    acked(notification)
}

/// `<call>`: acknowledged.
pub(crate) fn on_call(_ctx: &mut Ctx<'_>, call: &Node) -> Actions {
    acked(call)
}

/// Sends the ack of `stanza`, if it has one.
pub(crate) fn acked(stanza: &Node) -> Actions {
    ack_for(stanza).map_or_else(Actions::none, Actions::send)
}

/// The stanzas the server keeps until we acknowledge them.
const ACKED: [&str; 4] = ["message", "receipt", "notification", "call"];

/// The `<ack>` for `stanza`, if it needs one: `class`, `id`, `to` = its `from`, `participant`
/// and `recipient` copied, `type` copied except for messages.
pub(crate) fn ack_for(stanza: &Node) -> Option<Node> {
    if !ACKED.contains(&stanza.tag.as_str()) {
        return None;
    }
    let id = stanza.attr_str("id")?.into_owned();
    let mut ack = Node::new("ack")
        .attr("class", stanza.tag.clone())
        .attr("id", id);
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
