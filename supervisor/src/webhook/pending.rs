//! The durable pending set: one file per (event, target) under `$SESSIONS/.webhooks/`, written
//! atomically (temp, fsync, rename, then one fsync of the directory per batch: a group commit)
//! before the first attempt, and removed after a 2xx.
//!
//! ```text
//! $SESSIONS/.webhooks/
//!   00001764000000000123-g.json   event 1764000000000123 for the global WEBHOOK_URL
//!   00001764000000000123-a.json   the same event for its account's own URL
//!   <name>.corrupt                a file that did not parse, set aside (never deleted)
//! ```
//!
//! Each file holds the target URL, the event's id, type, account and time, and the body as the
//! exact JSON text that is POSTed and signed. File names sort in id order.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;
use volume::atomic::{sync_dir, write_unsynced};

use super::url::WebhookUrl;

/// The pending directory under `$SESSIONS`.
pub const PENDING_DIR: &str = volume::layout::WEBHOOKS_DIR;
/// Version of the file layout.
const FORMAT: u32 = 1;

/// Which of an event's targets a delivery is for.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The global `WEBHOOK_URL`.
    Global,
    /// The account's own URL.
    Account,
}

impl TargetKind {
    fn suffix(self) -> &'static str {
        match self {
            TargetKind::Global => "g",
            TargetKind::Account => "a",
        }
    }
}

/// One pending delivery, without its body (read from disk for each attempt).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Delivery {
    /// The event's id.
    pub event_id: u64,
    /// Which target.
    pub target: TargetKind,
    /// Where it goes.
    pub url: WebhookUrl,
    /// The event's type, e.g. `message.received`.
    pub kind: String,
    /// When the event happened, Unix milliseconds (its age decides expiry).
    pub timestamp_ms: u64,
}

impl Delivery {
    /// Account events (`account.*`) are the first to go when the set is full.
    pub fn is_account_event(&self) -> bool {
        self.kind.starts_with("account.")
    }

    fn file_name(&self) -> String {
        format!("{:020}-{}.json", self.event_id, self.target.suffix())
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Record {
    format: u32,
    url: WebhookUrl,
    target: TargetKind,
    event_id: u64,
    #[serde(rename = "type")]
    kind: String,
    timestamp: u64,
    body: String,
}

/// What loading found besides the deliveries.
#[derive(Debug, Default, Eq, PartialEq)]
pub struct Loaded {
    /// Pending deliveries, sorted by event id then target.
    pub deliveries: Vec<Delivery>,
    /// Files that did not parse and were renamed `<name>.corrupt`.
    pub set_aside: usize,
}

/// The pending directory.
#[derive(Clone, Debug)]
pub struct PendingStore {
    dir: PathBuf,
}

impl PendingStore {
    /// Opens (creating it if needed) `$SESSIONS/.webhooks` and loads what is pending. Temp files
    /// of writes cut short by a crash are removed; unparsable files are set aside.
    ///
    /// # Errors
    /// When the directory cannot be created or listed.
    pub fn open(sessions: &Path) -> io::Result<(Self, Loaded)> {
        let dir = sessions.join(PENDING_DIR);
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            sync_dir(sessions)?;
        }
        let store = PendingStore { dir };
        let loaded = store.load()?;
        Ok((store, loaded))
    }

    fn load(&self) -> io::Result<Loaded> {
        let mut loaded = Loaded::default();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') && name.contains(".tmp-") {
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            match read_record(&path) {
                Ok(record) => {
                    let delivery = Delivery {
                        event_id: record.event_id,
                        target: record.target,
                        url: record.url,
                        kind: record.kind,
                        timestamp_ms: record.timestamp,
                    };
                    if delivery.file_name() == name {
                        loaded.deliveries.push(delivery);
                        continue;
                    }
                    warn!(file = %name, "pending webhook file is misnamed; set aside");
                }
                Err(e) => {
                    warn!(file = %name, error = %e, "pending webhook file is unreadable; set aside")
                }
            }
            let aside = self.dir.join(format!("{name}.corrupt"));
            if fs::rename(&path, &aside).is_ok() {
                loaded.set_aside += 1;
            }
        }
        loaded.deliveries.sort_by_key(|d| (d.event_id, d.target));
        Ok(loaded)
    }

    /// Writes a delivery and the exact `body` it will POST, durably.
    ///
    /// # Errors
    /// When the body is not UTF-8 (event JSON always is) or the write fails.
    pub fn write(&self, delivery: &Delivery, body: &[u8]) -> io::Result<()> {
        self.write_batch(&[(delivery.clone(), body)])
            .pop()
            .unwrap_or(Ok(()))
    }

    /// Writes many deliveries as one group commit: each file is written to a temp name,
    /// fsynced and renamed into place, then the directory is fsynced once for all of them.
    /// Once this returns, every `Ok` is durable. One result per item, in order.
    pub fn write_batch(&self, items: &[(Delivery, &[u8])]) -> Vec<io::Result<()>> {
        let mut results: Vec<io::Result<()>> = items
            .iter()
            .map(|(delivery, body)| self.write_unsynced(delivery, body))
            .collect();
        if results.iter().any(Result::is_ok) {
            if let Err(e) = sync_dir(&self.dir) {
                // Not durable: take them back so memory and disk agree.
                for (result, (delivery, _)) in results.iter_mut().zip(items) {
                    if result.is_ok() {
                        let _ = fs::remove_file(self.path(delivery));
                        *result = Err(io::Error::new(e.kind(), e.to_string()));
                    }
                }
            }
        }
        results
    }

