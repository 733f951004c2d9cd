//! The control API's policy: failures played at login (403, 405, 406), the minimum version and
//! `/sw.js`, and the silent server.

use worker::wa::proto::AppVersion;

use super::*;

/// A login payload whose user agent says `version`.
fn login_payload_at(jid: &Jid, version: [u32; 3]) -> Vec<u8> {
    let mut payload = ClientPayload::decode(login_payload(jid).as_slice()).expect("payload");
    let [primary, secondary, tertiary] = version;
    if let Some(agent) = payload.user_agent.as_mut() {
        agent.app_version = Some(AppVersion {
            primary: Some(primary),
            secondary: Some(secondary),
            tertiary: Some(tertiary),
            ..Default::default()
        });
    }
    payload.encode_to_vec()
}

/// Connects with `payload` and expects `<failure reason=…/>` then the close.
async fn expect_failure(sim: &Sim, companion: &Companion, payload: &[u8], reason: &str) {
    let mut io = connect(sim, &companion.noise, payload).await;
    let failure = expect_node(&mut io, "failure").await;
    assert_eq!(
        (failure.tag.as_str(), failure.attr_str("reason").as_deref()),
        ("failure", Some(reason)),
        "{failure}"
    );
    expect_closed(&mut io).await;
}

#[tokio::test]
async fn plays_403_405_and_406_per_account_or_for_all_until_cleared() {
    let (sim, token) = start(SimConfig::default()).await;
    let companion = Companion::generate();
    let jid = pair(&sim, &companion).await;
    let post = |body: Value| control(&sim, "POST", "/failure", body);

    assert_eq!(
        post(json!({"reason": 403, "phone": PHONE})).await,
        (200, json!({"ok": true}))
    );
    expect_failure(&sim, &companion, &login_payload(&jid), "403").await;
    // Another account's setting does not apply.
    assert_eq!(post(json!({"reason": null, "phone": PHONE})).await.0, 200);
    assert_eq!(
        post(json!({"reason": "406", "phone": "15550000000"}))
            .await
            .0,
        200
    );
    let io = login(&sim, &companion, &jid).await;
    drop(io);

    // For all accounts.
    assert_eq!(post(json!({"reason": 405})).await.0, 200);
    expect_failure(&sim, &companion, &login_payload(&jid), "405").await;
    assert_eq!(post(json!({"reason": 406})).await.0, 200);
    expect_failure(&sim, &companion, &login_payload(&jid), "406").await;
    // The account's own setting wins over the global one.
    assert_eq!(post(json!({"reason": 403, "phone": PHONE})).await.0, 200);
    expect_failure(&sim, &companion, &login_payload(&jid), "403").await;
    assert_eq!(post(json!({"reason": null})).await.0, 200);
    assert_eq!(post(json!({"reason": null, "phone": PHONE})).await.0, 200);
    let io = login(&sim, &companion, &jid).await;

    // Only the three playable reasons.
    assert_eq!(post(json!({"reason": 401})).await.0, 400);
    assert_eq!(post(json!({"reason": 403, "phone": "x"})).await.0, 400);

    let (_, stats) = control(&sim, "GET", "/stats", json!(null)).await;
    assert_eq!(stats["login_failures"], json!(4), "{stats}");
    shut_down(sim, token, vec![io]).await;
}

