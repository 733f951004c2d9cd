//! One Double Ratchet session state: sending and receiving chains, the DH ratchet step,
//! skipped message keys, and encryption/decryption of single messages
//! (wa-messaging.md §3.3–§3.5).
//!
//! Decryption works on a copy and hands back the advanced state only on success, so a
//! forged or corrupt message never moves a chain.

use std::collections::VecDeque;
use std::fmt;
use std::sync::OnceLock;

use rand::{CryptoRng, RngCore};

use super::aes_cbc;
use super::error::{Result, SignalError};
use super::kdf::{ChainKey, Key32, MessageKeys, RootKey};
use super::keys::{KeyPair, PrivateKey, PublicKey};
use super::storage::{
    self, ChainStructure, PendingPreKeyStructure, SessionStructure, SkippedKeyStructure,
};
use super::wire::{PreKeySignalMessage, SignalMessage};
use crate::store::secret::Secret;

/// The furthest a message may run ahead of its receiving chain (go.mau.fi/libsignal and
/// libsignal-node use 2000, §3.5).
pub const MAX_FORWARD_JUMP: u32 = 2000;
/// Skipped message keys kept per receiving chain; the oldest go first.
pub const MAX_SKIPPED_KEYS: usize = 2000;
/// Receiving chains kept per state; the oldest go first.
pub const MAX_RECEIVING_CHAINS: usize = 5;

/// An encrypted pairwise message, ready for `<enc type="…">`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum CiphertextMessage {
    /// `pkmsg`: the session is not yet confirmed by the peer.
    PreKey(PreKeySignalMessage),
    /// `msg`: an established session.
    Whisper(SignalMessage),
}

impl CiphertextMessage {
    /// The `<enc type>` attribute value: `"pkmsg"` or `"msg"`.
    pub fn enc_type(&self) -> &'static str {
        match self {
            Self::PreKey(_) => "pkmsg",
            Self::Whisper(_) => "msg",
        }
    }

    /// The `<enc>` content.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::PreKey(m) => m.as_bytes(),
            Self::Whisper(m) => m.as_bytes(),
        }
    }
}

/// What an initiator repeats in every pkmsg until the peer answers (§3.2 step 6).
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct PendingPreKey {
    pub pre_key_id: Option<u32>,
    pub signed_pre_key_id: u32,
    pub base_key: PublicKey,
}

#[derive(Clone, Debug)]
struct SendingChain {
    ratchet: RatchetKey,
    chain: ChainKey,
}

/// Our current ratchet key pair. The stored form holds the private key alone, and its public
/// half, a scalar multiplication, is only needed to send: a loaded state derives it the first
/// time it encrypts, so that loading a record with its 40 archived states, or decrypting, costs
/// none.
#[derive(Clone)]
struct RatchetKey {
    private: PrivateKey,
    public: OnceLock<PublicKey>,
}

impl RatchetKey {
    /// A pair whose public half is known (a new key).
    fn new(pair: KeyPair) -> Self {
        Self {
            private: pair.private,
            public: OnceLock::from(pair.public),
        }
    }

    /// A stored private key; the public half is derived on first use.
    fn from_private(private: PrivateKey) -> Self {
        Self {
            private,
            public: OnceLock::new(),
        }
    }

    /// The public half, derived once.
    fn public(&self) -> PublicKey {
        *self.public.get_or_init(|| self.private.public_key())
    }
}

/// Shows the public half if it was derived, never the private one.
impl fmt::Debug for RatchetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatchetKey")
            .field("public", &self.public.get())
            .field("private", &self.private)
            .finish()
    }
}

#[derive(Clone)]
struct ReceivingChain {
    ratchet: PublicKey,
    chain: ChainKey,
    /// `(index, message seed)`, oldest first.
    skipped: VecDeque<(u32, Key32)>,
}

