//! The session record of one peer address: the current state plus up to 40 archived ones,
//! and the record-level rules around them (wa-messaging.md §3.6, §3.7).
//!
//! * A new bundle, or a pkmsg with an unknown base key, archives the current state and
//!   makes the new one current.
//! * A pkmsg whose base key matches a kept state reuses that state (the peer has simply not
//!   seen our answer yet).
//! * Decryption tries the current state, then the archived ones; an archived state that
//!   decrypts is promoted to current.
//! * Every operation changes the record only when it succeeds; persist the record after
//!   each successful encrypt and decrypt (the chain key must never be reused).

use std::collections::VecDeque;

use prost::Message as _;
use rand::{CryptoRng, RngCore};

use super::error::{Result, SignalError};
use super::keys::{KeyPair, LocalIdentity, PublicKey};
use super::ratchet::{CiphertextMessage, SessionState};
use super::storage::RecordStructure;
use super::wire::{PreKeySignalMessage, SignalMessage};
use super::x3dh::{self, PreKeyBundle};

/// Archived states kept per address; the oldest go first.
pub const MAX_ARCHIVED_STATES: usize = 40;

/// Our prekeys, looked up by the ids a pkmsg names. Implemented by the caller's store so
/// this module does no IO.
pub trait PreKeyLookup {
    /// The signed prekey with `id`, if we still have it.
    fn signed_pre_key(&self, id: u32) -> Option<KeyPair>;
    /// The one-time prekey with `id`, if it is still unused.
    fn pre_key(&self, id: u32) -> Option<KeyPair>;
}

/// The outcome of decrypting a pkmsg.
#[derive(Debug, Eq, PartialEq)]
pub struct PreKeyDecryption {
    /// The plaintext, still carrying WhatsApp's random padding ([`super::padding::unpad`]).
    pub plaintext: Vec<u8>,
    /// The one-time prekey this message consumed. Delete it from the store **after** the
    /// record is persisted (§3.6 step 6). `None` when no new session was built.
    pub consumed_pre_key_id: Option<u32>,
}

/// All sessions with one peer device (one [`super::ProtocolAddress`]).
#[derive(Clone, Debug, Default)]
pub struct SessionRecord {
    current: Option<SessionState>,
    /// Newest first.
    previous: VecDeque<SessionState>,
}

impl SessionRecord {
    /// An empty record: no session yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there is a current session to encrypt with.
    pub fn has_current_session(&self) -> bool {
        self.current.is_some()
    }

    /// The current state, if any.
    pub fn current(&self) -> Option<&SessionState> {
        self.current.as_ref()
    }

    /// How many archived states the record keeps.
    pub fn archived_count(&self) -> usize {
        self.previous.len()
    }

    /// The peer identity of the current session; compare it with the stored identity for
    /// the address (trust on first use, replace on change, §3.8).
    pub fn remote_identity(&self) -> Option<&PublicKey> {
        self.current.as_ref().map(SessionState::remote_identity)
    }

    /// Starts a session from a prekey bundle as initiator (§3.2), archiving the current one.
    /// Messages go out as pkmsg until the peer answers.
    ///
    /// # Errors
    /// [`SignalError::InvalidSignature`] for a bad signed-prekey signature; the record is
    /// then unchanged.
    pub fn process_bundle<R: RngCore + CryptoRng>(
        &mut self,
        own: &LocalIdentity,
        bundle: &PreKeyBundle,
        rng: &mut R,
    ) -> Result<()> {
        let base = KeyPair::generate(rng);
        let ratchet = KeyPair::generate(rng);
        self.process_bundle_with_keys(own, bundle, base, ratchet)
    }

    /// [`Self::process_bundle`] with given base and first ratchet keys (test vectors).
    pub(crate) fn process_bundle_with_keys(
        &mut self,
        own: &LocalIdentity,
        bundle: &PreKeyBundle,
        base: KeyPair,
        ratchet: KeyPair,
    ) -> Result<()> {
        let state = x3dh::initiate(own, bundle, base, ratchet)?;
        self.promote(state);
        Ok(())
    }

    /// Encrypts a padded plaintext with the current session: a pkmsg while the session is
    /// unconfirmed, else a msg.
    ///
    /// # Errors
    /// [`SignalError::NoSession`] without a current session.
    pub fn encrypt(&mut self, padded_plaintext: &[u8]) -> Result<CiphertextMessage> {
        self.current
            .as_mut()
            .ok_or(SignalError::NoSession)?
            .encrypt(padded_plaintext)
    }