#[tokio::test]
async fn publishes_its_version_and_refuses_clients_below_the_minimum_with_405() {
    let (sim, token) = start(SimConfig::default()).await;
    let companion = Companion::generate();
    let jid = pair(&sim, &companion).await;

    assert_eq!(
        control(&sim, "GET", "/version", json!(null)).await,
        (200, json!({"current": "2.3000.1045649367", "min": null}))
    );
    let addr = sim.control_addr();
    let sw = tokio::task::spawn_blocking(move || {
        http::request(addr, "GET", "/sw.js", &[], None).expect("sw.js answers")
    })
    .await
    .expect("request task");
    assert_eq!(sw.status, 200);
    let body = String::from_utf8(sw.body).expect("text");
    assert!(body.contains(r#"\"client_revision\":1045649367"#), "{body}");

    let (status, answer) = control(
        &sim,
        "POST",
        "/version",
        json!({"current": "2.3000.1027934701", "min": "2.3000.1020000000"}),
    )
    .await;
    assert_eq!(
        (status, answer),
        (
            200,
            json!({"current": "2.3000.1027934701", "min": "2.3000.1020000000"})
        )
    );
    expect_failure(
        &sim,
        &companion,
        &login_payload_at(&jid, [2, 3000, 1_019_999_999]),
        "405",
    )
    .await;
    // A registration below the minimum is refused the same way.
    let newcomer = Companion::generate();
    let mut registration =
        ClientPayload::decode(newcomer.registration_payload().as_slice()).expect("payload");
    if let Some(agent) = registration.user_agent.as_mut() {
        agent.app_version = Some(AppVersion {
            primary: Some(2),
            secondary: Some(2412),
            tertiary: Some(54),
            ..Default::default()
        });
    }
    expect_failure(&sim, &newcomer, &registration.encode_to_vec(), "405").await;

    let mut io = connect(
        &sim,
        &companion.noise,
        &login_payload_at(&jid, [2, 3000, 1_020_000_000]),
    )
    .await;
    assert_eq!(expect_node(&mut io, "success").await.tag, "success");

    // Only "min" given: "current" stays; null removes the minimum.
    assert_eq!(
        control(&sim, "POST", "/version", json!({"min": null})).await,
        (200, json!({"current": "2.3000.1027934701", "min": null}))
    );
    assert_eq!(
        control(&sim, "POST", "/version", json!({"current": "2.3000"}))
            .await
            .0,
        400
    );
    shut_down(sim, token, vec![io]).await;
}

#[tokio::test]
async fn a_silenced_connection_stays_open_and_answers_nothing() {
    let (sim, token) = start(SimConfig::default()).await;
    let companion = Companion::generate();
    let jid = pair(&sim, &companion).await;
    let mut io = login(&sim, &companion, &jid).await;

    assert_eq!(
        control(&sim, "POST", "/silence", json!({"jid": jid.to_string()})).await,
        (200, json!({"ok": true}))
    );
    io.write(&iq("s-1", "w:p", "get", vec![]))
        .await
        .expect("ping");
    // Nothing comes back: no pong, no close, while the deadline runs out.
    let quiet = tokio::time::timeout(Duration::from_millis(500), io.read()).await;
    assert!(quiet.is_err(), "the silent server wrote {quiet:?}");
    let (_, sessions) = control(&sim, "GET", "/sessions", json!(null)).await;
    assert_eq!(sessions[0]["state"], "logged_in", "{sessions}");
    // A push is dropped too.
    let (_, pushed) = control(
        &sim,
        "POST",
        "/message",
        json!({"jid": jid.to_string(), "timeout_ms": 300}),
    )
    .await;
    assert_eq!(pushed["acked"], json!(false), "{pushed}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), io.read())
            .await
            .is_err(),
        "no push reaches a silenced connection"
    );
    // A fault still ends it.
    assert_eq!(
        control(&sim, "POST", "/drop", json!({"jid": jid.to_string()}))
            .await
            .0,
        200
    );
    expect_closed_or_reset(&mut io).await;

    // The silent mode: every later login gets <success>, then silence.
    assert_eq!(
        control(&sim, "POST", "/config", json!({"silent": true})).await,
        (200, json!({"ok": true}))
    );
    let mut quiet = connect(&sim, &companion.noise, &login_payload(&jid)).await;
    assert_eq!(expect_node(&mut quiet, "success").await.tag, "success");
    quiet
        .write(&iq("s-2", "w:p", "get", vec![]))
        .await
        .expect("ping");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), quiet.read())
            .await
            .is_err(),
        "no edge routing, no pong"
    );
    let (_, stats) = control(&sim, "GET", "/stats", json!(null)).await;
    assert_eq!(stats["silenced"], json!(2), "{stats}");
    shut_down(sim, token, vec![io, quiet]).await;
}

/// A dropped TCP stream reads as a close or as a reset.
async fn expect_closed_or_reset(io: &mut NodeIo) {
    match tokio::time::timeout(DEADLINE, io.read())
        .await
        .expect("the drop is seen within the deadline")
    {
        Ok(None) | Err(_) => {}
        Ok(Some(node)) => panic!("expected the connection to end, got {node}"),
    }
}
