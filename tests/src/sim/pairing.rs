//! The registration session: a connection whose ClientPayload carried `devicePairingData`
//! (wa-protocol.md §4.4, §6, §10.3).
//!
//! 1. Check the registration keys: lengths, key type `05`, and `eSkeySig` = XEdDSA by `eIdent`
//!    over `05 || eSkeyVal` ([`RegistrationKeys::parse`]). A bad set gets
//!    `<failure reason="400"/>` from the connection.
//! 2. Send `<iq from=s.whatsapp.net type=set id xmlns=md><pair-device><ref/>×6</pair-device></iq>`
//!    ([`start`]); the refs expire on the client's schedule, 60 s then 20 s each, or every one
//!    after `ref_timeout` when set ([`RefSchedule`]).
//! 3. Expect the client's `<iq type=result>` ack (logged when missing).
//! 4. Wait for the phone (`phone::scan`, from the control API), which sends `pair-success`.
//! 5. On the `pair-device-sign` reply, verify the device signature (`phone::verify_device_sign`);
//!    on success the device is paired and the connection ends with `<stream:error code=515/>`.
//!    An error reply or a bad signature drops the half-made device and closes without a stanza.
//! 6. When the last ref expires with no scan, close after [`EXHAUSTED_GRACE`]; when the reply to
//!    `pair-success` does not come within [`PAIR_REPLY_DEADLINE`], close as well.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};
use worker::wa::binary::jid::DEFAULT_USER_SERVER;
use worker::wa::binary::{Jid, Node};
use worker::wa::proto::{DevicePairingRegistrationData, DeviceProps};
use worker::wa::xeddsa;

use super::faults::{Ending, Fault};
use super::iq;
use super::phone;
use super::registry::{masked, ConnId, ConnState, DeviceState, Registration, Registry};
use super::session::Step;

/// Refs per `pair-device` (whatsmeow special-cases exactly six, §6.2).
pub const REFS_PER_PAIR_DEVICE: usize = 6;
/// The first ref's lifetime (§6.4).
pub const FIRST_REF_LIFETIME: Duration = Duration::from_secs(60);
/// Every later ref's lifetime (§6.4).
pub const NEXT_REF_LIFETIME: Duration = Duration::from_secs(20);
/// How long the connection stays open after the last ref expired.
pub const EXHAUSTED_GRACE: Duration = Duration::from_secs(2);
/// How long the client has to answer `pair-success`.
pub const PAIR_REPLY_DEADLINE: Duration = Duration::from_secs(30);

/// The `DJB` key type byte (§4.4).
const DJB_KEY_TYPE: u8 = 5;

/// A companion's Signal keys from its registration payload (§4.4), checked.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct RegistrationKeys {
    pub(crate) registration_id: [u8; 4],
    pub(crate) identity: [u8; 32],
    pub(crate) skey_id: [u8; 3],
    pub(crate) skey_value: [u8; 32],
    pub(crate) skey_signature: [u8; 64],
    /// How the companion described itself (`DeviceProps`, §4.6): what the phone lists.
    pub(crate) companion: Companion,
}

/// A companion's `DeviceProps`, as the phone's Linked devices list shows it.
#[derive(Clone, Debug, Default, Eq, PartialEq, serde::Serialize)]
pub struct Companion {
    /// `os`: the name shown.
    pub os: String,
    /// `platformType` (1 Chrome, 7 Desktop, 0 unknown, ...).
    pub platform_type: i32,
    /// `version`, `a.b.c`.
    pub version: String,
}

impl Companion {
    /// Reads `DeviceProps` bytes; what is missing or unreadable stays empty.
    pub(crate) fn of(props: Option<&[u8]>) -> Self {
        use prost::Message;
        let Some(props) = props.and_then(|b| DeviceProps::decode(b).ok()) else {
            return Companion::default();
        };
        let version = props
            .version
            .map(|v| {
                format!(
                    "{}.{}.{}",
                    v.primary.unwrap_or(0),
                    v.secondary.unwrap_or(0),
                    v.tertiary.unwrap_or(0)
                )
            })
            .unwrap_or_default();
        Companion {
            os: props.os.unwrap_or_default(),
            platform_type: props.platform_type.unwrap_or(0),
            version,
        }
    }
}

/// Why registration keys were refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub(crate) enum KeysRefused {
    #[error("registration field {0} is missing or has the wrong length")]
    Field(&'static str),
    #[error("registration key type is not 05")]
    KeyType,
    #[error("signed prekey signature does not verify under the identity key")]
    SkeySignature,
}

