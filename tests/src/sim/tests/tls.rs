//! `wss://`: the same pairing and login through the simulator's TLS, and clients that do not
//! trust its CA or do not speak TLS at all dropped, counted, and no harm to the next client.

use super::*;
use crate::sim::{Error, TlsIdentity};

fn with_tls() -> SimConfig {
    SimConfig {
        tls: true,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn pairs_and_logs_in_over_wss_and_lists_the_connection_as_tls() {
    let (sim, token) = start(with_tls()).await;
    assert!(
        sim.ws_url().starts_with("wss://127.0.0.1:"),
        "{}",
        sim.ws_url()
    );
    assert!(sim
        .tls_ca_pem()
        .is_some_and(|pem| pem.starts_with("-----BEGIN CERTIFICATE-----")));
    let companion = Companion::generate();
    let jid = pair(&sim, &companion).await;
    let io = login(&sim, &companion, &jid).await;
    let (status, sessions) = control(&sim, "GET", "/sessions", json!(null)).await;
    assert_eq!(status, 200);
    let row = sessions
        .as_array()
        .and_then(|rows| rows.iter().find(|s| s["jid"] == jid.to_string()))
        .unwrap_or_else(|| panic!("{jid} in {sessions}"));
    assert_eq!(row["tls"], true, "{row}");
    let stats = sim.stats();
    assert_eq!(
        (stats.tls_handshakes, stats.tls_failures),
        (2, 0),
        "the registration and the login"
    );
    shut_down(sim, token, vec![io]).await;
}

#[tokio::test]
async fn a_client_not_trusting_the_ca_or_speaking_plain_websocket_is_dropped_and_counted() {
    let (sim, token) = start(with_tls()).await;
    let stranger = TlsIdentity::generate()
        .and_then(|other| other.client_config())
        .expect("a client trusting another CA");
    let refused = WsConnection::connect_tls(&sim.ws_url(), stranger)
        .await
        .expect_err("a certificate from an unknown CA");
    assert!(
        matches!(&refused, Error::Io(e) if e.to_string().contains("UnknownIssuer")),
        "{refused:?}"
    );
    wait_for("the refused handshake counted", || {
        let failures = sim.stats().tls_failures;
        (failures == 1).then_some(()).ok_or(failures.to_string())
    })
    .await;

    let plain = sim.ws_url().replacen("wss://", "ws://", 1);
    assert!(WsConnection::connect(&plain).await.is_err());
    wait_for("the plain upgrade counted as a failed handshake", || {
        let failures = sim.stats().tls_failures;
        (failures == 2).then_some(()).ok_or(failures.to_string())
    })
    .await;

    let io = connect(
        &sim,
        &xeddsa::generate_private(),
        &base_payload().encode_to_vec(),
    )
    .await;
    let stats = sim.stats();
    assert_eq!(
        (stats.tls_handshakes, stats.connections),
        (1, 1),
        "only the trusting client became a connection"
    );
    shut_down(sim, token, vec![io]).await;
}
