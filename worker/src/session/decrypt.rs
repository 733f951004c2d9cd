//! Decrypting one incoming `<message>` (wa-messaging.md §8.1, §8.2, §3.6, §3.8, §4.4).
//!
//! 1. Who: the chat and the sender device from `from`, `participant` and `recipient`; copies
//!    of our own messages are "from me". The alternate JIDs (`sender_lid`, `participant_pn`, …)
//!    teach PN↔LID mappings, which are used at once: Signal state is keyed by the LID when one
//!    is known.
//! 2. Pairwise `<enc>` first (`pkmsg`, `msg`), then `skmsg`. A pkmsg's identity is trusted on
//!    first use and replaced when it changes (the old session is dropped with it). An SKDM in a
//!    pairwise payload feeds the sender key the skmsg then uses.
//! 3. Nothing is written here: every record that changed comes back as a [`Persist`], in
//!    order, for the session to make durable before it confirms the message.

use ipc_protocol::{Direction, MessageRecord, MessageStatus, UnixMillis};
use rand::rngs::OsRng;
use tracing::debug;

use super::actions::Persist;
use crate::signal::{
    self, KeyPair, LocalIdentity, PreKeyLookup, PreKeySignalMessage, PrivateKey, SenderKeyMessage,
    SenderKeyRecord, SessionRecord, SignalError, SignalMessage,
};
use crate::store::creds::{self, Creds};
use crate::store::signal::{Address, KeyStore};
use crate::wa::binary::jid::{DEFAULT_USER_SERVER, GROUP_SERVER, HIDDEN_USER_SERVER};
use crate::wa::binary::{Jid, Node};
use crate::wa::e2e::{self, PayloadKind};

/// Our own identity, as decryption needs it.
#[derive(Debug)]
pub(crate) struct Own {
    /// The Signal identity and registration id.
    pub(crate) identity: LocalIdentity,
    /// Our phone number (PN user part).
    pub(crate) pn_user: String,
    /// Our LID user part, once known.
    pub(crate) lid_user: Option<String>,
    /// This device's number (the same under both names).
    pub(crate) device: u16,
}

impl Own {
    /// From paired creds.
    pub(crate) fn of(creds: &Creds) -> Option<Own> {
        let me = creds.me.as_ref()?;
        let jid: Jid = me.jid.parse().ok()?;
        let lid_user = me
            .lid
            .as_deref()
            .and_then(|l| l.parse::<Jid>().ok())
            .map(|l| l.user);
        Some(Own {
            identity: LocalIdentity {
                key_pair: signal_pair(&creds.identity_key),
                registration_id: creds.registration_id,
            },
            device: jid.device,
            pn_user: jid.user,
            lid_user,
        })
    }

    /// Whether `jid` is one of our own users (under either name).
    pub(crate) fn is_me(&self, jid: &Jid) -> bool {
        match jid.server.as_str() {
            DEFAULT_USER_SERVER => jid.user == self.pn_user,
            HIDDEN_USER_SERVER => self.lid_user.as_deref() == Some(jid.user.as_str()),
            _ => false,
        }
    }
}

/// Who a message is from and where it belongs.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Routing {
    /// The chat: a group, or the other party (bare).
    pub(crate) chat: Jid,
    /// The sending device, as given.
    pub(crate) sender: Jid,
    /// A copy of a message one of our own devices sent.
    pub(crate) from_me: bool,
    /// PN↔LID pairs the stanza taught (PN user, LID user).
    pub(crate) mappings: Vec<(String, String)>,
}

