//! Every account's phone (device 0) as a real Signal peer, using the worker's Signal layer
//! (wa-messaging.md §3–§5, §6.5, §6.11, §7.2, §8).
//!
//! ```text
//!  keys      identity = the account key (ADV), signed prekey 1, PREKEY_STOCK one-time
//!            prekeys; `directory` lists device 0 and hands out its bundles
//!  send      POST /send → send_text: usync view from the registry, bundles fetched
//!            internally (one-time prekeys consumed like a real fetch), pkmsg then msg,
//!            a DSM for the account's companions, or the phone's own sender key for a
//!            group (SKDM pairwise to devices that lack it, then skmsg); relayed through
//!            relay::relay_message like a client's stanza
//!  receive   delivery::deliver queues what reaches a device 0; drain decrypts it (pkmsg,
//!            msg, skmsg, DSMs of the account's companions), records it in the inbox and
//!            answers a delivery receipt, or a retry receipt (§8.6) when it cannot
//!  retries   a retry receipt for one of the phone's own sends re-encrypts it for the
//!            requesting device (new session from the receipt's <keys>), at most MAX_RETRIES
//! ```
//!
//! Sessions are keyed by the peer's LID user and device whatever namespace a stanza used, so
//! PN and LID stanzas of one device share one session, as §1.3 asks of a real client. Nothing
//! is persisted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use prost::Message as _;
use serde::Serialize;
use tracing::{debug, warn};
use worker::signal::{
    pad, unpad, KeyPair, LocalIdentity, PreKeyBundle, PreKeyLookup, PreKeySignalMessage,
    PrivateKey, PublicKey, SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord,
    SessionRecord, SignalError, SignalMessage,
};
use worker::wa::binary::jid::GROUP_SERVER;
use worker::wa::binary::{Jid, Node};
use worker::wa::e2e::{Message, SenderKeyDistribution};
use worker::wa::message_id;

use super::directory::{self, Bundle};
use super::registry::{jid_in, Addressing, Registry};
use super::relay;

/// One-time prekeys each phone starts with.
pub(crate) const PREKEY_STOCK: u32 = 100;
/// The signed prekey's id.
const SIGNED_PRE_KEY_ID: u32 = 1;
/// Retry receipts the phone sends per message, and resends it makes per message and device.
pub(crate) const MAX_RETRIES: u32 = 5;
/// Entries kept per inbox (oldest dropped).
const MAX_INBOX: usize = 1000;
/// Own sends remembered for retries.
const MAX_SENT: usize = 500;
/// Queued stanzas handled per drain, so a loop between phones cannot spin forever.
const MAX_DRAIN: usize = 10_000;

/// One row of `GET /inbox`.
#[derive(Clone, Debug, Serialize)]
pub struct InboxEntry {
    /// The message id.
    pub id: String,
    /// The sending device as the stanza named it.
    pub from: String,
    /// The chat: the group, the sender, or (a DSM) the chat the own companion wrote to.
    pub chat: String,
    /// The text, for `text` and `dsm`.
    pub text: Option<String>,
    /// `text`, `dsm` (an own companion's message to `chat`), `other` or `undecryptable`.
    pub kind: &'static str,
    /// Why it could not be decrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The stanza's `t`.
    pub t: u64,
}

/// A receipt the phone got for one of its own sends.
#[derive(Clone, Debug, Serialize)]
pub struct ReceiptEntry {
    /// The message id.
    pub id: String,
    /// The device that sent the receipt (`participant` in a group).
    pub from: String,
    /// `delivered`, `read`, `retry`, … (`delivered` when the receipt had no type).
    pub r#type: String,
}

/// What the phone sent, kept for retry receipts.
#[derive(Clone, Debug)]
struct Sent {
    /// The chat (bare user or group JID).
    chat: Jid,
    /// The encoded `waE2E.Message`.
    message: Vec<u8>,
    /// Resends per requesting device.
    resends: HashMap<String, u32>,
}

