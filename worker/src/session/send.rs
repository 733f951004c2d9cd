//! Sending what the outbox holds, one message at a time, while online (wa-messaging.md §6).
//!
//! 1. [`pump`]: when nothing is in flight, take the oldest queued message and ask for the device
//!    lists of the recipient and of our own account (usync).
//! 2. [`on_devices`]: every recipient device, and every own device but this one, needs a
//!    session; fetch bundles for those without ([`super::bundles`]), or encrypt at once.
//! 3. [`on_bundles`] / encrypt: build the missing sessions, encrypt the padded message for the
//!    recipient's devices and the `deviceSentMessage` copy for ours, persist every session that
//!    moved, then send one `<message>` with a `<to>` per device (and `<device-identity>` when a
//!    pkmsg is in it).
//! 4. [`on_ack`]: the server's ack makes it `sent` (or `failed` with the server's code); the
//!    next message goes.
//!
//! Wire addressing stays in the chat's namespace (phone numbers unless the chat is a LID);
//! Signal state is keyed by LID whenever the mapping is known. A connection that drops mid-way
//! leaves the message queued; it goes again with the same id after the next login, and the
//! server and the recipients recognise the id.

use std::time::Duration;

use ipc_protocol::{MessageRecord, MessageStatus, UnixMillis};
use prost::Message as _;
use rand::rngs::OsRng;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::actions::{Actions, Persist};
use super::bundles;
use super::decrypt::{signal_jid, Own};
use super::group::{self, GroupInfo};
use super::request::Purpose;
use super::stage::Ctx;
use super::usync::{self, UserDevices};
use crate::signal::{self, PreKeyBundle, SessionRecord};
use crate::store::signal::Address;
use crate::wa::binary::jid::{
    DEFAULT_USER_SERVER, GROUP_SERVER, HIDDEN_USER_SERVER, HOSTED_LID_SERVER, HOSTED_SERVER,
};
use crate::wa::binary::{Jid, Node};
use crate::wa::e2e;

/// How long one message may take from the device query to the server's ack before it is
/// tried again.
pub(crate) const SEND_DEADLINE: Duration = Duration::from_secs(60);
/// How long to wait after a device or bundle query failed.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(30);

/// The message in flight, and what it waits for.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// The queued record.
    pub(crate) record: MessageRecord,
    /// What it waits for.
    pub(crate) step: Step,
    /// When to give up waiting and start over.
    pub(crate) deadline: Instant,
}

/// The step a message in flight waits in.
#[derive(Debug)]
pub(crate) enum Step {
    /// The group's metadata (groups only).
    GroupInfo,
    /// The usync answer; for a group, with what its metadata said.
    Devices(Option<GroupInfo>),
    /// The bundles of the devices without a session.
    Bundles {
        /// Every device to encrypt for, as the wire names them.
        targets: Vec<Jid>,
        /// For a group: the plan for our sender key.
        group: Option<Box<GroupSend>>,
    },
    /// The server's ack of the `<message>`, with the phash of the devices it went to (1:1).
    Ack(Option<String>),
}

/// A group send between its steps.
#[derive(Debug)]
pub(crate) struct GroupSend {
    info: GroupInfo,
    plan: group::Plan,
    own_address: Address,
}

