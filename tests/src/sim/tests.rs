//! In-process integration tests: the simulator on `127.0.0.1:0`, a client written here from
//! wa-protocol.md (WebSocket, Noise XX initiator, ClientPayload, pairing replies), and the
//! control API over HTTP. Every wait is for an event under a deadline.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use prost::Message;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use worker::wa::binary::jid::DEFAULT_USER_SERVER;
use worker::wa::binary::{Jid, Node};
use worker::wa::frame::{self, FrameDecoder, INTRO};
use worker::wa::noise::{ClientHandshake, TrustPolicy};
use worker::wa::proto::{
    AdvDeviceIdentity, AdvSignedDeviceIdentity, AdvSignedDeviceIdentityHmac, ClientPayload,
    DevicePairingRegistrationData, UserAgent, CONNECT_REASON_USER_ACTIVATED,
    CONNECT_TYPE_WIFI_UNKNOWN, PLATFORM_WEB,
};
use worker::wa::xeddsa;

use super::connection::{read_frame, NodeIo};
use super::phone::QR_PREFIX;
use super::ws::WsConnection;
use super::{Sim, SimConfig};
use crate::harness::http;

mod messaging;
mod phone;
mod policy;
mod resume;
mod tls;

/// Deadline for anything that happens within milliseconds on an idle machine.
const DEADLINE: Duration = Duration::from_secs(5);
const PHONE: &str = "15551234567";

/// A companion's long-term keys (wa-protocol.md §4.4).
struct Companion {
    noise: [u8; 32],
    identity: [u8; 32],
    skey: [u8; 32],
    adv_secret: [u8; 32],
    registration_id: u32,
}

impl Companion {
    fn generate() -> Self {
        Self {
            noise: xeddsa::generate_private(),
            identity: xeddsa::generate_private(),
            skey: xeddsa::generate_private(),
            adv_secret: rand::random(),
            registration_id: rand::random::<u32>() & 0x3FFF,
        }
    }

    fn identity_public(&self) -> [u8; 32] {
        xeddsa::public_key(&self.identity)
    }

    fn registration_payload(&self) -> Vec<u8> {
        let skey_public = xeddsa::public_key(&self.skey);
        let signature = xeddsa::sign(&self.identity, &[&[5u8][..], &skey_public].concat());
        ClientPayload {
            passive: Some(false),
            pull: Some(false),
            device_pairing_data: Some(DevicePairingRegistrationData {
                e_regid: Some(self.registration_id.to_be_bytes().to_vec()),
                e_keytype: Some(vec![5]),
                e_ident: Some(self.identity_public().to_vec()),
                e_skey_id: Some(vec![0, 0, 1]),
                e_skey_val: Some(skey_public.to_vec()),
                e_skey_sig: Some(signature.to_vec()),
                build_hash: Some(vec![0; 16]),
                device_props: None,
            }),
            ..base_payload()
        }
        .encode_to_vec()
    }

    /// The QR string for `reference`, in whatsmeow's prefixed 5-field form (§6.3).
    fn qr(&self, reference: &str) -> String {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;
        format!(
            "{QR_PREFIX}{reference},{},{},{},9",
            STANDARD.encode(xeddsa::public_key(&self.noise)),
            STANDARD.encode(self.identity_public()),
            STANDARD.encode(self.adv_secret),
        )
    }
}

fn base_payload() -> ClientPayload {
    ClientPayload {
        user_agent: Some(UserAgent {
            platform: Some(PLATFORM_WEB),
            ..Default::default()
        }),
        connect_type: Some(CONNECT_TYPE_WIFI_UNKNOWN),
        connect_reason: Some(CONNECT_REASON_USER_ACTIVATED),
        ..Default::default()
    }
}

