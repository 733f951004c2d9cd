//! `supervisor accounts …`: the real binary as a client of a real supervisor and its workers
//! against wa-sim. The QR it draws in the terminal is decoded (rqrr) and scanned at the sim.

use std::process::{Command, Stdio};

use serde_json::Value;
use wa_sim::harness::fleet::wait_status;
use wa_sim::harness::process::{binary, TOKEN};
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

use super::whatsapp::start;
use super::STATE_DEADLINE;

/// What one run of the CLI did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `supervisor accounts <args>` against `url` with `token` in `ADMIN_TOKEN`, in an
/// otherwise empty environment and without a terminal.
fn cli_at(url: &str, token: Option<&str>, args: &[&str]) -> Run {
    let mut command = Command::new(binary("supervisor"));
    command
        .arg("accounts")
        .args(args)
        .env_clear()
        .env("WAFLEET_URL", url)
        .stdin(Stdio::null());
    if let Some(token) = token {
        command.env("ADMIN_TOKEN", token);
    }
    let out = command.output().expect("run the cli");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn cli(sup: &Supervisor, args: &[&str]) -> Run {
    cli_at(&sup.origin(), Some(TOKEN), args)
}

/// Runs the CLI and insists on success.
fn ok(sup: &Supervisor, args: &[&str]) -> String {
    let run = cli(sup, args);
    assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
    run.stdout
}

/// The text of a QR drawn with half blocks, decoded from a picture of it.
fn decode_terminal_qr(text: &str) -> String {
    let mut grid: Vec<Vec<bool>> = Vec::new();
    for line in text.lines().filter(|l| {
        !l.is_empty()
            && l.chars()
                .all(|c| matches!(c, ' ' | '\u{2580}' | '\u{2584}' | '\u{2588}'))
    }) {
        let (mut top, mut bottom) = (Vec::new(), Vec::new());
        for c in line.chars() {
            top.push(matches!(c, '\u{2580}' | '\u{2588}'));
            bottom.push(matches!(c, '\u{2584}' | '\u{2588}'));
        }
        grid.push(top);
        grid.push(bottom);
    }
    assert!(!grid.is_empty(), "no QR drawn in:\n{text}");
    let width = grid[0].len();
    assert!(grid.iter().all(|r| r.len() == width), "ragged QR:\n{text}");
    // The quiet zone: four light modules on every side (the last half line may be padding).
    assert!(grid[..4].iter().flatten().all(|d| !d), "top quiet zone");
    assert!(
        grid.iter()
            .all(|r| !r[..4].iter().any(|d| *d) && !r[width - 4..].iter().any(|d| *d)),
        "side quiet zones"
    );
    const SCALE: usize = 4;
    let height = grid.len();
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width * SCALE, height * SCALE, |x, y| {
            if grid[y / SCALE][x / SCALE] {
                0
            } else {
                255
            }
        });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR in the picture:\n{text}");
    let (_, content) = grids[0].decode().expect("the terminal QR decodes");
    content
}

