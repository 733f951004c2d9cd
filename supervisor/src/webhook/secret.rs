//! The webhook signing secret: `WEBHOOK_SECRET`, else `$SESSIONS/webhook-secret`, else a new one
//! generated and stored there (mode 0600). The log says where it is, never what it is.

use std::fs;
use std::io;
use std::path::Path;

use tracing::info;
use volume::atomic::write_atomic;
use volume::secret::Secret;

/// The file a generated secret is kept in, under `$SESSIONS`.
pub const SECRET_FILE: &str = volume::layout::WEBHOOK_SECRET_FILE;

/// Resolves the secret.
///
/// # Errors
/// When the stored secret cannot be read or a generated one cannot be stored.
pub fn resolve(configured: Option<&Secret<String>>, sessions: &Path) -> io::Result<Secret<String>> {
    if let Some(secret) = configured.filter(|s| !s.expose().trim().is_empty()) {
        return Ok(Secret::new(secret.expose().trim().to_owned()));
    }
    let path = sessions.join(SECRET_FILE);
    match fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret::new(text.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    write_atomic(&path, format!("{secret}\n").as_bytes(), 0o600)?;
    info!(
        path = %path.display(),
        "generated a webhook signing secret (mode 0600); give its content to your receivers, or set WEBHOOK_SECRET"
    );
    Ok(Secret::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_with_mode_0600_then_reuses_and_the_configured_one_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = resolve(None, dir.path()).expect("generate");
        assert_eq!(first.expose().len(), 64);
        let meta = fs::metadata(dir.path().join(SECRET_FILE)).expect("stored");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let again = resolve(None, dir.path()).expect("reuse");
        assert_eq!(first.expose(), again.expose());
        let blank = Secret::new("  ".to_owned());
        assert_eq!(
            resolve(Some(&blank), dir.path()).expect("blank").expose(),
            first.expose()
        );
        let given = Secret::new("given".to_owned());
        assert_eq!(
            resolve(Some(&given), dir.path()).expect("given").expose(),
            "given"
        );
    }
}