fn login_payload(jid: &Jid) -> Vec<u8> {
    ClientPayload {
        username: Some(jid.user.parse().expect("phone digits")),
        device: Some(u32::from(jid.device)),
        passive: Some(true),
        pull: Some(true),
        ..base_payload()
    }
    .encode_to_vec()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

async fn start(config: SimConfig) -> (Sim, CancellationToken) {
    let token = CancellationToken::new();
    let sim = Sim::start(config, token.clone()).await.expect("sim starts");
    (sim, token)
}

/// The WebSocket to `sim`: `wss://` trusting its CA when it serves TLS, `ws://` otherwise.
async fn open_ws(sim: &Sim) -> WsConnection {
    match sim.tls_identity() {
        None => WsConnection::connect(&sim.ws_url()).await,
        Some(tls) => {
            let config = tls
                .client_config()
                .expect("a client config for the sim's CA");
            WsConnection::connect_tls(&sim.ws_url(), config).await
        }
    }
    .expect("websocket connects")
}

/// The client side of §1–§2: WebSocket, intro + ClientHello, ServerHello checked against the
/// simulator's root, ClientFinish with `payload` under the Noise key `noise`.
async fn connect(sim: &Sim, noise: &[u8; 32], payload: &[u8]) -> NodeIo {
    let mut ws = open_ws(sim).await;
    let (handshake, hello) = ClientHandshake::start(xeddsa::generate_private());
    let mut first = INTRO.to_vec();
    frame::encode(&hello, &mut first).expect("fits");
    ws.send(first).await.expect("send hello");
    let mut decoder = FrameDecoder::new();
    let server_hello =
        tokio::time::timeout(DEADLINE, read_frame(&mut ws, &mut decoder, "server hello"))
            .await
            .expect("server hello in time")
            .expect("server hello");
    let trust = TrustPolicy {
        root: sim.root_public_key(),
        now_unix: unix_now(),
    };
    let done = handshake
        .finish(&server_hello, noise, payload, &trust)
        .expect("the chain verifies under the sim's root");
    let mut finish = Vec::new();
    frame::encode(&done.client_finish, &mut finish).expect("fits");
    ws.send(finish).await.expect("send finish");
    NodeIo::new(ws, decoder, done.transport)
}

/// Cancels and waits for every task; the test's clients are gone by then.
async fn shut_down(sim: Sim, token: CancellationToken, clients: Vec<NodeIo>) {
    drop(clients);
    token.cancel();
    tokio::time::timeout(DEADLINE, sim.stopped())
        .await
        .expect("the simulator stops in time");
}

/// Polls `probe` until it holds, without blocking the runtime the simulator runs on.
///
/// # Panics
/// After [`DEADLINE`], with the last state `probe` reported.
async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out waiting for {what}; last state: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// The next node, which must come within the deadline; `None` when the server closed.
async fn next(io: &mut NodeIo) -> Option<Node> {
    tokio::time::timeout(DEADLINE, io.read())
        .await
        .expect("a node or a close within the deadline")
        .expect("a well-formed frame")
}

async fn expect_node(io: &mut NodeIo, what: &str) -> Node {
    next(io)
        .await
        .unwrap_or_else(|| panic!("connection closed while waiting for {what}"))
}

async fn expect_closed(io: &mut NodeIo) {
    if let Some(node) = next(io).await {
        panic!("expected the connection to close, got {node}");
    }
}

/// One control API request, on the blocking pool (the harness client is blocking).
async fn control(sim: &Sim, method: &'static str, path: &str, body: Value) -> (u16, Value) {
    let addr = sim.control_addr();
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let body = body.to_string();
        let body = (method == "POST").then_some(body.as_bytes());
        let response = http::request(addr, method, &path, &[], body).expect("control api answers");
        (response.status, response.json())
    })
    .await
    .expect("request task")
}

fn iq_result(id: &str) -> Node {
    Node::new("iq")
        .jid_attr("to", Jid::server_jid())
        .attr("id", id)
        .attr("type", "result")
}

fn iq(id: &str, xmlns: &str, kind: &str, children: Vec<Node>) -> Node {
    Node::new("iq")
        .attr("id", id)
        .attr("xmlns", xmlns)
        .attr("type", kind)
        .jid_attr("to", Jid::server_jid())
        .children(children)
}

