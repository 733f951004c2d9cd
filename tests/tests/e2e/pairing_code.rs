//! Pairing by phone-number code (wa-protocol.md §7): the code asked for over the API, typed at
//! the sim's phone; a wrong code leaves the account unpaired; the paired account logs in again
//! after a restart with no QR. Real supervisor, real workers, real simulator.

use serde_json::json;
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

use super::whatsapp::{add, qr_json, start};
use super::STATE_DEADLINE;

fn ask_code(sup: &Supervisor, id: &str, phone: &str) -> (u16, serde_json::Value) {
    let r = sup.call(
        "POST",
        &format!("/api/whatsapp/accounts/{id}/pairing-code"),
        Some(&json!({ "phone": phone }).to_string()),
    );
    (r.status, r.json())
}

fn wait_connected(sup: &Supervisor, id: &str) -> serde_json::Value {
    wait_until(&format!("{id} connected"), STATE_DEADLINE, || {
        let a = sup.account(id);
        if a["status"] == "connected" {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    })
}

#[test]
fn an_account_pairs_by_code_and_logs_in_again_after_a_restart_without_a_qr() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let jid = {
        let sup = start(&volume, &sim, &[]);
        add(&sup, "coded");
        let (status, body) = ask_code(&sup, "coded", "+1 555-000-3001");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["success"], true);
        let code = body["code"].as_str().expect("code").to_owned();
        assert_eq!(code.len(), 9, "ABCD-EFGH: {code}");
        assert_eq!(&code[4..5], "-");
        assert!(
            code.chars()
                .filter(|c| *c != '-')
                .all(|c| "123456789ABCDEFGHJKLMNPQRSTVWXYZ".contains(c)),
            "{code}"
        );
        assert!(
            sup.log()
                .iter()
                .all(|l| !l.contains(&code[..4]) || !l.contains(&code[5..])),
            "the code stays out of the log"
        );
        assert!(
            sup.log().iter().all(|l| !l.contains("15550003001")),
            "the phone is masked in the log"
        );

        let (status, entered) = sim.post(
            "/enter-code",
            &json!({ "phone": "15550003001", "code": code.to_lowercase() }),
        );
        assert_eq!(status, 200, "{entered}");
        let jid = entered["jid"].as_str().expect("jid").to_owned();
        assert!(jid.starts_with("15550003001:"), "{jid}");
        let account = wait_connected(&sup, "coded");
        assert_eq!(account["phone"], "+155****01", "masked: {account}");
        sim.wait_logged_in(&jid, STATE_DEADLINE);

        // Paired now: another code is refused.
        let (status, body) = ask_code(&sup, "coded", "15550003001");
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "already_paired");
        jid
    };

    let registrations = sim.stats()["registrations"].clone();
    let sup = start(&volume, &sim, &[]);
    wait_connected(&sup, "coded");
    sim.wait_logged_in(&jid, STATE_DEADLINE);
    assert_eq!(
        sim.stats()["registrations"],
        registrations,
        "no new registration"
    );
    assert!(qr_json(&sup, "coded")["qr"].is_null());
}

#[test]
fn a_wrong_code_is_refused_at_the_phone_and_the_account_stays_unpaired_until_the_right_one() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    add(&sup, "typo");
    let (status, body) = ask_code(&sup, "typo", "15550003002");
    assert_eq!(status, 200, "{body}");
    let code = body["code"].as_str().expect("code").replace('-', "");
    // Another valid code: the first character moved on by one in the alphabet.
    let alphabet = "123456789ABCDEFGHJKLMNPQRSTVWXYZ";
    let first = alphabet.find(&code[..1]).expect("in the alphabet");
    let wrong = format!(
        "{}{}",
        &alphabet[(first + 1) % 32..(first + 1) % 32 + 1],
        &code[1..]
    );
    let (status, refused) = sim.post(
        "/enter-code",
        &json!({ "phone": "15550003002", "code": wrong }),
    );
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("wrong code")),
        "{refused}"
    );
    let account = sup.account("typo");
    assert_eq!(account["status"], "needs_qr", "{account}");
    assert!(account["phone"].is_null(), "{account}");

    // The right code still pairs on the same connection.
    let (status, entered) = sim.post(
        "/enter-code",
        &json!({ "phone": "15550003002", "code": code }),
    );
    assert_eq!(status, 200, "{entered}");
    wait_connected(&sup, "typo");
}

#[test]
fn bad_phones_unknown_accounts_and_unknown_companions_get_clear_errors() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    add(&sup, "asks");
    for bad in [
        "",
        "12345",
        "0712345678",
        "+40 (712) 345 678",
        "4071234567890123",
    ] {
        let (status, body) = ask_code(&sup, "asks", bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_phone");
    }
    let (status, body) = ask_code(&sup, "nobody", "15550003003");
    assert_eq!(status, 404, "{body}");
    let r = sup.call(
        "POST",
        "/api/whatsapp/accounts/asks/pairing-code",
        Some("{\"number\":\"15550003003\"}"),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    let (status, body) = sim.post(
        "/enter-code",
        &json!({ "phone": "15550003003", "code": "ABCD-EFGH" }),
    );
    assert_eq!(status, 404, "no companion asked: {body}");
    let (status, body) = sim.post(
        "/enter-code",
        &json!({ "phone": "15550003003", "code": "ABCD-EFG0" }),
    );
    assert_eq!(status, 400, "not a code: {body}");
}
