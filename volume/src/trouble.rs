//! What a failed write says about the volume: full, read-only, or something else.
//!
//! The worker keeps its connection through such trouble and probes the volume with backoff
//! until a write of realistic size goes through again; the supervisor answers 507 to an add
//! that the volume refused.

use std::fs;
use std::io;
use std::path::Path;

use ipc_protocol::Reason;
use nix::errno::Errno;

use crate::atomic::{sync_dir, write_atomic};

/// The probe's file name in the account directory.
const PROBE_FILE: &str = ".storage-probe";
/// The probe writes this much: more than any single record the worker writes in the normal
/// course (a creds file is about 1 KiB, a Signal session a few KiB), so a volume that takes the
/// probe takes the writes that failed.
const PROBE_LEN: usize = 64 * 1024;

/// The kind of trouble an I/O error shows.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Trouble {
    /// No space left, or over quota.
    Full,
    /// A read-only file system, or writing denied.
    Readonly,
    /// Any other I/O failure.
    Other,
}

impl Trouble {
    /// The trouble `e` shows.
    pub fn of(e: &io::Error) -> Trouble {
        match e.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ENOSPC | Errno::EDQUOT) => Trouble::Full,
            Some(Errno::EROFS | Errno::EACCES | Errno::EPERM) => Trouble::Readonly,
            _ => Trouble::Other,
        }
    }

    /// The account's reason while it lasts.
    pub fn reason(self) -> Reason {
        match self {
            Trouble::Full => Reason::StorageFull,
            Trouble::Readonly => Reason::StorageReadonly,
            Trouble::Other => Reason::StorageError,
        }
    }
}

/// Whether `e` says the volume is full or read-only (not a missing file, say).
pub fn is_full_or_readonly(e: &io::Error) -> bool {
    matches!(Trouble::of(e), Trouble::Full | Trouble::Readonly)
}

/// Writes a probe file of realistic size into `dir` the way every record is written (temp,
/// fsync, rename, fsync dir), then removes it.
///
/// # Errors
/// The I/O error that shows the volume still refuses writes.
pub fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let written = write_atomic(&path, &[0u8; PROBE_LEN], 0o600);
    let removed = fs::remove_file(&path);
    written?;
    match removed {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_errnos() {
        let of = |errno: Errno| Trouble::of(&io::Error::from_raw_os_error(errno as i32));
        assert_eq!(of(Errno::ENOSPC), Trouble::Full);
        assert_eq!(of(Errno::EDQUOT), Trouble::Full);
        assert_eq!(of(Errno::EROFS), Trouble::Readonly);
        assert_eq!(of(Errno::EACCES), Trouble::Readonly);
        assert_eq!(of(Errno::EIO), Trouble::Other);
        assert_eq!(Trouble::of(&io::Error::other("x")), Trouble::Other);
        assert_eq!(Trouble::Full.reason().as_string(), "storage_full");
        assert_eq!(Trouble::Readonly.reason().as_string(), "storage_readonly");
    }

    #[test]
    fn the_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        probe(dir.path()).expect("probe");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
        assert!(probe(&dir.path().join("missing")).is_err());
    }
}
