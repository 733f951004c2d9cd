//! Keys sealed at rest (optional): with `SESSIONS_KEY` set, `creds.json` and the Signal key
//! store are written as `MAGIC || nonce || AES-256-GCM(plaintext)`, a fresh random nonce per
//! write, and `<accountId>/<path in the account directory>` as associated data, so a sealed file
//! moved to another account or another name does not open.
//!
//! Reading takes either form: a sealed file needs the key, a plain one is read as it is (a
//! volume being migrated); every write under a key seals. A sealed file that does not open is
//! never "corrupt": the caller stops with [`SealError`] and overwrites nothing.
//!
//! The worker installs its process's sealer once at start ([`install`]); [`read`] and
//! [`write`] then apply it. `supervisor sessions encrypt|decrypt` migrates a stopped volume with
//! an explicit [`Sealer`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;

use crate::atomic::write_atomic;
use crate::secret::Secret;

/// The first bytes of a sealed file.
pub const MAGIC: &[u8; 4] = b"WFS1";
const NONCE_LEN: usize = 12;

/// Why a sealed file could not be opened, or a key not parsed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The file is sealed and no key is set.
    #[error(
        "{file} is sealed (encrypted at rest): set SESSIONS_KEY to the key it was sealed with"
    )]
    NoKey {
        /// The file, relative to the sessions directory.
        file: String,
    },
    /// The key does not open it.
    #[error(
        "{file} does not open with this SESSIONS_KEY: a wrong key, or a file moved from another \
         account or name"
    )]
    WrongKey {
        /// The file, relative to the sessions directory.
        file: String,
    },
    /// `SESSIONS_KEY` is not 32 bytes in hex or base64.
    #[error("SESSIONS_KEY must be 32 bytes, as 64 hex characters or base64")]
    BadKey,
}

impl From<SealError> for io::Error {
    fn from(e: SealError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Whether `e` is a [`SealError`] (a key problem, not the volume's).
pub fn is_seal_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<SealError>())
}

/// A 256-bit key, never printed.
#[derive(Clone, Debug)]
pub struct SessionsKey(Secret<[u8; 32]>);

impl SessionsKey {
    /// Parses 64 hex characters or base64 (padded or not) of 32 bytes.
    ///
    /// # Errors
    /// [`SealError::BadKey`].
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| SealError::BadKey)?
        } else {
            STANDARD
                .decode(text)
                .or_else(|_| STANDARD_NO_PAD.decode(text))
                .map_err(|_| SealError::BadKey)?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(SessionsKey(Secret::new(key)))
    }
}

/// Seals and opens the files under one sessions directory.
#[derive(Clone, Debug)]
pub struct Sealer {
    sessions: PathBuf,
    key: Option<SessionsKey>,
}

impl Sealer {
    /// A sealer for files under `sessions`; `None` writes plain files.
    pub fn new(sessions: &Path, key: Option<SessionsKey>) -> Self {
        Sealer {
            sessions: sessions.to_owned(),
            key,
        }
    }

    /// Whether writes seal.
    pub fn seals(&self) -> bool {
        self.key.is_some()
    }

