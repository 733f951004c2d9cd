//! The Noise handshake's parsers, both sides, and the server certificate chain.
//!
//! Modes (first byte):
//! - 0: every handshake and pairing protobuf `prost` decodes (HandshakeMessage, CertChain,
//!   its certificates and details, ClientPayload, the ADV identities);
//! - 1: `cert::verify_chain` on a whole chain;
//! - 2: a leaf `CertDetails`, signed here by the intermediate, in an otherwise valid chain,
//!   so the mutations get past the signature to the details' parsing and checks;
//! - 3: the same for the intermediate's details, signed by the root;
//! - 4: `ServerHandshake::respond` to a ClientHello;
//! - 5: `ClientHandshake::finish` on a ServerHello;
//! - 6: a ServerHello that carries these bytes as its encrypted certificate chain, through
//!   `ClientHandshake::finish` (the real decrypt-then-verify path);
//! - 7: `ServerHandshake::finish` on a ClientFinish.
//!
//! Modes 1 to 7 run XEdDSA or X25519, slow in a debug build: mode 0 has most of the seeds.

use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use worker::wa::noise::cert::{verify_chain, TrustPolicy, ROOT_SERIAL};
use worker::wa::noise::{ClientHandshake, NoiseTransport, ServerHandshake};
use worker::wa::proto::{
    AdvDeviceIdentity, AdvSignedDeviceIdentity, AdvSignedDeviceIdentityHmac, AppVersion, CertChain,
    CertDetails, ClientPayload, DevicePairingRegistrationData, DeviceProps, HandshakeMessage,
    NoiseCertificate, UserAgent, WebInfo,
};
use worker::wa::xeddsa;

use crate::{mode, with_mode, Target};

const MODES: u8 = 8;
/// Keys and certificates derive from this, whatever `--seed` says, so a failing input
/// replays alone.
const CONTEXT_SEED: u64 = 0x4841_4E44_5348_414B;
/// The instant the chain's validity is checked at.
const NOW: u64 = 1_800_000_000;
/// Signature nonce: signing stays deterministic.
const NONCE: [u8; 64] = [0x5A; 64];

/// Real pairing protobufs (wa-protocol.md §11.2.3).
const ADV_HMAC: &str = "0a760a100887ad4b1080e2cfaa0618012000280012206aa526f3bab59120df91afd4c62d1bbc3f624ce0835cb7e3d39ee2d76d1282471a40f2997b7bc361ee8aabebbf27874681764d19cde68cf9bdaa46fca76900e281a31a1cabfc0c2372661cf6da80602edcbbe365eafb27caa6a699a29033badd970c1220cabd1b48aec8c4e7189e22c6d887c9e2fe48e8b0398eede61aa581a049318ad91800";
const ADV_SIGNED: &str = "0a100887ad4b1080e2cfaa061801200028001a40f2997b7bc361ee8aabebbf27874681764d19cde68cf9bdaa46fca76900e281a31a1cabfc0c2372661cf6da80602edcbbe365eafb27caa6a699a29033badd970c22403898acbd75b30d41fdd30acedca5afe7ae338bd12f3495e78269c50c1e2c72543b10b22fbca207518ea3a876222da73fb4273486eeaaf04e790fe91dcce7c407";

