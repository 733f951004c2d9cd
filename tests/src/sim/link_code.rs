//! Pairing with a phone-number code (wa-protocol.md §7): WhatsApp's side and the phone's.
//!
//! 1. The companion sends `<link_code_companion_reg stage="companion_hello">` on its
//!    registration connection: we check the phone number, the 80-byte wrapped ephemeral and
//!    that `companion_server_auth_key_pub` is the connection's Noise key, keep the wrapped key
//!    and answer with a fresh `link_code_pairing_ref` ([`on_iq`]).
//! 2. The user types the code on the phone (`POST /enter-code`, [`enter`] then [`deliver`]):
//!    the phone unwraps the companion's ephemeral with the typed code (a wrong code gives
//!    another key: nothing can tell yet), wraps its own and we relay both, with the phone's
//!    identity key, in a `link_code_companion_reg` notification.
//! 3. `companion_finish`: the phone opens the key bundle with `X25519(its ephemeral, the
//!    companion's)`. It does not open when the codes differed: the entry fails, the companion
//!    stays unpaired and may be given the code again. It opens: the bundle must name the
//!    companion's identity (from its registration payload) and the phone's; the adv secret is
//!    derived as the companion did, and `pair-success` follows exactly as for a QR scan.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};
use worker::wa::binary::{Jid, Node};
use worker::wa::link_code::{self, LinkCodeError};
use worker::wa::xeddsa;

use super::connection::Command;
use super::phone::{self, Offer};
use super::registry::{masked, ConnId, ConnState, Registry};
use super::session::Step;

/// How long a code is good after the hello (whatsapp-rust's assumption).
pub const CODE_LIFETIME: Duration = Duration::from_secs(180);
/// The stanza's and the notification's name.
const REG: &str = "link_code_companion_reg";

/// A companion's hello, kept on its registration.
#[derive(Debug)]
pub(crate) struct CodeRegistration {
    /// Digits of the phone it wants to link to.
    pub(crate) phone: String,
    /// Its ephemeral public key, wrapped under the code (80 bytes).
    wrapped_companion: Vec<u8>,
    /// The ref we gave it.
    reference: Vec<u8>,
    /// When the hello came.
    pub(crate) at: Instant,
    /// The phone's side once a code was typed, until `companion_finish`.
    entered: Option<Entered>,
}

/// What the phone keeps between its notification and `companion_finish`.
#[derive(Debug)]
struct Entered {
    /// The phone's ephemeral private key.
    primary_ephemeral: [u8; 32],
    /// The companion's ephemeral as the phone unwrapped it with the typed code.
    companion_ephemeral: [u8; 32],
    /// The platform `pair-success` names.
    platform: String,
    /// The `/enter-code` call waiting for the outcome.
    waiter: Option<oneshot::Sender<Result<Jid, EnterError>>>,
}

/// Why an entered code did not pair.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum EnterError {
    /// The code is not 8 characters of the alphabet.
    #[error("code must be 8 characters of 123456789ABCDEFGHJKLMNPQRSTVWXYZ (a dash is ignored)")]
    BadCode,
    /// The phone number is not one.
    #[error("phone must be 5 to 19 digits without a leading zero")]
    BadPhone,
    /// No registration connection asked for a code for this phone.
    #[error("no companion is waiting for a code for this phone")]
    NoCompanion,
    /// A code entry is already running for this companion.
    #[error("a code entry for this companion is already in progress")]
    InProgress,
    /// The companion's bundle did not open: the code is not the companion's.
    #[error("wrong code: the companion's key bundle does not decrypt with it")]
    WrongCode,
    /// The bundle opened but names other keys.
    #[error("the companion's key bundle names another {0} identity")]
    BundleMismatch(&'static str),
    /// The companion went away or never answered.
    #[error("the companion did not finish: {0}")]
    NoFinish(&'static str),
}

/// Step 1 and 3: a `link_code_companion_reg` IQ on a registration connection.
pub(crate) fn on_iq(registry: &mut Registry, conn: ConnId, iq: &Node, now: Instant) -> Step {
    let Some(reg) = iq.child(REG) else {
        return Step::default();
    };
    match reg.attr_str("stage").as_deref() {
        Some("companion_hello") => on_hello(registry, conn, iq, reg, now),
        Some("companion_finish") => on_finish(registry, conn, iq, reg, now),
        other => {
            warn!(conn_id = %conn, stage = ?other, "link_code_companion_reg of an unknown stage");
            Step::send(error(iq, "400", "bad-request"))
        }
    }
}

fn bytes<'a>(reg: &'a Node, tag: &str) -> Option<&'a [u8]> {
    reg.child(tag).and_then(Node::content_bytes)
}

/// The user part of a `jid` attribute given as a JID or as text.
fn phone_of(reg: &Node) -> Option<String> {
    let text = reg.attr_str("jid")?;
    let user = text.split('@').next()?.split(':').next()?;
    Some(user.to_owned())
}

