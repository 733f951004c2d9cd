//! The device lists of the users we write to, cached on the volume so a message needs no usync
//! when nothing changed (wa-messaging.md §6.2). An entry is dropped when the server says the
//! user's devices changed (`devices` notification), when one of the user's devices asks for a
//! retry, when a server ack's phash disagrees, and in any case after [`MAX_AGE_MS`].
//!
//! ```text
//!  <account>/devices/<server>/<user>.json   {"fetched_ms", "devices": [...], "lid"}
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::atomic::write_atomic;
use crate::wa::binary::Jid;

const FILE_MODE: u32 = 0o600;
/// The longest a device list is trusted without a notification saying otherwise.
pub const MAX_AGE_MS: u64 = 3600 * 1000;

#[derive(Debug, Deserialize, Serialize)]
struct Entry {
    fetched_ms: u64,
    devices: Vec<String>,
    lid: Option<String>,
}

/// One account's device-list cache.
#[derive(Clone, Debug)]
pub struct DeviceCache {
    dir: PathBuf,
}

impl DeviceCache {
    /// The cache under `account_dir/devices`.
    pub fn new(account_dir: &Path) -> Self {
        DeviceCache {
            dir: account_dir.join(volume::layout::DEVICES_DIR),
        }
    }

    /// The devices (and LID) of `user` fetched less than [`MAX_AGE_MS`] before `now_ms`.
    ///
    /// # Errors
    /// An unreadable file; a file that does not parse counts as a miss.
    pub fn load(&self, user: &Jid, now_ms: u64) -> io::Result<Option<(Vec<Jid>, Option<Jid>)>> {
        let Some(path) = self.path(user) else {
            return Ok(None);
        };
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Ok(entry) = serde_json::from_slice::<Entry>(&bytes) else {
            return Ok(None);
        };
        if now_ms.saturating_sub(entry.fetched_ms) >= MAX_AGE_MS {
            return Ok(None);
        }
        let devices: Option<Vec<Jid>> = entry.devices.iter().map(|d| d.parse().ok()).collect();
        let lid = entry.lid.and_then(|l| l.parse().ok());
        Ok(devices.map(|d| (d, lid)))
    }

    /// Keeps `devices` (and `lid`) for `user`, durably.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn save(
        &self,
        user: &Jid,
        devices: &[Jid],
        lid: Option<&Jid>,
        now_ms: u64,
    ) -> io::Result<()> {
        let Some(path) = self.path(user) else {
            return Ok(());
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let entry = Entry {
            fetched_ms: now_ms,
            devices: devices.iter().map(ToString::to_string).collect(),
            lid: lid.map(ToString::to_string),
        };
        let bytes = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        write_atomic(&path, &bytes, FILE_MODE)
    }

    /// Drops the entry of `user` (any device of it).
    ///
    /// # Errors
    /// Any I/O error but a missing file.
    pub fn forget(&self, user: &Jid) -> io::Result<()> {
        let Some(path) = self.path(user) else {
            return Ok(());
        };
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Users are digits on a known server; anything else is never cached.
    fn path(&self, user: &Jid) -> Option<PathBuf> {
        let digits = !user.user.is_empty()
            && user.user.len() <= 32
            && user.user.bytes().all(|b| b.is_ascii_digit());
        let server_ok = matches!(user.server.as_str(), "s.whatsapp.net" | "lid");
        (digits && server_ok).then(|| {
            self.dir
                .join(&user.server)
                .join(format!("{}.json", user.user))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        s.parse().expect("jid")
    }

    #[test]
    fn keeps_lists_until_they_age_or_are_forgotten() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = DeviceCache::new(dir.path());
        let user = jid("15551234567@s.whatsapp.net");
        let devices = [
            jid("15551234567@s.whatsapp.net"),
            jid("15551234567:3@s.whatsapp.net"),
        ];
        let lid = jid("100000000000002@lid");
        assert_eq!(cache.load(&user, 0).expect("load"), None);
        cache.save(&user, &devices, Some(&lid), 1000).expect("save");
        assert_eq!(
            cache
                .load(&jid("15551234567:3@s.whatsapp.net"), 2000)
                .expect("load"),
            Some((devices.to_vec(), Some(lid))),
            "any device of the user finds it"
        );
        assert_eq!(
            cache.load(&user, 1000 + MAX_AGE_MS).expect("load"),
            None,
            "too old"
        );
        cache.forget(&user).expect("forget");
        assert_eq!(cache.load(&user, 2000).expect("load"), None);
        cache.forget(&user).expect("forgetting twice is fine");
        assert!(
            cache
                .save(&Jid::new("../x", "s.whatsapp.net"), &[], None, 0)
                .is_ok(),
            "not cached, not an error"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("devices/s.whatsapp.net"))
                .expect("dir")
                .count(),
            0
        );
    }
}
