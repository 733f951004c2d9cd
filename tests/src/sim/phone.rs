//! The phone that scans QR codes (wa-protocol.md §6.3, §6.5–§6.7, §10.3).
//!
//! 1. Parse the QR: `[https://wa.me/settings/linked_devices#]REF,NOISE,IDENTITY,ADV[,TYPE]`
//!    ([`Qr::parse`]).
//! 2. Find the live registration session that owns REF; refuse an unknown or expired ref, a QR
//!    whose noise or identity key is not the one that session presented, and a second scan.
//! 3. Make the phone number an account if it is new, allocate a device id and key index, build
//!    `ADVDeviceIdentity`, sign it with the account key (`06 00 || D || eIdent`), wrap it with
//!    the HMAC under the QR's adv secret, and return the `pair-success` IQ ([`scan`]).
//! 4. When the companion answers `pair-device-sign`, check that it signed exactly our `D` and
//!    kept our account signature, and verify its device signature
//!    (`06 01 || D || eIdent || accountKey`) under `eIdent` ([`verify_device_sign`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use prost::Message;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::time::Instant;
use worker::wa::binary::jid::DEFAULT_USER_SERVER;
use worker::wa::binary::{Jid, Node};
use worker::wa::proto::{AdvDeviceIdentity, AdvSignedDeviceIdentity, AdvSignedDeviceIdentityHmac};
use worker::wa::xeddsa;

use super::connection::Command;
use super::pairing::{RefStatus, RegistrationKeys};
use super::registry::{ConnId, ConnState, Device, DeviceState, Registry};

/// The deep-link prefix whatsmeow and Baileys put before the QR fields (§6.3).
pub const QR_PREFIX: &str = "https://wa.me/settings/linked_devices#";
/// The platform the phone reports in `pair-success` unless told otherwise.
pub const DEFAULT_PLATFORM: &str = "android";

const ACCOUNT_SIGNATURE_PREFIX: [u8; 2] = [6, 0];
const DEVICE_SIGNATURE_PREFIX: [u8; 2] = [6, 1];
/// `ADVEncryptionType.E2EE`.
const E2EE: i32 = 0;

/// The fields of a QR string.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Qr {
    /// The ref, as text.
    pub reference: String,
    /// The companion's Noise static public key.
    pub noise_public: [u8; 32],
    /// The companion's Signal identity public key.
    pub identity_public: [u8; 32],
    /// The adv secret, the HMAC key of `pair-success`.
    pub adv_secret: [u8; 32],
    /// The fifth field, the companion type, when present.
    pub client_type: Option<String>,
}

/// Why a scan was refused; each maps to an HTTP status in the control API.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum ScanError {
    /// The QR text does not have the documented shape.
    #[error("qr is malformed: {0}")]
    MalformedQr(&'static str),
    /// The phone number is not 5 to 19 digits without a leading zero.
    #[error("phone must be 5 to 19 digits without a leading zero")]
    BadPhone,
    /// No live registration session has this ref.
    #[error("no live registration session has this ref")]
    UnknownRef,
    /// The ref's time is up.
    #[error("the ref has expired")]
    ExpiredRef,
    /// The QR's noise or identity key is not the one the session presented.
    #[error("the qr's {0} key is not the one its registration connection presented")]
    KeyMismatch(&'static str),
    /// This session was scanned already.
    #[error("this registration session was scanned already")]
    AlreadyScanned,
    /// The connection went away before `pair-success` was written.
    #[error("the registration connection closed before pair-success was sent")]
    ConnectionGone,
}

impl Qr {
    /// Parses both shapes (with or without the deep-link prefix) and both lengths (4 or 5
    /// fields, §6.3).
    ///
    /// # Errors
    /// [`ScanError::MalformedQr`] naming the first bad field.
    pub fn parse(text: &str) -> Result<Self, ScanError> {
        let text = text.trim();
        let text = text.strip_prefix(QR_PREFIX).unwrap_or(text);
        let fields: Vec<&str> = text.split(',').collect();
        if !(4..=5).contains(&fields.len()) {
            return Err(ScanError::MalformedQr(
                "expected 4 or 5 comma-separated fields",
            ));
        }
        let key = |field: &str, name: &'static str| -> Result<[u8; 32], ScanError> {
            STANDARD
                .decode(field)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(ScanError::MalformedQr(name))
        };
        if fields[0].is_empty() {
            return Err(ScanError::MalformedQr("ref is empty"));
        }
        Ok(Self {
            reference: fields[0].to_owned(),
            noise_public: key(fields[1], "noise key is not 32 bytes of base64")?,
            identity_public: key(fields[2], "identity key is not 32 bytes of base64")?,
            adv_secret: key(fields[3], "adv secret is not 32 bytes of base64")?,
            client_type: fields.get(4).map(|t| (*t).to_owned()),
        })
    }
}

