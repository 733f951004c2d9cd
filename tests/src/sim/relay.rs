//! Relaying end-to-end encrypted messages and receipts between devices (wa-messaging.md §6.5,
//! §6.8, §6.10–§6.12, §7.2, §8.1). The simulator never decrypts: every `<enc>` travels as the
//! sender wrote it.
//!
//! 1. A 1:1 `<message to=<user> id type><participants><to jid=<device>><enc/></to>…` from a
//!    logged-in device: every `<to jid>` must be in the namespace of `to` (PN or LID) and name a
//!    device of the recipient or of the sender's own account, each once (else ack error 400). Each
//!    device named (a paired companion or the phone, device 0, a Signal peer in `peer`; never the
//!    sending device) gets `<message from=<sender device> id t type [notify]
//!    sender_lid|sender_pn=<sender, other namespace>><enc/>[<device-identity>]</message>`; a copy
//!    for one of the sender's own devices (a DSM) carries `recipient=<to>` instead of the
//!    alternate. Without `<participants>`, the top-level `<enc>` goes to the device `to` names (a
//!    retry resend).
//! 2. A group `<message to=<id>@g.us addressing_mode>` with a top-level `<enc type="skmsg">` and
//!    optional `<participants>` of pairwise SKDM encs: every member's device (phone and paired
//!    companions) but the sending device gets `<message from=<group> participant=<sender device>
//!    addressing_mode participant_pn|participant_lid id t type [notify]>` with its own pairwise
//!    `<enc>` (if any) first, then the skmsg. With a `participant` attribute (a retry resend) only
//!    that device gets the stanza.
//! 3. The sender gets the server ack `<ack class="message" id from=<to> t [phash]/>`, phash (§6.8,
//!    standard base64) over the devices the server would fan out to: the recipients' devices plus
//!    the sender's other devices (phones included). Refusals: 479 malformed stanza, 400 mixed
//!    namespaces or a device listed twice or one of a third account, 404 unknown recipient or
//!    group, 403 sender not a group member.
//! 4. A `<receipt to id [type] [participant] [recipient]>` goes to the original sender's
//!    devices (a `retry` receipt only to the device `to`/`participant` names) as
//!    `<receipt from=<receiving device> id [type] [recipient] t>` (1:1) or `<receipt
//!    from=<group> participant=<receiving device> id [type] t>` (group), children kept; the
//!    receiving device gets `<ack class="receipt" id from=<to> [type] [participant]/>`.
//!
//! Every copy goes through `delivery::deliver`: queued while the device is offline or passive,
//! kept until the device confirms it; a copy for device 0 reaches the sim's phone, which
//! decrypts and answers it (`peer`) once the client's stanza has been relayed.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tracing::debug;
use worker::wa::binary::jid::GROUP_SERVER;
use worker::wa::binary::{Jid, Node};

use super::delivery::deliver;
use super::peer;
use super::registry::{jid_in, Addressing, ConnId, Registry};

/// Why the server refused a `<message>`; the ack's `error`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("the stanza lacks a part it needs")]
    Malformed,
    #[error("the stanza mixes namespaces, repeats a device or names a third account")]
    Addressing,
    #[error("no such recipient or group")]
    UnknownRecipient,
    #[error("the sender is not a member of the group")]
    NotMember,
}

impl Refused {
    /// The ack's `error` code.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Refused::Malformed => "479",
            Refused::Addressing => "400",
            Refused::UnknownRecipient => "404",
            Refused::NotMember => "403",
        }
    }
}

/// The copies to hand out and the phash for the ack.
#[derive(Debug, Default)]
struct Fanout {
    /// (recipient device as a PN JID, stanza).
    copies: Vec<(Jid, Node)>,
    phash: Option<String>,
}

/// Steps 1–3: relays a client `<message>` and answers with the server ack; then the phones
/// handle what reached them (`peer::drain`).
pub(crate) fn on_message(registry: &mut Registry, conn: ConnId, message: &Node, now: u64) -> Node {
    let sender = registry.conn(conn).and_then(|c| c.jid.clone());
    let ack = relay_message(registry, sender, message, now);
    peer::drain(registry, now);
    ack
}

