//! Issue 8, item 1: a logged-in account answers what a real client answers, against wa-sim's
//! pushes (`POST /push`, `GET /pushes`) with the real supervisor and worker binaries: server
//! pings, the offline backlog's preview and end, dirty bits, prekey refills on the server's word,
//! the notifications a real server sends, calls (`call.received` over SSE and webhooks), and the
//! stanzas an older decoder could not read. Every wait is for a state under a deadline.

use serde_json::{json, Value};
use wa_sim::harness::fleet::{add_and_scan, wait_status};
use wa_sim::harness::{wait_until, Receiver, Sim, Supervisor, Volume};

use super::whatsapp::start;
use super::STATE_DEADLINE;

/// A connected account `id` on phone `phone`: the sim, the supervisor and the device JID.
fn online(id: &str, phone: &str, extra: &[(&str, &str)]) -> (Sim, Volume, Supervisor, String) {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, extra);
    let jid = add_and_scan(&sup, &sim, id, phone, STATE_DEADLINE);
    wait_status(&sup, id, "connected", STATE_DEADLINE);
    sim.wait_logged_in(&jid, STATE_DEADLINE);
    (sim, volume, sup, jid)
}

/// Pushes `kind` (with `more` fields) to `jid`; returns the stanza id.
fn push(sim: &Sim, jid: &str, kind: &str, more: Value) -> String {
    let mut body = json!({ "jid": jid, "kind": kind });
    if let (Some(body), Some(more)) = (body.as_object_mut(), more.as_object()) {
        body.extend(more.clone());
    }
    let (status, answer) = sim.post("/push", &body);
    assert_eq!(status, 200, "push {kind}: {answer}");
    answer["id"].as_str().expect("id").to_owned()
}

fn pushes(sim: &Sim, jid: &str) -> Value {
    sim.get(&format!("/pushes?jid={jid}"))
}

/// Waits until the pushed stanza `id` got an ack; returns the ack.
fn wait_ack(sim: &Sim, jid: &str, id: &str) -> Value {
    wait_until(&format!("an ack of {id}"), STATE_DEADLINE, || {
        let view = pushes(sim, jid);
        view["stanzas"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .and_then(|s| s["acks"].get(0).cloned())
            .ok_or_else(|| view.to_string())
    })
}

#[test]
fn answers_server_pings_of_both_shapes() {
    let (sim, _volume, sup, jid) = online("ping", "15550080001", &[]);
    for kind in ["ping", "ping_child"] {
        let id = push(&sim, &jid, kind, json!({}));
        wait_until(&format!("{kind} answered"), STATE_DEADLINE, || {
            let view = pushes(&sim, &jid);
            let answered = view["pings"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["id"] == id && p["answered"] == true));
            answered.then_some(()).ok_or_else(|| view.to_string())
        });
    }
    assert_eq!(sup.account("ping")["status"], "connected");
}

#[test]
fn asks_for_the_offline_backlog_and_cleans_dirty_bits() {
    let (sim, _volume, sup, jid) = online("backlog", "15550080002", &[]);
    // At login the sim previewed the backlog after <active/>: the worker asked for a batch.
    wait_until("offline_batch", STATE_DEADLINE, || {
        let view = pushes(&sim, &jid);
        (view["offline_batches"] == json!(["100"]))
            .then_some(())
            .ok_or_else(|| view.to_string())
    });
    push(&sim, &jid, "dirty", json!({}));
    let clean = wait_until("the clean IQ", STATE_DEADLINE, || {
        let view = pushes(&sim, &jid);
        view["cleans"]
            .get(0)
            .cloned()
            .ok_or_else(|| view.to_string())
    });
    assert_eq!(clean["type"], "account_sync");
    assert!(clean["timestamp"].is_string(), "{clean}");
    // A second login previews its backlog again, and is asked for it again.
    let r = sup.call("POST", "/api/whatsapp/accounts/backlog/restart", None);
    assert!(r.status < 300, "{}", r.text());
    wait_until("a second offline_batch", STATE_DEADLINE, || {
        let view = pushes(&sim, &jid);
        (view["offline_batches"].as_array().map(Vec::len) >= Some(2))
            .then_some(())
            .ok_or_else(|| view.to_string())
    });
    wait_status(&sup, "backlog", "connected", STATE_DEADLINE);
}

