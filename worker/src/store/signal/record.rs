//! One record file: `MAGIC || payload || SHA-256(MAGIC || payload)[..16]`.
//!
//! The frame lets a reader tell a torn or rotten file from a valid one even though the payloads
//! (session and sender-key records) are opaque bytes serialized by the Signal module. A file
//! that fails the check is renamed `<file>.corrupt-<ts>` and reported, never deleted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::super::atomic::{rename_durable, sync_dir};
use super::{KeyStoreError, Kind, Result, FILE_MODE};

/// Version 1 of the frame.
const MAGIC: &[u8; 4] = b"WFK1";
/// Bytes of the SHA-256 kept as the check.
const CHECK_LEN: usize = 16;

/// Reads the payload of `path`; `None` when there is no such file.
///
/// # Errors
/// [`KeyStoreError::Io`] when the file cannot be read; [`KeyStoreError::Corrupt`] (after
/// moving it aside) when it fails the frame check.
pub(super) fn read(path: &Path, kind: Kind) -> Result<Option<Vec<u8>>> {
    let bytes = match volume::seal::read(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e) if volume::seal::is_seal_error(&e) => {
            return Err(KeyStoreError::Sealed {
                kind,
                problem: e.to_string(),
            })
        }
        Err(source) => return Err(KeyStoreError::Io { kind, source }),
    };
    match unframe(bytes) {
        Ok(payload) => Ok(Some(payload)),
        Err(problem) => Err(corrupt(path, kind, problem)),
    }
}

/// Reads and parses `path`; a payload `parse` refuses is corrupt like a bad frame.
///
/// # Errors
/// As [`read`].
pub(super) fn read_with<T>(
    path: &Path,
    kind: Kind,
    parse: impl FnOnce(&[u8]) -> std::result::Result<T, &'static str>,
) -> Result<Option<T>> {
    let Some(payload) = read(path, kind)? else {
        return Ok(None);
    };
    match parse(&payload) {
        Ok(value) => Ok(Some(value)),
        Err(problem) => Err(corrupt(path, kind, problem)),
    }
}

/// Replaces `path` with a framed `payload`, durably, mode 0600.
///
/// # Errors
/// [`KeyStoreError::Io`]; the old file is then intact.
pub(super) fn write(path: &Path, kind: Kind, payload: &[u8]) -> Result<()> {
    write_with(path, kind, payload.len(), |buf| {
        buf.extend_from_slice(payload)
    })
}

/// Like [`write`], with the payload appended by `fill` straight into the one buffer that is
/// written (`len` bytes expected): a large payload is never held twice.
///
/// # Errors
/// [`KeyStoreError::Io`]; the old file is then intact.
pub(super) fn write_with(
    path: &Path,
    kind: Kind,
    len: usize,
    fill: impl FnOnce(&mut Vec<u8>),
) -> Result<()> {
    let mut framed = Vec::with_capacity(MAGIC.len() + len + CHECK_LEN);
    framed.extend_from_slice(MAGIC);
    fill(&mut framed);
    let check = Sha256::digest(&framed);
    framed.extend_from_slice(&check[..CHECK_LEN]);
    volume::seal::write(path, &framed, FILE_MODE)
        .map_err(|source| KeyStoreError::Io { kind, source })
}

/// Removes `path` durably; `false` when it was not there.
///
/// # Errors
/// [`KeyStoreError::Io`] when the unlink or the folder fsync fails.
pub(super) fn remove(path: &Path, kind: Kind) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(KeyStoreError::Io { kind, source }),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    sync_dir(dir).map_err(|source| KeyStoreError::Io { kind, source })?;
    Ok(true)
}

/// The file names in `dir` (none when it does not exist), skipping anything not UTF-8.
///
/// # Errors
/// [`KeyStoreError::Io`] when the folder cannot be listed.
pub(super) fn list(dir: &Path, kind: Kind) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(KeyStoreError::Io { kind, source }),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| KeyStoreError::Io { kind, source })?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

fn unframe(mut bytes: Vec<u8>) -> std::result::Result<Vec<u8>, &'static str> {
    if bytes.len() < MAGIC.len() + CHECK_LEN {
        return Err("truncated");
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err("unknown format");
    }
    let body_len = bytes.len() - CHECK_LEN;
    let check = Sha256::digest(&bytes[..body_len]);
    if check[..CHECK_LEN] != bytes[body_len..] {
        return Err("checksum mismatch");
    }
    bytes.truncate(body_len);
    bytes.drain(..MAGIC.len());
    Ok(bytes)
}

/// Moves a bad file aside and builds the error that says where it went.
fn corrupt(path: &Path, kind: Kind, problem: &'static str) -> KeyStoreError {
    let ts = ipc_protocol::UnixMillis::now().0;
    let mut kept_as = PathBuf::from(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    kept_as.set_file_name(format!("{name}.corrupt-{ts}"));
    match rename_durable(path, &kept_as) {
        Ok(()) => KeyStoreError::Corrupt {
            kind,
            problem,
            kept_as,
        },
        Err(source) => KeyStoreError::Io { kind, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn payloads_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r");
        assert_eq!(read(&path, Kind::Session).expect("missing"), None);
        write(&path, Kind::Session, b"opaque").expect("write");
        assert_eq!(
            read(&path, Kind::Session).expect("read").as_deref(),
            Some(&b"opaque"[..])
        );
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(remove(&path, Kind::Session).expect("remove"));
        assert!(!remove(&path, Kind::Session).expect("gone"));
    }

    #[test]
    fn a_flipped_bit_is_reported_and_the_file_kept_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r");
        write(&path, Kind::SenderKey, b"opaque").expect("write");
        let mut bytes = fs::read(&path).expect("read");
        bytes[5] ^= 1;
        fs::write(&path, &bytes).expect("damage");
        let Err(KeyStoreError::Corrupt {
            kind,
            problem,
            kept_as,
        }) = read(&path, Kind::SenderKey)
        else {
            panic!("must be corrupt");
        };
        assert_eq!((kind, problem), (Kind::SenderKey, "checksum mismatch"));
        assert_eq!(fs::read(&kept_as).expect("kept"), bytes);
        assert!(kept_as
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("r.corrupt-")));
        assert_eq!(read(&path, Kind::SenderKey).expect("now missing"), None);
    }

    #[test]
    fn truncated_and_foreign_files_are_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (bytes, problem) in [
            (&b"WFK1"[..], "truncated"),
            (&[0u8; 40][..], "unknown format"),
        ] {
            let path = dir.path().join("r");
            fs::write(&path, bytes).expect("write");
            assert!(matches!(
                read(&path, Kind::Identity),
                Err(KeyStoreError::Corrupt { problem: p, .. }) if p == problem
            ));
        }
    }
}
