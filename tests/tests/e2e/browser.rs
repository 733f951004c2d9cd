//! Browser access: a login page and a session cookie instead of HTTP Basic, no state change on
//! behalf of another site, JSON routes that take only JSON, and security headers on every page.

use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};
use wa_sim::harness::process::TOKEN;
use wa_sim::harness::{Supervisor, Volume};

use super::{all_linked, pids, STATE_DEADLINE};

const EVIL: &str = "https://evil.example";
const FORM: &str = "application/x-www-form-urlencoded";

#[test]
fn the_login_page_hands_out_a_strict_cookie_that_opens_the_pages_until_logout() {
    let volume = Volume::new();
    volume.add_account("acct-a", false);
    let sup = Supervisor::start(&volume.sessions(), &[]);

    // Without a session, pages send the browser to the login page; JSON stays 401, with no
    // Basic challenge for a browser to cache.
    let root = sup.call_with("GET", "/", &[], None);
    assert_eq!(root.status, 303);
    assert_eq!(root.header("location"), Some("/login?next=/"));
    let qr = sup.call_with("GET", "/api/whatsapp/qr/acct-a", &[], None);
    assert_eq!(qr.status, 303);
    assert_eq!(
        qr.header("location"),
        Some("/login?next=/api/whatsapp/qr/acct-a")
    );
    let api = sup.call_with("GET", "/api/status/dashboard", &[], None);
    assert_eq!(api.status, 401);
    assert_eq!(api.json()["error"]["code"], "unauthorized");
    assert!(
        !api.header("www-authenticate")
            .is_some_and(|h| h.to_ascii_lowercase().starts_with("basic")),
        "{:?}",
        api.headers
    );

    let page = sup.call_with("GET", "/login?next=/api/whatsapp/qr/acct-a", &[], None);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("name=\"token\""), "{}", page.text());
    assert!(page.text().contains("value=\"/api/whatsapp/qr/acct-a\""));

    // A wrong token: 401 and the form again, no cookie.
    let wrong = sup.login("not-the-token", &[]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("name=\"token\""));
    assert_eq!(wrong.set_cookie(), None);

    // The right one: a cookie with every flag, and off to the page asked for.
    let right = sup.login(TOKEN, &[]);
    assert_eq!(right.status, 303, "{}", right.text());
    assert_eq!(right.header("location"), Some("/"));
    let set = right.set_cookie().expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.split("; ").any(|f| f == flag), "{flag} in {set}");
    }
    assert!(!set.contains("Secure"), "plain http: no Secure flag: {set}");
    let value = right.session_cookie().expect("value");
    assert!(value.len() >= 43, "32 random bytes: {value}");
    let cookie = format!("wafleet_session={value}");

    // Behind a TLS proxy the page's origin is https, and the cookie is Secure.
    let tls_origin = format!("https://{}", sup.addr());
    let plain = sup.login(TOKEN, &[("X-Forwarded-Proto", "https")]);
    assert_eq!(
        plain.status, 403,
        "an http page posting to the https site is another origin"
    );
    let tls = sup.login(
        TOKEN,
        &[("X-Forwarded-Proto", "https"), ("Origin", &tls_origin)],
    );
    assert_eq!(tls.status, 303, "{}", tls.text());
    let tls_cookie = tls.set_cookie().expect("cookie");
    assert!(tls_cookie.ends_with("; Secure"), "{tls_cookie}");
    assert_ne!(
        tls.session_cookie(),
        right.session_cookie(),
        "one session per login"
    );

    // The cookie opens the pages and the JSON the pages read.
    let with_cookie = [("Cookie", cookie.as_str())];
    let dash = sup.call_with("GET", "/", &with_cookie, None);
    assert_eq!(dash.status, 200);
    assert!(dash.text().contains("/api/status/dashboard"));
    assert_eq!(
        sup.call_with("GET", "/api/status/dashboard", &with_cookie, None)
            .status,
        200
    );
    assert_eq!(
        sup.call_with("GET", "/api/whatsapp/qr/acct-a", &with_cookie, None)
            .status,
        200
    );
    let made_up = [(
        "Cookie",
        "wafleet_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )];
    assert_eq!(sup.call_with("GET", "/", &made_up, None).status, 303);

    // Logging out (from our own page) ends the session for good.
    let origin = sup.origin();
    let out = sup.call_with(
        "POST",
        "/logout",
        &[
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("Content-Type", FORM),
        ],
        Some(""),
    );
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/login"));
    assert_eq!(out.session_cookie().as_deref(), Some(""));
    assert!(out.set_cookie().is_some_and(|c| c.contains("Max-Age=0")));
    assert_eq!(sup.call_with("GET", "/", &with_cookie, None).status, 303);
    assert_eq!(
        sup.call_with("GET", "/api/status/dashboard", &with_cookie, None)
            .status,
        401
    );

    let log = sup.log().join("\n");
    assert!(
        !log.contains(&value),
        "the session id never reaches the log"
    );
    assert!(!log.contains(TOKEN), "nor does the token");
}

#[test]
fn another_site_cannot_log_out_restart_or_add_accounts_with_the_admins_cookie() {
    let volume = Volume::new();
    volume.add_account("victim", true);
    let sup = Supervisor::start(&volume.sessions(), &[]);
    let before =
        pids(&sup.wait_dashboard("the worker linked", STATE_DEADLINE, |d| all_linked(d, 1)));
    let cookie = sup.browser_session();

    // What the issue saw: a form on evil.example posting to us, the browser adding the cookie.
    let forged = [
        ("POST", "/api/whatsapp/accounts/victim/logout", ""),
        ("POST", "/api/whatsapp/accounts/victim/restart", ""),
        (
            "POST",
            "/api/whatsapp/add-account",
            "name=Evil&accountId=evil",
        ),
        ("POST", "/api/whatsapp/accounts/victim/qr", ""),
        ("DELETE", "/api/whatsapp/accounts/victim", ""),
        ("POST", "/logout", ""),
    ];
    for (method, path, body) in forged {
        let r = sup.call_with(
            method,
            path,
            &[
                ("Cookie", &cookie),
                ("Origin", EVIL),
                ("Content-Type", FORM),
            ],
            Some(body),
        );
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "cross_origin");
    }
    // No Origin with a cookie (a browser always sends one on a POST), or a browser that says
    // the request is cross-site: refused as well.
    let r = sup.call_with(
        "POST",
        "/api/whatsapp/accounts/victim/restart",
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "cross_origin");
    let r = sup.call_with(
        "POST",
        "/api/whatsapp/accounts/victim/restart",
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "cross-site")],
        None,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // Whatever the credentials: a browser that cached Basic credentials sends them too.
    let basic = format!("Basic {}", base64_of(&format!("admin:{TOKEN}")));
    for headers in [
        vec![("Authorization", basic.as_str()), ("Origin", EVIL)],
        vec![
            ("Authorization", basic.as_str()),
            ("Sec-Fetch-Site", "cross-site"),
        ],
    ] {
        let r = sup.call_with(
            "POST",
            "/api/whatsapp/accounts/victim/restart",
            &headers,
            None,
        );
        assert_eq!(r.status, 403, "{headers:?}: {}", r.text());
    }
    // Our own origin, form-encoded: the cookie is fine, the body is not JSON.
    let origin = sup.origin();
    let r = sup.call_with(
        "POST",
        "/api/whatsapp/add-account",
        &[
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("Content-Type", FORM),
        ],
        Some("name=Evil&accountId=evil"),
    );
    assert_eq!(r.status, 415, "{}", r.text());

    // Nothing happened: same worker, same accounts, still logged in.
    let now = sup.dashboard();
    assert_eq!(
        pids(&now),
        before,
        "the worker was neither restarted nor stopped"
    );
    assert_eq!(now["accounts"][0]["status"], "reconnecting");
    assert_eq!(now["summary"]["total"], 1, "no account added, none deleted");
    assert!(
        volume.sessions().join("victim/creds.json").is_file(),
        "not logged out"
    );
    assert!(!volume.sessions().join("evil").exists());
    assert_eq!(
        sup.call_with("GET", "/", &[("Cookie", &cookie)], None)
            .status,
        200,
        "the session survived the forged logout"
    );

    // From our own page the same cookie does work (what the dashboard's buttons send).
    let r = sup.call_with(
        "POST",
        "/api/whatsapp/accounts/victim/restart",
        &[
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        None,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let r = sup.call_with(
        "POST",
        "/api/whatsapp/add-account",
        &[("Cookie", &cookie), ("Origin", &origin)],
        Some(&json!({"name": "Mine", "accountId": "mine"}).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn json_routes_take_only_json_and_token_clients_work_as_before() {
    let volume = Volume::new();
    volume.add_account("acct-a", true);
    let sup = Supervisor::start(&volume.sessions(), &[]);
    sup.wait_dashboard("the worker linked", STATE_DEADLINE, |d| all_linked(d, 1));
    let bearer = format!("Bearer {TOKEN}");
    let basic = format!("Basic {}", base64_of(&format!("admin:{TOKEN}")));

    let json_routes = [
        (
            "POST",
            "/api/whatsapp/add-account",
            json!({"name": "X", "accountId": "x"}),
        ),
        (
            "POST",
            "/api/whatsapp/accounts/acct-a/messages",
            json!({"to": "+40711222333", "text": "hi"}),
        ),
        (
            "PUT",
            "/api/whatsapp/accounts/acct-a/webhook",
            json!({"url": "http://127.0.0.1:9/hook"}),
        ),
    ];
    for (method, path, body) in &json_routes {
        let body = body.to_string();
        for content_type in ["text/plain", FORM, "multipart/form-data; boundary=x"] {
            let r = sup.call_with(
                method,
                path,
                &[("Authorization", &bearer), ("Content-Type", content_type)],
                Some(&body),
            );
            assert_eq!(
                r.status,
                415,
                "{method} {path} as {content_type}: {}",
                r.text()
            );
            assert_eq!(r.json()["success"], false);
            assert_eq!(r.json()["error"]["code"], "unsupported_media_type");
        }
    }
    let list = sup.call("GET", "/api/whatsapp/accounts", None).json();
    assert_eq!(
        list["accounts"].as_array().map(Vec::len),
        Some(1),
        "nothing added"
    );
    assert_eq!(
        sup.call("GET", "/api/whatsapp/accounts/acct-a/webhook", None)
            .json()["url"],
        serde_json::Value::Null,
        "nothing set"
    );

    // JSON with a charset is JSON; Basic (curl -u) and Bearer with no Origin work as before.
    let r = sup.call_with(
        "PUT",
        "/api/whatsapp/accounts/acct-a/webhook",
        &[
            ("Authorization", &basic),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        Some(r#"{"url":"http://127.0.0.1:9/hook"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = sup.call_with(
        "POST",
        "/api/whatsapp/add-account",
        &[("Authorization", &basic)],
        Some(r#"{"name":"Y","accountId":"y"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        sup.call_with("GET", "/", &[("Authorization", &basic)], None)
            .status,
        200
    );
    // Body-less actions need no content type.
    let r = sup.call("POST", "/api/whatsapp/accounts/acct-a/restart", None);
    assert_eq!(r.status, 202, "{}", r.text());
    let r = sup.call("POST", "/api/whatsapp/accounts/y/qr", None);
    assert_eq!(r.status, 202, "{}", r.text());
}

#[test]
fn pages_carry_a_csp_that_allows_exactly_their_inline_scripts() {
    let volume = Volume::new();
    volume.add_account("acct-a", false);
    let sup = Supervisor::start(&volume.sessions(), &[]);
    let cookie = sup.browser_session();

    for path in ["/", "/api/whatsapp/qr/acct-a", "/login"] {
        let r = sup.call_with("GET", path, &[("Cookie", &cookie)], None);
        assert_eq!(r.status, 200, "{path}");
        assert!(r
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/html")));
        let csp = r.header("content-security-policy").expect("a csp");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        let html = r.text();
        let scripts = blocks(&html, "script");
        if path != "/login" {
            assert!(!scripts.is_empty(), "{path} has its script");
        }
        for (tag, directive) in [("script", "script-src"), ("style", "style-src")] {
            let allowed = csp
                .split(';')
                .map(str::trim)
                .find_map(|d| d.strip_prefix(directive))
                .unwrap_or_else(|| panic!("{path}: no {directive} in {csp}"));
            for block in blocks(&html, tag) {
                let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(block));
                assert!(
                    allowed.contains(&format!("'sha256-{hash}'")),
                    "{path}: its {tag} is not allowed by {directive}{allowed}"
                );
            }
        }
    }
    // The QR page keeps the account id out of its script, so one hash fits every account.
    let qr = sup.call_with(
        "GET",
        "/api/whatsapp/qr/acct-a",
        &[("Cookie", &cookie)],
        None,
    );
    assert!(qr.text().contains("data-account=\"acct-a\""));

    for (path, headers) in [
        ("/api/status/dashboard", vec![("Cookie", cookie.as_str())]),
        ("/health", vec![]),
        ("/no/such/route", vec![]),
    ] {
        let r = sup.call_with("GET", path, &headers, None);
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
    }
}

/// The text between each `<tag>` and `</tag>`.
fn blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    html.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once(close.as_str()).map(|(block, _)| block))
        .collect()
}

fn base64_of(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}