/// Step 1. Called by the session after every decision while something is queued.
pub(crate) fn pump(ctx: &mut Ctx<'_>) -> Actions {
    if !ctx.stage.is_online() || ctx.outbound.is_some() {
        return Actions::none();
    }
    let Some(store) = ctx.messages else {
        return Actions::none();
    };
    let next = match store.outbox() {
        Ok(queued) => queued.into_iter().next(),
        Err(e) => {
            warn!(error = %e, "cannot read the outbox");
            return Actions::none();
        }
    };
    let Some(record) = next else {
        return Actions::none();
    };
    let Some(own) = ctx.creds.and_then(Own::of) else {
        return Actions::none();
    };
    let Ok(chat) = record.chat.parse::<Jid>() else {
        return fail(record, "the recipient is not a JID");
    };
    debug!(id = %record.id, "sending");
    if chat.server == GROUP_SERVER {
        let iq = ctx
            .requests
            .iq_to(Purpose::GroupInfo, chat, "w:g2", "get", group::info_query());
        *ctx.outbound = Some(Outbound {
            record,
            step: Step::GroupInfo,
            deadline: ctx.now + SEND_DEADLINE,
        });
        return Actions::send(iq);
    }
    let own_user = Jid::new(own.pn_user.clone(), DEFAULT_USER_SERVER);
    let users = if chat.server == HIDDEN_USER_SERVER {
        let own_lid = own
            .lid_user
            .clone()
            .map(|l| Jid::new(l, HIDDEN_USER_SERVER))
            .unwrap_or(own_user);
        vec![chat, own_lid]
    } else {
        vec![chat, own_user]
    };
    let out = Outbound {
        record,
        step: Step::Devices(None),
        deadline: ctx.now + SEND_DEADLINE,
    };
    let now = UnixMillis::now().0;
    let cached: Option<Vec<UserDevices>> = users
        .iter()
        .map(|u| {
            let (devices, lid) = ctx.devices.load(u, now).ok().flatten()?;
            Some(UserDevices {
                user: u.to_non_ad(),
                devices,
                lid,
            })
        })
        .collect();
    if let Some(users) = cached {
        debug!(id = %out.record.id, "device lists from the cache");
        return with_devices(ctx, out, users);
    }
    let sid = format!("{}", rand::random::<u64>());
    let iq = ctx.requests.iq(
        Purpose::Devices,
        "usync",
        "get",
        usync::devices_query(&sid, &users),
    );
    *ctx.outbound = Some(out);
    Actions::send(iq)
}

/// Groups, step 1: the metadata; then the device lists of every member.
pub(crate) fn on_group_info(ctx: &mut Ctx<'_>, result: &Node) -> Actions {
    let Some(out) = ctx.outbound.take_if(|o| matches!(o.step, Step::GroupInfo)) else {
        return Actions::none();
    };
    let Some(own) = ctx.creds.and_then(Own::of) else {
        return Actions::none();
    };
    let Some(info) = group::parse_info(result) else {
        return fail(out.record, "the group's metadata could not be read");
    };
    if !info.members.iter().any(|m| own.is_me(m)) {
        return fail(out.record, "this account is not a member of the group");
    }
    let mut actions = Actions::none();
    for (pn, lid) in &info.mappings {
        actions = actions.and_persist(Persist::LidMapping {
            pn: pn.clone(),
            lid: lid.clone(),
        });
    }
    let sid = format!("{}", rand::random::<u64>());
    let iq = ctx.requests.iq(
        Purpose::Devices,
        "usync",
        "get",
        usync::devices_query(&sid, &info.members),
    );
    *ctx.outbound = Some(Outbound {
        step: Step::Devices(Some(info)),
        ..out
    });
    actions.and_send(iq)
}

/// Step 2.
pub(crate) fn on_devices(ctx: &mut Ctx<'_>, result: &Node) -> Actions {
    let Some(mut out) = ctx.outbound.take_if(|o| matches!(o.step, Step::Devices(_))) else {
        return Actions::none();
    };
    if let Step::Devices(Some(info)) = std::mem::replace(&mut out.step, Step::Devices(None)) {
        return on_group_devices(ctx, out, info, result);
    }
    let users = usync::parse_devices(result);
    let mut actions = Actions::none();
    for u in &users {
        actions = actions.and_persist(Persist::DeviceList {
            user: u.user.clone(),
            devices: u.devices.clone(),
            lid: u.lid.clone(),
        });
    }
    actions.merge(with_devices(ctx, out, users))
}