/// Checks a phone number: the user part of the account JID, sent back as a `uint64` username.
///
/// # Errors
/// [`ScanError::BadPhone`].
pub fn check_phone(phone: &str) -> Result<(), ScanError> {
    let digits = phone.bytes().all(|b| b.is_ascii_digit());
    if digits && (5..=19).contains(&phone.len()) && !phone.starts_with('0') {
        Ok(())
    } else {
        Err(ScanError::BadPhone)
    }
}

/// What the phone remembers between `pair-success` and the companion's reply.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct PendingPair {
    pub(crate) phone: String,
    pub(crate) device_id: u16,
    pub(crate) key_index: u32,
    /// The `pair-success` IQ's id.
    pub(crate) iq_id: String,
    /// `D`: the serialized `ADVDeviceIdentity`.
    pub(crate) details: Vec<u8>,
    pub(crate) account_public: [u8; 32],
    pub(crate) account_signature: [u8; 64],
    pub(crate) sent_at: Instant,
}

/// A scan that passed: the stanza to send and where.
#[derive(Debug)]
pub(crate) struct ScanPlan {
    pub(crate) conn: ConnId,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) pair_success: Node,
    /// `phone:device@s.whatsapp.net`.
    pub(crate) jid: Jid,
}

/// Steps 2 and 3: checks the scan against the live registration sessions and prepares the
/// `pair-success`. The device is recorded as pending.
pub(crate) fn scan(
    registry: &mut Registry,
    qr: &Qr,
    phone: &str,
    platform: &str,
    now: Instant,
    now_unix: u64,
) -> Result<ScanPlan, ScanError> {
    check_phone(phone)?;
    let mut expired = false;
    let mut found = None;
    for (id, entry) in registry.conns_mut() {
        let Some(registration) = entry.registration.as_ref() else {
            continue;
        };
        match registration.refs.status(&qr.reference, now) {
            RefStatus::Unknown => continue,
            RefStatus::Expired => expired = true,
            RefStatus::Live => {
                if entry.state != ConnState::Pairing || registration.pending.is_some() {
                    return Err(ScanError::AlreadyScanned);
                }
                if registration.noise_public != qr.noise_public {
                    return Err(ScanError::KeyMismatch("noise"));
                }
                if registration.keys.identity != qr.identity_public {
                    return Err(ScanError::KeyMismatch("identity"));
                }
                found = Some((id, registration.keys.clone(), entry.commands.clone()));
            }
        }
        break;
    }
    let Some((conn, keys, commands)) = found else {
        return Err(if expired {
            ScanError::ExpiredRef
        } else {
            ScanError::UnknownRef
        });
    };
    Ok(offer(
        registry,
        Offer {
            conn,
            commands,
            keys,
            noise_public: qr.noise_public,
            adv_secret: qr.adv_secret,
        },
        phone,
        platform,
        now,
        now_unix,
    ))
}

/// The companion the phone links, as its registration connection presented it.
pub(crate) struct Offer {
    pub(crate) conn: ConnId,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) keys: RegistrationKeys,
    pub(crate) noise_public: [u8; 32],
    /// The HMAC key of `pair-success`: the QR's, or the one derived with a pairing code.
    pub(crate) adv_secret: [u8; 32],
}

