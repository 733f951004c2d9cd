//! The admin API: fields, auth, and bad input.

use wa_sim::harness::process::TOKEN;
use wa_sim::harness::{wait_until, Supervisor, Volume};

use super::STATE_DEADLINE;

fn has_fields(v: &serde_json::Value, fields: &[&str], what: &str) {
    for f in fields {
        assert!(v.get(*f).is_some(), "{what} lacks {f}: {v}");
    }
}

#[test]
fn every_route_answers_with_the_documented_fields() {
    let volume = Volume::new();
    volume.add_account("acct-a", true);
    let sup = Supervisor::start(&volume.sessions(), &[]);

    let health = sup.call_with("GET", "/health", &[], None);
    assert_eq!(health.status, 200);
    has_fields(
        &health.json(),
        &[
            "ok",
            "status",
            "accounts_total",
            "connected",
            "needs_qr",
            "sessions_dir_writable",
            "workers_running",
            "uptime_s",
        ],
        "health",
    );

    let added = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(r#"{"name":"New One","phone":"+40 711 222 333","accountId":"new-one"}"#),
    );
    assert_eq!(added.status, 201, "{}", added.text());
    let body = added.json();
    assert_eq!(body["success"], true);
    has_fields(&body["account"], &["accountId", "status"], "add-account");
    assert_eq!(body["account"]["accountId"], "new-one");

    let d = sup.wait_dashboard("the new account's worker to report", STATE_DEADLINE, |d| {
        d["accounts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["accountId"] == "new-one" && x["status"] == "reconnecting")
        })
    });
    has_fields(
        &d,
        &["timestamp", "service", "storage", "accounts", "summary"],
        "dashboard",
    );
    has_fields(
        &d["service"],
        &["status", "uptime", "version"],
        "dashboard.service",
    );
    has_fields(
        &d["storage"],
        &["path", "writable", "totalAccounts"],
        "dashboard.storage",
    );
    has_fields(
        &d["summary"],
        &[
            "connected",
            "connecting",
            "disconnected",
            "needs_qr",
            "total",
            "reconnecting",
            "failed",
        ],
        "dashboard.summary",
    );
    assert_eq!(d["summary"]["total"], 2);
    for a in d["accounts"].as_array().expect("accounts") {
        has_fields(
            a,
            &[
                "accountId",
                "name",
                "phone",
                "status",
                "lastEventAt",
                "lastMessageAt",
                "lastSeen",
                "reconnectCount",
                "reconnectAttempts",
                "needsQR",
            ],
            "dashboard account",
        );
    }

    let list = sup.call("GET", "/api/whatsapp/accounts", None);
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(list["success"], true);
    for a in list["accounts"].as_array().expect("accounts") {
        has_fields(a, &["id", "name", "phone", "status"], "accounts entry");
    }

    let qr = sup.call("GET", "/api/whatsapp/qr/new-one?format=json", None);
    assert_eq!(qr.status, 200);
    let qr = qr.json();
    has_fields(
        &qr,
        &["accountId", "status", "reason", "qr", "qrCode", "expiresAt"],
        "qr json",
    );
    assert!(qr["qr"].is_null(), "no qr before the protocol pairs");
    for bad in ["abc", "-1", "16", "1.5"] {
        let r = sup.call(
            "GET",
            &format!("/api/whatsapp/qr/new-one?format=json&wait={bad}"),
            None,
        );
        assert_eq!(r.status, 400, "wait={bad}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "invalid_wait", "{}", r.text());
    }
    let page = sup.call("GET", "/api/whatsapp/qr/new-one", None);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    assert!(page.text().contains("new-one"));
    assert_eq!(
        sup.call("GET", "/api/whatsapp/qr/new-one?format=png", None)
            .status,
        404,
        "no qr yet: 404, not an empty image"
    );

    let root = sup.call("GET", "/", None);
    assert_eq!(root.status, 200);
    assert!(root.text().contains("/api/status/dashboard"));

    // The account dials a refused address: it goes between `connecting` and `reconnecting`, so
    // a loaded machine may catch it in either; wait for the one the dashboard showed.
    let text = wait_until("new-one reconnecting in /metrics", STATE_DEADLINE, || {
        let metrics = sup.call("GET", "/metrics", None);
        assert_eq!(metrics.status, 200);
        let text = metrics.text();
        if text.contains("wafleet_account_status{account=\"new-one\",status=\"reconnecting\"} 1") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(
        text.contains("wafleet_account_status{account=\"acct-a\",status=\"connected\"} 0"),
        "{text}"
    );

    for (method, path, action) in [
        ("POST", "/api/whatsapp/accounts/new-one/qr", "qr_requested"),
        (
            "POST",
            "/api/whatsapp/accounts/new-one/logout",
            "logging_out",
        ),
        (
            "POST",
            "/api/whatsapp/accounts/acct-a/restart",
            "restarting",
        ),
        ("DELETE", "/api/whatsapp/accounts/new-one", "deleting"),
    ] {
        let r = sup.call(method, path, None);
        assert_eq!(r.status, 202, "{method} {path}: {}", r.text());
        let body = r.json();
        assert_eq!(body["success"], true);
        assert_eq!(body["action"], action);
    }
    sup.wait_dashboard("the deleted account to be gone", STATE_DEADLINE, |d| {
        d["summary"]["total"] == 1
    });
    let archive = volume.sessions().join(".archive");
    let archived: Vec<_> = std::fs::read_dir(&archive).expect("archive dir").collect();
    assert_eq!(
        archived.len(),
        1,
        "the deleted account's directory is archived, not removed"
    );

    for body in [
        sup.dashboard().to_string(),
        sup.call("GET", "/api/whatsapp/accounts", None).text(),
    ] {
        assert!(
            !body.contains("40712345678") && !body.contains("40711222333"),
            "phones are masked: {body}"
        );
    }
}

#[test]
fn the_dashboard_filters_by_status_and_is_gzipped_when_asked() {
    let volume = Volume::new();
    // No creds: nobody boots, so every view stays as it is between two requests.
    for id in ["acct-a", "acct-b", "acct-c"] {
        volume.add_account(id, false);
    }
    let sup = Supervisor::start(&volume.sessions(), &[]);
    let listed = |query: &str| -> Vec<String> {
        let r = sup.call("GET", &format!("/api/status/dashboard{query}"), None);
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        let d = r.json();
        assert_eq!(d["summary"]["total"], 3, "the summary counts every account");
        assert_eq!(d["storage"]["totalAccounts"], 3);
        d["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|a| a["accountId"].as_str().expect("accountId").to_owned())
            .collect()
    };
    assert_eq!(listed(""), ["acct-a", "acct-b", "acct-c"]);
    assert_eq!(listed("?status=needs_qr"), ["acct-a", "acct-b", "acct-c"]);
    assert_eq!(listed("?status=connected"), Vec::<String>::new());
    assert_eq!(
        listed("?status=connected,needs_qr"),
        ["acct-a", "acct-b", "acct-c"]
    );
    for bad in ["?status=online", "?status=connected,online", "?status="] {
        let r = sup.call("GET", &format!("/api/status/dashboard{bad}"), None);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        let body = r.json();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "invalid_status", "{bad}");
        let message = body["error"]["message"].as_str().expect("message");
        for valid in ["connected", "needs_qr", "reconnecting", "stopped"] {
            assert!(message.contains(valid), "{bad}: {message}");
        }
    }

    let auth = format!("Bearer {TOKEN}");
    let plain = sup.call("GET", "/api/status/dashboard", None);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("content-type"), Some("application/json"));
    let zipped = sup.call_with(
        "GET",
        "/api/status/dashboard",
        &[("Authorization", &auth), ("Accept-Encoding", "gzip")],
        None,
    );
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("content-type"), Some("application/json"));
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(zipped.body.as_slice()),
        &mut unzipped,
    )
    .expect("a gzip body");
    assert!(
        zipped.body.len() < unzipped.len(),
        "smaller once compressed"
    );
    // The same bytes but for the clock: the time of the answer and the uptime.
    let without_clock = |body: &[u8]| {
        let mut v: serde_json::Value = serde_json::from_slice(body).expect("json");
        v["timestamp"] = serde_json::Value::Null;
        v["service"]["uptime"] = serde_json::Value::Null;
        serde_json::to_string(&v).expect("json")
    };
    assert_eq!(without_clock(&unzipped), without_clock(&plain.body));
}