/// Step 2 with the device lists in hand (from usync, or from the cache).
fn with_devices(ctx: &mut Ctx<'_>, out: Outbound, users: Vec<UserDevices>) -> Actions {
    let (Some(creds), Ok(chat)) = (ctx.creds, out.record.chat.parse::<Jid>()) else {
        return Actions::none();
    };
    let Some(own) = Own::of(creds) else {
        return Actions::none();
    };
    let own_device = own.device;
    let mut actions = Actions::none();
    let mut learned = Vec::new();
    for u in &users {
        if let (Some(lid), DEFAULT_USER_SERVER) = (&u.lid, u.user.server.as_str()) {
            learned.push((u.user.user.clone(), lid.user.clone()));
            actions = actions.and_persist(Persist::LidMapping {
                pn: u.user.user.clone(),
                lid: lid.user.clone(),
            });
        }
    }
    let theirs: Vec<Jid> = users
        .iter()
        .filter(|u| u.user == chat.to_non_ad())
        .flat_map(|u| u.devices.iter().cloned())
        .collect();
    if theirs.is_empty() {
        return actions.merge(fail(out.record, "the recipient is not on WhatsApp"));
    }
    let ours: Vec<Jid> = users
        .iter()
        .filter(|u| own.is_me(&u.user))
        .flat_map(|u: &UserDevices| u.devices.iter().cloned())
        .filter(|d| d.device != own_device)
        .collect();
    let targets: Vec<Jid> = theirs.into_iter().chain(ours).collect();
    let missing: Vec<Jid> = targets
        .iter()
        .filter(|d| {
            let addr = Address::from_jid(&signal_jid(ctx.keys, d, &learned));
            !addr.is_some_and(|a| {
                ctx.keys
                    .session(&a)
                    .ok()
                    .flatten()
                    .and_then(|b| SessionRecord::from_bytes(&b).ok())
                    .is_some_and(|r| r.has_current_session())
            })
        })
        .map(|d| signal_jid(ctx.keys, d, &learned))
        .collect();
    if missing.is_empty() {
        return actions.merge(encrypt_and_send(
            ctx,
            out.record,
            &targets,
            &learned,
            Vec::new(),
        ));
    }
    let iq = ctx.requests.iq(
        Purpose::Bundles,
        "encrypt",
        "get",
        bundles::bundles_query(&missing),
    );
    *ctx.outbound = Some(Outbound {
        step: Step::Bundles {
            targets,
            group: None,
        },
        ..out
    });
    actions.and_send(iq)
}

/// Groups, step 2: plan our sender key, fetch bundles for key holders-to-be without a session.
fn on_group_devices(ctx: &mut Ctx<'_>, out: Outbound, info: GroupInfo, result: &Node) -> Actions {
    let (Some(creds), Ok(chat)) = (ctx.creds, out.record.chat.parse::<Jid>()) else {
        return Actions::none();
    };
    let Some(own) = Own::of(creds) else {
        return Actions::none();
    };
    let own_device = own.device;
    let own_jid = match (info.mode.as_str(), own.lid_user.clone()) {
        ("lid", Some(lid)) => Jid::device(lid, HIDDEN_USER_SERVER, own_device),
        _ => Jid::device(own.pn_user.clone(), DEFAULT_USER_SERVER, own_device),
    };
    let Some(own_address) = Address::from_jid(&own_jid) else {
        return fail(out.record, "our own address is not valid");
    };
    let devices: Vec<Jid> = usync::parse_devices(result)
        .into_iter()
        .flat_map(|u| u.devices)
        .filter(|d| {
            *d != own_jid && !matches!(d.server.as_str(), HOSTED_SERVER | HOSTED_LID_SERVER)
        })
        .filter(|d| !(own.is_me(&d.to_non_ad()) && d.device == own_device))
        .collect();
    let plan = group::plan(
        ctx.keys,
        ctx.groups,
        &chat,
        &own_address,
        &info.members,
        &devices,
    );
    let learned = info.mappings.clone();
    let missing: Vec<Jid> = plan
        .needs_key
        .iter()
        .filter(|d| !has_session(ctx, d, &learned))
        .map(|d| signal_jid(ctx.keys, d, &learned))
        .collect();
    let send = Box::new(GroupSend {
        info,
        plan,
        own_address,
    });
    if missing.is_empty() {
        return finish_group(ctx, out.record, send, Vec::new());
    }
    let iq = ctx.requests.iq(
        Purpose::Bundles,
        "encrypt",
        "get",
        bundles::bundles_query(&missing),
    );
    *ctx.outbound = Some(Outbound {
        step: Step::Bundles {
            targets: Vec::new(),
            group: Some(send),
        },
        ..out
    });
    Actions::send(iq)
}

