//! The accept loop, and the private (0700) directory its socket lives in.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::link;
use crate::fleet::FleetHandle;

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
                        warn!(error = %e, "ipc accept failed");
                        continue;
                    }
                },
            };
            tracker.spawn(link::run(stream, fleet.sender()));
        }
    }
}