#[test]
fn every_route_but_health_refuses_a_missing_or_wrong_token() {
    let volume = Volume::new();
    volume.add_account("acct-a", false);
    let sup = Supervisor::start(&volume.sessions(), &[]);
    let routes = [
        ("GET", "/api/status/dashboard"),
        ("GET", "/api/whatsapp/accounts"),
        ("POST", "/api/whatsapp/add-account"),
        ("GET", "/api/whatsapp/qr/acct-a?format=json"),
        ("GET", "/api/whatsapp/qr/acct-a?format=png"),
        ("POST", "/api/whatsapp/accounts/acct-a/qr"),
        ("POST", "/api/whatsapp/accounts/acct-a/restart"),
        ("POST", "/api/whatsapp/accounts/acct-a/logout"),
        ("DELETE", "/api/whatsapp/accounts/acct-a"),
        ("GET", "/metrics"),
    ];
    let wrong_basic = format!("Basic {}", base64_of("admin:nope"));
    for (method, path) in routes {
        for headers in [
            vec![],
            vec![("Authorization", "Bearer nope")],
            vec![("Authorization", wrong_basic.as_str())],
        ] {
            let r = sup.call_with(method, path, &headers, Some(r#"{"name":"x"}"#));
            assert_eq!(r.status, 401, "{method} {path} with {headers:?}");
            assert_eq!(r.json()["success"], false);
            // A Basic challenge would make browsers cache the credentials and attach them to
            // other sites' requests.
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"wafleet\""),
                "{method} {path}"
            );
        }
    }
    // The pages send a browser to the login page instead.
    for (path, login) in [
        ("/", "/login?next=/"),
        (
            "/api/whatsapp/qr/acct-a",
            "/login?next=/api/whatsapp/qr/acct-a",
        ),
    ] {
        for headers in [vec![], vec![("Authorization", "Bearer nope")]] {
            let r = sup.call_with("GET", path, &headers, None);
            assert_eq!(r.status, 303, "{path} with {headers:?}");
            assert_eq!(r.header("location"), Some(login));
            assert_eq!(r.header("www-authenticate"), None);
        }
    }
    assert_eq!(sup.call_with("GET", "/health", &[], None).status, 200);
    let basic = format!("Basic {}", base64_of(&format!("admin:{TOKEN}")));
    assert_eq!(
        sup.call_with(
            "GET",
            "/api/whatsapp/accounts",
            &[("Authorization", &basic)],
            None
        )
        .status,
        200,
        "basic auth with the token as password"
    );
    assert_eq!(sup.call("GET", "/api/whatsapp/accounts", None).status, 200);
    let log = sup.log().join("\n");
    assert!(
        !log.contains(TOKEN),
        "the admin token never reaches the log"
    );
}

