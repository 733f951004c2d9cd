//! Sender keys for groups and status (wa-messaging.md §4): one signed hash chain per
//! sender, handed to every member device in a SenderKeyDistributionMessage.
//!
//! 1. The sender creates its own state (random id, chain key, signing key pair) and sends
//!    the SKDM pairwise to each member device.
//! 2. A receiver stores the SKDM as a state under (group, sender address).
//! 3. Each group message is encrypted with the next chain key and signed; the receiver
//!    finds the state by id, checks the signature, steps the chain to the iteration
//!    (keeping skipped keys: iterations need not be consecutive) and decrypts.

use std::collections::VecDeque;
use std::fmt;

use prost::Message as _;
use rand::{CryptoRng, RngCore};

use super::aes_cbc;
use super::error::{Result, SignalError};
use super::kdf::{Key32, SenderChainKey, SenderMessageKeys};
use super::keys::{KeyPair, PrivateKey, PublicKey};
use super::ratchet::{MAX_FORWARD_JUMP, MAX_SKIPPED_KEYS};
use super::storage::{
    key32, SenderKeyRecordStructure, SenderKeyStateStructure, SkippedKeyStructure,
};
use super::wire::{SenderKeyDistributionMessage, SenderKeyMessage};
use crate::store::secret::Secret;

/// States kept per (group, sender); the oldest go first.
pub const MAX_SENDER_KEY_STATES: usize = 5;

/// One sender key: id, chain, signing key and skipped message keys.
#[derive(Clone)]
pub struct SenderKeyState {
    key_id: u32,
    chain: SenderChainKey,
    signing_public: PublicKey,
    signing_private: Option<PrivateKey>,
    /// `(iteration, message seed)`, oldest first.
    skipped: VecDeque<(u32, Key32)>,
}

/// Shows ids and counts; keys only as `Secret(..)` / `PrivateKey(..)`.
impl fmt::Debug for SenderKeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyState")
            .field("key_id", &self.key_id)
            .field("chain", &self.chain)
            .field("signing_public", &self.signing_public)
            .field("signing_private", &self.signing_private)
            .field("skipped", &self.skipped.len())
            .finish()
    }
}

impl SenderKeyState {
    /// The sender-key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The iteration the chain stands at.
    pub fn iteration(&self) -> u32 {
        self.chain.iteration()
    }

    /// The signing public key.
    pub fn signing_key(&self) -> &PublicKey {
        &self.signing_public
    }

    /// The message seed for `iteration` (§4.3), moving the chain forward as needed.
    fn seed_for(&mut self, iteration: u32) -> Result<Key32> {
        let current = self.chain.iteration();
        if iteration < current {
            let pos = self
                .skipped
                .iter()
                .position(|(i, _)| *i == iteration)
                .ok_or(SignalError::Duplicate(iteration))?;
            let (_, seed) = self
                .skipped
                .remove(pos)
                .ok_or(SignalError::Duplicate(iteration))?;
            return Ok(seed);
        }
        if iteration - current > MAX_FORWARD_JUMP || iteration == u32::MAX {
            return Err(SignalError::TooFarInFuture {
                counter: iteration,
                chain_index: current,
            });
        }
        while self.chain.iteration() < iteration {
            self.skipped
                .push_back((self.chain.iteration(), self.chain.message_seed()));
            if self.skipped.len() > MAX_SKIPPED_KEYS {
                self.skipped.pop_front();
            }
            self.chain = self.chain.next();
        }
        let seed = self.chain.message_seed();
        self.chain = self.chain.next();
        Ok(seed)
    }

    fn to_structure(&self) -> SenderKeyStateStructure {
        SenderKeyStateStructure {
            key_id: self.key_id,
            iteration: self.chain.iteration(),
            chain_key: self.chain.expose().to_vec(),
            signing_public: self.signing_public.as_bytes().to_vec(),
            signing_private: self.signing_private.as_ref().map(|k| k.expose().to_vec()),
            skipped: self
                .skipped
                .iter()
                .map(|(index, seed)| SkippedKeyStructure {
                    index: *index,
                    seed: seed.expose().to_vec(),
                })
                .collect(),
        }
    }

    fn from_structure(s: SenderKeyStateStructure) -> Result<Self> {
        let start = s.skipped.len().saturating_sub(MAX_SKIPPED_KEYS);
        let skipped = s.skipped[start..]
            .iter()
            .map(|k| Ok((k.index, Secret::new(key32(&k.seed, "skipped sender key")?))))
            .collect::<Result<_>>()?;
        Ok(Self {
            key_id: s.key_id,
            chain: SenderChainKey::new(key32(&s.chain_key, "sender chain key")?, s.iteration),
            signing_public: PublicKey::from_bytes(key32(&s.signing_public, "signing key")?),
            signing_private: s
                .signing_private
                .map(|k| key32(&k, "signing private key").map(PrivateKey::from_bytes))
                .transpose()?,
            skipped,
        })
    }
}

/// The sender keys of one (group, sender address): up to five states, newest first.
#[derive(Clone, Debug, Default)]
pub struct SenderKeyRecord {
    states: VecDeque<SenderKeyState>,
}

impl SenderKeyRecord {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the record holds no state.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The newest state, if any.
    pub fn current(&self) -> Option<&SenderKeyState> {
        self.states.front()
    }

    /// The state with `key_id`, if kept.
    pub fn state(&self, key_id: u32) -> Option<&SenderKeyState> {
        self.states.iter().find(|s| s.key_id == key_id)
    }