/// Device 0 of one account.
pub(crate) struct PhonePeer {
    identity: LocalIdentity,
    signed: KeyPair,
    signed_signature: [u8; 64],
    /// Private halves of every unused one-time prekey.
    prekeys: BTreeMap<u32, KeyPair>,
    /// Ids the server may still hand out.
    published: BTreeSet<u32>,
    next_prekey: u32,
    /// `lid.device` → session.
    sessions: HashMap<String, SessionRecord>,
    /// `group::lid.device` → the sender's sender key.
    sender_keys: HashMap<String, SenderKeyRecord>,
    /// group → the phone's own sender key.
    own_sender_keys: HashMap<String, SenderKeyRecord>,
    /// (group, `lid.device`) that got the phone's own SKDM.
    distributed: HashSet<(String, String)>,
    sent: HashMap<String, Sent>,
    sent_order: VecDeque<String>,
    /// Retry receipts sent per message id.
    retries_sent: HashMap<String, u32>,
    inbox: VecDeque<InboxEntry>,
    receipts: VecDeque<ReceiptEntry>,
}

impl fmt::Debug for PhonePeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhonePeer")
            .field("prekeys", &self.prekeys.len())
            .field("sessions", &self.sessions.len())
            .field("inbox", &self.inbox.len())
            .finish_non_exhaustive()
    }
}

struct Lookup<'a>(&'a PhonePeer);

impl PreKeyLookup for Lookup<'_> {
    fn signed_pre_key(&self, id: u32) -> Option<KeyPair> {
        (id == SIGNED_PRE_KEY_ID).then(|| self.0.signed.clone())
    }

    fn pre_key(&self, id: u32) -> Option<KeyPair> {
        self.0.prekeys.get(&id).cloned()
    }
}

impl PhonePeer {
    /// A phone whose identity is the account key `identity_private`.
    pub(crate) fn new(identity_private: &[u8; 32]) -> Self {
        let mut rng = rand::thread_rng();
        let key_pair = KeyPair::from_private(PrivateKey::from_bytes(*identity_private));
        let signed = KeyPair::generate(&mut rng);
        let signed_signature = key_pair.private.sign(&signed.public.serialize(), &mut rng);
        let mut peer = Self {
            identity: LocalIdentity {
                key_pair,
                registration_id: rand::random::<u32>() % 16_380 + 1,
            },
            signed,
            signed_signature,
            prekeys: BTreeMap::new(),
            published: BTreeSet::new(),
            next_prekey: 1,
            sessions: HashMap::new(),
            sender_keys: HashMap::new(),
            own_sender_keys: HashMap::new(),
            distributed: HashSet::new(),
            sent: HashMap::new(),
            sent_order: VecDeque::new(),
            retries_sent: HashMap::new(),
            inbox: VecDeque::new(),
            receipts: VecDeque::new(),
        };
        for _ in 0..PREKEY_STOCK {
            let id = peer.fresh_prekey();
            peer.published.insert(id);
        }
        peer
    }

    fn fresh_prekey(&mut self) -> u32 {
        let id = self.next_prekey;
        self.next_prekey = (self.next_prekey + 1) % 0x00FF_FFFF;
        self.prekeys
            .insert(id, KeyPair::generate(&mut rand::thread_rng()));
        id
    }

    /// The bundle a fetch hands out, consuming the lowest published one-time prekey.
    pub(crate) fn take_bundle(&mut self) -> Bundle {
        let prekey = self
            .published
            .pop_first()
            .and_then(|id| self.prekeys.get(&id).map(|k| (id, *k.public.as_bytes())));
        Bundle {
            registration_id: self.identity.registration_id.to_be_bytes(),
            identity: *self.identity.key_pair.public.as_bytes(),
            skey_id: skey_id_bytes(SIGNED_PRE_KEY_ID),
            skey_value: *self.signed.public.as_bytes(),
            skey_signature: self.signed_signature,
            prekey,
        }
    }

    /// What the phone decrypted, oldest first.
    pub(crate) fn inbox(&self) -> Vec<InboxEntry> {
        self.inbox.iter().cloned().collect()
    }

    /// Receipts for the phone's own sends, oldest first.
    pub(crate) fn receipts(&self) -> Vec<ReceiptEntry> {
        self.receipts.iter().cloned().collect()
    }

    fn record(&mut self, entry: InboxEntry) {
        if self.inbox.len() >= MAX_INBOX {
            self.inbox.pop_front();
        }
        self.inbox.push_back(entry);
    }

