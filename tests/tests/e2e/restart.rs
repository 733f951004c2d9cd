//! Crashed workers: restarted alone, parked when they loop; one worker per account, ever.

use std::process::Command;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use wa_sim::harness::process::binary;
use wa_sim::harness::{wait_until, Supervisor, Volume};

use super::{all_linked, pids, STATE_DEADLINE};

#[test]
fn killed_worker_comes_back_and_the_other_workers_keep_their_pids() {
    let volume = Volume::new();
    for id in ["w-1", "w-2", "w-3"] {
        volume.add_account(id, true);
    }
    let sup = Supervisor::start(&volume.sessions(), &[("RESTART_BACKOFF_BASE_MS", "100")]);
    let before =
        pids(&sup.wait_dashboard("three linked workers", STATE_DEADLINE, |d| all_linked(d, 3)));
    let victim = before[1].1.expect("w-2 runs");
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill -9 the worker");

    let after = sup.wait_dashboard("w-2 back with a new pid", STATE_DEADLINE, |d| {
        let now = pids(d);
        now[1].1.is_some_and(|p| p != victim) && all_linked(d, 3)
    });
    let now = pids(&after);
    assert_eq!(now[0], before[0], "w-1 untouched");
    assert_eq!(now[2], before[2], "w-3 untouched");
    assert_eq!(after["accounts"][1]["restarts"], 1);
}

#[test]
fn a_worker_that_keeps_crashing_is_parked_with_reason_crash_loop() {
    let volume = Volume::new();
    volume.add_account("crashy", true);
    let bin = volume.script("crashing-worker.sh", "exit 1");
    let sup = Supervisor::start(
        &volume.sessions(),
        &[("WORKER_BIN", &bin), ("RESTART_BACKOFF_BASE_MS", "20")],
    );

    let parked = sup.wait_dashboard("the account parked", STATE_DEADLINE, |d| {
        d["accounts"][0]["status"] == "failed"
    });
    let account = &parked["accounts"][0];
    assert_eq!(account["reason"], "crash_loop");
    assert_eq!(
        account["restarts"], 5,
        "five restarts, then the sixth crash parks"
    );
    assert!(account["pid"].is_null());

    // Parked means parked: no new worker appears on its own.
    let events = sup.events("worker spawned").len();
    assert_eq!(events, 6);
    let r = sup.call("POST", "/api/whatsapp/accounts/crashy/restart", None);
    assert_eq!(r.status, 202, "an admin restart un-parks: {}", r.text());
    wait_until("a spawn after the admin restart", STATE_DEADLINE, || {
        let n = sup.events("worker spawned").len();
        if n > events {
            Ok(())
        } else {
            Err(format!("{n} spawns"))
        }
    });
}

#[test]
fn a_second_worker_for_the_same_account_exits_with_its_own_code() {
    let volume = Volume::new();
    volume.add_account("solo", true);
    let sup = Supervisor::start(&volume.sessions(), &[]);
    sup.wait_dashboard("the worker linked", STATE_DEADLINE, |d| all_linked(d, 1));

    let out = Command::new(binary("worker"))
        .args(["--account", "solo", "--sessions"])
        .arg(volume.sessions())
        .env("WA_WS_URL", "ws://127.0.0.1:9/ws/chat")
        .output()
        .expect("run a second worker");
    assert_eq!(
        out.status.code(),
        Some(3),
        "EXIT_LOCKED; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another worker already runs this account")
    );
}

#[test]
fn corrupt_creds_are_kept_aside_and_the_account_needs_a_qr() {
    let volume = Volume::new();
    volume.add_account("broken", true);
    std::fs::write(
        volume.sessions().join("broken/creds.json"),
        b"{ \"version\": 1, truncated",
    )
    .expect("corrupt");
    let sup = Supervisor::start(&volume.sessions(), &[]);

    let d = sup.wait_dashboard("needs_qr after corrupt creds", STATE_DEADLINE, |d| {
        d["accounts"][0]["status"] == "needs_qr" && d["accounts"][0]["reason"] == "creds_corrupt"
    });
    assert!(
        d["accounts"][0]["pid"].is_u64(),
        "the worker stays up, waiting for a QR request"
    );
    let kept: Vec<_> = std::fs::read_dir(volume.sessions().join("broken"))
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("creds.json.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "the corrupt file is kept aside, not deleted");
    let content = std::fs::read(volume.sessions().join("broken").join(&kept[0])).expect("read");
    assert_eq!(content, b"{ \"version\": 1, truncated");
}

#[test]
fn creds_of_a_newer_format_stop_the_account_and_stay_untouched() {
    let volume = Volume::new();
    volume.add_account("future", true);
    let path = volume.sessions().join("future/creds.json");
    let newer = br#"{"version":2,"keys":{"shape":"of a later release"}}"#;
    std::fs::write(&path, newer).expect("newer creds");
    let sup = Supervisor::start(&volume.sessions(), &[]);
    let d = sup.wait_dashboard("stopped as newer", STATE_DEADLINE, |d| {
        d["accounts"][0]["reason"] == "creds_newer_version"
    });
    let a = &d["accounts"][0];
    assert_eq!(a["status"], "failed", "{a}");
    assert!(
        a["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("version 2")),
        "{a}"
    );
    // A QR request must not replace the newer file with fresh keys.
    let r = sup.call("POST", "/api/whatsapp/accounts/future/qr", None);
    assert!(r.status < 300, "{}", r.text());
    wait_until("the QR request refused too", STATE_DEADLINE, || {
        let n = sup
            .events("creds file is of a newer format; stopped, file left untouched")
            .len();
        if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n} refusals"))
        }
    });
    assert_eq!(std::fs::read(&path).expect("read"), newer);
    let names: Vec<_> = std::fs::read_dir(volume.sessions().join("future"))
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("creds"))
        .collect();
    assert_eq!(names, ["creds.json"], "nothing renamed or added");
    assert_eq!(sup.account("future")["reason"], "creds_newer_version");
}

