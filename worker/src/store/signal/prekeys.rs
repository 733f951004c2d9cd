//! One-time prekeys (wa-messaging.md §9.1, §3.6 step 6).
//!
//! A generation writes one batch file holding every new key (one fsync for 812 keys, not 812),
//! named `<min id>-<max id>-<n>` in hex so that a lookup reads only the batch whose range holds
//! the id. Removing a key rewrites its batch without it; the last removal deletes the file. The
//! next id lives in `next-id` and is advanced *before* the batch is written: a crash in between
//! skips ids, never reuses them. Ids are 24 bits, 1 to 16777215, then 1 again; an id still held
//! by a stored key is skipped, so no id is reused while the server may hand it out.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::super::creds::{KeyPair, PreKey};
use super::super::secret::{Bytes, Secret};
use super::{record, KeyStore, KeyStoreError, Kind, Result};

/// The folder under `signal/`.
const PREKEYS_DIR: &str = "prekeys";
/// The counter file in it.
const NEXT_ID_FILE: &str = "next-id";
/// The highest one-time prekey id (24 bits); the next one is [`FIRST_PREKEY_ID`].
pub const MAX_PREKEY_ID: u32 = 0x00FF_FFFF;
/// The first id ever handed out.
pub const FIRST_PREKEY_ID: u32 = 1;
/// One stored key: id, public, private.
const RECORD_LEN: usize = 4 + 32 + 32;

/// The public half of a one-time prekey, as uploaded.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct PreKeyPublic {
    /// Its id (24 bits on the wire).
    pub id: u32,
    /// Its X25519 public key.
    pub public: [u8; 32],
}