    /// A fresh own record (first send to a group, or a rotation): random 31-bit id, random
    /// chain key at iteration 0, fresh signing key pair (§4.1). Replaces any old state.
    pub fn create_own<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let key_id = rng.next_u32() & 0x7FFF_FFFF;
        let mut chain_key = [0u8; 32];
        rng.fill_bytes(&mut chain_key);
        Self::own_with(key_id, chain_key, KeyPair::generate(rng))
    }

    /// An own record with given parts (test vectors).
    pub(crate) fn own_with(key_id: u32, chain_key: [u8; 32], signing: KeyPair) -> Self {
        Self {
            states: VecDeque::from([SenderKeyState {
                key_id,
                chain: SenderChainKey::new(chain_key, 0),
                signing_public: signing.public,
                signing_private: Some(signing.private),
                skipped: VecDeque::new(),
            }]),
        }
    }

    /// The SKDM of the current state (its id, iteration, chain key and signing key), to
    /// send pairwise to each member device (§4.4).
    ///
    /// # Errors
    /// [`SignalError::NoSenderKey`] for an empty record.
    pub fn distribution_message(&self) -> Result<SenderKeyDistributionMessage> {
        let state = self.states.front().ok_or(SignalError::NoSenderKey(0))?;
        Ok(SenderKeyDistributionMessage::new(
            state.key_id,
            state.chain.iteration(),
            *state.chain.expose(),
            state.signing_public,
        ))
    }

    /// Stores a received SKDM as a state. A repeat of a state we hold (same id and signing
    /// key) must not wind our chain back, so it is ignored while our copy can still reach
    /// its iteration; only when it is more than [`MAX_FORWARD_JUMP`] ahead does our chain
    /// jump to it (skipped keys kept). A state with the same id but another signing key is
    /// replaced.
    pub fn process_distribution(&mut self, skdm: &SenderKeyDistributionMessage) {
        if let Some(pos) = self.states.iter().position(|s| s.key_id == skdm.key_id()) {
            let state = &mut self.states[pos];
            if state.signing_public == *skdm.signing_key() {
                let ours = state.chain.iteration();
                if skdm.iteration().saturating_sub(ours) > MAX_FORWARD_JUMP {
                    state.chain = SenderChainKey::new(*skdm.chain_key(), skdm.iteration());
                }
                return;
            }
            self.states.remove(pos);
        }
        self.states.push_front(SenderKeyState {
            key_id: skdm.key_id(),
            chain: SenderChainKey::new(*skdm.chain_key(), skdm.iteration()),
            signing_public: *skdm.signing_key(),
            signing_private: None,
            skipped: VecDeque::new(),
        });
        self.states.truncate(MAX_SENDER_KEY_STATES);
    }

    /// Encrypts a padded plaintext with our current state, signs it (nonce from `rng`) and
    /// advances the chain (§4.3).
    ///
    /// # Errors
    /// [`SignalError::NoSenderKey`] for an empty record, [`SignalError::InvalidKey`] when
    /// the state is someone else's (no signing private key).
    pub fn encrypt<R: RngCore + CryptoRng>(
        &mut self,
        padded_plaintext: &[u8],
        rng: &mut R,
    ) -> Result<SenderKeyMessage> {
        let state = self.states.front_mut().ok_or(SignalError::NoSenderKey(0))?;
        let signing = state
            .signing_private
            .clone()
            .ok_or(SignalError::InvalidKey(
                "sender key state has no signing private key",
            ))?;
        let iteration = state.chain.iteration();
        if iteration == u32::MAX {
            return Err(SignalError::InvalidMessage("sender chain exhausted"));
        }
        let keys = SenderMessageKeys::from_seed(&state.chain.message_seed());
        let ciphertext =
            aes_cbc::encrypt(keys.cipher_key.expose(), keys.iv.expose(), padded_plaintext);
        let mut z = [0u8; 64];
        rng.fill_bytes(&mut z);
        let message = SenderKeyMessage::new(state.key_id, iteration, ciphertext, &signing, &z);
        state.chain = state.chain.next();
        Ok(message)
    }

    /// Decrypts a group message; returns the padded plaintext.
    ///
    /// # Errors
    /// [`SignalError::NoSenderKey`] when no state has the message's id,
    /// [`SignalError::InvalidSignature`], [`SignalError::Duplicate`],
    /// [`SignalError::TooFarInFuture`] or [`SignalError::BadCiphertext`]. The record is
    /// unchanged on error.
    pub fn decrypt(&mut self, message: &SenderKeyMessage) -> Result<Vec<u8>> {
        let pos = self
            .states
            .iter()
            .position(|s| s.key_id == message.key_id())
            .ok_or(SignalError::NoSenderKey(message.key_id()))?;
        let mut state = self.states[pos].clone();
        if !message.verify_signature(&state.signing_public) {
            return Err(SignalError::InvalidSignature);
        }
        let keys = SenderMessageKeys::from_seed(&state.seed_for(message.iteration())?);
        let plaintext = aes_cbc::decrypt(
            keys.cipher_key.expose(),
            keys.iv.expose(),
            message.ciphertext(),
        )?;
        self.states[pos] = state;
        Ok(plaintext)
    }

    /// Serializes the record for the store (compact protobuf, holds private keys).
    pub fn to_bytes(&self) -> Vec<u8> {
        SenderKeyRecordStructure {
            states: self
                .states
                .iter()
                .map(SenderKeyState::to_structure)
                .collect(),
        }
        .encode_to_vec()
    }

    /// Parses stored bytes. Never panics; keeps at most [`MAX_SENDER_KEY_STATES`].
    ///
    /// # Errors
    /// [`SignalError::Protobuf`] or [`SignalError::CorruptRecord`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let s = SenderKeyRecordStructure::decode(bytes)?;
        let states = s
            .states
            .into_iter()
            .take(MAX_SENDER_KEY_STATES)
            .map(SenderKeyState::from_structure)
            .collect::<Result<_>>()?;
        Ok(Self { states })
    }
}
