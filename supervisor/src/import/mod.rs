//! `supervisor import baileys <DIR> [--account ID]`: moves the accounts of the Node.js backend
//! (Baileys multi-file auth folders, `<volume>/baileys_auth/<accountId>/`) into wafleet with
//! the same device identity, so they log in without a QR and keep their Signal sessions.
//!
//! ```text
//!  <DIR>/creds.json …            one folder: one account (id: --account, else the folder name)
//!  <DIR>/<accountId>/creds.json  the seed's parent folder: each account (--account picks one)
//!
//!  per account:  read the whole folder (read-only; any malformed file stops it, named)
//!                ─▶ create <SESSIONS>/<id>/ (refused if it exists) and hold its worker lock
//!                ─▶ creds.json, signal/ (prekeys, sessions, identities, sender keys, LID map)
//!                ─▶ account.json last; on any failure the new folder is removed again
//! ```
//!
//! Every file goes through the worker's own stores, so it is atomic, mode 0600 and sealed
//! under `SESSIONS_KEY` exactly as the worker writes it. The source is never written to.
//!
//! A running supervisor is not disturbed: it reads the registry at start, so an account
//! imported meanwhile appears (and connects) at its next start; until then no worker runs it.

pub mod baileys;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ipc_protocol::{AccountId, UnixMillis};
use volume::atomic::sync_dir;
use volume::layout::AccountDir;
use volume::lock::{FileLock, LockError};
use worker::store::creds::CredsStore;
use worker::store::signal::KeyStore;

use crate::registry::{Account, Registry};
use crate::sessions_dir;

pub use baileys::{is_auth_folder, ReadError, Skipped};

/// The folder the seed kept its auth state in, under its volume.
pub const SEED_AUTH_DIR: &str = "baileys_auth";

/// What one account's import wrote.
#[derive(Debug)]
pub struct Imported {
    /// The new account.
    pub id: AccountId,
    /// Its phone number (the user part of its JID).
    pub phone: String,
    /// Session records written.
    pub sessions: usize,
    /// Contact identities written (from the sessions' current states).
    pub identities: usize,
    /// One-time prekeys written.
    pub prekeys: usize,
    /// Sender-key records written.
    pub sender_keys: usize,
    /// LID↔PN mappings written.
    pub lid_mappings: usize,
    /// What was left out, and why.
    pub skipped: Vec<Skipped>,
}

/// The outcome of one folder.
#[derive(Debug)]
pub enum Outcome {
    /// Written.
    Imported(Imported),
    /// Nothing written, and why.
    Refused {
        /// The account id (or the folder name when it is not one).
        id: String,
        /// Why.
        reason: String,
    },
}

/// What `import baileys` did.
#[derive(Debug, Default)]
pub struct Report {
    /// One entry per account folder, in id order.
    pub outcomes: Vec<Outcome>,
    /// A supervisor runs on the volume (it picks the accounts up at its next start).
    pub supervisor_running: bool,
}

impl Report {
    /// Whether any folder was refused.
    pub fn any_refused(&self) -> bool {
        self.outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Refused { .. }))
    }
}

