//! What the worker remembers about each group it sends to (wa-messaging.md §4.5, §7.3): the
//! members when our sender key was last handed out, and which member devices hold it. A member
//! who left means a new sender key; a device missing from the holders gets the key with the next
//! message.
//!
//! ```text
//!  <account>/groups/<group id>.json     {"members": [...], "holders": [...]}
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::atomic::write_atomic;

const FILE_MODE: u32 = 0o600;

/// One group's memory.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct GroupMemory {
    /// The member users (bare JIDs) when our key was last distributed.
    pub members: Vec<String>,
    /// The member devices (JIDs) that hold our current sender key.
    pub holders: Vec<String>,
}

/// The groups folder of one account.
#[derive(Clone, Debug)]
pub struct GroupStore {
    dir: PathBuf,
}

impl GroupStore {
    /// The store under `account_dir/groups` (created on first write).
    pub fn new(account_dir: &Path) -> Self {
        GroupStore {
            dir: account_dir.join(volume::layout::GROUPS_DIR),
        }
    }

    /// The memory of `group` (e.g. `120363000000000001@g.us`), if any.
    ///
    /// # Errors
    /// An unreadable file, or a group JID that cannot name a file.
    pub fn load(&self, group: &str) -> io::Result<Option<GroupMemory>> {
        let path = self.path(group)?;
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the memory of `group`, durably.
    ///
    /// # Errors
    /// Any I/O error; the old file is then intact.
    pub fn save(&self, group: &str, memory: &GroupMemory) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec(memory).map_err(io::Error::other)?;
        write_atomic(&self.path(group)?, &bytes, FILE_MODE)
    }

    fn path(&self, group: &str) -> io::Result<PathBuf> {
        let id = group.strip_suffix("@g.us").unwrap_or(group);
        let ok =
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(self.dir.join(format!("{id}.json")))
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a group id of digits",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_members_and_holders_and_refuses_odd_names() {
        let dir = tempfile::tempdir().expect("dir");
        let store = GroupStore::new(dir.path());
        let g = "120363000000000001@g.us";
        assert_eq!(store.load(g).expect("load"), None);
        let memory = GroupMemory {
            members: vec!["1@lid".into()],
            holders: vec!["1:2@lid".into()],
        };
        store.save(g, &memory).expect("save");
        assert_eq!(store.load(g).expect("load"), Some(memory));
        assert!(store.save("../x@g.us", &GroupMemory::default()).is_err());
        assert!(store.load("a/b").is_err());
    }
}