fn error(iq: &Node, code: &str, text: &str) -> Node {
    Node::new("iq")
        .jid_attr("from", Jid::server_jid())
        .attr("type", "error")
        .attr("id", iq.attr_str("id").unwrap_or_default().into_owned())
        .children(vec![Node::new("error")
            .attr("code", code)
            .attr("text", text)])
}

fn result(iq: &Node, children: Vec<Node>) -> Node {
    let node = Node::new("iq")
        .jid_attr("from", Jid::server_jid())
        .attr("type", "result")
        .attr("id", iq.attr_str("id").unwrap_or_default().into_owned());
    if children.is_empty() {
        node
    } else {
        node.children(children)
    }
}

/// Step 1.
fn on_hello(registry: &mut Registry, conn: ConnId, iq: &Node, reg: &Node, now: Instant) -> Step {
    let Some(registration) = registry
        .conn_mut(conn)
        .and_then(|c| c.registration.as_mut())
    else {
        return Step::default();
    };
    let phone = phone_of(reg).filter(|p| phone::check_phone(p).is_ok());
    let wrapped = bytes(reg, "link_code_pairing_wrapped_companion_ephemeral_pub")
        .filter(|w| w.len() == link_code::WRAPPED_KEY_LEN);
    let noise = bytes(reg, "companion_server_auth_key_pub");
    let (Some(phone), Some(wrapped)) = (phone, wrapped) else {
        warn!(conn_id = %conn, "malformed companion_hello");
        return Step::send(error(iq, "400", "bad-request"));
    };
    if noise != Some(&registration.noise_public[..]) {
        warn!(conn_id = %conn, "companion_hello names another noise key");
        return Step::send(error(iq, "400", "bad-request"));
    }
    let reference = format!("2@{}", hex::encode(rand::random::<[u8; 16]>())).into_bytes();
    registration.link_code = Some(CodeRegistration {
        phone: phone.clone(),
        wrapped_companion: wrapped.to_vec(),
        reference: reference.clone(),
        at: now,
        entered: None,
    });
    info!(conn_id = %conn, phone = %masked(&phone), "companion_hello: waiting for the code on the phone");
    Step::send(result(
        iq,
        vec![Node::new(REG)
            .attr("stage", "companion_hello")
            .children(vec![Node::new("link_code_pairing_ref").bytes(reference)])],
    ))
}

/// Step 3.
fn on_finish(registry: &mut Registry, conn: ConnId, iq: &Node, reg: &Node, now: Instant) -> Step {
    let Some(entry) = registry.conn_mut(conn) else {
        return Step::default();
    };
    let commands = entry.commands.clone();
    let Some(registration) = entry.registration.as_mut() else {
        return Step::default();
    };
    let Some(code) = registration.link_code.as_mut() else {
        return Step::send(error(iq, "400", "bad-request"));
    };
    let Some(mut entered) = code.entered.take() else {
        warn!(conn_id = %conn, "companion_finish before a code was entered");
        return Step::send(error(iq, "400", "bad-request"));
    };
    let phone = code.phone.clone();
    let reference_ok = bytes(reg, "link_code_pairing_ref") == Some(&code.reference[..]);
    let s_eph = xeddsa::dh(&entered.primary_ephemeral, &entered.companion_ephemeral);
    let keys = registration.keys.clone();
    let noise_public = registration.noise_public;
    let opened = match bytes(reg, "link_code_pairing_wrapped_key_bundle") {
        _ if !reference_ok => Err(EnterError::NoFinish("companion_finish names another ref")),
        Some(wrapped) => link_code::open_bundle(&s_eph, wrapped).map_err(|e| match e {
            LinkCodeError::BundleDecrypt => EnterError::WrongCode,
            _ => EnterError::NoFinish("the key bundle is malformed"),
        }),
        None => Err(EnterError::NoFinish("companion_finish has no key bundle")),
    };
    let Some(account) = registry.account(&phone) else {
        return Step::send(error(iq, "500", "internal-error"));
    };
    let account_private = *account.identity_private();
    let account_public = account.identity_public;
    let verdict = opened.and_then(|bundle| {
        if bundle.companion_identity != keys.identity
            || bytes(reg, "companion_identity_public") != Some(&keys.identity[..])
        {
            Err(EnterError::BundleMismatch("companion"))
        } else if bundle.primary_identity != account_public {
            Err(EnterError::BundleMismatch("phone"))
        } else {
            Ok(bundle)
        }
    });
    let waiter = entered.waiter.take();
    let bundle = match verdict {
        Ok(bundle) => bundle,
        Err(why) => {
            warn!(conn_id = %conn, phone = %masked(&phone), %why, "code entry failed; the companion stays unpaired");
            if let Some(waiter) = waiter {
                let _ = waiter.send(Err(why));
            }
            return Step::send(error(iq, "400", "bad-request"));
        }
    };
    let s_id = xeddsa::dh(&account_private, &bundle.companion_identity);
    let adv_secret = link_code::adv_secret(&s_eph, &s_id, &bundle.r);
    let plan = phone::offer(
        registry,
        Offer {
            conn,
            commands,
            keys,
            noise_public,
            adv_secret,
        },
        &phone,
        &entered.platform,
        now,
        super::registry::unix_now(),
    );
    info!(conn_id = %conn, phone = %masked(&phone), device = plan.jid.device, "code entered on the phone; pair-success sent");
    if let Some(waiter) = waiter {
        let _ = waiter.send(Ok(plan.jid.clone()));
    }
    Step {
        send: vec![result(iq, Vec::new()), plan.pair_success],
        end: None,
    }
}

