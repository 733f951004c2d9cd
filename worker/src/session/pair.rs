//! Pairing by QR code (wa-protocol.md §6).
//!
//! 1. The server sends `<iq type=set><pair-device><ref/>…</pair-device></iq>`; we ack it.
//! 2. Each ref becomes a QR string (whatsmeow's form, deep-link prefix); the first lives 60 s,
//!    the others 20 s ([`QrRotation`]). When they run out the session closes the socket.
//! 3. The phone scans; the server sends `<pair-success>` with the ADV identity. We check the
//!    HMAC with our adv secret and the phone's account signature, sign the device identity
//!    ([`accept_pair_success`]), the caller persists the creds, and we reply
//!    `<pair-device-sign>`.
//! 4. The server answers with `<stream:error code=515>`: reconnect at once, now to log in.
//!
//! A pairing code (`pair_code.rs`) runs beside the refs on the same connection; its
//! `pair-success` is checked with the adv secret derived with the phone, then with the QR's.

use std::collections::VecDeque;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use prost::Message;
use sha2::Sha256;
use tokio::time::Instant;

use ipc_protocol::WorkerStatus;
use tracing::{info, warn};

use super::actions::{Actions, Persist, Report};
use super::events::Disconnect;
use super::stage::{Ctx, Stage};
use crate::store::creds::{Creds, Me};
use crate::store::secret::{Blob, Bytes, Secret};
use crate::wa::binary::{Jid, Node};
use crate::wa::proto::{
    AdvDeviceIdentity, AdvSignedDeviceIdentity, AdvSignedDeviceIdentityHmac, ADV_ENCRYPTION_HOSTED,
};
use crate::wa::xeddsa;

/// The deep link phone cameras open (whatsmeow and Baileys prefix the QR with it).
pub(crate) const QR_PREFIX: &str = "https://wa.me/settings/linked_devices#";
/// The companion type in the QR: `9`, "other web client" (whatsmeow's default).
const CLIENT_TYPE: &str = "9";
const FIRST_REF_LIFETIME: Duration = Duration::from_secs(60);
const NEXT_REF_LIFETIME: Duration = Duration::from_secs(20);

const ACCOUNT_SIGNATURE_PREFIX: [u8; 2] = [6, 0];
const DEVICE_SIGNATURE_PREFIX: [u8; 2] = [6, 1];
const HOSTED_ACCOUNT_PREFIX: [u8; 2] = [6, 5];

/// The QR string for `reference` (§6.3).
pub(crate) fn qr_string(reference: &str, creds: &Creds) -> String {
    format!(
        "{QR_PREFIX}{reference},{},{},{},{CLIENT_TYPE}",
        STANDARD.encode(creds.noise_key.public.0),
        STANDARD.encode(creds.identity_key.public.0),
        STANDARD.encode(creds.adv_secret.expose().0),
    )
}

/// The refs of one `pair-device`, shown one after the other.
#[derive(Debug)]
pub(crate) struct QrRotation {
    refs: VecDeque<String>,
    current: Option<(String, Instant)>,
    first: bool,
    fixed_lifetime: Option<Duration>,
}

impl QrRotation {
    /// The refs of a `pair-device` node; `fixed_lifetime` replaces the protocol's 60/20 s.
    pub(crate) fn new(pair_device: &Node, fixed_lifetime: Option<Duration>) -> Self {
        let refs = pair_device
            .children_by_tag("ref")
            .filter_map(|r| r.content_bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        QrRotation {
            refs,
            current: None,
            first: true,
            fixed_lifetime,
        }
    }

    /// Moves to the next ref; `None` (and no deadline) when they have run out.
    pub(crate) fn advance(&mut self, now: Instant) -> Option<(&str, Instant)> {
        let Some(reference) = self.refs.pop_front() else {
            self.current = None;
            return None;
        };
        let lifetime = self.fixed_lifetime.unwrap_or(if self.first {
            FIRST_REF_LIFETIME
        } else {
            NEXT_REF_LIFETIME
        });
        self.first = false;
        self.current = Some((reference, now + lifetime));
        self.current.as_ref().map(|(r, at)| (r.as_str(), *at))
    }

    /// When the current ref expires.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.current.as_ref().map(|(_, at)| *at)
    }
}

/// Why a `pair-success` was refused; the text goes into the error reply.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub(crate) enum PairError {
    #[error("pair-success is malformed")]
    Malformed,
    #[error("hmac-mismatch")]
    HmacMismatch,
    #[error("signature-mismatch")]
    SignatureMismatch,
}

impl PairError {
    /// The error code whatsmeow replies with.
    pub(crate) fn code(self) -> &'static str {
        match self {
            PairError::Malformed => "500",
            PairError::HmacMismatch | PairError::SignatureMismatch => "401",
        }
    }
}