#[test]
fn bad_input_gets_a_clear_status_and_loses_nothing() {
    let volume = Volume::new();
    volume.add_account("keep-me", false);
    let sup = Supervisor::start(&volume.sessions(), &[]);
    let add = |body: &str| sup.call("POST", "/api/whatsapp/add-account", Some(body));

    let cases = [
        (
            r#"{"name":"x","accountId":"Bad/Id"}"#,
            400,
            "invalid_account_id",
        ),
        (
            r#"{"name":"x","accountId":"-starts-with-dash"}"#,
            400,
            "invalid_account_id",
        ),
        (r#"{"name":"x""#, 400, "invalid_json"),
        (r#"{"name":"x","colour":"red"}"#, 400, "invalid_json"),
        (r#"{"phone":"+40711222333"}"#, 400, "invalid_json"),
        (r#"{"name":"   "}"#, 400, "invalid_name"),
        (r#"{"name":"x","phone":"call me"}"#, 400, "invalid_phone"),
        (
            r#"{"name":"dup","accountId":"keep-me"}"#,
            409,
            "account_exists",
        ),
    ];
    for (body, status, code) in cases {
        let r = add(body);
        assert_eq!(r.status, status, "{body}: {}", r.text());
        let json = r.json();
        assert_eq!(json["success"], false);
        assert_eq!(json["error"]["code"], code, "{body}");
        assert!(json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let huge = format!(r#"{{"name":"{}"}}"#, "x".repeat(70 * 1024));
    let r = add(&huge);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "payload_too_large");

    for (method, path) in [
        ("GET", "/api/whatsapp/qr/no-such"),
        ("POST", "/api/whatsapp/accounts/no-such/qr"),
        ("POST", "/api/whatsapp/accounts/no-such/restart"),
        ("POST", "/api/whatsapp/accounts/no-such/logout"),
        ("DELETE", "/api/whatsapp/accounts/no-such"),
    ] {
        let r = sup.call(method, path, None);
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.json()["error"]["code"], "account_not_found");
    }
    for (method, path) in [
        ("GET", "/api/whatsapp/qr/NOT..valid"),
        ("POST", "/api/whatsapp/accounts/UPPER/restart"),
        ("DELETE", "/api/whatsapp/accounts/a%2Fb"),
    ] {
        let r = sup.call(method, path, None);
        assert_eq!(r.status, 400, "{method} {path}");
        assert_eq!(r.json()["error"]["code"], "invalid_account_id");
    }
    let r = sup.call("GET", "/api/whatsapp/qr/keep-me?format=gif", None);
    assert_eq!(r.status, 400);
    let r = sup.call("POST", "/api/whatsapp/accounts/keep-me/logout", None);
    assert_eq!(r.status, 409, "logout needs a running worker: {}", r.text());
    assert_eq!(sup.call("GET", "/no/such/route", None).status, 404);

    let list = sup.call("GET", "/api/whatsapp/accounts", None).json();
    let ids: Vec<_> = list["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [serde_json::json!("keep-me")],
        "bad input added or removed nothing"
    );
    let status = sup.account("keep-me")["status"].clone();
    assert_eq!(status, "needs_qr");
    let health = sup.call_with("GET", "/health", &[], None);
    assert_eq!(health.status, 200, "bad input never breaks the service");
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