    /// `path` relative to the sessions directory: `<accountId>/<name>`, the associated data.
    fn label(&self, path: &Path) -> String {
        path.strip_prefix(&self.sessions)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// What to write for `plaintext` at `path`: sealed under a key, else as it is.
    pub fn seal(&self, path: &Path, plaintext: &[u8]) -> Vec<u8> {
        let Some(key) = &self.key else {
            return plaintext.to_vec();
        };
        let nonce: [u8; NONCE_LEN] = rand::random();
        let cipher = Aes256Gcm::new(&(*key.0.expose()).into());
        let label = self.label(path);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: label.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of `bytes` read from `path`: opened when sealed, as it is when not.
    ///
    /// # Errors
    /// [`SealError::NoKey`] or [`SealError::WrongKey`] for a sealed file that does not open.
    pub fn open(&self, path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, SealError> {
        let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return Ok(bytes);
        };
        let file = self.label(path);
        let Some(key) = &self.key else {
            return Err(SealError::NoKey { file });
        };
        if rest.len() < NONCE_LEN {
            return Err(SealError::WrongKey { file });
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        Aes256Gcm::new(&(*key.0.expose()).into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: file.as_bytes(),
                },
            )
            .map_err(|_| SealError::WrongKey { file })
    }

    /// Reads `path` and opens it; `None` when there is no such file.
    ///
    /// # Errors
    /// The I/O error, or a [`SealError`] wrapped as [`io::ErrorKind::InvalidData`].
    pub fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(self.open(path, bytes)?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Seals `plaintext` and writes it to `path` atomically with `mode`.
    ///
    /// # Errors
    /// The I/O error; the old file is then intact.
    pub fn write(&self, path: &Path, plaintext: &[u8], mode: u32) -> io::Result<()> {
        write_atomic(path, &self.seal(path, plaintext), mode)
    }
}

static PROCESS: OnceLock<Sealer> = OnceLock::new();

/// Installs this process's sealer (the worker does, once, at start). Later calls are ignored.
pub fn install(sealer: Sealer) {
    let _ = PROCESS.set(sealer);
}

/// [`Sealer::read`] with this process's sealer; a process without one reads plain files and
/// refuses sealed ones.
///
/// # Errors
/// As [`Sealer::read`].
pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match PROCESS.get() {
        Some(sealer) => sealer.read(path),
        None => Sealer::new(Path::new(""), None).read(path),
    }
}

/// [`Sealer::write`] with this process's sealer; a process without one writes plain files.
///
/// # Errors
/// As [`Sealer::write`].
pub fn write(path: &Path, plaintext: &[u8], mode: u32) -> io::Result<()> {
    match PROCESS.get() {
        Some(sealer) => sealer.write(path, plaintext, mode),
        None => write_atomic(path, plaintext, mode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> SessionsKey {
        SessionsKey::parse(HEX).expect("hex key")
    }

    #[test]
    fn parses_hex_and_base64_and_refuses_the_rest() {
        let b64 = STANDARD.encode((0u8..32).collect::<Vec<_>>());
        assert_eq!(
            SessionsKey::parse(&b64).expect("base64").0.expose(),
            key().0.expose()
        );
        let unpadded = b64.trim_end_matches('=').to_owned();
        assert!(SessionsKey::parse(&unpadded).is_ok());
        for bad in [
            "",
            "abcd",
            &HEX[..62],
            &"zz".repeat(32),
            &STANDARD.encode([1u8; 31]),
        ] {
            assert!(SessionsKey::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{:?}", key()).contains("0a0b"), "never printed");
    }

    #[test]
    fn seals_with_a_fresh_nonce_and_opens_only_with_the_key_and_the_same_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sealer = Sealer::new(dir.path(), Some(key()));
        let path = dir.path().join("shop/creds.json");
        let a = sealer.seal(&path, b"secret keys");
        let b = sealer.seal(&path, b"secret keys");
        assert!(a.starts_with(MAGIC) && a != b, "a fresh nonce per write");
        assert!(!a.windows(6).any(|w| w == b"secret"), "no plaintext");
        assert_eq!(
            sealer.open(&path, a.clone()).expect("opens"),
            b"secret keys"
        );
        let elsewhere = dir.path().join("other/creds.json");
        assert!(matches!(
            sealer.open(&elsewhere, a.clone()),
            Err(SealError::WrongKey { .. })
        ));
        let other_key = Sealer::new(dir.path(), Some(SessionsKey(Secret::new([9; 32]))));
        assert!(matches!(
            other_key.open(&path, a.clone()),
            Err(SealError::WrongKey { .. })
        ));
        let no_key = Sealer::new(dir.path(), None);
        let e = no_key.open(&path, a).expect_err("needs the key");
        assert!(
            e.to_string().contains("shop/creds.json") && e.to_string().contains("SESSIONS_KEY")
        );
        // Plain files read under a key (a volume being migrated).
        assert_eq!(sealer.open(&path, b"{}".to_vec()).expect("plain"), b"{}");
    }

    #[test]
    fn writes_and_reads_through_the_file_system() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("shop")).expect("account");
        let sealer = Sealer::new(dir.path(), Some(key()));
        let path = dir.path().join("shop/x");
        sealer.write(&path, b"payload", 0o600).expect("write");
        assert!(fs::read(&path).expect("raw").starts_with(MAGIC));
        assert_eq!(
            sealer.read(&path).expect("read").as_deref(),
            Some(&b"payload"[..])
        );
        assert_eq!(
            sealer.read(&dir.path().join("shop/none")).expect("none"),
            None
        );
        let e = Sealer::new(dir.path(), None)
            .read(&path)
            .expect_err("no key");
        assert!(is_seal_error(&e));
    }
}
