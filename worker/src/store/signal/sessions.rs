//! Pairwise session records, one opaque file per contact device (wa-messaging.md §3.7). The
//! Signal module serializes the record (current state plus archived ones) itself.

use super::{name, record, Address, KeyStore, Kind, Result};

/// The folder under `signal/`.
const SESSIONS_DIR: &str = "sessions";

impl KeyStore {
    /// The session record of `addr`, read from disk.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`](super::KeyStoreError::Io), or
    /// [`KeyStoreError::Corrupt`](super::KeyStoreError::Corrupt) (the file is then kept aside
    /// and the address has no session).
    pub fn session(&self, addr: &Address) -> Result<Option<Vec<u8>>> {
        record::read(&self.session_path(addr)?, Kind::Session)
    }

    /// Replaces the session record of `addr`, durably.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`](super::KeyStoreError::Io); the old record is then intact.
    pub fn store_session(&self, addr: &Address, record: &[u8]) -> Result<()> {
        let dir = self.dir(SESSIONS_DIR, Kind::Session)?;
        record::write(&dir.join(session_file(addr)?), Kind::Session, record)
    }

    /// Stores the session a pkmsg built, *then* forgets the one-time prekey it consumed
    /// (§3.6 step 6). A crash between the two leaves both on disk: the session is usable, the
    /// prekey is merely kept too long, and calling this again finishes the job.
    ///
    /// # Errors
    /// As [`KeyStore::store_session`] and [`KeyStore::remove_prekey`]; when the session write
    /// fails, the prekey is untouched.
    pub fn store_session_consuming_prekey(
        &self,
        addr: &Address,
        record: &[u8],
        prekey_id: u32,
    ) -> Result<()> {
        self.store_session(addr, record)?;
        self.remove_prekey(prekey_id)?;
        Ok(())
    }

    /// Forgets the session of `addr`, durably; `false` when there was none.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`](super::KeyStoreError::Io).
    pub fn delete_session(&self, addr: &Address) -> Result<bool> {
        record::remove(&self.session_path(addr)?, Kind::Session)
    }

    /// Every address of user `name` (all its devices) that has a session, by device.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidName`](super::KeyStoreError::InvalidName) for an empty or
    /// overlong name; [`KeyStoreError::Io`](super::KeyStoreError::Io) when listing fails.
    pub fn sessions_of_user(&self, name: &str) -> Result<Vec<Address>> {
        name::check(name, Kind::Session)?;
        let mut found: Vec<Address> = record::list(&self.root.join(SESSIONS_DIR), Kind::Session)?
            .iter()
            .filter_map(|file| Address::from_file_name(file))
            .filter(|addr| addr.name() == name)
            .collect();
        found.sort();
        Ok(found)
    }

    fn session_path(&self, addr: &Address) -> Result<std::path::PathBuf> {
        Ok(self.root.join(SESSIONS_DIR).join(session_file(addr)?))
    }
}

