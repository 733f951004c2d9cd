//! A temp sessions volume with accounts in it.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The frozen v1 creds fixture the worker must keep reading.
pub const CREDS_FIXTURE: &str = include_str!("../../../worker/tests/data/creds-v1.json");

/// A temp directory holding `sessions/`, on the machine's disk or on a small tmpfs of its own.
#[derive(Debug)]
pub struct Volume {
    dir: TempDir,
    /// The tmpfs mount point, when the volume is one.
    mount: Option<PathBuf>,
}

impl Volume {
    /// A new, empty volume.
    ///
    /// # Panics
    /// When the temp directory cannot be made.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp volume");
        fs::create_dir(dir.path().join("sessions")).expect("sessions dir");
        Volume { dir, mount: None }
    }

    /// A volume of `size_kib` KiB on a tmpfs of its own, to be filled or made read-only; `None`
    /// when this process may not mount (it is not root).
    ///
    /// # Panics
    /// When root cannot mount a tmpfs.
    pub fn on_tmpfs(size_kib: u32) -> Option<Self> {
        if !is_root() {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp volume");
        let mount = dir.path().join("mnt");
        fs::create_dir(&mount).expect("mount point");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0755"),
                "tmpfs",
                &mount.display().to_string(),
            ],
        );
        fs::create_dir(mount.join("sessions")).expect("sessions dir");
        Some(Volume {
            dir,
            mount: Some(mount),
        })
    }

    /// The sessions directory.
    pub fn sessions(&self) -> PathBuf {
        match &self.mount {
            Some(mount) => mount.join("sessions"),
            None => self.dir.path().join("sessions"),
        }
    }

    fn tmpfs(&self) -> &Path {
        self.mount.as_deref().expect("a tmpfs volume")
    }

    /// Fills the tmpfs to the last byte with a file outside `sessions/`.
    ///
    /// # Panics
    /// On a volume that is not a tmpfs, or an error other than "no space".
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = fs::File::create(self.tmpfs().join("filler")).expect("filler");
        let chunk = vec![0xA5u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Whatever a smaller write still fits goes too.
        let mut byte = [0u8; 1];
        while f.write(&byte).is_ok_and(|n| n == 1) {
            byte[0] = byte[0].wrapping_add(1);
        }
    }

    /// Removes what [`Volume::fill`] wrote.
    ///
    /// # Panics
    /// On a volume that is not a tmpfs.
    pub fn free(&self) {
        fs::remove_file(self.tmpfs().join("filler")).expect("remove the filler");
    }

    /// Remounts the tmpfs read-only (`true`) or read-write.
    ///
    /// # Panics
    /// On a volume that is not a tmpfs, or when the remount fails.
    pub fn set_readonly(&self, readonly: bool) {
        let opts = if readonly { "remount,ro" } else { "remount,rw" };
        run("mount", &["-o", opts, &self.tmpfs().display().to_string()]);
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

impl Drop for Volume {
    fn drop(&mut self) {
        if let Some(mount) = &self.mount {
            // Lazy: a process that still has a file open there does not keep the mount.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(mount)
                .status();
        }
    }
}

/// Whether the effective uid is 0 (read from `/proc`, without `unsafe`).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn run(program: &str, args: &[&str]) {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

impl Default for Volume {
    fn default() -> Self {
        Self::new()
    }
}