/// Registers: returns the connection and the refs of its `pair-device`.
async fn register(sim: &Sim, companion: &Companion) -> (NodeIo, Vec<String>) {
    let mut io = connect(sim, &companion.noise, &companion.registration_payload()).await;
    let pair_device = expect_node(&mut io, "pair-device").await;
    assert_eq!(pair_device.tag, "iq");
    assert_eq!(pair_device.attr_str("type").as_deref(), Some("set"));
    assert_eq!(
        pair_device.attr_jid("from"),
        Some(&Jid::server_jid()),
        "from is a typed JID"
    );
    let refs: Vec<String> = pair_device
        .child("pair-device")
        .expect("pair-device child")
        .children_by_tag("ref")
        .map(|r| {
            assert!(
                matches!(r.content, worker::wa::binary::Content::Bytes(_)),
                "refs are binary"
            );
            String::from_utf8(r.content_bytes().expect("bytes").to_vec()).expect("ascii")
        })
        .collect();
    assert_eq!(refs.len(), 6);
    let id = pair_device.attr_str("id").expect("id").into_owned();
    io.write(&iq_result(&id)).await.expect("ack");
    (io, refs)
}

/// Checks `pair-success` the way a client must (§6.7 steps 1–4) and builds the signed reply.
fn accept_pair_success(companion: &Companion, iq: &Node) -> (Jid, Node) {
    assert!(iq.attr_str("t").is_some(), "pair-success carries t");
    let success = iq.child("pair-success").expect("pair-success");
    let device = success.child("device").expect("device");
    let jid = device.attr_jid("jid").cloned().expect("jid is a typed JID");
    assert!(device
        .attr_jid("lid")
        .is_some_and(|l| l.server == "lid" && l.device == jid.device));
    let container = success
        .child("device-identity")
        .and_then(Node::content_bytes)
        .expect("device-identity bytes");
    let with_hmac = AdvSignedDeviceIdentityHmac::decode(container).expect("hmac container");
    let details = with_hmac.details.expect("details");
    let mut mac = Hmac::<Sha256>::new_from_slice(&companion.adv_secret).expect("key");
    mac.update(&details);
    mac.verify_slice(&with_hmac.hmac.expect("hmac"))
        .expect("hmac under our adv secret");
    let signed = AdvSignedDeviceIdentity::decode(details.as_slice()).expect("signed identity");
    let identity_bytes = signed.details.clone().expect("identity details");
    let identity = AdvDeviceIdentity::decode(identity_bytes.as_slice()).expect("identity");
    let account_key: [u8; 32] = signed
        .account_signature_key
        .clone()
        .expect("account key")
        .try_into()
        .expect("32");
    let account_signature: [u8; 64] = signed
        .account_signature
        .clone()
        .expect("account signature")
        .try_into()
        .expect("64");
    let own = companion.identity_public();
    assert!(xeddsa::verify(
        &account_key,
        &[&[6u8, 0][..], &identity_bytes, &own].concat(),
        &account_signature
    ));
    let device_signature = xeddsa::sign(
        &companion.identity,
        &[&[6u8, 1][..], &identity_bytes, &own, &account_key].concat(),
    );
    let reply_identity = AdvSignedDeviceIdentity {
        account_signature_key: None,
        device_signature: Some(device_signature.to_vec()),
        ..signed
    };
    let id = iq.attr_str("id").expect("id").into_owned();
    let reply = iq_result(&id).children(vec![Node::new("pair-device-sign").children(vec![
        Node::new("device-identity")
            .attr(
                "key-index",
                identity.key_index.expect("key index").to_string(),
            )
            .bytes(reply_identity.encode_to_vec()),
    ])]);
    (jid, reply)
}

/// Registers, scans, answers pair-success and sees the 515: a paired device.
async fn pair(sim: &Sim, companion: &Companion) -> Jid {
    pair_as(sim, companion, PHONE).await.0
}