fn session_file(addr: &Address) -> Result<String> {
    name::bounded(addr.file_name(), Kind::Session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::signal::KeyStoreError;
    use std::fs;

    fn addr(name: &str, device: u16) -> Address {
        Address::new(name, device).expect("address")
    }

    #[test]
    fn sessions_round_trip_per_device_and_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let (a0, a12) = (addr("100000000000001_1", 0), addr("100000000000001_1", 12));
        assert_eq!(keys.session(&a0).expect("read"), None);
        keys.store_session(&a0, b"zero").expect("store");
        keys.store_session(&a12, b"twelve").expect("store");
        keys.store_session(&a12, b"twelve, later").expect("replace");
        let reopened = KeyStore::new(dir.path());
        assert_eq!(
            reopened.session(&a0).expect("read").as_deref(),
            Some(&b"zero"[..])
        );
        assert_eq!(
            reopened.session(&a12).expect("read").as_deref(),
            Some(&b"twelve, later"[..])
        );
        assert!(reopened.delete_session(&a0).expect("delete"));
        assert!(!reopened.delete_session(&a0).expect("already gone"));
        assert_eq!(reopened.session(&a0).expect("read"), None);
        assert!(dir
            .path()
            .join("signal/sessions/100000000000001_1.12")
            .is_file());
    }

    #[test]
    fn lists_every_device_of_one_user_and_no_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        for a in [
            addr("15551234567", 3),
            addr("15551234567", 0),
            addr("155512345678", 0),
            addr("15551234567_1", 0),
            addr("1555123456", 7),
        ] {
            keys.store_session(&a, b"r").expect("store");
        }
        fs::write(
            dir.path().join("signal/sessions/15551234567.9.corrupt-1"),
            b"kept aside",
        )
        .expect("a kept-aside file");
        assert_eq!(
            keys.sessions_of_user("15551234567").expect("list"),
            [addr("15551234567", 0), addr("15551234567", 3)]
        );
        assert_eq!(keys.sessions_of_user("nobody").expect("list"), []);
    }

    #[test]
    fn hostile_names_stay_in_the_sessions_folder_and_do_not_collide() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let hostile = [
            "../../creds.json",
            "..",
            "/tmp/x",
            "a\0b",
            "a/b",
            "a%2Fb",
            "A",
        ];
        for (i, name) in hostile.iter().enumerate() {
            keys.store_session(&addr(name, 0), &[i as u8; 3])
                .expect("store");
        }
        for (i, name) in hostile.iter().enumerate() {
            assert_eq!(
                keys.session(&addr(name, 0)).expect("read"),
                Some(vec![i as u8; 3]),
                "{name:?}"
            );
            assert_eq!(keys.sessions_of_user(name).expect("list"), [addr(name, 0)]);
        }
        let account: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(account, ["signal"], "nothing written outside signal/");
        assert_eq!(
            fs::read_dir(dir.path().join("signal/sessions"))
                .expect("list")
                .count(),
            hostile.len()
        );
        assert!(matches!(
            Address::new("9".repeat(65), 0),
            Err(KeyStoreError::InvalidName { .. })
        ));
        assert!(Address::new("", 0).is_err());
    }

    #[test]
    fn a_corrupt_session_is_an_error_the_caller_sees_then_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let a = addr("15551234567", 0);
        keys.store_session(&a, b"record").expect("store");
        fs::write(dir.path().join("signal/sessions/15551234567.0"), b"garbage").expect("damage");
        assert!(matches!(
            keys.session(&a),
            Err(KeyStoreError::Corrupt {
                kind: Kind::Session,
                ..
            })
        ));
        assert_eq!(keys.session(&a).expect("read"), None);
    }

    #[test]
    fn a_kill_between_session_and_prekey_removal_leaves_both_and_a_second_consume_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = addr("100000000000001_1", 12);
        let consumed = {
            let keys = KeyStore::new(dir.path());
            let fresh = keys.generate_prekeys(3).expect("generate");
            // The first half of store_session_consuming_prekey, then the process dies.
            keys.store_session(&a, b"new session").expect("store");
            fresh[1].id
        };
        let keys = KeyStore::new(dir.path());
        assert_eq!(
            keys.session(&a).expect("read").as_deref(),
            Some(&b"new session"[..])
        );
        assert!(
            keys.prekey(consumed).expect("read").is_some(),
            "the prekey survives, so a redelivered pkmsg still decrypts"
        );
        keys.store_session_consuming_prekey(&a, b"new session", consumed)
            .expect("consume again");
        assert!(keys.prekey(consumed).expect("read").is_none());
        assert_eq!(
            keys.session(&a).expect("read").as_deref(),
            Some(&b"new session"[..])
        );
        assert!(keys.prekey(consumed - 1).expect("read").is_some());
    }

    #[test]
    fn a_failed_session_write_keeps_the_prekey() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let fresh = keys.generate_prekeys(1).expect("generate");
        let a = addr("15551234567", 0);
        fs::create_dir_all(dir.path().join("signal/sessions/15551234567.0"))
            .expect("a folder where the session file goes");
        assert!(keys
            .store_session_consuming_prekey(&a, b"record", fresh[0].id)
            .is_err());
        assert!(keys.prekey(fresh[0].id).expect("read").is_some());
    }
}
