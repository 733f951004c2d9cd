//! The sessions directory: where it is, proof that it is writable, and the supervisor lock.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::warn;
use volume::atomic::sync_dir;
use volume::layout::{is_account_file_temp, WEBHOOKS_DIR};
use volume::lock::{FileLock, LockError};

use crate::config::Config;

pub use volume::layout::SUPERVISOR_LOCK;

/// Resolves `$SESSIONS` in the seed's order: `SESSIONS_PATH`, then
/// `$RAILWAY_VOLUME_MOUNT_PATH/sessions`, then `./.sessions` (with a loud warning).
pub fn resolve(config: &Config) -> PathBuf {
    if let Some(path) = &config.sessions_path {
        return path.clone();
    }
    if let Some(mount) = &config.railway_volume_mount_path {
        return mount.join("sessions");
    }
    warn!(
        "neither SESSIONS_PATH nor RAILWAY_VOLUME_MOUNT_PATH is set: sessions go to ./.sessions, \
         which is EPHEMERAL on a container; every account will need a new QR after a redeploy"
    );
    PathBuf::from(".sessions")
}

/// Creates `dir` if needed and proves it writable: write, fsync, delete a probe file.
///
/// # Errors
/// The I/O error that disproved it.
pub fn prove_writable(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    probe(dir)
}

/// Writes, fsyncs and deletes a probe file in `dir` (which must exist: a missing directory or a
/// file in its place fails).
///
/// # Errors
/// The I/O error that disproved writability.
pub fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(format!(".write-probe-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&path)?;
        f.write_all(b"probe")?;
        f.sync_all()?;
        fs::remove_file(&path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&path);
    }
    result
}

/// Removes the temp files of the supervisor's own interrupted writes: at the root (admin token,
/// webhook secret), under `.webhooks/`, and each account's `account.json`. The workers clean
/// their own. Call it before any worker or writer starts.
pub fn remove_temp_files(root: &Path) -> usize {
    use volume::atomic::remove_temp_files as clean;
    let mut removed = 0;
    let mut tally = |what: &str, result: io::Result<usize>| match result {
        Ok(n) => removed += n,
        Err(e) => warn!(%what, error = %e, "cannot remove temp files of interrupted writes"),
    };
    tally("root", clean(root, 0, &|_| false));
    tally(WEBHOOKS_DIR, clean(&root.join(WEBHOOKS_DIR), 4, &|_| false));
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let not_ours = |n: &str| !is_account_file_temp(n);
            tally("account", clean(&entry.path(), 0, &not_ours));
        }
    }
    removed
}

/// Whether `e` says the volume is full or read-only: the API answers 507 then.
pub fn is_storage_trouble(e: &io::Error) -> bool {
    volume::trouble::is_full_or_readonly(e)
}

/// Takes `.supervisor.lock` in `dir`.
///
/// # Errors
/// [`LockError::Held`] when another supervisor runs on this volume.
pub fn lock(dir: &Path) -> Result<FileLock, LockError> {
    FileLock::try_acquire(&dir.join(SUPERVISOR_LOCK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["supervisor"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("flags parse").config
    }

    #[test]
    fn sessions_path_wins_then_the_railway_volume_then_the_local_fallback() {
        let both = config(&[
            "--sessions-path",
            "/a",
            "--railway-volume-mount-path",
            "/data",
        ]);
        assert_eq!(resolve(&both), PathBuf::from("/a"));
        let railway = config(&["--railway-volume-mount-path", "/data"]);
        assert_eq!(resolve(&railway), PathBuf::from("/data/sessions"));
        if std::env::var_os("SESSIONS_PATH").is_none()
            && std::env::var_os("RAILWAY_VOLUME_MOUNT_PATH").is_none()
        {
            assert_eq!(resolve(&config(&[])), PathBuf::from(".sessions"));
        }
    }

    #[test]
    fn probe_fails_when_the_directory_is_gone_or_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sessions = dir.path().join("sessions");
        prove_writable(&sessions).expect("creates and proves");
        fs::remove_dir(&sessions).expect("remove");
        assert!(probe(&sessions).is_err());
        fs::write(&sessions, b"not a dir").expect("file in its place");
        assert!(probe(&sessions).is_err());
        assert!(prove_writable(&sessions).is_err());
    }
}
