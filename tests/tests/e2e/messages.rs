//! The message API against the real supervisor, its workers and wa-sim: what is accepted, what
//! is refused with which status, and that an accepted message is durable.

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

use super::whatsapp::{pair, start};
use super::STATE_DEADLINE;

/// Waits until message `id` of `account` has one of the statuses `want`.
fn status_reaches(sup: &Supervisor, account: &str, id: &str, want: &[&str]) {
    wait_until(&format!("{id} {want:?}"), STATE_DEADLINE, || {
        let m = sup
            .call(
                "GET",
                &format!("/api/whatsapp/accounts/{account}/messages/{id}"),
                None,
            )
            .json();
        if want.contains(&m["message"]["status"].as_str().unwrap_or("")) {
            Ok(())
        } else {
            Err(m.to_string())
        }
    });
}

fn send(sup: &Supervisor, account: &str, body: &Value) -> (u16, Value) {
    let r = sup.call(
        "POST",
        &format!("/api/whatsapp/accounts/{account}/messages"),
        Some(&body.to_string()),
    );
    let status = r.status;
    (status, r.json())
}

#[test]
fn a_send_is_queued_durably_once_per_idempotency_key() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    pair(&sup, &sim, "shop", "15550001111");
    // Without a server nothing drains: what is queued stays queued.
    drop(sim);

    let (status, body) = send(
        &sup,
        "shop",
        &json!({"to": "+40712345678", "text": "hello", "id": "order-17"}),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"]["status"], "queued");
    let id = body["message"]["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("3EB0") && id.len() == 22, "{id}");

    let (again, body) = send(
        &sup,
        "shop",
        &json!({"to": "+40712345678", "text": "hello", "id": "order-17"}),
    );
    assert_eq!(
        (again, body["message"]["id"].as_str()),
        (202, Some(id.as_str()))
    );

    let r = sup.call(
        "GET",
        &format!("/api/whatsapp/accounts/shop/messages/{id}"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let m = &r.json()["message"];
    assert_eq!(m["status"], "queued");
    assert_eq!(m["chat"], "40712345678@s.whatsapp.net");
    assert_eq!(m["text"], "hello");
    assert_eq!(m["direction"], "out");

    let list = sup
        .call(
            "GET",
            "/api/whatsapp/accounts/shop/messages?direction=out",
            None,
        )
        .json();
    assert_eq!(list["messages"].as_array().map(Vec::len), Some(1), "{list}");
    let inbox = sup
        .call("GET", "/api/whatsapp/accounts/shop/messages", None)
        .json();
    assert_eq!(inbox["direction"], "in");

    // A restart of the whole service keeps it.
    sup.signal(Signal::SIGKILL);
    drop(sup);
    let unreachable = Sim::start(&[]);
    let sup = start(
        &volume,
        &unreachable,
        &[("WA_TRUST_ROOT", &"00".repeat(32))],
    );
    let m = wait_until("the message after a restart", STATE_DEADLINE, || {
        let r = sup.call(
            "GET",
            &format!("/api/whatsapp/accounts/shop/messages/{id}"),
            None,
        );
        if r.status == 200 {
            Ok(r.json())
        } else {
            Err(r.text())
        }
    });
    assert_eq!(m["message"]["status"], "queued");
}

#[test]
fn bad_sends_are_refused_with_the_documented_status_and_nothing_queued() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[("OUTBOX_LIMIT", "2")]);
    pair(&sup, &sim, "shop", "15550002222");
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(r#"{"name":"Fresh","accountId":"fresh"}"#),
    );
    assert_eq!(r.status, 201);
    // Without a server nothing drains: the outbox fills.
    drop(sim);
    let ok = json!({"to": "40712345678@s.whatsapp.net", "text": "hi"});

    for (body, code) in [
        (
            json!({"to": "not a phone", "text": "hi"}),
            "invalid_recipient",
        ),
        (
            json!({"to": "40712345678:2@s.whatsapp.net", "text": "hi"}),
            "invalid_recipient",
        ),
        (json!({"to": "+40712345678", "text": "  "}), "empty_text"),
        (
            json!({"to": "+40712345678", "text": "x".repeat(64 * 1024 + 1)}),
            "text_too_long",
        ),
        (
            json!({"to": "+40712345678", "text": "hi", "extra": 1}),
            "invalid_json",
        ),
        (
            json!({"to": "+40712345678", "text": "hi", "id": ""}),
            "invalid_id",
        ),
    ] {
        let (status, answer) = send(&sup, "shop", &body);
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], code);
    }
    let (status, _) = send(&sup, "nobody", &ok);
    assert_eq!(status, 404);
    let r = sup.call(
        "GET",
        "/api/whatsapp/accounts/shop/messages/3EB0000000000000000000",
        None,
    );
    assert_eq!(r.status, 404);
    for query in ["direction=sideways", "after=x", "limit=0", "limit=501"] {
        let r = sup.call(
            "GET",
            &format!("/api/whatsapp/accounts/shop/messages?{query}"),
            None,
        );
        assert_eq!(r.status, 400, "{query}: {}", r.text());
    }

    let (status, answer) = send(&sup, "fresh", &ok);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("not_paired"))
    );

    assert_eq!(send(&sup, "shop", &ok).0, 202);
    assert_eq!(send(&sup, "shop", &ok).0, 202);
    let (status, answer) = send(&sup, "shop", &ok);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (429, Some("outbox_full"))
    );
    let list = sup
        .call(
            "GET",
            "/api/whatsapp/accounts/shop/messages?direction=out",
            None,
        )
        .json();
    assert_eq!(
        list["messages"].as_array().map(Vec::len),
        Some(2),
        "nothing half-written"
    );
}

