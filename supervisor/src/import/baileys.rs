//! Reading one Baileys multi-file auth folder (`useMultiFileAuthState`, Baileys 7) into what
//! wafleet stores. Nothing here writes: a folder is read whole, every file checked, before
//! [`super`] writes anything.
//!
//! The formats, as the real client writes them (facts only; no code of theirs):
//! - Every file is `JSON.stringify(value, BufferJSON.replacer)`: a byte string is
//!   `{"type":"Buffer","data":"<base64>"}`; some values (the `account` fields, `advSecretKey`,
//!   everything inside a libsignal-node session record) are plain base64 strings; the inner JSON
//!   of a sender-key record writes bytes as `{"type":"Buffer","data":[<numbers>]}`.
//! - File names are `<category>-<id>.json` with `/` written `__` and `:` written `-`.
//! - `session-<name>.<device>.json`: libsignal-node's `SessionRecord.serialize()`:
//!   `{"_sessions": {<base key>: entry}, "version": "v1"}`; each entry has `registrationId`
//!   (the peer's), `currentRatchet` (our ephemeral key pair, the last remote ratchet key, the
//!   root key, `previousCounter`), `indexInfo` (`baseKey`, `closed` = -1 while open, `used`,
//!   `remoteIdentityKey`), `pendingPreKey` (while unanswered) and `_chains` keyed by ratchet
//!   public key, in insertion order: `chainType` 1 sends, 2 receives; `chainKey.counter` is the
//!   index of the last key derived (-1: none) and `chainKey.key` is absent once the chain is
//!   closed; `messageKeys` maps an index to the message-key seed of a skipped message. Public
//!   keys carry the `0x05` type byte.
//! - `sender-key-<group>::<name>::<device>.json`: a Buffer holding the JSON of an array of
//!   states, oldest first: `senderKeyId`, `senderChainKey {iteration, seed}`,
//!   `senderSigningKey {public, private}` (private empty but for our own key) and
//!   `senderMessageKeys [{iteration, seed}]`.
//! - `pre-key-<id>.json` `{private, public}`; `lid-mapping-<pn>.json` the LID user as a JSON
//!   string, `lid-mapping-<lid>_reverse.json` the PN user.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::marker::PhantomData;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use worker::signal::{
    ChainParts, SenderKeyRecord, SenderKeyStateParts, SessionRecord, SessionStateParts,
    MAX_ARCHIVED_STATES, MAX_RECEIVING_CHAINS,
};
use worker::store::creds::{Creds, KeyPair, Me, PreKey, SignedPreKey, CREDS_VERSION};
use worker::store::secret::{Blob, Bytes, Secret};
use worker::store::signal::Address;
use worker::wa::xeddsa;

/// The creds file of a Baileys auth folder.
pub const CREDS_FILE: &str = "creds.json";

/// A file that stops the import of its account: which, and what is wrong with it.
#[derive(Debug)]
pub struct Malformed {
    /// The file name inside the folder.
    pub file: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

/// Why a folder cannot be imported.
#[derive(Debug)]
pub enum ReadError {
    /// `creds.json` has no `me`: the folder never finished pairing.
    Unpaired,
    /// A file could not be read or understood.
    Malformed(Malformed),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Unpaired => f.write_str(
                "creds.json is not paired (no `me`): there is nothing to keep; add the account \
                 and scan a QR instead",
            ),
            ReadError::Malformed(m) => m.fmt(f),
        }
    }
}

/// A group of files left out, and why.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Skipped {
    /// The file category (`app-state-sync-key`, …) or file name.
    pub what: String,
    /// How many files.
    pub count: usize,
    /// Why they are not needed.
    pub reason: &'static str,
}

/// One session record to store.
pub struct SessionImport {
    /// Its address (`name.device`).
    pub address: Address,
    /// The record in wafleet's format.
    pub record: Vec<u8>,
    /// The peer identity of its current state, for the identity store.
    pub identity: Option<[u8; 32]>,
    /// Archived states of the Baileys record left out (no usable sending chain).
    pub dropped_states: usize,
}

/// One sender-key record to store.
pub struct SenderKeyImport {
    /// The group (or `status@broadcast`).
    pub group: String,
    /// The sender.
    pub sender: Address,
    /// The record in wafleet's format.
    pub record: Vec<u8>,
}

