//! Device lists and LIDs from the server's user sync (wa-messaging.md §6.2, §6.3).
//!
//! 1. [`devices_query`] asks for the devices (and the LID) of some users, by their bare JIDs.
//! 2. [`parse_devices`] reads the answer: per user, the device ids (device 0 always; companions
//!    only with a `key-index`, as Baileys keeps them), hosted devices on their own server, and
//!    the LID when the server gave one.

use crate::wa::binary::jid::{HIDDEN_USER_SERVER, HOSTED_LID_SERVER, HOSTED_SERVER};
use crate::wa::binary::{Jid, Node};

/// The devices of one user, as the server listed them.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub(crate) struct UserDevices {
    /// The user, as asked (bare).
    pub(crate) user: Jid,
    /// Every device to encrypt for, in the user's namespace (hosted ones on theirs).
    pub(crate) devices: Vec<Jid>,
    /// The user's LID, when the server gave one.
    pub(crate) lid: Option<Jid>,
}

/// `<iq xmlns=usync type=get><usync …><query><devices version=2/><lid/></query><list>…`.
pub(crate) fn devices_query(sid: &str, users: &[Jid]) -> Vec<Node> {
    let list = users
        .iter()
        .map(|u| Node::new("user").jid_attr("jid", u.to_non_ad()))
        .collect();
    vec![Node::new("usync")
        .attr("sid", sid)
        .attr("mode", "query")
        .attr("last", "true")
        .attr("index", "0")
        .attr("context", "message")
        .children(vec![
            Node::new("query").children(vec![
                Node::new("devices").attr("version", "2"),
                Node::new("lid"),
            ]),
            Node::new("list").children(list),
        ])]
}

/// The users of a usync answer, with their devices. Users with an `<error>` are left out.
pub(crate) fn parse_devices(result: &Node) -> Vec<UserDevices> {
    let Some(list) = result.child("usync").and_then(|u| u.child("list")) else {
        return Vec::new();
    };
    list.children_by_tag("user")
        .filter_map(|user| {
            let jid = user.attr_jid("jid")?.to_non_ad();
            let devices_node = user.child("devices")?;
            if devices_node.child("error").is_some() {
                return None;
            }
            let devices = devices_node
                .child("device-list")
                .map(|dl| {
                    dl.children_by_tag("device")
                        .filter_map(|d| device_jid(&jid, d))
                        .collect()
                })
                .unwrap_or_default();
            let lid = user
                .child("lid")
                .and_then(|l| l.attr_jid("val").cloned())
                .filter(|l| !l.user.is_empty());
            Some(UserDevices {
                user: jid,
                devices,
                lid,
            })
        })
        .collect()
}

fn device_jid(user: &Jid, device: &Node) -> Option<Jid> {
    let id: u16 = device.attr_str("id")?.parse().ok()?;
    if id != 0 && device.get_attr("key-index").is_none() {
        return None;
    }
    let hosted = device.attr_str("is_hosted").as_deref() == Some("true");
    let server = match (hosted, user.server.as_str()) {
        (true, HIDDEN_USER_SERVER) => HOSTED_LID_SERVER,
        (true, _) => HOSTED_SERVER,
        (false, server) => server,
    };
    Some(Jid::device(user.user.clone(), server, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        s.parse().expect("jid")
    }

    #[test]
    fn the_query_lists_bare_users_and_asks_for_devices_and_lids() {
        let q = devices_query("s1", &[jid("15551234567:3@s.whatsapp.net")]);
        let usync = &q[0];
        assert_eq!(usync.attr_str("context").as_deref(), Some("message"));
        let query = usync.child("query").expect("query");
        assert_eq!(
            query
                .child("devices")
                .and_then(|d| d.attr_str("version"))
                .as_deref(),
            Some("2")
        );
        assert!(query.child("lid").is_some());
        let user = usync
            .child("list")
            .and_then(|l| l.child("user"))
            .expect("user");
        assert_eq!(
            user.attr_jid("jid"),
            Some(&jid("15551234567@s.whatsapp.net"))
        );
    }

    #[test]
    fn reads_devices_keeps_indexed_companions_and_the_lid() {
        let answer =
            Node::new("iq").children(vec![Node::new("usync").children(vec![Node::new("list")
                .children(vec![
                    Node::new("user")
                        .jid_attr("jid", jid("15551234567@s.whatsapp.net"))
                        .children(vec![
                            Node::new("devices").children(vec![Node::new("device-list").children(
                                vec![
                                    Node::new("device").attr("id", "0"),
                                    Node::new("device").attr("id", "5").attr("key-index", "2"),
                                    Node::new("device").attr("id", "7"),
                                    Node::new("device")
                                        .attr("id", "99")
                                        .attr("key-index", "3")
                                        .attr("is_hosted", "true"),
                                ],
                            )]),
                            Node::new("lid").jid_attr("val", jid("100000000000002@lid")),
                        ]),
                    Node::new("user")
                        .jid_attr("jid", jid("15550000000@s.whatsapp.net"))
                        .children(vec![Node::new("devices")
                            .children(vec![Node::new("error").attr("code", "404")])]),
                ])])]);
        let users = parse_devices(&answer);
        assert_eq!(users.len(), 1, "the user with an error is left out");
        let u = &users[0];
        assert_eq!(
            u.devices
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "15551234567@s.whatsapp.net",
                "15551234567:5@s.whatsapp.net",
                "15551234567:99@hosted"
            ]
        );
        assert_eq!(u.lid, Some(jid("100000000000002@lid")));
        assert!(parse_devices(&Node::new("iq")).is_empty());
    }
}
