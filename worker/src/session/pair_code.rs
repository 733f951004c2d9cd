//! Pairing with a phone-number code (wa-protocol.md §7), on the registration connection beside
//! the QR refs, which keep rotating (whatsmeow and Baileys keep their QR going too).
//!
//! 1. The supervisor asks for a code for a phone ([`start`]): a fresh code and ephemeral key;
//!    the ephemeral's public half, wrapped under the code, goes out in
//!    `<link_code_companion_reg stage="companion_hello">`. A second request replaces the first.
//! 2. WhatsApp answers with a `link_code_pairing_ref` ([`on_hello_answer`]): now the code is
//!    good, and the supervisor hears it (whatsmeow's order; Baileys answers before the server).
//! 3. The user types the code on the phone; WhatsApp relays the phone's wrapped ephemeral and
//!    identity in a `link_code_companion_reg` notification ([`on_notification`]). We unwrap it,
//!    seal our key bundle, derive the adv secret and send `companion_finish`. Another
//!    notification (the user typed the code again) is answered the same way.
//! 4. `pair-success` follows as for a QR scan (`pair.rs`), its HMAC keyed by the derived adv
//!    secret. A code lives [`CODE_LIFETIME`]; the connection stays open at least that long after
//!    a request even when the QR refs run out first.

use std::time::Duration;

use ipc_protocol::{PairingCodeOutcome, PairingCodeRefusal};
use tokio::time::Instant;
use tracing::{info, warn};

use super::actions::{Actions, Report};
use super::request::Purpose;
use super::stage::{Ctx, Stage};
use crate::store::secret::Secret;
use crate::wa::binary::jid::DEFAULT_USER_SERVER;
use crate::wa::binary::{Jid, Node};
use crate::wa::link_code::{self, FinishRandom};
use crate::wa::xeddsa;

/// How long a code is good for (whatsapp-rust's figure; the QR window is 160 s).
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(180);
/// The stanza's and the notification's name.
const REG: &str = "link_code_companion_reg";

/// A code pairing in progress on this connection.
#[derive(Debug)]
pub(crate) struct LinkCode {
    /// Digits of the phone the code is for.
    phone: String,
    /// The code, 8 characters without the dash.
    code: Secret<String>,
    /// The companion's ephemeral private key.
    ephemeral: Secret<[u8; 32]>,
    /// The supervisor's request, until WhatsApp answers the hello.
    request: Option<u64>,
    /// The hello's IQ id.
    hello_id: String,
    /// WhatsApp's `link_code_pairing_ref`, once it answered.
    reference: Option<Vec<u8>>,
    /// The adv secret of the last `companion_finish`.
    adv_secret: Option<Secret<[u8; 32]>>,
    /// When the code stops being good.
    pub(crate) expires: Instant,
}

impl LinkCode {
    /// The adv secret derived with the phone, once `companion_finish` went out.
    pub(crate) fn adv_secret(&self) -> Option<[u8; 32]> {
        self.adv_secret.as_ref().map(|s| *s.expose())
    }

    /// The supervisor's request, if WhatsApp has not answered the hello yet.
    pub(crate) fn take_request(&mut self) -> Option<u64> {
        self.request.take()
    }
}

/// Whether `phone` is a number WhatsApp takes in the hello: digits only, international form
/// (no leading 0), 7 to 15 digits (E.164's longest; whatsmeow wants more than 6).
pub(crate) fn valid_phone(phone: &str) -> bool {
    (7..=15).contains(&phone.len())
        && phone.bytes().all(|b| b.is_ascii_digit())
        && !phone.starts_with('0')
}

/// The supervisor's answer.
fn answer(request: u64, outcome: PairingCodeOutcome) -> Report {
    Report::PairingCode { request, outcome }
}

/// A refusal for the supervisor.
pub(crate) fn refused(request: u64, refusal: PairingCodeRefusal) -> Report {
    answer(request, PairingCodeOutcome::Refused { refusal })
}

