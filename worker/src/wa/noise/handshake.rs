//! The XX message flow, initiator and responder (wa-protocol.md §2.3). Each side is a value
//! consumed by its next step: `ClientHandshake` waits for the ServerHello and `finish` turns it
//! into a [`NoiseTransport`]; `ServerHandshake` waits for the ClientFinish likewise.

use prost::Message;

use super::cert::{verify_chain, TrustPolicy};
use super::symmetric::SymmetricState;
use super::transport::NoiseTransport;
use super::HandshakeError;
use crate::wa::frame::INTRO;
use crate::wa::proto::{ClientFinish, ClientHello, HandshakeMessage, ServerHello};
use crate::wa::xeddsa::{dh, public_key};

/// The client side, after sending ClientHello: it expects the ServerHello.
#[derive(Debug)]
pub struct ClientHandshake {
    state: SymmetricState,
    ephemeral: Secret32,
}

/// What the client holds once the handshake is done.
#[derive(Debug)]
pub struct ClientFinished {
    /// The serialized ClientFinish `HandshakeMessage` to send.
    pub client_finish: Vec<u8>,
    /// The transport keys.
    pub transport: NoiseTransport,
    /// The server's (verified) static key.
    pub server_static: [u8; 32],
}

impl ClientHandshake {
    /// Starts a handshake with a fresh `ephemeral` private key; returns the ClientHello
    /// `HandshakeMessage` bytes to send after the intro.
    pub fn start(ephemeral: [u8; 32]) -> (ClientHandshake, Vec<u8>) {
        let mut state = SymmetricState::new(&INTRO);
        let ephemeral_public = public_key(&ephemeral);
        state.mix_hash(&ephemeral_public);
        let hello = HandshakeMessage {
            client_hello: Some(ClientHello {
                ephemeral: Some(ephemeral_public.to_vec()),
                ..Default::default()
            }),
            ..Default::default()
        };
        (
            ClientHandshake {
                state,
                ephemeral: Secret32(ephemeral),
            },
            hello.encode_to_vec(),
        )
    }