/// Everything read from one folder, ready to be written.
pub struct Folder {
    /// The credentials.
    pub creds: Creds,
    /// One-time prekeys still held.
    pub prekeys: Vec<PreKey>,
    /// The next one-time prekey id to generate.
    pub next_prekey_id: u32,
    /// Pairwise sessions.
    pub sessions: Vec<SessionImport>,
    /// Sender keys.
    pub sender_keys: Vec<SenderKeyImport>,
    /// `(pn user, lid user)`.
    pub lid_mappings: Vec<(String, String)>,
    /// What was left out.
    pub skipped: Vec<Skipped>,
}

/// Shows what would be written, not the keys.
impl fmt::Debug for SessionImport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionImport")
            .field("address", &self.address)
            .field("record_len", &self.record.len())
            .field("dropped_states", &self.dropped_states)
            .finish()
    }
}

/// Shows what would be written, not the keys.
impl fmt::Debug for SenderKeyImport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyImport")
            .field("group", &self.group)
            .field("sender", &self.sender)
            .finish()
    }
}

/// Counts, not keys (the creds' own `Debug` hides their secrets).
impl fmt::Debug for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Folder")
            .field("me", &self.creds.me)
            .field("prekeys", &self.prekeys.len())
            .field("next_prekey_id", &self.next_prekey_id)
            .field("sessions", &self.sessions)
            .field("sender_keys", &self.sender_keys)
            .field("lid_mappings", &self.lid_mappings.len())
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// Whether `dir` holds a Baileys `creds.json`.
pub fn is_auth_folder(dir: &Path) -> bool {
    dir.join(CREDS_FILE).is_file()
}