/// Steps 1–3 for a message from the device `sender` (a connection's, or a phone's).
pub(crate) fn relay_message(
    registry: &mut Registry,
    sender: Option<Jid>,
    message: &Node,
    now: u64,
) -> Node {
    let fanout = match (sender, jid_in(message, "to")) {
        (Some(sender), Some(to)) if message.attr_str("id").is_some() => {
            if to.server == GROUP_SERVER {
                group_fanout(registry, &sender, &to, message, now)
            } else if Addressing::of(&to).is_some() {
                direct_fanout(registry, &sender, &to, message, now)
            } else {
                Err(Refused::UnknownRecipient)
            }
        }
        _ => Err(Refused::Malformed),
    };
    let mut ack = Node::new("ack").attr("class", "message").attr(
        "id",
        message.attr_str("id").unwrap_or_default().into_owned(),
    );
    if let Some(to) = message.get_attr("to") {
        ack.set_attr("from".into(), to.clone());
    }
    ack = ack.attr("t", now.to_string());
    match fanout {
        Ok(fanout) => {
            registry.stats.messages_accepted += 1;
            let copies = fanout.copies.len();
            for (device, stanza) in fanout.copies {
                if deliver(registry, &device, stanza) {
                    registry.stats.messages_relayed += 1;
                }
            }
            debug!(copies, "message relayed");
            match fanout.phash {
                Some(phash) => ack.attr("phash", phash),
                None => ack,
            }
        }
        Err(refused) => {
            debug!(error = %refused, "message refused");
            ack.attr("error", refused.code())
        }
    }
}

/// Attributes a relayed `<message>` keeps from the sender's stanza.
const KEPT_MESSAGE_ATTRS: [&str; 3] = ["type", "category", "edit"];

/// The common head of a relayed message: `from`, `id`, `t`, kept attributes, `notify`.
fn relayed_head(message: &Node, from: Jid, push_name: Option<&str>, now: u64) -> Node {
    let mut node = Node::new("message")
        .jid_attr("from", from)
        .attr(
            "id",
            message.attr_str("id").unwrap_or_default().into_owned(),
        )
        .attr("t", now.to_string());
    for key in KEPT_MESSAGE_ATTRS {
        if let Some(value) = message.attr_str(key) {
            node = node.attr(key, value.into_owned());
        }
    }
    if let Some(name) = push_name {
        node = node.attr("notify", name);
    }
    node
}

/// The encs of one copy, plus the sender's `<device-identity>` when one of them is a pkmsg.
fn with_identity(message: &Node, mut encs: Vec<Node>) -> Vec<Node> {
    let pkmsg = encs
        .iter()
        .any(|e| e.attr_str("type").as_deref() == Some("pkmsg"));
    if pkmsg {
        if let Some(identity) = message.child("device-identity") {
            encs.push(identity.clone());
        }
    }
    encs
}

/// Step 1.
fn direct_fanout(
    registry: &Registry,
    sender: &Jid,
    to: &Jid,
    message: &Node,
    now: u64,
) -> Result<Fanout, Refused> {
    let addressing = Addressing::of(to).ok_or(Refused::UnknownRecipient)?;
    let recipient = registry.account_of(to).ok_or(Refused::UnknownRecipient)?;
    let own = registry.account_of(sender).ok_or(Refused::Malformed)?;
    let mut targets: Vec<(Jid, Vec<Node>)> = Vec::new();
    let listed = message.child("participants");
    if let Some(participants) = listed {
        for entry in participants.children_by_tag("to") {
            let jid = jid_in(entry, "jid").ok_or(Refused::Malformed)?;
            let enc = entry.child("enc").ok_or(Refused::Malformed)?;
            if Addressing::of(&jid) != Some(addressing)
                || targets
                    .iter()
                    .any(|(j, _)| j.user == jid.user && j.device == jid.device)
            {
                return Err(Refused::Addressing);
            }
            targets.push((jid, vec![enc.clone()]));
        }
    } else {
        let encs: Vec<Node> = message.children_by_tag("enc").cloned().collect();
        if encs.is_empty() {
            return Err(Refused::Malformed);
        }
        targets.push((to.clone(), encs));
    }
    let mut fanout = Fanout::default();
    for (jid, encs) in targets {
        let account = match registry.phone_of(&jid) {
            Some(phone) if phone == recipient.phone => recipient,
            Some(phone) if phone == own.phone => own,
            _ => return Err(Refused::Addressing),
        };
        let is_sender = account.phone == own.phone && jid.device == sender.device;
        if is_sender || !account.has_signal_device(jid.device) {
            continue;
        }
        let mut stanza = relayed_head(
            message,
            own.jid(addressing, sender.device),
            own.push_name.as_deref(),
            now,
        );
        stanza = if account.phone == own.phone {
            // A retry resend to an own device names the chat in `recipient`.
            let chat = jid_in(message, "recipient").unwrap_or_else(|| to.to_non_ad());
            stanza.jid_attr("recipient", chat.to_non_ad())
        } else {
            let (key, alt) = match addressing {
                Addressing::Pn => ("sender_lid", own.jid(Addressing::Lid, 0)),
                Addressing::Lid => ("sender_pn", own.jid(Addressing::Pn, 0)),
            };
            stanza.jid_attr(key, alt)
        };
        let stanza = stanza.children(with_identity(message, encs));
        fanout
            .copies
            .push((account.jid(Addressing::Pn, jid.device), stanza));
    }
    if listed.is_some() {
        let mut devices: Vec<Jid> = recipient
            .signal_devices()
            .into_iter()
            .map(|d| recipient.jid(addressing, d))
            .collect();
        if recipient.phone != own.phone {
            devices.extend(
                own.signal_devices()
                    .into_iter()
                    .map(|d| own.jid(addressing, d)),
            );
        }
        devices.retain(|d| !(d.user == own.jid(addressing, 0).user && d.device == sender.device));
        fanout.phash = Some(phash(devices));
    }
    Ok(fanout)
}