/// A verified pairing: the reply to send once `creds` (already updated) are durable.
#[derive(Debug)]
pub(crate) struct Paired {
    /// `<iq type=result><pair-device-sign>…</pair-device-sign></iq>`.
    pub(crate) reply: Node,
    /// The device JID the phone gave us.
    pub(crate) jid: Jid,
}

/// Checks a `pair-success` IQ against `creds` and, when it holds, records the identity in
/// `creds` and builds the reply (§6.7; whatsmeow's choices: the hosted prefix follows the inner
/// `deviceType`, and the reply drops `accountSignatureKey`).
///
/// # Errors
/// [`PairError`] when the IQ is malformed or a check fails; `creds` is then unchanged.
pub(crate) fn accept_pair_success(iq: &Node, creds: &mut Creds) -> Result<Paired, PairError> {
    let success = iq.child("pair-success").ok_or(PairError::Malformed)?;
    let device = success.child("device").ok_or(PairError::Malformed)?;
    let jid = device
        .attr_jid("jid")
        .cloned()
        .ok_or(PairError::Malformed)?;
    let lid = device.attr_jid("lid").map(ToString::to_string);
    let platform = success
        .child("platform")
        .and_then(|p| p.attr_str("name"))
        .map(|n| n.into_owned());
    let container = success
        .child("device-identity")
        .and_then(Node::content_bytes)
        .ok_or(PairError::Malformed)?;

    let with_hmac =
        AdvSignedDeviceIdentityHmac::decode(container).map_err(|_| PairError::Malformed)?;
    let details = with_hmac.details.as_deref().ok_or(PairError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&creds.adv_secret.expose().0)
        .map_err(|_| PairError::Malformed)?;
    if with_hmac.account_type == Some(ADV_ENCRYPTION_HOSTED) {
        mac.update(&HOSTED_ACCOUNT_PREFIX);
    }
    mac.update(details);
    mac.verify_slice(with_hmac.hmac.as_deref().unwrap_or_default())
        .map_err(|_| PairError::HmacMismatch)?;

    let signed = AdvSignedDeviceIdentity::decode(details).map_err(|_| PairError::Malformed)?;
    let identity_bytes = signed.details.as_deref().ok_or(PairError::Malformed)?;
    let identity = AdvDeviceIdentity::decode(identity_bytes).map_err(|_| PairError::Malformed)?;
    let account_key: [u8; 32] = signed
        .account_signature_key
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or(PairError::SignatureMismatch)?;
    let account_signature: [u8; 64] = signed
        .account_signature
        .as_deref()
        .and_then(|s| s.try_into().ok())
        .ok_or(PairError::SignatureMismatch)?;
    let own_identity = creds.identity_key.public.0;
    let prefix = if identity.device_type == Some(ADV_ENCRYPTION_HOSTED) {
        HOSTED_ACCOUNT_PREFIX
    } else {
        ACCOUNT_SIGNATURE_PREFIX
    };
    let message = [&prefix[..], identity_bytes, &own_identity].concat();
    if !xeddsa::verify(&account_key, &message, &account_signature) {
        return Err(PairError::SignatureMismatch);
    }

    let to_sign = [
        &DEVICE_SIGNATURE_PREFIX[..],
        identity_bytes,
        &own_identity,
        &account_key,
    ]
    .concat();
    let device_signature = xeddsa::sign(&creds.identity_key.private.expose().0, &to_sign);
    let stored = AdvSignedDeviceIdentity {
        device_signature: Some(device_signature.to_vec()),
        ..signed
    };
    let replied = AdvSignedDeviceIdentity {
        account_signature_key: None,
        ..stored.clone()
    };

    creds.me = Some(Me {
        jid: jid.to_string(),
        lid,
        push_name: None,
    });
    creds.account = Some(Blob(stored.encode_to_vec()));
    creds.account_key = Some(Bytes(account_key));
    creds.platform = platform;

    let reply = Node::new("iq")
        .jid_attr("to", Jid::server_jid())
        .attr("type", "result")
        .attr("id", iq.attr_str("id").unwrap_or_default().into_owned())
        .children(vec![Node::new("pair-device-sign").children(vec![
            Node::new("device-identity")
                .attr("key-index", identity.key_index.unwrap_or(0).to_string())
                .bytes(replied.encode_to_vec()),
        ])]);
    Ok(Paired { reply, jid })
}

/// The error reply to a refused `pair-success`.
pub(crate) fn pair_error_reply(iq: &Node, error: PairError) -> Node {
    Node::new("iq")
        .jid_attr("to", Jid::server_jid())
        .attr("type", "error")
        .attr("id", iq.attr_str("id").unwrap_or_default().into_owned())
        .children(vec![Node::new("error")
            .attr("code", error.code())
            .attr("text", error.to_string())])
}