impl RegistrationKeys {
    /// Checks `devicePairingData` (§4.4, §10.2: `eSkeySig` must verify).
    pub(crate) fn parse(data: &DevicePairingRegistrationData) -> Result<Self, KeysRefused> {
        fn fixed<const N: usize>(
            field: &Option<Vec<u8>>,
            name: &'static str,
        ) -> Result<[u8; N], KeysRefused> {
            field
                .as_deref()
                .and_then(|b| b.try_into().ok())
                .ok_or(KeysRefused::Field(name))
        }
        if data.e_keytype.as_deref() != Some(&[DJB_KEY_TYPE][..]) {
            return Err(KeysRefused::KeyType);
        }
        let keys = Self {
            registration_id: fixed(&data.e_regid, "eRegid")?,
            identity: fixed(&data.e_ident, "eIdent")?,
            skey_id: fixed(&data.e_skey_id, "eSkeyID")?,
            skey_value: fixed(&data.e_skey_val, "eSkeyVal")?,
            skey_signature: fixed(&data.e_skey_sig, "eSkeySig")?,
            companion: Companion::of(data.device_props.as_deref()),
        };
        if !verify_skey(&keys.identity, &keys.skey_value, &keys.skey_signature) {
            return Err(KeysRefused::SkeySignature);
        }
        Ok(keys)
    }
}

/// Whether `signature` is the identity key's XEdDSA signature over `05 || value`.
pub(crate) fn verify_skey(identity: &[u8; 32], value: &[u8; 32], signature: &[u8; 64]) -> bool {
    let message = [&[DJB_KEY_TYPE][..], value].concat();
    xeddsa::verify(identity, &message, signature)
}

/// The refs of one `pair-device` and when each expires.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct RefSchedule {
    refs: Vec<(String, Instant)>,
}

/// Why a ref does not admit a scan.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum RefStatus {
    /// Live: the scan may proceed.
    Live,
    /// One of ours, but its time is up.
    Expired,
    /// Not one of ours.
    Unknown,
}

impl RefSchedule {
    /// `refs` shown one after the other from `start`: the client's schedule, 60 s then 20 s each
    /// (§6.4), or `fixed` for every ref. A ref stays good until the end of its own window; one
    /// not yet shown is good too (the client could not show it, but nothing forbids it).
    pub(crate) fn new(refs: Vec<String>, start: Instant, fixed: Option<Duration>) -> Self {
        let mut at = start;
        let refs = refs
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                at += fixed.unwrap_or(if i == 0 {
                    FIRST_REF_LIFETIME
                } else {
                    NEXT_REF_LIFETIME
                });
                (r, at)
            })
            .collect();
        Self { refs }
    }

    /// Whether `reference` admits a scan at `now`.
    pub(crate) fn status(&self, reference: &str, now: Instant) -> RefStatus {
        match self.refs.iter().find(|(r, _)| r == reference) {
            Some((_, expiry)) if now < *expiry => RefStatus::Live,
            Some(_) => RefStatus::Expired,
            None => RefStatus::Unknown,
        }
    }

    /// When the last ref expires.
    pub(crate) fn last_expiry(&self) -> Option<Instant> {
        self.refs.last().map(|(_, at)| *at)
    }
}

/// Steps 1–2: records the registration and returns the `pair-device` IQ to send.
///
/// # Errors
/// [`KeysRefused`] for bad registration keys; the caller answers `<failure reason="400"/>`.
pub(crate) fn start(
    registry: &mut Registry,
    conn: ConnId,
    noise_public: [u8; 32],
    data: &DevicePairingRegistrationData,
    now: Instant,
) -> Result<Node, KeysRefused> {
    registry.stats.registrations += 1;
    let keys = RegistrationKeys::parse(data)?;
    let refs: Vec<String> = (0..REFS_PER_PAIR_DEVICE).map(|_| new_ref()).collect();
    let id = registry.next_id().to_string();
    let node = pair_device_iq(&id, &refs);
    let schedule = RefSchedule::new(refs, now, registry.config.ref_timeout);
    registry.set_state(conn, ConnState::Pairing);
    if let Some(entry) = registry.conn_mut(conn) {
        entry.registration = Some(Registration {
            noise_public,
            keys,
            pair_device_id: id,
            refs: schedule,
            pending: None,
            link_code: None,
        });
    }
    Ok(node)
}

