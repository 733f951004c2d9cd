//! The account's Signal state on the volume: one-time and previous signed prekeys, sessions,
//! sender keys, contact identities and LID↔PN mappings (wa-messaging.md §1.3, §3.6, §3.7, §4.1,
//! §9.1, §9.2).
//!
//! ```text
//!  <accountDir>/signal/
//!    prekeys/next-id                 the next one-time prekey id (24 bits, wraps to 1)
//!    prekeys/<min>-<max>-<n>         one batch per generation: id, public, private per key
//!    signed-prekeys/<id>             previous signed prekeys (the current one is in creds.json)
//!    sessions/<name>.<device>        one opaque session record per contact device
//!    sender-keys/<group>+<name>.<device>
//!    identities/<name>.<device>      32-byte identity key per contact device
//!    lid-map/pn/<pn user>            its LID user part (latest wins)
//!    lid-map/lid/<lid user>          its PN user part
//! ```
//!
//! The worker is the only writer. Every file is written with [`write_atomic`] (temp file, fsync,
//! rename, fsync of the directory), mode 0600, framed with a magic and a checksum (`record.rs`).
//! Nothing is cached: each call reads what it needs from disk, so an idle worker holds no key
//! material beyond `creds.json`. A file that fails its checks is renamed
//! `<file>.corrupt-<ts>`, never deleted, and the call returns [`KeyStoreError::Corrupt`].
//! Names that come from the network are percent-encoded (`name.rs`) so that no input escapes its
//! directory or collides with another.
//!
//! [`write_atomic`]: super::atomic::write_atomic

mod identities;
mod lid_map;
mod name;
mod prekeys;
mod record;
mod sender_keys;
mod sessions;
mod signed_prekeys;

use std::fmt;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::atomic::{rename_durable, sync_dir};
use crate::wa::binary::jid::{
    Jid, DEFAULT_USER_SERVER, HIDDEN_USER_SERVER, HOSTED_LID_SERVER, HOSTED_SERVER,
};

pub use prekeys::PreKeyPublic;

/// The folder under the account directory.
const SIGNAL_DIR: &str = volume::layout::SIGNAL_DIR;
/// Folders are private to the worker.
const DIR_MODE: u32 = 0o700;
/// Files are private to the worker.
const FILE_MODE: u32 = 0o600;

/// The Signal key store of one account directory. Holds only its path.
#[derive(Clone, Debug)]
pub struct KeyStore {
    root: PathBuf,
}

/// A Signal protocol address: the JID's user part (with `_<domain>` outside the PN domain) and
/// its device (wa-messaging.md §1.3). Its string form `name.device` is a storage key only.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Address {
    name: String,
    device: u16,
}

/// What kind of record a failing file held; callers branch on it (a corrupt session means a
/// retry receipt, a corrupt prekey batch means those keys are gone).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Kind {
    /// A batch of one-time prekeys.
    PreKeys,
    /// The next one-time prekey id.
    PreKeyCounter,
    /// A previous signed prekey.
    SignedPreKey,
    /// A pairwise session record.
    Session,
    /// A sender-key record.
    SenderKey,
    /// A contact identity key.
    Identity,
    /// A LID↔PN mapping.
    LidMapping,
}

/// Why a key store call failed. Messages carry no names, numbers or key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// Reading, writing or listing failed.
    #[error("key store {kind} i/o failed")]
    Io {
        /// The record kind involved.
        kind: Kind,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file failed its checks; it was renamed `kept_as` and is gone from the store.
    #[error("key store {kind} file is corrupt ({problem}); kept aside")]
    Corrupt {
        /// The record kind involved.
        kind: Kind,
        /// What was wrong.
        problem: &'static str,
        /// Where the file now lives.
        kept_as: PathBuf,
    },
    /// A sealed file does not open (`SESSIONS_KEY` missing or wrong); left untouched.
    #[error("key store {kind} file: {problem}")]
    Sealed {
        /// The record kind involved.
        kind: Kind,
        /// Which file, and what to do.
        problem: String,
    },
    /// A name (address, JID or user part) is empty or too long to be a file name.
    #[error("{kind} name is empty or too long")]
    InvalidName {
        /// The record kind it was meant for.
        kind: Kind,
    },
    /// Every one-time prekey id is still in use.
    #[error("no free one-time prekey id left")]
    PreKeyIdsExhausted,
}

/// The key store's result.
pub type Result<T> = std::result::Result<T, KeyStoreError>;

impl KeyStore {
    /// The store under `account_dir`. Touches nothing on disk: folders appear with the first
    /// write, and a missing folder reads as empty.
    pub fn new(account_dir: &Path) -> Self {
        KeyStore {
            root: account_dir.join(SIGNAL_DIR),
        }
    }