/// Protobuf keys of the handshake messages and boundary varints.
const DICTIONARY: &[&[u8]] = &[
    &[0x12, 0x22, 0x0A, 0x20],
    &[0x1A, 0x00],
    &[0x22, 0x00],
    &[0x0A, 0x20],
    &[0x0A, 0x00],
    &[0x12, 0x40],
    &[0x12, 0x00],
    &[0x08, 0x00],
    &[0x10, 0x00],
    &[0x1A, 0x20],
    &[
        0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
    ],
    &[0x28, 0x00],
    &[0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
    &[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
];

/// The fuzzer's own PKI and the keys of one handshake.
#[derive(Debug)]
pub struct Pki {
    root: [u8; 32],
    intermediate: [u8; 32],
    server_static: [u8; 32],
    client_noise: [u8; 32],
    client_ephemeral: [u8; 32],
    server_ephemeral: [u8; 32],
    client_hello: Vec<u8>,
}

impl Pki {
    pub fn new(rng: &mut StdRng) -> Self {
        let mut key = || xeddsa::clamp(rng.gen());
        let (root, intermediate, server_static) = (key(), key(), key());
        let (client_noise, client_ephemeral, server_ephemeral) = (key(), key(), key());
        Self {
            root,
            intermediate,
            server_static,
            client_noise,
            client_ephemeral,
            server_ephemeral,
            client_hello: ClientHandshake::start(client_ephemeral).1,
        }
    }

    pub fn trust(&self) -> TrustPolicy {
        TrustPolicy {
            root: xeddsa::public_key(&self.root),
            now_unix: NOW,
        }
    }

    fn intermediate_details(&self) -> Vec<u8> {
        details(1, ROOT_SERIAL, xeddsa::public_key(&self.intermediate))
    }

    fn leaf_details(&self) -> Vec<u8> {
        details(2, 1, xeddsa::public_key(&self.server_static))
    }

    /// The intermediate's certificate, signed by the root.
    fn intermediate_certificate(&self, details: &[u8]) -> NoiseCertificate {
        certificate(details, &self.root)
    }

    /// The leaf's certificate, signed by the intermediate.
    fn leaf_certificate(&self, details: &[u8]) -> NoiseCertificate {
        certificate(details, &self.intermediate)
    }

    pub fn chain(&self) -> Vec<u8> {
        chain_of(
            self.intermediate_certificate(&self.intermediate_details()),
            self.leaf_certificate(&self.leaf_details()),
        )
    }

    /// The server's answer to [`Self::client_hello`], carrying `chain`.
    fn server_hello(&self, chain: &[u8]) -> Option<(ServerHandshake, Vec<u8>)> {
        ServerHandshake::respond(
            &self.client_hello,
            self.server_ephemeral,
            &self.server_static,
            chain,
        )
        .ok()
    }

    /// A whole handshake: the client's transport, the server's, and the ClientFinish bytes.
    pub fn handshake(&self) -> Option<(NoiseTransport, NoiseTransport, Vec<u8>)> {
        let (client, _) = ClientHandshake::start(self.client_ephemeral);
        let (server, server_hello) = self.server_hello(&self.chain())?;
        let client = client
            .finish(
                &server_hello,
                &self.client_noise,
                &client_payload(),
                &self.trust(),
            )
            .ok()?;
        let server = server.finish(&client.client_finish).ok()?;
        Some((client.transport, server.transport, client.client_finish))
    }
}

fn details(serial: u32, issuer_serial: u32, key: [u8; 32]) -> Vec<u8> {
    CertDetails {
        serial: Some(serial),
        issuer_serial: Some(issuer_serial),
        key: Some(key.to_vec()),
        not_before: Some(NOW - 86_400),
        not_after: Some(NOW + 86_400),
    }
    .encode_to_vec()
}

fn chain_of(intermediate: NoiseCertificate, leaf: NoiseCertificate) -> Vec<u8> {
    CertChain {
        leaf: Some(leaf),
        intermediate: Some(intermediate),
    }
    .encode_to_vec()
}

fn certificate(details: &[u8], signer: &[u8; 32]) -> NoiseCertificate {
    NoiseCertificate {
        details: Some(details.to_vec()),
        signature: Some(xeddsa::sign_with_nonce(signer, details, &NONCE).to_vec()),
    }
}

/// A ClientPayload as a paired client sends it, with the registration data as a new one does.
fn client_payload() -> Vec<u8> {
    ClientPayload {
        username: Some(15_551_234_567),
        passive: Some(false),
        user_agent: Some(UserAgent {
            platform: Some(14),
            app_version: Some(AppVersion {
                primary: Some(2),
                secondary: Some(3000),
                tertiary: Some(1_020_000_000),
                ..Default::default()
            }),
            mcc: Some("000".into()),
            mnc: Some("000".into()),
            os_version: Some("0.1".into()),
            manufacturer: Some(String::new()),
            device: Some("Desktop".into()),
            os_build_number: Some("0.1".into()),
            release_channel: Some(0),
            locale_language_iso639_1: Some("en".into()),
            locale_country_iso3166_1_alpha2: Some("US".into()),
        }),
        web_info: Some(WebInfo {
            ref_token: None,
            version: None,
            web_sub_platform: Some(0),
        }),
        push_name: None,
        connect_type: Some(1),
        connect_reason: Some(1),
        device: Some(2),
        device_pairing_data: Some(DevicePairingRegistrationData {
            e_regid: Some(vec![0, 0, 1, 2]),
            e_keytype: Some(vec![5]),
            e_ident: Some(vec![7; 32]),
            e_skey_id: Some(vec![0, 0, 1]),
            e_skey_val: Some(vec![8; 32]),
            e_skey_sig: Some(vec![9; 64]),
            build_hash: Some(vec![1; 16]),
            device_props: Some(
                DeviceProps {
                    os: Some("wafleet".into()),
                    version: Some(AppVersion::default()),
                    platform_type: Some(0),
                    require_full_sync: Some(false),
                }
                .encode_to_vec(),
            ),
        }),
        lc: None,
        pull: Some(true),
        lid_db_migrated: None,
    }
    .encode_to_vec()
}

/// The handshake parsers, over one fixed PKI.
#[derive(Debug)]
pub struct Handshake {
    pki: Pki,
    trust: TrustPolicy,
    server_static: [u8; 32],
    chain: Vec<u8>,
    intermediate_details: Vec<u8>,
    leaf_details: Vec<u8>,
    /// The valid certificates, signed once: modes 2 and 3 re-sign only the other one.
    intermediate: NoiseCertificate,
    leaf: NoiseCertificate,
    server_hello: Vec<u8>,
    client_finish: Vec<u8>,
}

impl Handshake {
    pub fn new() -> Self {
        let pki = Pki::new(&mut StdRng::seed_from_u64(CONTEXT_SEED));
        let chain = pki.chain();
        let server_hello = pki
            .server_hello(&chain)
            .map(|(_, hello)| hello)
            .unwrap_or_default();
        let client_finish = pki
            .handshake()
            .map(|(_, _, finish)| finish)
            .unwrap_or_default();
        Self {
            trust: pki.trust(),
            server_static: xeddsa::public_key(&pki.server_static),
            intermediate_details: pki.intermediate_details(),
            leaf_details: pki.leaf_details(),
            intermediate: pki.intermediate_certificate(&pki.intermediate_details()),
            leaf: pki.leaf_certificate(&pki.leaf_details()),
            chain,
            server_hello,
            client_finish,
            pki,
        }
    }
}

impl Target for Handshake {
    fn seeds(&self) -> Vec<Vec<u8>> {
        let hex = |h: &str| hex::decode(h).unwrap_or_default();
        let hello = self.pki.client_hello.clone();
        let mut seeds = Vec::new();
        for decoded in [
            &hello,
            &self.server_hello,
            &self.client_finish,
            &self.chain,
            &self.leaf_details,
            &client_payload(),
            &hex(ADV_HMAC),
            &hex(ADV_SIGNED),
        ] {
            seeds.push(with_mode(0, decoded));
        }
        seeds.push(with_mode(1, &self.chain));
        seeds.push(with_mode(2, &self.leaf_details));
        seeds.push(with_mode(3, &self.intermediate_details));
        seeds.push(with_mode(4, &hello));
        seeds.push(with_mode(5, &self.server_hello));
        seeds.push(with_mode(6, &self.chain));
        seeds.push(with_mode(7, &self.client_finish));
        seeds
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let (mode, data) = mode(input, MODES);
        let server_static = self.server_static;
        match mode {
            0 => decode_all(data),
            1 => verify_chain(data, &server_static, &self.trust).is_ok(),
            2 => {
                let chain = chain_of(self.intermediate.clone(), self.pki.leaf_certificate(data));
                verify_chain(&chain, &server_static, &self.trust).is_ok()
            }
            3 => {
                let chain = chain_of(self.pki.intermediate_certificate(data), self.leaf.clone());
                verify_chain(&chain, &server_static, &self.trust).is_ok()
            }
            4 => ServerHandshake::respond(
                data,
                self.pki.server_ephemeral,
                &self.pki.server_static,
                &self.chain,
            )
            .is_ok(),
            5 => {
                let (client, _) = ClientHandshake::start(self.pki.client_ephemeral);
                client
                    .finish(data, &self.pki.client_noise, b"payload", &self.trust)
                    .is_ok()
            }
            6 => {
                let (client, _) = ClientHandshake::start(self.pki.client_ephemeral);
                let Some((_, hello)) = self.pki.server_hello(data) else {
                    return false;
                };
                client
                    .finish(&hello, &self.pki.client_noise, b"payload", &self.trust)
                    .map_err(|e| e.to_string())
                    .is_ok()
            }
            _ => {
                let Some((server, _)) = self.pki.server_hello(&self.chain) else {
                    return false;
                };
                server.finish(data).is_ok()
            }
        }
    }
}

/// Every protobuf of the handshake and of pairing; `true` when any of them decodes.
fn decode_all(data: &[u8]) -> bool {
    let mut any = false;
    if let Ok(m) = HandshakeMessage::decode(data) {
        let _ = format!("{m:?}");
        any = true;
    }
    if let Ok(chain) = CertChain::decode(data) {
        for cert in [chain.leaf, chain.intermediate].into_iter().flatten() {
            if let Some(details) = cert.details {
                let _ = CertDetails::decode(&details[..]);
            }
        }
        any = true;
    }
    any |= CertDetails::decode(data).is_ok();
    if let Ok(payload) = ClientPayload::decode(data) {
        if let Some(props) = payload.device_pairing_data.and_then(|d| d.device_props) {
            let _ = DeviceProps::decode(&props[..]);
        }
        any = true;
    }
    if let Ok(hmac) = AdvSignedDeviceIdentityHmac::decode(data) {
        if let Some(details) = hmac.details {
            if let Ok(signed) = AdvSignedDeviceIdentity::decode(&details[..]) {
                if let Some(details) = signed.details {
                    let _ = AdvDeviceIdentity::decode(&details[..]);
                }
            }
        }
        any = true;
    }
    any |= AdvSignedDeviceIdentity::decode(data).is_ok();
    any |= AdvDeviceIdentity::decode(data).is_ok();
    any
}