/// One session with one peer device: the state of both chains of the Double Ratchet.
#[derive(Clone, Debug)]
pub struct SessionState {
    local_identity: PublicKey,
    remote_identity: PublicKey,
    local_registration_id: u32,
    remote_registration_id: u32,
    root_key: RootKey,
    sending: SendingChain,
    receiving: VecDeque<ReceivingChain>,
    previous_counter: u32,
    pending_pre_key: Option<PendingPreKey>,
    base_key: PublicKey,
}

/// The parts X3DH fixes when a state is born.
pub(crate) struct NewState {
    pub local_identity: PublicKey,
    pub remote_identity: PublicKey,
    pub local_registration_id: u32,
    pub remote_registration_id: u32,
    pub root_key: RootKey,
    pub sending_ratchet: KeyPair,
    pub sending_chain: ChainKey,
    pub receiving: Option<(PublicKey, ChainKey)>,
    pub pending_pre_key: Option<PendingPreKey>,
    pub base_key: PublicKey,
}

impl SessionState {
    pub(crate) fn new(n: NewState) -> Self {
        Self {
            local_identity: n.local_identity,
            remote_identity: n.remote_identity,
            local_registration_id: n.local_registration_id,
            remote_registration_id: n.remote_registration_id,
            root_key: n.root_key,
            sending: SendingChain {
                ratchet: RatchetKey::new(n.sending_ratchet),
                chain: n.sending_chain,
            },
            receiving: n
                .receiving
                .into_iter()
                .map(|(ratchet, chain)| ReceivingChain {
                    ratchet,
                    chain,
                    skipped: VecDeque::new(),
                })
                .collect(),
            previous_counter: 0,
            pending_pre_key: n.pending_pre_key,
            base_key: n.base_key,
        }
    }

    /// The peer's identity key.
    pub fn remote_identity(&self) -> &PublicKey {
        &self.remote_identity
    }

    /// The peer's registration id (0 when the peer never told us).
    pub fn remote_registration_id(&self) -> u32 {
        self.remote_registration_id
    }

    /// The X3DH base key that started this session (ours as initiator, theirs as
    /// responder).
    pub fn base_key(&self) -> &PublicKey {
        &self.base_key
    }

    /// How many receiving chains the state keeps (at most [`MAX_RECEIVING_CHAINS`]).
    pub fn receiving_chain_count(&self) -> usize {
        self.receiving.len()
    }

    /// Whether our messages still go out as pkmsg.
    pub fn has_pending_pre_key(&self) -> bool {
        self.pending_pre_key.is_some()
    }

    /// Encrypts one padded plaintext and advances the sending chain (§3.4).
    pub(crate) fn encrypt(&mut self, plaintext: &[u8]) -> Result<CiphertextMessage> {
        let counter = self.sending.chain.index();
        if counter == u32::MAX {
            return Err(SignalError::InvalidMessage("sending chain exhausted"));
        }
        let keys = self.sending.chain.message_keys();
        let ciphertext = aes_cbc::encrypt(keys.cipher_key.expose(), keys.iv.expose(), plaintext);
        let message = SignalMessage::new(
            keys.mac_key.expose(),
            &self.local_identity,
            &self.remote_identity,
            self.sending.ratchet.public(),
            counter,
            self.previous_counter,
            ciphertext,
        );
        self.sending.chain = self.sending.chain.next();
        Ok(match &self.pending_pre_key {
            Some(p) => CiphertextMessage::PreKey(PreKeySignalMessage::new(
                self.local_registration_id,
                p.pre_key_id,
                p.signed_pre_key_id,
                p.base_key,
                self.local_identity,
                message,
            )),
            None => CiphertextMessage::Whisper(message),
        })
    }