#[test]
fn the_cli_adds_pairs_lists_sends_restarts_logs_out_and_deletes() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);

    let out = ok(&sup, &["add", "--name", "Front Shop", "--id", "shop"]);
    assert!(out.contains("added shop"), "{out}");

    // The QR: drawn in the terminal once the worker has one, decoded, scanned.
    let run = cli(&sup, &["qr", "shop", "--wait", "20"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        !run.stdout.contains('\u{1b}'),
        "no colours without a terminal"
    );
    let drawn = decode_terminal_qr(&run.stdout);
    // The first QR lives 60 s: the API still shows the one drawn.
    let api_qr = sup
        .call("GET", "/api/whatsapp/qr/shop?format=json", None)
        .json();
    assert_eq!(api_qr["qr"].as_str(), Some(drawn.as_str()), "{api_qr}");
    let jid = sim.scan(&drawn, "15550008001");
    wait_status(&sup, "shop", "connected", STATE_DEADLINE);
    sim.wait_logged_in(&jid, STATE_DEADLINE);
    let again = cli(&sup, &["qr", "shop"]);
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stderr.contains("no QR is needed"), "{again:?}");

    // The table and the JSON.
    let table = ok(&sup, &["list"]);
    let header = table.lines().next().unwrap_or_default();
    for column in ["ID", "NAME", "PHONE", "STATUS", "REASON"] {
        assert!(header.contains(column), "{table}");
    }
    let row = table
        .lines()
        .find(|l| l.starts_with("shop "))
        .unwrap_or_else(|| panic!("no row for shop:\n{table}"));
    assert!(
        row.contains("Front Shop") && row.contains("connected"),
        "{table}"
    );
    assert!(
        row.contains("+155****01") || row.contains('*'),
        "masked: {row}"
    );
    assert!(
        !table.contains("15550008001"),
        "the phone is masked: {table}"
    );
    let json: Value = serde_json::from_str(&ok(&sup, &["list", "--json"])).expect("json");
    assert_eq!(json["accounts"][0]["accountId"], "shop", "{json}");
    assert_eq!(json["summary"]["total"], 1, "{json}");

    // A message to a contact (a phone the sim knows once it has written), read at its phone.
    let first = sim.send_from_phone("15550008002", "15550008001", "hello shop");
    sup.wait_received(
        "shop",
        &first,
        "the contact's first message",
        STATE_DEADLINE,
    );
    let out = ok(
        &sup,
        &[
            "send",
            "shop",
            "--to",
            "+15550008002",
            "--text",
            "hello from the terminal",
        ],
    );
    let (status, id) = out.trim().split_once(' ').expect("status and id");
    assert_eq!(status, "queued", "{out}");
    let got = sim.wait_inbox("15550008002", id, STATE_DEADLINE);
    assert_eq!(got["text"], "hello from the terminal");
    let refused = cli(&sup, &["send", "shop", "--to", "nobody", "--text", "x"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("invalid_recipient"), "{refused:?}");

    // Restart: a new worker, connected again.
    let pid = sup.account("shop")["pid"].as_u64().expect("pid");
    assert_eq!(ok(&sup, &["restart", "shop"]).trim(), "restarting shop");
    wait_until("a new connected worker", STATE_DEADLINE, || {
        let a = sup.account("shop");
        if a["status"] == "connected" && a["pid"].as_u64().is_some_and(|p| p != pid) {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });

    // Logout: unlinked at the sim, the account kept.
    assert_eq!(ok(&sup, &["logout", "shop"]).trim(), "logging out shop");
    wait_status(&sup, "shop", "logged_out", STATE_DEADLINE);
    wait_until("the sim to forget the device", STATE_DEADLINE, || {
        sim.session_of(&jid).map_or(Ok(()), |s| Err(s.to_string()))
    });

    // Delete: refused without a terminal to confirm on, done with --yes.
    let unconfirmed = cli(&sup, &["delete", "shop"]);
    assert_eq!(unconfirmed.code, Some(2), "{unconfirmed:?}");
    assert!(unconfirmed.stderr.contains("--yes"), "{unconfirmed:?}");
    assert!(sup.dashboard()["accounts"][0]["accountId"] == "shop");
    assert_eq!(
        ok(&sup, &["delete", "shop", "--yes"]).trim(),
        "deleting shop"
    );
    wait_until("the account gone", STATE_DEADLINE, || {
        let d = sup.dashboard();
        if d["accounts"].as_array().is_some_and(Vec::is_empty) {
            Ok(())
        } else {
            Err(d.to_string())
        }
    });
    assert!(!volume.sessions().join("shop").exists(), "archived");
    let gone = cli(&sup, &["restart", "shop"]);
    assert_eq!(gone.code, Some(1), "{gone:?}");
    assert!(gone.stderr.contains("account shop not found"), "{gone:?}");
}

#[test]
fn a_wrong_token_or_no_service_is_a_clear_error_and_a_failure() {
    let volume = Volume::new();
    let sup = Supervisor::start(&volume.sessions(), &[]);
    let wrong = "not-the-token-7f3a";
    for token in [Some(wrong), None] {
        let run = cli_at(&sup.origin(), token, &["list"]);
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(
            run.stderr.contains("missing or wrong admin token") && run.stderr.contains("401"),
            "{run:?}"
        );
        assert!(run.stdout.is_empty(), "{run:?}");
        assert!(
            !run.stderr.contains(wrong),
            "the token is never printed: {run:?}"
        );
    }
    // The flag wins over the environment.
    let run = cli_at(&sup.origin(), Some(TOKEN), &["list", "--token", wrong]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let run = cli_at(&sup.origin(), Some(wrong), &["list", "--token", TOKEN]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("ID"), "{run:?}");

    let refused = wa_sim::harness::process::refused_ws_url()
        .replace("ws://", "http://")
        .replace("/ws/chat", "");
    let run = cli_at(&refused, Some(TOKEN), &["list"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("cannot reach"), "{run:?}");
    let run = cli_at(&sup.origin(), Some(TOKEN), &["restart", "Not/An/Id"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("not an account id"), "{run:?}");
}

/// `pairing-code` asks the real route for a code and prints it; typed on the simulated phone,
/// it pairs the account.
#[test]
fn pairing_code_prints_a_code_that_pairs_the_account() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[]);
    ok(&sup, &["add", "--name", "Shop", "--id", "shop"]);
    let run = cli(
        &sup,
        &["pairing-code", "shop", "--phone", "+1 555 000 4001"],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let code = run.stdout.trim().to_owned();
    assert!(
        code.len() == 9
            && code.as_bytes()[4] == b'-'
            && code
                .chars()
                .filter(|c| *c != '-')
                .all(|c| "123456789ABCDEFGHJKLMNPQRSTVWXYZ".contains(c)),
        "a code as ABCD-EFGH: {run:?}"
    );
    assert!(run.stderr.contains("Link with phone number"), "{run:?}");
    let (status, entered) = sim.post(
        "/enter-code",
        &serde_json::json!({ "phone": "15550004001", "code": code }),
    );
    assert_eq!(status, 200, "{entered}");
    wait_status(&sup, "shop", "connected", STATE_DEADLINE);
    // Once paired, a code is refused with the API's own words.
    let run = cli(
        &sup,
        &["pairing-code", "shop", "--phone", "+1 555 000 4001"],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("already_paired"), "{run:?}");
}
