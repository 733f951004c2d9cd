//! Durable writes: temp file, fsync, rename, fsync of the directory.
//!
//! A reader (or a SIGKILL at any instant) sees either the old file or the new one, never a mix,
//! and once [`write_atomic`] returns the new content survives a power cut.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path` with `bytes`, durably, creating it with permission bits `mode`.
///
/// # Errors
/// Any I/O error; the temp file is removed and `path` keeps its old content.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_unsynced(path, bytes, mode)?;
    sync_dir(parent_dir(path))
}

/// Temp file, fsync, rename: atomic, but not durable until the caller fsyncs the directory (a
/// group commit writes many files, then syncs their directory once).
///
/// # Errors
/// Any I/O error; the temp file is removed and `path` keeps its old content.
pub fn write_unsynced(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:08x}",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Renames `from` to `to` and makes the rename durable.
///
/// # Errors
/// Any I/O error from the rename or the directory fsync.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(parent_dir(to))?;
    if parent_dir(from) != parent_dir(to) {
        sync_dir(parent_dir(from))?;
    }
    Ok(())
}

/// Fsyncs a directory, so that entries created, renamed or removed in it are durable.
///
/// # Errors
/// Any I/O error from opening or syncing the directory.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether `name` is the temp file of an interrupted atomic write: `.<name>.tmp-<pid>-<hex>`.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Removes the temp files that interrupted atomic writes left under `dir` (see
/// [`is_temp_name`]), descending at most `depth` directory levels and leaving alone the names
/// `skip` accepts. Call it only where no other process writes: a worker in its own account
/// directory under its lock, the supervisor before it starts anything. Returns how many went.
///
/// # Errors
/// When `dir` cannot be listed (a missing `dir` is not an error).
pub fn remove_temp_files(
    dir: &Path,
    depth: usize,
    skip: &dyn Fn(&str) -> bool,
) -> io::Result<usize> {
    // One directory open at a time (each holds a getdents buffer): subdirectories are listed
    // first and visited after their parent is closed, so the walk's peak memory stays small.
    let mut pending = vec![(dir.to_path_buf(), depth)];
    let mut removed = 0;
    while let Some((dir, depth)) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut here = 0;
        for entry in entries {
            let entry = entry?;
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() && depth > 0 {
                pending.push((entry.path(), depth - 1));
            } else if kind.is_file() && is_temp_name(&name) && !skip(&name) {
                fs::remove_file(entry.path())?;
                here += 1;
            }
        }
        if here > 0 {
            sync_dir(&dir)?;
        }
        removed += here;
    }
    Ok(removed)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("creds.json");
        write_atomic(&path, b"one", 0o600).expect("first write");
        write_atomic(&path, b"two", 0o600).expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != "creds.json")
            .collect();
        assert!(leftovers.is_empty(), "no temp files left: {leftovers:?}");
    }

    #[test]
    fn removes_temp_files_to_the_depth_asked_and_skips_what_it_is_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).expect("dirs");
        for name in [
            ".creds.json.tmp-12-0000abcd",
            ".account.json.tmp-9-00000001",
            "creds.json",
            ".hidden",
            "a/.x.tmp-1-2",
            "a/b/.y.tmp-1-2",
        ] {
            fs::write(root.join(name), b"x").expect("write");
        }
        let skip = |n: &str| n.starts_with(".account.json.tmp-");
        assert_eq!(remove_temp_files(root, 1, &skip).expect("clean"), 2);
        assert!(!root.join(".creds.json.tmp-12-0000abcd").exists());
        assert!(!root.join("a/.x.tmp-1-2").exists());
        assert!(root.join("a/b/.y.tmp-1-2").exists(), "deeper than asked");
        assert!(
            root.join(".account.json.tmp-9-00000001").exists(),
            "skipped"
        );
        assert!(root.join("creds.json").exists() && root.join(".hidden").exists());
        assert_eq!(
            remove_temp_files(&root.join("none"), 3, &|_| false).expect("missing"),
            0
        );
    }

    #[test]
    fn failed_write_keeps_the_old_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x");
        write_atomic(&path, b"old", 0o600).expect("write");
        let missing = dir.path().join("nope").join("x");
        assert!(write_atomic(&missing, b"new", 0o600).is_err());
        assert_eq!(fs::read(&path).expect("read"), b"old");
    }
}
