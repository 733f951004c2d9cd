//! Where everything lives on the sessions volume, and who owns it.
//!
//! ```text
//! $SESSIONS/
//!   .supervisor.lock      supervisor: one supervisor per volume
//!   admin-token           supervisor: the generated admin token (0600)
//!   webhook-secret        supervisor: the generated webhook secret (0600)
//!   .webhooks/            supervisor: webhook deliveries not yet accepted
//!   .archive/             supervisor: deleted accounts' directories
//!   <accountId>/
//!     account.json        supervisor: name, phone, webhook URL
//!     lock                worker: one worker per account (flock)
//!     creds.json          worker: noise and identity keys, registration, pairing (0600)
//!     signal/             worker: prekeys, sessions, sender keys, identities, LID map
//!     messages/           worker: outbox, sent, received, unconfirmed
//!     groups/             worker: group members and sender-key holders
//!     devices/            worker: cached device lists
//! ```

use std::path::{Path, PathBuf};

/// The supervisor's lock at the root.
pub const SUPERVISOR_LOCK: &str = ".supervisor.lock";
/// The generated admin token at the root.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// The generated webhook secret at the root.
pub const WEBHOOK_SECRET_FILE: &str = "webhook-secret";
/// Webhook deliveries at the root.
pub const WEBHOOKS_DIR: &str = ".webhooks";
/// Deleted accounts at the root.
pub const ARCHIVE_DIR: &str = ".archive";

/// The supervisor's file in an account directory.
pub const ACCOUNT_FILE: &str = "account.json";
/// The worker's lock in an account directory.
pub const LOCK_FILE: &str = "lock";
/// The worker's credentials in an account directory.
pub const CREDS_FILE: &str = "creds.json";
/// The worker's Signal key store.
pub const SIGNAL_DIR: &str = "signal";
/// The worker's message store.
pub const MESSAGES_DIR: &str = "messages";
/// The worker's group memory.
pub const GROUPS_DIR: &str = "groups";
/// The worker's device-list cache.
pub const DEVICES_DIR: &str = "devices";

/// One account's directory.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AccountDir {
    path: PathBuf,
}

impl AccountDir {
    /// The directory of account `id` under the sessions directory `sessions`. `id` must be a
    /// valid account id (no separators, no dot names): callers pass parsed ids.
    pub fn new(sessions: &Path, id: &str) -> Self {
        AccountDir {
            path: sessions.join(id),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `account.json`.
    pub fn account_file(&self) -> PathBuf {
        self.path.join(ACCOUNT_FILE)
    }

    /// The worker's `lock`.
    pub fn lock_file(&self) -> PathBuf {
        self.path.join(LOCK_FILE)
    }

    /// `creds.json`.
    pub fn creds_file(&self) -> PathBuf {
        self.path.join(CREDS_FILE)
    }

    /// Whether the worker has stored credentials. Only the name is looked at: the supervisor
    /// never reads the worker's creds.
    pub fn has_creds(&self) -> bool {
        self.creds_file().is_file()
    }
}

/// Whether `name` is an interrupted write of the supervisor's `account.json`: a worker leaves
/// it alone.
pub fn is_account_file_temp(name: &str) -> bool {
    name.starts_with(".account.json.tmp-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_files_of_an_account() {
        let dir = AccountDir::new(Path::new("/data/sessions"), "shop");
        assert_eq!(dir.path(), Path::new("/data/sessions/shop"));
        assert_eq!(
            dir.creds_file(),
            Path::new("/data/sessions/shop/creds.json")
        );
        assert_eq!(
            dir.account_file(),
            Path::new("/data/sessions/shop/account.json")
        );
        assert_eq!(dir.lock_file(), Path::new("/data/sessions/shop/lock"));
        assert!(!dir.has_creds());
        assert!(is_account_file_temp(".account.json.tmp-1-00000001"));
        assert!(!is_account_file_temp(".creds.json.tmp-1-00000001"));
    }
}