    fn remember(&mut self, id: &str, chat: Jid, message: Vec<u8>) {
        if self.sent_order.len() >= MAX_SENT {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
        self.sent_order.push_back(id.to_owned());
        self.sent.insert(
            id.to_owned(),
            Sent {
                chat,
                message,
                resends: HashMap::new(),
            },
        );
    }
}

fn skey_id_bytes(id: u32) -> [u8; 3] {
    let b = id.to_be_bytes();
    [b[1], b[2], b[3]]
}

fn to_signal(bundle: &Bundle) -> Result<PreKeyBundle, String> {
    let key = |b: &[u8; 32]| -> Result<PublicKey, String> { Ok(PublicKey::from_bytes(*b)) };
    Ok(PreKeyBundle {
        registration_id: u32::from_be_bytes(bundle.registration_id),
        identity_key: key(&bundle.identity)?,
        signed_pre_key_id: u32::from_be_bytes([
            0,
            bundle.skey_id[0],
            bundle.skey_id[1],
            bundle.skey_id[2],
        ]),
        signed_pre_key: key(&bundle.skey_value)?,
        signed_pre_key_signature: bundle.skey_signature,
        pre_key: match &bundle.prekey {
            Some((id, value)) => Some((*id, key(value)?)),
            None => None,
        },
    })
}

/// Why `POST /send` was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub(crate) enum SendRefused {
    #[error("no such recipient or group")]
    UnknownRecipient,
    #[error("the sender is not a member of the group")]
    NotMember,
    #[error("a phone cannot send to its own account")]
    ToSelf,
    #[error("the server refused the message: {0}")]
    Refused(String),
}

/// The session key of a device: its account's LID user and device.
fn address(registry: &Registry, device: &Jid) -> Option<String> {
    let account = registry.account_of(device)?;
    Some(format!("{}.{}", account.lid, device.device))
}

fn enc(kind: &str, bytes: Vec<u8>) -> Node {
    Node::new("enc")
        .attr("v", "2")
        .attr("type", kind)
        .bytes(bytes)
}

/// Encrypts `payload` (unpadded) pairwise for `device`, building a session from a fetched
/// bundle when there is none.
fn encrypt_for(
    registry: &mut Registry,
    peer: &mut PhonePeer,
    device: &Jid,
    payload: &[u8],
) -> Result<Node, String> {
    let key = address(registry, device).ok_or("unknown device")?;
    let mut rng = rand::thread_rng();
    if !peer
        .sessions
        .get(&key)
        .is_some_and(SessionRecord::has_current_session)
    {
        let bundle = directory::take_bundle(registry, device).ok_or("no prekey bundle")?;
        let mut record = peer.sessions.remove(&key).unwrap_or_default();
        let built = record.process_bundle(&peer.identity, &to_signal(&bundle)?, &mut rng);
        peer.sessions.insert(key.clone(), record);
        built.map_err(|e| e.to_string())?;
    }
    let record = peer.sessions.get_mut(&key).ok_or("no session")?;
    let message = record
        .encrypt(&pad(payload, &mut rng))
        .map_err(|e| e.to_string())?;
    Ok(enc(message.enc_type(), message.as_bytes().to_vec()))
}

/// `POST /send`: the phone of `from` (an account, or a new contact) sends `text` to `to` (a
/// user, in that user's namespace, or a group). Returns the message id.
pub(crate) fn send_text(
    registry: &mut Registry,
    from: &str,
    to: &Jid,
    text: &str,
    now: u64,
) -> Result<String, SendRefused> {
    registry.account_or_create(from, now);
    let Some(mut peer) = registry.take_peer(from) else {
        return Err(SendRefused::UnknownRecipient);
    };
    let id = message_id::random_id();
    let message = Message::from_text(text).encode_to_vec();
    let built = if to.server == GROUP_SERVER {
        group_stanza(registry, &mut peer, from, to, &id, &message, None)
    } else {
        direct_stanza(registry, &mut peer, from, to, &id, &message)
    };
    let stanza = match built {
        Ok(stanza) => stanza,
        Err(e) => {
            registry.put_peer(from, peer);
            return Err(e);
        }
    };
    peer.remember(&id, to.to_non_ad(), message);
    registry.put_peer(from, peer);
    // A group names its sender by phone number, as a connection's JID does.
    let sender = registry
        .account(from)
        .map(|a| a.jid(Addressing::of(to).unwrap_or(Addressing::Pn), 0));
    let ack = relay::relay_message(registry, sender, &stanza, now);
    drain(registry, now);
    match ack.attr_str("error") {
        Some(code) => Err(SendRefused::Refused(code.into_owned())),
        None => Ok(id),
    }
}

