//! Group chats (wa-messaging.md §7.1): made through the control API, read by clients with the
//! `w:g2` metadata query; `relay` fans group messages out to their members.
//!
//! 1. `POST /group {"subject","participants":[phone…],"addressing_mode":"lid"|"pn"}` ([`create`]):
//!    every participant must be an account (paired at least once); the first one is the
//!    creator (`superadmin`). The group gets a fresh `120363…@g.us` id. No `w:gp2`
//!    notification is sent: clients learn of the group when they query it or a message arrives.
//! 2. `<iq xmlns="w:g2" type="get" to=<group>><query request="interactive"/></iq>` ([`query`])
//!    → `<group id subject s_t s_o creation creator addressing_mode size>` with one
//!    `<participant jid [phone_number|lid] [type]/>` per member: LID groups name members by LID
//!    with `phone_number`, PN groups by PN with `lid`. `to="@g.us"` with `<participating/>`
//!    lists the asker's groups under `<groups>`. Unknown group: error 404; a non-member: 403.

use worker::wa::binary::jid::GROUP_SERVER;
use worker::wa::binary::{Jid, Node};

use super::iq;
use super::registry::{jid_in, Addressing, ConnId, Group, Registry};

/// Why a group could not be made.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub(crate) enum GroupRefused {
    #[error("participants must name at least one phone")]
    NoParticipants,
    #[error("addressing_mode must be \"lid\" or \"pn\"")]
    BadAddressing,
    #[error("no account has the number ending in {0}")]
    UnknownPhone(String),
}

/// Step 1: makes a group; returns its JID.
pub(crate) fn create(
    registry: &mut Registry,
    subject: &str,
    participants: &[String],
    addressing_mode: Option<&str>,
    now_unix: u64,
) -> Result<Jid, GroupRefused> {
    let addressing = match addressing_mode.unwrap_or("lid") {
        "lid" => Addressing::Lid,
        "pn" => Addressing::Pn,
        _ => return Err(GroupRefused::BadAddressing),
    };
    if participants.is_empty() {
        return Err(GroupRefused::NoParticipants);
    }
    let mut members: Vec<String> = Vec::new();
    for phone in participants {
        if registry.account(phone).is_none() {
            let tail = phone.len().saturating_sub(2);
            return Err(GroupRefused::UnknownPhone(phone[tail..].to_owned()));
        }
        if !members.contains(phone) {
            members.push(phone.clone());
        }
    }
    let id = registry.next_group_id();
    registry.groups.insert(
        id.clone(),
        Group {
            id: id.clone(),
            subject: subject.to_owned(),
            addressing,
            members,
            created: now_unix,
        },
    );
    Ok(Jid::new(id, GROUP_SERVER))
}

/// Step 2: the answer to a `w:g2` get.
pub(crate) fn query(registry: &mut Registry, conn: ConnId, request: &Node) -> Node {
    let Some(asker) = registry
        .conn(conn)
        .and_then(|c| c.jid.as_ref())
        .map(|j| j.user.clone())
    else {
        return iq::error(request, 401, "not-authorized");
    };
    let Some(to) = jid_in(request, "to") else {
        return iq::error(request, 400, "bad-request");
    };
    if request.child("participating").is_some() {
        let groups = registry
            .groups
            .values()
            .filter(|g| g.members.contains(&asker))
            .map(|g| group_node(registry, g))
            .collect();
        return iq::result(request).children(vec![Node::new("groups").children(groups)]);
    }
    let Some(group) = registry.groups.get(&to.user) else {
        return iq::error(request, 404, "item-not-found");
    };
    if !group.members.contains(&asker) {
        return iq::error(request, 403, "forbidden");
    }
    let mut answer = iq::result(request);
    answer.set_attr("from".into(), to.into());
    answer.children(vec![group_node(registry, group)])
}

/// `<group …><participant …/>…</group>`.
fn group_node(registry: &Registry, group: &Group) -> Node {
    let addressing = group.addressing;
    let participants: Vec<Node> = group
        .members
        .iter()
        .enumerate()
        .filter_map(|(i, phone)| {
            let account = registry.account(phone)?;
            let (alt_key, alt) = match addressing {
                Addressing::Lid => ("phone_number", account.jid(Addressing::Pn, 0)),
                Addressing::Pn => ("lid", account.jid(Addressing::Lid, 0)),
            };
            let node = Node::new("participant")
                .jid_attr("jid", account.jid(addressing, 0))
                .jid_attr(alt_key, alt);
            Some(if i == 0 {
                node.attr("type", "superadmin")
            } else {
                node
            })
        })
        .collect();
    let creator = group
        .members
        .first()
        .and_then(|p| registry.account(p))
        .map(|a| a.jid(addressing, 0));
    let mut node = Node::new("group")
        .attr("id", group.id.as_str())
        .attr("subject", group.subject.as_str())
        .attr("s_t", group.created.to_string())
        .attr("creation", group.created.to_string())
        .attr("addressing_mode", addressing.as_str())
        .attr("size", participants.len().to_string());
    if let Some(creator) = creator {
        node = node
            .jid_attr("s_o", creator.clone())
            .jid_attr("creator", creator);
    }
    node.children(participants)
}