/// Step 1: a code for `phone`, if this connection is waiting for a scan.
pub(crate) fn start(ctx: &mut Ctx<'_>, request: u64, phone: &str) -> Actions {
    let Some(creds) = ctx.creds else {
        return Actions::none().and_report(refused(request, PairingCodeRefusal::NotConnected));
    };
    if creds.is_paired() {
        return Actions::none().and_report(refused(request, PairingCodeRefusal::AlreadyPaired));
    }
    if !valid_phone(phone) {
        return Actions::none().and_report(refused(request, PairingCodeRefusal::InvalidPhone));
    }
    let Stage::ExpectScan(_, slot) = &mut *ctx.stage else {
        return Actions::none().and_report(refused(request, PairingCodeRefusal::NotConnected));
    };
    let mut actions = Actions::none();
    if let Some(earlier) = slot.take().and_then(|c| c.request) {
        // Replaced before WhatsApp answered: that caller gets no code.
        actions = actions.and_report(refused(earlier, PairingCodeRefusal::ConnectionLost));
    }
    let code = link_code::random_code();
    let ephemeral = xeddsa::generate_private();
    let wrapped = link_code::wrap(&code, &xeddsa::public_key(&ephemeral));
    let jid = Jid::new(phone, DEFAULT_USER_SERVER);
    let iq = ctx.requests.iq(
        Purpose::LinkCodeHello,
        "md",
        "set",
        vec![Node::new(REG)
            .jid_attr("jid", jid)
            .attr("stage", "companion_hello")
            .attr("should_show_push_notification", "true")
            .children(vec![
                Node::new("link_code_pairing_wrapped_companion_ephemeral_pub")
                    .bytes(wrapped.to_vec()),
                Node::new("companion_server_auth_key_pub").bytes(creds.noise_key.public.0.to_vec()),
                Node::new("companion_platform_id")
                    .bytes(ctx.settings.platform_id.clone().into_bytes()),
                Node::new("companion_platform_display")
                    .bytes(ctx.settings.platform_display.clone().into_bytes()),
                // Baileys and whatsapp-rust send "0" (wa-protocol.md §7.3).
                Node::new("link_code_pairing_nonce").bytes(b"0".to_vec()),
            ])],
    );
    let hello_id = iq.attr_str("id").unwrap_or_default().into_owned();
    *slot = Some(Box::new(LinkCode {
        phone: phone.to_owned(),
        code: Secret::new(code),
        ephemeral: Secret::new(ephemeral),
        request: Some(request),
        hello_id,
        reference: None,
        adv_secret: None,
        expires: ctx.now + CODE_LIFETIME,
    }));
    info!("pairing code requested; companion_hello sent");
    actions.and_send(iq)
}

/// Step 2: WhatsApp's answer to the hello.
pub(crate) fn on_hello_answer(ctx: &mut Ctx<'_>, iq: &Node) -> Actions {
    let Stage::ExpectScan(_, slot) = &mut *ctx.stage else {
        return Actions::none();
    };
    let id = iq.attr_str("id").unwrap_or_default();
    let Some(code) = slot.as_deref_mut().filter(|c| c.hello_id == id) else {
        // The answer to a hello since replaced.
        return Actions::none();
    };
    let reference = iq
        .child(REG)
        .and_then(|r| r.child("link_code_pairing_ref"))
        .and_then(Node::content_bytes)
        .map(<[u8]>::to_vec);
    let ok = iq.attr_str("type").as_deref() == Some("result");
    match (ok, reference) {
        (true, Some(reference)) => {
            code.reference = Some(reference);
            info!("pairing code accepted by whatsapp; waiting for the phone");
            let text = code.code.expose().clone();
            match code.request.take() {
                Some(request) => Actions::none()
                    .and_report(answer(request, PairingCodeOutcome::Code { code: text })),
                None => Actions::none(),
            }
        }
        (_, _) => {
            let error = iq.child("error");
            let text = match error {
                Some(e) => format!(
                    "{} {}",
                    e.attr_str("code").unwrap_or_default(),
                    e.attr_str("text").unwrap_or_default()
                )
                .trim()
                .to_owned(),
                None => "no link_code_pairing_ref in the answer".to_owned(),
            };
            warn!(error = %text, "whatsapp refused the pairing code hello");
            let request = slot.take().and_then(|c| c.request);
            match request {
                Some(request) => Actions::none()
                    .and_report(refused(request, PairingCodeRefusal::ServerRefused(text))),
                None => Actions::none(),
            }
        }
    }
}