    /// Decrypts `message` against this state; on success returns the advanced state and the
    /// plaintext (still carrying WhatsApp's random padding). `rng` supplies our next
    /// ratchet key when the message starts a new chain.
    pub(crate) fn decrypt<R: RngCore + CryptoRng>(
        &self,
        message: &SignalMessage,
        rng: &mut R,
    ) -> Result<(SessionState, Vec<u8>)> {
        let mut next = self.clone();
        let their = message.ratchet_key();
        let chain = match next.receiving.iter().position(|c| &c.ratchet == their) {
            Some(i) => i,
            None => {
                next.ratchet_step(their, rng);
                next.receiving.len() - 1
            }
        };
        let seed = next.receiving[chain].seed_for(message.counter())?;
        let keys = MessageKeys::from_seed(&seed);
        if !message.verify_mac(
            keys.mac_key.expose(),
            &next.remote_identity,
            &next.local_identity,
        ) {
            return Err(SignalError::BadMac);
        }
        let plaintext = aes_cbc::decrypt(
            keys.cipher_key.expose(),
            keys.iv.expose(),
            message.ciphertext(),
        )?;
        next.pending_pre_key = None;
        Ok((next, plaintext))
    }

    /// The DH ratchet step for a new peer ratchet key (§3.5 step 2).
    fn ratchet_step<R: RngCore + CryptoRng>(&mut self, their: &PublicKey, rng: &mut R) {
        let (root, receiving) = self.root_key.step(their, &self.sending.ratchet.private);
        let ours = KeyPair::generate(rng);
        let (root, sending) = root.step(their, &ours.private);
        self.root_key = root;
        self.previous_counter = self.sending.chain.index().saturating_sub(1);
        self.sending = SendingChain {
            ratchet: RatchetKey::new(ours),
            chain: sending,
        };
        self.receiving.push_back(ReceivingChain {
            ratchet: *their,
            chain: receiving,
            skipped: VecDeque::new(),
        });
        while self.receiving.len() > MAX_RECEIVING_CHAINS {
            self.receiving.pop_front();
        }
    }

    pub(crate) fn to_structure(&self) -> SessionStructure {
        SessionStructure {
            local_identity: self.local_identity.as_bytes().to_vec(),
            remote_identity: self.remote_identity.as_bytes().to_vec(),
            local_registration_id: self.local_registration_id,
            remote_registration_id: self.remote_registration_id,
            root_key: self.root_key.expose().to_vec(),
            sender_ratchet_private: self.sending.ratchet.private.expose().to_vec(),
            sender_chain_key: self.sending.chain.expose().to_vec(),
            sender_chain_index: self.sending.chain.index(),
            receiving: self
                .receiving
                .iter()
                .map(|c| ChainStructure {
                    ratchet_key: c.ratchet.as_bytes().to_vec(),
                    chain_key: c.chain.expose().to_vec(),
                    index: c.chain.index(),
                    skipped: c
                        .skipped
                        .iter()
                        .map(|(index, seed)| SkippedKeyStructure {
                            index: *index,
                            seed: seed.expose().to_vec(),
                        })
                        .collect(),
                })
                .collect(),
            previous_counter: self.previous_counter,
            pending_pre_key: self
                .pending_pre_key
                .as_ref()
                .map(|p| PendingPreKeyStructure {
                    pre_key_id: p.pre_key_id,
                    signed_pre_key_id: p.signed_pre_key_id,
                    base_key: p.base_key.as_bytes().to_vec(),
                }),
            base_key: self.base_key.as_bytes().to_vec(),
        }
    }