/// [`pair`] with the phone of another account; also returns the LID device JID of
/// `pair-success`.
async fn pair_as(sim: &Sim, companion: &Companion, phone: &str) -> (Jid, Jid) {
    let (mut io, refs) = register(sim, companion).await;
    let (status, answer) = control(
        sim,
        "POST",
        "/scan",
        json!({"qr": companion.qr(&refs[0]), "phone": phone}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let pair_success = expect_node(&mut io, "pair-success").await;
    let (jid, reply) = accept_pair_success(companion, &pair_success);
    let lid = pair_success
        .child("pair-success")
        .and_then(|s| s.child("device"))
        .and_then(|d| d.attr_jid("lid"))
        .cloned()
        .expect("pair-success names the LID");
    assert_eq!(answer["jid"], jid.to_string());
    io.write(&reply).await.expect("reply");
    let restart = expect_node(&mut io, "stream:error 515").await;
    assert_eq!(restart.tag, "stream:error");
    assert_eq!(restart.attr_str("code").as_deref(), Some("515"));
    expect_closed(&mut io).await;
    (jid, lid)
}

async fn login(sim: &Sim, companion: &Companion, jid: &Jid) -> NodeIo {
    let mut io = connect(sim, &companion.noise, &login_payload(jid)).await;
    let success = expect_node(&mut io, "success").await;
    assert_eq!(success.tag, "success", "{success}");
    expect_edge_routing(&mut io).await;
    io
}

/// The `<ib><edge_routing>` a login gets right after `<success>`; returns the routing info.
async fn expect_edge_routing(io: &mut NodeIo) -> Vec<u8> {
    let ib = expect_node(io, "edge routing").await;
    ib.child("edge_routing")
        .and_then(|e| e.child("routing_info"))
        .and_then(Node::content_bytes)
        .unwrap_or_else(|| panic!("edge routing info after success: {ib}"))
        .to_vec()
}

#[tokio::test]
async fn pairs_by_qr_then_logs_in_and_refuses_a_foreign_noise_key() {
    let (sim, token) = start(SimConfig::default()).await;
    let companion = Companion::generate();
    let jid = pair(&sim, &companion).await;
    assert_eq!(
        (jid.user.as_str(), jid.server.as_str()),
        (PHONE, DEFAULT_USER_SERVER)
    );
    assert!(jid.device >= 1);

    let mut io = connect(&sim, &companion.noise, &login_payload(&jid)).await;
    let success = expect_node(&mut io, "success").await;
    assert_eq!(success.tag, "success", "{success}");
    assert!(success
        .attr_str("t")
        .is_some_and(|t| t.parse::<u64>().is_ok()));
    let lid = success.attr_jid("lid").expect("lid is a typed JID");
    assert_eq!((lid.server.as_str(), lid.device), ("lid", jid.device));
    assert!(expect_edge_routing(&mut io).await.starts_with(b"sim-edge-"));

    io.write(&iq("1.2-1", "w:p", "get", vec![]))
        .await
        .expect("ping");
    let pong = expect_node(&mut io, "pong").await;
    assert_eq!(pong.attr_str("id").as_deref(), Some("1.2-1"));
    assert_eq!(pong.attr_str("type").as_deref(), Some("result"));
    assert!(pong.attr_str("t").is_some());
    io.write(&iq("1.2-2", "encrypt", "get", vec![Node::new("count")]))
        .await
        .expect("count");
    let count = expect_node(&mut io, "count").await;
    assert_eq!(
        count
            .child("count")
            .and_then(|c| c.attr_str("value"))
            .as_deref(),
        Some("0")
    );
    io.write(&iq(
        "1.2-3",
        "w:profile:picture",
        "get",
        vec![Node::new("picture")],
    ))
    .await
    .expect("unsupported iq");
    let unsupported = expect_node(&mut io, "error 501").await;
    assert_eq!(
        unsupported
            .child("error")
            .and_then(|e| e.attr_str("code"))
            .as_deref(),
        Some("501")
    );

    let (_, sessions) = control(&sim, "GET", "/sessions", json!(null)).await;
    let row = sessions
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["state"] == "logged_in"))
        .cloned()
        .unwrap_or_else(|| panic!("no logged_in session in {sessions}"));
    assert_eq!(row["jid"], jid.to_string());
    assert!(row["conn_id"].is_u64() && row["connected_at"].is_string());

    let intruder = Companion::generate();
    let mut other = connect(&sim, &intruder.noise, &login_payload(&jid)).await;
    let failure = expect_node(&mut other, "failure").await;
    assert_eq!(failure.tag, "failure");
    assert_eq!(failure.attr_str("reason").as_deref(), Some("401"));
    expect_closed(&mut other).await;

    let (_, stats) = control(&sim, "GET", "/stats", json!(null)).await;
    assert_eq!(
        (
            &stats["registrations"],
            &stats["pairings"],
            &stats["logins"],
            &stats["login_failures"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(1)),
        "{stats}"
    );
    shut_down(sim, token, vec![io, other]).await;
}

#[tokio::test]
async fn refuses_scans_with_foreign_keys_unknown_refs_and_a_second_scan() {
    let (sim, token) = start(SimConfig::default()).await;
    let companion = Companion::generate();
    let (mut io, refs) = register(&sim, &companion).await;
    let scan = |qr: String| control(&sim, "POST", "/scan", json!({"qr": qr, "phone": PHONE}));

    let stranger = Companion::generate();
    let (status, answer) = scan(stranger.qr(&refs[0])).await;
    assert_eq!(status, 403, "foreign noise key: {answer}");
    let mixed = Companion {
        noise: companion.noise,
        ..Companion::generate()
    };
    assert_eq!(
        scan(mixed.qr(&refs[0])).await.0,
        403,
        "foreign identity key"
    );
    assert_eq!(scan(companion.qr("2@nobody-issued-this")).await.0, 404);
    let (status, answer) = scan("not,a,qr".into()).await;
    assert_eq!(status, 400);
    assert!(answer["error"].is_string());
    let bare = companion.qr(&refs[1]).replace(QR_PREFIX, "");
    let four_fields = bare.rsplit_once(',').expect("five fields").0.to_owned();
    let (status, answer) = scan(four_fields).await;
    assert_eq!(status, 200, "a later, bare, 4-field QR is fine: {answer}");
    assert_eq!(scan(companion.qr(&refs[2])).await.0, 409, "scanned already");
    assert_eq!(
        expect_node(&mut io, "pair-success")
            .await
            .child("pair-success")
            .map(|_| ()),
        Some(())
    );
    shut_down(sim, token, vec![io]).await;
}

#[tokio::test]
async fn expired_refs_are_refused_and_the_registration_closes() {
    let (sim, token) = start(SimConfig {
        ref_timeout: Some(Duration::from_millis(1)),
        ..SimConfig::default()
    })
    .await;
    let companion = Companion::generate();
    let (mut io, refs) = register(&sim, &companion).await;
    // Foreign keys make a live ref answer 403 without consuming the session; once every ref is
    // past its 1 ms the same scan answers 410.
    let stranger = Companion::generate();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, answer) = control(
            &sim,
            "POST",
            "/scan",
            json!({"qr": stranger.qr(&refs[5]), "phone": PHONE}),
        )
        .await;
        if status == 410 {
            break;
        }
        assert_eq!(status, 403, "{answer}");
        assert!(tokio::time::Instant::now() < deadline, "ref never expired");
    }
    let (status, _) = control(
        &sim,
        "POST",
        "/scan",
        json!({"qr": companion.qr(&refs[0]), "phone": PHONE}),
    )
    .await;
    assert_eq!(status, 410, "the right keys do not revive an expired ref");
    expect_closed(&mut io).await;
    assert_eq!(sim.stats().registrations, 1);
    shut_down(sim, token, vec![io]).await;
}

