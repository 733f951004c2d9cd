//! Noise IK and XXfallback against the simulator (wa-protocol.md §2.6), with an initiator
//! written here from the spec: a paired device that knows the server's static key resumes with
//! IK; anything else is answered with XXfallback, which the client completes as XX.

use prost::Message;
use worker::wa::frame::{self, FrameDecoder, INTRO};
use worker::wa::noise::NoiseTransport;
use worker::wa::proto::{CertChain, HandshakeMessage};
use worker::wa::xeddsa::{dh, generate_private, public_key};

use super::super::handshake::{IK_NAME, XX_FALLBACK_NAME};
use super::*;
use worker::wa::noise::SymmetricState;

/// How the server answered an IK ClientHello.
#[derive(Debug, Eq, PartialEq)]
enum Answer {
    /// ServerHello without `static`: IK completed.
    Ik,
    /// ServerHello with `static`: the client finished with XXfallback.
    Fallback,
}

/// A WhatsApp-Web-style resuming client: IK ClientHello under the Noise key `noise`, assuming
/// the server's static key is `server_static`; completes whichever way the server answers.
async fn connect_ik(
    sim: &Sim,
    noise: &[u8; 32],
    server_static: &[u8; 32],
    payload: &[u8],
) -> (NodeIo, Answer) {
    let mut ws = WsConnection::connect(&sim.ws_url())
        .await
        .expect("websocket connects");
    let ephemeral = generate_private();
    let e_pub = public_key(&ephemeral);
    let mut ik = SymmetricState::named(IK_NAME, &INTRO);
    ik.mix_hash(server_static);
    ik.mix_hash(&e_pub);
    ik.mix_key(&dh(&ephemeral, server_static));
    let static_ct = ik.encrypt_and_hash(&public_key(noise));
    ik.mix_key(&dh(noise, server_static));
    let payload_ct = ik.encrypt_and_hash(payload);
    let hello = HandshakeMessage {
        client_hello: Some(worker::wa::proto::ClientHello {
            ephemeral: Some(e_pub.to_vec()),
            r#static: Some(static_ct),
            payload: Some(payload_ct),
        }),
        ..Default::default()
    };
    let mut first = INTRO.to_vec();
    frame::encode(&hello.encode_to_vec(), &mut first).expect("fits");
    ws.send(first).await.expect("send hello");
    let mut decoder = FrameDecoder::new();
    let server_hello =
        tokio::time::timeout(DEADLINE, read_frame(&mut ws, &mut decoder, "server hello"))
            .await
            .expect("server hello in time")
            .expect("server hello");
    let server_hello = HandshakeMessage::decode(server_hello.as_slice())
        .expect("a HandshakeMessage")
        .server_hello
        .expect("a ServerHello");
    let e_s: [u8; 32] = server_hello
        .ephemeral
        .expect("server ephemeral")
        .try_into()
        .expect("32 bytes");
    let payload_ct = server_hello.payload.expect("server payload");

    let Some(static_ct) = server_hello.r#static else {
        // IK accepted.
        ik.mix_hash(&e_s);
        ik.mix_key(&dh(&ephemeral, &e_s));
        ik.mix_key(&dh(noise, &e_s));
        ik.decrypt_and_hash(&payload_ct)
            .expect("the IK ServerHello payload authenticates");
        let (write, read) = ik.split();
        return (
            NodeIo::new(ws, decoder, NoiseTransport::new(write, read)),
            Answer::Ik,
        );
    };
    // XXfallback: start over with the same ephemeral key, then XX.
    let mut xx = SymmetricState::named(XX_FALLBACK_NAME, &INTRO);
    xx.mix_hash(&e_pub);
    xx.mix_hash(&e_s);
    xx.mix_key(&dh(&ephemeral, &e_s));
    let s_s: [u8; 32] = xx
        .decrypt_and_hash(&static_ct)
        .expect("the server static authenticates")
        .try_into()
        .expect("32 bytes");
    xx.mix_key(&dh(&ephemeral, &s_s));
    let chain = xx
        .decrypt_and_hash(&payload_ct)
        .expect("the certificate chain authenticates");
    let leaf_key = CertChain::decode(chain.as_slice())
        .ok()
        .and_then(|c| c.leaf)
        .and_then(|l| l.details)
        .and_then(|d| worker::wa::proto::CertDetails::decode(d.as_slice()).ok())
        .and_then(|d| d.key);
    assert_eq!(
        leaf_key.as_deref(),
        Some(&s_s[..]),
        "the leaf names the static key"
    );
    let client_static_ct = xx.encrypt_and_hash(&public_key(noise));
    xx.mix_key(&dh(noise, &e_s));
    let client_payload_ct = xx.encrypt_and_hash(payload);
    let finish = HandshakeMessage {
        client_finish: Some(worker::wa::proto::ClientFinish {
            r#static: Some(client_static_ct),
            payload: Some(client_payload_ct),
        }),
        ..Default::default()
    };
    let mut out = Vec::new();
    frame::encode(&finish.encode_to_vec(), &mut out).expect("fits");
    ws.send(out).await.expect("send finish");
    let (write, read) = xx.split();
    (
        NodeIo::new(ws, decoder, NoiseTransport::new(write, read)),
        Answer::Fallback,
    )
}