#[test]
fn refills_prekeys_when_the_server_says_it_runs_low() {
    let (sim, _volume, _sup, jid) = online("refill", "15550080003", &[]);
    let before = wait_until("the login upload", STATE_DEADLINE, || {
        let view = pushes(&sim, &jid);
        view["uploads"]
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| view.to_string())
    });
    // Plenty left: acked, no upload.
    let plenty = push(&sim, &jid, "encrypt_count", json!({ "count": 50 }));
    let ack = wait_ack(&sim, &jid, &plenty);
    assert_eq!(ack["type"], "encrypt");
    // Low: acked, and a batch goes up.
    let low = push(&sim, &jid, "encrypt_count", json!({ "count": 1 }));
    wait_ack(&sim, &jid, &low);
    wait_until("a refill", STATE_DEADLINE, || {
        let view = pushes(&sim, &jid);
        (view["uploads"].as_u64() == Some(before + 1))
            .then_some(())
            .ok_or_else(|| view.to_string())
    });
}

#[test]
fn acks_the_notifications_a_real_server_sends() {
    let (sim, _volume, _sup, jid) = online("notify", "15550080004", &[]);
    for kind in [
        "server_sync",
        "devices",
        "account_sync",
        "picture",
        "status",
    ] {
        let id = push(&sim, &jid, kind, json!({}));
        let ack = wait_ack(&sim, &jid, &id);
        assert_eq!(ack["class"], "notification", "{kind}: {ack}");
        assert_eq!(ack["type"], kind, "{kind}: {ack}");
        assert_eq!(ack["exact_id"], true);
        assert!(ack["error"].is_null(), "{kind}: {ack}");
        assert!(ack["participant"].is_null(), "{kind}: {ack}");
    }
    let view = pushes(&sim, &jid);
    assert_eq!(view["unacked"], json!([]), "{view}");
}

#[test]
fn acks_calls_and_reports_them_over_sse_and_webhooks() {
    let receiver = Receiver::start(&[]);
    let url = receiver.url();
    let (sim, _volume, sup, jid) = online("caller", "15550080005", &[("WEBHOOK_URL", &url)]);
    let mut events = sup.events_stream("", &[]);
    assert_eq!(events.status, 200);
    let offer = push(
        &sim,
        &jid,
        "call_offer",
        json!({ "from": "15550089999", "video": true }),
    );
    let ack = wait_ack(&sim, &jid, &offer);
    assert_eq!(ack["class"], "call");
    assert_eq!(ack["to"], "15550089999@s.whatsapp.net");
    assert!(ack["type"].is_null(), "no type to copy: {ack}");
    let event = events.wait_for("call.received", STATE_DEADLINE, |e| {
        e.event.as_deref() == Some("call.received")
    });
    let body = event.json();
    assert_eq!(body["accountId"], "caller");
    let data = &body["data"];
    assert_eq!(data["kind"], "offer");
    assert_eq!(data["from"], "15550089999@s.whatsapp.net");
    assert_eq!(data["video"], true);
    assert_eq!(data["offline"], false);
    assert!(data["callId"]
        .as_str()
        .is_some_and(|c| c.starts_with("CALL")));
    assert!(data["timestamp"].is_string());
    let hook = receiver.wait_until("the webhook", STATE_DEADLINE, |r| {
        r.json()["type"] == "call.received"
    });
    assert_eq!(hook.json()["data"], *data);
    let end = push(
        &sim,
        &jid,
        "call_terminate",
        json!({ "from": "15550089999" }),
    );
    wait_ack(&sim, &jid, &end);
    let event = events.wait_for("the end of the call", STATE_DEADLINE, |e| {
        e.event.as_deref() == Some("call.received") && e.json()["data"]["kind"] == "terminate"
    });
    assert_eq!(event.json()["data"]["video"], false);
}

#[test]
fn acks_stanzas_an_older_decoder_dropped() {
    let (sim, _volume, sup, jid) = online("odd", "15550080006", &[]);
    for kind in ["non_utf8", "trailing_bytes"] {
        let id = push(&sim, &jid, kind, json!({}));
        let ack = wait_until(
            &format!("an ack of the {kind} stanza"),
            STATE_DEADLINE,
            || {
                let view = pushes(&sim, &jid);
                view["stanzas"]
                    .as_array()
                    .and_then(|s| s.iter().find(|s| s["kind"] == kind))
                    .and_then(|s| s["acks"].get(0).cloned())
                    .ok_or_else(|| view.to_string())
            },
        );
        assert_eq!(ack["exact_id"], true, "{kind}: the id echoed byte for byte");
        assert_eq!(ack["type"], "server_sync");
        if kind == "trailing_bytes" {
            assert_eq!(ack["class"], "notification");
            assert!(id.starts_with("push-"));
        }
    }
    let view = pushes(&sim, &jid);
    assert_eq!(view["unacked"], json!([]), "{view}");
    assert_eq!(sim.stats()["pushes_unacked"], 0);
    assert_eq!(sup.account("odd")["status"], "connected");
}