#[tokio::test]
async fn a_bad_signed_prekey_or_device_signature_pairs_nothing() {
    let (sim, token) = start(SimConfig::default()).await;
    let companion = Companion::generate();
    let mut payload =
        ClientPayload::decode(companion.registration_payload().as_slice()).expect("payload");
    if let Some(sig) = payload
        .device_pairing_data
        .as_mut()
        .and_then(|d| d.e_skey_sig.as_mut())
    {
        sig[0] ^= 1;
    }
    let mut io = connect(&sim, &companion.noise, &payload.encode_to_vec()).await;
    let failure = expect_node(&mut io, "failure").await;
    assert_eq!(failure.attr_str("reason").as_deref(), Some("400"));
    expect_closed(&mut io).await;

    let (mut io, refs) = register(&sim, &companion).await;
    let (status, _) = control(
        &sim,
        "POST",
        "/scan",
        json!({"qr": companion.qr(&refs[0]), "phone": PHONE}),
    )
    .await;
    assert_eq!(status, 200);
    let pair_success = expect_node(&mut io, "pair-success").await;
    let (jid, reply) = accept_pair_success(&companion, &pair_success);
    let forged_reply = with_bad_device_signature(&reply);
    io.write(&forged_reply).await.expect("reply");
    expect_closed(&mut io).await;
    let mut again = connect(&sim, &companion.noise, &login_payload(&jid)).await;
    let failure = expect_node(&mut again, "failure").await;
    assert_eq!(failure.attr_str("reason").as_deref(), Some("401"));
    let stats = sim.stats();
    assert_eq!(
        (stats.registrations, stats.pairings, stats.logins),
        (2, 0, 0)
    );
    shut_down(sim, token, vec![io, again]).await;
}