async fn stats(sim: &Sim) -> Value {
    control(sim, "GET", "/stats", json!(null)).await.1
}

#[tokio::test]
async fn a_paired_device_resumes_with_ik_and_gets_success() {
    let (sim, token) = start(SimConfig::default()).await;
    let companion = Companion::generate();
    let jid = pair(&sim, &companion).await;
    let server_static = public_key(sim.shared.pki.static_private());

    let (mut io, answer) =
        connect_ik(&sim, &companion.noise, &server_static, &login_payload(&jid)).await;
    assert_eq!(answer, Answer::Ik);
    let success = expect_node(&mut io, "success").await;
    assert_eq!(success.tag, "success", "{success}");
    expect_edge_routing(&mut io).await;
    io.write(&iq("ik-1", "w:p", "get", vec![]))
        .await
        .expect("ping");
    let pong = expect_node(&mut io, "pong").await;
    assert_eq!(pong.attr_str("id").as_deref(), Some("ik-1"));

    let stats = stats(&sim).await;
    assert_eq!(
        (
            &stats["ik_logins"],
            &stats["ik_fallbacks"],
            &stats["logins"]
        ),
        (&json!(1), &json!(0), &json!(1)),
        "{stats}"
    );
    shut_down(sim, token, vec![io]).await;
}

#[tokio::test]
async fn ik_from_a_stale_server_key_or_an_unpaired_device_falls_back_to_xx() {
    let (sim, token) = start(SimConfig::default()).await;
    let companion = Companion::generate();
    let jid = pair(&sim, &companion).await;
    let server_static = public_key(sim.shared.pki.static_private());

    // The client remembers another server key (an earlier run): the hello does not decrypt;
    // XXfallback, then a normal login.
    let stale = public_key(&generate_private());
    let (mut resumed, answer) =
        connect_ik(&sim, &companion.noise, &stale, &login_payload(&jid)).await;
    assert_eq!(answer, Answer::Fallback);
    let success = expect_node(&mut resumed, "success after fallback").await;
    assert_eq!(success.tag, "success", "{success}");

    // A device the server does not know (right server key): fallback, then 401.
    let stranger = Companion::generate();
    let (mut refused, answer) =
        connect_ik(&sim, &stranger.noise, &server_static, &login_payload(&jid)).await;
    assert_eq!(answer, Answer::Fallback);
    let failure = expect_node(&mut refused, "failure").await;
    assert_eq!(
        (failure.tag.as_str(), failure.attr_str("reason").as_deref()),
        ("failure", Some("401"))
    );
    expect_closed(&mut refused).await;

    // A registration never resumes: fallback, then pair-device.
    let newcomer = Companion::generate();
    let (mut registering, answer) = connect_ik(
        &sim,
        &newcomer.noise,
        &server_static,
        &newcomer.registration_payload(),
    )
    .await;
    assert_eq!(answer, Answer::Fallback);
    let pair_device = expect_node(&mut registering, "pair-device").await;
    assert!(pair_device.child("pair-device").is_some(), "{pair_device}");

    let stats = stats(&sim).await;
    assert_eq!(
        (&stats["ik_logins"], &stats["ik_fallbacks"]),
        (&json!(0), &json!(3)),
        "{stats}"
    );
    shut_down(sim, token, vec![resumed, refused, registering]).await;
}
