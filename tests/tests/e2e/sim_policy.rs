//! The `wa-sim` binary's version endpoint and login policy, as the supervisor's version refresh
//! and the ban tests use them: `--wa-version` and `--min-wa-version` at start, `GET /sw.js`
//! shaped like WhatsApp Web's, `GET`/`POST /version`, `POST /failure`, `POST /silence`.

use serde_json::json;
use wa_sim::harness::{http, Sim};

/// `GET /sw.js` on the sim's control port: status, content type, body.
fn sw_js(sim: &Sim) -> (u16, String, String) {
    let addr = sim
        .control_url()
        .trim_start_matches("http://")
        .parse()
        .expect("control address");
    let r = http::request(addr, "GET", "/sw.js", &[], None).expect("sw.js answers");
    let kind = r.header("content-type").unwrap_or_default().to_owned();
    (r.status, kind, r.text())
}

#[test]
fn the_sim_binary_publishes_its_version_and_takes_a_new_one_and_a_minimum() {
    let sim = Sim::start(&[
        "--wa-version",
        "2.3000.1027934701",
        "--min-wa-version",
        "2.3000.1020000000",
    ]);
    assert_eq!(
        sim.get("/version"),
        json!({"current": "2.3000.1027934701", "min": "2.3000.1020000000"})
    );
    let (status, kind, body) = sw_js(&sim);
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/javascript"), "{kind}");
    // What Baileys' /\\?"client_revision\\?":\s*(\d+)/ and whatsapp-rust's parse_sw_js read.
    assert!(body.contains(r#"\"client_revision\":1027934701"#), "{body}");

    let (status, answer) = sim.post(
        "/version",
        &json!({"current": "2.3000.1045649367", "min": null}),
    );
    assert_eq!(
        (status, answer),
        (200, json!({"current": "2.3000.1045649367", "min": null}))
    );
    assert!(sw_js(&sim).2.contains(r#"\"client_revision\":1045649367"#));
    assert_eq!(sim.post("/version", &json!({"min": "2.3000"})).0, 400);
    assert_eq!(sim.stats()["sw_js_served"], json!(2));
}

#[test]
fn the_sim_binary_takes_login_failures_and_refuses_what_it_cannot_play() {
    let sim = Sim::start(&[]);
    assert_eq!(sim.get("/version")["current"], "2.3000.1045649367");
    for reason in [403, 405, 406] {
        assert_eq!(
            sim.post(
                "/failure",
                &json!({"reason": reason, "phone": "15550001234"})
            ),
            (200, json!({"ok": true}))
        );
    }
    assert_eq!(sim.post("/failure", &json!({"reason": 406})).0, 200);
    assert_eq!(sim.post("/failure", &json!({"reason": null})).0, 200);
    assert_eq!(sim.post("/failure", &json!({"reason": 401})).0, 400);
    assert_eq!(sim.post("/failure", &json!({"reason": "x"})).0, 400);
    assert_eq!(
        sim.post("/silence", &json!({"jid": "15550001234:3@s.whatsapp.net"}))
            .0,
        404
    );
    assert_eq!(sim.post("/config", &json!({"silent": false})).0, 200);
}
