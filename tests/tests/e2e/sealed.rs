//! Creds encrypted at rest (issue 7, item 10): with `SESSIONS_KEY`, creds and Signal keys are
//! sealed on the volume; the same key logs in again, a wrong or missing key stops the account
//! with `sessions_key` and overwrites nothing, and `supervisor sessions decrypt|encrypt`
//! migrates a stopped volume.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use wa_sim::harness::process::binary;
use wa_sim::harness::{wait_until, Sim, Supervisor, Volume};

use super::whatsapp::{pair, start};
use super::STATE_DEADLINE;

const KEY: &str = "5f2b6c0d9e8a7b1c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829300";
const OTHER: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn sealed(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"WFS1"))
}

fn wait_reason(
    sup: &Supervisor,
    id: &str,
    status: &str,
    reason: Option<&str>,
) -> serde_json::Value {
    wait_until(&format!("{id} {status}"), STATE_DEADLINE, || {
        let a = sup.account(id);
        let reason_ok = reason.is_none_or(|r| a["reason"] == r);
        if a["status"] == status && reason_ok {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    })
}

fn stop(mut sup: Supervisor) {
    sup.signal(Signal::SIGTERM);
    sup.wait_exit(Duration::from_secs(15));
}

fn migrate(volume: &Volume, action: &str, key: &str) -> String {
    let out = Command::new(binary("supervisor"))
        .args(["sessions", action])
        .env("SESSIONS_PATH", volume.sessions())
        .env("SESSIONS_KEY", key)
        .env_remove("RAILWAY_VOLUME_MOUNT_PATH")
        .output()
        .expect("run the migration");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{action}: {text}");
    text
}

#[test]
fn sealed_keys_log_in_with_their_key_stop_cleanly_without_it_and_migrate_both_ways() {
    let sim = Sim::start(&[]);
    let volume = Volume::new();
    let sup = start(&volume, &sim, &[("SESSIONS_KEY", KEY)]);
    pair(&sup, &sim, "locked", "15550004001");
    let creds = volume.sessions().join("locked/creds.json");
    wait_until("prekeys stored", STATE_DEADLINE, || {
        let dir = volume.sessions().join("locked/signal/prekeys");
        let n = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        if n > 0 {
            Ok(())
        } else {
            Err("no prekeys yet".to_string())
        }
    });
    assert!(sealed(&creds), "creds.json sealed");
    let prekeys: Vec<_> = std::fs::read_dir(volume.sessions().join("locked/signal/prekeys"))
        .expect("prekeys")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(
        !prekeys.is_empty() && prekeys.iter().all(|p| sealed(p)),
        "{prekeys:?}"
    );
    stop(sup);

    // The same key: back online without a QR.
    let sup = start(&volume, &sim, &[("SESSIONS_KEY", KEY)]);
    wait_reason(&sup, "locked", "connected", None);
    stop(sup);

    // A wrong key, and no key: stopped, nothing overwritten.
    let before = std::fs::read(&creds).expect("creds");
    for extra in [&[("SESSIONS_KEY", OTHER)][..], &[]] {
        let sup = start(&volume, &sim, extra);
        let a = wait_reason(&sup, "locked", "failed", Some("sessions_key"));
        assert!(
            a["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("SESSIONS_KEY")),
            "{a}"
        );
        stop(sup);
        assert_eq!(std::fs::read(&creds).expect("creds"), before, "untouched");
    }

    // Decrypt the stopped volume: it runs without a key; encrypt it again.
    let said = migrate(&volume, "decrypt", KEY);
    assert!(said.contains("1 accounts"), "{said}");
    assert!(!sealed(&creds));
    serde_json::from_slice::<serde_json::Value>(&std::fs::read(&creds).expect("creds"))
        .expect("plain json again");
    let sup = start(&volume, &sim, &[]);
    wait_reason(&sup, "locked", "connected", None);
    stop(sup);
    migrate(&volume, "encrypt", KEY);
    assert!(sealed(&creds) && prekeys.iter().all(|p| !p.exists() || sealed(p)));
    let sup = start(&volume, &sim, &[("SESSIONS_KEY", KEY)]);
    wait_reason(&sup, "locked", "connected", None);
}