/// Step 3: makes `phone` an account if new, records the companion as a pending device and
/// builds its `pair-success`.
pub(crate) fn offer(
    registry: &mut Registry,
    offer: Offer,
    phone: &str,
    platform: &str,
    now: Instant,
    now_unix: u64,
) -> ScanPlan {
    let Offer {
        conn,
        commands,
        keys,
        noise_public,
        adv_secret,
    } = offer;
    let iq_id = registry.next_id().to_string();
    let account = registry.account_or_create(phone, now_unix);
    let (device_id, key_index) = account.allocate_device();
    let identity = AdvDeviceIdentity {
        raw_id: Some(account.raw_id),
        timestamp: Some(now_unix),
        key_index: Some(key_index),
        account_type: Some(E2EE),
        device_type: Some(E2EE),
    };
    let details = identity.encode_to_vec();
    let account_public = account.identity_public;
    let account_signature = xeddsa::sign(
        account.identity_private(),
        &[&ACCOUNT_SIGNATURE_PREFIX[..], &details, &keys.identity].concat(),
    );
    let container = adv_container(&details, &account_public, &account_signature, &adv_secret);
    let jid = Jid::device(phone, DEFAULT_USER_SERVER, device_id);
    let lid = Jid::device(account.lid.as_str(), "lid", device_id);
    account.devices.insert(
        device_id,
        Device {
            id: device_id,
            key_index,
            state: DeviceState::Pending,
            noise_public,
            keys,
            prekeys: Default::default(),
            uploaded: false,
            signed_identity: None,
            outbox: Vec::new(),
            relayed: Default::default(),
        },
    );
    let pair_success = pair_success_iq(&iq_id, now_unix, container, platform, &jid, &lid);
    if let Some(registration) = registry
        .conn_mut(conn)
        .and_then(|c| c.registration.as_mut())
    {
        registration.pending = Some(PendingPair {
            phone: phone.to_owned(),
            device_id,
            key_index,
            iq_id,
            details,
            account_public,
            account_signature,
            sent_at: now,
        });
    }
    ScanPlan {
        conn,
        commands,
        pair_success,
        jid,
    }
}