/// Groups, step 3: the SKDM pairwise to the devices that lack our key, the skmsg for all.
fn finish_group(
    ctx: &mut Ctx<'_>,
    record: MessageRecord,
    send: Box<GroupSend>,
    fresh: Vec<(Jid, PreKeyBundle)>,
) -> Actions {
    let Some(creds) = ctx.creds else {
        return Actions::none();
    };
    let Some(own) = Own::of(creds) else {
        return Actions::none();
    };
    let Ok(chat) = record.chat.parse::<Jid>() else {
        return fail(record, "the group is not a JID");
    };
    let GroupSend {
        info,
        mut plan,
        own_address,
    } = *send;
    let Some(payload) = group::distribution_payload(&chat, &plan.own) else {
        return fail(record, "our sender key could not be distributed");
    };
    let mut actions = Actions::none();
    let mut participants = Vec::new();
    let mut any_pkmsg = false;
    let mut unreached = Vec::new();
    let mut distributed = Vec::new();
    for device in &plan.needs_key {
        match seal_for(ctx, &own, device, &info.mappings, &fresh, &payload) {
            Some((to, change, pkmsg)) => {
                any_pkmsg |= pkmsg;
                participants.push(to);
                distributed.push(device.clone());
                actions = actions.and_persist(change);
            }
            None => unreached.push(device.to_string()),
        }
    }
    plan.memory.holders.retain(|h| !unreached.contains(h));
    let Some((skmsg, changes)) = group::seal(&chat, &own_address, plan, &record) else {
        return actions.merge(fail(record, "the group message could not be encrypted"));
    };
    for change in changes {
        actions = actions.and_persist(change);
    }
    let mut children = Vec::new();
    if !participants.is_empty() {
        children.push(Node::new("participants").children(participants));
    }
    if any_pkmsg {
        if let Some(account) = &creds.account {
            children.push(Node::new("device-identity").bytes(account.0.clone()));
        }
    }
    children.push(skmsg);
    let mut stanza = Node::new("message")
        .attr("id", record.id.clone())
        .attr("type", "text")
        .attr("addressing_mode", info.mode.clone())
        .jid_attr("to", chat);
    if !distributed.is_empty() {
        // whatsapp-rust's rule: the phash of the SKDM distribution list, sending device excluded.
        stanza = stanza.attr("phash", crate::wa::phash::participant_hash(&distributed));
    }
    let stanza = stanza.children(children);
    info!(id = %record.id, "group message sent to the server");
    *ctx.outbound = Some(Outbound {
        record,
        step: Step::Ack(None),
        deadline: ctx.now + SEND_DEADLINE,
    });
    actions.and_send(stanza)
}

/// Whether `device` has a session to encrypt with.
fn has_session(ctx: &Ctx<'_>, device: &Jid, learned: &[(String, String)]) -> bool {
    Address::from_jid(&signal_jid(ctx.keys, device, learned)).is_some_and(|a| {
        ctx.keys
            .session(&a)
            .ok()
            .flatten()
            .and_then(|b| SessionRecord::from_bytes(&b).ok())
            .is_some_and(|r| r.has_current_session())
    })
}

