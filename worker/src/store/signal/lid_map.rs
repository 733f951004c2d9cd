//! LID↔PN mappings by user part (wa-messaging.md §1.1, §1.2): `lid-map/pn/<pn>` holds the LID,
//! `lid-map/lid/<lid>` the PN. The PN side is the truth; a LID lookup is answered only when the
//! PN it names still maps back to it, so a crash between the two writes, or an older mapping
//! replaced by a newer one (latest wins), never yields a stale answer.

use std::path::{Path, PathBuf};

use super::{name, record, KeyStore, KeyStoreError, Kind, Result};

/// The folder under `signal/`.
const LID_MAP_DIR: &str = "lid-map";

impl KeyStore {
    /// Records that PN user `pn` is LID user `lid` (e.g. `15551234567` ↔ `100000000000001`),
    /// replacing whatever either was mapped to. Nothing is written when it is already known.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidName`] or [`KeyStoreError::Io`]; a corrupt old entry is kept
    /// aside and replaced.
    pub fn store_lid_mapping(&self, pn: &str, lid: &str) -> Result<()> {
        let pn_path = self.map_path("pn", pn)?;
        let lid_path = self.map_path("lid", lid)?;
        // A corrupt old entry is kept aside by the read and then simply replaced.
        let old_lid = read_replaceable(&pn_path)?;
        let old_pn = read_replaceable(&lid_path)?;
        if old_lid.as_deref() == Some(lid) && old_pn.as_deref() == Some(pn) {
            return Ok(());
        }
        self.dir(&format!("{LID_MAP_DIR}/pn"), Kind::LidMapping)?;
        self.dir(&format!("{LID_MAP_DIR}/lid"), Kind::LidMapping)?;
        record::write(&pn_path, Kind::LidMapping, lid.as_bytes())?;
        record::write(&lid_path, Kind::LidMapping, pn.as_bytes())?;
        // The other ends of the replaced mappings no longer answer; tidy them away.
        if let Some(old_pn) = old_pn.filter(|p| p != pn) {
            let path = self.map_path("pn", &old_pn)?;
            if read_replaceable(&path)?.as_deref() == Some(lid) {
                record::remove(&path, Kind::LidMapping)?;
            }
        }
        if let Some(old_lid) = old_lid.filter(|l| l != lid) {
            let path = self.map_path("lid", &old_lid)?;
            if read_replaceable(&path)?.as_deref() == Some(pn) {
                record::remove(&path, Kind::LidMapping)?;
            }
        }
        Ok(())
    }

    /// The LID user part of PN user `pn`, when known.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidName`], [`KeyStoreError::Io`] or [`KeyStoreError::Corrupt`].
    pub fn lid_for_pn(&self, pn: &str) -> Result<Option<String>> {
        read_user(&self.map_path("pn", pn)?)
    }

    /// The PN user part of LID user `lid`, when known.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidName`], [`KeyStoreError::Io`] or [`KeyStoreError::Corrupt`].
    pub fn pn_for_lid(&self, lid: &str) -> Result<Option<String>> {
        let Some(pn) = read_user(&self.map_path("lid", lid)?)? else {
            return Ok(None);
        };
        let confirmed = read_user(&self.map_path("pn", &pn)?)?.as_deref() == Some(lid);
        Ok(confirmed.then_some(pn))
    }

    fn map_path(&self, side: &str, user: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join(LID_MAP_DIR)
            .join(side)
            .join(name::file_name(user, Kind::LidMapping)?))
    }
}

/// [`read_user`], with a corrupt file counting as none (it was kept aside).
fn read_replaceable(path: &Path) -> Result<Option<String>> {
    match read_user(path) {
        Err(KeyStoreError::Corrupt { .. }) => Ok(None),
        other => other,
    }
}

fn read_user(path: &Path) -> Result<Option<String>> {
    record::read_with(path, Kind::LidMapping, |p| {
        let user = std::str::from_utf8(p).map_err(|_| "not utf-8")?;
        name::check(user, Kind::LidMapping).map_err(|_| "not a user part")?;
        Ok(user.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PN: &str = "15551234567";
    const LID: &str = "100000000000001";

    #[test]
    fn maps_both_ways_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        assert_eq!(keys.lid_for_pn(PN).expect("read"), None);
        keys.store_lid_mapping(PN, LID).expect("store");
        let keys = KeyStore::new(dir.path());
        assert_eq!(keys.lid_for_pn(PN).expect("read").as_deref(), Some(LID));
        assert_eq!(keys.pn_for_lid(LID).expect("read").as_deref(), Some(PN));
        assert_eq!(keys.pn_for_lid(PN).expect("read"), None);
    }

    #[test]
    fn the_latest_mapping_wins_on_both_sides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        keys.store_lid_mapping(PN, LID).expect("store");
        keys.store_lid_mapping(PN, "100000000000009")
            .expect("new lid for the number");
        assert_eq!(
            keys.lid_for_pn(PN).expect("read").as_deref(),
            Some("100000000000009")
        );
        assert_eq!(keys.pn_for_lid(LID).expect("read"), None);
        keys.store_lid_mapping("15550000000", "100000000000009")
            .expect("number change");
        assert_eq!(keys.lid_for_pn(PN).expect("read"), None);
        assert_eq!(
            keys.pn_for_lid("100000000000009").expect("read").as_deref(),
            Some("15550000000")
        );
    }

    #[test]
    fn a_corrupt_entry_is_an_error_on_lookup_and_replaced_by_a_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        keys.store_lid_mapping(PN, LID).expect("store");
        let path = keys.map_path("pn", PN).expect("path");
        std::fs::write(&path, b"garbage").expect("damage");
        assert!(matches!(
            keys.lid_for_pn(PN),
            Err(KeyStoreError::Corrupt {
                kind: Kind::LidMapping,
                ..
            })
        ));
        std::fs::write(&path, b"garbage").expect("damage again");
        keys.store_lid_mapping(PN, LID).expect("replaces it");
        assert_eq!(keys.lid_for_pn(PN).expect("read").as_deref(), Some(LID));
        assert_eq!(keys.pn_for_lid(LID).expect("read").as_deref(), Some(PN));
    }

    #[test]
    fn a_half_written_mapping_never_answers_the_reverse_lookup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        keys.store_lid_mapping(PN, LID).expect("store");
        // The process died after the PN side of a newer mapping was written.
        keys.dir("lid-map/pn", Kind::LidMapping).expect("dir");
        record::write(
            &keys.map_path("pn", PN).expect("path"),
            Kind::LidMapping,
            b"100000000000009",
        )
        .expect("write");
        assert_eq!(keys.pn_for_lid(LID).expect("read"), None);
        assert_eq!(keys.pn_for_lid("100000000000009").expect("read"), None);
        keys.store_lid_mapping(PN, "100000000000009")
            .expect("learned again");
        assert_eq!(
            keys.pn_for_lid("100000000000009").expect("read").as_deref(),
            Some(PN)
        );
    }
}
