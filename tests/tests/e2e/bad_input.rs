//! Bad input over every route (issue 7, item 9), the routes enumerated from the supervisor's
//! own table (`supervisor::http::ROUTES`, which the router is built from): traversal ids, a
//! 10 MB body, wrong types, unknown fields, a wrong content type, missing and wrong tokens, a
//! token in the query, and adds and deletes of one id racing each other. Expected: no 5xx, no
//! panic, no file outside `$SESSIONS`.

use std::collections::BTreeSet;
use std::path::Path;

use supervisor::http::{Access, ROUTES};
use wa_sim::harness::http::{self, Response};
use wa_sim::harness::process::TOKEN;
use wa_sim::harness::{Sim, Volume};

use super::whatsapp::start;

/// Every path under `root`, relative, except inside `sessions/`.
fn outside_sessions(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if rel == "sessions" {
                continue;
            }
            out.insert(rel);
            if path.is_dir() {
                walk(&path, root, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// The ids a path parameter takes: one that exists, and hostile ones.
const IDS: &[&str] = &[
    "known",
    "..",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "a%00b",
    "%2F",
    "acc%20ount",
    "%C3%A9t%C3%A9",
    "NUL",
];

fn paths(template: &str) -> Vec<String> {
    let mut long = "x".repeat(5000);
    long.insert(0, 'a');
    IDS.iter()
        .map(|s| (*s).to_owned())
        .chain([long])
        .map(|id| {
            template
                .replace("{account_id}", &id)
                .replace("{message_id}", &id)
                .replace("{token}", &id)
        })
        .collect()
}

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "application/json",
            b"{\"name\": 5, \"accountId\": [1]}".to_vec(),
        ),
        (
            "application/json",
            b"{\"bogus\": true, \"to\": {}, \"url\": 7}".to_vec(),
        ),
        ("application/json", b"{not json".to_vec()),
        ("application/json", b"[]".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", vec![b' '; 10 * 1024 * 1024]),
        ("text/plain", b"{\"name\":\"x\"}".to_vec()),
        (
            "application/x-www-form-urlencoded",
            b"name=x&accountId=y".to_vec(),
        ),
    ]
}

/// Sends requests and keeps what went wrong.
struct Probe {
    addr: std::net::SocketAddr,
    failures: Vec<String>,
    requests: usize,
}

impl Probe {
    /// Sends one request; a 5xx or no answer is a failure.
    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Option<Response> {
        self.requests += 1;
        match http::request(self.addr, method, path, headers, body) {
            Ok(r) => {
                if r.status >= 500 {
                    let size = body.map_or(0, <[u8]>::len);
                    self.fail(format!(
                        "{method} {path} [{size} bytes]: {} {}",
                        r.status,
                        r.text()
                    ));
                }
                Some(r)
            }
            // A 10 MB body may be answered (413) and the socket closed before it is all
            // written: the answer is lost, not the server.
            Err(_) if body.is_some_and(|b| b.len() > 1024 * 1024) => None,
            Err(e) => {
                self.fail(format!("{method} {path}: no answer: {e}"));
                None
            }
        }
    }

    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }
}

#[test]
fn every_route_refuses_bad_input_without_a_5xx_a_panic_or_a_stray_file() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(r#"{"name":"Known","accountId":"known"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let before = outside_sessions(volume.scratch());
    let bearer = format!("Bearer {TOKEN}");
    let mut probe = Probe {
        addr: sup.addr(),
        failures: Vec::new(),
        requests: 0,
    };
    for route in ROUTES {
        if route.path == "/api/events" {
            // A stream: checked for auth only, with a token that fails.
            if let Some(r) = probe.send(
                route.method,
                route.path,
                &[("Authorization", "Bearer nope")],
                None,
            ) {
                assert_eq!(r.status, 401, "{}", r.text());
            }
            continue;
        }
        for path in paths(route.path) {
            let what = format!("{} {path}", route.method);
            let auth_cases: &[&[(&str, &str)]] = &[
                &[],
                &[("Authorization", "Bearer wrong-token")],
                &[("Authorization", "Basic Zm9vOmJhcg==")],
                &[("Authorization", "Bearer")],
            ];
            for headers in auth_cases {
                if let Some(r) = probe.send(route.method, &path, headers, None) {
                    let refused = matches!(r.status, 303 | 401 | 403 | 404);
                    if route.access == Access::Admin && !refused {
                        probe.fail(format!("{what} without a valid token: {}", r.status));
                    }
                }
            }
            // A token in the query is not a token.
            let queried = format!("{path}?token={TOKEN}&access_token={TOKEN}");
            if let Some(r) = probe.send(route.method, &queried, &[], None) {
                if route.access == Access::Admin && r.status < 300 {
                    probe.fail(format!("{what}: a token in the query was accepted"));
                }
            }
            probe.send(route.method, &path, &[("Authorization", &bearer)], None);
            if matches!(route.method, "POST" | "PUT") {
                for (content_type, body) in bodies() {
                    let headers = [
                        ("Authorization", bearer.as_str()),
                        ("Content-Type", content_type),
                    ];
                    probe.send(route.method, &path, &headers, Some(&body));
                }
            }
        }
    }
    // Adds and deletes of one id, racing.
    std::thread::scope(|scope| {
        for i in 0..16 {
            let sup = &sup;
            scope.spawn(move || {
                for _ in 0..5 {
                    let r = if i % 2 == 0 {
                        sup.call(
                            "POST",
                            "/api/whatsapp/add-account",
                            Some(r#"{"name":"Race","accountId":"race"}"#),
                        )
                    } else {
                        sup.call("DELETE", "/api/whatsapp/accounts/race", None)
                    };
                    assert!(r.status < 500, "race: {} {}", r.status, r.text());
                }
            });
        }
    });
    let Probe {
        failures, requests, ..
    } = probe;
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let log = sup.log();
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "a panic in the log"
    );
    assert!(requests > 500, "{requests} requests");
    let after = outside_sessions(volume.scratch());
    assert_eq!(before, after, "files appeared outside $SESSIONS");
    let health = sup.call("GET", "/health", None);
    assert_eq!(health.status, 200, "{}", health.text());
}