/// Encrypts `payload` (unpadded) for `device`: its `<to>`, the session to persist, and whether
/// it is a pkmsg. `None` when the device has no session and no bundle came.
fn seal_for(
    ctx: &Ctx<'_>,
    own: &Own,
    device: &Jid,
    learned: &[(String, String)],
    fresh: &[(Jid, PreKeyBundle)],
    payload: &[u8],
) -> Option<(Node, Persist, bool)> {
    let keyed = signal_jid(ctx.keys, device, learned);
    let addr = Address::from_jid(&keyed)?;
    let bundle = fresh
        .iter()
        .find(|(j, _)| *j == keyed || j == device)
        .map(|(_, b)| b);
    let mut session = match bundle {
        Some(bundle) => {
            let mut s = SessionRecord::new();
            if let Err(e) = s.process_bundle(&own.identity, bundle, &mut OsRng) {
                warn!(device = device.device, error = %e, "bundle refused; device skipped");
                return None;
            }
            s
        }
        None => {
            let s = ctx
                .keys
                .session(&addr)
                .ok()
                .flatten()
                .and_then(|b| SessionRecord::from_bytes(&b).ok())?;
            if !s.has_current_session() {
                debug!(
                    device = device.device,
                    "no session and no bundle; device skipped"
                );
                return None;
            }
            s
        }
    };
    let padded = signal::pad(payload, &mut OsRng);
    let sealed = match session.encrypt(&padded) {
        Ok(c) => c,
        Err(e) => {
            warn!(device = device.device, error = %e, "encryption failed; device skipped");
            return None;
        }
    };
    let to = Node::new("to")
        .jid_attr("jid", device.clone())
        .children(vec![Node::new("enc")
            .attr("v", "2")
            .attr("type", sealed.enc_type())
            .bytes(sealed.as_bytes().to_vec())]);
    let change = Persist::Session {
        address: addr,
        record: session.to_bytes(),
        consumed_prekey: None,
        identity: bundle.map(|b| *b.identity_key.as_bytes()),
    };
    Some((to, change, sealed.enc_type() == "pkmsg"))
}

/// Step 3, after the bundles.
pub(crate) fn on_bundles(ctx: &mut Ctx<'_>, result: &Node) -> Actions {
    let Some(out) = ctx
        .outbound
        .take_if(|o| matches!(o.step, Step::Bundles { .. }))
    else {
        return Actions::none();
    };
    let Step::Bundles { targets, group } = out.step else {
        return Actions::none();
    };
    let fresh = bundles::parse_bundles(result);
    match group {
        Some(send) => finish_group(ctx, out.record, send, fresh),
        None => encrypt_and_send(ctx, out.record, &targets, &[], fresh),
    }
}

/// Step 3: encrypt for every target with a session (old, or built from `fresh` bundles).
fn encrypt_and_send(
    ctx: &mut Ctx<'_>,
    record: MessageRecord,
    targets: &[Jid],
    learned: &[(String, String)],
    fresh: Vec<(Jid, PreKeyBundle)>,
) -> Actions {
    let Some(creds) = ctx.creds else {
        return Actions::none();
    };
    let Some(own) = Own::of(creds) else {
        return Actions::none();
    };
    let text = record.text.clone().unwrap_or_default();
    let message = e2e::Message::from_text(text);
    let for_them = message.encode_to_vec();
    let for_us = e2e::Message::device_sent(record.chat.clone(), message).encode_to_vec();
    let mut actions = Actions::none();
    let mut sent_to = Vec::new();
    let mut participants = Vec::new();
    let mut any_pkmsg = false;
    for device in targets {
        let mine = own.is_me(&device.to_non_ad());
        let payload = if mine { &for_us } else { &for_them };
        if let Some((to, change, pkmsg)) = seal_for(ctx, &own, device, learned, &fresh, payload) {
            any_pkmsg |= pkmsg;
            participants.push(to);
            sent_to.push(device.clone());
            actions = actions.and_persist(change);
        }
    }
    let Ok(chat) = record.chat.parse::<Jid>() else {
        return fail(record, "the recipient is not a JID");
    };
    let theirs = participants.iter().any(|p| {
        p.attr_jid("jid")
            .is_some_and(|j| j.to_non_ad() == chat.to_non_ad())
    });
    if !theirs {
        return actions.merge(fail(record, "no device of the recipient could be reached"));
    }
    let mut children = vec![Node::new("participants").children(participants)];
    if any_pkmsg {
        if let Some(account) = &creds.account {
            children.push(Node::new("device-identity").bytes(account.0.clone()));
        }
    }
    let stanza = Node::new("message")
        .attr("id", record.id.clone())
        .attr("type", "text")
        .jid_attr("to", chat)
        .children(children);
    info!(id = %record.id, "message sent to the server");
    *ctx.outbound = Some(Outbound {
        record,
        step: Step::Ack(Some(crate::wa::phash::participant_hash(&sent_to))),
        deadline: ctx.now + SEND_DEADLINE,
    });
    actions.and_send(stanza)
}

