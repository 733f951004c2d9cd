//! A temp sessions volume with accounts in it.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The frozen v1 creds fixture the worker must keep reading.
pub const CREDS_FIXTURE: &str = include_str!("../../../worker/tests/data/creds-v1.json");

/// A temp directory holding `sessions/`.
#[derive(Debug)]
pub struct Volume {
    dir: TempDir,
}

impl Volume {
    /// A new, empty volume.
    ///
    /// # Panics
    /// When the temp directory cannot be made.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp volume");
        fs::create_dir(dir.path().join("sessions")).expect("sessions dir");
        Volume { dir }
    }

    /// The sessions directory.
    pub fn sessions(&self) -> PathBuf {
        self.dir.path().join("sessions")
    }

    /// The temp directory around it, for scratch files.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Writes an executable shell script `name` in the scratch directory; returns its path.
    ///
    /// # Panics
    /// On any I/O error.
    pub fn script(&self, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.scratch().join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path.display().to_string()
    }

    /// Writes `<id>/account.json`, and the creds fixture when `with_creds`.
    ///
    /// # Panics
    /// On any I/O error.
    pub fn add_account(&self, id: &str, with_creds: bool) {
        let dir = self.sessions().join(id);
        fs::create_dir_all(&dir).expect("account dir");
        let account = serde_json::json!({
            "id": id,
            "name": format!("Account {id}"),
            "phone": "+40712345678",
            "created_at": 1_764_000_000_000u64,
            "enabled": true,
        });
        fs::write(dir.join("account.json"), account.to_string()).expect("account.json");
        if with_creds {
            fs::write(dir.join("creds.json"), CREDS_FIXTURE).expect("creds.json");
        }
    }
}

impl Default for Volume {
    fn default() -> Self {
        Self::new()
    }
}