/// The 1:1 stanza: the recipient's devices get the message, the sender's companions a DSM.
fn direct_stanza(
    registry: &mut Registry,
    peer: &mut PhonePeer,
    from: &str,
    to: &Jid,
    id: &str,
    message: &[u8],
) -> Result<Node, SendRefused> {
    let addressing = Addressing::of(to).ok_or(SendRefused::UnknownRecipient)?;
    let recipient = registry
        .account_of(to)
        .ok_or(SendRefused::UnknownRecipient)?;
    if recipient.phone == from {
        return Err(SendRefused::ToSelf);
    }
    let mut targets: Vec<(Jid, bool)> = recipient
        .signal_devices()
        .into_iter()
        .map(|d| (recipient.jid(addressing, d), false))
        .collect();
    if let Some(own) = registry.account(from) {
        targets.extend(own.companions().map(|d| (own.jid(addressing, d.id), true)));
    }
    let dsm = Message::device_sent(
        to.to_non_ad().to_string(),
        Message::decode(message).unwrap_or_default(),
    )
    .encode_to_vec();
    let mut participants = Vec::new();
    for (device, own) in targets {
        let payload = if own { &dsm } else { message };
        match encrypt_for(registry, peer, &device, payload) {
            Ok(enc) => {
                participants.push(Node::new("to").jid_attr("jid", device).children(vec![enc]))
            }
            Err(e) => warn!(device = device.device, error = %e, "phone skips a device"),
        }
    }
    Ok(Node::new("message")
        .attr("id", id)
        .jid_attr("to", to.to_non_ad())
        .attr("type", "text")
        .children(vec![Node::new("participants").children(participants)]))
}

/// The group stanza (§7.2): SKDM pairwise to devices that lack the phone's sender key, then the
/// skmsg. With `only`, a retry resend to that device alone (SKDM always included).
fn group_stanza(
    registry: &mut Registry,
    peer: &mut PhonePeer,
    from: &str,
    to: &Jid,
    id: &str,
    message: &[u8],
    only: Option<(&Jid, u32)>,
) -> Result<Node, SendRefused> {
    let group = registry
        .groups
        .get(&to.user)
        .cloned()
        .ok_or(SendRefused::UnknownRecipient)?;
    if !group.members.iter().any(|m| m == from) {
        return Err(SendRefused::NotMember);
    }
    let group_jid = Jid::new(group.id.as_str(), GROUP_SERVER).to_string();
    let mut rng = rand::thread_rng();
    let own_key = peer
        .own_sender_keys
        .entry(group_jid.clone())
        .or_insert_with(|| SenderKeyRecord::create_own(&mut rng));
    let skdm = own_key
        .distribution_message()
        .map_err(|e| SendRefused::Refused(e.to_string()))?;
    let skmsg = own_key
        .encrypt(&pad(message, &mut rng), &mut rng)
        .map_err(|e| SendRefused::Refused(e.to_string()))?;
    let skdm_payload = Message {
        sender_key_distribution_message: Some(SenderKeyDistribution {
            group_id: Some(group_jid.clone()),
            axolotl_sender_key_distribution_message: Some(skdm.as_bytes().to_vec()),
        }),
        ..Message::default()
    }
    .encode_to_vec();
    let mut devices = Vec::new();
    match only {
        Some((device, _)) => devices.push(device.clone()),
        None => {
            for phone in &group.members {
                let Some(member) = registry.account(phone) else {
                    continue;
                };
                for device in member.signal_devices() {
                    if !(member.phone == from && device == 0) {
                        devices.push(member.jid(group.addressing, device));
                    }
                }
            }
        }
    }
    let mut participants = Vec::new();
    for device in devices {
        let Some(key) = address(registry, &device) else {
            continue;
        };
        let pair = (group_jid.clone(), key);
        if only.is_none() && peer.distributed.contains(&pair) {
            continue;
        }
        match encrypt_for(registry, peer, &device, &skdm_payload) {
            Ok(mut enc) => {
                if let Some((_, count)) = only {
                    enc = enc.attr("count", count.to_string());
                }
                peer.distributed.insert(pair);
                participants.push(Node::new("to").jid_attr("jid", device).children(vec![enc]));
            }
            Err(e) => warn!(device = device.device, error = %e, "phone skips a device"),
        }
    }
    let mut stanza = Node::new("message")
        .attr("id", id)
        .jid_attr("to", to.to_non_ad())
        .attr("type", "text")
        .attr("addressing_mode", group.addressing.as_str());
    if let Some((device, _)) = only {
        stanza = stanza.jid_attr("participant", device.clone());
    }
    let mut children = Vec::new();
    if !participants.is_empty() {
        children.push(Node::new("participants").children(participants));
    }
    children.push(enc("skmsg", skmsg.as_bytes().to_vec()));
    Ok(stanza.children(children))
}