/// Reads the folder `dir` (read-only).
///
/// # Errors
/// [`ReadError`] naming the first file that stops it.
pub fn read_folder(dir: &Path) -> Result<Folder, ReadError> {
    let creds_json = read_json(dir, CREDS_FILE)?;
    let mut uploaded_next = 1;
    let creds = creds(&creds_json, &mut uploaded_next)
        .map_err(|problem| bad(CREDS_FILE, problem))?
        .ok_or(ReadError::Unpaired)?;
    let local_identity = creds.identity_key.public.0;
    let mut folder = Folder {
        creds,
        prekeys: Vec::new(),
        next_prekey_id: uploaded_next,
        sessions: Vec::new(),
        sender_keys: Vec::new(),
        lid_mappings: Vec::new(),
        skipped: Vec::new(),
    };
    let mut skipped: BTreeMap<String, (usize, &'static str)> = BTreeMap::new();
    let mut skip = |what: &str, reason: &'static str| {
        skipped.entry(what.to_owned()).or_insert((0, reason)).0 += 1;
    };
    let mut names: Vec<String> = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| bad(".", format!("cannot list: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(".", format!("cannot list: {e}")))?;
        match entry.file_name().into_string() {
            Ok(name) => names.push(name),
            Err(name) => skip(
                &name.to_string_lossy(),
                "the file name is not UTF-8: not a Baileys file",
            ),
        }
    }
    names.sort();
    let registration_id = folder.creds.registration_id;
    for name in names {
        if name == CREDS_FILE {
            continue;
        }
        let Some(stem) = name.strip_suffix(".json") else {
            skip(&name, "not a Baileys key file");
            continue;
        };
        if let Some(id) = stem.strip_prefix("pre-key-") {
            let id: u32 = id
                .parse()
                .map_err(|_| bad(&name, "the prekey id is not a number"))?;
            let value = read_json(dir, &name)?;
            let key_pair = key_pair(&value).map_err(|p| bad(&name, p))?;
            folder.prekeys.push(PreKey { id, key_pair });
        } else if let Some(address) = stem.strip_prefix("session-") {
            let address =
                address_of(address).ok_or_else(|| bad(&name, "not a name.device address"))?;
            let value = read_json(dir, &name)?;
            let session = session(&value, address, local_identity, registration_id)
                .map_err(|p| bad(&name, p))?;
            if let Some(session) = session {
                folder.sessions.push(session);
            } else {
                skip("session", "no open or archived state with a sending chain");
            }
        } else if let Some(rest) = stem.strip_prefix("sender-key-memory-") {
            let _ = rest;
            skip(
                "sender-key-memory",
                "which members hold our sender key: wafleet sends it again on its next group message",
            );
        } else if let Some(rest) = stem.strip_prefix("sender-key-") {
            let (group, sender) =
                sender_key_name(rest).ok_or_else(|| bad(&name, "not group::name::device"))?;
            let value = read_json(dir, &name)?;
            let record = sender_key(&value).map_err(|p| bad(&name, p))?;
            folder.sender_keys.push(SenderKeyImport {
                group,
                sender,
                record,
            });
        } else if let Some(user) = stem.strip_prefix("lid-mapping-") {
            let value = read_json(dir, &name)?;
            let other = value
                .as_str()
                .filter(|s| is_user(s))
                .ok_or_else(|| bad(&name, "not a user part"))?
                .to_owned();
            let pair = match user.strip_suffix("_reverse") {
                Some(lid) => (other, lid.to_owned()),
                None => (user.to_owned(), other),
            };
            if !is_user(&pair.0) || !is_user(&pair.1) {
                return Err(bad(&name, "not a user part"));
            }
            if !folder.lid_mappings.contains(&pair) {
                folder.lid_mappings.push(pair);
            }
        } else if stem.starts_with("app-state-sync-key-") {
            skip(
                "app-state-sync-key",
                "app state (chat list, contacts, labels) is not synced by wafleet; the phone keeps it",
            );
        } else if stem.starts_with("app-state-sync-version-") {
            skip(
                "app-state-sync-version",
                "app state (chat list, contacts, labels) is not synced by wafleet; the phone keeps it",
            );
        } else if stem.starts_with("device-list-") {
            skip(
                "device-list",
                "a cache: wafleet asks the server for a user's devices on its first send",
            );
        } else if stem.starts_with("tctoken-") {
            skip(
                "tctoken",
                "privacy tokens are not sent by wafleet; the server issues new ones",
            );
        } else {
            let category = stem
                .rsplit_once('-')
                .map(|(c, _)| c)
                .unwrap_or(stem)
                .to_owned();
            skip(&category, "not a kind of file wafleet keeps");
        }
    }
    folder.prekeys.sort_by_key(|k| k.id);
    if let Some(max) = folder.prekeys.last().map(|k| k.id) {
        folder.next_prekey_id = folder.next_prekey_id.max(max.saturating_add(1));
    }
    let dropped: usize = folder.sessions.iter().map(|s| s.dropped_states).sum();
    if dropped > 0 {
        skipped.insert(
            "archived session states".into(),
            (
                dropped,
                "closed states without a sending chain cannot be used again",
            ),
        );
    }
    folder.skipped = skipped
        .into_iter()
        .map(|(what, (count, reason))| Skipped {
            what,
            count,
            reason,
        })
        .collect();
    Ok(folder)
}

fn bad(file: &str, problem: impl Into<String>) -> ReadError {
    ReadError::Malformed(Malformed {
        file: file.to_owned(),
        problem: problem.into(),
    })
}

/// Parses `dir/name` as JSON, opened read-only.
fn read_json(dir: &Path, name: &str) -> Result<Value, ReadError> {
    let bytes = fs::read(dir.join(name)).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => bad(name, "missing"),
        _ => bad(name, format!("cannot read: {e}")),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| bad(name, format!("not JSON: {e}")))
}

/// The bytes of a BufferJSON value: `{"type":"Buffer","data":"<base64>"}`, the same with an
/// array of numbers, or a plain base64 string.
fn bytes(value: &Value, what: &str) -> Result<Vec<u8>, String> {
    let decode = |s: &str| {
        STANDARD
            .decode(s)
            .map_err(|_| format!("{what} is not base64"))
    };
    match value {
        Value::String(s) => decode(s),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("Buffer") => {
            match o.get("data") {
                Some(Value::String(s)) => decode(s),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_u64()
                            .and_then(|n| u8::try_from(n).ok())
                            .ok_or_else(|| format!("{what} holds a value that is not a byte"))
                    })
                    .collect(),
                _ => Err(format!("{what} is a Buffer without data")),
            }
        }
        Value::Null => Err(format!("{what} is missing")),
        _ => Err(format!("{what} is not a byte string")),
    }
}

fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value.get(key).unwrap_or(&Value::Null)
}

fn array<const N: usize>(value: &Value, what: &str) -> Result<[u8; N], String> {
    let b = bytes(value, what)?;
    b.as_slice()
        .try_into()
        .map_err(|_| format!("{what} is {} bytes, not {N}", b.len()))
}

/// A public key: 32 bytes, or 33 with the `0x05` type byte.
fn public(value: &Value, what: &str) -> Result<[u8; 32], String> {
    let b = bytes(value, what)?;
    public_bytes(&b, what)
}

fn public_bytes(b: &[u8], what: &str) -> Result<[u8; 32], String> {
    let key = match b {
        [0x05, rest @ ..] if rest.len() == 32 => rest,
        _ if b.len() == 32 => b,
        _ => return Err(format!("{what} is not a public key ({} bytes)", b.len())),
    };
    key.try_into()
        .map_err(|_| format!("{what} is not a public key"))
}

/// A Baileys `{private, public}` key pair whose halves agree.
fn key_pair(value: &Value) -> Result<KeyPair, String> {
    let private: [u8; 32] = array(field(value, "private"), "private key")?;
    let public = public(field(value, "public"), "public key")?;
    if xeddsa::public_key(&private) != public {
        return Err("the public key does not match the private key".into());
    }
    Ok(KeyPair {
        public: Bytes(public),
        private: Secret::new(Bytes(private)),
    })
}

fn number(value: &Value, what: &str) -> Result<u32, String> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("{what} is not a number"))
}

/// The credentials of `creds.json`; `None` when it was never paired. Sets `next_prekey` to the
/// first prekey id Baileys had not used yet.
fn creds(value: &Value, next_prekey: &mut u32) -> Result<Option<Creds>, String> {
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    let me = match field(value, "me") {
        Value::Null => return Ok(None),
        me => me,
    };
    let jid = field(me, "id")
        .as_str()
        .filter(|j| j.ends_with("@s.whatsapp.net") && j.contains(':'))
        .ok_or("me.id is not a device JID (user:device@s.whatsapp.net)")?
        .to_owned();
    let lid = match field(me, "lid") {
        Value::Null => None,
        Value::String(l) if l.ends_with("@lid") => Some(l.clone()),
        _ => return Err("me.lid is not a LID".into()),
    };
    let push_name = field(me, "name").as_str().map(str::to_owned);
    let noise_key = key_pair(field(value, "noiseKey")).map_err(|e| format!("noiseKey: {e}"))?;
    let identity_key = key_pair(field(value, "signedIdentityKey"))
        .map_err(|e| format!("signedIdentityKey: {e}"))?;
    let signed = field(value, "signedPreKey");
    let signed_pair =
        key_pair(field(signed, "keyPair")).map_err(|e| format!("signedPreKey: {e}"))?;
    let signature: [u8; 64] = array(field(signed, "signature"), "signedPreKey.signature")?;
    let mut message = vec![worker::store::creds::DJB_KEY_TYPE];
    message.extend_from_slice(&signed_pair.public.0);
    if !xeddsa::verify(&identity_key.public.0, &message, &signature) {
        return Err("signedPreKey.signature is not the identity key's".into());
    }
    let key_id = number(field(signed, "keyId"), "signedPreKey.keyId")?;
    let registration_id = number(field(value, "registrationId"), "registrationId")?;
    let adv_secret: [u8; 32] = array(field(value, "advSecretKey"), "advSecretKey")?;
    let account = field(value, "account");
    if account.is_null() {
        return Err("`me` is set but `account` (the signed device identity) is missing".into());
    }
    let details = bytes(field(account, "details"), "account.details")?;
    let account_key = public(
        field(account, "accountSignatureKey"),
        "account.accountSignatureKey",
    )?;
    let account_signature: [u8; 64] = array(
        field(account, "accountSignature"),
        "account.accountSignature",
    )?;
    let device_signature: [u8; 64] =
        array(field(account, "deviceSignature"), "account.deviceSignature")?;
    let identity = worker::wa::proto::AdvSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account_key.to_vec()),
        account_signature: Some(account_signature.to_vec()),
        device_signature: Some(device_signature.to_vec()),
    };
    let routing_info = match field(value, "routingInfo") {
        Value::Null => None,
        v => Some(Blob(bytes(v, "routingInfo")?)),
    };
    let platform = field(value, "platform").as_str().map(str::to_owned);
    for key in ["nextPreKeyId", "firstUnuploadedPreKeyId"] {
        if let Some(n) = field(value, key)
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
        {
            *next_prekey = (*next_prekey).max(n);
        }
    }
    Ok(Some(Creds {
        version: CREDS_VERSION,
        noise_key,
        identity_key,
        signed_prekey: SignedPreKey {
            key_id,
            key_pair: signed_pair,
            signature: Bytes(signature),
        },
        registration_id,
        adv_secret: Secret::new(Bytes(adv_secret)),
        me: Some(Me {
            jid,
            lid,
            push_name,
        }),
        account: Some(Blob(prost::Message::encode_to_vec(&identity))),
        routing_info,
        account_key: Some(Bytes(account_key)),
        platform,
    }))
}