impl KeyStore {
    /// Generates `count` one-time prekeys and makes them durable before returning, so the
    /// caller may upload them at once. Ids continue from the stored counter.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`] or [`KeyStoreError::Corrupt`] from the counter or an existing
    /// batch; [`KeyStoreError::PreKeyIdsExhausted`] when no free id is left. Nothing returned
    /// is then stored (ids may have been skipped).
    pub fn generate_prekeys(&self, count: u32) -> Result<Vec<PreKeyPublic>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let dir = self.dir(PREKEYS_DIR, Kind::PreKeys)?;
        let taken = live_ids(&dir)?;
        let mut id = self.next_prekey_id()?;
        let mut ids = Vec::with_capacity(count.min(1024) as usize);
        let mut tried = 0;
        while ids.len() < count as usize {
            if tried == MAX_PREKEY_ID {
                return Err(KeyStoreError::PreKeyIdsExhausted);
            }
            tried += 1;
            if !taken.contains(&id) {
                ids.push(id);
            }
            id = id_after(id);
        }
        drop(taken);
        write_counter(&dir, id)?;
        // The private keys go straight into the file's buffer; only the publics are returned.
        let mut fresh = Vec::with_capacity(ids.len());
        let path = fresh_batch_path(&dir, &ids);
        record::write_with(&path, Kind::PreKeys, ids.len() * RECORD_LEN, |buf| {
            for id in ids {
                let pair = KeyPair::generate();
                put_key(buf, id, &pair);
                fresh.push(PreKeyPublic {
                    id,
                    public: pair.public.0,
                });
            }
        })?;
        Ok(fresh)
    }

    /// The stored one-time prekey `id`, read from disk.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`], or [`KeyStoreError::Corrupt`] for the batch that should hold it.
    pub fn prekey(&self, id: u32) -> Result<Option<KeyPair>> {
        let dir = self.root.join(PREKEYS_DIR);
        for file in batches_holding(&dir, id)? {
            if let Some(key) = read_batch(&dir.join(file))?
                .into_iter()
                .find(|k| k.id == id)
            {
                return Ok(Some(key.key_pair));
            }
        }
        Ok(None)
    }

    /// Forgets one-time prekey `id`, durably; `false` when it was not stored.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`] or [`KeyStoreError::Corrupt`]; the key is then still stored.
    pub fn remove_prekey(&self, id: u32) -> Result<bool> {
        let dir = self.root.join(PREKEYS_DIR);
        for file in batches_holding(&dir, id)? {
            let path = dir.join(&file);
            let mut keys = read_batch(&path)?;
            let before = keys.len();
            keys.retain(|k| k.id != id);
            if keys.len() == before {
                continue;
            }
            if keys.is_empty() {
                record::remove(&path, Kind::PreKeys)?;
            } else {
                write_batch_to(&path, &keys)?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether any one-time prekey is stored (the server then has had an upload from us).
    ///
    /// # Errors
    /// [`KeyStoreError::Io`] when the folder cannot be listed.
    pub fn has_prekeys(&self) -> Result<bool> {
        let dir = self.root.join(PREKEYS_DIR);
        Ok(record::list(&dir, Kind::PreKeys)?
            .iter()
            .any(|f| batch_range(f).is_some()))
    }

    /// The id the next generated one-time prekey gets (if it is free).
    ///
    /// # Errors
    /// [`KeyStoreError::Io`] or [`KeyStoreError::Corrupt`] for the counter file.
    pub fn next_prekey_id(&self) -> Result<u32> {
        let path = self.root.join(PREKEYS_DIR).join(NEXT_ID_FILE);
        let next = record::read_with(&path, Kind::PreKeyCounter, |p| {
            let raw: [u8; 4] = p.try_into().map_err(|_| "not a counter")?;
            let id = u32::from_be_bytes(raw);
            if (FIRST_PREKEY_ID..=MAX_PREKEY_ID).contains(&id) {
                Ok(id)
            } else {
                Err("counter out of range")
            }
        })?;
        Ok(next.unwrap_or(FIRST_PREKEY_ID))
    }

    /// Takes over the one-time prekeys and counter a v1 `creds.json` carried (or an imported
    /// Baileys folder held). Idempotent, so a crash before `creds.json` is rewritten only
    /// repeats it: the batch is overwritten with the same keys, and a counter already stored is
    /// kept.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`] or [`KeyStoreError::Corrupt`].
    pub fn import_legacy_prekeys(&self, keys: &[PreKey], next_id: u32) -> Result<()> {
        let dir = self.dir(PREKEYS_DIR, Kind::PreKeys)?;
        let counter = dir.join(NEXT_ID_FILE);
        if record::read(&counter, Kind::PreKeyCounter)?.is_none() {
            let next = if (FIRST_PREKEY_ID..=MAX_PREKEY_ID).contains(&next_id) {
                next_id
            } else {
                FIRST_PREKEY_ID
            };
            write_counter(&dir, next)?;
        }
        let keys: Vec<PreKey> = keys
            .iter()
            .filter(|k| k.id <= MAX_PREKEY_ID)
            .cloned()
            .collect();
        if !keys.is_empty() {
            // Suffix 0 every time, so a repeated import replaces its own earlier batch.
            let (min, max) = id_range(keys.iter().map(|k| k.id));
            write_batch_to(&dir.join(format!("{min:06x}-{max:06x}-0")), &keys)?;
        }
        Ok(())
    }
}

/// The id after `id`: 16777215 wraps to 1.
fn id_after(id: u32) -> u32 {
    if id >= MAX_PREKEY_ID {
        FIRST_PREKEY_ID
    } else {
        id + 1
    }
}

fn write_counter(dir: &Path, next: u32) -> Result<()> {
    record::write(
        &dir.join(NEXT_ID_FILE),
        Kind::PreKeyCounter,
        &next.to_be_bytes(),
    )
}

/// `<min>-<max>-<n>` for a batch holding `ids`, with the smallest `n` no file has.
fn fresh_batch_path(dir: &Path, ids: &[u32]) -> PathBuf {
    let (min, max) = id_range(ids.iter().copied());
    let mut n = 0u32;
    let mut path = dir.join(format!("{min:06x}-{max:06x}-{n}"));
    while path.exists() {
        n += 1;
        path = dir.join(format!("{min:06x}-{max:06x}-{n}"));
    }
    path
}

fn id_range(ids: impl Iterator<Item = u32> + Clone) -> (u32, u32) {
    (ids.clone().min().unwrap_or(0), ids.max().unwrap_or(0))
}

fn put_key(buf: &mut Vec<u8>, id: u32, pair: &KeyPair) {
    buf.extend_from_slice(&id.to_be_bytes());
    buf.extend_from_slice(&pair.public.0);
    buf.extend_from_slice(&pair.private.expose().0);
}

fn write_batch_to(path: &Path, keys: &[PreKey]) -> Result<()> {
    record::write_with(path, Kind::PreKeys, keys.len() * RECORD_LEN, |buf| {
        for key in keys {
            put_key(buf, key.id, &key.key_pair);
        }
    })
}

fn read_batch(path: &Path) -> Result<Vec<PreKey>> {
    let keys = record::read_with(path, Kind::PreKeys, |payload| {
        if payload.len() % RECORD_LEN != 0 {
            return Err("batch length is not a whole number of keys");
        }
        payload
            .chunks_exact(RECORD_LEN)
            .map(|r| {
                let (id, rest) = r.split_at(4);
                let (public, private) = rest.split_at(32);
                let id = u32::from_be_bytes(id.try_into().map_err(|_| "bad id")?);
                if id > MAX_PREKEY_ID {
                    return Err("prekey id out of range");
                }
                Ok(PreKey {
                    id,
                    key_pair: KeyPair {
                        public: Bytes(public.try_into().map_err(|_| "bad public key")?),
                        private: Secret::new(Bytes(
                            private.try_into().map_err(|_| "bad private key")?,
                        )),
                    },
                })
            })
            .collect()
    })?;
    Ok(keys.unwrap_or_default())
}

/// The batch files whose id range holds `id`.
fn batches_holding(dir: &Path, id: u32) -> Result<Vec<String>> {
    Ok(record::list(dir, Kind::PreKeys)?
        .into_iter()
        .filter(|f| batch_range(f).is_some_and(|(min, max)| (min..=max).contains(&id)))
        .collect())
}

/// Every id held by a stored key.
fn live_ids(dir: &Path) -> Result<HashSet<u32>> {
    let mut ids = HashSet::new();
    for file in record::list(dir, Kind::PreKeys)? {
        if batch_range(&file).is_some() {
            ids.extend(read_batch(&dir.join(file))?.iter().map(|k| k.id));
        }
    }
    Ok(ids)
}

/// `(min, max)` of a batch file name `<6 hex>-<6 hex>-<n>`; `None` for any other file.
fn batch_range(file: &str) -> Option<(u32, u32)> {
    let mut parts = file.split('-');
    let (min, max, n) = (parts.next()?, parts.next()?, parts.next()?);
    let hex6 = |s: &str| {
        (s.len() == 6 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
    };
    let numeric = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || !numeric {
        return None;
    }
    Some((hex6(min)?, hex6(max)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn store() -> (tempfile::TempDir, KeyStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        (dir, keys)
    }

    #[test]
    fn a_generation_is_durable_and_every_key_loads_after_reopening() {
        let (dir, keys) = store();
        assert!(!keys.has_prekeys().expect("empty"));
        let fresh = keys.generate_prekeys(812).expect("generate");
        assert_eq!(fresh.len(), 812);
        assert_eq!(fresh.first().map(|k| k.id), Some(1));
        assert_eq!(fresh.last().map(|k| k.id), Some(812));
        let files: Vec<_> =
            record::list(&dir.path().join("signal/prekeys"), Kind::PreKeys).expect("list");
        assert_eq!(files.len(), 2, "one batch and the counter: {files:?}");
        let reopened = KeyStore::new(dir.path());
        assert!(reopened.has_prekeys().expect("stocked"));
        assert_eq!(reopened.next_prekey_id().expect("counter"), 813);
        for key in [&fresh[0], &fresh[400], &fresh[811]] {
            let pair = reopened.prekey(key.id).expect("read").expect("stored");
            assert_eq!(pair.public.0, key.public);
            let derived = crate::wa::xeddsa::public_key(&pair.private.expose().0);
            assert_eq!(derived, key.public, "the private half matches");
        }
        assert!(reopened.prekey(813).expect("read").is_none());
        let second = reopened.generate_prekeys(50).expect("generate");
        assert_eq!(second.first().map(|k| k.id), Some(813));
        assert!(reopened.prekey(862).expect("read").is_some());
    }

    #[test]
    fn removal_forgets_one_key_and_the_last_removal_deletes_the_batch() {
        let (dir, keys) = store();
        let fresh = keys.generate_prekeys(3).expect("generate");
        assert!(keys.remove_prekey(fresh[1].id).expect("remove"));
        assert!(!keys.remove_prekey(fresh[1].id).expect("already gone"));
        assert!(keys.prekey(fresh[1].id).expect("read").is_none());
        assert!(keys.prekey(fresh[0].id).expect("read").is_some());
        assert!(keys.prekey(fresh[2].id).expect("read").is_some());
        keys.remove_prekey(fresh[0].id).expect("remove");
        keys.remove_prekey(fresh[2].id).expect("remove");
        assert!(!keys.has_prekeys().expect("list"));
        let left: Vec<_> = fs::read_dir(dir.path().join("signal/prekeys"))
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["next-id"], "only the counter stays");
        assert_eq!(
            keys.next_prekey_id().expect("counter"),
            4,
            "ids are not reused"
        );
    }

    #[test]
    fn ids_wrap_from_16777215_to_1_and_skip_ids_still_held() {
        let (dir, keys) = store();
        let held = keys.generate_prekeys(2).expect("ids 1 and 2");
        assert_eq!(held.iter().map(|k| k.id).collect::<Vec<_>>(), [1, 2]);
        write_counter(&dir.path().join("signal/prekeys"), MAX_PREKEY_ID - 1).expect("counter");
        let wrapped = keys.generate_prekeys(4).expect("generate");
        assert_eq!(
            wrapped.iter().map(|k| k.id).collect::<Vec<_>>(),
            [MAX_PREKEY_ID - 1, MAX_PREKEY_ID, 3, 4],
            "1 and 2 are still held"
        );
        assert_eq!(keys.next_prekey_id().expect("counter"), 5);
        for key in held.iter().chain(&wrapped) {
            let pair = keys.prekey(key.id).expect("read").expect("stored");
            assert_eq!(pair.public.0, key.public);
        }
    }

    #[test]
    fn a_corrupt_batch_is_an_error_then_kept_aside() {
        let (dir, keys) = store();
        let fresh = keys.generate_prekeys(2).expect("generate");
        let batch = dir.path().join("signal/prekeys/000001-000002-0");
        let mut bytes = fs::read(&batch).expect("batch");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        fs::write(&batch, &bytes).expect("damage");
        assert!(matches!(
            keys.prekey(fresh[0].id),
            Err(KeyStoreError::Corrupt {
                kind: Kind::PreKeys,
                ..
            })
        ));
        assert!(!batch.exists());
        let kept = record::list(&dir.path().join("signal/prekeys"), Kind::PreKeys)
            .expect("list")
            .into_iter()
            .filter(|f| f.starts_with("000001-000002-0.corrupt-"))
            .count();
        assert_eq!(kept, 1, "kept aside, not deleted");
        assert!(keys.prekey(fresh[0].id).expect("read").is_none());
    }

    #[test]
    fn a_counter_out_of_range_is_corrupt() {
        let (dir, keys) = store();
        keys.generate_prekeys(1).expect("generate");
        let prekeys = dir.path().join("signal/prekeys");
        record::write(
            &prekeys.join(NEXT_ID_FILE),
            Kind::PreKeyCounter,
            &0u32.to_be_bytes(),
        )
        .expect("write");
        assert!(matches!(
            keys.generate_prekeys(1),
            Err(KeyStoreError::Corrupt {
                kind: Kind::PreKeyCounter,
                ..
            })
        ));
    }

    #[test]
    fn batch_names_parse_strictly() {
        assert_eq!(batch_range("000001-00032c-0"), Some((1, 812)));
        assert_eq!(batch_range("000001-00032c-12"), Some((1, 812)));
        for other in [
            "next-id",
            "000001-00032c-0.corrupt-1",
            ".000001-00032c-0.tmp-1-2",
            "000001-00032C-0",
            "1-2-0",
        ] {
            assert_eq!(batch_range(other), None, "{other}");
        }
    }
}