/// `<iq type=set><pair-device>`: ack it and show the first ref (step 1 and 2).
pub(crate) fn on_pair_device(ctx: &mut Ctx<'_>, iq: &Node, pair_device: &Node) -> Actions {
    let mut ack = Node::new("iq")
        .attr("id", iq.attr_str("id").unwrap_or_default().into_owned())
        .attr("type", "result");
    if let Some(from) = iq.get_attr("from") {
        ack.set_attr("to".into(), from.clone());
    }
    *ctx.stage = Stage::ExpectScan(QrRotation::new(pair_device, ctx.settings.qr_lifetime), None);
    show_next_qr(ctx).and_send(ack)
}

/// A ref expired: show the next one, or end the pairing when they have run out.
pub(crate) fn show_next_qr(ctx: &mut Ctx<'_>) -> Actions {
    let (Stage::ExpectScan(qr, code), Some(creds)) = (&mut *ctx.stage, ctx.creds) else {
        return Actions::none();
    };
    match qr.advance(ctx.now) {
        Some((reference, expires)) => Actions::none().and_report(Report::Qr {
            qr: qr_string(reference, creds),
            expires_in: expires.saturating_duration_since(ctx.now),
        }),
        // A pairing code still good keeps the connection until it expires.
        None if code.as_ref().is_some_and(|c| ctx.now < c.expires) => Actions::none(),
        None => Actions::end(Disconnect::QrExhausted),
    }
}