/// `ADVSignedDeviceIdentityHMAC{details = ADVSignedDeviceIdentity{D, accountKey, accountSig},
/// hmac = HMAC-SHA256(adv_secret, details), accountType = E2EE}` (§6.6, §10.3).
pub(crate) fn adv_container(
    details: &[u8],
    account_public: &[u8; 32],
    account_signature: &[u8; 64],
    adv_secret: &[u8; 32],
) -> Vec<u8> {
    let signed = AdvSignedDeviceIdentity {
        details: Some(details.to_vec()),
        account_signature_key: Some(account_public.to_vec()),
        account_signature: Some(account_signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac =
        Hmac::<Sha256>::new_from_slice(adv_secret).expect("HMAC takes keys of any length");
    mac.update(&signed);
    AdvSignedDeviceIdentityHmac {
        details: Some(signed),
        hmac: Some(mac.finalize().into_bytes().to_vec()),
        account_type: Some(E2EE),
    }
    .encode_to_vec()
}

/// The `pair-success` IQ (§6.5): JID-typed `jid`/`lid`, binary `device-identity`.
pub(crate) fn pair_success_iq(
    id: &str,
    now_unix: u64,
    container: Vec<u8>,
    platform: &str,
    jid: &Jid,
    lid: &Jid,
) -> Node {
    Node::new("iq")
        .jid_attr("from", Jid::server_jid())
        .attr("type", "set")
        .attr("id", id)
        .attr("xmlns", "md")
        .attr("t", now_unix.to_string())
        .children(vec![Node::new("pair-success").children(vec![
            Node::new("device-identity").bytes(container),
            Node::new("platform").attr("name", platform),
            Node::new("device")
                .jid_attr("jid", jid.clone())
                .jid_attr("lid", lid.clone()),
        ])])
}

/// Why a `pair-device-sign` reply was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub(crate) enum SignError {
    #[error("reply has no pair-device-sign/device-identity")]
    Missing,
    #[error("device-identity key-index is not the one sent")]
    KeyIndex,
    #[error("device-identity is not an ADVSignedDeviceIdentity")]
    Malformed,
    #[error("the signed details are not the ones the phone sent")]
    DetailsChanged,
    #[error("the account signature or key was changed")]
    AccountChanged,
    #[error("the device signature does not verify")]
    DeviceSignature,
}

/// Step 4: checks the companion's reply; returns the signed identity to keep (§6.7, §10.3).
/// `accountSignatureKey` may be absent (whatsmeow, Baileys) or present (whatsapp-rust).
pub(crate) fn verify_device_sign(
    pending: &PendingPair,
    identity: &[u8; 32],
    reply: &Node,
) -> Result<Vec<u8>, SignError> {
    let node = reply
        .child("pair-device-sign")
        .and_then(|s| s.child("device-identity"))
        .ok_or(SignError::Missing)?;
    if node.attr_str("key-index").as_deref() != Some(pending.key_index.to_string().as_str()) {
        return Err(SignError::KeyIndex);
    }
    let bytes = node.content_bytes().ok_or(SignError::Missing)?;
    let signed = AdvSignedDeviceIdentity::decode(bytes).map_err(|_| SignError::Malformed)?;
    if signed.details.as_deref() != Some(&pending.details[..]) {
        return Err(SignError::DetailsChanged);
    }
    let key_kept = signed
        .account_signature_key
        .as_deref()
        .is_none_or(|k| k == pending.account_public);
    if !key_kept || signed.account_signature.as_deref() != Some(&pending.account_signature[..]) {
        return Err(SignError::AccountChanged);
    }
    let signature: [u8; 64] = signed
        .device_signature
        .as_deref()
        .and_then(|s| s.try_into().ok())
        .ok_or(SignError::DeviceSignature)?;
    let message = [
        &DEVICE_SIGNATURE_PREFIX[..],
        &pending.details,
        identity,
        &pending.account_public,
    ]
    .concat();
    if !xeddsa::verify(identity, &message, &signature) {
        return Err(SignError::DeviceSignature);
    }
    Ok(AdvSignedDeviceIdentity {
        account_signature_key: Some(pending.account_public.to_vec()),
        ..signed
    }
    .encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker::wa::binary::encode;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }
    fn k(s: &str) -> [u8; 32] {
        h(s).try_into().expect("32 bytes")
    }

    // wa-protocol.md §11.2.2.
    const ADV_SECRET: &str = "20350f7f317b020f23bc17421d94c7c6660c452f14bd67004ec5b0cbfd12941a";
    const COMPANION_IDENTITY_PUB: &str =
        "8f8713e996c6d6f66ab730c61979aca5d50a1e920739472e71d1e96a8afe014f";
    const ACCOUNT_PUB: &str = "6aa526f3bab59120df91afd4c62d1bbc3f624ce0835cb7e3d39ee2d76d128247";
    const ADV_DEVICE_IDENTITY: &str = "0887ad4b1080e2cfaa06180120002800";
    const ACCOUNT_SIGNATURE: &str = "f2997b7bc361ee8aabebbf27874681764d19cde68cf9bdaa46fca76900e281a31a1cabfc0c2372661cf6da80602edcbbe365eafb27caa6a699a29033badd970c";
    const CONTAINER: &str = "0a760a100887ad4b1080e2cfaa0618012000280012206aa526f3bab59120df91afd4c62d1bbc3f624ce0835cb7e3d39ee2d76d1282471a40f2997b7bc361ee8aabebbf27874681764d19cde68cf9bdaa46fca76900e281a31a1cabfc0c2372661cf6da80602edcbbe365eafb27caa6a699a29033badd970c1220cabd1b48aec8c4e7189e22c6d887c9e2fe48e8b0398eede61aa581a049318ad91800";
    const REPLY_SIGNED: &str = "0a100887ad4b1080e2cfaa061801200028001a40f2997b7bc361ee8aabebbf27874681764d19cde68cf9bdaa46fca76900e281a31a1cabfc0c2372661cf6da80602edcbbe365eafb27caa6a699a29033badd970c22403898acbd75b30d41fdd30acedca5afe7ae338bd12f3495e78269c50c1e2c72543b10b22fbca207518ea3a876222da73fb4273486eeaaf04e790fe91dcce7c407";

    fn vector_pending() -> PendingPair {
        PendingPair {
            phone: "15551234567".into(),
            device_id: 2,
            key_index: 1,
            iq_id: "1002".into(),
            details: h(ADV_DEVICE_IDENTITY),
            account_public: k(ACCOUNT_PUB),
            account_signature: h(ACCOUNT_SIGNATURE).try_into().expect("64 bytes"),
            sent_at: Instant::now(),
        }
    }

    fn reply(signed: Vec<u8>, key_index: &str) -> Node {
        Node::new("iq")
            .attr("type", "result")
            .attr("id", "1002")
            .children(vec![Node::new("pair-device-sign").children(vec![
                Node::new("device-identity")
                    .attr("key-index", key_index)
                    .bytes(signed),
            ])])
    }

    #[test]
    fn parses_both_qr_shapes_and_both_lengths() {
        let bare = "2@ref-number-1,6M0yfFscys2TDIevAirf6CF0C9ORjimz0R3Js1quVTw=,j4cT6ZbG1vZqtzDGGXmspdUKHpIHOUcucdHpaor+AU8=,IDUPfzF7Ag8jvBdCHZTHxmYMRS8UvWcATsWwy/0SlBo=";
        let five = Qr::parse(&format!("{QR_PREFIX}{bare},9")).expect("prefixed, 5 fields");
        assert_eq!(five.reference, "2@ref-number-1");
        assert_eq!(five.identity_public, k(COMPANION_IDENTITY_PUB));
        assert_eq!(five.adv_secret, k(ADV_SECRET));
        assert_eq!(five.client_type.as_deref(), Some("9"));
        let four = Qr::parse(bare).expect("bare, 4 fields");
        assert_eq!(four.client_type, None);
        assert_eq!(four.noise_public, five.noise_public);
        assert!(matches!(Qr::parse("a,b,c"), Err(ScanError::MalformedQr(_))));
        assert!(matches!(
            Qr::parse(&bare.replace("j4cT", "j4c")),
            Err(ScanError::MalformedQr(_))
        ));
    }

    #[test]
    fn phone_numbers_are_digits_without_a_leading_zero() {
        assert!(check_phone("15551234567").is_ok());
        assert_eq!(check_phone("0555123"), Err(ScanError::BadPhone));
        assert_eq!(check_phone("+15551234567"), Err(ScanError::BadPhone));
        assert_eq!(check_phone("1234"), Err(ScanError::BadPhone));
    }

    #[test]
    fn builds_the_vector_container_and_pair_success_byte_for_byte() {
        let container = adv_container(
            &h(ADV_DEVICE_IDENTITY),
            &k(ACCOUNT_PUB),
            &h(ACCOUNT_SIGNATURE).try_into().expect("64"),
            &k(ADV_SECRET),
        );
        assert_eq!(hex::encode(&container), CONTAINER);
        let iq = pair_success_iq(
            "1002",
            1_700_000_000,
            container,
            "android",
            &Jid::device("15551234567", DEFAULT_USER_SERVER, 2),
            &Jid::device("100000000000001", "lid", 2),
        );
        // §11.2.3 pair_success_iq has <platform> before <device>, as built here.
        assert_eq!(
            hex::encode(encode(&iq)),
            "00f80c1906fa0003045a08ff02100216fc026d641aff051700000000f801f802fc0c706169722d73756363657373f803f802e6fc9c0a760a100887ad4b1080e2cfaa0618012000280012206aa526f3bab59120df91afd4c62d1bbc3f624ce0835cb7e3d39ee2d76d1282471a40f2997b7bc361ee8aabebbf27874681764d19cde68cf9bdaa46fca76900e281a31a1cabfc0c2372661cf6da80602edcbbe365eafb27caa6a699a29033badd970c1220cabd1b48aec8c4e7189e22c6d887c9e2fe48e8b0398eede61aa581a049318ad91800f8034a89e4f8053b0cf70002ff8615551234567f76f70102ff88100000000000001f"
        );
    }

    #[test]
    fn accepts_the_vector_device_signature_with_or_without_the_account_key() {
        let pending = vector_pending();
        let identity = k(COMPANION_IDENTITY_PUB);
        let kept = verify_device_sign(&pending, &identity, &reply(h(REPLY_SIGNED), "1"))
            .expect("the vector reply verifies");
        let with_key = AdvSignedDeviceIdentity {
            account_signature_key: Some(k(ACCOUNT_PUB).to_vec()),
            ..AdvSignedDeviceIdentity::decode(&h(REPLY_SIGNED)[..]).expect("decodes")
        };
        let again = verify_device_sign(&pending, &identity, &reply(with_key.encode_to_vec(), "1"))
            .expect("whatsapp-rust keeps the account key");
        assert_eq!(kept, again);
    }

    #[test]
    fn refuses_a_tampered_device_signature_or_changed_details() {
        let pending = vector_pending();
        let identity = k(COMPANION_IDENTITY_PUB);
        let mut bad = AdvSignedDeviceIdentity::decode(&h(REPLY_SIGNED)[..]).expect("decodes");
        if let Some(sig) = bad.device_signature.as_mut() {
            sig[5] ^= 1;
        }
        assert_eq!(
            verify_device_sign(&pending, &identity, &reply(bad.encode_to_vec(), "1")),
            Err(SignError::DeviceSignature)
        );
        let mut changed = AdvSignedDeviceIdentity::decode(&h(REPLY_SIGNED)[..]).expect("decodes");
        changed.details = Some(h("0887ad4b1080e2cfaa06180220002800"));
        assert_eq!(
            verify_device_sign(&pending, &identity, &reply(changed.encode_to_vec(), "1")),
            Err(SignError::DetailsChanged)
        );
        assert_eq!(
            verify_device_sign(&pending, &identity, &reply(h(REPLY_SIGNED), "2")),
            Err(SignError::KeyIndex)
        );
        let other = xeddsa::public_key(&xeddsa::generate_private());
        assert_eq!(
            verify_device_sign(&pending, &other, &reply(h(REPLY_SIGNED), "1")),
            Err(SignError::DeviceSignature)
        );
    }
}