/// Handles everything relayed to a device 0 until the queue is empty.
pub(crate) fn drain(registry: &mut Registry, now: u64) {
    for _ in 0..MAX_DRAIN {
        let Some((phone, stanza)) = registry.phone_queue.pop_front() else {
            return;
        };
        match stanza.tag.as_str() {
            "message" => on_message(registry, &phone, &stanza, now),
            "receipt" => on_receipt(registry, &phone, &stanza, now),
            _ => {}
        }
    }
    warn!(
        left = registry.phone_queue.len(),
        "phone queue drain stopped at its bound"
    );
    registry.phone_queue.clear();
}

/// What one `<message>` held, after decryption.
#[derive(Debug, Default)]
struct Opened {
    content: Option<Message>,
    error: Option<(String, u8)>,
}

fn decrypt_pairwise(
    registry: &Registry,
    peer: &mut PhonePeer,
    sender: &Jid,
    enc: &Node,
) -> Result<Vec<u8>, SignalError> {
    let key = address(registry, sender).ok_or(SignalError::NoSession)?;
    let bytes = enc.content_bytes().unwrap_or_default();
    let mut rng = rand::thread_rng();
    let mut record = peer.sessions.get(&key).cloned().unwrap_or_default();
    let padded = if enc.attr_str("type").as_deref() == Some("pkmsg") {
        let message = PreKeySignalMessage::parse(bytes)?;
        let done = record.decrypt_pre_key(&peer.identity, &message, &Lookup(peer), &mut rng)?;
        if let Some(id) = done.consumed_pre_key_id {
            peer.prekeys.remove(&id);
            peer.published.remove(&id);
        }
        done.plaintext
    } else {
        let message = SignalMessage::parse(bytes)?;
        record.decrypt(&message, &mut rng)?
    };
    peer.sessions.insert(key, record);
    Ok(unpad(&padded)?.to_vec())
}

