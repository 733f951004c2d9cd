//! Accounts on the volume: one `<id>/account.json` each, written atomically.
//!
//! The supervisor owns `account.json`; `creds.json` and `lock` belong to the account's worker,
//! and the registry only ever asks whether creds exist or moves a deleted account's whole
//! directory into `.archive/`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipc_protocol::{AccountId, UnixMillis};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tracing::warn;
use volume::atomic::{rename_durable, sync_dir, write_atomic};

use crate::webhook::url::WebhookUrl;

use volume::layout::{AccountDir, ACCOUNT_FILE, ARCHIVE_DIR};

/// One account, as stored in `account.json`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Account {
    /// The account id (also its directory name).
    pub id: AccountId,
    /// A name for people.
    pub name: String,
    /// The phone number the operator gave, if any (masked on output).
    #[serde(default)]
    pub phone: Option<String>,
    /// When the account was added.
    pub created_at: UnixMillis,
    /// Disabled accounts are kept but not started at boot.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Where this account's events are POSTed, besides the global `WEBHOOK_URL`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::webhook::url::lenient"
    )]
    pub webhook_url: Option<WebhookUrl>,
    /// This account's companion identity (`Name,Platform,Version`), instead of `WA_BROWSER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    /// Another client took the account over (`conflict type="replaced"`) at this time: it stays
    /// stopped, across supervisor restarts, until an admin restarts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_since: Option<UnixMillis>,
}

fn enabled_by_default() -> bool {
    true
}

/// Why the registry refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An account with this id exists already.
    #[error("account {0} already exists")]
    Duplicate(AccountId),
    /// No account with this id.
    #[error("account {0} not found")]
    NotFound(AccountId),
    /// The volume failed.
    #[error("sessions volume i/o failed for account {id}")]
    Io {
        /// The account.
        id: AccountId,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The accounts under one sessions directory.
#[derive(Clone, Debug)]
pub struct Registry {
    root: PathBuf,
    /// Serialises the read-change-write of `account.json` (the API and the fleet both change it).
    changes: Arc<Mutex<()>>,
}

impl Registry {
    /// The registry rooted at the sessions directory `root`.
    pub fn new(root: &Path) -> Self {
        Registry {
            root: root.to_owned(),
            changes: Arc::default(),
        }
    }

    /// The sessions directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every account on the volume, sorted by id in byte order. Directories that are not
    /// accounts (dot names, invalid ids, unreadable `account.json`) are skipped with a warning.
    ///
    /// # Errors
    /// When the sessions directory itself cannot be listed.
    pub fn load_all(&self) -> io::Result<Vec<Account>> {
        let mut accounts = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(id) = AccountId::parse(&name) else {
                warn!(dir = %name, "skipping a directory whose name is not an account id");
                continue;
            };
            match self.load(&id) {
                Ok(account) => accounts.push(account),
                Err(e) => warn!(account = %id, error = %e, "skipping an unreadable account.json"),
            }
        }
        accounts.sort_by(|a, b| a.id.as_str().as_bytes().cmp(b.id.as_str().as_bytes()));
        Ok(accounts)
    }

    fn load(&self, id: &AccountId) -> io::Result<Account> {
        let bytes = fs::read(self.dir(id).join(ACCOUNT_FILE))?;
        let account: Account = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
        if account.id != *id {
            return Err(io::Error::other("account.json names another account"));
        }
        Ok(account)
    }

    /// Creates the account's directory and `account.json`. When the write fails (a full or
    /// read-only volume), the directory just created is removed again: nothing is left behind
    /// and the id stays free.
    ///
    /// # Errors
    /// [`RegistryError::Duplicate`] when the directory exists already, or the I/O error.
    pub fn add(&self, account: &Account) -> Result<(), RegistryError> {
        let dir = self.dir(&account.id);
        let io_err = |source| RegistryError::Io {
            id: account.id.clone(),
            source,
        };
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RegistryError::Duplicate(account.id.clone()))
            }
            Err(e) => return Err(io_err(e)),
        }
        let written = sync_dir(&self.root).and_then(|()| self.save(account));
        if let Err(e) = written {
            if let Err(cleanup) = fs::remove_dir_all(&dir).and_then(|()| sync_dir(&self.root)) {
                warn!(account = %account.id, error = %cleanup, "cannot remove a half-added account directory");
            }
            return Err(io_err(e));
        }
        Ok(())
    }

    /// Rewrites `account.json` atomically.
    ///
    /// # Errors
    /// Any I/O error; the old file is then intact.
    pub fn save(&self, account: &Account) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(account).map_err(io::Error::other)?;
        write_atomic(&self.dir(&account.id).join(ACCOUNT_FILE), &bytes, 0o644)
    }

    /// Sets or clears the account's own webhook URL in `account.json` (read, change, write
    /// atomically); returns the account as now stored.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] when the account is not on the volume, or the I/O error.
    pub fn set_webhook_url(
        &self,
        id: &AccountId,
        url: Option<WebhookUrl>,
    ) -> Result<Account, RegistryError> {
        self.change(id, |account| account.webhook_url = url)
    }

    /// Remembers (or forgets) that another client took the account over; returns the account
    /// as now stored.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] when the account is not on the volume, or the I/O error.
    pub fn set_conflict_since(
        &self,
        id: &AccountId,
        since: Option<UnixMillis>,
    ) -> Result<Account, RegistryError> {
        self.change(id, |account| account.conflict_since = since)
    }

    /// Reads `account.json`, changes it and writes it atomically, one change at a time.
    fn change(
        &self,
        id: &AccountId,
        change: impl FnOnce(&mut Account),
    ) -> Result<Account, RegistryError> {
        let _one_at_a_time = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let io_err = |source| RegistryError::Io {
            id: id.clone(),
            source,
        };
        let mut account = match self.load(id) {
            Ok(account) => account,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RegistryError::NotFound(id.clone()))
            }
            Err(e) => return Err(io_err(e)),
        };
        change(&mut account);
        self.save(&account).map_err(io_err)?;
        Ok(account)
    }

    /// Whether the account's worker has stored credentials.
    pub fn has_creds(&self, id: &AccountId) -> bool {
        AccountDir::new(&self.root, id.as_str()).has_creds()
    }

    /// Moves the account's whole directory (credentials included) to
    /// `.archive/<id>-<ts>`. Nothing is deleted.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] or the I/O error of the move.
    pub fn archive(&self, id: &AccountId) -> Result<PathBuf, RegistryError> {
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(RegistryError::NotFound(id.clone()));
        }
        let io_err = |source| RegistryError::Io {
            id: id.clone(),
            source,
        };
        let archive = self.root.join(ARCHIVE_DIR);
        fs::create_dir_all(&archive).map_err(io_err)?;
        let to = archive.join(format!("{id}-{}", UnixMillis::now().0));
        rename_durable(&dir, &to).map_err(io_err)?;
        Ok(to)
    }

    fn dir(&self, id: &AccountId) -> PathBuf {
        self.root.join(id.as_str())
    }
}