    /// Temp file, fsync, rename: atomic but not yet durable (the directory fsync is the
    /// caller's).
    fn write_unsynced(&self, delivery: &Delivery, body: &[u8]) -> io::Result<()> {
        let body =
            std::str::from_utf8(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let record = Record {
            format: FORMAT,
            url: delivery.url.clone(),
            target: delivery.target,
            event_id: delivery.event_id,
            kind: delivery.kind.clone(),
            timestamp: delivery.timestamp_ms,
            body: body.to_owned(),
        };
        let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        // 0600: message events carry people's messages.
        write_unsynced(&self.path(delivery), &bytes, 0o600)
    }

    /// The exact body to POST for a delivery.
    ///
    /// # Errors
    /// When the file is gone or unreadable.
    pub fn body(&self, delivery: &Delivery) -> io::Result<Vec<u8>> {
        read_record(&self.path(delivery)).map(|r| r.body.into_bytes())
    }

    /// Removes a delivered, expired or dropped delivery. A file already gone is fine.
    ///
    /// # Errors
    /// Any other I/O error.
    pub fn remove(&self, delivery: &Delivery) -> io::Result<()> {
        match fs::remove_file(self.path(delivery)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn path(&self, delivery: &Delivery) -> PathBuf {
        self.dir.join(delivery.file_name())
    }
}

fn read_record(path: &Path) -> io::Result<Record> {
    let bytes = fs::read(path)?;
    let record: Record = serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if record.format != FORMAT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown pending format {}", record.format),
        ));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn delivery(id: u64, target: TargetKind) -> Delivery {
        Delivery {
            event_id: id,
            target,
            url: WebhookUrl::parse("http://127.0.0.1:9/h").expect("url"),
            kind: "message.received".into(),
            timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn round_trips_the_exact_body_and_loads_in_id_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, loaded) = PendingStore::open(dir.path()).expect("open");
        assert_eq!(loaded, Loaded::default());
        let body = br#"{"id":10,"data":{"text":"h\u00e9 \"x\""}}"#;
        store
            .write(&delivery(10, TargetKind::Global), body)
            .expect("write");
        store
            .write(&delivery(9, TargetKind::Account), b"{}")
            .expect("write");
        store
            .write(&delivery(10, TargetKind::Account), b"{}")
            .expect("write");
        assert_eq!(
            store.body(&delivery(10, TargetKind::Global)).expect("body"),
            body
        );
        let mode = fs::metadata(store.path(&delivery(9, TargetKind::Account)))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let (_, again) = PendingStore::open(dir.path()).expect("reopen");
        let order: Vec<_> = again
            .deliveries
            .iter()
            .map(|d| (d.event_id, d.target))
            .collect();
        assert_eq!(
            order,
            [
                (9, TargetKind::Account),
                (10, TargetKind::Global),
                (10, TargetKind::Account)
            ]
        );
        assert_eq!(again.deliveries[1], delivery(10, TargetKind::Global));
        store
            .remove(&delivery(10, TargetKind::Global))
            .expect("remove");
        store
            .remove(&delivery(10, TargetKind::Global))
            .expect("twice is fine");
        let (_, after) = PendingStore::open(dir.path()).expect("reopen");
        assert_eq!(after.deliveries.len(), 2);
    }

    #[test]
    fn a_batch_is_written_together_and_a_bad_item_fails_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = PendingStore::open(dir.path()).expect("open");
        let results = store.write_batch(&[
            (delivery(1, TargetKind::Global), &b"{\"id\":1}"[..]),
            (delivery(2, TargetKind::Global), &[0xff, 0xfe][..]),
            (delivery(3, TargetKind::Account), &b"{\"id\":3}"[..]),
        ]);
        let oks: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(oks, [true, false, true]);
        let (_, loaded) = PendingStore::open(dir.path()).expect("reopen");
        let ids: Vec<u64> = loaded.deliveries.iter().map(|d| d.event_id).collect();
        assert_eq!(ids, [1, 3]);
        assert_eq!(
            store.body(&delivery(3, TargetKind::Account)).expect("body"),
            b"{\"id\":3}"
        );
        let names = fs::read_dir(dir.path().join(PENDING_DIR))
            .expect("list")
            .count();
        assert_eq!(names, 2, "no temp files left behind");
    }

    #[test]
    fn a_crash_leaves_temp_files_that_are_cleaned_and_corrupt_files_that_are_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = PendingStore::open(dir.path()).expect("open");
        store
            .write(&delivery(1, TargetKind::Global), b"{}")
            .expect("write");
        let pending = dir.path().join(PENDING_DIR);
        fs::write(
            pending.join(".00000000000000000002-g.json.tmp-1-abc"),
            b"{half",
        )
        .expect("tmp");
        fs::write(pending.join("00000000000000000003-g.json"), b"{half").expect("torn");
        let (_, loaded) = PendingStore::open(dir.path()).expect("reopen");
        assert_eq!(loaded.deliveries, [delivery(1, TargetKind::Global)]);
        assert_eq!(loaded.set_aside, 1);
        let mut names: Vec<_> = fs::read_dir(&pending)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "00000000000000000001-g.json",
                "00000000000000000003-g.json.corrupt"
            ]
        );
    }
}