#[test]
fn two_accounts_message_each_other_through_the_server_with_receipts() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    pair(&sup, &sim, "alice", "15550003333");
    pair(&sup, &sim, "bob", "15550004444");

    let (status, body) = send(
        &sup,
        "alice",
        &json!({"to": "+15550004444", "text": "hi bob"}),
    );
    assert_eq!(status, 202, "{body}");
    let id = body["message"]["id"].as_str().expect("id").to_owned();
    let received = wait_until("bob receives it", STATE_DEADLINE, || {
        let list = sup
            .call(
                "GET",
                "/api/whatsapp/accounts/bob/messages?direction=in",
                None,
            )
            .json();
        match list["messages"].as_array().and_then(|m| m.first()) {
            Some(m) => Ok(m.clone()),
            None => Err(list.to_string()),
        }
    });
    assert_eq!(received["id"], id.as_str(), "the same id end to end");
    assert_eq!(received["text"], "hi bob");
    assert_eq!(received["type"], "text");
    assert_eq!(received["chat"], "15550003333@s.whatsapp.net");
    status_reaches(&sup, "alice", &id, &["delivered", "read"]);

    // Bob answers; the second direction rides the session the first one built.
    let (status, _) = send(
        &sup,
        "bob",
        &json!({"to": "15550003333@s.whatsapp.net", "text": "hi alice"}),
    );
    assert_eq!(status, 202);
    wait_until("alice receives the answer", STATE_DEADLINE, || {
        let list = sup
            .call(
                "GET",
                "/api/whatsapp/accounts/alice/messages?direction=in",
                None,
            )
            .json();
        let texts: Vec<_> = list["messages"]
            .as_array()
            .map(|m| m.iter().filter_map(|x| x["text"].as_str()).collect())
            .unwrap_or_default();
        if texts == ["hi alice"] {
            Ok(())
        } else {
            Err(list.to_string())
        }
    });
    let a = sup.account("alice");
    assert!(a["lastMessageAt"].is_string(), "{a}");
}

#[test]
fn a_contact_and_the_account_exchange_texts_and_the_phone_gets_the_copy() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    pair(&sup, &sim, "desk", "15550005555");

    // A contact (a phone with no companion) writes: a pkmsg to the worker and to the phone.
    let id = sim.send_from_phone("15550006666", "15550005555", "hello desk");
    let got = sup.wait_received("desk", &id, "the worker records it", STATE_DEADLINE);
    assert_eq!(got["text"], "hello desk");
    assert_eq!(got["from"], "15550006666@s.whatsapp.net");

    // The account answers: the contact decrypts it, and the account's phone its own copy.
    let (status, body) = send(
        &sup,
        "desk",
        &json!({"to": "+15550006666", "text": "hello contact"}),
    );
    assert_eq!(status, 202, "{body}");
    let reply = body["message"]["id"].as_str().expect("id").to_owned();
    let at_contact = sim.wait_inbox("15550006666", &reply, STATE_DEADLINE);
    assert_eq!(at_contact["text"], "hello contact");
    let copy = sim.wait_inbox("15550005555", &reply, STATE_DEADLINE);
    assert_eq!(copy["kind"], "dsm", "{copy}");
    assert_eq!(copy["text"], "hello contact");
    status_reaches(&sup, "desk", &reply, &["delivered", "read"]);
}

