//! Previous signed prekeys (wa-messaging.md §9.2): the current one lives in `creds.json`; when
//! it is rotated out it is kept here by id, so a pkmsg built on an older bundle still decrypts.
//! The newest `PREVIOUS_SIGNED_PREKEYS` retired keys are kept, older ones are dropped.

use serde::{Deserialize, Serialize};

use super::super::creds::SignedPreKey;
use super::{record, KeyStore, Kind, Result};

/// The folder under `signal/`.
const SIGNED_DIR: &str = "signed-prekeys";
/// How many retired signed prekeys are kept (whatsapp-rust keeps the current plus two).
pub const PREVIOUS_SIGNED_PREKEYS: usize = 2;

/// A retired signed prekey and when it was retired.
#[derive(Deserialize, Serialize)]
struct Retired {
    retired_at: u64,
    key: SignedPreKey,
}

impl KeyStore {
    /// Keeps `old` (the signed prekey being replaced) and drops all but the newest
    /// `PREVIOUS_SIGNED_PREKEYS` retired ones. Call it before the new one is saved.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`](super::KeyStoreError::Io) when a file cannot be written or removed.
    pub fn retire_signed_prekey(&self, old: &SignedPreKey) -> Result<()> {
        let dir = self.dir(SIGNED_DIR, Kind::SignedPreKey)?;
        let retired = Retired {
            retired_at: ipc_protocol::UnixMillis::now().0,
            key: old.clone(),
        };
        let payload = serde_json::to_vec(&retired).map_err(|e| super::KeyStoreError::Io {
            kind: Kind::SignedPreKey,
            source: std::io::Error::other(e),
        })?;
        record::write(
            &dir.join(file_name(old.key_id)),
            Kind::SignedPreKey,
            &payload,
        )?;
        let mut kept = Vec::new();
        for file in record::list(&dir, Kind::SignedPreKey)? {
            if let Some(id) = id_of(&file) {
                // A corrupt entry is kept aside by the read and simply no longer counts.
                if let Ok(Some(r)) = read(&dir.join(&file)) {
                    kept.push((r.retired_at, id, file));
                }
            }
        }
        kept.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        for (_, _, file) in kept.into_iter().skip(PREVIOUS_SIGNED_PREKEYS) {
            record::remove(&dir.join(file), Kind::SignedPreKey)?;
        }
        Ok(())
    }

    /// The signed prekey `id`: `current` when it has that id, else a retired one.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`](super::KeyStoreError::Io) or
    /// [`KeyStoreError::Corrupt`](super::KeyStoreError::Corrupt) for the retired key's file.
    pub fn signed_prekey(&self, current: &SignedPreKey, id: u32) -> Result<Option<SignedPreKey>> {
        if current.key_id == id {
            return Ok(Some(current.clone()));
        }
        let path = self.root.join(SIGNED_DIR).join(file_name(id));
        Ok(read(&path)?.map(|r| r.key).filter(|k| k.key_id == id))
    }
}

fn file_name(id: u32) -> String {
    format!("{id:06x}")
}

fn id_of(file: &str) -> Option<u32> {
    (file.len() == 6 && file.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| u32::from_str_radix(file, 16).ok())
        .flatten()
}

fn read(path: &std::path::Path) -> Result<Option<Retired>> {
    record::read_with(path, Kind::SignedPreKey, |p| {
        serde_json::from_slice(p).map_err(|_| "not a signed prekey")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::creds::Creds;

    fn signed(id: u32) -> SignedPreKey {
        let mut key = Creds::generate().signed_prekey;
        key.key_id = id;
        key
    }

    #[test]
    fn looks_in_the_current_key_then_the_retired_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let (one, two) = (signed(1), signed(2));
        assert_eq!(
            keys.signed_prekey(&two, 2).expect("current"),
            Some(two.clone())
        );
        assert_eq!(keys.signed_prekey(&two, 1).expect("nothing retired"), None);
        keys.retire_signed_prekey(&one).expect("retire");
        assert_eq!(keys.signed_prekey(&two, 1).expect("history"), Some(one));
        assert_eq!(keys.signed_prekey(&two, 3).expect("unknown"), None);
    }

    #[test]
    fn keeps_only_the_newest_retired_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let current = signed(10);
        for id in 1..=4 {
            keys.retire_signed_prekey(&signed(id)).expect("retire");
        }
        let found: Vec<u32> = (1..=4)
            .filter(|id| keys.signed_prekey(&current, *id).expect("read").is_some())
            .collect();
        assert_eq!(found, [3, 4]);
    }
}