    /// Decrypts a `msg` (§3.5). Returns the padded plaintext.
    ///
    /// # Errors
    /// [`SignalError::NoSession`] for an empty record; when every state fails,
    /// [`SignalError::Duplicate`] if some state had already used that key, else the current
    /// state's error (typically [`SignalError::BadMac`]).
    pub fn decrypt<R: RngCore + CryptoRng>(
        &mut self,
        message: &SignalMessage,
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        let mut first_error = None;
        let mut duplicate = None;
        let candidates = self.current.iter().chain(self.previous.iter()).enumerate();
        let mut found = None;
        for (i, state) in candidates {
            match state.decrypt(message, rng) {
                Ok(done) => {
                    found = Some((i, done));
                    break;
                }
                Err(e) => {
                    if e.is_duplicate() {
                        duplicate.get_or_insert(e.clone());
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        let Some((i, (state, plaintext))) = found else {
            return Err(duplicate.or(first_error).unwrap_or(SignalError::NoSession));
        };
        self.replace(i, state);
        Ok(plaintext)
    }

    /// Decrypts a `pkmsg` (§3.6): reuses the state with the same base key, else builds a
    /// new session from our prekeys and makes it current. Check the message's identity key
    /// (TOFU) before calling.
    ///
    /// # Errors
    /// [`SignalError::InvalidSignedPreKeyId`] / [`SignalError::InvalidPreKeyId`] when the
    /// named prekeys are gone, or any error of [`Self::decrypt`].
    pub fn decrypt_pre_key<R: RngCore + CryptoRng>(
        &mut self,
        own: &LocalIdentity,
        message: &PreKeySignalMessage,
        pre_keys: &impl PreKeyLookup,
        rng: &mut R,
    ) -> Result<PreKeyDecryption> {
        let known = self
            .current
            .iter()
            .chain(self.previous.iter())
            .position(|s| s.base_key() == message.base_key());
        if let Some(i) = known {
            let state = self.state(i).ok_or(SignalError::NoSession)?;
            let (state, plaintext) = state.decrypt(message.message(), rng)?;
            self.replace(i, state);
            return Ok(PreKeyDecryption {
                plaintext,
                consumed_pre_key_id: None,
            });
        }
        let signed = pre_keys.signed_pre_key(message.signed_pre_key_id()).ok_or(
            SignalError::InvalidSignedPreKeyId(message.signed_pre_key_id()),
        )?;
        let one_time = match message.pre_key_id() {
            Some(id) => Some(
                pre_keys
                    .pre_key(id)
                    .ok_or(SignalError::InvalidPreKeyId(id))?,
            ),
            None => None,
        };
        let fresh = x3dh::respond(own, message, &signed, one_time.as_ref());
        let (state, plaintext) = fresh.decrypt(message.message(), rng)?;
        self.promote(state);
        Ok(PreKeyDecryption {
            plaintext,
            consumed_pre_key_id: message.pre_key_id(),
        })
    }

    /// Serializes the record for the store (compact protobuf, holds private keys).
    pub fn to_bytes(&self) -> Vec<u8> {
        RecordStructure {
            current: self.current.as_ref().map(SessionState::to_structure),
            previous: self
                .previous
                .iter()
                .map(SessionState::to_structure)
                .collect(),
        }
        .encode_to_vec()
    }

    /// Parses stored bytes. Never panics; caps the archive at [`MAX_ARCHIVED_STATES`].
    ///
    /// # Errors
    /// [`SignalError::Protobuf`] or [`SignalError::CorruptRecord`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let s = RecordStructure::decode(bytes)?;
        let current = s.current.map(SessionState::from_structure).transpose()?;
        let previous = s
            .previous
            .into_iter()
            .take(MAX_ARCHIVED_STATES)
            .map(SessionState::from_structure)
            .collect::<Result<_>>()?;
        Ok(Self { current, previous })
    }

    /// The state at position `i` of current-then-archived.
    fn state(&self, i: usize) -> Option<&SessionState> {
        match (&self.current, i) {
            (Some(c), 0) => Some(c),
            (Some(_), i) => self.previous.get(i - 1),
            (None, i) => self.previous.get(i),
        }
    }

    /// Stores `state` in place of position `i`, promoting it to current if it was archived.
    fn replace(&mut self, i: usize, state: SessionState) {
        let archived = match (&self.current, i) {
            (Some(_), 0) => {
                self.current = Some(state);
                return;
            }
            (Some(_), i) => i - 1,
            (None, i) => i,
        };
        self.previous.remove(archived);
        self.promote(state);
    }

    /// Makes `state` current and archives the old current one.
    fn promote(&mut self, state: SessionState) {
        if let Some(old) = self.current.replace(state) {
            self.previous.push_front(old);
            self.previous.truncate(MAX_ARCHIVED_STATES);
        }
    }
}
