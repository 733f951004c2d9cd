//! Retry receipts: asking a sender to encrypt again when a message did not decrypt
//! (wa-messaging.md §8.6).
//!
//! 1. The count is one more than the failed stanza's own `<enc count>` (a resend carries its
//!    count), so no state is kept between attempts; past [`MAX_RETRY_COUNT`] we stop asking.
//! 2. From the second attempt on, the receipt carries our keys: a fresh one-time prekey (made
//!    durable first, never uploaded), the signed prekey and the device identity, so the sender
//!    can build a new session without fetching a bundle.

use crate::store::creds::{Creds, DJB_KEY_TYPE};
use crate::store::signal::PreKeyPublic;
use crate::wa::binary::Node;

/// The last retry receipt count we send (Baileys and whatsapp-rust stop after 5).
pub(crate) const MAX_RETRY_COUNT: u32 = 5;

/// A retry receipt to send, before our keys are added.
#[derive(Clone, Debug)]
pub(crate) struct RetryReceipt {
    /// The failed stanza.
    stanza: Node,
    /// This receipt's count.
    pub(crate) count: u32,
    /// The reason code (whatsapp-rust's list; 0 when unknown).
    reason: u8,
}

impl RetryReceipt {
    /// The receipt for `stanza`, or `None` once the retries are spent.
    pub(crate) fn for_stanza(stanza: &Node, reason: u8) -> Option<RetryReceipt> {
        let previous = stanza
            .children_by_tag("enc")
            .filter_map(|e| e.attr_str("count").and_then(|c| c.parse::<u32>().ok()))
            .max()
            .unwrap_or(0);
        let count = previous.saturating_add(1);
        (count <= MAX_RETRY_COUNT).then(|| RetryReceipt {
            stanza: stanza.clone(),
            count,
            reason,
        })
    }

    /// Whether this receipt should carry our keys.
    pub(crate) fn wants_keys(&self) -> bool {
        self.count >= 2
    }

    /// The `<receipt type=retry>`, with `<keys>` when `prekey` is given.
    pub(crate) fn build(&self, creds: &Creds, prekey: Option<&PreKeyPublic>) -> Node {
        let s = &self.stanza;
        let id = s.attr_str("id").unwrap_or_default().into_owned();
        let mut receipt = Node::new("receipt")
            .attr("id", id.clone())
            .attr("type", "retry");
        for (from, to) in [
            ("from", "to"),
            ("participant", "participant"),
            ("recipient", "recipient"),
            ("category", "category"),
        ] {
            if let Some(v) = s.get_attr(from) {
                receipt.set_attr(to.into(), v.clone());
            }
        }
        let mut retry = Node::new("retry")
            .attr("count", self.count.to_string())
            .attr("id", id)
            .attr("v", "1");
        if let Some(t) = s.attr_str("t") {
            retry = retry.attr("t", t.into_owned());
        }
        if self.reason != 0 {
            retry = retry.attr("error", self.reason.to_string());
        }
        let mut children = vec![
            retry,
            Node::new("registration").bytes(creds.registration_id.to_be_bytes().to_vec()),
        ];
        if let Some(prekey) = prekey {
            let id3 = |id: u32| id.to_be_bytes()[1..].to_vec();
            let spk = &creds.signed_prekey;
            let mut keys = vec![
                Node::new("type").bytes(vec![DJB_KEY_TYPE]),
                Node::new("identity").bytes(creds.identity_key.public.0.to_vec()),
                Node::new("key").children(vec![
                    Node::new("id").bytes(id3(prekey.id)),
                    Node::new("value").bytes(prekey.public.to_vec()),
                ]),
                Node::new("skey").children(vec![
                    Node::new("id").bytes(id3(spk.key_id)),
                    Node::new("value").bytes(spk.key_pair.public.0.to_vec()),
                    Node::new("signature").bytes(spk.signature.0.to_vec()),
                ]),
            ];
            if let Some(account) = &creds.account {
                keys.push(Node::new("device-identity").bytes(account.0.clone()));
            }
            children.push(Node::new("keys").children(keys));
        }
        receipt.children(children)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::binary::Jid;

    fn stanza(count: Option<&str>) -> Node {
        let mut enc = Node::new("enc").attr("type", "msg").attr("v", "2");
        if let Some(c) = count {
            enc = enc.attr("count", c);
        }
        Node::new("message")
            .attr("id", "M1")
            .attr("t", "1700000000")
            .jid_attr("from", "100000000000002:5@lid".parse::<Jid>().expect("jid"))
            .children(vec![enc.bytes(vec![1, 2, 3])])
    }

    #[test]
    fn counts_up_from_the_stanza_and_stops_after_five() {
        let first = RetryReceipt::for_stanza(&stanza(None), 7).expect("first");
        assert_eq!(first.count, 1);
        assert!(!first.wants_keys());
        let node = first.build(&Creds::generate(), None);
        assert_eq!(node.attr_str("type").as_deref(), Some("retry"));
        assert_eq!(
            node.attr_jid("to").map(ToString::to_string).as_deref(),
            Some("100000000000002:5@lid"),
            "the device stays in `to`"
        );
        let retry = node.child("retry").expect("retry");
        assert_eq!(retry.attr_str("count").as_deref(), Some("1"));
        assert_eq!(retry.attr_str("error").as_deref(), Some("7"));
        assert_eq!(retry.attr_str("t").as_deref(), Some("1700000000"));
        assert!(node.child("keys").is_none());

        let third = RetryReceipt::for_stanza(&stanza(Some("2")), 1).expect("third");
        assert_eq!(third.count, 3);
        assert!(third.wants_keys());
        let creds = Creds::generate();
        let node = third.build(
            &creds,
            Some(&PreKeyPublic {
                id: 0x010203,
                public: [9; 32],
            }),
        );
        let keys = node.child("keys").expect("keys");
        assert_eq!(
            keys.child("key")
                .and_then(|k| k.child("id"))
                .and_then(Node::content_bytes),
            Some(&[1u8, 2, 3][..])
        );
        assert_eq!(
            node.child("registration").and_then(Node::content_bytes),
            Some(&creds.registration_id.to_be_bytes()[..])
        );
        assert!(RetryReceipt::for_stanza(&stanza(Some("5")), 1).is_none());
    }
}