/// `<iq type=set><pair-success>` (step 3): verify, persist the paired creds, then reply.
pub(crate) fn on_pair_success(ctx: &mut Ctx<'_>, iq: &Node) -> Actions {
    let Some(creds) = ctx.creds else {
        return Actions::none();
    };
    if !matches!(ctx.stage, Stage::ExpectScan(..) | Stage::ExpectPairDevice) {
        warn!("pair-success outside a pairing ignored");
        return Actions::none();
    }
    let code_secret = match &*ctx.stage {
        Stage::ExpectScan(_, Some(code)) => code.adv_secret(),
        _ => None,
    };
    let mut candidate = creds.clone();
    let mut accepted = Err(PairError::HmacMismatch);
    // The pairing code's adv secret first (§7.5), then the QR's: a QR scanned meanwhile
    // still pairs.
    if let Some(secret) = code_secret {
        candidate.adv_secret = Secret::new(Bytes(secret));
        accepted = accept_pair_success(iq, &mut candidate);
        if accepted.is_err() {
            candidate = creds.clone();
        }
    }
    if matches!(accepted, Err(PairError::HmacMismatch)) {
        accepted = accept_pair_success(iq, &mut candidate);
    }
    match accepted {
        Ok(paired) => {
            info!(jid = %paired.jid.to_non_ad().masked(), "paired");
            *ctx.stage = Stage::ExpectRestart;
            // Durable before we tell anyone: a crash now still leaves a usable pairing.
            Actions::send(paired.reply)
                .and_persist(Persist::Creds(Box::new(candidate)))
                .and_report(Report::Paired)
                .and_report(Report::Status(WorkerStatus::Connecting, None))
        }
        Err(e) => {
            warn!(error = %e, "pair-success refused");
            Actions::send(pair_error_reply(iq, e))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::secret::Secret;
    use crate::wa::binary::decode;

    fn k(s: &str) -> [u8; 32] {
        hex::decode(s).expect("hex").try_into().expect("32 bytes")
    }

    /// Creds holding the keys of wa-protocol.md §11.2.1 and §11.2.2.
    pub(crate) fn vector_creds() -> Creds {
        let mut creds = Creds::generate();
        let identity = k("30540783e788824fd7783d659090ea6a1314717fd4ce1b55f1f555a7c0832471");
        creds.identity_key.private = Secret::new(Bytes(identity));
        creds.identity_key.public = Bytes(xeddsa::public_key(&identity));
        let noise = k("80d0a33f1b6f824cbba16ab8f17c2da95278d43143717835b3446f114c89ba6d");
        creds.noise_key.private = Secret::new(Bytes(noise));
        creds.noise_key.public = Bytes(xeddsa::public_key(&noise));
        creds.adv_secret = Secret::new(Bytes(k(
            "20350f7f317b020f23bc17421d94c7c6660c452f14bd67004ec5b0cbfd12941a",
        )));
        creds
    }

    pub(crate) const PAIR_SUCCESS: &str = "00f80c1906fa0003045a08ff02100216fc026d641aff051700000000f801f802fc0c706169722d73756363657373f803f802e6fc9c0a760a100887ad4b1080e2cfaa0618012000280012206aa526f3bab59120df91afd4c62d1bbc3f624ce0835cb7e3d39ee2d76d1282471a40f2997b7bc361ee8aabebbf27874681764d19cde68cf9bdaa46fca76900e281a31a1cabfc0c2372661cf6da80602edcbbe365eafb27caa6a699a29033badd970c1220cabd1b48aec8c4e7189e22c6d887c9e2fe48e8b0398eede61aa581a049318ad91800f8034a89e4f8053b0cf70002ff8615551234567f76f70102ff88100000000000001f";

    #[test]
    fn builds_the_qr_string_of_the_vector() {
        // wa-protocol.md §11.2.3 qr_string.
        assert_eq!(
            qr_string("2@ref-number-1", &vector_creds()),
            "https://wa.me/settings/linked_devices#2@ref-number-1,6M0yfFscys2TDIevAirf6CF0C9ORjimz0R3Js1quVTw=,j4cT6ZbG1vZqtzDGGXmspdUKHpIHOUcucdHpaor+AU8=,IDUPfzF7Ag8jvBdCHZTHxmYMRS8UvWcATsWwy/0SlBo=,9"
        );
    }

    #[test]
    fn accepts_the_vector_pair_success_and_signs_the_device_identity() {
        let mut creds = vector_creds();
        let iq = decode(&hex::decode(PAIR_SUCCESS).expect("hex")).expect("node");
        let paired = accept_pair_success(&iq, &mut creds).expect("verifies");
        assert_eq!(paired.jid.to_string(), "15551234567:2@s.whatsapp.net");
        assert_eq!(creds.phone(), Some("15551234567"));
        assert_eq!(
            creds.me.as_ref().and_then(|m| m.lid.as_deref()),
            Some("100000000000001:2@lid")
        );
        assert_eq!(creds.platform.as_deref(), Some("android"));
        // The reply's device signature verifies over §11.2.2's device_signature_message.
        let sign = paired
            .reply
            .child("pair-device-sign")
            .and_then(|s| s.child("device-identity"))
            .expect("identity");
        assert_eq!(sign.attr_str("key-index").as_deref(), Some("1"));
        let replied =
            AdvSignedDeviceIdentity::decode(sign.content_bytes().expect("bytes")).expect("decodes");
        assert!(
            replied.account_signature_key.is_none(),
            "whatsmeow drops the account key"
        );
        let message = hex::decode("06010887ad4b1080e2cfaa061801200028008f8713e996c6d6f66ab730c61979aca5d50a1e920739472e71d1e96a8afe014f6aa526f3bab59120df91afd4c62d1bbc3f624ce0835cb7e3d39ee2d76d128247").expect("hex");
        let signature: [u8; 64] = replied
            .device_signature
            .expect("signed")
            .try_into()
            .expect("64");
        assert!(xeddsa::verify(
            &creds.identity_key.public.0,
            &message,
            &signature
        ));
    }

    #[test]
    fn refuses_a_pair_success_made_for_another_adv_secret() {
        let mut creds = vector_creds();
        creds.adv_secret = Secret::new(Bytes([9u8; 32]));
        let before = creds.clone();
        let iq = decode(&hex::decode(PAIR_SUCCESS).expect("hex")).expect("node");
        assert_eq!(
            accept_pair_success(&iq, &mut creds).expect_err("refused"),
            PairError::HmacMismatch
        );
        assert_eq!(creds, before, "nothing recorded");
        let reply = pair_error_reply(&iq, PairError::HmacMismatch);
        assert_eq!(
            reply
                .child("error")
                .and_then(|e| e.attr_str("text"))
                .as_deref(),
            Some("hmac-mismatch")
        );
    }

    #[test]
    fn refs_rotate_sixty_then_twenty_seconds_then_run_out() {
        let iq = decode(&hex::decode("00f80a1906fa0003045a08ff02100116fc026d64f801f802edeef802f802ed50fc0e32407265662d6e756d6265722d31f802ed50fc0e32407265662d6e756d6265722d32").expect("hex")).expect("node");
        let mut qr = QrRotation::new(iq.child("pair-device").expect("pair-device"), None);
        let t0 = Instant::now();
        let (r1, at1) = qr
            .advance(t0)
            .map(|(r, at)| (r.to_owned(), at))
            .expect("first");
        assert_eq!(
            (r1.as_str(), at1 - t0),
            ("2@ref-number-1", FIRST_REF_LIFETIME)
        );
        let (r2, at2) = qr
            .advance(at1)
            .map(|(r, at)| (r.to_owned(), at))
            .expect("second");
        assert_eq!(
            (r2.as_str(), at2 - at1),
            ("2@ref-number-2", NEXT_REF_LIFETIME)
        );
        assert!(qr.advance(at2).is_none());
    }
}