/// Step 2.
fn group_fanout(
    registry: &Registry,
    sender: &Jid,
    to: &Jid,
    message: &Node,
    now: u64,
) -> Result<Fanout, Refused> {
    let group = registry
        .groups
        .get(&to.user)
        .ok_or(Refused::UnknownRecipient)?;
    if !group.members.contains(&sender.user) {
        return Err(Refused::NotMember);
    }
    let own = registry.account_of(sender).ok_or(Refused::Malformed)?;
    let addressing = group.addressing;
    let shared: Vec<Node> = message.children_by_tag("enc").cloned().collect();
    let mut pairwise: Vec<(String, u16, Node)> = Vec::new();
    if let Some(participants) = message.child("participants") {
        for entry in participants.children_by_tag("to") {
            let jid = jid_in(entry, "jid").ok_or(Refused::Malformed)?;
            let enc = entry.child("enc").ok_or(Refused::Malformed)?;
            if let Some(phone) = registry.phone_of(&jid) {
                pairwise.push((phone.to_owned(), jid.device, enc.clone()));
            }
        }
    }
    if shared.is_empty() && pairwise.is_empty() {
        return Err(Refused::Malformed);
    }
    let only = jid_in(message, "participant")
        .and_then(|p| Some((registry.phone_of(&p)?.to_owned(), p.device)));
    let (participant_alt_key, alt) = match addressing {
        Addressing::Pn => ("participant_lid", own.jid(Addressing::Lid, 0)),
        Addressing::Lid => ("participant_pn", own.jid(Addressing::Pn, 0)),
    };
    let mut fanout = Fanout::default();
    let mut everyone = Vec::new();
    for phone in &group.members {
        let Some(member) = registry.account(phone) else {
            continue;
        };
        for device in member.signal_devices() {
            if member.phone == own.phone && device == sender.device {
                continue;
            }
            everyone.push(member.jid(addressing, device));
            if only
                .as_ref()
                .is_some_and(|(p, d)| *p != member.phone || *d != device)
            {
                continue;
            }
            let mut encs: Vec<Node> = pairwise
                .iter()
                .filter(|(p, d, _)| *p == member.phone && *d == device)
                .map(|(_, _, enc)| enc.clone())
                .collect();
            encs.extend(shared.iter().cloned());
            if encs.is_empty() {
                continue;
            }
            let stanza = relayed_head(
                message,
                Jid::new(group.id.as_str(), GROUP_SERVER),
                own.push_name.as_deref(),
                now,
            )
            .jid_attr("participant", own.jid(addressing, sender.device))
            .attr("addressing_mode", addressing.as_str())
            .jid_attr(participant_alt_key, alt.clone())
            .children(with_identity(message, encs));
            fanout
                .copies
                .push((member.jid(Addressing::Pn, device), stanza));
        }
    }
    fanout.phash = Some(phash(everyone));
    Ok(fanout)
}

/// Step 4: relays a client `<receipt>` and answers with the server's ack; then the phones
/// handle what reached them (`peer::drain`).
pub(crate) fn on_receipt(registry: &mut Registry, conn: ConnId, receipt: &Node, now: u64) -> Node {
    let receiver = registry.conn(conn).and_then(|c| c.jid.clone());
    let ack = relay_receipt(registry, receiver, receipt, now);
    peer::drain(registry, now);
    ack
}

