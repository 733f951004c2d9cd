//! `wss://` end to end, as production dials: wa-sim `--tls` with a CA of its own, the supervisor
//! and every worker trusting it through `WA_TLS_CA_FILE`; a worker without it refused at the TLS
//! handshake and backing off; a bad `WA_TLS_CA_FILE` refused at start, naming the variable.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wa_sim::harness::fleet::{add_and_scan, start_against, wait_status};
use wa_sim::harness::process::{binary, refused_ws_url};
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

use super::STATE_DEADLINE;

#[test]
fn an_account_pairs_logs_in_and_receives_over_wss_with_the_sims_ca_trusted() {
    let sim = Sim::start(&["--tls"]);
    assert!(sim.ws_url.starts_with("wss://127.0.0.1:"), "{}", sim.ws_url);
    let ca = sim
        .ca_cert_file
        .clone()
        .expect("ca_cert_file on the first line");
    let pem = std::fs::read_to_string(&ca).expect("the CA file exists");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let volume = Volume::new();

    let jid = {
        let sup = start_against(&volume, &sim, &[]);
        let jid = add_and_scan(&sup, &sim, "secure", "15550002001", STATE_DEADLINE);
        wait_status(&sup, "secure", "connected", STATE_DEADLINE);
        sim.wait_logged_in(&jid, STATE_DEADLINE);
        let session = sim.session_of(&jid).expect("the logged-in connection");
        assert_eq!(session["tls"], true, "{session}");
        jid
    };

    // After a restart the stored device logs in again, over TLS, with no QR.
    let before = sim.stats();
    let sup = start_against(&volume, &sim, &[]);
    wait_status(&sup, "secure", "connected", STATE_DEADLINE);
    sim.wait_logged_in(&jid, STATE_DEADLINE);
    assert_eq!(sim.session_of(&jid).expect("session")["tls"], true);
    let after = sim.stats();
    assert!(
        after["logins"].as_u64() > before["logins"].as_u64(),
        "{after}"
    );
    assert_eq!(after["registrations"], before["registrations"], "no QR");
    assert_eq!(after["tls_failures"], 0, "{after}");

    // Bytes flow both ways on it: a contact's message is decrypted and recorded.
    let id = sim.send_from_phone("15550002999", "15550002001", "hello over tls");
    assert_eq!(
        sup.wait_received(
            "secure",
            &id,
            &format!("{id} received by secure"),
            STATE_DEADLINE
        )["text"],
        "hello over tls"
    );

    let log = sup.log().join("\n");
    assert!(
        log.contains("trusting the extra TLS roots of WA_TLS_CA_FILE"),
        "the worker says it trusts the file"
    );
    let body = pem.lines().nth(1).expect("a base64 line");
    assert!(
        !log.contains(body),
        "certificate contents never reach the log"
    );
}

#[test]
fn a_worker_without_the_sims_ca_is_refused_naming_the_certificate_and_backs_off() {
    let sim = Sim::start(&["--tls"]);
    let volume = Volume::new();
    let sup = Supervisor::start(
        &volume.sessions(),
        &[
            ("WA_WS_URL", sim.ws_url.as_str()),
            ("WA_TRUST_ROOT", sim.root_public_key.as_str()),
            ("BOOT_JITTER_MIN_MS", "0"),
            ("BOOT_JITTER_MAX_MS", "0"),
            ("RECONNECT_BASE_MS", "200"),
            ("RECONNECT_MAX_MS", "1000"),
        ],
    );
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(r#"{"name":"Doubter","accountId":"doubter"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let first = wait_until("the TLS certificate refused", STATE_DEADLINE, || {
        let a = sup.account("doubter");
        if a["reason"] == "certificate_rejected" {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    });
    let since = Instant::now();
    let error = first["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains("tls") && error.contains("UnknownIssuer"),
        "{first}"
    );
    let pid = first["pid"].clone();
    let attempts = first["reconnectAttempts"].as_u64().expect("attempts");

    // Three more attempts, each a single dial, with the delays growing between them (200 ms
    // doubling, ±20 %): at least 0.8 × (400 + 800) ms from the second to the fourth.
    let later = wait_until("three more attempts", STATE_DEADLINE, || {
        let a = sup.account("doubter");
        match a["reconnectAttempts"].as_u64() {
            Some(n) if n >= attempts + 3 => Ok(a),
            _ => Err(a.to_string()),
        }
    });
    let waited = since.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "no backoff: {waited:?}"
    );
    assert_eq!(later["status"], "reconnecting", "{later}");
    assert_eq!(later["reason"], "certificate_rejected", "{later}");
    assert_eq!(later["pid"], pid, "the worker lives on: {later}");
    assert_eq!(later["restarts"], 0, "{later}");
    let stats = sim.stats();
    let tried = later["reconnectAttempts"].as_u64().expect("attempts");
    let refused = stats["tls_failures"].as_u64().expect("tls_failures");
    assert!(
        (tried..=tried + 1).contains(&refused),
        "one TLS handshake per attempt: {refused} for {tried} attempts"
    );
    assert_eq!(stats["connections"], 0, "{stats}");
}

#[test]
fn a_missing_or_certificate_less_ca_file_stops_the_start_naming_the_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("absent.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let key_only = dir.path().join("key.pem");
    std::fs::write(
        &key_only,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    for (file, says) in [
        (&missing, "cannot be read"),
        (&empty, "holds no certificate"),
        (&key_only, "holds no certificate"),
    ] {
        let file = file.to_str().expect("utf-8");
        let volume = Volume::new();
        let (status, log) =
            Supervisor::run_to_exit(&volume.sessions(), &[("WA_TLS_CA_FILE", file)]);
        assert_eq!(status.code(), Some(2), "a configuration error: {log}");
        assert!(
            log.contains(&format!("WA_TLS_CA_FILE {file} {says}")),
            "{file}: {log}"
        );

        // A worker started by hand says the same and stops.
        let mut worker = Reaped(
            Command::new(binary("supervisor"))
                .args(["worker", "--account", "lone", "--sessions"])
                .arg(volume.sessions())
                .env("WA_TLS_CA_FILE", file)
                .env("WA_WS_URL", refused_ws_url())
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a worker"),
        );
        let status = wait_until("the worker to stop", STATE_DEADLINE, || {
            match worker.0.try_wait() {
                Ok(Some(status)) => Ok(status),
                Ok(None) => Err("still running".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        });
        let mut stderr = String::new();
        if let Some(mut pipe) = worker.0.stderr.take() {
            pipe.read_to_string(&mut stderr)
                .expect("the worker's stderr");
        }
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("WA_TLS_CA_FILE {file} {says}")),
            "{file}: {stderr}"
        );
    }
}

/// A child process killed and reaped when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
