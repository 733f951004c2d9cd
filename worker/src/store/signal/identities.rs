//! Contact identity keys, one 32-byte file per address (wa-messaging.md §3.8: trust on first
//! use, replaced when a pkmsg carries a new one).

use super::{name, record, Address, KeyStore, KeyStoreError, Kind, Result};

/// The folder under `signal/`.
const IDENTITIES_DIR: &str = "identities";

impl KeyStore {
    /// The identity key stored for `addr`.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`], or
    /// [`KeyStoreError::Corrupt`] when the file is not a key.
    pub fn identity(&self, addr: &Address) -> Result<Option<[u8; 32]>> {
        record::read_with(&self.identity_path(addr)?, Kind::Identity, |p| {
            p.try_into().map_err(|_| "not a 32-byte key")
        })
    }

    /// Stores `key` as the identity of `addr` (latest wins), durably; nothing is written
    /// when it is already the stored one. A corrupt old file is kept aside and replaced.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`].
    pub fn store_identity(&self, addr: &Address, key: &[u8; 32]) -> Result<()> {
        match self.identity(addr) {
            Ok(Some(stored)) if stored == *key => return Ok(()),
            Ok(_) | Err(KeyStoreError::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
        let dir = self.dir(IDENTITIES_DIR, Kind::Identity)?;
        record::write(&dir.join(identity_file(addr)?), Kind::Identity, key)
    }

    /// Forgets the identity of `addr` (§9.4); `false` when none was stored.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`].
    pub fn delete_identity(&self, addr: &Address) -> Result<bool> {
        record::remove(&self.identity_path(addr)?, Kind::Identity)
    }

    fn identity_path(&self, addr: &Address) -> Result<std::path::PathBuf> {
        Ok(self.root.join(IDENTITIES_DIR).join(identity_file(addr)?))
    }
}

fn identity_file(addr: &Address) -> Result<String> {
    name::bounded(addr.file_name(), Kind::Identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn identities_are_stored_replaced_and_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let a = Address::new("15551234567", 0).expect("address");
        assert_eq!(keys.identity(&a).expect("read"), None);
        keys.store_identity(&a, &[1; 32]).expect("store");
        let path = dir.path().join("signal/identities/15551234567.0");
        let inode = std::fs::metadata(&path).expect("meta").ino();
        keys.store_identity(&a, &[1; 32]).expect("same key");
        assert_eq!(
            std::fs::metadata(&path).expect("meta").ino(),
            inode,
            "the same key is not rewritten"
        );
        keys.store_identity(&a, &[2; 32]).expect("replace");
        assert_eq!(
            KeyStore::new(dir.path()).identity(&a).expect("read"),
            Some([2; 32])
        );
        assert!(keys.delete_identity(&a).expect("delete"));
        assert_eq!(keys.identity(&a).expect("read"), None);
    }

    #[test]
    fn a_record_of_the_wrong_length_is_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let a = Address::new("15551234567", 0).expect("address");
        keys.store_identity(&a, &[1; 32]).expect("store");
        let path = dir.path().join("signal/identities/15551234567.0");
        record::write(&path, Kind::Identity, &[1; 31]).expect("write");
        assert!(matches!(
            keys.identity(&a),
            Err(KeyStoreError::Corrupt {
                kind: Kind::Identity,
                ..
            })
        ));
    }

    #[test]
    fn storing_over_a_corrupt_file_keeps_it_aside_and_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let a = Address::new("15551234567", 0).expect("address");
        keys.store_identity(&a, &[1; 32]).expect("store");
        let folder = dir.path().join("signal/identities");
        std::fs::write(folder.join("15551234567.0"), b"garbage").expect("damage");
        keys.store_identity(&a, &[2; 32])
            .expect("replaces the corrupt file");
        assert_eq!(keys.identity(&a).expect("read"), Some([2; 32]));
        let kept = record::list(&folder, Kind::Identity)
            .expect("list")
            .into_iter()
            .filter(|f| f.starts_with("15551234567.0.corrupt-"))
            .count();
        assert_eq!(kept, 1);
    }
}