#[test]
fn the_account_writes_to_a_group_with_its_sender_key() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    pair(&sup, &sim, "team", "15550007001");
    // Two contacts, known to the sim once they have spoken.
    sim.send_from_phone("15550007002", "15550007001", "hi");
    sim.send_from_phone("15550007003", "15550007001", "hi");
    let (code, group) = sim.post(
        "/group",
        &json!({"subject": "team", "participants": ["15550007001", "15550007002", "15550007003"], "addressing_mode": "lid"}),
    );
    assert_eq!(code, 200, "{group}");
    let gid = group["jid"].as_str().expect("jid").to_owned();

    for text in ["first to the group", "second to the group"] {
        let (status, body) = send(&sup, "team", &json!({"to": gid, "text": text}));
        assert_eq!(status, 202, "{body}");
        let id = body["message"]["id"].as_str().expect("id").to_owned();
        for member in ["15550007002", "15550007003"] {
            let got = sim.wait_inbox(member, &id, STATE_DEADLINE);
            assert_eq!(got["text"], text, "{got}");
            assert_eq!(got["chat"], gid.as_str());
        }
        wait_until("sent", STATE_DEADLINE, || {
            let m = sup
                .call(
                    "GET",
                    &format!("/api/whatsapp/accounts/team/messages/{id}"),
                    None,
                )
                .json();
            if ["sent", "delivered", "read"]
                .contains(&m["message"]["status"].as_str().unwrap_or(""))
            {
                Ok(())
            } else {
                Err(m.to_string())
            }
        });
    }
    // The worker remembers who holds its key: every member device (the contacts' phones and
    // its own account's phone), so the second message carried no SKDM.
    let id = gid.trim_end_matches("@g.us");
    let memory: Value = serde_json::from_slice(
        &std::fs::read(volume.sessions().join(format!("team/groups/{id}.json"))).expect("memory"),
    )
    .expect("json");
    let holders: Vec<&str> = memory["holders"]
        .as_array()
        .map(|h| h.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(holders.len(), 3, "{memory}");
}

#[test]
fn a_message_sent_from_the_phone_arrives_as_our_own_copy() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    pair(&sup, &sim, "desk", "15550008001");
    // The account's phone writes to a contact: the worker gets the deviceSentMessage copy.
    let id = sim.send_from_phone("15550008001", "15550008002", "sent from the phone");
    let copy = sup.wait_received("desk", &id, "the copy is recorded", STATE_DEADLINE);
    assert_eq!(copy["text"], "sent from the phone");
    assert_eq!(
        copy["chat"], "15550008002@s.whatsapp.net",
        "the chat is the destination"
    );
    assert_eq!(
        copy["from"], "15550008001@s.whatsapp.net",
        "and the sender is us"
    );
}

#[test]
fn messages_sent_while_the_service_was_down_arrive_from_the_offline_queue() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let mut sup = start(&volume, &sim, &[]);
    pair(&sup, &sim, "desk", "15550008101");
    sup.signal(Signal::SIGTERM);
    sup.wait_exit(STATE_DEADLINE);
    drop(sup);
    // Nobody is online for the account: the server queues the message.
    let id = sim.send_from_phone("15550008102", "15550008101", "while you were down");
    let sup = start(&volume, &sim, &[]);
    let got = sup.wait_received("desk", &id, "the queued message", STATE_DEADLINE);
    assert_eq!(got["text"], "while you were down");
}

#[test]
fn a_received_message_is_reported_again_until_the_supervisor_confirms_it() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let mut sup = start(&volume, &sim, &[]);
    pair(&sup, &sim, "desk", "15550008201");
    let unconfirmed = volume.sessions().join("desk/messages/unconfirmed");
    let markers = || std::fs::read_dir(&unconfirmed).map_or(0, Iterator::count);

    // A message arrives: stored with a marker, which goes once the supervisor has it.
    let id = sim.send_from_phone("15550008202", "15550008201", "first");
    wait_until("the message stored and confirmed", STATE_DEADLINE, || {
        let listed = sup
            .call(
                "GET",
                "/api/whatsapp/accounts/desk/messages?direction=in",
                None,
            )
            .json()["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x["id"] == id.as_str()));
        if listed && markers() == 0 {
            Ok(())
        } else {
            Err(format!("listed {listed}, markers {}", markers()))
        }
    });

    // What a crash of the supervisor leaves: a stored message the supervisor never confirmed.
    sup.signal(Signal::SIGTERM);
    sup.wait_exit(STATE_DEADLINE);
    drop(sup);
    let cursor: u64 = 1_764_000_000_000_000;
    let record = json!({
        "id": "LOST1", "direction": "in", "chat": "15550008202@s.whatsapp.net",
        "sender": "15550008202@s.whatsapp.net", "push_name": null, "kind": "text",
        "text": "reported again", "status": "received", "timestamp": 1_764_000_000_000u64,
        "sent_at": null, "delivered_at": null, "read_at": null, "error": null, "cursor": cursor
    });
    let name = format!("{cursor:020}-LOST1.json");
    std::fs::write(
        volume.sessions().join("desk/messages/in").join(&name),
        record.to_string(),
    )
    .expect("record");
    std::fs::write(unconfirmed.join(&name), b"").expect("marker");

    let sup = start(&volume, &sim, &[]);
    let mut events = sup.events_stream("", &[("Last-Event-ID", "0")]);
    let event = events.wait_for("the message reported again", STATE_DEADLINE, |e| {
        e.event.as_deref() == Some("message.received") && e.json()["data"]["id"] == "LOST1"
    });
    assert_eq!(event.json()["data"]["text"], "reported again");
    wait_until("the marker gone", STATE_DEADLINE, || {
        if markers() == 0 {
            Ok(())
        } else {
            Err(format!("{} markers", markers()))
        }
    });
}