/// Reads step 1 from the stanza's attributes; `None` when they make no sense.
pub(crate) fn routing(own: &Own, node: &Node) -> Option<Routing> {
    let from = node.attr_jid("from")?.clone();
    let group = from.server == GROUP_SERVER || from.server == "broadcast";
    let (chat, sender, alternate_keys) = if group {
        let participant = node.attr_jid("participant")?.clone();
        (
            from.clone(),
            participant,
            ["participant_pn", "participant_lid"],
        )
    } else {
        let chat = match node.attr_jid("recipient") {
            Some(recipient) if own.is_me(&from) => recipient.to_non_ad(),
            _ => from.to_non_ad(),
        };
        (chat, from.clone(), ["sender_pn", "sender_lid"])
    };
    let from_me = own.is_me(&sender);
    let mut mappings = Vec::new();
    for key in alternate_keys {
        if let Some(alt) = node.attr_jid(key) {
            if let Some(pair) = pair_of(&sender, alt) {
                mappings.push(pair);
            }
        }
    }
    for key in [
        "peer_recipient_pn",
        "peer_recipient_lid",
        "recipient_pn",
        "recipient_lid",
    ] {
        if let (Some(alt), Some(recipient)) = (node.attr_jid(key), node.attr_jid("recipient")) {
            if let Some(pair) = pair_of(recipient, alt) {
                mappings.push(pair);
            }
        }
    }
    Some(Routing {
        chat,
        sender,
        from_me,
        mappings,
    })
}

fn pair_of(a: &Jid, b: &Jid) -> Option<(String, String)> {
    match (a.server.as_str(), b.server.as_str()) {
        (DEFAULT_USER_SERVER, HIDDEN_USER_SERVER) => Some((a.user.clone(), b.user.clone())),
        (HIDDEN_USER_SERVER, DEFAULT_USER_SERVER) => Some((b.user.clone(), a.user.clone())),
        _ => None,
    }
}

/// The device JID Signal state is kept under: its LID form when the mapping is known.
pub(crate) fn signal_jid(keys: &KeyStore, device: &Jid, learned: &[(String, String)]) -> Jid {
    if device.server != DEFAULT_USER_SERVER {
        return device.clone();
    }
    let lid = learned
        .iter()
        .find(|(pn, _)| *pn == device.user)
        .map(|(_, lid)| lid.clone())
        .or_else(|| keys.lid_for_pn(&device.user).ok().flatten());
    match lid {
        Some(lid) => Jid::device(lid, HIDDEN_USER_SERVER, device.device),
        None => device.clone(),
    }
}

/// What decrypting a stanza came to.
#[derive(Debug)]
pub(crate) struct Decrypted {
    /// Changed records to make durable, in order.
    pub(crate) persist: Vec<Persist>,
    /// The message to record, when the stanza carried one to show.
    pub(crate) record: Option<MessageRecord>,
    /// Why a pairwise or group `<enc>` failed, if one did.
    pub(crate) failure: Option<SignalError>,
}

