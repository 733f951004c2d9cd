//! Answering a retry receipt for one of our messages (wa-messaging.md §6.12): encrypt it again
//! for the one device that asked, at most [`MAX_RESEND_COUNT`] times.
//!
//! 1. Find the message in our record (not found: nothing to resend).
//! 2. The session: built fresh from the `<keys>` the receipt carries (from the second attempt
//!    on), else the stored one.
//! 3. The payload: the text, as a `deviceSentMessage` copy when the requester is one of our own
//!    devices, with our sender key added in a group so the device can read what follows.
//! 4. Persist the session, then send `<message to [participant] id type=text><enc count=N>` with
//!    `<device-identity>` when it is a pkmsg.

use ipc_protocol::Direction;
use prost::Message as _;
use rand::rngs::OsRng;
use tracing::{debug, info, warn};

use super::actions::{Actions, Persist};
use super::bundles;
use super::decrypt::{signal_jid, Own};
use super::stage::Ctx;
use crate::signal::{self, SenderKeyRecord, SessionRecord};
use crate::store::signal::Address;
use crate::wa::binary::jid::{DEFAULT_USER_SERVER, GROUP_SERVER, HIDDEN_USER_SERVER};
use crate::wa::binary::{Jid, Node};
use crate::wa::e2e;

/// Retry receipts answered per message and device: counts 1 to 5.
pub(crate) const MAX_RESEND_COUNT: u32 = 5;

/// Steps 1 to 4 for `<receipt type=retry>`; the caller acks the receipt.
pub(crate) fn on_retry(ctx: &mut Ctx<'_>, receipt: &Node) -> Actions {
    let Some(id) = receipt.attr_str("id").map(|i| i.into_owned()) else {
        return Actions::none();
    };
    let count = receipt
        .child("retry")
        .and_then(|r| r.attr_str("count"))
        .and_then(|c| c.parse::<u32>().ok())
        .unwrap_or(1);
    if count > MAX_RESEND_COUNT {
        debug!(%id, count, "retries spent; not resending");
        return Actions::none();
    }
    let (Some(creds), Some(store)) = (ctx.creds, ctx.messages) else {
        return Actions::none();
    };
    let Some(own) = Own::of(creds) else {
        return Actions::none();
    };
    let Ok(Some(record)) = store.get(Direction::Out, &id) else {
        debug!(%id, "retry receipt for a message we do not have");
        return Actions::none();
    };
    let Some(from) = receipt.attr_jid("from").cloned() else {
        return Actions::none();
    };
    let is_group = from.server == GROUP_SERVER;
    let device = match receipt.attr_jid("participant") {
        Some(p) if is_group => p.clone(),
        _ => from.clone(),
    };
    let Some(addr) = Address::from_jid(&signal_jid(ctx.keys, &device, &[])) else {
        return Actions::none();
    };
    let fresh = bundles::bundle(receipt);
    let mut session = match &fresh {
        Some(bundle) => {
            let mut s = SessionRecord::new();
            if let Err(e) = s.process_bundle(&own.identity, bundle, &mut OsRng) {
                warn!(%id, error = %e, "keys in the retry receipt refused");
                return Actions::none();
            }
            s
        }
        None => match ctx
            .keys
            .session(&addr)
            .ok()
            .flatten()
            .and_then(|b| SessionRecord::from_bytes(&b).ok())
        {
            Some(s) if s.has_current_session() => s,
            _ => {
                debug!(%id, "no session and no keys to resend with");
                return Actions::none();
            }
        },
    };
    let text = record.text.clone().unwrap_or_default();
    let mut message = e2e::Message::from_text(text);
    if is_group {
        if let Some(skdm) = own_distribution(ctx, &own, &from) {
            message.sender_key_distribution_message = Some(skdm);
        }
    } else if own.is_me(&device.to_non_ad()) {
        message = e2e::Message::device_sent(record.chat.clone(), message);
    }
    let padded = signal::pad(&message.encode_to_vec(), &mut OsRng);
    let sealed = match session.encrypt(&padded) {
        Ok(s) => s,
        Err(e) => {
            warn!(%id, error = %e, "cannot encrypt the resend");
            return Actions::none();
        }
    };
    let mut stanza = Node::new("message")
        .attr("id", id.clone())
        .attr("type", "text")
        .jid_attr("to", from);
    if is_group {
        stanza = stanza.jid_attr("participant", device.clone());
    } else {
        stanza = stanza.attr("device_fanout", "false");
    }
    let mut children = vec![Node::new("enc")
        .attr("v", "2")
        .attr("type", sealed.enc_type())
        .attr("count", count.to_string())
        .bytes(sealed.as_bytes().to_vec())];
    if sealed.enc_type() == "pkmsg" {
        if let Some(account) = &creds.account {
            children.push(Node::new("device-identity").bytes(account.0.clone()));
        }
    }
    info!(%id, count, device = device.device, "resending after a retry receipt");
    Actions::send(stanza.children(children))
        .and_persist(Persist::ForgetDevices {
            user: device.to_non_ad(),
        })
        .and_persist(Persist::Session {
            address: addr,
            record: session.to_bytes(),
            consumed_prekey: None,
            identity: fresh.map(|b| *b.identity_key.as_bytes()),
        })
}

/// Our sender key for `group` as an SKDM payload field, under our LID or our PN address.
fn own_distribution(ctx: &Ctx<'_>, own: &Own, group: &Jid) -> Option<e2e::SenderKeyDistribution> {
    let device = own.device;
    let mut candidates = Vec::new();
    if let Some(lid) = &own.lid_user {
        candidates.push(Jid::device(lid.clone(), HIDDEN_USER_SERVER, device));
    }
    candidates.push(Jid::device(
        own.pn_user.clone(),
        DEFAULT_USER_SERVER,
        device,
    ));
    let record = candidates.iter().find_map(|j| {
        let addr = Address::from_jid(j)?;
        let bytes = ctx.keys.sender_key(&group.to_string(), &addr).ok()??;
        SenderKeyRecord::from_bytes(&bytes).ok()
    })?;
    let skdm = record.distribution_message().ok()?;
    Some(e2e::SenderKeyDistribution {
        group_id: Some(group.to_string()),
        axolotl_sender_key_distribution_message: Some(skdm.as_bytes().to_vec()),
    })
}