#[test]
fn a_worker_that_cannot_be_spawned_is_retried_with_backoff_and_starts_once_it_can() {
    let volume = Volume::new();
    volume.add_account("later", true);
    let bin = volume.scratch().join("worker-not-yet-there.sh");
    let bin_text = bin.display().to_string();
    let sup = Supervisor::start(
        &volume.sessions(),
        &[
            ("WORKER_BIN", bin_text.as_str()),
            ("RESTART_BACKOFF_BASE_MS", "50"),
        ],
    );
    let d = sup.wait_dashboard("spawn_failed, retrying", STATE_DEADLINE, |d| {
        d["accounts"][0]["reason"] == "spawn_failed"
            && d["accounts"][0]["restarts"].as_u64() >= Some(2)
    });
    let a = &d["accounts"][0];
    assert_eq!(a["status"], "reconnecting", "never parked: {a}");
    assert!(a["nextRetryAt"].is_string(), "{a}");
    assert!(
        a["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("No such file")),
        "{a}"
    );
    // The binary appears (a deploy finished, descriptors came back): the next retry starts it.
    volume.script("worker-not-yet-there.sh", "exec sleep 30");
    sup.wait_dashboard("the worker running", STATE_DEADLINE, |d| {
        d["accounts"][0]["pid"].is_u64()
    });
}

#[test]
fn a_worker_that_sends_no_heartbeat_is_killed_as_hung_and_restarted() {
    let volume = Volume::new();
    volume.add_account("silent", true);
    let bin = volume.script("silent-worker.sh", "exec sleep 30");
    let sup = Supervisor::start(
        &volume.sessions(),
        &[
            ("WORKER_BIN", &bin),
            ("HEARTBEAT_TIMEOUT_MS", "1000"),
            ("HEARTBEAT_INTERVAL_MS", "400"),
            ("RESTART_BACKOFF_BASE_MS", "50"),
        ],
    );
    let first = sup.wait_dashboard("the silent worker running", STATE_DEADLINE, |d| {
        d["accounts"][0]["pid"].is_u64()
    });
    let first_pid = first["accounts"][0]["pid"].as_u64().expect("pid");

    let hung = sup.wait_event(
        "worker sent no heartbeat; killing it as hung",
        STATE_DEADLINE,
    );
    assert_eq!(hung["pid"].as_u64(), Some(first_pid));
    sup.wait_dashboard("a replacement worker", STATE_DEADLINE, |d| {
        d["accounts"][0]["restarts"].as_u64() >= Some(1)
            && d["accounts"][0]["pid"]
                .as_u64()
                .is_some_and(|p| p != first_pid)
    });
    super::wait_gone("the hung worker gone", &[first_pid as u32], STATE_DEADLINE);
}

#[test]
fn after_max_reconnect_attempts_the_account_is_disconnected_and_retries_every_five_minutes() {
    let volume = Volume::new();
    volume.add_account("flaky", true);
    let sup = Supervisor::start(
        &volume.sessions(),
        &[
            ("MAX_RECONNECT_ATTEMPTS", "2"),
            ("RECONNECT_BASE_MS", "50"),
            ("RECONNECT_MAX_MS", "100"),
        ],
    );
    let d = sup.wait_dashboard("disconnected", STATE_DEADLINE, |d| {
        d["accounts"][0]["status"] == "disconnected"
    });
    let a = &d["accounts"][0];
    assert_eq!(a["reason"], "network");
    assert_eq!(a["reconnectAttempts"], 2);
    let at = |k: &str| humantime::parse_rfc3339(a[k].as_str().expect("time")).expect("iso");
    let wait = at("nextRetryAt")
        .duration_since(at("lastEventAt"))
        .expect("future");
    assert!(
        wait >= std::time::Duration::from_secs(299) && wait <= std::time::Duration::from_secs(301),
        "{wait:?}"
    );
    assert!(
        a["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{a}"
    );
}