/// Step 3: the phone took the code. Returns what to send (nothing when no code is live or the
/// notification does not fit it); the caller acks the notification.
pub(crate) fn on_notification(ctx: &mut Ctx<'_>, notification: &Node) -> Actions {
    let Some(creds) = ctx.creds else {
        return Actions::none();
    };
    let Stage::ExpectScan(_, Some(code)) = &mut *ctx.stage else {
        warn!("link_code_companion_reg without a pairing code in progress ignored");
        return Actions::none();
    };
    if ctx.now >= code.expires {
        warn!("link_code_companion_reg after the code expired ignored");
        return Actions::none();
    }
    let Some(reg) = notification.child(REG) else {
        return Actions::none();
    };
    let bytes = |tag: &str| reg.child(tag).and_then(Node::content_bytes);
    let reference = bytes("link_code_pairing_ref");
    // whatsmeow's check: the ref must be the one WhatsApp gave for our hello.
    if code.reference.is_some() && reference != code.reference.as_deref() {
        warn!("link_code_companion_reg for another ref ignored");
        return Actions::none();
    }
    let primary_identity: Option<[u8; 32]> =
        bytes("primary_identity_pub").and_then(|b| b.try_into().ok());
    let wrapped = bytes("link_code_pairing_wrapped_primary_ephemeral_pub");
    let (Some(primary_identity), Some(wrapped)) = (primary_identity, wrapped) else {
        warn!("malformed link_code_companion_reg ignored");
        return Actions::none();
    };
    let primary_ephemeral = match link_code::unwrap(code.code.expose(), wrapped) {
        Ok(key) => key,
        Err(e) => {
            warn!(error = %e, "malformed link_code_companion_reg ignored");
            return Actions::none();
        }
    };
    let finish = link_code::companion_finish(
        code.ephemeral.expose(),
        &creds.identity_key.private.expose().0,
        &primary_ephemeral,
        &primary_identity,
        FinishRandom::fresh(),
    );
    code.adv_secret = Some(Secret::new(finish.adv_secret));
    let reference = reference
        .map(<[u8]>::to_vec)
        .or_else(|| code.reference.clone());
    let jid = Jid::new(code.phone.as_str(), DEFAULT_USER_SERVER);
    let iq = ctx.requests.iq(
        Purpose::LinkCodeFinish,
        "md",
        "set",
        vec![Node::new(REG)
            .jid_attr("jid", jid)
            .attr("stage", "companion_finish")
            .children(vec![
                Node::new("link_code_pairing_wrapped_key_bundle").bytes(finish.wrapped_bundle),
                Node::new("companion_identity_public").bytes(creds.identity_key.public.0.to_vec()),
                Node::new("link_code_pairing_ref").bytes(reference.unwrap_or_default()),
            ])],
    );
    info!("phone entered the pairing code; companion_finish sent");
    Actions::send(iq)
}