/// The same `pair-device-sign` reply with one bit of the device signature flipped.
fn with_bad_device_signature(reply: &Node) -> Node {
    let sign = reply
        .child("pair-device-sign")
        .and_then(|s| s.child("device-identity"))
        .expect("device-identity");
    let mut signed =
        AdvSignedDeviceIdentity::decode(sign.content_bytes().expect("bytes")).expect("decodes");
    if let Some(signature) = signed.device_signature.as_mut() {
        signature[7] ^= 1;
    }
    let id = reply.attr_str("id").expect("id").into_owned();
    iq_result(&id).children(vec![Node::new("pair-device-sign").children(vec![
        Node::new("device-identity")
            .attr(
                "key-index",
                sign.attr_str("key-index").expect("key-index").into_owned(),
            )
            .bytes(signed.encode_to_vec()),
    ])])
}

#[tokio::test]
async fn delivers_newsletter_messages_after_active_and_reports_the_ack() {
    let (sim, token) = start(SimConfig::default()).await;
    let companion = Companion::generate();
    let jid = pair(&sim, &companion).await;
    let (status, _) = control(&sim, "POST", "/message", json!({"jid": jid.to_string()})).await;
    assert_eq!(status, 404, "not logged in");
    let mut io = login(&sim, &companion, &jid).await;

    // Pushed while passive: held until <active/>.
    let push = {
        let addr = sim.control_addr();
        let body = json!({"jid": jid.to_string(), "text": "hi"}).to_string();
        tokio::task::spawn_blocking(move || {
            http::request(addr, "POST", "/message", &[], Some(body.as_bytes()))
                .expect("message answers")
                .json()
        })
    };
    wait_for("the message queued", || {
        let queued = sim
            .shared
            .registry()
            .device_mut(&jid)
            .map_or(0, |d| d.outbox.len());
        (queued == 1)
            .then_some(())
            .ok_or(format!("{queued} queued"))
    })
    .await;
    io.write(&iq("1.2-4", "passive", "set", vec![Node::new("active")]))
        .await
        .expect("active");
    let result = expect_node(&mut io, "active result").await;
    assert_eq!(result.attr_str("type").as_deref(), Some("result"));
    let preview = expect_node(&mut io, "offline preview").await;
    let preview = preview.child("offline_preview").expect("offline_preview");
    assert_eq!(preview.attr_str("count").as_deref(), Some("1"));
    assert_eq!(preview.attr_str("message").as_deref(), Some("1"));
    let message = expect_node(&mut io, "message").await;
    assert_eq!(message.tag, "message");
    assert_eq!(message.attr_str("offline").as_deref(), Some("1"));
    let from = message
        .attr_jid("from")
        .cloned()
        .expect("typed newsletter JID");
    assert_eq!(from.server, "newsletter");
    assert_eq!(
        message.child("plaintext").and_then(Node::content_bytes),
        Some(&b"\x0a\x02hi"[..])
    );
    let offline = expect_node(&mut io, "offline").await;
    assert_eq!(
        offline
            .child("offline")
            .and_then(|o| o.attr_str("count"))
            .as_deref(),
        Some("1")
    );
    let id = message.attr_str("id").expect("id").into_owned();
    io.write(
        &Node::new("ack")
            .attr("class", "message")
            .attr("id", id.clone())
            .jid_attr("to", from),
    )
    .await
    .expect("ack");
    let answer = push.await.expect("push task");
    assert_eq!(answer, json!({"ok": true, "acked": true, "id": id}));

    // Pushed while active: delivered at once; a receipt confirms it too.
    let push = {
        let addr = sim.control_addr();
        let body = json!({"jid": jid.to_string()}).to_string();
        tokio::task::spawn_blocking(move || {
            http::request(addr, "POST", "/message", &[], Some(body.as_bytes()))
                .expect("message answers")
                .json()
        })
    };
    let message = expect_node(&mut io, "second message").await;
    assert!(message.attr_str("offline").is_none());
    let id = message.attr_str("id").expect("id").into_owned();
    io.write(
        &Node::new("receipt")
            .attr("id", id.clone())
            .attr("type", "inactive"),
    )
    .await
    .expect("receipt");
    assert_eq!(push.await.expect("push task")["acked"], json!(true));
    shut_down(sim, token, vec![io]).await;
}

