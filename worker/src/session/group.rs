//! Sending to a group (wa-messaging.md §7, §4): the metadata query, and the stanza with our
//! sender key.
//!
//! 1. [`info_query`] asks the group for its members and addressing mode; [`parse_info`] reads
//!    them, with the PN↔LID pairs the answer shows.
//! 2. The device lists of every member come from usync (`send.rs`).
//! 3. [`plan`]: our sender key for the group (a new one when a member left since it was handed
//!    out), and the member devices that do not hold it yet.
//! 4. [`seal`]: the SKDM pairwise to those devices, the text once as an skmsg for everyone.

use ipc_protocol::MessageRecord;
use prost::Message as _;
use rand::rngs::OsRng;
use tracing::{info, warn};

use super::actions::Persist;
use crate::signal::{self, SenderKeyRecord};
use crate::store::groups::{GroupMemory, GroupStore};
use crate::store::signal::{Address, KeyStore};
use crate::wa::binary::jid::{DEFAULT_USER_SERVER, HIDDEN_USER_SERVER};
use crate::wa::binary::{Jid, Node};
use crate::wa::e2e;

/// What the metadata query told.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub(crate) struct GroupInfo {
    /// `lid` or `pn`.
    pub(crate) mode: String,
    /// The members (bare JIDs in the group's namespace).
    pub(crate) members: Vec<Jid>,
    /// PN↔LID pairs (user parts) the participants showed.
    pub(crate) mappings: Vec<(String, String)>,
}

/// `<query request=interactive/>`, the child of `<iq xmlns=w:g2 type=get to=<group>>`.
pub(crate) fn info_query() -> Vec<Node> {
    vec![Node::new("query").attr("request", "interactive")]
}

/// Reads the metadata answer.
pub(crate) fn parse_info(result: &Node) -> Option<GroupInfo> {
    let group = result.child("group")?;
    let mode = group
        .attr_str("addressing_mode")
        .map_or_else(|| "pn".to_owned(), |m| m.into_owned());
    let mut info = GroupInfo {
        mode,
        ..GroupInfo::default()
    };
    for p in group.children_by_tag("participant") {
        let Some(jid) = p.attr_jid("jid") else {
            continue;
        };
        let alternate = p.attr_jid("phone_number").or_else(|| p.attr_jid("lid"));
        if let Some(alt) = alternate {
            match (jid.server.as_str(), alt.server.as_str()) {
                (HIDDEN_USER_SERVER, DEFAULT_USER_SERVER) => {
                    info.mappings.push((alt.user.clone(), jid.user.clone()))
                }
                (DEFAULT_USER_SERVER, HIDDEN_USER_SERVER) => {
                    info.mappings.push((jid.user.clone(), alt.user.clone()))
                }
                _ => {}
            }
        }
        info.members.push(jid.to_non_ad());
    }
    Some(info)
}

/// Step 3's outcome.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Our sender key record for the group (new or stored).
    pub(crate) own: SenderKeyRecord,
    /// Member devices that need our key with this message.
    pub(crate) needs_key: Vec<Jid>,
    /// What to remember once the message is out.
    pub(crate) memory: GroupMemory,
}

/// Step 3.
pub(crate) fn plan(
    keys: &KeyStore,
    groups: &GroupStore,
    group: &Jid,
    own_address: &Address,
    members: &[Jid],
    devices: &[Jid],
) -> Plan {
    let group_id = group.to_string();
    let stored_key = keys
        .sender_key(&group_id, own_address)
        .ok()
        .flatten()
        .and_then(|b| SenderKeyRecord::from_bytes(&b).ok())
        .filter(|r| r.current().is_some());
    let memory = groups.load(&group_id).ok().flatten();
    let members_now: Vec<String> = members.iter().map(ToString::to_string).collect();
    let someone_left = memory
        .as_ref()
        .is_some_and(|m| m.members.iter().any(|old| !members_now.contains(old)));
    let (own, holders) = match (stored_key, memory) {
        (Some(own), Some(memory)) if !someone_left => (own, memory.holders),
        (Some(own), None) => (own, Vec::new()),
        _ => {
            if someone_left {
                info!(group = %group, "a member left; new sender key");
            }
            (SenderKeyRecord::create_own(&mut OsRng), Vec::new())
        }
    };
    let needs_key: Vec<Jid> = devices
        .iter()
        .filter(|d| !holders.contains(&d.to_string()))
        .cloned()
        .collect();
    let mut all_holders = holders;
    all_holders.extend(needs_key.iter().map(ToString::to_string));
    all_holders.retain(|h| devices.iter().any(|d| d.to_string() == *h));
    Plan {
        own,
        needs_key,
        memory: GroupMemory {
            members: members_now,
            holders: all_holders,
        },
    }
}