/// WhatsApp's answer to `companion_finish`: `pair-success` follows a result.
pub(crate) fn on_finish_answer(_ctx: &mut Ctx<'_>, iq: &Node) -> Actions {
    if iq.attr_str("type").as_deref() != Some("result") {
        warn!(%iq, "whatsapp refused companion_finish");
    }
    Actions::none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::pair::QrRotation;
    use crate::session::request::Requests;
    use crate::session::stage::Settings;
    use crate::store::creds::Creds;
    use crate::store::devices::DeviceCache;
    use crate::store::groups::GroupStore;
    use crate::store::signal::KeyStore;

    struct World {
        dir: tempfile::TempDir,
        creds: Creds,
        settings: Settings,
        requests: Requests,
        stage: Stage,
        outbound: Option<crate::session::send::Outbound>,
    }

    impl World {
        fn new() -> Self {
            World {
                dir: tempfile::tempdir().expect("dir"),
                creds: Creds::generate(),
                settings: Settings {
                    platform_id: "1".into(),
                    platform_display: "Chrome (Mac OS)".into(),
                    ..Settings::default()
                },
                requests: Requests::new(),
                stage: Stage::ExpectScan(QrRotation::new(&Node::new("pair-device"), None), None),
                outbound: None,
            }
        }

        fn run(&mut self, handler: impl FnOnce(&mut Ctx<'_>) -> Actions) -> Actions {
            let keys = KeyStore::new(self.dir.path());
            let devices = DeviceCache::new(self.dir.path());
            let groups = GroupStore::new(self.dir.path());
            let mut ctx = Ctx {
                creds: Some(&self.creds),
                keys: &keys,
                devices: &devices,
                groups: &groups,
                messages: None,
                settings: &self.settings,
                requests: &mut self.requests,
                stage: &mut self.stage,
                outbound: &mut self.outbound,
                now: Instant::now(),
            };
            handler(&mut ctx)
        }
    }

    fn reg_child<'a>(iq: &'a Node, tag: &str) -> &'a [u8] {
        iq.child(REG)
            .and_then(|r| r.child(tag))
            .and_then(Node::content_bytes)
            .unwrap_or_else(|| panic!("{tag} in {iq}"))
    }

    #[test]
    fn refuses_bad_phones_paired_accounts_and_connections_not_at_the_scan() {
        let mut w = World::new();
        let a = w.run(|ctx| start(ctx, 1, "0712345678"));
        assert_eq!(a.report, vec![refused(1, PairingCodeRefusal::InvalidPhone)]);
        assert!(a.send.is_empty());
        w.stage = Stage::ExpectPairDevice;
        let a = w.run(|ctx| start(ctx, 2, "15551234567"));
        assert_eq!(a.report, vec![refused(2, PairingCodeRefusal::NotConnected)]);
        w.creds = crate::session::pair::tests::vector_creds();
        let iq = crate::wa::binary::decode(
            &hex::decode(crate::session::pair::tests::PAIR_SUCCESS).expect("hex"),
        )
        .expect("node");
        crate::session::pair::accept_pair_success(&iq, &mut w.creds).expect("paired");
        let a = w.run(|ctx| start(ctx, 3, "15551234567"));
        assert_eq!(
            a.report,
            vec![refused(3, PairingCodeRefusal::AlreadyPaired)]
        );
        assert!(valid_phone("15551234567") && !valid_phone("155512") && !valid_phone("+1555123"));
    }

    /// The whole exchange, with this test as WhatsApp and the phone.
    #[test]
    fn hello_answer_notification_and_finish_derive_the_phones_adv_secret() {
        let mut w = World::new();
        let hello = w.run(|ctx| start(ctx, 7, "15551234567")).send.remove(0);
        let reg = hello.child(REG).expect("reg");
        assert_eq!(reg.attr_str("stage").as_deref(), Some("companion_hello"));
        assert_eq!(
            reg.attr_jid("jid").map(ToString::to_string).as_deref(),
            Some("15551234567@s.whatsapp.net")
        );
        assert_eq!(hello.attr_str("xmlns").as_deref(), Some("md"));
        assert_eq!(
            reg_child(&hello, "companion_server_auth_key_pub"),
            &w.creds.noise_key.public.0
        );
        assert_eq!(
            reg_child(&hello, "companion_platform_display"),
            b"Chrome (Mac OS)"
        );
        let wrapped_companion =
            reg_child(&hello, "link_code_pairing_wrapped_companion_ephemeral_pub");
        assert_eq!(wrapped_companion.len(), link_code::WRAPPED_KEY_LEN);

        // WhatsApp answers with a ref: the code goes to the supervisor.
        let answer_iq = Node::new("iq")
            .attr("type", "result")
            .attr("id", hello.attr_str("id").unwrap_or_default().into_owned())
            .children(vec![Node::new(REG)
                .children(vec![
                    Node::new("link_code_pairing_ref").bytes(b"REF-1".to_vec())
                ])]);
        let a = w.run(|ctx| on_hello_answer(ctx, &answer_iq));
        let [Report::PairingCode {
            request: 7,
            outcome: PairingCodeOutcome::Code { code },
        }] = a.report.as_slice()
        else {
            panic!("{:?}", a.report)
        };
        assert_eq!(
            link_code::normalize_code(code).as_deref(),
            Some(code.as_str())
        );

        // The phone: unwraps the companion's ephemeral with the code, wraps its own.
        let companion_eph = link_code::unwrap(code, wrapped_companion).expect("80 bytes");
        let phone_eph = xeddsa::generate_private();
        let phone_identity = xeddsa::generate_private();
        let notification = Node::new("notification")
            .attr("type", REG)
            .attr("id", "n1")
            .children(vec![Node::new(REG).children(vec![
                Node::new("link_code_pairing_ref").bytes(b"REF-1".to_vec()),
                Node::new("primary_identity_pub")
                    .bytes(xeddsa::public_key(&phone_identity).to_vec()),
                Node::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                    .bytes(link_code::wrap(code, &xeddsa::public_key(&phone_eph)).to_vec()),
            ])]);
        let finish = w
            .run(|ctx| on_notification(ctx, &notification))
            .send
            .remove(0);
        let reg = finish.child(REG).expect("reg");
        assert_eq!(reg.attr_str("stage").as_deref(), Some("companion_finish"));
        assert_eq!(reg_child(&finish, "link_code_pairing_ref"), b"REF-1");
        assert_eq!(
            reg_child(&finish, "companion_identity_public"),
            &w.creds.identity_key.public.0
        );
        let s_eph = xeddsa::dh(&phone_eph, &companion_eph);
        let opened = link_code::open_bundle(
            &s_eph,
            reg_child(&finish, "link_code_pairing_wrapped_key_bundle"),
        )
        .expect("the phone opens the bundle");
        assert_eq!(opened.companion_identity, w.creds.identity_key.public.0);
        assert_eq!(opened.primary_identity, xeddsa::public_key(&phone_identity));
        let s_id = xeddsa::dh(&phone_identity, &opened.companion_identity);
        let Stage::ExpectScan(_, Some(state)) = &w.stage else {
            panic!("code kept");
        };
        assert_eq!(
            state.adv_secret(),
            Some(link_code::adv_secret(&s_eph, &s_id, &opened.r))
        );

        // A notification for another ref is not answered.
        let other =
            Node::new("notification").children(vec![Node::new(REG)
                .children(vec![
                    Node::new("link_code_pairing_ref").bytes(b"REF-2".to_vec())
                ])]);
        assert!(w.run(|ctx| on_notification(ctx, &other)).send.is_empty());
    }

    #[test]
    fn a_refused_hello_reaches_the_supervisor_and_a_second_request_replaces_the_first() {
        let mut w = World::new();
        let first = w.run(|ctx| start(ctx, 1, "15551234567"));
        assert!(first.report.is_empty());
        let second = w.run(|ctx| start(ctx, 2, "15551234567"));
        assert_eq!(
            second.report,
            vec![refused(1, PairingCodeRefusal::ConnectionLost)]
        );
        let error = Node::new("iq")
            .attr("type", "error")
            .attr(
                "id",
                second.send[0]
                    .attr_str("id")
                    .unwrap_or_default()
                    .into_owned(),
            )
            .children(vec![Node::new("error")
                .attr("code", "400")
                .attr("text", "bad-request")]);
        let a = w.run(|ctx| on_hello_answer(ctx, &error));
        assert_eq!(
            a.report,
            vec![refused(
                2,
                PairingCodeRefusal::ServerRefused("400 bad-request".into())
            )]
        );
        assert!(matches!(w.stage, Stage::ExpectScan(_, None)));
    }
}
