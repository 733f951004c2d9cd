//! The accept loop, and the private (0700) directory its socket lives in.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::link;
use crate::fleet::FleetHandle;

/// The pause after a failed accept.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// A private runtime directory (mode 0700), removed on drop.
#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
}

impl RuntimeDir {
    /// Creates `$XDG_RUNTIME_DIR/wafleet-<pid>` (or the same under the temp directory).
    ///
    /// # Errors
    /// The I/O error of the creation.
    pub fn create() -> io::Result<RuntimeDir> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let path = base.join(format!(
            "wafleet-{}-{:06x}",
            std::process::id(),
            rand::random::<u32>() & 0xff_ffff
        ));
        fs::DirBuilder::new().mode(0o700).create(&path)?;
        remove_stale(&base, &path);
        Ok(RuntimeDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes the runtime directories that killed supervisors left in `base`: named
/// `wafleet-<pid>-<hex>`, owned by the owner of `ours`, whose pid no longer runs. A pid that
/// runs (even reused by another program) keeps its directory: better left than wrongly removed.
fn remove_stale(base: &Path, ours: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(owner) = fs::metadata(ours).map(|m| m.uid()) else {
        return;
    };
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == ours {
            continue;
        }
        let name = entry.file_name();
        let Some(pid) = stale_pid(&name.to_string_lossy()) else {
            continue;
        };
        let mine = entry
            .metadata()
            .is_ok_and(|m| m.is_dir() && m.uid() == owner);
        if mine && !Path::new(&format!("/proc/{pid}")).exists() {
            match fs::remove_dir_all(&path) {
                Ok(()) => {
                    info!(dir = %path.display(), pid, "removed the runtime directory of a supervisor that is gone")
                }
                Err(e) => {
                    debug!(dir = %path.display(), error = %e, "cannot remove a stale runtime directory")
                }
            }
        }
    }
}

/// The pid in a runtime directory's name `wafleet-<pid>-<6 hex>`.
fn stale_pid(name: &str) -> Option<u32> {
    let (pid, tag) = name.strip_prefix("wafleet-")?.split_once('-')?;
    let hex = tag.len() == 6 && tag.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| pid.parse().ok()).flatten()
}

/// The IPC socket, listening.
#[derive(Debug)]
pub struct IpcListener {
    listener: interprocess::local_socket::tokio::Listener,
    path: PathBuf,
}

impl IpcListener {
    /// Binds `ipc.sock` inside `dir`.
    ///
    /// # Errors
    /// The I/O error of the bind.
    pub fn bind(dir: &RuntimeDir) -> io::Result<IpcListener> {
        let path = dir.path().join("ipc.sock");
        let name = path.clone().to_fs_name::<GenericFilePath>()?;
        let listener = ListenerOptions::new().name(name).create_tokio()?;
        Ok(IpcListener { listener, path })
    }

    /// The socket path workers connect to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts links until `token` is cancelled; each link runs in its own task on `tracker`.
    pub async fn run(self, fleet: FleetHandle, token: CancellationToken, tracker: TaskTracker) {
        info!(socket = %self.path.display(), "ipc listening");
        loop {
            let stream = tokio::select! {
                biased;
                _ = token.cancelled() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(stream) => stream,
                    Err(e) => {
                        // Out of descriptors, say: wait a little instead of spinning.
                        warn!(error = %e, "ipc accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            tracker.spawn(link::run(stream, fleet.sender()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pid_of_runtime_directory_names_only() {
        assert_eq!(stale_pid("wafleet-1234-0a1b2c"), Some(1234));
        assert_eq!(stale_pid("wafleet-1234-0a1b2"), None);
        assert_eq!(stale_pid("wafleet-x-0a1b2c"), None);
        assert_eq!(stale_pid("other-1234-0a1b2c"), None);
        assert_eq!(stale_pid("wafleet-1234-0a1b2g"), None);
    }

    #[test]
    fn removes_the_directories_of_dead_supervisors_and_keeps_the_living() {
        let base = tempfile::tempdir().expect("tempdir");
        let ours = base
            .path()
            .join(format!("wafleet-{}-000001", std::process::id()));
        fs::create_dir(&ours).expect("ours");
        // Above the kernel's largest pid: certainly not running.
        let dead = base.path().join("wafleet-4194400-abcdef");
        fs::create_dir(&dead).expect("dead");
        fs::write(dead.join("ipc.sock"), b"").expect("file inside");
        let living = base.path().join("wafleet-1-abcdef");
        fs::create_dir(&living).expect("pid 1 runs");
        let unrelated = base.path().join("wafleet-notes");
        fs::create_dir(&unrelated).expect("unrelated");
        remove_stale(base.path(), &ours);
        assert!(!dead.exists(), "the dead supervisor's directory is gone");
        assert!(ours.exists() && living.exists() && unrelated.exists());
    }
}