    /// Reads the ServerHello, verifies the certificate chain under `trust`, and answers with
    /// the client's Noise static key `noise_private` and `payload` (a serialized ClientPayload).
    ///
    /// # Errors
    /// A malformed or unauthenticated ServerHello, or a refused certificate chain.
    pub fn finish(
        mut self,
        server_hello: &[u8],
        noise_private: &[u8; 32],
        payload: &[u8],
        trust: &TrustPolicy,
    ) -> Result<ClientFinished, HandshakeError> {
        let hello = HandshakeMessage::decode(server_hello)
            .map_err(|_| HandshakeError::Malformed("server hello is not a HandshakeMessage"))?
            .server_hello
            .ok_or(HandshakeError::Malformed(
                "handshake message has no server hello",
            ))?;
        let ephemeral: [u8; 32] = hello
            .ephemeral
            .as_deref()
            .and_then(|e| e.try_into().ok())
            .ok_or(HandshakeError::Malformed(
                "server ephemeral is not 32 bytes",
            ))?;
        let static_ct = hello
            .r#static
            .ok_or(HandshakeError::Malformed("server hello has no static"))?;
        let payload_ct = hello
            .payload
            .ok_or(HandshakeError::Malformed("server hello has no payload"))?;

        let s = &mut self.state;
        s.mix_hash(&ephemeral);
        s.mix_key(&dh(&self.ephemeral.0, &ephemeral));
        let server_static: [u8; 32] = s
            .decrypt_and_hash(&static_ct)
            .ok_or(HandshakeError::Decrypt("server static"))?
            .try_into()
            .map_err(|_| HandshakeError::Malformed("server static is not 32 bytes"))?;
        s.mix_key(&dh(&self.ephemeral.0, &server_static));
        let chain = s
            .decrypt_and_hash(&payload_ct)
            .ok_or(HandshakeError::Decrypt("certificate chain"))?;
        verify_chain(&chain, &server_static, trust)?;

        let static_enc = s.encrypt_and_hash(&public_key(noise_private));
        s.mix_key(&dh(noise_private, &ephemeral));
        let payload_enc = s.encrypt_and_hash(payload);
        let client_finish = HandshakeMessage {
            client_finish: Some(ClientFinish {
                r#static: Some(static_enc),
                payload: Some(payload_enc),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let (write, read) = self.state.split();
        Ok(ClientFinished {
            client_finish,
            transport: NoiseTransport::new(write, read),
            server_static,
        })
    }
}

/// The server side, after sending ServerHello: it expects the ClientFinish.
#[derive(Debug)]
pub struct ServerHandshake {
    state: SymmetricState,
    ephemeral: Secret32,
}

/// What the server holds once the handshake is done.
#[derive(Debug)]
pub struct ServerFinished {
    /// The transport keys.
    pub transport: NoiseTransport,
    /// The client's Noise static public key (its identity at login).
    pub client_static: [u8; 32],
    /// The decrypted ClientPayload bytes.
    pub payload: Vec<u8>,
}

impl ServerHandshake {
    /// Answers a ClientHello with the server's `ephemeral` and `static_private` keys and the
    /// serialized `cert_chain`; returns the ServerHello `HandshakeMessage` bytes.
    ///
    /// # Errors
    /// A ClientHello without a 32-byte ephemeral key.
    pub fn respond(
        client_hello: &[u8],
        ephemeral: [u8; 32],
        static_private: &[u8; 32],
        cert_chain: &[u8],
    ) -> Result<(ServerHandshake, Vec<u8>), HandshakeError> {
        let client_ephemeral: [u8; 32] = HandshakeMessage::decode(client_hello)
            .map_err(|_| HandshakeError::Malformed("client hello is not a HandshakeMessage"))?
            .client_hello
            .and_then(|h| h.ephemeral)
            .and_then(|e| e.try_into().ok())
            .ok_or(HandshakeError::Malformed(
                "client ephemeral is not 32 bytes",
            ))?;
        Ok(Self::respond_from(
            SymmetricState::new(&INTRO),
            &client_ephemeral,
            ephemeral,
            static_private,
            cert_chain,
        ))
    }

    /// The ServerHello from a symmetric state the caller initialised (an XXfallback answer to
    /// a refused IK attempt starts from the XXfallback name, §2.6), for `client_ephemeral`;
    /// the ClientFinish is then read as in XX.
    pub fn respond_from(
        mut state: SymmetricState,
        client_ephemeral: &[u8; 32],
        ephemeral: [u8; 32],
        static_private: &[u8; 32],
        cert_chain: &[u8],
    ) -> (ServerHandshake, Vec<u8>) {
        state.mix_hash(client_ephemeral);
        let ephemeral_public = public_key(&ephemeral);
        state.mix_hash(&ephemeral_public);
        state.mix_key(&dh(&ephemeral, client_ephemeral));
        let static_enc = state.encrypt_and_hash(&public_key(static_private));
        state.mix_key(&dh(static_private, client_ephemeral));
        let payload_enc = state.encrypt_and_hash(cert_chain);
        let hello = HandshakeMessage {
            server_hello: Some(ServerHello {
                ephemeral: Some(ephemeral_public.to_vec()),
                r#static: Some(static_enc),
                payload: Some(payload_enc),
            }),
            ..Default::default()
        };
        (
            ServerHandshake {
                state,
                ephemeral: Secret32(ephemeral),
            },
            hello.encode_to_vec(),
        )
    }

    /// Reads the ClientFinish.
    ///
    /// # Errors
    /// A malformed or unauthenticated ClientFinish.
    pub fn finish(mut self, client_finish: &[u8]) -> Result<ServerFinished, HandshakeError> {
        let finish = HandshakeMessage::decode(client_finish)
            .map_err(|_| HandshakeError::Malformed("client finish is not a HandshakeMessage"))?
            .client_finish
            .ok_or(HandshakeError::Malformed(
                "handshake message has no client finish",
            ))?;
        let static_ct = finish
            .r#static
            .ok_or(HandshakeError::Malformed("client finish has no static"))?;
        let payload_ct = finish
            .payload
            .ok_or(HandshakeError::Malformed("client finish has no payload"))?;
        let s = &mut self.state;
        let client_static: [u8; 32] = s
            .decrypt_and_hash(&static_ct)
            .ok_or(HandshakeError::Decrypt("client static"))?
            .try_into()
            .map_err(|_| HandshakeError::Malformed("client static is not 32 bytes"))?;
        s.mix_key(&dh(&self.ephemeral.0, &client_static));
        let payload = s
            .decrypt_and_hash(&payload_ct)
            .ok_or(HandshakeError::Decrypt("client payload"))?;
        let (read, write) = self.state.split();
        Ok(ServerFinished {
            transport: NoiseTransport::new(write, read),
            client_static,
            payload,
        })
    }
}

/// A private key whose `Debug` prints nothing.
struct Secret32([u8; 32]);

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> [u8; 32] {
        hex::decode(s).expect("hex").try_into().expect("32 bytes")
    }
    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    // wa-protocol.md §11.2.1: the full deterministic handshake against the mock PKI.
    const CLIENT_EPH: &str = "30939c5adddec942290b637530898a70f2d32453e5241f30a0550780e7586b47";
    const SERVER_EPH: &str = "68bc9f216fcd9aa3a07413eacdc4e6b643401460afcdd040e8b0e6d0d931fa4d";
    const SERVER_STATIC: &str = "a861cce65a2a6d0bdb4a6fedfbb38d472527611b63859d627aa28eda15560951";
    const CLIENT_NOISE: &str = "80d0a33f1b6f824cbba16ab8f17c2da95278d43143717835b3446f114c89ba6d";
    const ROOT_PUB: &str = "f8e7fca6abdf4bed0de8df8a1e6ca1640fd9a0159b555273a7318d04873eb71e";
    const CERT_CHAIN: &str = "0a760a32080210011a2024600a71234d3d5544e388ee904d587a548c4eed4c9f12ca3166f066ace9e8612080e2cfaa062880ae99a40f1240caeb3d04937399dcce689ffe86c918f8831e20d980cd2adb57b5dc05de55fa45478316abc512d3404f363bf49a5bf70ee58bc282d87fbfef3120d46106d6880212760a32080110001a202217b50631f081c7107f98087681e70544162cd90a636c0132ac0420005c120d2080e2cfaa062880ae99a40f1240ed3814fd0fd3059b707ca31834963f5436e88765aa9a0e8accea5b187f8e0728c92b05fb5b0373e0a8926ecea3f5a25997d9b73d491851f859e9d1866328438a";
    const CLIENT_PAYLOAD: &str = "088784b4f73918012a36080e120b080210b81718c5a3cfed031a0330303022033030302a03302e313a074465736b746f704203302e3150005a02656e620255533202200060016801900102880201";
    const SERVER_HELLO: &str = "1ad7020a207c0e32c30ac0a5a0541418aeb3949dba9dd968ffb8e83f52127fed6cccbb930a123027fb5b75cd65e531e3d8279851dfe1b1264815d691a939469811fb19cdba1d4c2ed146573b6d1b036d1aaa2a419b985f1a800209615d55db7f30987b2037b9f9642b87cf1d0a7dd7f66468ba3c7a881881594b5b92df8e21fbadee629210e7d23470ef5b35c5226a6bfb476a95b99b2a670e367d1b764842c4f9338d2a2f15aaa2d30821a264d4b1f517213a92b9313ab1fa8913a1bea382b0f77925ec354a56c1349ccf5a48ce9c7284d4a2669dd6fd0832c513d0c941b6a6c6227ceeb0e1b7f599660e326d48d330f2c5352138e4c61efb00ccc4f84625fb0e48dd9353dfe48592a398805ebfbcf31a86b4c5ffa10dac3fe93c5493a2ea5b31258d844ce5cc084b98e30e953a63fec7c9fa391b1827a4665a1185c1a9cbef81435f3a49c509e3cd7bb315c29f0f4f873211dc7837af92e44f";
    const CLIENT_FINISH: &str = "2292010a308379bd9180126583dba2e22686a05d6ee68251df4c93ddd6e674a2198ac83dbcb2c9f1c6e851070df1fa6d3f256dd519125e2b10692c025e75b5fd659c4abeef02cd62ac78de02c73cad3ae6e803f248d4edf58013be3c4cfca5d423835c194773d6c6bead62aefeb0d88bab6692090e15ad602b34b685a1454049b613ef542366a78768a31823c67dc2703e6080537d";

    fn trust() -> TrustPolicy {
        TrustPolicy {
            root: k(ROOT_PUB),
            now_unix: 1_800_000_000,
        }
    }

    #[test]
    fn client_reproduces_the_derived_handshake_byte_for_byte() {
        let (client, hello) = ClientHandshake::start(k(CLIENT_EPH));
        assert_eq!(
            hex::encode(&hello),
            "12220a20f01e3feed2953d4221feddad1b6baa06ee321666eb0e170d33428905b0057d4e"
        );
        let done = client
            .finish(
                &h(SERVER_HELLO),
                &k(CLIENT_NOISE),
                &h(CLIENT_PAYLOAD),
                &trust(),
            )
            .expect("handshake completes");
        assert_eq!(hex::encode(&done.client_finish), CLIENT_FINISH);
        let mut transport = done.transport;
        // First client frame: <iq id="1.2-1" xmlns="w:p" type="get" to=s.whatsapp.net/>.
        assert_eq!(
            hex::encode(transport.encrypt(&h("00f8091908ff831b2a1f1657042911fa0003"))),
            "0af45cdd49ed3a1aa3f2032494232071b52351563e1872c54a1de332ab79f35d6445"
        );
        assert_eq!(
            transport
                .decrypt(&h("bb17e255831f8142b6c786eb2879806583cf5d625aa954d66756ebcd9f1e7a9ea09a8e3f96c35b0b6abd37602a"))
                .expect("server frame 0"),
            h("00f8074c1aff0517000000005cee0476f70102ff88100000000000001f")
        );
    }

    #[test]
    fn server_reproduces_the_derived_handshake_byte_for_byte() {
        let client_hello =
            h("12220a20f01e3feed2953d4221feddad1b6baa06ee321666eb0e170d33428905b0057d4e");
        let (server, hello) = ServerHandshake::respond(
            &client_hello,
            k(SERVER_EPH),
            &k(SERVER_STATIC),
            &h(CERT_CHAIN),
        )
        .expect("responds");
        assert_eq!(hex::encode(hello), SERVER_HELLO);
        let done = server.finish(&h(CLIENT_FINISH)).expect("finishes");
        assert_eq!(done.client_static, public_key(&k(CLIENT_NOISE)));
        assert_eq!(done.payload, h(CLIENT_PAYLOAD));
        let mut transport = done.transport;
        assert_eq!(
            hex::encode(transport.encrypt(&h("00f8074c1aff0517000000005cee0476f70102ff88100000000000001f"))),
            "bb17e255831f8142b6c786eb2879806583cf5d625aa954d66756ebcd9f1e7a9ea09a8e3f96c35b0b6abd37602a"
        );
    }

    #[test]
    fn random_keys_agree_and_tampering_is_detected() {
        use crate::wa::noise::cert::issue_chain;
        use crate::wa::xeddsa::generate_private;
        let root = generate_private();
        let inter = generate_private();
        let server_static = generate_private();
        let chain = issue_chain(
            &root,
            &inter,
            &public_key(&server_static),
            (1, 2),
            (0, u64::MAX),
        );
        let trust = TrustPolicy {
            root: public_key(&root),
            now_unix: 1_800_000_000,
        };
        let noise = generate_private();

        let (client, hello) = ClientHandshake::start(generate_private());
        let (server, server_hello) =
            ServerHandshake::respond(&hello, generate_private(), &server_static, &chain)
                .expect("respond");
        let client_done = client
            .finish(&server_hello, &noise, b"payload", &trust)
            .expect("client");
        let server_done = server.finish(&client_done.client_finish).expect("server");
        assert_eq!(server_done.client_static, public_key(&noise));
        let (mut c, mut s) = (client_done.transport, server_done.transport);
        for i in 0..3u8 {
            assert_eq!(s.decrypt(&c.encrypt(&[i])).expect("c->s"), vec![i]);
            assert_eq!(c.decrypt(&s.encrypt(&[i, i])).expect("s->c"), vec![i, i]);
        }
        let mut bad = c.encrypt(b"x");
        bad[0] ^= 1;
        assert!(s.decrypt(&bad).is_err());
        assert_eq!(
            s.decrypt(&c.encrypt(b"y")).expect("counters stay in step"),
            b"y"
        );

        let (client, hello) = ClientHandshake::start(generate_private());
        let (_, mut server_hello) =
            ServerHandshake::respond(&hello, generate_private(), &server_static, &chain)
                .expect("respond");
        let last = server_hello.len() - 1;
        server_hello[last] ^= 1;
        assert!(matches!(
            client.finish(&server_hello, &noise, b"p", &trust),
            Err(HandshakeError::Decrypt(_))
        ));
    }

    #[test]
    fn client_completes_the_real_captured_server_hello_under_whatsapps_root() {
        // wa-protocol.md §11.1.1: a ServerHello captured from WhatsApp, rebuilt from its parts.
        let server_hello = HandshakeMessage {
            server_hello: Some(ServerHello {
                ephemeral: Some(h("27692cf5d6a08e51f2d601f2e475378456bda16f96255c5121d081d0aa4a815d")),
                r#static: Some(h("0addd1ce96c55699824fc20ef2a73928dd8168bc29ef863bdea6dc69002b00054add28f7711e3a7dff984d3f31badaa2")),
                payload: Some(h("c4f948e737857d6bd675fa0a84f38ed784685b784402da53f972388a8aa3398f01be799862907d43cce7a49858023ec66dc909d1eac245f842661360804acf4975801ca0a156f876ba6004cc2f1241f761f753c516cef59fb3c6b95d39ad6d3540caa40b361bfbb7189eaa2d331e086870f2bd846bc6653cf2887387ba25268c9923dec5ecdc5ee37507680ba6906550f9991f6a60b2dc74803c6df8d6df352f206c376b0bb3d7d17dca91e3999f73d6dc6469e59281bc18c22fd1e7d85467b3f17fafc141a62c6fd92d364310d5b32493c9f2c77817aa4d901aef2538858b157d46ea247371a9c2f577171796fa7be059d975dddee115d5aa967602b02a93be36")),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let (client, _) = ClientHandshake::start(k(
            "b8de0b5ebad3e7879fa659c0d27baa6c3e3f32a10f7c4cb2613cb4182fe83047",
        ));
        let whatsapp = TrustPolicy {
            root: crate::wa::noise::cert::WA_ROOT_KEY,
            now_unix: 1_750_000_000,
        };
        let done = client
            .finish(&server_hello, &k(CLIENT_NOISE), b"payload", &whatsapp)
            .expect("the real server's hello decrypts and its chain verifies");
        assert_eq!(
            hex::encode(done.server_static),
            "5854d333d8e13975abd6597bbaddd49d6935ced25c93a44bd3ade508f2bec330"
        );
    }

    #[test]
    fn a_chain_under_an_untrusted_root_is_refused() {
        let (client, _) = ClientHandshake::start(k(CLIENT_EPH));
        let untrusted = TrustPolicy {
            root: crate::wa::noise::cert::WA_ROOT_KEY,
            ..trust()
        };
        let err = client
            .finish(
                &h(SERVER_HELLO),
                &k(CLIENT_NOISE),
                &h(CLIENT_PAYLOAD),
                &untrusted,
            )
            .expect_err("refused");
        assert!(
            err.to_string().contains("intermediate certificate"),
            "{err}"
        );
    }
}
