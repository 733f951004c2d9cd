//! The account IQs a client sends after `<success>` and the answers a real server gives a fresh
//! account (wa-protocol.md §8.2): app-state sync, server and A/B properties, the blocklist,
//! privacy settings, the dirty-bit clean. whatsapp-rust's watchdog reconnects when these are
//! refused, so wa-sim answers them validly instead of with 501.
//!
//! | request                                               | answer                                         |
//! |-------------------------------------------------------|------------------------------------------------|
//! | `w:sync:app:state` set `<sync><collection name version …/>…` | `<sync>` with `<collection name version/>` per requested one: no snapshot, no patches (an empty collection); a pushed `<patch>` is accepted and moves the version on by one |
//! | `w` get `<props protocol>`                            | `<props protocol hash refresh/>` (no properties) |
//! | `abt` get `<props protocol>`                          | `<props protocol ab_key hash refresh refresh_id/>` (no experiments) |
//! | `blocklist` get                                       | `<list/>` (nobody blocked)                      |
//! | `privacy` get `<privacy/>`                            | `<privacy>` with WhatsApp's defaults per category |
//! | `urn:xmpp:whatsapp:dirty` set `<clean type timestamp/>` | result                                       |

use worker::wa::binary::Node;

use super::iq;

/// How long a client keeps the properties before asking again, in seconds (a day).
const PROPS_REFRESH_SECS: &str = "86400";
/// The properties' version: nothing changes, so one fixed hash.
const PROPS_HASH: &str = "wa-sim-props-1";
/// A fresh account's privacy settings (WhatsApp's defaults).
const PRIVACY_DEFAULTS: [(&str, &str); 9] = [
    ("last", "all"),
    ("online", "all"),
    ("profile", "all"),
    ("status", "contacts"),
    ("groupadd", "all"),
    ("readreceipts", "all"),
    ("calladd", "all"),
    ("messages", "all"),
    ("defense", "off"),
];

/// The answer to one of the IQs above, or `None` for any other IQ.
pub(crate) fn answer(request: &Node) -> Option<Node> {
    let xmlns = request.attr_str("xmlns")?;
    let kind = request.attr_str("type")?;
    let first = request.children_slice().first();
    match (xmlns.as_ref(), kind.as_ref(), first.map(|c| c.tag.as_str())) {
        ("w:sync:app:state", "set", Some("sync")) => Some(app_state(request, first?)),
        ("w", "get", Some("props")) => Some(props(request, first?, false)),
        ("abt", "get", Some("props")) => Some(props(request, first?, true)),
        ("blocklist", "get", _) => Some(iq::result(request).children(vec![Node::new("list")])),
        ("privacy", "get", Some("privacy")) => Some(privacy(request)),
        ("urn:xmpp:whatsapp:dirty", "set", Some("clean")) => Some(iq::result(request)),
        _ => None,
    }
}

/// Every requested collection, empty: its name and version, nothing to download or apply.
fn app_state(request: &Node, sync: &Node) -> Node {
    let collections = sync
        .children_by_tag("collection")
        .filter_map(|c| {
            let name = c.attr_str("name")?.into_owned();
            let version: u64 = c
                .attr_str("version")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let pushed = c.child("patch").is_some();
            let version = if pushed { version + 1 } else { version };
            Some(
                Node::new("collection")
                    .attr("name", name)
                    .attr("version", version.to_string()),
            )
        })
        .collect();
    iq::result(request).children(vec![Node::new("sync").children(collections)])
}

/// `<props protocol hash refresh/>`, plus `ab_key` and `refresh_id` for the A/B properties.
fn props(request: &Node, asked: &Node, ab: bool) -> Node {
    let protocol = asked
        .attr_str("protocol")
        .map_or_else(|| "1".to_owned(), |p| p.into_owned());
    let mut props = Node::new("props")
        .attr("protocol", protocol)
        .attr("hash", PROPS_HASH)
        .attr("refresh", PROPS_REFRESH_SECS);
    if ab {
        props = props.attr("ab_key", "wa-sim").attr("refresh_id", "1");
    }
    iq::result(request).children(vec![props])
}

fn privacy(request: &Node) -> Node {
    let categories = PRIVACY_DEFAULTS
        .iter()
        .map(|(name, value)| {
            Node::new("category")
                .attr("name", *name)
                .attr("value", *value)
        })
        .collect();
    iq::result(request).children(vec![Node::new("privacy").children(categories)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(xmlns: &str, kind: &str, children: Vec<Node>) -> Node {
        Node::new("iq")
            .attr("id", "a-1")
            .attr("xmlns", xmlns)
            .attr("type", kind)
            .children(children)
    }

    #[test]
    fn app_state_answers_each_requested_collection_empty() {
        let sync = Node::new("sync").children(vec![
            Node::new("collection")
                .attr("name", "regular")
                .attr("version", "0")
                .attr("return_snapshot", "true"),
            Node::new("collection")
                .attr("name", "critical_block")
                .attr("version", "3")
                .children(vec![Node::new("patch").bytes(vec![1, 2])]),
        ]);
        let answer = answer(&request("w:sync:app:state", "set", vec![sync])).expect("answered");
        assert_eq!(answer.attr_str("type").as_deref(), Some("result"));
        let collections: Vec<(String, String, usize)> = answer
            .child("sync")
            .expect("sync")
            .children_by_tag("collection")
            .map(|c| {
                (
                    c.attr_str("name").unwrap_or_default().into_owned(),
                    c.attr_str("version").unwrap_or_default().into_owned(),
                    c.children_slice().len(),
                )
            })
            .collect();
        assert_eq!(
            collections,
            vec![
                ("regular".into(), "0".into(), 0),
                ("critical_block".into(), "4".into(), 0)
            ]
        );
    }

    #[test]
    fn props_blocklist_privacy_and_clean_get_valid_answers() {
        let props = answer(&request(
            "w",
            "get",
            vec![Node::new("props").attr("protocol", "2")],
        ))
        .expect("props");
        let node = props.child("props").expect("props child");
        assert_eq!(node.attr_str("protocol").as_deref(), Some("2"));
        assert!(node.attr_str("hash").is_some());
        let ab = answer(&request(
            "abt",
            "get",
            vec![Node::new("props").attr("protocol", "1")],
        ))
        .expect("abprops");
        assert!(ab
            .child("props")
            .and_then(|p| p.attr_str("ab_key"))
            .is_some());
        let blocklist = answer(&request("blocklist", "get", vec![])).expect("blocklist");
        assert_eq!(
            blocklist.child("list").map(|l| l.children_slice().len()),
            Some(0)
        );
        let privacy =
            answer(&request("privacy", "get", vec![Node::new("privacy")])).expect("privacy");
        assert_eq!(
            privacy
                .child("privacy")
                .map(|p| p.children_by_tag("category").count()),
            Some(PRIVACY_DEFAULTS.len())
        );
        let clean = answer(&request(
            "urn:xmpp:whatsapp:dirty",
            "set",
            vec![Node::new("clean").attr("type", "account_sync")],
        ))
        .expect("clean");
        assert_eq!(clean.attr_str("type").as_deref(), Some("result"));
        assert!(answer(&request(
            "w:profile:picture",
            "get",
            vec![Node::new("picture")]
        ))
        .is_none());
    }
}
