//! X3DH key agreement as WhatsApp runs it (wa-messaging.md §3.2, §3.6): the initiator
//! builds a session from a prekey bundle, the responder from the first pkmsg.
//!
//! 1. Initiator: verify the signed prekey's XEdDSA signature, draw a base key `EKa`.
//! 2. Both: `ms = FF×32 || DH(IKa,SPKb) || DH(EKa,IKb) || DH(EKa,SPKb) [|| DH(EKa,OPKb)]`,
//!    `(RK0, CK0) = HKDF(ms, "WhisperText")`.
//! 3. Initiator: receiving chain `CK0` under `SPKb`; first ratchet key `A1`, one root step
//!    against `SPKb` gives the sending chain; pkmsgs carry the pending prekey data.
//! 4. Responder: sending chain `CK0` with `SPKb` as ratchet key pair; the first message's
//!    ratchet key then triggers the usual DH step.

use super::error::{Result, SignalError};
use super::kdf;
use super::keys::{KeyPair, LocalIdentity, PublicKey};
use super::ratchet::{NewState, PendingPreKey, SessionState};
use super::wire::PreKeySignalMessage;

const DISCONTINUITY: [u8; 32] = [0xFF; 32];

/// One device's published keys, from the `encrypt` IQ (§6.4). Keys are the 32 raw bytes.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PreKeyBundle {
    /// The device's registration id.
    pub registration_id: u32,
    /// The device's identity key.
    pub identity_key: PublicKey,
    /// The signed prekey's id.
    pub signed_pre_key_id: u32,
    /// The signed prekey.
    pub signed_pre_key: PublicKey,
    /// XEdDSA signature by the identity key over `05 || signed_pre_key`.
    pub signed_pre_key_signature: [u8; 64],
    /// A one-time prekey and its id, when the server had one left.
    pub pre_key: Option<(u32, PublicKey)>,
}

/// Builds the initiator's state from `bundle` with the given base and first ratchet keys.
///
/// # Errors
/// [`SignalError::InvalidSignature`] when the signed prekey's signature does not verify.
pub(crate) fn initiate(
    own: &LocalIdentity,
    bundle: &PreKeyBundle,
    base: KeyPair,
    ratchet: KeyPair,
) -> Result<SessionState> {
    if !bundle.identity_key.verify_signature(
        &bundle.signed_pre_key.serialize(),
        &bundle.signed_pre_key_signature,
    ) {
        return Err(SignalError::InvalidSignature);
    }
    let mut ms = DISCONTINUITY.to_vec();
    ms.extend_from_slice(own.key_pair.private.agree(&bundle.signed_pre_key).expose());
    ms.extend_from_slice(base.private.agree(&bundle.identity_key).expose());
    ms.extend_from_slice(base.private.agree(&bundle.signed_pre_key).expose());
    if let Some((_, opk)) = &bundle.pre_key {
        ms.extend_from_slice(base.private.agree(opk).expose());
    }
    let (root0, chain0) = kdf::from_master_secret(&ms);
    let (root1, sending) = root0.step(&bundle.signed_pre_key, &ratchet.private);
    Ok(SessionState::new(NewState {
        local_identity: own.key_pair.public,
        remote_identity: bundle.identity_key,
        local_registration_id: own.registration_id,
        remote_registration_id: bundle.registration_id,
        root_key: root1,
        sending_ratchet: ratchet,
        sending_chain: sending,
        receiving: Some((bundle.signed_pre_key, chain0)),
        pending_pre_key: Some(PendingPreKey {
            pre_key_id: bundle.pre_key.map(|(id, _)| id),
            signed_pre_key_id: bundle.signed_pre_key_id,
            base_key: base.public,
        }),
        base_key: base.public,
    }))
}

/// Builds the responder's state from a pkmsg and our prekeys it names.
pub(crate) fn respond(
    own: &LocalIdentity,
    message: &PreKeySignalMessage,
    signed_pre_key: &KeyPair,
    one_time_pre_key: Option<&KeyPair>,
) -> SessionState {
    let their_identity = message.identity_key();
    let their_base = message.base_key();
    let mut ms = DISCONTINUITY.to_vec();
    ms.extend_from_slice(signed_pre_key.private.agree(their_identity).expose());
    ms.extend_from_slice(own.key_pair.private.agree(their_base).expose());
    ms.extend_from_slice(signed_pre_key.private.agree(their_base).expose());
    if let Some(opk) = one_time_pre_key {
        ms.extend_from_slice(opk.private.agree(their_base).expose());
    }
    let (root0, chain0) = kdf::from_master_secret(&ms);
    SessionState::new(NewState {
        local_identity: own.key_pair.public,
        remote_identity: *their_identity,
        local_registration_id: own.registration_id,
        remote_registration_id: message.registration_id(),
        root_key: root0,
        sending_ratchet: signed_pre_key.clone(),
        sending_chain: chain0,
        receiving: None,
        pending_pre_key: None,
        base_key: *their_base,
    })
}
