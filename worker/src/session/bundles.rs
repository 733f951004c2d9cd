//! Prekey bundles from the server (wa-messaging.md §6.4): one `encrypt` IQ for every device that
//! needs a session, and the bundles it answers with.

use crate::signal::{PreKeyBundle, PublicKey};
use crate::wa::binary::{Jid, Node};

/// The children of `<iq xmlns=encrypt type=get>` asking for the bundles of `devices`.
pub(crate) fn bundles_query(devices: &[Jid]) -> Vec<Node> {
    vec![Node::new("key").children(
        devices
            .iter()
            .map(|d| {
                Node::new("user")
                    .jid_attr("jid", d.clone())
                    .attr("reason", "identity")
            })
            .collect(),
    )]
}

/// The bundles in an answer, per device; devices with an `<error>` or a malformed bundle are
/// left out (they get no message).
pub(crate) fn parse_bundles(result: &Node) -> Vec<(Jid, PreKeyBundle)> {
    let Some(list) = result.child("list") else {
        return Vec::new();
    };
    list.children_by_tag("user")
        .filter_map(|user| Some((user.attr_jid("jid")?.clone(), bundle(user)?)))
        .collect()
}

/// One `<user>`'s bundle; its keys may sit in a `<keys>` child (whatsmeow and whatsapp-rust
/// accept both).
pub(crate) fn bundle(user: &Node) -> Option<PreKeyBundle> {
    if user.child("error").is_some() {
        return None;
    }
    let keys = user.child("keys").unwrap_or(user);
    let registration = bytes_n::<4>(user.child("registration")?)?;
    let identity = bytes_n::<32>(keys.child("identity")?)?;
    let skey = keys.child("skey")?;
    let pre_key = match keys.child("key") {
        Some(k) => Some((
            id24(k.child("id")?)?,
            PublicKey::from_bytes(bytes_n::<32>(k.child("value")?)?),
        )),
        None => None,
    };
    Some(PreKeyBundle {
        registration_id: u32::from_be_bytes(registration),
        identity_key: PublicKey::from_bytes(identity),
        signed_pre_key_id: id24(skey.child("id")?)?,
        signed_pre_key: PublicKey::from_bytes(bytes_n::<32>(skey.child("value")?)?),
        signed_pre_key_signature: bytes_n::<64>(skey.child("signature")?)?,
        pre_key,
    })
}

fn bytes_n<const N: usize>(node: &Node) -> Option<[u8; N]> {
    node.content_bytes()?.try_into().ok()
}

fn id24(node: &Node) -> Option<u32> {
    let b = bytes_n::<3>(node)?;
    Some(u32::from_be_bytes([0, b[0], b[1], b[2]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        s.parse().expect("jid")
    }

    fn user(j: &str, with_key: bool, wrapped: bool) -> Node {
        let mut keys = vec![
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(vec![1; 32]),
            Node::new("skey").children(vec![
                Node::new("id").bytes(vec![0, 0, 1]),
                Node::new("value").bytes(vec![2; 32]),
                Node::new("signature").bytes(vec![3; 64]),
            ]),
        ];
        if with_key {
            keys.push(Node::new("key").children(vec![
                Node::new("id").bytes(vec![0, 1, 2]),
                Node::new("value").bytes(vec![4; 32]),
            ]));
        }
        let mut children = vec![Node::new("registration").bytes(vec![0, 0, 0x12, 0x34])];
        if wrapped {
            children.push(Node::new("keys").children(keys));
        } else {
            children.extend(keys);
        }
        Node::new("user").jid_attr("jid", jid(j)).children(children)
    }

    #[test]
    fn reads_bundles_with_and_without_a_one_time_prekey_in_both_layouts() {
        let answer = Node::new("iq").children(vec![Node::new("list").children(vec![
            user("100000000000002:5@lid", true, false),
            user("100000000000002@lid", false, true),
            Node::new("user")
                .jid_attr("jid", jid("100000000000002:9@lid"))
                .children(vec![Node::new("error").attr("code", "406")]),
        ])]);
        let bundles = parse_bundles(&answer);
        assert_eq!(bundles.len(), 2);
        let (who, b) = &bundles[0];
        assert_eq!(who, &jid("100000000000002:5@lid"));
        assert_eq!(b.registration_id, 0x1234);
        assert_eq!(b.signed_pre_key_id, 1);
        assert_eq!(b.pre_key.as_ref().map(|(id, _)| *id), Some(0x0102));
        assert!(bundles[1].1.pre_key.is_none());
    }

    #[test]
    fn the_query_names_each_device() {
        let q = bundles_query(&[jid("1@lid"), jid("1:2@lid")]);
        let users: Vec<_> = q[0]
            .children_by_tag("user")
            .filter_map(|u| u.attr_jid("jid").map(ToString::to_string))
            .collect();
        assert_eq!(users, ["1@lid", "1:2@lid"]);
    }
}