/// What the phone needs from WhatsApp to take a typed code.
#[derive(Debug)]
pub(crate) struct Entry {
    conn: ConnId,
    commands: mpsc::UnboundedSender<Command>,
    wrapped_companion: Vec<u8>,
    reference: Vec<u8>,
    phone_identity: [u8; 32],
}

impl Entry {
    /// The wrapped ephemeral the phone unwraps with the code.
    pub(crate) fn wrapped_companion(&self) -> &[u8] {
        &self.wrapped_companion
    }
}

/// Step 2, under the lock: the companion waiting for a code for `phone` (the phone's account
/// is made if new).
///
/// # Errors
/// [`EnterError::BadPhone`], [`EnterError::NoCompanion`], [`EnterError::InProgress`].
pub(crate) fn enter(
    registry: &mut Registry,
    phone: &str,
    now: Instant,
    now_unix: u64,
) -> Result<Entry, EnterError> {
    phone::check_phone(phone).map_err(|_| EnterError::BadPhone)?;
    type Found = (
        ConnId,
        Instant,
        mpsc::UnboundedSender<Command>,
        Vec<u8>,
        Vec<u8>,
    );
    let mut found: Option<Found> = None;
    for (id, entry) in registry.conns_mut() {
        let Some(registration) = entry.registration.as_ref() else {
            continue;
        };
        let Some(code) = registration.link_code.as_ref() else {
            continue;
        };
        if code.phone != phone || now >= code.at + CODE_LIFETIME {
            continue;
        }
        if entry.state != ConnState::Pairing || registration.pending.is_some() {
            continue;
        }
        if code.entered.is_some() {
            return Err(EnterError::InProgress);
        }
        // The latest hello wins.
        if found.as_ref().is_none_or(|(_, at, ..)| code.at > *at) {
            found = Some((
                id,
                code.at,
                entry.commands.clone(),
                code.wrapped_companion.clone(),
                code.reference.clone(),
            ));
        }
    }
    let (conn, _, commands, wrapped_companion, reference) = found.ok_or(EnterError::NoCompanion)?;
    let phone_identity = registry.account_or_create(phone, now_unix).identity_public;
    Ok(Entry {
        conn,
        commands,
        wrapped_companion,
        reference,
        phone_identity,
    })
}

/// Step 2, under the lock again after the code's key derivations: records the phone's side and
/// relays the notification. The receiver says how `companion_finish` went.
///
/// # Errors
/// [`EnterError::NoFinish`] when the companion is gone meanwhile.
pub(crate) fn deliver(
    registry: &mut Registry,
    entry: Entry,
    companion_ephemeral: [u8; 32],
    primary_ephemeral: [u8; 32],
    wrapped_primary: [u8; 80],
    platform: &str,
    now_unix: u64,
) -> Result<oneshot::Receiver<Result<Jid, EnterError>>, EnterError> {
    let id = registry.next_id().to_string();
    let code = registry
        .conn_mut(entry.conn)
        .and_then(|c| c.registration.as_mut())
        .and_then(|r| r.link_code.as_mut())
        .filter(|c| c.reference == entry.reference)
        .ok_or(EnterError::NoFinish("its registration connection closed"))?;
    if code.entered.is_some() {
        return Err(EnterError::InProgress);
    }
    let (waiter, outcome) = oneshot::channel();
    code.entered = Some(Entered {
        primary_ephemeral,
        companion_ephemeral,
        platform: platform.to_owned(),
        waiter: Some(waiter),
    });
    let notification = Node::new("notification")
        .jid_attr("from", Jid::server_jid())
        .attr("type", REG)
        .attr("id", id)
        .attr("t", now_unix.to_string())
        .children(vec![Node::new(REG).children(vec![
            Node::new("link_code_pairing_ref").bytes(entry.reference),
            Node::new("primary_identity_pub").bytes(entry.phone_identity.to_vec()),
            Node::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                .bytes(wrapped_primary.to_vec()),
        ])]);
    entry
        .commands
        .send(Command::Send {
            node: notification,
            written: None,
        })
        .map_err(|_| EnterError::NoFinish("its registration connection closed"))?;
    Ok(outcome)
}

/// The code entry ran out of time: the phone forgets it, the companion may be given the code
/// again.
pub(crate) fn abandon(registry: &mut Registry, phone: &str) {
    for (_, entry) in registry.conns_mut() {
        if let Some(code) = entry
            .registration
            .as_mut()
            .and_then(|r| r.link_code.as_mut())
            .filter(|c| c.phone == phone)
        {
            code.entered = None;
        }
    }
}

/// When a registration with a code must end at the latest: the code's lifetime after the hello.
pub(crate) fn deadline(code: &CodeRegistration) -> Instant {
    code.at + CODE_LIFETIME
}