/// A fresh account id: `acct-` and ten random lowercase letters or digits.
pub fn generate_id() -> AccountId {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    AccountId::parse(&format!("acct-{suffix}")).expect("generated ids use the id alphabet")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str) -> Account {
        Account {
            id: AccountId::parse(id).expect("valid"),
            name: id.to_uppercase(),
            phone: None,
            created_at: UnixMillis(1),
            enabled: true,
            browser: None,
            conflict_since: None,
            webhook_url: None,
        }
    }

    #[test]
    fn loads_accounts_sorted_and_refuses_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = Registry::new(dir.path());
        for id in ["b", "a-2", "a_1", "c"] {
            reg.add(&account(id)).expect("add");
        }
        fs::create_dir(dir.path().join("NotAnId")).expect("mkdir");
        fs::create_dir(dir.path().join(".archive")).expect("mkdir");
        let ids: Vec<_> = reg
            .load_all()
            .expect("load")
            .into_iter()
            .map(|a| a.id.to_string())
            .collect();
        assert_eq!(ids, ["a-2", "a_1", "b", "c"]);
        assert!(matches!(
            reg.add(&account("b")),
            Err(RegistryError::Duplicate(_))
        ));
    }

    #[test]
    fn archive_moves_the_directory_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = Registry::new(dir.path());
        reg.add(&account("gone")).expect("add");
        fs::write(dir.path().join("gone/creds.json"), b"{}").expect("creds");
        let to = reg.archive(&account("gone").id).expect("archive");
        assert!(to.join("creds.json").is_file());
        assert!(!dir.path().join("gone").exists());
        assert!(reg.load_all().expect("load").is_empty());
    }

    #[test]
    fn an_old_account_json_loads_and_the_webhook_url_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = Registry::new(dir.path());
        fs::create_dir(dir.path().join("old")).expect("mkdir");
        let old = r#"{"id":"old","name":"Old","phone":null,"created_at":5,"enabled":true}"#;
        fs::write(dir.path().join("old/account.json"), old).expect("write");
        let id = AccountId::parse("old").expect("id");
        assert_eq!(reg.load(&id).expect("old file loads").webhook_url, None);

        let url = WebhookUrl::parse("https://example.com/h").expect("url");
        let saved = reg.set_webhook_url(&id, Some(url.clone())).expect("set");
        assert_eq!(saved.webhook_url.as_ref(), Some(&url));
        assert_eq!(reg.load(&id).expect("load").webhook_url, Some(url));
        let text = fs::read_to_string(dir.path().join("old/account.json")).expect("read");
        assert!(
            text.contains("\"webhook_url\": \"https://example.com/h\""),
            "{text}"
        );
        reg.set_webhook_url(&id, None).expect("clear");
        let text = fs::read_to_string(dir.path().join("old/account.json")).expect("read");
        assert!(!text.contains("webhook_url"), "{text}");

        let hand_edited = r#"{"id":"old","name":"Old","created_at":5,"webhook_url":"ftp://x"}"#;
        fs::write(dir.path().join("old/account.json"), hand_edited).expect("write");
        assert_eq!(reg.load(&id).expect("still loads").webhook_url, None);
        let missing = AccountId::parse("nobody").expect("id");
        assert!(matches!(
            reg.set_webhook_url(&missing, None),
            Err(RegistryError::NotFound(_))
        ));
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = generate_id();
        let b = generate_id();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("acct-"));
    }
}
