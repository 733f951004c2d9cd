//! Outgoing IQs: ids in whatsmeow's `"<b1>.<b2>-<n>"` form and the table of answers awaited
//! (wa-protocol.md §8.3).

use std::collections::HashMap;

use crate::wa::binary::{Jid, Node};

/// What an outgoing IQ was for, so its answer can be routed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Purpose {
    /// A keepalive ping.
    Ping,
    /// `<active/>` after login.
    Active,
    /// How many prekeys the server holds.
    PrekeyCount,
    /// A prekey upload.
    PrekeyUpload,
    /// `remove-companion-device`: the admin asked to log out.
    Logout,
    /// The device lists for the message in flight.
    Devices,
    /// The prekey bundles for the message in flight.
    Bundles,
    /// The metadata of the group the message in flight goes to.
    GroupInfo,
    /// The clean IQ that answers a dirty bit.
    CleanDirty,
    /// `companion_hello` of a pairing code.
    LinkCodeHello,
    /// `companion_finish` of a pairing code.
    LinkCodeFinish,
}

/// Ids and the IQs awaiting an answer, for one connection.
#[derive(Debug)]
pub(crate) struct Requests {
    prefix: String,
    counter: u64,
    pending: HashMap<String, Purpose>,
}

impl Requests {
    /// A fresh table with a random id prefix.
    pub(crate) fn new() -> Self {
        let [a, b] = rand::random::<[u8; 2]>();
        Requests {
            prefix: format!("{a}.{b}"),
            counter: 0,
            pending: HashMap::new(),
        }
    }

    /// Builds `<iq id xmlns type to=s.whatsapp.net>children</iq>` and records its purpose.
    pub(crate) fn iq(
        &mut self,
        purpose: Purpose,
        xmlns: &str,
        kind: &str,
        children: Vec<Node>,
    ) -> Node {
        self.counter += 1;
        let id = format!("{}-{}", self.prefix, self.counter);
        self.pending.insert(id.clone(), purpose);
        let node = Node::new("iq")
            .attr("id", id)
            .attr("xmlns", xmlns)
            .attr("type", kind)
            .jid_attr("to", Jid::server_jid());
        if children.is_empty() {
            node
        } else {
            node.children(children)
        }
    }

    /// As [`Requests::iq`], addressed to `to` instead of the server.
    pub(crate) fn iq_to(
        &mut self,
        purpose: Purpose,
        to: Jid,
        xmlns: &str,
        kind: &str,
        children: Vec<Node>,
    ) -> Node {
        let mut node = self.iq(purpose, xmlns, kind, children);
        node.set_attr("to".into(), crate::wa::binary::AttrValue::Jid(to));
        node
    }

    /// Takes the purpose of the IQ answered by `id`, if it is one of ours.
    pub(crate) fn answer(&mut self, id: &str) -> Option<Purpose> {
        self.pending.remove(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_up_and_answers_route_once() {
        let mut r = Requests::new();
        let a = r.iq(Purpose::Ping, "w:p", "get", vec![]);
        let b = r.iq(Purpose::Active, "passive", "set", vec![Node::new("active")]);
        let (ida, idb) = (
            a.attr_str("id").expect("id").into_owned(),
            b.attr_str("id").expect("id").into_owned(),
        );
        assert!(ida.ends_with("-1") && idb.ends_with("-2"), "{ida} {idb}");
        assert_eq!(a.attr_jid("to"), Some(&Jid::server_jid()));
        assert_eq!(r.answer(&ida), Some(Purpose::Ping));
        assert_eq!(r.answer(&ida), None);
        assert_eq!(r.answer("no-such-id"), None);
    }
}