/// Steps 2 and 3 for one stanza.
pub(crate) fn decrypt(
    keys: &KeyStore,
    creds: &Creds,
    own: &Own,
    node: &Node,
    routing: &Routing,
) -> Decrypted {
    let mut out = Decrypted {
        persist: routing
            .mappings
            .iter()
            .map(|(pn, lid)| Persist::LidMapping {
                pn: pn.clone(),
                lid: lid.clone(),
            })
            .collect(),
        record: None,
        failure: None,
    };
    let sender_jid = signal_jid(keys, &routing.sender, &routing.mappings);
    let Some(sender) = Address::from_jid(&sender_jid) else {
        out.failure = Some(SignalError::InvalidMessage(
            "the sender is not a user device",
        ));
        return out;
    };
    let encs: Vec<&Node> = node.children_by_tag("enc").collect();
    let pairwise = encs
        .iter()
        .filter(|e| matches!(e.attr_str("type").as_deref(), Some("pkmsg" | "msg")));
    let group = encs
        .iter()
        .filter(|e| e.attr_str("type").as_deref() == Some("skmsg"));
    let mut content: Option<Vec<u8>> = None;
    let mut sender_key: Option<SenderKeyRecord> = None;
    for enc in pairwise {
        match decrypt_pairwise(keys, creds, own, &sender, enc) {
            Ok((plaintext, change)) => {
                out.persist.push(change);
                if let Some(skdm) = sender_key_distribution(&plaintext, routing) {
                    let mut record = match load_sender_key(keys, &routing.chat, &sender) {
                        Ok(r) => r,
                        Err(e) => {
                            out.failure = Some(e);
                            return out;
                        }
                    };
                    record.process_distribution(&skdm);
                    sender_key = Some(record);
                }
                content = Some(plaintext);
            }
            Err(e) => {
                // The skmsg would fail without the SKDM this enc may have carried (§8.2).
                out.failure = Some(e);
                return out;
            }
        }
    }
    for enc in group {
        let result = (|| {
            let message = SenderKeyMessage::parse(enc.content_bytes().unwrap_or_default())?;
            let mut record = match sender_key.take() {
                Some(r) => r,
                None => load_sender_key(keys, &routing.chat, &sender)?,
            };
            let padded = record.decrypt(&message)?;
            let plaintext = signal::unpad(&padded)?.to_vec();
            Ok::<_, SignalError>((plaintext, record))
        })();
        match result {
            Ok((plaintext, record)) => {
                sender_key = Some(record);
                content = Some(plaintext);
            }
            Err(e) => {
                out.failure = Some(e);
                break;
            }
        }
    }
    if let Some(record) = sender_key {
        out.persist.push(Persist::SenderKey {
            group: routing.chat.to_string(),
            sender: sender.clone(),
            record: record.to_bytes(),
        });
    }
    if out.failure.is_some() {
        return out;
    }
    out.record = match content {
        Some(plaintext) => message_record(node, routing, &plaintext),
        // Nothing to decrypt (`<unavailable/>`, or content we have no cipher for): recorded
        // by kind, so nothing disappears silently.
        None if encs.is_empty() || !encs.iter().any(|e| is_known_enc(e)) => {
            let kind = if node.child("unavailable").is_some() {
                "unavailable"
            } else {
                "unsupported"
            };
            record_of(node, routing, kind.to_owned(), None, routing.chat.clone())
        }
        None => None,
    };
    out
}

/// One pkmsg or msg: the unpadded plaintext and the session change to persist.
fn decrypt_pairwise(
    keys: &KeyStore,
    creds: &Creds,
    own: &Own,
    sender: &Address,
    enc: &Node,
) -> Result<(Vec<u8>, Persist), SignalError> {
    let bytes = enc.content_bytes().unwrap_or_default();
    let stored = keys
        .session(sender)
        .map_err(|_| SignalError::InvalidMessage("the stored session is unreadable"))?;
    let mut record = match stored {
        Some(bytes) => SessionRecord::from_bytes(&bytes)?,
        None => SessionRecord::new(),
    };
    if enc.attr_str("type").as_deref() == Some("pkmsg") {
        let message = PreKeySignalMessage::parse(bytes)?;
        let theirs = *message.identity_key().as_bytes();
        let known = keys.identity(sender).ok().flatten();
        let mut identity = None;
        if known != Some(theirs) {
            if known.is_some() {
                debug!(
                    device = sender.device(),
                    "identity changed; starting a new session"
                );
                record = SessionRecord::new();
            }
            identity = Some(theirs);
        }
        let lookup = Lookup { keys, creds };
        let done = record.decrypt_pre_key(&own.identity, &message, &lookup, &mut OsRng)?;
        let plaintext = signal::unpad(&done.plaintext)?.to_vec();
        Ok((
            plaintext,
            Persist::Session {
                address: sender.clone(),
                record: record.to_bytes(),
                consumed_prekey: done.consumed_pre_key_id,
                identity,
            },
        ))
    } else {
        if !record.has_current_session() {
            return Err(SignalError::NoSession);
        }
        let message = SignalMessage::parse(bytes)?;
        let padded = record.decrypt(&message, &mut OsRng)?;
        let plaintext = signal::unpad(&padded)?.to_vec();
        Ok((
            plaintext,
            Persist::Session {
                address: sender.clone(),
                record: record.to_bytes(),
                consumed_prekey: None,
                identity: None,
            },
        ))
    }
}

