//! Exclusive advisory locks on a file (flock), held for the life of a process.
//!
//! The kernel drops the lock when the process dies, however it dies, so a crashed holder never
//! leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct FileLock {
    _flock: Flock<File>,
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{} is held by another process", path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl FileLock {
    /// Takes an exclusive lock on `path` without waiting, creating the file (mode 0600).
    ///
    /// The lock is held through a read-only descriptor (flock needs no write access): a held
    /// lock then neither stops the volume from being remounted read-only nor fails on one.
    ///
    /// # Errors
    /// [`LockError::Held`] if another process holds it, [`LockError::Io`] otherwise.
    pub fn try_acquire(path: &Path) -> Result<FileLock, LockError> {
        let io_err = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(path)
                    .map_err(io_err)?;
                File::open(path).map_err(io_err)?
            }
            Err(e) => return Err(io_err(e)),
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => Ok(FileLock { _flock: flock }),
            Err((_, Errno::EWOULDBLOCK)) => Err(LockError::Held {
                path: path.to_owned(),
            }),
            Err((_, errno)) => Err(LockError::Io {
                path: path.to_owned(),
                source: io::Error::from(errno),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        let first = FileLock::try_acquire(&path).expect("first");
        assert!(matches!(
            FileLock::try_acquire(&path),
            Err(LockError::Held { .. })
        ));
        drop(first);
        FileLock::try_acquire(&path).expect("free again");
    }
}