/// A `<message>` relayed to the phone of `phone`.
fn on_message(registry: &mut Registry, phone: &str, stanza: &Node, now: u64) {
    let (Some(from), Some(id)) = (jid_in(stanza, "from"), stanza.attr_str("id")) else {
        return;
    };
    let id = id.into_owned();
    let group = from.server == GROUP_SERVER;
    let sender = if group {
        match jid_in(stanza, "participant") {
            Some(p) => p,
            None => return,
        }
    } else {
        from.clone()
    };
    let Some(sender_key) = address(registry, &sender) else {
        return;
    };
    let own = registry.phone_of(&sender) == Some(phone);
    let Some(mut peer) = registry.take_peer(phone) else {
        return;
    };
    let mut opened = Opened::default();
    let mut duplicate = false;
    for enc in stanza.children_by_tag("enc") {
        let kind = enc.attr_str("type").unwrap_or_default().into_owned();
        let payload = match kind.as_str() {
            "pkmsg" | "msg" => decrypt_pairwise(registry, &mut peer, &sender, enc),
            "skmsg" if opened.error.is_none() && group => {
                let name = format!("{}::{sender_key}", from.to_non_ad());
                decrypt_group(&mut peer, &name, enc)
            }
            _ => continue,
        };
        match payload {
            Ok(bytes) => match Message::decode(bytes.as_slice()) {
                Ok(message) => {
                    if let (true, Some(skdm)) = (group, message.sender_key_distribution()) {
                        process_skdm(&mut peer, &from, &sender_key, skdm);
                    }
                    let keep = message.conversation.is_some()
                        || message.extended_text_message.is_some()
                        || message.device_sent_message.is_some()
                        || opened.content.is_none() && !is_skdm_only(&message);
                    if keep {
                        opened.content = Some(message);
                    }
                }
                Err(e) => opened.error = Some((format!("bad payload: {e}"), 4)),
            },
            Err(e) if e.is_duplicate() => duplicate = true,
            Err(e) => {
                opened.error = Some((e.to_string(), e.retry_reason()));
            }
        }
    }
    let t = stanza
        .attr_str("t")
        .and_then(|t| t.parse().ok())
        .unwrap_or(now);
    let chat = if group || !own {
        from.to_non_ad()
    } else {
        jid_in(stanza, "recipient").map_or_else(|| from.to_non_ad(), |r| r.to_non_ad())
    };
    let mut receipt = Node::new("receipt")
        .jid_attr("to", from.clone())
        .attr("id", id.clone());
    if group {
        receipt = receipt.jid_attr("participant", sender.clone());
    }
    if let Some((error, reason)) = opened.error {
        debug!(error = %error, "phone could not decrypt");
        peer.record(InboxEntry {
            id: id.clone(),
            from: sender.to_string(),
            chat: chat.to_string(),
            text: None,
            kind: "undecryptable",
            error: Some(error),
            t,
        });
        let count = peer.retries_sent.entry(id.clone()).or_insert(0);
        *count += 1;
        let count = *count;
        if count > MAX_RETRIES {
            registry.put_peer(phone, peer);
            return;
        }
        if own && !group {
            receipt = receipt.jid_attr("recipient", chat.clone());
        }
        receipt = receipt
            .attr("type", "retry")
            .children(retry_children(&mut peer, &id, t, count, reason));
    } else {
        if let Some(message) = opened.content.filter(|_| !duplicate) {
            let (entry_chat, text, kind) = match message.device_sent_message.as_deref() {
                Some(dsm) => (
                    dsm.destination_jid.clone().unwrap_or(chat.to_string()),
                    dsm.message.as_ref().and_then(text_of),
                    "dsm",
                ),
                None => {
                    let text = text_of(&message);
                    let kind = if text.is_some() { "text" } else { "other" };
                    (chat.to_string(), text, kind)
                }
            };
            peer.record(InboxEntry {
                id: id.clone(),
                from: sender.to_string(),
                chat: entry_chat,
                text,
                kind,
                error: None,
                t,
            });
        }
        if own && !group {
            receipt = receipt
                .attr("type", "sender")
                .jid_attr("recipient", chat.clone());
        }
    }
    registry.put_peer(phone, peer);
    let me = registry.account(phone).map(|a| a.jid(Addressing::Pn, 0));
    relay::relay_receipt(registry, me, &receipt, now);
}

fn is_skdm_only(message: &Message) -> bool {
    message.sender_key_distribution().is_some()
        && message.conversation.is_none()
        && message.extended_text_message.is_none()
        && message.device_sent_message.is_none()
        && message.protocol_message.is_none()
}

fn text_of(message: &Message) -> Option<String> {
    message.conversation.clone().or_else(|| {
        message
            .extended_text_message
            .as_ref()
            .and_then(|e| e.text.clone())
    })
}

fn decrypt_group(peer: &mut PhonePeer, name: &str, enc: &Node) -> Result<Vec<u8>, SignalError> {
    let message = SenderKeyMessage::parse(enc.content_bytes().unwrap_or_default())?;
    let record = peer
        .sender_keys
        .get_mut(name)
        .ok_or(SignalError::NoSenderKey(message.key_id()))?;
    let padded = record.decrypt(&message)?;
    Ok(unpad(&padded)?.to_vec())
}

