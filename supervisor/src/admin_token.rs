//! The admin token: `ADMIN_TOKEN`, else `$SESSIONS/admin-token`, else a new one generated,
//! stored (mode 0600) and printed once.

use std::fs;
use std::io;
use std::path::Path;

use volume::atomic::write_atomic;
use volume::secret::Secret;

use crate::error::{Error, Result};

const TOKEN_FILE: &str = volume::layout::ADMIN_TOKEN_FILE;

/// Resolves the admin token.
///
/// # Errors
/// [`Error::AdminToken`] when a generated token cannot be stored.
pub fn resolve(configured: Option<&str>, sessions: &Path) -> Result<Secret<String>> {
    if let Some(token) = configured.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(Secret::new(token.to_owned()));
    }
    let path = sessions.join(TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret::new(text.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(Error::AdminToken { path, source }),
    }
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    write_atomic(&path, format!("{token}\n").as_bytes(), 0o600).map_err(|source| {
        Error::AdminToken {
            path: path.clone(),
            source,
        }
    })?;
    // Printed once, on the boot that generated it, and never through the logger.
    eprintln!(
        "wafleet: generated an admin token and stored it in {} (mode 0600): {token}",
        path.display()
    );
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = resolve(None, dir.path()).expect("generate");
        assert_eq!(first.expose().len(), 64);
        let mode = fs::metadata(dir.path().join(TOKEN_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = resolve(None, dir.path()).expect("reuse");
        assert_eq!(first.expose(), again.expose());
        let configured = resolve(Some("given"), dir.path()).expect("configured");
        assert_eq!(configured.expose(), "given");
    }
}