/// `<iq from=s.whatsapp.net type=set id xmlns=md><pair-device><ref>…</ref>…</pair-device></iq>`,
/// refs as binary content (§6.2, §5.7).
pub(crate) fn pair_device_iq(id: &str, refs: &[String]) -> Node {
    Node::new("iq")
        .jid_attr("from", Jid::server_jid())
        .attr("type", "set")
        .attr("id", id)
        .attr("xmlns", "md")
        .children(vec![Node::new("pair-device").children(
            refs.iter()
                .map(|r| Node::new("ref").bytes(r.clone().into_bytes()))
                .collect(),
        )])
}

/// A fresh ref: ASCII, no commas (it is pasted into the comma-separated QR), unique.
fn new_ref() -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    format!("2@{}", STANDARD.encode(rand::random::<[u8; 32]>()))
}

/// Handles one stanza of a registration session (steps 3 and 5).
pub(crate) fn on_node(registry: &mut Registry, conn: ConnId, node: &Node) -> Step {
    if node.tag != "iq" {
        debug!(conn_id = %conn, tag = %node.tag, "ignored while pairing");
        return Step::default();
    }
    let id = node.attr_str("id").unwrap_or_default().into_owned();
    let kind = node.attr_str("type").unwrap_or_default().into_owned();
    let Some(registration) = registry.conn(conn).and_then(|c| c.registration.as_ref()) else {
        return Step::default();
    };
    if kind == "result" && id == registration.pair_device_id {
        debug!(conn_id = %conn, "pair-device acked");
        return Step::default();
    }
    let answers_pair_success = registration.pending.as_ref().is_some_and(|p| p.iq_id == id);
    if kind == "set" && node.child("link_code_companion_reg").is_some() {
        return super::link_code::on_iq(registry, conn, node, super::registry::now());
    }
    match kind.as_str() {
        "result" | "error" if answers_pair_success => finish(registry, conn, node, &kind),
        "get" | "set" => {
            Step::send(iq::answer_common(node).unwrap_or_else(|| iq::not_implemented(node)))
        }
        _ => {
            debug!(conn_id = %conn, id, kind, "unexpected iq while pairing");
            Step::default()
        }
    }
}

/// Step 5: the reply to `pair-success`.
fn finish(registry: &mut Registry, conn: ConnId, node: &Node, kind: &str) -> Step {
    let Some(registration) = registry
        .conn_mut(conn)
        .and_then(|c| c.registration.as_mut())
    else {
        return Step::default();
    };
    let Some(pending) = registration.pending.take() else {
        return Step::default();
    };
    let identity = registration.keys.identity;
    let phone = pending.phone.clone();
    let device_id = pending.device_id;
    let verdict = if kind == "error" {
        let text = node
            .child("error")
            .and_then(|e| e.attr_str("text"))
            .unwrap_or_default()
            .into_owned();
        Err(format!("client refused pair-success: {text}"))
    } else {
        phone::verify_device_sign(&pending, &identity, node).map_err(|e| e.to_string())
    };
    let jid = Jid::device(phone.as_str(), DEFAULT_USER_SERVER, device_id);
    let paired = match verdict {
        Ok(signed) => match registry.device_mut(&jid) {
            Some(device) if device.state == DeviceState::Pending => {
                device.state = DeviceState::Paired;
                device.signed_identity = Some(signed);
                Ok(())
            }
            _ => Err("the pending device vanished".to_owned()),
        },
        Err(why) => Err(why),
    };
    registry.set_state(conn, ConnState::Closing);
    match paired {
        Ok(()) => {
            registry.stats.pairings += 1;
            info!(conn_id = %conn, phone = %masked(&phone), device = device_id, "paired");
            Step::end(Fault::Restart.ending())
        }
        Err(why) => {
            warn!(conn_id = %conn, phone = %masked(&phone), device = device_id, why, "pairing failed");
            registry.drop_pending_device(&jid);
            Step::end(Ending::close("pairing failed"))
        }
    }
}

/// Step 6: when the session must end if nothing happens.
pub(crate) fn deadline(registry: &Registry, conn: ConnId) -> Option<Instant> {
    let registration = registry.conn(conn)?.registration.as_ref()?;
    match &registration.pending {
        Some(pending) => Some(pending.sent_at + PAIR_REPLY_DEADLINE),
        // A pairing code keeps the connection for its lifetime even when the refs run out.
        None => {
            let refs = registration
                .refs
                .last_expiry()
                .map(|at| at + EXHAUSTED_GRACE);
            let code = registration
                .link_code
                .as_ref()
                .map(super::link_code::deadline);
            refs.max(code)
        }
    }
}