/// A user part as Baileys and wafleet name files: digits (and nothing that climbs a folder).
fn is_user(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `name.device` (the file-name form of a Signal address).
fn address_of(text: &str) -> Option<Address> {
    let (name, device) = text.rsplit_once('.')?;
    let device: u16 = device.parse().ok()?;
    Address::new(name, device).ok()
}

/// `<group>--<name>--<device>` (the file-name form of `group::name::device`).
fn sender_key_name(text: &str) -> Option<(String, Address)> {
    let mut parts = text.rsplitn(3, "--");
    let device: u16 = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    let group = parts.next()?.replace("__", "/");
    if group.is_empty() || !group.contains('@') {
        return None;
    }
    Some((group, Address::new(name, device).ok()?))
}

/// A map that keeps its entries in document order (libsignal-node's `_chains` are ordered by
/// insertion, oldest first, and serde_json's own map sorts its keys).
struct Ordered<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Entries<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        deserializer.deserialize_map(Entries(PhantomData))
    }
}

#[derive(Deserialize)]
struct RecordJson {
    #[serde(rename = "_sessions")]
    sessions: Ordered<EntryJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryJson {
    registration_id: Option<u32>,
    current_ratchet: RatchetJson,
    index_info: IndexInfoJson,
    #[serde(rename = "_chains")]
    chains: Ordered<ChainJson>,
    pending_pre_key: Option<PendingJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RatchetJson {
    ephemeral_key_pair: EphemeralJson,
    previous_counter: i64,
    root_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EphemeralJson {
    pub_key: String,
    priv_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexInfoJson {
    base_key: String,
    closed: i64,
    #[serde(default)]
    used: Option<i64>,
    remote_identity_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChainJson {
    chain_key: ChainKeyJson,
    chain_type: u8,
    #[serde(default)]
    message_keys: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ChainKeyJson {
    counter: i64,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PendingJson {
    base_key: String,
    #[serde(default)]
    pre_key_id: Option<u32>,
    signed_key_id: u32,
}

/// libsignal-node's chain type of a sending chain.
const SENDING: u8 = 1;
/// … and of a receiving one.
const RECEIVING: u8 = 2;

fn b64(text: &str, what: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|_| format!("{what} is not base64"))
}

fn b64_32(text: &str, what: &str) -> Result<[u8; 32], String> {
    let b = b64(text, what)?;
    b.as_slice()
        .try_into()
        .map_err(|_| format!("{what} is {} bytes, not 32", b.len()))
}

fn b64_public(text: &str, what: &str) -> Result<[u8; 32], String> {
    public_bytes(&b64(text, what)?, what)
}

/// A chain index from libsignal-node's counter of the last key derived (-1: none yet).
fn next_index(counter: i64) -> Result<u32, String> {
    u32::try_from(counter.saturating_add(1)).map_err(|_| "a chain counter is out of range".into())
}

/// Skipped message keys, by index.
fn message_keys(keys: &BTreeMap<String, String>) -> Result<Vec<(u32, [u8; 32])>, String> {
    let mut out = Vec::with_capacity(keys.len());
    for (index, seed) in keys {
        let index: u32 = index
            .parse()
            .map_err(|_| "a message key index is not a number".to_owned())?;
        out.push((index, b64_32(seed, "a message key")?));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// One libsignal-node session entry as a state; `None` when it has no sending chain.
fn state(
    entry: &EntryJson,
    local_identity: [u8; 32],
    local_registration_id: u32,
) -> Result<Option<SessionStateParts>, String> {
    let ratchet = &entry.current_ratchet;
    let ours = b64(
        &ratchet.ephemeral_key_pair.pub_key,
        "the ratchet public key",
    )?;
    let ours_id = STANDARD.encode(&ours);
    let private = b64_32(
        &ratchet.ephemeral_key_pair.priv_key,
        "the ratchet private key",
    )?;
    if xeddsa::public_key(&private) != public_bytes(&ours, "the ratchet public key")? {
        return Err("the ratchet key pair does not match".into());
    }
    let sending = entry
        .chains
        .0
        .iter()
        .find(|(id, c)| c.chain_type == SENDING && *id == ours_id);
    let Some((_, sending)) = sending else {
        return Ok(None);
    };
    let Some(sending_key) = &sending.chain_key.key else {
        return Ok(None);
    };
    let mut receiving = Vec::new();
    for (id, chain) in &entry.chains.0 {
        match chain.chain_type {
            SENDING => continue,
            RECEIVING => {}
            other => return Err(format!("unknown chain type {other}")),
        }
        let skipped = message_keys(&chain.message_keys)?;
        let chain_key = match &chain.chain_key.key {
            Some(key) => b64_32(key, "a chain key")?,
            // A closed chain: only its skipped keys are of use. A random chain key stands in
            // for the one libsignal-node dropped, so a later index never decrypts (as there).
            None if skipped.is_empty() => continue,
            None => rand::random(),
        };
        receiving.push(ChainParts {
            ratchet_key: b64_public(id, "a chain's ratchet key")?,
            chain_key,
            index: next_index(chain.chain_key.counter)?,
            skipped,
        });
    }
    let keep = receiving.len().saturating_sub(MAX_RECEIVING_CHAINS);
    receiving.drain(..keep);
    let pending_pre_key = match &entry.pending_pre_key {
        Some(p) => Some((
            p.pre_key_id,
            p.signed_key_id,
            b64_public(&p.base_key, "pendingPreKey.baseKey")?,
        )),
        None => None,
    };
    Ok(Some(SessionStateParts {
        local_identity,
        remote_identity: b64_public(&entry.index_info.remote_identity_key, "remoteIdentityKey")?,
        local_registration_id,
        remote_registration_id: entry.registration_id.unwrap_or(0),
        root_key: b64_32(&ratchet.root_key, "the root key")?,
        sending_ratchet_private: private,
        sending_chain_key: b64_32(sending_key, "the sending chain key")?,
        sending_index: next_index(sending.chain_key.counter)?,
        receiving,
        previous_counter: u32::try_from(ratchet.previous_counter.max(0))
            .map_err(|_| "previousCounter is out of range".to_owned())?,
        pending_pre_key,
        base_key: b64_public(&entry.index_info.base_key, "indexInfo.baseKey")?,
    }))
}

/// A libsignal-node session record as one of ours: the open state current, the closed ones
/// archived, most recently closed first. `None` when no state is usable.
fn session(
    value: &Value,
    address: Address,
    local_identity: [u8; 32],
    local_registration_id: u32,
) -> Result<Option<SessionImport>, String> {
    let record = RecordJson::deserialize(value)
        .map_err(|e| format!("not a libsignal session record: {e}"))?;
    let mut open = Vec::new();
    let mut closed = Vec::new();
    let mut dropped = 0;
    for (_, entry) in &record.sessions.0 {
        let Some(state) = state(entry, local_identity, local_registration_id)? else {
            dropped += 1;
            continue;
        };
        let used = entry.index_info.used.unwrap_or(0);
        if entry.index_info.closed == -1 {
            open.push((used, state));
        } else {
            closed.push((entry.index_info.closed, state));
        }
    }
    // One open state is the rule; should there be more, the most recently used is current.
    open.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
    let mut open = open.into_iter().map(|(_, s)| s);
    let current = open.next();
    closed.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let mut previous: Vec<SessionStateParts> = open.collect();
    previous.extend(closed.into_iter().map(|(_, s)| s));
    if previous.len() > MAX_ARCHIVED_STATES {
        dropped += previous.len() - MAX_ARCHIVED_STATES;
        previous.truncate(MAX_ARCHIVED_STATES);
    }
    if current.is_none() && previous.is_empty() {
        return Ok(None);
    }
    let identity = current.as_ref().map(|s| s.remote_identity);
    let record = SessionRecord::from_parts(current, previous)
        .map_err(|e| format!("the record does not load: {e}"))?;
    Ok(Some(SessionImport {
        address,
        record: record.to_bytes(),
        identity,
        dropped_states: dropped,
    }))
}

/// A Baileys sender-key record (a Buffer of JSON) as one of ours.
fn sender_key(value: &Value) -> Result<Vec<u8>, String> {
    let inner = bytes(value, "the record")?;
    let states: Vec<Value> =
        serde_json::from_slice(&inner).map_err(|e| format!("the record is not JSON: {e}"))?;
    let mut parts = Vec::with_capacity(states.len());
    // Baileys keeps the newest last; wafleet first.
    for s in states.iter().rev() {
        let chain = field(s, "senderChainKey");
        let signing = field(s, "senderSigningKey");
        let private = bytes(field(signing, "private"), "senderSigningKey.private").or_else(
            |e| match field(signing, "private") {
                Value::Null => Ok(Vec::new()),
                _ => Err(e),
            },
        )?;
        let signing_private = match private.len() {
            0 => None,
            32 => Some(private.as_slice().try_into().unwrap_or([0; 32])),
            n => return Err(format!("senderSigningKey.private is {n} bytes")),
        };
        let mut skipped = Vec::new();
        if let Some(keys) = field(s, "senderMessageKeys").as_array() {
            for k in keys {
                skipped.push((
                    number(field(k, "iteration"), "senderMessageKeys.iteration")?,
                    array(field(k, "seed"), "senderMessageKeys.seed")?,
                ));
            }
        }
        parts.push(SenderKeyStateParts {
            key_id: number(field(s, "senderKeyId"), "senderKeyId")?,
            iteration: number(field(chain, "iteration"), "senderChainKey.iteration")?,
            chain_key: array(field(chain, "seed"), "senderChainKey.seed")?,
            signing_public: public(field(signing, "public"), "senderSigningKey.public")?,
            signing_private,
            skipped,
        });
    }
    let record =
        SenderKeyRecord::from_parts(parts).map_err(|e| format!("the record does not load: {e}"))?;
    Ok(record.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use worker::signal::CiphertextMessage;

    /// A fresh key pair as libsignal-node writes it: base64, the public half with `0x05`.
    fn pair() -> (String, String) {
        let private = xeddsa::generate_private();
        let mut public = vec![0x05];
        public.extend_from_slice(&xeddsa::public_key(&private));
        (STANDARD.encode(public), STANDARD.encode(private))
    }

    fn key() -> String {
        STANDARD.encode(rand::random::<[u8; 32]>())
    }

    /// One libsignal-node session entry; `sending` false leaves its sending chain out.
    fn entry(closed: i64, used: i64, sending: bool, chains: Value) -> Value {
        let (ours, ours_private) = pair();
        let mut chains = chains.as_object().cloned().unwrap_or_default();
        if sending {
            chains.insert(
                ours.clone(),
                json!({"chainKey": {"counter": 2, "key": key()}, "chainType": 1, "messageKeys": {}}),
            );
        }
        json!({
            "registrationId": 77,
            "currentRatchet": {
                "ephemeralKeyPair": {"pubKey": ours, "privKey": ours_private},
                "lastRemoteEphemeralKey": pair().0,
                "previousCounter": -1,
                "rootKey": key(),
            },
            "indexInfo": {
                "baseKey": pair().0, "baseKeyType": 1, "closed": closed, "used": used,
                "created": 1, "remoteIdentityKey": pair().0,
            },
            "_chains": chains,
        })
    }

    #[test]
    fn states_chains_counters_and_the_pending_prekey_carry_over() {
        let (closed_chain, _) = pair();
        let (live_chain, _) = pair();
        let (empty_chain, _) = pair();
        let mut open = entry(
            -1,
            50,
            true,
            json!({
                // A chain libsignal-node closed: only its skipped key is of use.
                closed_chain: {"chainKey": {"counter": 3}, "chainType": 2, "messageKeys": {"3": key()}},
                // A closed chain with nothing left: dropped.
                empty_chain: {"chainKey": {"counter": 0}, "chainType": 2, "messageKeys": {}},
                live_chain: {"chainKey": {"counter": 4, "key": key()}, "chainType": 2, "messageKeys": {"1": key(), "10": key()}},
            }),
        );
        let base = pair().0;
        open["pendingPreKey"] = json!({"baseKey": base, "preKeyId": 7, "signedKeyId": 1});
        let record = json!({
            "_sessions": {
                "a": entry(100, 10, true, json!({})),
                "b": open,
                "c": entry(200, 20, true, json!({})),
                "d": entry(300, 30, false, json!({})),
            },
            "version": "v1",
        });
        let address = Address::new("15551234567", 0).expect("address");
        let imported = session(&record, address, [9; 32], 42)
            .expect("converts")
            .expect("usable");
        assert_eq!(
            imported.dropped_states, 1,
            "the state without a sending chain"
        );
        let mut record = SessionRecord::from_bytes(&imported.record).expect("loads");
        assert_eq!(record.archived_count(), 2);
        let current = record.current().expect("the open state is current");
        assert_eq!(current.remote_registration_id(), 77);
        assert_eq!(current.receiving_chain_count(), 2);
        assert!(current.has_pending_pre_key());
        // libsignal-node's counter 2 (last key used) is our next index 3; previousCounter -1 is 0.
        let CiphertextMessage::PreKey(message) = record.encrypt(&[1; 16]).expect("encrypts") else {
            panic!("a pending prekey means a pkmsg");
        };
        assert_eq!(message.pre_key_id(), Some(7));
        assert_eq!(message.signed_pre_key_id(), 1);
        assert_eq!(
            STANDARD.encode([&[5u8][..], message.base_key().as_bytes()].concat()),
            base
        );
        assert_eq!(message.registration_id(), 42);
        assert_eq!(
            (
                message.message().counter(),
                message.message().previous_counter()
            ),
            (3, 0)
        );
    }

    #[test]
    fn a_record_with_no_usable_state_is_left_out_and_a_broken_one_is_named() {
        let address = Address::new("15551234567", 0).expect("address");
        let none = json!({"_sessions": {"d": entry(300, 30, false, json!({}))}, "version": "v1"});
        assert!(session(&none, address.clone(), [9; 32], 1)
            .expect("converts")
            .is_none());
        let mut bad = entry(-1, 1, true, json!({}));
        bad["currentRatchet"]["ephemeralKeyPair"]["privKey"] = json!(key());
        let bad = json!({"_sessions": {"x": bad}});
        let problem =
            session(&bad, address, [9; 32], 1).expect_err("a key pair that does not match");
        assert!(problem.contains("ratchet key pair"), "{problem}");
    }

    #[test]
    fn byte_strings_come_in_three_forms_and_names_in_their_file_forms() {
        let want = vec![1u8, 2, 250];
        for form in [
            json!("AQL6"),
            json!({"type": "Buffer", "data": "AQL6"}),
            json!({"type": "Buffer", "data": [1, 2, 250]}),
        ] {
            assert_eq!(bytes(&form, "x").expect("bytes"), want);
        }
        assert!(bytes(&json!({"type": "Buffer", "data": [256]}), "x").is_err());
        assert!(bytes(&json!(12), "x").is_err());
        let (group, sender) =
            sender_key_name("15551234567-1600000000@g.us--100000000000001_1--12").expect("name");
        assert_eq!(group, "15551234567-1600000000@g.us");
        assert_eq!(sender.to_string(), "100000000000001_1.12");
        assert!(sender_key_name("no-device").is_none());
        assert_eq!(
            address_of("100000000000001_1.0")
                .map(|a| a.to_string())
                .as_deref(),
            Some("100000000000001_1.0")
        );
        assert!(address_of("nodevice").is_none());
    }
}
