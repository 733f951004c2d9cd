//! Stopping: SIGTERM flushes every worker; a killed supervisor takes its workers with it; one
//! supervisor per volume; an unwritable volume shows in /health.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use wa_sim::harness::{wait_until, Supervisor, Volume};

use super::{alive, all_linked, wait_gone, worker_pids, STATE_DEADLINE};

const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(5000);

#[test]
fn sigterm_flushes_every_worker_and_exits_zero_within_the_shutdown_timeout() {
    let volume = Volume::new();
    for id in ["s-1", "s-2", "s-3"] {
        volume.add_account(id, true);
    }
    let written = |id: &str| {
        let meta = std::fs::metadata(volume.sessions().join(id).join("creds.json")).expect("creds");
        (meta.ino(), meta.mtime(), meta.mtime_nsec())
    };
    let before: Vec<_> = ["s-1", "s-2", "s-3"].map(written).into();
    let mut sup = Supervisor::start(&volume.sessions(), &[("SHUTDOWN_TIMEOUT_MS", "5000")]);
    let workers = worker_pids(
        &sup.wait_dashboard("three linked workers", STATE_DEADLINE, |d| all_linked(d, 3)),
    );
    assert_eq!(workers.len(), 3);

    let asked = Instant::now();
    sup.signal(Signal::SIGTERM);
    let status = sup.wait_exit(SHUTDOWN_TIMEOUT + Duration::from_secs(5));
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "supervisor exits 0");
    assert!(took < SHUTDOWN_TIMEOUT, "exited in {took:?}");
    for pid in &workers {
        assert!(!alive(*pid), "worker {pid} is gone");
    }
    let tally = sup.wait_event("shutdown:", Duration::from_secs(2));
    assert_eq!(tally["flushed"], 3, "{tally}");
    assert_eq!(tally["total"], 3, "{tally}");
    assert!(tally["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("shutdown: 3/3 workers flushed in ")));
    let log = sup.log().join("\n");
    let fixture: serde_json::Value =
        serde_json::from_str(wa_sim::harness::volume::CREDS_FIXTURE).expect("fixture");
    for secret in [
        &fixture["noise_key"]["private"],
        &fixture["identity_key"]["private"],
        &fixture["adv_secret"],
    ] {
        let secret = secret.as_str().expect("base64 key");
        assert!(!log.contains(secret), "key material never reaches the log");
    }
    for creds in ["s-1", "s-2", "s-3"] {
        let path = volume.sessions().join(creds).join("creds.json");
        let text = std::fs::read_to_string(&path).expect("creds still there");
        assert!(
            text.contains("\"registration_id\": 12345"),
            "creds intact after the flush"
        );
    }
    let after: Vec<_> = ["s-1", "s-2", "s-3"].map(written).into();
    assert_eq!(
        after, before,
        "unchanged creds are proven durable, not rewritten"
    );
}

#[test]
fn a_killed_supervisor_takes_every_worker_down_within_two_seconds() {
    let volume = Volume::new();
    for id in ["k-1", "k-2"] {
        volume.add_account(id, true);
    }
    let mut sup = Supervisor::start(&volume.sessions(), &[]);
    let workers = worker_pids(
        &sup.wait_dashboard("two linked workers", STATE_DEADLINE, |d| all_linked(d, 2)),
    );
    sup.signal(Signal::SIGKILL);
    sup.wait_exit(Duration::from_secs(5));
    wait_gone("every worker gone", &workers, Duration::from_secs(2));
}

#[test]
fn a_second_supervisor_on_the_same_volume_refuses_to_start() {
    let volume = Volume::new();
    let _first = Supervisor::start(&volume.sessions(), &[]);
    let (status, log) = Supervisor::run_to_exit(&volume.sessions(), &[]);
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(log.contains("another supervisor already runs"), "{log}");
}

#[test]
fn an_unwritable_sessions_dir_at_start_exits_non_zero_naming_the_path_and_the_fix() {
    let volume = Volume::new();
    let file = volume.scratch().join("not-a-dir");
    std::fs::write(&file, b"x").expect("file");
    let (status, log) = Supervisor::run_to_exit(&file, &[]);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&file.display().to_string()),
        "names the path: {log}"
    );
    assert!(log.contains("SESSIONS_PATH"), "names the fix: {log}");
}

#[test]
fn health_turns_503_when_the_sessions_dir_becomes_unwritable() {
    let volume = Volume::new();
    let sup = Supervisor::start(&volume.sessions(), &[]);
    assert_eq!(sup.call_with("GET", "/health", &[], None).status, 200);

    // Tests run as root, so chmod proves nothing: swap the directory for a file.
    let sessions = volume.sessions();
    std::fs::rename(&sessions, volume.scratch().join("moved-away")).expect("move the dir away");
    std::fs::write(&sessions, b"now a file").expect("a file in its place");

    let health = wait_until("/health to answer 503", STATE_DEADLINE, || {
        let r = sup.call_with("GET", "/health", &[], None);
        if r.status == 503 {
            Ok(r.json())
        } else {
            Err(r.text())
        }
    });
    assert_eq!(health["sessions_dir_writable"], false);
    assert_eq!(health["ok"], false);
}

#[test]
fn a_heartbeat_timeout_that_would_kill_healthy_workers_stops_the_start_with_the_numbers() {
    let volume = Volume::new();
    let (status, log) =
        Supervisor::run_to_exit(&volume.sessions(), &[("HEARTBEAT_TIMEOUT_MS", "3000")]);
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("HEARTBEAT_TIMEOUT_MS (3000) must be at least twice") && log.contains("30000"),
        "{log}"
    );
}