/// Step 6: the deadline passed.
pub(crate) fn on_deadline(registry: &mut Registry, conn: ConnId) -> Step {
    let waiting_reply = registry
        .conn(conn)
        .and_then(|c| c.registration.as_ref())
        .is_some_and(|r| r.pending.is_some());
    registry.set_state(conn, ConnState::Closing);
    if waiting_reply {
        warn!(conn_id = %conn, "no reply to pair-success");
        Step::end(Ending::close("no reply to pair-success"))
    } else {
        info!(conn_id = %conn, "every ref expired");
        Step::end(Ending::close("refs expired"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker::wa::binary::encode;

    #[test]
    fn encodes_the_vector_pair_device_iq_byte_for_byte() {
        // wa-protocol.md §11.2.3 pair_device_iq.
        let node = pair_device_iq("1001", &["2@ref-number-1".into(), "2@ref-number-2".into()]);
        assert_eq!(
            hex::encode(encode(&node)),
            "00f80a1906fa0003045a08ff02100116fc026d64f801f802edeef802f802ed50fc0e32407265662d6e756d6265722d31f802ed50fc0e32407265662d6e756d6265722d32"
        );
    }

    #[test]
    fn refs_expire_after_sixty_then_twenty_seconds_each() {
        let t0 = Instant::now();
        let refs: Vec<String> = (1..=6).map(|i| format!("r{i}")).collect();
        let schedule = RefSchedule::new(refs, t0, None);
        let s = Duration::from_secs;
        assert_eq!(schedule.status("r1", t0 + s(59)), RefStatus::Live);
        assert_eq!(schedule.status("r1", t0 + s(60)), RefStatus::Expired);
        assert_eq!(schedule.status("r2", t0 + s(79)), RefStatus::Live);
        assert_eq!(schedule.status("r2", t0 + s(80)), RefStatus::Expired);
        assert_eq!(schedule.status("r6", t0 + s(159)), RefStatus::Live);
        assert_eq!(schedule.status("r6", t0 + s(160)), RefStatus::Expired);
        assert_eq!(schedule.status("r7", t0), RefStatus::Unknown);
        assert_eq!(schedule.last_expiry(), Some(t0 + s(160)));
    }

    #[test]
    fn a_fixed_ref_timeout_applies_to_every_ref() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let schedule = RefSchedule::new(vec!["a".into(), "b".into()], t0, Some(ms(300)));
        assert_eq!(schedule.status("a", t0 + ms(299)), RefStatus::Live);
        assert_eq!(schedule.status("a", t0 + ms(300)), RefStatus::Expired);
        assert_eq!(schedule.status("b", t0 + ms(599)), RefStatus::Live);
        assert_eq!(schedule.last_expiry(), Some(t0 + ms(600)));
    }

    #[test]
    fn refs_are_ascii_unique_and_comma_free() {
        let a = new_ref();
        let b = new_ref();
        assert_ne!(a, b);
        assert!(a.is_ascii() && !a.contains(','));
    }

    fn registration_data(identity: &[u8; 32]) -> DevicePairingRegistrationData {
        let skey = xeddsa::public_key(&xeddsa::generate_private());
        let signature = xeddsa::sign(identity, &[&[5u8][..], &skey].concat());
        DevicePairingRegistrationData {
            e_regid: Some(vec![0, 0, 1, 2]),
            e_keytype: Some(vec![5]),
            e_ident: Some(xeddsa::public_key(identity).to_vec()),
            e_skey_id: Some(vec![0, 0, 1]),
            e_skey_val: Some(skey.to_vec()),
            e_skey_sig: Some(signature.to_vec()),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_keys_whose_signed_prekey_verifies() {
        let identity = xeddsa::generate_private();
        let keys = RegistrationKeys::parse(&registration_data(&identity)).expect("valid");
        assert_eq!(keys.identity, xeddsa::public_key(&identity));
    }

    #[test]
    fn refuses_a_signed_prekey_signed_by_another_key() {
        let mut data = registration_data(&xeddsa::generate_private());
        data.e_ident = Some(xeddsa::public_key(&xeddsa::generate_private()).to_vec());
        assert_eq!(
            RegistrationKeys::parse(&data),
            Err(KeysRefused::SkeySignature)
        );
        let mut data = registration_data(&xeddsa::generate_private());
        data.e_skey_id = Some(vec![1]);
        assert_eq!(
            RegistrationKeys::parse(&data),
            Err(KeysRefused::Field("eSkeyID"))
        );
        data.e_keytype = Some(vec![6]);
        assert_eq!(RegistrationKeys::parse(&data), Err(KeysRefused::KeyType));
    }
}