/// The pairwise payload carrying our sender key: `Message{senderKeyDistributionMessage}`.
pub(crate) fn distribution_payload(group: &Jid, own: &SenderKeyRecord) -> Option<Vec<u8>> {
    let skdm = own.distribution_message().ok()?;
    let message = e2e::Message {
        sender_key_distribution_message: Some(e2e::SenderKeyDistribution {
            group_id: Some(group.to_string()),
            axolotl_sender_key_distribution_message: Some(skdm.as_bytes().to_vec()),
        }),
        ..e2e::Message::default()
    };
    Some(message.encode_to_vec())
}

/// Step 4's group half: the skmsg `<enc>`, and the sender key and memory to persist.
pub(crate) fn seal(
    group: &Jid,
    own_address: &Address,
    mut plan: Plan,
    record: &MessageRecord,
) -> Option<(Node, Vec<Persist>)> {
    let text = record.text.clone().unwrap_or_default();
    let padded = signal::pad(&e2e::Message::from_text(text).encode_to_vec(), &mut OsRng);
    let sealed = match plan.own.encrypt(&padded, &mut OsRng) {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "group encryption failed");
            return None;
        }
    };
    let enc = Node::new("enc")
        .attr("v", "2")
        .attr("type", "skmsg")
        .bytes(sealed.as_bytes().to_vec());
    let persist = vec![
        Persist::SenderKey {
            group: group.to_string(),
            sender: own_address.clone(),
            record: plan.own.to_bytes(),
        },
        Persist::GroupMemory {
            group: group.to_string(),
            memory: std::mem::take(&mut plan.memory),
        },
    ];
    Some((enc, persist))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        s.parse().expect("jid")
    }

    #[test]
    fn reads_members_mode_and_mappings() {
        let answer = Node::new("iq").children(vec![Node::new("group")
            .attr("id", "120363000000000001")
            .attr("addressing_mode", "lid")
            .children(vec![
                Node::new("participant")
                    .jid_attr("jid", jid("100000000000001@lid"))
                    .jid_attr("phone_number", jid("15551234567@s.whatsapp.net")),
                Node::new("participant").jid_attr("jid", jid("100000000000003@lid")),
            ])]);
        let info = parse_info(&answer).expect("info");
        assert_eq!(info.mode, "lid");
        assert_eq!(info.members.len(), 2);
        assert_eq!(
            info.mappings,
            [("15551234567".to_owned(), "100000000000001".to_owned())]
        );
    }

    #[test]
    fn hands_the_key_to_new_devices_and_rotates_when_a_member_leaves() {
        let dir = tempfile::tempdir().expect("dir");
        let keys = KeyStore::new(dir.path());
        let groups = GroupStore::new(dir.path());
        let group = jid("120363000000000001@g.us");
        let me = Address::new("100000000000009_1", 2).expect("addr");
        let members = [jid("1@lid"), jid("2@lid")];
        let devices = [jid("1@lid"), jid("2@lid"), jid("2:3@lid")];
        let first = plan(&keys, &groups, &group, &me, &members, &devices);
        assert_eq!(first.needs_key.len(), 3, "nobody holds a new key");
        let key_id = first.own.current().expect("state").key_id();
        keys.store_sender_key(&group.to_string(), &me, &first.own.to_bytes())
            .expect("store");
        groups
            .save(&group.to_string(), &first.memory)
            .expect("save");

        let more = [jid("1@lid"), jid("2@lid"), jid("2:3@lid"), jid("2:4@lid")];
        let second = plan(&keys, &groups, &group, &me, &members, &more);
        assert_eq!(second.needs_key, [jid("2:4@lid")], "only the new device");
        assert_eq!(second.own.current().expect("state").key_id(), key_id);

        let fewer = [jid("1@lid")];
        let third = plan(&keys, &groups, &group, &me, &fewer, &[jid("1@lid")]);
        assert_ne!(
            third.own.current().expect("state").key_id(),
            key_id,
            "a member left: new key"
        );
        assert_eq!(third.needs_key, [jid("1@lid")]);
    }
}
