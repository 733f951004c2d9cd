//! Sender-key records, one opaque file per (group, sender address) (wa-messaging.md §4.1).
//! The file name is `<group>+<name>.<device>`, each part encoded, so `+` cannot occur inside.

use super::{name, record, Address, KeyStore, Kind, Result};

/// The folder under `signal/`.
const SENDER_KEYS_DIR: &str = "sender-keys";

impl KeyStore {
    /// The sender-key record of `sender` in `group` (a group JID string such as
    /// `120363000000000001@g.us`, or `status@broadcast`).
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidName`](super::KeyStoreError::InvalidName),
    /// [`KeyStoreError::Io`](super::KeyStoreError::Io) or
    /// [`KeyStoreError::Corrupt`](super::KeyStoreError::Corrupt).
    pub fn sender_key(&self, group: &str, sender: &Address) -> Result<Option<Vec<u8>>> {
        let path = self.root.join(SENDER_KEYS_DIR).join(file(group, sender)?);
        record::read(&path, Kind::SenderKey)
    }

    /// Replaces the sender-key record of `sender` in `group`, durably.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidName`](super::KeyStoreError::InvalidName) or
    /// [`KeyStoreError::Io`](super::KeyStoreError::Io).
    pub fn store_sender_key(&self, group: &str, sender: &Address, record: &[u8]) -> Result<()> {
        let file = file(group, sender)?;
        let dir = self.dir(SENDER_KEYS_DIR, Kind::SenderKey)?;
        record::write(&dir.join(file), Kind::SenderKey, record)
    }

    /// Forgets the sender-key record of `sender` in `group`; `false` when there was none.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidName`](super::KeyStoreError::InvalidName) or
    /// [`KeyStoreError::Io`](super::KeyStoreError::Io).
    pub fn delete_sender_key(&self, group: &str, sender: &Address) -> Result<bool> {
        let path = self.root.join(SENDER_KEYS_DIR).join(file(group, sender)?);
        record::remove(&path, Kind::SenderKey)
    }
}

fn file(group: &str, sender: &Address) -> Result<String> {
    let group = name::file_name(group, Kind::SenderKey)?;
    name::bounded(format!("{group}+{}", sender.file_name()), Kind::SenderKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_kept_per_group_and_sender() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let group = "120363000000000001@g.us";
        let (alice, bob) = (
            Address::new("100000000000001_1", 0).expect("address"),
            Address::new("100000000000002_1", 3).expect("address"),
        );
        keys.store_sender_key(group, &alice, b"alice")
            .expect("store");
        keys.store_sender_key("status@broadcast", &alice, b"status")
            .expect("store");
        keys.store_sender_key(group, &bob, b"bob").expect("store");
        assert_eq!(
            keys.sender_key(group, &alice).expect("read").as_deref(),
            Some(&b"alice"[..])
        );
        assert_eq!(
            keys.sender_key("status@broadcast", &alice)
                .expect("read")
                .as_deref(),
            Some(&b"status"[..])
        );
        assert!(keys.delete_sender_key(group, &bob).expect("delete"));
        assert_eq!(keys.sender_key(group, &bob).expect("read"), None);
        assert!(dir
            .path()
            .join("signal/sender-keys/120363000000000001%40g%2Eus+100000000000001_1.0")
            .is_file());
    }

    #[test]
    fn group_and_sender_parts_cannot_be_confused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let a = Address::new("b", 0).expect("address");
        let b = Address::new("x+b", 0).expect("address");
        keys.store_sender_key("g+x", &a, b"one").expect("store");
        keys.store_sender_key("g", &b, b"two").expect("store");
        assert_eq!(
            keys.sender_key("g+x", &a).expect("read").as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(
            keys.sender_key("g", &b).expect("read").as_deref(),
            Some(&b"two"[..])
        );
        assert!(keys.sender_key("../..", &a).expect("read").is_none());
        assert!(keys.store_sender_key("", &a, b"x").is_err());
    }
}
