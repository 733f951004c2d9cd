//! The supervisor's errors; each says what is wrong and what fixes it.

use std::io;
use std::path::PathBuf;

/// Why the supervisor could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration key is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The sessions directory cannot be written.
    #[error(
        "sessions directory {} is not writable ({source}); fix: point SESSIONS_PATH at a writable \
         directory on a persistent volume (on Railway: add a volume, e.g. mounted at /data, and set \
         SESSIONS_PATH=/data/sessions or rely on RAILWAY_VOLUME_MOUNT_PATH)",
        path.display()
    )]
    SessionsNotWritable {
        /// The directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// Another supervisor holds the volume.
    #[error(
        "another supervisor already runs on {} (it holds {}); stop it first, or give this one its \
         own SESSIONS_PATH",
        path.display(),
        crate::sessions_dir::SUPERVISOR_LOCK
    )]
    AlreadyRunning {
        /// The sessions directory.
        path: PathBuf,
    },
    /// The sessions directory could not be locked or read.
    #[error("sessions directory {} failed", path.display())]
    Sessions {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The admin token could not be stored.
    #[error("cannot store the generated admin token at {}", path.display())]
    AdminToken {
        /// The token file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The IPC socket could not be set up.
    #[error("cannot set up the worker ipc socket")]
    Ipc(#[source] io::Error),
    /// Webhooks could not be set up (pending directory or secret).
    #[error(transparent)]
    Webhook(#[from] crate::webhook::SetupError),
    /// The HTTP port could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::AlreadyRunning { .. } => 3,
            Error::Config(_) => 2,
            _ => 1,
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