/// Step 4: `<ack class=message id …>` from the server.
pub(crate) fn on_ack(ctx: &mut Ctx<'_>, ack: &Node) -> Actions {
    if ack.attr_str("class").as_deref() != Some("message") {
        return Actions::none();
    }
    let id = ack.attr_str("id").unwrap_or_default();
    let Some(out) = ctx
        .outbound
        .take_if(|o| matches!(o.step, Step::Ack(_)) && o.record.id == id)
    else {
        return Actions::none();
    };
    let mut record = out.record;
    let mut actions = Actions::none();
    if let (Step::Ack(Some(ours)), Some(theirs)) = (&out.step, ack.attr_str("phash")) {
        if *ours != theirs {
            // The server sees other devices than we encrypted for: ask again next time.
            debug!(id = %record.id, "phash differs; device lists dropped");
            if let Ok(chat) = record.chat.parse::<Jid>() {
                actions = actions.and_persist(Persist::ForgetDevices { user: chat });
            }
            if let Some(own) = ctx.creds.and_then(Own::of) {
                actions = actions.and_persist(Persist::ForgetDevices {
                    user: Jid::new(own.pn_user, DEFAULT_USER_SERVER),
                });
            }
        }
    }
    match ack.attr_str("error") {
        Some(code) => {
            warn!(id = %record.id, %code, "the server refused the message");
            record.status = MessageStatus::Failed;
            record.error = Some(format!("server_error_{code}"));
        }
        None => {
            let t = ack
                .attr_str("t")
                .and_then(|t| t.parse::<u64>().ok())
                .map_or_else(UnixMillis::now, |s| UnixMillis(s.saturating_mul(1000)));
            record.status = MessageStatus::Sent;
            record.sent_at = Some(t);
        }
    }
    actions.and_persist(Persist::Message(record))
}

/// An IQ of the message in flight failed: try again in a while.
pub(crate) fn on_iq_error(ctx: &mut Ctx<'_>, iq: &Node) -> Actions {
    if let Some(out) = ctx.outbound.as_mut() {
        warn!(id = %out.record.id, %iq, "a query for the message failed; trying again later");
        out.deadline = ctx.now + RETRY_AFTER_ERROR;
    }
    Actions::none()
}

/// The message in flight took too long: start it over.
pub(crate) fn on_deadline(ctx: &mut Ctx<'_>) -> Actions {
    if let Some(out) = ctx.outbound.take_if(|o| ctx.now >= o.deadline) {
        warn!(id = %out.record.id, "no answer in time; sending again");
    }
    Actions::none()
}

/// Marks `record` failed for good, and moves on.
fn fail(mut record: MessageRecord, why: &str) -> Actions {
    warn!(id = %record.id, why, "message failed");
    record.status = MessageStatus::Failed;
    record.error = Some(why.to_owned());
    Actions::none().and_persist(Persist::Message(record))
}
