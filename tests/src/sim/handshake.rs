//! Noise IK and XXfallback, the server side (wa-protocol.md §2.6): the resumption handshake of
//! whatsapp-rust and WhatsApp Web. Plain XX stays with the worker's `ServerHandshake`.
//!
//! A ClientHello that carries `static` and `payload` is an IK attempt: the client already knows
//! the server's static key (the leaf certificate of an earlier XX handshake).
//!
//! 1. [`IkHello::open`]: `h = "Noise_IK_25519_AESGCM_SHA256"`, `mixHash(prologue)`,
//!    `mixHash(s_s.pub)`, `mixHash(e_c.pub)`, `mixKey(DH(s_s, e_c))`, `s_c = decryptAndHash(static)`,
//!    `mixKey(DH(s_s, s_c))`, `payload = decryptAndHash(payload)`. A ciphertext that does not
//!    authenticate (the client holds another server key, e.g. from an earlier run) gives `None`.
//! 2. Accept ([`IkOpened::accept`]): ServerHello `{ephemeral, payload}` without `static`;
//!    `mixHash(e_s.pub)`, `mixKey(DH(e_s, e_c))`, `mixKey(DH(e_s, s_c))`,
//!    `payload = encryptAndHash(certificate chain)`, `split()`. The client ignores the plaintext;
//!    the chain is what WhatsApp Web's own responder puts there.
//! 3. Refuse ([`respond_fallback`]): start over as `"Noise_XXfallback_25519_AESGCM_SHA256"`
//!    (36 bytes, so `h0 = SHA256(name)`) with the ephemeral key the client already sent, and
//!    answer exactly as XX does (ServerHello with `static`); the client's ClientFinish follows
//!    as in XX ([`FallbackResponder::finish`]).
//!
//! Either way the initiator writes with the first `split()` key and the responder with the
//! second, as in XX.

use prost::Message;
use worker::wa::frame::INTRO;
use worker::wa::noise::{
    HandshakeError, NoiseTransport, ServerFinished, ServerHandshake, SymmetricState,
};
use worker::wa::proto::{HandshakeMessage, ServerHello};
use worker::wa::xeddsa::{dh, public_key};

/// `"Noise_IK_25519_AESGCM_SHA256"` padded to 32 bytes.
pub(crate) const IK_NAME: &[u8] = b"Noise_IK_25519_AESGCM_SHA256\0\0\0\0";
/// `"Noise_XXfallback_25519_AESGCM_SHA256"`: 36 bytes, hashed.
pub(crate) const XX_FALLBACK_NAME: &[u8] = b"Noise_XXfallback_25519_AESGCM_SHA256";

/// What a ClientHello asks for.
#[derive(Debug)]
pub(crate) enum Hello {
    /// Plain XX: only the ephemeral key.
    Xx,
    /// IK: the ephemeral key, the encrypted static key and the encrypted ClientPayload.
    Ik(IkHello),
}

/// An IK ClientHello, not yet decrypted.
#[derive(Debug)]
pub(crate) struct IkHello {
    /// The client's ephemeral public key.
    pub(crate) ephemeral: [u8; 32],
    static_ct: Vec<u8>,
    payload_ct: Vec<u8>,
}

/// Tells XX from IK.
///
/// # Errors
/// A ClientHello that is not a `HandshakeMessage` or has no 32-byte ephemeral key.
pub(crate) fn classify(client_hello: &[u8]) -> Result<Hello, HandshakeError> {
    let hello = HandshakeMessage::decode(client_hello)
        .map_err(|_| HandshakeError::Malformed("client hello is not a HandshakeMessage"))?
        .client_hello
        .ok_or(HandshakeError::Malformed(
            "handshake message has no client hello",
        ))?;
    let ephemeral: [u8; 32] =
        hello
            .ephemeral
            .and_then(|e| e.try_into().ok())
            .ok_or(HandshakeError::Malformed(
                "client ephemeral is not 32 bytes",
            ))?;
    Ok(match (hello.r#static, hello.payload) {
        (Some(static_ct), Some(payload_ct)) => Hello::Ik(IkHello {
            ephemeral,
            static_ct,
            payload_ct,
        }),
        _ => Hello::Xx,
    })
}

impl IkHello {
    /// Step 1 with the server's static key; `None` when a ciphertext does not authenticate.
    pub(crate) fn open(&self, static_private: &[u8; 32]) -> Option<IkOpened> {
        let mut state = SymmetricState::named(IK_NAME, &INTRO);
        state.mix_hash(&public_key(static_private));
        state.mix_hash(&self.ephemeral);
        state.mix_key(&dh(static_private, &self.ephemeral));
        let client_static: [u8; 32] = state.decrypt_and_hash(&self.static_ct)?.try_into().ok()?;
        state.mix_key(&dh(static_private, &client_static));
        let payload = state.decrypt_and_hash(&self.payload_ct)?;
        Some(IkOpened {
            state,
            client_ephemeral: self.ephemeral,
            client_static,
            payload,
        })
    }
}

/// An IK ClientHello that decrypted: the server may accept it or fall back.
#[derive(Debug)]
pub(crate) struct IkOpened {
    state: SymmetricState,
    client_ephemeral: [u8; 32],
    /// The client's Noise static public key.
    pub(crate) client_static: [u8; 32],
    /// The ClientPayload bytes.
    pub(crate) payload: Vec<u8>,
}

impl IkOpened {
    /// Step 2: the ServerHello bytes (no `static`) and the finished handshake.
    pub(crate) fn accept(
        mut self,
        ephemeral: [u8; 32],
        cert_chain: &[u8],
    ) -> (Vec<u8>, ServerFinished) {
        let ephemeral_public = public_key(&ephemeral);
        let s = &mut self.state;
        s.mix_hash(&ephemeral_public);
        s.mix_key(&dh(&ephemeral, &self.client_ephemeral));
        s.mix_key(&dh(&ephemeral, &self.client_static));
        let payload = s.encrypt_and_hash(cert_chain);
        let hello = HandshakeMessage {
            server_hello: Some(ServerHello {
                ephemeral: Some(ephemeral_public.to_vec()),
                r#static: None,
                payload: Some(payload),
            }),
            ..Default::default()
        };
        let (read, write) = self.state.split();
        let finished = ServerFinished {
            transport: NoiseTransport::new(write, read),
            client_static: self.client_static,
            payload: self.payload,
        };
        (hello.encode_to_vec(), finished)
    }
}

/// Step 3: the XXfallback ServerHello for a client whose IK attempt was refused: XX's answer
/// from the XXfallback name and the ephemeral the client already sent; the ClientFinish is then
/// read as in XX.
pub(crate) fn respond_fallback(
    client_ephemeral: &[u8; 32],
    ephemeral: [u8; 32],
    static_private: &[u8; 32],
    cert_chain: &[u8],
) -> (ServerHandshake, Vec<u8>) {
    ServerHandshake::respond_from(
        SymmetricState::named(XX_FALLBACK_NAME, &INTRO),
        client_ephemeral,
        ephemeral,
        static_private,
        cert_chain,
    )
}