    pub(crate) fn from_structure(s: SessionStructure) -> Result<Self> {
        use storage::key32;
        let public = |b: &[u8], what| key32(b, what).map(PublicKey::from_bytes);
        let mut receiving = VecDeque::new();
        for c in s
            .receiving
            .into_iter()
            .rev()
            .take(MAX_RECEIVING_CHAINS)
            .rev()
        {
            let mut skipped = VecDeque::new();
            let start = c.skipped.len().saturating_sub(MAX_SKIPPED_KEYS);
            for k in &c.skipped[start..] {
                skipped.push_back((k.index, Secret::new(key32(&k.seed, "skipped key")?)));
            }
            receiving.push_back(ReceivingChain {
                ratchet: public(&c.ratchet_key, "receiving ratchet key")?,
                chain: ChainKey::new(key32(&c.chain_key, "receiving chain key")?, c.index),
                skipped,
            });
        }
        let pending_pre_key = match s.pending_pre_key {
            Some(p) => Some(PendingPreKey {
                pre_key_id: p.pre_key_id,
                signed_pre_key_id: p.signed_pre_key_id,
                base_key: public(&p.base_key, "pending base key")?,
            }),
            None => None,
        };
        Ok(Self {
            local_identity: public(&s.local_identity, "local identity")?,
            remote_identity: public(&s.remote_identity, "remote identity")?,
            local_registration_id: s.local_registration_id,
            remote_registration_id: s.remote_registration_id,
            root_key: RootKey::new(key32(&s.root_key, "root key")?),
            sending: SendingChain {
                ratchet: RatchetKey::from_private(PrivateKey::from_bytes(key32(
                    &s.sender_ratchet_private,
                    "sending ratchet key",
                )?)),
                chain: ChainKey::new(
                    key32(&s.sender_chain_key, "sending chain key")?,
                    s.sender_chain_index,
                ),
            },
            receiving,
            previous_counter: s.previous_counter,
            pending_pre_key,
            base_key: public(&s.base_key, "base key")?,
        })
    }
}

/// Shows the chain and how many skipped keys it holds, not the keys themselves.
impl fmt::Debug for ReceivingChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivingChain")
            .field("ratchet", &self.ratchet)
            .field("chain", &self.chain)
            .field("skipped", &self.skipped.len())
            .finish()
    }
}

impl ReceivingChain {
    /// The message seed for `counter`: a stored skipped key (removed), or derived by moving
    /// the chain forward and keeping the keys passed over (§3.5 step 3).
    fn seed_for(&mut self, counter: u32) -> Result<Key32> {
        let index = self.chain.index();
        if counter < index {
            let pos = self
                .skipped
                .iter()
                .position(|(i, _)| *i == counter)
                .ok_or(SignalError::Duplicate(counter))?;
            let (_, seed) = self
                .skipped
                .remove(pos)
                .ok_or(SignalError::Duplicate(counter))?;
            return Ok(seed);
        }
        if counter - index > MAX_FORWARD_JUMP || counter == u32::MAX {
            return Err(SignalError::TooFarInFuture {
                counter,
                chain_index: index,
            });
        }
        while self.chain.index() < counter {
            self.skipped
                .push_back((self.chain.index(), self.chain.message_seed()));
            if self.skipped.len() > MAX_SKIPPED_KEYS {
                self.skipped.pop_front();
            }
            self.chain = self.chain.next();
        }
        let seed = self.chain.message_seed();
        self.chain = self.chain.next();
        Ok(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_state_derives_its_ratchet_public_key_only_to_send() {
        let mut rng = rand::thread_rng();
        let ratchet = KeyPair::generate(&mut rng);
        let state = SessionState::new(NewState {
            local_identity: KeyPair::generate(&mut rng).public,
            remote_identity: KeyPair::generate(&mut rng).public,
            local_registration_id: 1,
            remote_registration_id: 2,
            root_key: RootKey::new([1; 32]),
            sending_ratchet: ratchet.clone(),
            sending_chain: ChainKey::new([2; 32], 0),
            receiving: None,
            pending_pre_key: None,
            base_key: KeyPair::generate(&mut rng).public,
        });
        assert_eq!(state.sending.ratchet.public.get(), Some(&ratchet.public));
        let mut loaded = SessionState::from_structure(state.to_structure()).expect("loads");
        assert_eq!(loaded.sending.ratchet.public.get(), None);
        let CiphertextMessage::Whisper(message) = loaded.encrypt(&[4; 16]).expect("encrypts")
        else {
            panic!("no pending prekey, so a msg");
        };
        assert_eq!(message.ratchet_key(), &ratchet.public);
        assert_eq!(loaded.sending.ratchet.public.get(), Some(&ratchet.public));
    }
}
