//! Nothing is left behind (issue 7, item 4): temp files of interrupted atomic writes are removed
//! at start (a worker its own, the supervisor its own), and the IPC runtime directory of a
//! killed supervisor goes when the next one starts.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use wa_sim::harness::process::refused_ws_url;
use wa_sim::harness::{wait_until, Supervisor, Volume};

use super::STATE_DEADLINE;

fn runtime_dirs(base: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(base)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("wafleet-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn temp_files_of_interrupted_writes_are_removed_at_start() {
    let volume = Volume::new();
    volume.add_account("shop", true);
    let sessions = volume.sessions();
    let account = sessions.join("shop");
    let creds_tmp = account.join(".creds.json.tmp-77-0badf00d");
    fs::write(&creds_tmp, vec![b'{'; 155_000]).expect("a big creds temp");
    fs::create_dir_all(account.join("signal/sessions")).expect("signal dir");
    let session_tmp = account.join("signal/sessions/.x.tmp-77-00000001");
    fs::write(&session_tmp, b"half").expect("session temp");
    let account_tmp = account.join(".account.json.tmp-66-00000002");
    fs::write(&account_tmp, b"{").expect("account temp");
    let root_tmp = sessions.join(".webhook-secret.tmp-66-00000003");
    fs::write(&root_tmp, b"x").expect("root temp");
    let keep = account.join(".hidden-but-not-temp");
    fs::write(&keep, b"keep").expect("keep");

    let ws = refused_ws_url();
    let sup = Supervisor::start(
        &sessions,
        &[
            ("WA_WS_URL", ws.as_str()),
            ("BOOT_JITTER_MIN_MS", "0"),
            ("BOOT_JITTER_MAX_MS", "0"),
        ],
    );
    wait_until("every temp file removed", STATE_DEADLINE, || {
        let left: Vec<_> = [&creds_tmp, &session_tmp, &account_tmp, &root_tmp]
            .into_iter()
            .filter(|p| p.exists())
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    assert!(keep.exists(), "only temp files go");
    assert!(account.join("creds.json").exists());
    drop(sup);
}

#[test]
fn a_killed_supervisors_runtime_directory_goes_when_the_next_one_starts() {
    let volume = Volume::new();
    let runtime = tempfile::tempdir().expect("runtime base");
    let base = runtime.path().display().to_string();
    let env = [("XDG_RUNTIME_DIR", base.as_str())];
    let mut first = Supervisor::start(&volume.sessions(), &env);
    let first_dirs = runtime_dirs(runtime.path());
    assert_eq!(first_dirs.len(), 1, "{first_dirs:?}");
    assert!(first_dirs[0].starts_with(&format!("wafleet-{}-", first.pid())));
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(5));
    assert_eq!(
        runtime_dirs(runtime.path()),
        first_dirs,
        "kill -9 leaves it"
    );

    let second = Supervisor::start(&volume.sessions(), &env);
    let ours = format!("wafleet-{}-", second.pid());
    let dirs = wait_until("only the new directory", STATE_DEADLINE, || {
        let dirs = runtime_dirs(runtime.path());
        if dirs.len() == 1 && dirs[0].starts_with(&ours) {
            Ok(dirs)
        } else {
            Err(format!("{dirs:?}"))
        }
    });
    assert_ne!(dirs, first_dirs);
}