#[tokio::test]
async fn admin_faults_and_a_second_login_end_connections_with_their_stanzas() {
    let (sim, token) = start(SimConfig::default()).await;
    let companion = Companion::generate();
    let jid = pair(&sim, &companion).await;
    let hook = |path: &'static str, body: Value| control(&sim, "POST", path, body);
    let target = json!({"jid": jid.to_string()});

    let mut first = login(&sim, &companion, &jid).await;
    let mut second = login(&sim, &companion, &jid).await;
    let replaced = expect_node(&mut first, "conflict").await;
    assert_eq!(
        replaced
            .child("conflict")
            .and_then(|c| c.attr_str("type"))
            .as_deref(),
        Some("replaced")
    );
    expect_closed(&mut first).await;

    assert_eq!(
        hook("/restart", target.clone()).await,
        (200, json!({"ok": true}))
    );
    let restart = expect_node(&mut second, "515").await;
    assert_eq!(restart.attr_str("code").as_deref(), Some("515"));
    expect_closed(&mut second).await;

    let mut third = login(&sim, &companion, &jid).await;
    let (status, _) = hook("/error", json!({"jid": jid.to_string(), "code": 503})).await;
    assert_eq!(status, 200);
    assert_eq!(
        expect_node(&mut third, "503")
            .await
            .attr_str("code")
            .as_deref(),
        Some("503")
    );
    expect_closed(&mut third).await;

    let mut fourth = login(&sim, &companion, &jid).await;
    assert_eq!(hook("/drop", target.clone()).await.0, 200);
    expect_closed(&mut fourth).await;

    let mut fifth = login(&sim, &companion, &jid).await;
    assert_eq!(hook("/logout", target.clone()).await.0, 200);
    let removed = expect_node(&mut fifth, "device_removed").await;
    assert_eq!(removed.attr_str("code").as_deref(), Some("401"));
    assert_eq!(
        removed
            .child("conflict")
            .and_then(|c| c.attr_str("type"))
            .as_deref(),
        Some("device_removed")
    );
    expect_closed(&mut fifth).await;
    let mut after = connect(&sim, &companion.noise, &login_payload(&jid)).await;
    let failure = expect_node(&mut after, "failure").await;
    assert_eq!(failure.attr_str("reason").as_deref(), Some("401"));
    assert_eq!(hook("/conflict", target).await.0, 404);
    shut_down(sim, token, vec![first, second, third, fourth, fifth, after]).await;
}