fn load_sender_key(
    keys: &KeyStore,
    group: &Jid,
    sender: &Address,
) -> Result<SenderKeyRecord, SignalError> {
    match keys.sender_key(&group.to_string(), sender) {
        Ok(Some(bytes)) => SenderKeyRecord::from_bytes(&bytes),
        Ok(None) => Ok(SenderKeyRecord::new()),
        Err(_) => Err(SignalError::InvalidMessage(
            "the stored sender key is unreadable",
        )),
    }
}

/// The SKDM a pairwise payload carries for this group chat, if any.
fn sender_key_distribution(
    plaintext: &[u8],
    routing: &Routing,
) -> Option<signal::SenderKeyDistributionMessage> {
    use prost::Message as _;
    if routing.chat.server != GROUP_SERVER {
        return None;
    }
    let message = e2e::Message::decode(plaintext).ok()?;
    let skdm = message.sender_key_distribution()?;
    let bytes = skdm.axolotl_sender_key_distribution_message.as_deref()?;
    signal::SenderKeyDistributionMessage::parse(bytes).ok()
}

/// The record of a decrypted payload; `None` for one that only carried a sender key.
fn message_record(node: &Node, routing: &Routing, plaintext: &[u8]) -> Option<MessageRecord> {
    let (kind, text, chat) = match e2e::classify(plaintext) {
        Ok(c) => {
            let chat = c
                .device_sent_to
                .as_deref()
                .and_then(|d| d.parse::<Jid>().ok())
                .map_or_else(|| routing.chat.clone(), |j| j.to_non_ad());
            match c.kind {
                PayloadKind::Text(text) => ("text".to_owned(), Some(text), chat),
                PayloadKind::SenderKeyDistributionOnly => return None,
                PayloadKind::Protocol(_) => ("protocol".to_owned(), None, chat),
                PayloadKind::Other(name) => {
                    (name.trim_end_matches("Message").to_owned(), None, chat)
                }
                PayloadKind::Unknown(field) => (format!("unknown_{field}"), None, chat),
                PayloadKind::Empty => ("empty".to_owned(), None, chat),
            }
        }
        Err(_) => ("undecodable".to_owned(), None, routing.chat.clone()),
    };
    record_of(node, routing, kind, text, chat)
}

fn is_known_enc(enc: &Node) -> bool {
    matches!(
        enc.attr_str("type").as_deref(),
        Some("pkmsg" | "msg" | "skmsg")
    )
}

fn record_of(
    node: &Node,
    routing: &Routing,
    kind: String,
    text: Option<String>,
    chat: Jid,
) -> Option<MessageRecord> {
    let t = node
        .attr_str("t")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or_else(UnixMillis::now, |s| UnixMillis(s.saturating_mul(1000)));
    Some(MessageRecord {
        id: node.attr_str("id")?.into_owned(),
        direction: Direction::In,
        chat: chat.to_string(),
        sender: Some(routing.sender.to_non_ad().to_string()),
        push_name: node.attr_str("notify").map(|n| n.into_owned()),
        kind,
        text,
        status: MessageStatus::Received,
        timestamp: t,
        sent_at: None,
        delivered_at: None,
        read_at: None,
        error: None,
        cursor: 0,
    })
}

/// Our prekeys for a pkmsg, read from the store when asked.
struct Lookup<'a> {
    keys: &'a KeyStore,
    creds: &'a Creds,
}

impl PreKeyLookup for Lookup<'_> {
    fn signed_pre_key(&self, id: u32) -> Option<KeyPair> {
        let current = &self.creds.signed_prekey;
        let spk = self.keys.signed_prekey(current, id).ok().flatten()?;
        Some(signal_pair(&spk.key_pair))
    }

    fn pre_key(&self, id: u32) -> Option<KeyPair> {
        let pair = self.keys.prekey(id).ok().flatten()?;
        Some(signal_pair(&pair))
    }
}

/// A stored key pair as the Signal layer takes it.
pub(crate) fn signal_pair(pair: &creds::KeyPair) -> KeyPair {
    KeyPair::from_private(PrivateKey::from_bytes(pair.private.expose().0))
}
