//! Webhooks against the real supervisor: signed deliveries, retries until a 2xx, a pending
//! event surviving a SIGKILL, and the per-account URL route. The receiver is a loopback server
//! in the test; every wait is for a request or a state under a deadline.

use std::fs;
use std::path::Path;

use nix::sys::signal::Signal;
use serde_json::json;
use wa_sim::harness::{wait_until, Receiver, Supervisor, Volume};

use super::STATE_DEADLINE;

const SECRET: &str = "e2e-webhook-secret";
/// Short retries, so a test sees several in a second.
const FAST: [(&str, &str); 2] = [
    ("WEBHOOK_BACKOFF_BASE_MS", "50"),
    ("WEBHOOK_BACKOFF_MAX_MS", "200"),
];

fn env<'a>(url: &'a str, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![("WEBHOOK_URL", url)];
    all.extend_from_slice(&FAST);
    all.extend_from_slice(more);
    all
}

/// A series of `/metrics`, e.g. `wafleet_webhook_pending`.
fn metric(sup: &Supervisor, series: &str) -> Option<u64> {
    let r = sup.call("GET", "/metrics", None);
    assert_eq!(r.status, 200);
    r.text().lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn pending_files(sessions: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(sessions.join(".webhooks"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn events_arrive_signed_and_are_retried_until_the_receiver_answers_2xx() {
    let receiver = Receiver::start(&[500, 500, 503]);
    let volume = Volume::new();
    volume.add_account("hook", false);
    let url = receiver.url();
    let sup = Supervisor::start(
        &volume.sessions(),
        &env(&url, &[("WEBHOOK_SECRET", SECRET)]),
    );

    let seen = receiver.wait_for(4, STATE_DEADLINE);
    let first = &seen[0];
    let body = first.json();
    assert_eq!(first.request_line, "POST /hook HTTP/1.1");
    assert_eq!(body["type"], "account.status");
    assert_eq!(body["accountId"], "hook");
    assert_eq!(body["data"]["status"], "needs_qr");
    let id = body["id"].as_u64().expect("numeric id");
    for r in &seen[..4] {
        assert_eq!(
            r.header("x-wafleet-event-id"),
            Some(id.to_string().as_str()),
            "the same event, retried"
        );
        assert_eq!(r.body, first.body, "the same bytes each time");
        assert!(
            r.signed_with(SECRET),
            "signature: {:?}",
            r.header("x-wafleet-signature")
        );
        assert!(!r.signed_with("another-secret"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("wafleet/")));
    }

    wait_until(
        "the delivery counted and nothing pending",
        STATE_DEADLINE,
        || {
            let ok = metric(&sup, "wafleet_webhook_deliveries_total{result=\"ok\"}");
            let pending = metric(&sup, "wafleet_webhook_pending");
            if ok >= Some(1) && pending == Some(0) && pending_files(&volume.sessions()).is_empty() {
                Ok(())
            } else {
                Err(format!("ok {ok:?}, pending {pending:?}"))
            }
        },
    );
    assert_eq!(
        metric(&sup, "wafleet_webhook_deliveries_total{result=\"failed\"}"),
        Some(3)
    );
    let log = sup.log().join("\n");
    assert!(!log.contains(SECRET), "the secret never reaches the log");
}

#[test]
fn a_pending_event_survives_a_sigkill_and_is_delivered_after_the_restart() {
    // Nothing listens on this port during the first run: every attempt is refused.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let volume = Volume::new();
    volume.add_account("durable", false);
    let extra = env(&url, &[("WEBHOOK_SECRET", SECRET)]);
    let mut sup = Supervisor::start(&volume.sessions(), &extra);

    wait_until("a refused attempt", STATE_DEADLINE, || {
        match metric(&sup, "wafleet_webhook_deliveries_total{result=\"failed\"}") {
            Some(n) if n >= 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let files = pending_files(&volume.sessions());
    assert_eq!(files.len(), 1, "{files:?}");
    let pending_id: u64 = files[0]
        .split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("file named by event id");

    sup.signal(Signal::SIGKILL);
    sup.wait_exit(STATE_DEADLINE);
    assert_eq!(
        pending_files(&volume.sessions()),
        files,
        "still on disk after the kill"
    );

    let receiver = Receiver::start_on(port, &[]);
    let _sup = Supervisor::start(&volume.sessions(), &extra);
    let seen = receiver.wait_for(2, STATE_DEADLINE);
    let ids: Vec<u64> = seen
        .iter()
        .map(|r| r.json()["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(
        ids[0], pending_id,
        "the event pending before the kill comes first"
    );
    assert!(ids[1] > ids[0], "this run's events come after: {ids:?}");
    assert!(seen.iter().all(|r| r.signed_with(SECRET)));
    wait_until("the pending set to empty", STATE_DEADLINE, || {
        let left = pending_files(&volume.sessions());
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
}

#[test]
fn an_account_webhook_url_is_set_shown_used_and_cleared() {
    let global = Receiver::start(&[]);
    let own = Receiver::start(&[]);
    let volume = Volume::new();
    volume.add_account("own", false);
    volume.add_account("other", false);
    let global_url = global.url();
    let sup = Supervisor::start(&volume.sessions(), &env(&global_url, &[]));
    let path = "/api/whatsapp/accounts/own/webhook";

    let put = |p: &str, body: serde_json::Value| sup.call("PUT", p, Some(&body.to_string()));
    let bad = put(path, json!({"url": "ftp://example.com/"}));
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["error"]["code"], "invalid_url");
    assert_eq!(put(path, json!({"url": "https://"})).status, 400);
    assert_eq!(put(path, json!({"url": null, "secret": "x"})).status, 400);
    assert_eq!(
        put(
            "/api/whatsapp/accounts/nobody/webhook",
            json!({"url": null})
        )
        .status,
        404
    );
    assert_eq!(
        sup.call("GET", "/api/whatsapp/accounts/nobody/webhook", None)
            .status,
        404
    );
    let shown = sup.call("GET", path, None);
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["url"], serde_json::Value::Null);

    let own_url = own.url();
    let set = put(path, json!({"url": own_url}));
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(sup.call("GET", path, None).json()["url"], own_url.as_str());
    let stored =
        fs::read_to_string(volume.sessions().join("own/account.json")).expect("account.json");
    assert!(stored.contains(&own_url), "{stored}");

    // Its next events go to its own URL and to the global one; the other account's do not.
    let r = sup.call("POST", "/api/whatsapp/accounts/own/qr", None);
    assert_eq!(r.status, 202, "{}", r.text());
    let r = sup.call("POST", "/api/whatsapp/accounts/other/qr", None);
    assert_eq!(r.status, 202, "{}", r.text());
    let mine = own.wait_until("an event of account own", STATE_DEADLINE, |r| {
        r.json()["accountId"] == "own"
    });
    let id = mine.header("x-wafleet-event-id").expect("id").to_owned();
    global.wait_until("the same event at the global url", STATE_DEADLINE, |r| {
        r.header("x-wafleet-event-id") == Some(id.as_str())
    });
    global.wait_until("an event of account other", STATE_DEADLINE, |r| {
        r.json()["accountId"] == "other"
    });
    assert!(own
        .received()
        .iter()
        .all(|r| r.json()["accountId"] == "own"));

    // No WEBHOOK_SECRET: one was generated, stored 0600, and signs every delivery.
    let secret_path = volume.sessions().join("webhook-secret");
    let secret = fs::read_to_string(&secret_path).expect("generated secret");
    let secret = secret.trim();
    assert!(mine.signed_with(secret));
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&secret_path)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !sup.log().join("\n").contains(secret),
        "the secret never reaches the log"
    );

    let cleared = put(path, json!({"url": null}));
    assert_eq!(cleared.status, 200, "{}", cleared.text());
    assert_eq!(
        sup.call("GET", path, None).json()["url"],
        serde_json::Value::Null
    );
    let stored =
        fs::read_to_string(volume.sessions().join("own/account.json")).expect("account.json");
    assert!(!stored.contains("webhook_url"), "{stored}");
}

#[test]
fn a_bad_webhook_url_stops_the_supervisor_at_start_with_a_clear_error() {
    let volume = Volume::new();
    let (status, log) = Supervisor::run_to_exit(
        &volume.sessions(),
        &[("WEBHOOK_URL", "ftp://example.com/hook")],
    );
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("WEBHOOK_URL is invalid"), "{log}");
}
