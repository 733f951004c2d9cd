//! `supervisor sessions encrypt|decrypt`: seals (or opens) every account's creds and Signal
//! keys on a stopped volume, file by file, each written atomically. It takes the supervisor's
//! lock and every worker's, so nothing else writes meanwhile; a file that does not open with the
//! key stops it before anything more is written, naming the file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ipc_protocol::AccountId;
use volume::atomic::is_temp_name;
use volume::layout::{AccountDir, CREDS_FILE, SIGNAL_DIR};
use volume::lock::{FileLock, LockError};
use volume::seal::{Sealer, SessionsKey, MAGIC};

use crate::sessions_dir;

/// Seal or open.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Direction {
    /// Seal every plain file.
    Encrypt,
    /// Write every sealed file back as plain.
    Decrypt,
}

/// What a migration did.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Tally {
    /// Accounts visited.
    pub accounts: usize,
    /// Files rewritten.
    pub rewritten: usize,
    /// Files already in the wanted form.
    pub unchanged: usize,
}

/// Migrates the volume at `sessions`.
///
/// # Errors
/// A message naming what stopped it: a running supervisor or worker, a file that does not open,
/// an I/O error.
pub fn migrate(sessions: &Path, key: &SessionsKey, direction: Direction) -> Result<Tally, String> {
    let _supervisor = sessions_dir::lock(sessions).map_err(|e| match e {
        LockError::Held { .. } => "a supervisor runs on this volume: stop it first".to_owned(),
        other => other.to_string(),
    })?;
    let sealer = Sealer::new(sessions, Some(key.clone()));
    let mut tally = Tally::default();
    let mut ids: Vec<AccountId> = fs::read_dir(sessions)
        .map_err(|e| format!("cannot list {}: {e}", sessions.display()))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| AccountId::parse(&e.file_name().to_string_lossy()).ok())
        .collect();
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    for id in ids {
        let dir = AccountDir::new(sessions, id.as_str());
        let _worker = FileLock::try_acquire(&dir.lock_file()).map_err(|e| match e {
            LockError::Held { .. } => {
                format!("a worker runs account {id}: stop the supervisor first")
            }
            other => other.to_string(),
        })?;
        let mut files = vec![dir.path().join(CREDS_FILE)];
        collect(&dir.path().join(SIGNAL_DIR), &mut files)
            .map_err(|e| format!("cannot list the keys of {id}: {e}"))?;
        for file in files.into_iter().filter(|f| f.is_file()) {
            let raw = fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let sealed = raw.starts_with(MAGIC);
            if sealed == (direction == Direction::Encrypt) {
                tally.unchanged += 1;
                continue;
            }
            let plain = sealer.open(&file, raw).map_err(|e| e.to_string())?;
            let written = match direction {
                Direction::Encrypt => sealer.write(&file, &plain, 0o600),
                Direction::Decrypt => volume::atomic::write_atomic(&file, &plain, 0o600),
            };
            written.map_err(|e| format!("{}: {e}", file.display()))?;
            tally.rewritten += 1;
        }
        tally.accounts += 1;
    }
    Ok(tally)
}

/// Every regular file under `dir`, but temp files and files kept aside as corrupt.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            collect(&path, out)?;
        } else if !is_temp_name(&name) && !name.contains(".corrupt-") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionsKey {
        SessionsKey::parse(&"ab".repeat(32)).expect("key")
    }

    #[test]
    fn seals_then_opens_every_key_file_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("shop/signal/sessions")).expect("dirs");
        fs::create_dir_all(root.join("shop/messages")).expect("dirs");
        fs::write(root.join("shop/creds.json"), b"{\"version\":1}").expect("creds");
        fs::write(root.join("shop/signal/sessions/abc"), b"WFK1session").expect("session");
        fs::write(root.join("shop/messages/m1"), b"message").expect("message");
        fs::write(root.join("shop/account.json"), b"{}").expect("account");

        let t = migrate(root, &key(), Direction::Encrypt).expect("encrypt");
        assert_eq!((t.accounts, t.rewritten, t.unchanged), (1, 2, 0));
        assert!(fs::read(root.join("shop/creds.json"))
            .expect("c")
            .starts_with(MAGIC));
        assert!(fs::read(root.join("shop/signal/sessions/abc"))
            .expect("s")
            .starts_with(MAGIC));
        assert_eq!(
            fs::read(root.join("shop/messages/m1")).expect("m"),
            b"message"
        );
        assert_eq!(fs::read(root.join("shop/account.json")).expect("a"), b"{}");
        let again = migrate(root, &key(), Direction::Encrypt).expect("again");
        assert_eq!((again.rewritten, again.unchanged), (0, 2));

        let wrong = SessionsKey::parse(&"cd".repeat(32)).expect("key");
        let e = migrate(root, &wrong, Direction::Decrypt).expect_err("wrong key");
        assert!(
            e.contains("creds.json") && e.contains("SESSIONS_KEY"),
            "{e}"
        );
        assert!(
            fs::read(root.join("shop/creds.json"))
                .expect("c")
                .starts_with(MAGIC),
            "untouched"
        );

        let t = migrate(root, &key(), Direction::Decrypt).expect("decrypt");
        assert_eq!(t.rewritten, 2);
        assert_eq!(
            fs::read(root.join("shop/creds.json")).expect("c"),
            b"{\"version\":1}"
        );
        assert_eq!(
            fs::read(root.join("shop/signal/sessions/abc")).expect("s"),
            b"WFK1session"
        );
    }

    #[test]
    fn refuses_while_a_worker_holds_its_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("shop")).expect("dir");
        let _held = FileLock::try_acquire(&dir.path().join("shop/lock")).expect("lock");
        let e = migrate(dir.path(), &key(), Direction::Encrypt).expect_err("held");
        assert!(e.contains("a worker runs account shop"), "{e}");
    }
}