/// Imports the Baileys folder (or parent of folders) `source` into the sessions directory
/// `sessions`, which must exist.
///
/// # Errors
/// A message when `source` is neither an auth folder nor a folder of them, or `account` does
/// not name one; refusals of single accounts are in the [`Report`].
pub fn import_baileys(
    sessions: &Path,
    source: &Path,
    account: Option<&str>,
) -> Result<Report, String> {
    if !source.is_dir() {
        return Err(format!("{} is not a folder", source.display()));
    }
    let mut jobs: Vec<(String, PathBuf)> = Vec::new();
    if is_auth_folder(source) {
        let id = match account {
            Some(id) => id.to_owned(),
            None => source
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        jobs.push((id, source.to_owned()));
    } else {
        jobs = auth_folders(source)
            .map_err(|e| format!("cannot list {}: {e}", source.display()))?
            .into_iter()
            .filter(|(name, _)| account.is_none_or(|a| a == name))
            .collect();
        if jobs.is_empty() {
            return Err(match account {
                Some(id) => format!("{} holds no auth folder named {id}", source.display()),
                None => format!(
                    "{} holds no creds.json and no account folder with one",
                    source.display()
                ),
            });
        }
    }
    // A running supervisor holds its lock file; without the file none runs (and none is made).
    let supervisor_running = sessions.join(sessions_dir::SUPERVISOR_LOCK).exists()
        && matches!(sessions_dir::lock(sessions), Err(LockError::Held { .. }));
    let mut report = Report {
        outcomes: Vec::new(),
        supervisor_running,
    };
    for (name, folder) in jobs {
        let outcome = match AccountId::parse(&name) {
            Err(_) => Outcome::Refused {
                id: name.clone(),
                reason: format!(
                    "`{name}` is not a valid account id (^[a-z0-9][a-z0-9_-]{{0,63}}$): pass --account"
                ),
            },
            Ok(id) => match import_one(sessions, &folder, &id) {
                Ok(imported) => Outcome::Imported(imported),
                Err(reason) => Outcome::Refused {
                    id: id.as_str().to_owned(),
                    reason,
                },
            },
        };
        report.outcomes.push(outcome);
    }
    Ok(report)
}

/// The sub-folders of `parent` holding a `creds.json`, by name.
fn auth_folders(parent: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(parent)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() && is_auth_folder(&path) {
            found.push((entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    found.sort();
    Ok(found)
}

/// Imports one folder as account `id`: reads it all, then writes, then `account.json`.
fn import_one(sessions: &Path, folder: &Path, id: &AccountId) -> Result<Imported, String> {
    let read = baileys::read_folder(folder).map_err(|e| e.to_string())?;
    let dir = AccountDir::new(sessions, id.as_str());
    match fs::create_dir(dir.path()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(format!(
                "account {id} already exists in {}: nothing written (delete it first, or import \
                 under another id with --account)",
                sessions.display()
            ))
        }
        Err(e) => return Err(format!("cannot create {}: {e}", dir.path().display())),
    }
    let written = sync_dir(sessions)
        .map_err(|e| format!("{}: {e}", sessions.display()))
        .and_then(|()| write_account(sessions, &dir, id, &read));
    match written {
        Ok(imported) => Ok(imported),
        Err(e) => {
            let removed = fs::remove_dir_all(dir.path()).and_then(|()| sync_dir(sessions));
            Err(match removed {
                Ok(()) => format!("{e}; nothing kept"),
                Err(r) => format!(
                    "{e}; and the half-written {} could not be removed ({r}): remove it by hand",
                    dir.path().display()
                ),
            })
        }
    }
}

/// Writes everything of `read` into the freshly created `dir`, under its worker lock.
fn write_account(
    sessions: &Path,
    dir: &AccountDir,
    id: &AccountId,
    read: &baileys::Folder,
) -> Result<Imported, String> {
    let _lock = FileLock::try_acquire(&dir.lock_file()).map_err(|e| e.to_string())?;
    let keys = KeyStore::new(dir.path());
    let store_err = |e: worker::store::signal::KeyStoreError| e.to_string();
    keys.import_legacy_prekeys(&read.prekeys, read.next_prekey_id)
        .map_err(store_err)?;
    let mut identities = 0;
    for s in &read.sessions {
        keys.store_session(&s.address, &s.record)
            .map_err(store_err)?;
        if let Some(identity) = &s.identity {
            keys.store_identity(&s.address, identity)
                .map_err(store_err)?;
            identities += 1;
        }
    }
    for k in &read.sender_keys {
        keys.store_sender_key(&k.group, &k.sender, &k.record)
            .map_err(store_err)?;
    }
    for (pn, lid) in &read.lid_mappings {
        keys.store_lid_mapping(pn, lid).map_err(store_err)?;
    }
    CredsStore::new(dir.path())
        .save(&read.creds)
        .map_err(|e| format!("creds.json: {e}"))?;
    let phone = read.creds.phone().unwrap_or_default().to_owned();
    let account = Account {
        id: id.clone(),
        name: read
            .creds
            .me
            .as_ref()
            .and_then(|m| m.push_name.clone())
            .unwrap_or_else(|| id.as_str().to_owned()),
        phone: Some(format!("+{phone}")),
        created_at: UnixMillis::now(),
        enabled: true,
        webhook_url: None,
        browser: None,
        conflict_since: None,
    };
    Registry::new(sessions)
        .save(&account)
        .map_err(|e| format!("account.json: {e}"))?;
    Ok(Imported {
        id: id.clone(),
        phone,
        sessions: read.sessions.len(),
        identities,
        prekeys: read.prekeys.len(),
        sender_keys: read.sender_keys.len(),
        lid_mappings: read.lid_mappings.len(),
        skipped: read.skipped.clone(),
    })
}

/// The report for people: one line per account, one per group of skipped files, a total.
/// Phone numbers are masked.
pub fn summary(report: &Report, sessions: &Path, sealed: bool) -> String {
    let mut out = String::new();
    let (mut imported, mut refused) = (0, 0);
    for outcome in &report.outcomes {
        match outcome {
            Outcome::Imported(a) => {
                imported += 1;
                out.push_str(&format!(
                    "imported {} ({}): {} sessions, {} identities, {} prekeys, {} sender keys, {} LID mappings\n",
                    a.id,
                    masked(&a.phone),
                    a.sessions,
                    a.identities,
                    a.prekeys,
                    a.sender_keys,
                    a.lid_mappings
                ));
                for s in &a.skipped {
                    out.push_str(&format!("  skipped {} {}: {}\n", s.count, s.what, s.reason));
                }
            }
            Outcome::Refused { id, reason } => {
                refused += 1;
                out.push_str(&format!("refused {id}: {reason}\n"));
            }
        }
    }
    out.push_str(&format!(
        "{imported} imported, {refused} refused, into {}{}\n",
        sessions.display(),
        if sealed {
            " (sealed with SESSIONS_KEY)"
        } else {
            ""
        }
    ));
    if imported > 0 && report.supervisor_running {
        out.push_str(
            "a supervisor is running on this volume: it starts the imported accounts at its next \
             start (restart it)\n",
        );
    }
    out
}

/// `+` and the first three and last two digits of `phone`, as the API shows phone numbers.
fn masked(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().collect();
    if digits.len() <= 5 {
        return "+****".into();
    }
    let head: String = digits[..3].iter().collect();
    let tail: String = digits[digits.len() - 2..].iter().collect();
    format!("+{head}****{tail}")
}

/// The folders where the seed's accounts may wait: `$RAILWAY_VOLUME_MOUNT_PATH/baileys_auth`
/// and `baileys_auth` beside the sessions directory (the seed's own place when `SESSIONS_PATH`
/// is `/data/sessions` on a volume at `/data`).
pub fn seed_dirs(sessions: &Path, railway_mount: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(mount) = railway_mount {
        dirs.push(mount.join(SEED_AUTH_DIR));
    }
    if let Some(parent) = sessions.parent() {
        let beside = parent.join(SEED_AUTH_DIR);
        let same = dirs.iter().any(|d| {
            d == &beside
                || matches!((d.canonicalize(), beside.canonicalize()), (Ok(a), Ok(b)) if a == b)
        });
        if !same {
            dirs.push(beside);
        }
    }
    dirs
}

/// The paired Baileys accounts in `dir` whose id is not an account in `known`, by id.
pub fn pending(dir: &Path, known: &[AccountId]) -> Vec<String> {
    let Ok(folders) = auth_folders(dir) else {
        return Vec::new();
    };
    folders
        .into_iter()
        .filter(|(name, path)| !known.iter().any(|k| k.as_str() == name) && is_paired_folder(path))
        .map(|(name, _)| name)
        .collect()
}

/// Whether the `creds.json` of `folder` is a paired Baileys one (a cheap look, not a check).
fn is_paired_folder(folder: &Path) -> bool {
    fs::read(folder.join(baileys::CREDS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("noiseKey").is_some() && v.get("me").is_some_and(|m| !m.is_null()))
}

/// At boot: one warning per seed folder that holds accounts not imported yet, with the command
/// that imports them. Baileys folders inside the sessions directory itself (the seed run with
/// the same `SESSIONS_PATH`) are named too, with where to move them first: the import never
/// writes into its source.
pub fn warn_pending(sessions: &Path, railway_mount: Option<&Path>, known: &[AccountId]) {
    let inside = pending(sessions, known);
    if !inside.is_empty() {
        let to = sessions.parent().unwrap_or(sessions).join(SEED_AUTH_DIR);
        tracing::warn!(
            count = inside.len(),
            accounts = %inside.join(","),
            dir = %sessions.display(),
            command = %format!(
                "mkdir -p {to} && mv {} {to}/ && supervisor import baileys {to}",
                inside
                    .iter()
                    .map(|id| sessions.join(id).display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                to = to.display()
            ),
            "Baileys auth folders of the Node.js backend sit in the sessions directory: stop the supervisor, move them out and import them with the command (no QR needed)"
        );
    }
    for dir in seed_dirs(sessions, railway_mount) {
        let waiting = pending(&dir, known);
        if waiting.is_empty() {
            continue;
        }
        tracing::warn!(
            count = waiting.len(),
            accounts = %waiting.join(","),
            dir = %dir.display(),
            command = %format!("supervisor import baileys {}", dir.display()),
            "accounts of the Node.js backend are not imported yet: run the command (no QR needed), then restart the supervisor"
        );
    }
}

#[cfg(test)]
mod tests;