    /// The `signal` folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Moves the whole store aside as `signal.<label>-<ts>` (its keys belong to a device
    /// identity that is gone), durably. `None` when there was nothing to move.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`] when the rename fails.
    pub fn archive(&self, label: &str) -> Result<Option<PathBuf>> {
        if !self.root.exists() {
            return Ok(None);
        }
        let ts = ipc_protocol::UnixMillis::now().0;
        let to = self
            .root
            .with_file_name(format!("{SIGNAL_DIR}.{label}-{ts}"));
        rename_durable(&self.root, &to).map_err(|source| KeyStoreError::Io {
            kind: Kind::Session,
            source,
        })?;
        Ok(Some(to))
    }

    /// `root/<sub>`, created (with its parents, each made durable) when missing.
    fn dir(&self, sub: &str, kind: Kind) -> Result<PathBuf> {
        let path = self.root.join(sub);
        ensure_dir(&path).map_err(|source| KeyStoreError::Io { kind, source })?;
        Ok(path)
    }
}

/// Creates `dir` and any missing parent, fsyncing each parent after the entry appears in it.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent folder"))?;
    ensure_dir(parent)?;
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

impl Address {
    /// The address `name.device`.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidName`] when `name` is empty or longer than a stored name may be.
    pub fn new(name: impl Into<String>, device: u16) -> Result<Self> {
        let name = name.into();
        name::check(&name, Kind::Session)?;
        Ok(Address { name, device })
    }

    /// The address of a user or device JID (§1.3): PN `user`, LID `user_1`, hosted
    /// `user_128`, hosted LID `user_129`. `None` for groups, servers and other domains.
    pub fn from_jid(jid: &Jid) -> Option<Self> {
        let suffix = match jid.server.as_str() {
            DEFAULT_USER_SERVER => "",
            HIDDEN_USER_SERVER => "_1",
            HOSTED_SERVER => "_128",
            HOSTED_LID_SERVER => "_129",
            _ => return None,
        };
        Address::new(format!("{}{suffix}", jid.user), jid.device).ok()
    }

    /// The name part.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device part.
    pub fn device(&self) -> u16 {
        self.device
    }

    /// The file name of this address: the encoded name, a dot, the device.
    fn file_name(&self) -> String {
        format!("{}.{}", name::encode(&self.name), self.device)
    }

    /// The address a file name stands for, if it is one of ours.
    fn from_file_name(file: &str) -> Option<Self> {
        let (name, device) = file.rsplit_once('.')?;
        if device.is_empty() || !device.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let device = device.parse().ok()?;
        Address::new(name::decode(name)?, device).ok()
    }
}

/// `name.device`, the storage key form of LSN, Baileys and whatsapp-rust.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.device)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::PreKeys => "prekey batch",
            Kind::PreKeyCounter => "prekey counter",
            Kind::SignedPreKey => "signed prekey",
            Kind::Session => "session",
            Kind::SenderKey => "sender key",
            Kind::Identity => "identity",
            Kind::LidMapping => "lid mapping",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_jid_domain() {
        let pn: Jid = "15551234567:3@s.whatsapp.net".parse().expect("jid");
        let lid: Jid = "100000000000001:12@lid".parse().expect("jid");
        let group: Jid = "120363000000000001@g.us".parse().expect("jid");
        assert_eq!(
            Address::from_jid(&pn).map(|a| a.to_string()).as_deref(),
            Some("15551234567.3")
        );
        assert_eq!(
            Address::from_jid(&lid).map(|a| a.to_string()).as_deref(),
            Some("100000000000001_1.12")
        );
        assert_eq!(Address::from_jid(&group), None);
    }

    #[test]
    fn file_names_round_trip_and_strangers_are_ignored() {
        for (name, device) in [("15551234567", 0), ("100000000000001_1", 12), ("a.b", 7)] {
            let addr = Address::new(name, device).expect("address");
            assert_eq!(Address::from_file_name(&addr.file_name()), Some(addr));
        }
        for stranger in ["next-id", ".x.tmp-1-2", "155.0.corrupt-17", "155.", "155.x"] {
            assert_eq!(Address::from_file_name(stranger), None, "{stranger}");
        }
    }

    #[test]
    fn archive_moves_the_whole_store_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        assert_eq!(keys.archive("logged-out").expect("nothing to move"), None);
        let addr = Address::new("15551234567", 0).expect("address");
        keys.store_session(&addr, b"record").expect("store");
        let kept = keys.archive("logged-out").expect("archive").expect("moved");
        assert!(kept.join("sessions").is_dir());
        assert_eq!(keys.session(&addr).expect("read"), None);
    }
}