#[tokio::test]
async fn stores_uploaded_prekeys_and_answers_count_and_digest() {
    let (sim, token) = start(SimConfig::default()).await;
    let companion = Companion::generate();
    let jid = pair(&sim, &companion).await;
    let mut io = login(&sim, &companion, &jid).await;
    io.write(&iq("d-1", "encrypt", "get", vec![Node::new("digest")]))
        .await
        .expect("digest");
    let missing = expect_node(&mut io, "digest 404").await;
    assert_eq!(
        missing
            .child("error")
            .and_then(|e| e.attr_str("code"))
            .as_deref(),
        Some("404")
    );
    let skey_public = xeddsa::public_key(&companion.skey);
    let signature = xeddsa::sign(&companion.identity, &[&[5u8][..], &skey_public].concat());
    let keys: Vec<Node> = (1u32..=3)
        .map(|id| {
            Node::new("key").children(vec![
                Node::new("id").bytes(id.to_be_bytes()[1..].to_vec()),
                Node::new("value").bytes(xeddsa::public_key(&xeddsa::generate_private()).to_vec()),
            ])
        })
        .collect();
    let upload = iq(
        "u-1",
        "encrypt",
        "set",
        vec![
            Node::new("registration").bytes(companion.registration_id.to_be_bytes().to_vec()),
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(companion.identity_public().to_vec()),
            Node::new("list").children(keys),
            Node::new("skey").children(vec![
                Node::new("id").bytes(vec![0, 0, 1]),
                Node::new("value").bytes(skey_public.to_vec()),
                Node::new("signature").bytes(signature.to_vec()),
            ]),
        ],
    );
    io.write(&upload).await.expect("upload");
    assert_eq!(
        expect_node(&mut io, "upload result")
            .await
            .attr_str("type")
            .as_deref(),
        Some("result")
    );
    io.write(&iq("c-1", "encrypt", "get", vec![Node::new("count")]))
        .await
        .expect("count");
    let count = expect_node(&mut io, "count").await;
    assert_eq!(
        count
            .child("count")
            .and_then(|c| c.attr_str("value"))
            .as_deref(),
        Some("3")
    );
    io.write(&iq("d-2", "encrypt", "get", vec![Node::new("digest")]))
        .await
        .expect("digest");
    let digest = expect_node(&mut io, "digest").await;
    let digest = digest.child("digest").expect("digest child");
    assert_eq!(
        digest.child("list").map(|l| l.children_slice().len()),
        Some(3)
    );
    assert_eq!(
        digest
            .child("hash")
            .and_then(Node::content_bytes)
            .map(<[u8]>::len),
        Some(20)
    );
    shut_down(sim, token, vec![io]).await;
}

#[tokio::test]
async fn refuses_upgrades_on_other_paths_and_while_refuse_is_on() {
    let (sim, token) = start(SimConfig::default()).await;
    let elsewhere = sim.ws_url().replace("/ws/chat", "/other");
    assert!(WsConnection::connect(&elsewhere).await.is_err());
    let (status, answer) = control(&sim, "POST", "/config", json!({"refuse": true})).await;
    assert_eq!((status, answer), (200, json!({"ok": true})));
    assert!(WsConnection::connect(&sim.ws_url()).await.is_err());
    assert_eq!(
        control(&sim, "POST", "/config", json!({"refuse": false}))
            .await
            .0,
        200
    );
    let io = connect(
        &sim,
        &xeddsa::generate_private(),
        &base_payload().encode_to_vec(),
    )
    .await;
    assert_eq!(
        control(&sim, "POST", "/config", json!({"refuse": 1}))
            .await
            .0,
        400
    );
    assert_eq!(
        sim.stats().connections,
        1,
        "refused upgrades are not connections"
    );
    shut_down(sim, token, vec![io]).await;
}