fn process_skdm(peer: &mut PhonePeer, group: &Jid, sender_key: &str, skdm: &SenderKeyDistribution) {
    let Some(bytes) = skdm.axolotl_sender_key_distribution_message.as_deref() else {
        return;
    };
    match SenderKeyDistributionMessage::parse(bytes) {
        Ok(message) => peer
            .sender_keys
            .entry(format!("{}::{sender_key}", group.to_non_ad()))
            .or_default()
            .process_distribution(&message),
        Err(e) => debug!(error = %e, "phone ignores a bad SKDM"),
    }
}

/// `<retry/>`, `<registration>` and `<keys>` with a fresh one-time prekey (§8.6).
fn retry_children(peer: &mut PhonePeer, id: &str, t: u64, count: u32, reason: u8) -> Vec<Node> {
    let prekey = peer.fresh_prekey();
    let prekey_value = peer
        .prekeys
        .get(&prekey)
        .map(|k| k.public.as_bytes().to_vec())
        .unwrap_or_default();
    vec![
        Node::new("retry")
            .attr("count", count.to_string())
            .attr("id", id)
            .attr("t", t.to_string())
            .attr("v", "1")
            .attr("error", reason.to_string()),
        Node::new("registration").bytes(peer.identity.registration_id.to_be_bytes().to_vec()),
        Node::new("keys").children(vec![
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(peer.identity.key_pair.public.as_bytes().to_vec()),
            Node::new("key").children(vec![
                Node::new("id").bytes(skey_id_bytes(prekey).to_vec()),
                Node::new("value").bytes(prekey_value),
            ]),
            Node::new("skey").children(vec![
                Node::new("id").bytes(skey_id_bytes(SIGNED_PRE_KEY_ID).to_vec()),
                Node::new("value").bytes(peer.signed.public.as_bytes().to_vec()),
                Node::new("signature").bytes(peer.signed_signature.to_vec()),
            ]),
        ]),
    ]
}

/// The bundle in a retry receipt's `<registration>` and `<keys>`.
fn bundle_of_retry(receipt: &Node) -> Option<Bundle> {
    let keys = receipt.child("keys")?;
    let bytes = |node: Option<&Node>| node.and_then(Node::content_bytes).map(<[u8]>::to_vec);
    let fixed = |node: Option<&Node>| -> Option<[u8; 32]> { bytes(node)?.try_into().ok() };
    let skey = keys.child("skey")?;
    let prekey = keys.child("key").and_then(|k| {
        let id: [u8; 3] = bytes(k.child("id"))?.try_into().ok()?;
        Some((
            u32::from_be_bytes([0, id[0], id[1], id[2]]),
            fixed(k.child("value"))?,
        ))
    });
    Some(Bundle {
        registration_id: bytes(receipt.child("registration"))?.try_into().ok()?,
        identity: fixed(keys.child("identity"))?,
        skey_id: bytes(skey.child("id"))?.try_into().ok()?,
        skey_value: fixed(skey.child("value"))?,
        skey_signature: bytes(skey.child("signature"))?.try_into().ok()?,
        prekey,
    })
}

/// A `<receipt>` relayed to the phone of `phone`: recorded; a retry re-encrypts the message
/// for the requesting device.
fn on_receipt(registry: &mut Registry, phone: &str, receipt: &Node, now: u64) {
    let (Some(from), Some(id)) = (jid_in(receipt, "from"), receipt.attr_str("id")) else {
        return;
    };
    let id = id.into_owned();
    let device = if from.server == GROUP_SERVER {
        match jid_in(receipt, "participant") {
            Some(p) => p,
            None => return,
        }
    } else {
        from.clone()
    };
    let kind = receipt
        .attr_str("type")
        .map_or_else(|| "delivered".to_owned(), |t| t.into_owned());
    let Some(mut peer) = registry.take_peer(phone) else {
        return;
    };
    if !peer.sent.contains_key(&id) {
        // A receipt for a message of one of the account's companions.
        registry.put_peer(phone, peer);
        return;
    }
    if peer.receipts.len() >= MAX_INBOX {
        peer.receipts.pop_front();
    }
    peer.receipts.push_back(ReceiptEntry {
        id: id.clone(),
        from: device.to_string(),
        r#type: kind.clone(),
    });
    let resend = if kind == "retry" {
        resend(registry, &mut peer, phone, &device, &id, receipt)
    } else {
        None
    };
    registry.put_peer(phone, peer);
    if let Some((sender, stanza)) = resend {
        relay::relay_message(registry, Some(sender), &stanza, now);
    }
}

