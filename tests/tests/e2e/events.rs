//! `GET /api/events`: the operator's event stream, against the real supervisor and wa-sim.

use std::time::Duration;

use serde_json::json;
use wa_sim::harness::{Sim, Volume};

use super::whatsapp::start;
use super::STATE_DEADLINE;

const EVENT_DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn streams_status_and_qr_changes_and_resumes_after_the_last_event_id() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);

    let mut events = sup.events_stream("", &[]);
    assert_eq!(events.status, 200);
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(&json!({"name": "Ev", "accountId": "ev"}).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    let first = events.wait_for("the first status event", EVENT_DEADLINE, |e| {
        e.event.as_deref() == Some("account.status")
    });
    let first_id: u64 = first
        .id
        .as_deref()
        .expect("id")
        .parse()
        .expect("numeric id");
    let body = first.json();
    assert_eq!(body["accountId"], "ev");
    assert_eq!(body["type"], "account.status");
    assert_eq!(body["id"], first_id);

    let qr_event = events.wait_for("a qr", EVENT_DEADLINE, |e| {
        e.event.as_deref() == Some("account.qr") && e.json()["data"]["qr"].is_string()
    });
    let qr = qr_event.json()["data"]["qr"]
        .as_str()
        .expect("qr")
        .to_owned();
    let qr_id: u64 = qr_event.id.as_deref().expect("id").parse().expect("id");
    assert!(qr_id > first_id, "ids grow");

    sim.scan(&qr, "15550001234");
    let connected = events.wait_for("connected", STATE_DEADLINE, |e| {
        e.event.as_deref() == Some("account.status") && e.json()["data"]["status"] == "connected"
    });
    assert_eq!(
        connected.json()["data"]["phone"],
        "+155****34",
        "phones are masked"
    );

    // A listener coming back with the first id gets exactly what followed it, in order.
    let mut resumed = sup.events_stream("", &[("Last-Event-ID", &first_id.to_string())]);
    let replay = resumed.wait_for("the replayed qr", EVENT_DEADLINE, |e| {
        e.event.as_deref() == Some("account.qr")
    });
    assert_eq!(replay.id.as_deref(), Some(qr_id.to_string().as_str()));
    let replay_connected = resumed.wait_for("the replayed connected", EVENT_DEADLINE, |e| {
        e.json()["data"]["status"] == "connected"
    });
    assert_eq!(replay_connected.id, connected.id);

    // Filtered by account: an unknown one is refused, a bad last id too.
    let unknown = sup.call("GET", "/api/events?account=nobody", None);
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    let bad = sup.events_stream("", &[("Last-Event-ID", "not-a-number")]);
    assert_eq!(bad.status, 400);
}

#[test]
fn the_event_stream_needs_the_admin_token() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    let r = sup.call_with("GET", "/api/events", &[], None);
    assert_eq!(r.status, 401);
}