/// Step 4 for a receipt from the device `receiver` (a connection's, or a phone's).
pub(crate) fn relay_receipt(
    registry: &mut Registry,
    receiver: Option<Jid>,
    receipt: &Node,
    now: u64,
) -> Node {
    let mut ack = Node::new("ack").attr("class", "receipt").attr(
        "id",
        receipt.attr_str("id").unwrap_or_default().into_owned(),
    );
    if let Some(to) = receipt.get_attr("to") {
        ack.set_attr("from".into(), to.clone());
    }
    for key in ["type", "participant"] {
        if let Some(value) = receipt.get_attr(key) {
            ack.set_attr(key.into(), value.clone());
        }
    }
    let (Some(receiver), Some(to)) = (receiver, jid_in(receipt, "to")) else {
        return ack;
    };
    let copies = receipt_copies(registry, &receiver, &to, receipt, now);
    for (device, stanza) in copies {
        if deliver(registry, &device, stanza) {
            registry.stats.receipts_relayed += 1;
        }
    }
    ack
}

fn receipt_copies(
    registry: &Registry,
    receiver: &Jid,
    to: &Jid,
    receipt: &Node,
    now: u64,
) -> Vec<(Jid, Node)> {
    let retry = receipt.attr_str("type").as_deref() == Some("retry");
    let Some(own) = registry.account_of(receiver) else {
        return Vec::new();
    };
    // The original sender: `participant` in a group, `to` otherwise.
    let (original, group) = if to.server == GROUP_SERVER {
        match jid_in(receipt, "participant") {
            Some(participant) => (participant, Some(to.clone())),
            None => return Vec::new(),
        }
    } else {
        (to.clone(), None)
    };
    let (Some(target), Some(addressing)) =
        (registry.account_of(&original), Addressing::of(&original))
    else {
        return Vec::new();
    };
    let mut head = Node::new("receipt");
    head = match &group {
        Some(group) => head
            .jid_attr("from", group.clone())
            .jid_attr("participant", own.jid(addressing, receiver.device)),
        None => head.jid_attr("from", own.jid(addressing, receiver.device)),
    };
    head = head.attr(
        "id",
        receipt.attr_str("id").unwrap_or_default().into_owned(),
    );
    for key in ["type", "recipient", "category"] {
        if let Some(value) = receipt.get_attr(key) {
            head.set_attr(key.into(), value.clone());
        }
    }
    head = head.attr("t", now.to_string());
    if !receipt.children_slice().is_empty() {
        head = head.children(receipt.children_slice().to_vec());
    }
    target
        .signal_devices()
        .into_iter()
        .filter(|d| !(target.phone == own.phone && *d == receiver.device))
        .filter(|d| !retry || *d == original.device)
        .map(|d| (target.jid(Addressing::Pn, d), head.clone()))
        .collect()
}

/// phash v2 (wa-messaging.md §6.8): `2:` + standard base64 without padding of the first six
/// bytes of SHA-256 over the sorted `user.0:device@server` forms.
pub(crate) fn phash(devices: impl IntoIterator<Item = Jid>) -> String {
    let mut forms: Vec<String> = devices
        .into_iter()
        .map(|d| format!("{}.{}:{}@{}", d.user, d.agent, d.device, d.server))
        .collect();
    forms.sort();
    let digest = Sha256::digest(forms.concat().as_bytes());
    format!("2:{}", STANDARD_NO_PAD.encode(&digest[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jids(forms: &[&str]) -> Vec<Jid> {
        forms.iter().map(|f| f.parse().expect("jid")).collect()
    }

    #[test]
    fn phash_matches_the_published_vectors() {
        // wa-messaging.md §11.1.3.
        assert_eq!(
            phash(jids(&["5511999999999:3@s.whatsapp.net"])),
            "2:5s+YxCff"
        );
        assert_eq!(phash(jids(&["5511999999999@s.whatsapp.net"])), "2:RJWVxcMQ");
        assert_eq!(
            phash(jids(&[
                "7469250125917:21@s.whatsapp.net",
                "5511988887777:14@s.whatsapp.net"
            ])),
            "2:AAv/hwhn"
        );
        assert_eq!(
            phash(jids(&[
                "100000000000002@lid",
                "100000000000002:5@lid",
                "100000000000001@lid"
            ])),
            "2:U35wze1n"
        );
    }
}