/// The resend a retry receipt from `device` asks for, with the phone's device JID to send it
/// from.
fn resend(
    registry: &mut Registry,
    peer: &mut PhonePeer,
    phone: &str,
    device: &Jid,
    id: &str,
    receipt: &Node,
) -> Option<(Jid, Node)> {
    let key = address(registry, device)?;
    let sent = peer.sent.get_mut(id)?;
    let count = sent.resends.entry(key.clone()).or_insert(0);
    *count += 1;
    let count = *count;
    if count > MAX_RETRIES {
        debug!(count, "phone stops resending");
        return None;
    }
    let (chat, message) = (sent.chat.clone(), sent.message.clone());
    if let Some(bundle) = bundle_of_retry(receipt).and_then(|b| to_signal(&b).ok()) {
        let mut record = SessionRecord::new();
        if record
            .process_bundle(&peer.identity, &bundle, &mut rand::thread_rng())
            .is_ok()
        {
            peer.sessions.insert(key, record);
        }
    }
    let addressing = match chat.server.as_str() {
        GROUP_SERVER => Addressing::Pn,
        _ => Addressing::of(device)?,
    };
    let sender = registry.account(phone)?.jid(addressing, 0);
    if chat.server == GROUP_SERVER {
        let stanza = group_stanza(
            registry,
            peer,
            phone,
            &chat,
            id,
            &message,
            Some((device, count)),
        )
        .ok()?;
        return Some((sender, stanza));
    }
    let own = registry.phone_of(device) == Some(phone);
    let payload = if own {
        Message::device_sent(chat.to_string(), Message::decode(message.as_slice()).ok()?)
            .encode_to_vec()
    } else {
        message
    };
    let enc = encrypt_for(registry, peer, device, &payload)
        .ok()?
        .attr("count", count.to_string());
    let mut stanza = Node::new("message")
        .attr("id", id)
        .jid_attr("to", device.clone())
        .attr("type", "text");
    if own {
        stanza = stanza.jid_attr("recipient", chat);
    }
    Some((sender, stanza.children(vec![enc])))
}

/// `GET /inbox`: what the phone of the account `jid` names decrypted, and the receipts for its
/// own sends.
pub(crate) fn inbox(
    registry: &Registry,
    jid: &Jid,
) -> Option<(Vec<InboxEntry>, Vec<ReceiptEntry>)> {
    let phone = registry.phone_of(jid)?;
    let peer = registry.peer(phone)?;
    Some((peer.inbox(), peer.receipts()))
}

/// `POST /read`: the phone of `phone` sends a `read` receipt for message `id` it got from
/// `from` (the sending device, or the group with `participant`).
pub(crate) fn read(
    registry: &mut Registry,
    phone: &str,
    id: &str,
    now: u64,
) -> Result<(), SendRefused> {
    let peer = registry.peer(phone).ok_or(SendRefused::UnknownRecipient)?;
    let entry = peer
        .inbox
        .iter()
        .rev()
        .find(|e| e.id == id && e.kind != "undecryptable")
        .cloned()
        .ok_or(SendRefused::UnknownRecipient)?;
    let (Ok(from), Ok(chat)) = (entry.from.parse::<Jid>(), entry.chat.parse::<Jid>()) else {
        return Err(SendRefused::UnknownRecipient);
    };
    let mut receipt = Node::new("receipt").attr("id", id).attr("type", "read");
    receipt = if chat.server == GROUP_SERVER {
        receipt.jid_attr("to", chat).jid_attr("participant", from)
    } else {
        receipt.jid_attr("to", from)
    };
    let receipt = receipt.attr("t", now.to_string());
    let me = registry.account(phone).map(|a| a.jid(Addressing::Pn, 0));
    relay::relay_receipt(registry, me, &receipt, now);
    drain(registry, now);
    Ok(())
}
